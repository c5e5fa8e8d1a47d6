package imipserver_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

// Issue 8, item 3: one user cannot knock another off IMIP, and floods are
// bounded. Each test names the finding it covers.

// A repeated LIST ADD for the same pending request (each with a 60 KB
// text) is not pushed again: the victim stays connected, gets the request
// once, with its text cut to MaxRequestText.
func TestRepeatedListAddDeduplicated(t *testing.T) {
	ts := startServer(t, imipserver.Config{OutQueueBytes: 64 << 10})
	victim := loginRaw(t, ts.addr, bob)
	a := loginRaw(t, ts.addr, alice)
	text := strings.Repeat("x", 60000)
	for range 50 {
		id := a.send(wire.TypeLIST, "ADD "+string(bob), text)
		a.expectACK(wire.CodeOK, id)
	}
	blk := victim.expect("LIST ADD")
	if len(blk.Body) != imipserver.MaxRequestText {
		t.Errorf("request text of %d bytes, want it cut to %d", len(blk.Body), imipserver.MaxRequestText)
	}
	victim.expectSilence(200 * time.Millisecond) // no second push
	id := victim.send(wire.TypePING, "", "")
	victim.expectACK(wire.CodeOK, id)
	reqs, err := ts.store.Requests(context.Background(), bob)
	if err != nil || len(reqs) != 1 {
		t.Fatalf("pending requests %v (%v), want one", reqs, err)
	}
}

// Messages beyond the caps are refused with ACK 814, per sender for one
// recipient and for the recipient in all; what was stored reaches the
// recipient at its next login without overflowing its queue.
func TestHeldMessageCaps(t *testing.T) {
	ts := startServer(t, imipserver.Config{OutQueueBytes: 64 << 10,
		Abuse: imipserver.AbuseLimits{MaxHeldPerSender: 3, MaxHeldPerRecipient: 5}})
	a := loginRaw(t, ts.addr, alice)
	c := loginRaw(t, ts.addr, carol)
	big := strings.Repeat("m", 30000)
	for i := range 4 {
		id := a.send(wire.TypeMESG, "", big, wire.HdrTo, string(bob))
		want := wire.CodeOK
		if i == 3 {
			want = wire.CodeRecipientFull // alice's fourth for bob
		}
		a.expectACK(want, id)
	}
	for i := range 3 {
		id := c.send(wire.TypeMESG, "", "hi", wire.HdrTo, string(bob))
		want := wire.CodeOK
		if i == 2 {
			want = wire.CodeRecipientFull // bob holds 5 in all
		}
		c.expectACK(want, id)
	}
	// Another recipient is not affected.
	id := a.send(wire.TypeMESG, "", "hi", wire.HdrTo, string(dave))
	a.expectACK(wire.CodeOK, id)
	// bob gets all five, one window at a time, and stays connected.
	b := loginRaw(t, ts.addr, bob)
	for range 5 {
		b.expect("MESG")
	}
	id = b.send(wire.TypePING, "", "")
	b.expectACK(wire.CodeOK, id)
}

// A flood of live messages to a plain client that reads slowly does not
// disconnect it: beyond half its queue they are stored and follow.
func TestLiveFloodDoesNotDisconnect(t *testing.T) {
	ts := startServer(t, imipserver.Config{OutQueueBytes: 64 << 10,
		Abuse: imipserver.AbuseLimits{SendRate: 1000, SendBurst: 1000}})
	victim := loginRaw(t, ts.addr, bob)
	a := loginRaw(t, ts.addr, alice)
	big := strings.Repeat("f", 20000)
	const n = 40 // 800 KB: 12 times the victim's queue
	for range n {
		id := a.send(wire.TypeMESG, "", big, wire.HdrTo, string(bob))
		a.expectACK(wire.CodeOK, id)
	}
	for i := range n {
		if m := victim.expect("MESG"); len(m.Body) != len(big) {
			t.Fatalf("message %d of %d bytes", i, len(m.Body))
		}
	}
	if !ts.srv.Online(bob) {
		t.Fatal("the victim was disconnected")
	}
}

// A sender beyond its rate gets ACK 815 for MESG and LIST ADD; others are
// not slowed.
func TestSendRate(t *testing.T) {
	ts := startServer(t, imipserver.Config{Abuse: imipserver.AbuseLimits{SendRate: 0.001, SendBurst: 3}})
	a := loginRaw(t, ts.addr, alice)
	for i := range 3 {
		id := a.send(wire.TypeMESG, "", "hi", wire.HdrTo, string(bob))
		a.expectACK(wire.CodeOK, id)
		_ = i
	}
	id := a.send(wire.TypeMESG, "", "hi", wire.HdrTo, string(bob))
	a.expectACK(wire.CodeTooFast, id)
	id = a.send(wire.TypeLIST, "ADD "+string(carol), "")
	a.expectACK(wire.CodeTooFast, id)
	c := loginRaw(t, ts.addr, carol)
	id = c.send(wire.TypeMESG, "", "hi", wire.HdrTo, string(bob))
	c.expectACK(wire.CodeOK, id)
}

// flakyListener fails its first n Accepts with EMFILE, as a process out of
// file descriptors does.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// "Too many open files" does not stop the server: it backs off and keeps
// accepting.
func TestAcceptErrorsDoNotStopServing(t *testing.T) {
	srv, err := imipserver.New(imipserver.Config{Store: imipserver.NewMemStore()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddAccount(context.Background(), testAccounts[0]); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln}
	fl.fails.Store(5)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, fl) }()
	c := loginRaw(t, ln.Addr().String(), alice) // accepted after the failures
	id := c.send(wire.TypePING, "", "")
	c.expectACK(wire.CodeOK, id)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// dialFrom dials addr from the loopback address local (127.0.0.x).
func dialFrom(t *testing.T, local, addr string) *rawClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot dial from %s: %v", local, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, rd: wire.NewReader(nc, wire.Limits{}), w: wire.NewWriter(nc), next: wire.FirstClientBlockID}
}

// Connections not logged in are capped per address and in all; a logged-in
// one no longer counts, and another address is not affected.
func TestPendingConnectionCaps(t *testing.T) {
	ts := startServer(t, imipserver.Config{Abuse: imipserver.AbuseLimits{MaxPendingPerAddr: 2}})
	p1 := dialRaw(t, ts.addr)
	p1.helo()
	p2 := dialRaw(t, ts.addr)
	p2.helo()
	p3 := dialRaw(t, ts.addr)
	p3.expectClosed()
	// Another address may still connect.
	o := dialFrom(t, "127.0.0.2", ts.addr)
	o.helo()
	// Once one logs in, the address has room again.
	p1.login(alice)
	p4 := dialRaw(t, ts.addr)
	p4.helo()
}

// A connection that does not log in within LoginTimeout is closed, even if
// it keeps sending HELO.
func TestLoginTimeout(t *testing.T) {
	ts := startServer(t, imipserver.Config{Abuse: imipserver.AbuseLimits{LoginTimeout: 300 * time.Millisecond}})
	c := dialRaw(t, ts.addr)
	helo := "HELO\r\n0\r\n"
	start := time.Now()
	for {
		if _, err := c.nc.Write([]byte(helo)); err != nil {
			break
		}
		if _, err := c.tryRead(time.Second); err != nil {
			break // closed (the HELO answer otherwise comes at once)
		}
		if time.Since(start) > 3*time.Second {
			t.Fatal("still open after 3 s of HELOs")
		}
		time.Sleep(50 * time.Millisecond) // the client's pace, not a wait for an outcome
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("closed after %v, before the login timeout", took)
	}
}

// Refused logins are limited per address and per number; beyond the
// budget even the right password is refused (ACK 810, like a wrong one),
// except for a number from the address it last logged in from: a
// stranger guessing cannot lock the owner out.
func TestLoginThrottle(t *testing.T) {
	ts := startServer(t, imipserver.Config{Abuse: imipserver.AbuseLimits{
		AddrFailBurst: 100, AddrFailEvery: time.Hour, NumberFailBurst: 3, NumberFailEvery: time.Hour}})
	// alice logs in once from 127.0.0.1: her usual address.
	a := loginRaw(t, ts.addr, alice)
	id := a.send(wire.TypeDISC, "", "")
	a.expectACK(wire.CodeOK, id)
	a.expectClosed()
	guess := func(local string, n wire.Number, pw string) wire.Code {
		c := dialFrom(t, local, ts.addr)
		c.helo()
		id := c.logn(n, pw)
		blk := c.read()
		if ref, _ := blk.Reference(); blk.Type != wire.TypeACK && blk.Type != wire.TypeLOGN || (blk.Type == wire.TypeACK && ref != id) {
			t.Fatalf("answer %s %s to LOGN %d", blk.Type, blk.Arg, id)
		}
		if blk.Type == wire.TypeLOGN {
			return wire.CodeOK
		}
		code, _ := wire.ParseCode(blk.Arg)
		return code
	}
	// A stranger at 127.0.0.3 guesses alice's and bob's passwords.
	for range 3 {
		for _, n := range []wire.Number{alice, bob} {
			if code := guess("127.0.0.3", n, "guess"); code != wire.CodeWrongPassword {
				t.Fatalf("wrong password answered %d", code)
			}
		}
	}
	// bob's budget is spent: even the right password is refused.
	if code := guess("127.0.0.4", bob, password(bob)); code != wire.CodeWrongPassword {
		t.Errorf("bob's right password after the budget: %d, want 810", code)
	}
	// alice from her usual address still logs in.
	if code := guess("127.0.0.1", alice, password(alice)); code != wire.CodeOK {
		t.Errorf("alice from her usual address: %d, want a login", code)
	}
}

// A tight per-address budget: beyond it the address's logins are refused
// without being checked.
func TestLoginThrottlePerAddress(t *testing.T) {
	ts := startServer(t, imipserver.Config{Abuse: imipserver.AbuseLimits{
		AddrFailBurst: 5, AddrFailEvery: time.Hour}})
	for range 5 {
		c := dialRaw(t, ts.addr)
		c.helo()
		id := c.logn(carol, "wrong")
		c.expectACK(wire.CodeWrongPassword, id)
	}
	c := dialRaw(t, ts.addr)
	c.helo()
	id := c.logn(dave, password(dave))
	c.expectACK(wire.CodeWrongPassword, id)
	if ts.srv.Online(dave) {
		t.Fatal("logged in beyond the address's budget")
	}
}
