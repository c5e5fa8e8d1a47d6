package imipserver_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

// held returns the messages the store holds for n.
func held(t testing.TB, st imipserver.Store, n wire.Number) []imipserver.Message {
	t.Helper()
	msgs, err := st.Messages(context.Background(), n, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// waitHeld waits until the store holds exactly want messages for n.
func waitHeld(t testing.TB, st imipserver.Store, n wire.Number, want int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d messages held for %s", want, n), func() bool { return len(held(t, st, n)) == want })
}

// sendTexts sends each text from c to `to`, errors-only.
func sendTexts(c *rawClient, to wire.Number, texts ...string) {
	for _, text := range texts {
		c.send(wire.TypeMESG, "", text, wire.HdrTo, string(to), wire.HdrACKType, wire.ACKTypeErrorsOnly)
	}
}

// texts returns "<prefix> 00" ... for n messages.
func texts(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %02d", prefix, i)
	}
	return out
}

// expectPing sends PING and checks that its ACK is the next block: nothing
// was queued for c before the server read the PING.
func (c *rawClient) expectPing() {
	c.t.Helper()
	id := c.send(wire.TypePING, "", "")
	c.expectACK(wire.CodeOK, id)
}

// blockID returns the ID header of b.
func blockID(t testing.TB, b *wire.Block) uint64 {
	t.Helper()
	id, ok := b.ID()
	if !ok {
		t.Fatalf("block %q without ID", b.TypeLine())
	}
	return id
}

func TestMesgAckNegotiation(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	for i, tc := range []struct {
		caps   string // the LOGN's Capabilities header, "" = none
		msgIDs bool
	}{
		{"", false},
		{"mesg-ack", true},
		{"other, MESG-ACK", true}, // tokens: case-insensitive, spaces after commas
		{"mesg-ack-2,server-lists", false},
	} {
		c := dialRaw(t, ts.addr)
		c.helo()
		hdrs := []string{wire.HdrClient, "raw test"}
		if tc.caps != "" {
			hdrs = append(hdrs, wire.HdrCapabilities, tc.caps)
		}
		c.send(wire.TypeLOGN, string(bob), wire.AuthDigest(c.salt, password(bob)), hdrs...)
		c.expect("LOGN " + string(bob))
		a := loginRaw(t, ts.addr, alice)
		sendTexts(a, bob, fmt.Sprint("live ", i))
		m := c.expect(wire.TypeMESG)
		if _, ok := m.Lookup("Message-ID"); ok != tc.msgIDs {
			t.Errorf("%d: Capabilities %q: Message-ID header %v, want %v", i, tc.caps, ok, tc.msgIDs)
		}
		if tc.msgIDs {
			c.confirm(blockID(t, m))
		}
		waitHeld(t, ts.store, bob, 0)
	}
}

// TestMesgAckConfirmedNotRedelivered: messages held for an offline user
// come with Message-IDs at a mesg-ack login, stay stored until confirmed,
// and are gone once confirmed.
func TestMesgAckConfirmedNotRedelivered(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	a := loginRaw(t, ts.addr, alice)
	want := texts("held", 3)
	sendTexts(a, bob, want...)
	a.expectPing()
	stored := held(t, ts.store, bob)
	if len(stored) != 3 {
		t.Fatalf("held %v", stored)
	}

	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	var ids []uint64
	for i := range want {
		m := b.expect(wire.TypeMESG)
		if string(m.Body) != want[i] || m.Get("Message-ID") != "m"+strconv.FormatInt(stored[i].ID, 10) ||
			m.Get(wire.HdrTimo) != wire.FormatTimo(stored[i].Time) || m.Get(wire.HdrFrom) != `1001001 "alice"` {
			t.Errorf("%d: MESG %v %q", i, m.Headers, m.Body)
		}
		ids = append(ids, blockID(t, m))
	}
	b.expectPing()
	if got := len(held(t, ts.store, bob)); got != 3 {
		t.Fatalf("%d messages held after the pushes, want 3 until confirmed", got)
	}
	for _, id := range ids {
		b.confirm(id)
	}
	b.expectPing() // the server never answers a confirm
	waitHeld(t, ts.store, bob, 0)
	b.nc.Close()
	waitFor(t, "bob offline", func() bool { return !ts.srv.Online(bob) })

	b = dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	b.expectPing() // nothing pushed again
}

// TestMesgAckUnconfirmedRedelivered: what was pushed and not confirmed is
// pushed again, with its Message-ID and Timo, at the next login: after a
// drop, after a kill by the server, and to a newer login that replaced the
// connection.
func TestMesgAckUnconfirmedRedelivered(t *testing.T) {
	for _, end := range []string{"client close", "server kill", "second login"} {
		t.Run(end, func(t *testing.T) {
			ts := startServer(t, imipserver.Config{})
			b := dialRaw(t, ts.addr)
			b.loginMesgAck(bob)
			a := loginRaw(t, ts.addr, alice)
			want := texts("msg", 4)
			sendTexts(a, bob, want...)
			first := make(map[string]*wire.Block)
			for i := range want {
				m := b.expect(wire.TypeMESG)
				if string(m.Body) != want[i] {
					t.Fatalf("%d: body %q, want %q", i, m.Body, want[i])
				}
				first[string(m.Body)] = m
				if i == 1 {
					b.confirm(blockID(t, m)) // only the second is confirmed
				}
			}
			b.expectPing()
			waitHeld(t, ts.store, bob, 3)

			switch end {
			case "client close":
				b.nc.Close()
			case "server kill":
				ts.srv.Kick(bob)
			}
			if end != "second login" {
				waitFor(t, "bob offline", func() bool { return !ts.srv.Online(bob) })
			}
			b2 := dialRaw(t, ts.addr)
			b2.loginMesgAck(bob)
			for _, text := range []string{want[0], want[2], want[3]} {
				m := b2.expect(wire.TypeMESG)
				old := first[text]
				if string(m.Body) != text {
					t.Fatalf("redelivered %q, want %q", m.Body, text)
				}
				for _, h := range []string{"Message-ID", wire.HdrTimo, wire.HdrFrom, wire.HdrTo} {
					if m.Get(h) != old.Get(h) {
						t.Errorf("%q: %s %q, first push had %q", text, h, m.Get(h), old.Get(h))
					}
				}
				b2.confirm(blockID(t, m))
			}
			b2.expectPing()
			waitHeld(t, ts.store, bob, 0)
		})
	}
}

// TestMesgAckCutMidBlock: a connection that ends in the middle of a pushed
// MESG (the client read part of it) loses nothing.
func TestMesgAckCutMidBlock(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	b.expectPing() // nothing else is queued for bob: the next bytes are the MESG
	a := loginRaw(t, ts.addr, alice)
	sendTexts(a, bob, "cut short")
	part := make([]byte, 10)
	b.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := b.nc.Read(part); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(part), "MESG\r\n") {
		t.Fatalf("read %q, want the start of a MESG", part)
	}
	b.nc.Close()
	waitFor(t, "bob offline", func() bool { return !ts.srv.Online(bob) })

	b = dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	if m := b.expect(wire.TypeMESG); string(m.Body) != "cut short" {
		t.Errorf("body %q", m.Body)
	}
}

// TestMesgAckCutMidStream: a client that reads and confirms part of a
// stream of messages, then drops, finds the rest at its next login, in
// order; every message arrives, none is lost.
func TestMesgAckCutMidStream(t *testing.T) {
	ts := startServer(t, imipserver.Config{DeliveryWindow: 8})
	a := loginRaw(t, ts.addr, alice)
	want := texts("stream", 50)
	sendTexts(a, bob, want...)
	a.expectPing()

	index := make(map[string]int)
	for i, w := range want {
		index[w] = i
	}
	got := 0                                   // want[:got] arrived
	for round, take := range []int{13, 5, 0} { // 0: take everything
		b := dialRaw(t, ts.addr)
		b.loginMesgAck(bob)
		prev := -1
		for n := 0; take == 0 || n < take; n++ {
			if take == 0 && got == len(want) {
				break
			}
			m := b.expect(wire.TypeMESG)
			// A confirm cut by the drop makes a repeat; a gap or a step
			// back is an error.
			i, ok := index[string(m.Body)]
			if !ok || i > got || i <= prev {
				t.Fatalf("round %d: got %q after %d of %d arrived", round, m.Body, got, len(want))
			}
			prev = i
			if i == got {
				got++
			}
			b.confirm(blockID(t, m))
		}
		if take != 0 {
			// The confirm of the last one read may not reach the server.
			b.nc.Close()
			waitFor(t, "bob offline", func() bool { return !ts.srv.Online(bob) })
		} else {
			b.expectPing()
		}
	}
	waitHeld(t, ts.store, bob, 0)
}

// TestMesgAckWindow: the server never has more than DeliveryWindow pushes
// unconfirmed; each confirm (in any order) lets one more go; every message
// arrives once, in order, including ones that arrive while the window is
// full.
func TestMesgAckWindow(t *testing.T) {
	const window = 4
	ts := startServer(t, imipserver.Config{DeliveryWindow: window})
	a := loginRaw(t, ts.addr, alice)
	want := texts("w", 20)
	sendTexts(a, bob, want[:15]...)
	a.expectPing()

	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	var unconfirmed []uint64
	var got []string
	read := func() {
		t.Helper()
		m := b.expect(wire.TypeMESG)
		got = append(got, string(m.Body))
		unconfirmed = append(unconfirmed, blockID(t, m))
		if len(unconfirmed) > window {
			t.Fatalf("%d unconfirmed pushes, window %d", len(unconfirmed), window)
		}
	}
	for range window {
		read()
	}
	b.expectPing()                  // the window is full: nothing more was pushed
	sendTexts(a, bob, want[15:]...) // live messages wait in the store too
	a.expectPing()
	b.expectPing()

	for i := 0; len(got) < len(want); i++ {
		// Confirm out of order: the newest on odd steps, the oldest on even.
		j := 0
		if i%2 == 1 {
			j = len(unconfirmed) - 1
		}
		b.confirm(unconfirmed[j])
		unconfirmed = append(unconfirmed[:j], unconfirmed[j+1:]...)
		read() // exactly one more
		b.expectPing()
	}
	for _, id := range unconfirmed {
		b.confirm(id)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %v, want %v", got, want)
	}
	waitHeld(t, ts.store, bob, 0)
	b.expectPing()
}

// TestMesgAckWindowBytes: pushes stop once the unconfirmed ones hold half
// of OutQueueBytes, so they never overflow the queue.
func TestMesgAckWindowBytes(t *testing.T) {
	ts := startServer(t, imipserver.Config{OutQueueBytes: 8 << 10})
	a := loginRaw(t, ts.addr, alice)
	big := strings.Repeat("x", 1500) // each MESG is about 1.6 KB
	for i := range 6 {
		sendTexts(a, bob, fmt.Sprint(i, big))
	}
	a.expectPing()
	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	var ids []uint64
	for range 3 { // 2 pushes hold 3.2 KB < 4 KiB, so a third goes
		ids = append(ids, blockID(t, b.expect(wire.TypeMESG)))
	}
	b.expectPing()
	for _, id := range ids {
		b.confirm(id)
	}
	for i := 3; i < 6; i++ {
		if m := b.expect(wire.TypeMESG); !strings.HasPrefix(string(m.Body), strconv.Itoa(i)) {
			t.Errorf("got %.3q..., want message %d", m.Body, i)
		}
	}
}

func TestMesgAckIgnoresOtherACKs(t *testing.T) {
	ts := startServer(t, imipserver.Config{HoldWrites: -1}) // stored before it is pushed
	b := dialRaw(t, ts.addr)
	logn := blockID(t, b.loginMesgAck(bob))
	a := loginRaw(t, ts.addr, alice)
	sendTexts(a, bob, "keep me")
	m := b.expect(wire.TypeMESG)
	mid := blockID(t, m)
	for i, h := range [][]string{
		{wire.HdrReference, "999999999"},                  // no such block
		{wire.HdrReference, strconv.FormatUint(logn, 10)}, // not a pushed MESG
		{wire.HdrReference, "m1"},                         // not a number
		{},                                                // no Reference
	} {
		b.send(wire.TypeACK, "600", "", h...)
		b.expectPing()
		if len(held(t, ts.store, bob)) != 1 {
			t.Fatalf("%d: the message was taken as confirmed", i)
		}
	}
	// Another code does not confirm.
	b.send(wire.TypeACK, "811", "", wire.HdrReference, strconv.FormatUint(mid, 10))
	b.expectPing()
	if len(held(t, ts.store, bob)) != 1 {
		t.Fatal("ACK 811 confirmed the message")
	}
	b.confirm(mid)
	b.confirm(mid) // twice: the second matches nothing
	b.expectPing()
	waitHeld(t, ts.store, bob, 0)
}

// TestPlainClientKeepsOldBehaviour: without mesg-ack in the LOGN, pushes
// carry no Message-ID and a held message is deleted once written. Held
// messages beyond the outbound queue no longer overflow it.
func TestPlainClientKeepsOldBehaviour(t *testing.T) {
	ts := startServer(t, imipserver.Config{OutQueueBytes: 16 << 10, Abuse: imipserver.AbuseLimits{MaxHeldPerSender: 1000}})
	a := loginRaw(t, ts.addr, alice)
	want := texts(strings.Repeat("p", 200), 300) // about 120 KB: 7 times the queue
	sendTexts(a, bob, want...)
	a.expectPing()

	b := loginRaw(t, ts.addr, bob)
	for i := range want {
		m := b.expect(wire.TypeMESG)
		if string(m.Body) != want[i] {
			t.Fatalf("%d: body %.20q, want %.20q", i, m.Body, want[i])
		}
		if _, ok := m.Lookup("Message-ID"); ok {
			t.Fatalf("%d: Message-ID sent to a client without mesg-ack", i)
		}
	}
	waitHeld(t, ts.store, bob, 0)
	// Live: queued on the connection, not stored.
	sendTexts(a, bob, "live")
	if m := b.expect(wire.TypeMESG); string(m.Body) != "live" || m.Get("Message-ID") != "" {
		t.Errorf("live MESG %v %q", m.Headers, m.Body)
	}
	if !ts.srv.Online(bob) {
		t.Error("bob was disconnected")
	}
}

// gateStore is a MemStore whose PutMessage waits for the test.
type gateStore struct {
	*imipserver.MemStore
	entered chan struct{}
	release chan struct{}
	stored  atomic.Int64 // ID of the last message stored
}

func (g *gateStore) PutMessage(ctx context.Context, m imipserver.Message) (int64, error) {
	g.entered <- struct{}{}
	<-g.release
	id, err := g.MemStore.PutMessage(ctx, m)
	g.stored.Store(id)
	return id, err
}

// TestSenderACKAfterStore: without the hold (Config.HoldWrites), the
// sender's ACK 600 comes only once the message is stored, for an offline
// recipient and for one online with mesg-ack (whose live messages are
// stored before they are pushed).
func TestSenderACKAfterStore(t *testing.T) {
	for _, online := range []bool{false, true} {
		t.Run(fmt.Sprint("recipient online ", online), func(t *testing.T) {
			st := &gateStore{MemStore: imipserver.NewMemStore(), entered: make(chan struct{}), release: make(chan struct{})}
			for _, acct := range testAccounts {
				st.PutAccount(context.Background(), acct)
			}
			ts := startServer(t, imipserver.Config{Store: st, HoldWrites: -1}) // held_test.go: with the hold
			var b *rawClient
			if online {
				b = dialRaw(t, ts.addr)
				b.loginMesgAck(bob)
			}
			a := loginRaw(t, ts.addr, alice)
			id := a.send(wire.TypeMESG, "", "durable", wire.HdrTo, string(bob))
			<-st.entered
			a.expectSilence(100 * time.Millisecond)
			if b != nil {
				b.expectSilence(10 * time.Millisecond)
			}
			close(st.release)
			a.expectACK(wire.CodeOK, id)
			if b != nil {
				m := b.expect(wire.TypeMESG)
				if want := "m" + strconv.FormatInt(st.stored.Load(), 10); m.Get("Message-ID") != want {
					t.Errorf("Message-ID %q, want %q", m.Get("Message-ID"), want)
				}
				if len(held(t, st, bob)) != 1 {
					t.Error("the pushed message is not held until confirmed")
				}
			}
		})
	}
}

// TestMesgAckRestartKeepsUnconfirmed: pushed but unconfirmed messages
// survive a restart of the server on the same SQLite file, and come back
// with the same Message-ID and Timo.
func TestMesgAckRestartKeepsUnconfirmed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imipd.db")
	st := openSQLite(t, path)
	for _, acct := range testAccounts {
		if err := st.PutAccount(context.Background(), acct); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, imipserver.Config{Store: st})
	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	a := loginRaw(t, ts.addr, alice)
	id := a.send(wire.TypeMESG, "", "survive", wire.HdrTo, string(bob))
	a.expectACK(wire.CodeOK, id)
	first := b.expect(wire.TypeMESG)
	ts.stop()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = openSQLite(t, path)
	defer st.Close()
	ts = startServer(t, imipserver.Config{Store: st})
	b = dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	m := b.expect(wire.TypeMESG)
	if string(m.Body) != "survive" || m.Get("Message-ID") != first.Get("Message-ID") || m.Get(wire.HdrTimo) != first.Get(wire.HdrTimo) {
		t.Errorf("after restart: %v %q; first push %v", m.Headers, m.Body, first.Headers)
	}
	b.confirm(blockID(t, m))
	b.expectPing()
	waitHeld(t, st, bob, 0)
	ts.stop()
}

// TestManySendersOneMesgAckRecipient: concurrent senders (their messages
// share SQLite commits) to one mesg-ack recipient with a small window:
// each sender's messages arrive complete and in its order.
func TestManySendersOneMesgAckRecipient(t *testing.T) {
	st := openSQLite(t, filepath.Join(t.TempDir(), "imipd.db"))
	defer st.Close()
	for _, acct := range testAccounts {
		if err := st.PutAccount(context.Background(), acct); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, imipserver.Config{Store: st, DeliveryWindow: 3})
	defer ts.stop()
	d := dialRaw(t, ts.addr)
	d.loginMesgAck(dave)
	const per = 30
	var wg sync.WaitGroup
	for _, from := range []wire.Number{alice, bob, carol} {
		c := loginRaw(t, ts.addr, from)
		wg.Go(func() {
			for i := range per {
				c.send(wire.TypeMESG, "", fmt.Sprintf("%s %02d", from, i), wire.HdrTo, string(dave))
			}
		})
		defer func() {
			for range per {
				if b, err := c.tryRead(5 * time.Second); err != nil || b.TypeLine() != "ACK 600" {
					t.Errorf("%s: %v %v", from, b, err)
					return
				}
			}
		}()
	}
	next := map[string]int{}
	for range 3 * per {
		m := d.expect(wire.TypeMESG)
		from, n, _ := strings.Cut(string(m.Body), " ")
		if n != fmt.Sprintf("%02d", next[from]) {
			t.Fatalf("from %s: got %s, want %02d", from, n, next[from])
		}
		next[from]++
		d.confirm(blockID(t, m))
	}
	wg.Wait()
	waitHeld(t, st, dave, 0)
}

func TestMESGTooLargeWithServerHeaders(t *testing.T) {
	ts := startServer(t, imipserver.Config{Limits: wire.Limits{MaxSize: 1024}})
	a := loginRaw(t, ts.addr, alice)
	// Fits the read limit, not once the server's headers are added.
	id := a.send(wire.TypeMESG, "", strings.Repeat("y", 950), wire.HdrTo, string(bob))
	a.expectACK(wire.CodeMalformedBlock, id)
	id = a.send(wire.TypeMESG, "", strings.Repeat("y", 700), wire.HdrTo, string(bob))
	a.expectACK(wire.CodeOK, id)
}
