package gateway

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"imip-transport/imipside"
	"imip-transport/imipside/imipserver/imiptest"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// realIMIP is a gateway wired to the real IMIP client session and the real
// reference server (in memory, on loopback); only the XMPP side is a fake.
type realIMIP struct {
	*harness
	srv   *imiptest.Server
	dials *atomic.Int64 // logins the gateway started
}

func newRealIMIP(t *testing.T, opts imiptest.Options) *realIMIP {
	t.Helper()
	srv := imiptest.Start(t, opts)
	dials := new(atomic.Int64)
	h := newHarness(t, "", func(c *Config) {
		c.InboxSize = 256 // the test sends in bursts
		c.Limits.MessageBurst = 1000
		c.Dialer = DialerFunc(func(ctx context.Context, n wire.Number, pw string, hd imipside.Handler) (IMIPSession, error) {
			dials.Add(1)
			return imipside.Dial(ctx, imipside.Config{Addr: srv.Addr(), Number: n, Password: pw, Handler: hd})
		})
	})
	return &realIMIP{harness: h, srv: srv, dials: dials}
}

// peer is an IMIP user on the other side, with the real client.
type peer struct {
	t      *testing.T
	sess   *imipside.Session
	events chan imipside.Event
}

func dialPeer(t *testing.T, srv *imiptest.Server, n wire.Number, pw string) *peer {
	t.Helper()
	p := &peer{t: t, events: make(chan imipside.Event, 4096)}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := imipside.Dial(ctx, imipside.Config{Addr: srv.Addr(), Number: n, Password: pw, AutoConfirm: true,
		Handler: imipside.HandlerFunc(func(ev imipside.Event) { p.events <- ev })})
	if err != nil {
		t.Fatalf("peer %s: %v", n, err)
	}
	p.sess = s
	t.Cleanup(func() { _ = s.Close() })
	return p
}

// messages waits until the peer has received n messages and returns their
// texts, in order.
func (p *peer) messages(n int) []string {
	p.t.Helper()
	var got []string
	deadline := time.After(waitFor)
	for len(got) < n {
		select {
		case ev := <-p.events:
			if m, ok := ev.(imipside.MessageEvent); ok {
				got = append(got, m.Text)
			}
		case <-deadline:
			p.t.Fatalf("peer got %d messages within %v, want %d: %q", len(got), waitFor, n, got)
		}
	}
	return got
}

// The gateway against the real IMIP session and server: messages flow
// both ways, in order, each confirmed by the other side (nothing is left
// in either store), including across a drop of the user's IMIP connection.
func TestRealIMIPDurableChat(t *testing.T) {
	r := newRealIMIP(t, imiptest.Options{Accounts: []imiptest.Account{
		{Number: "1001001", Password: "pw", Nick: "alice"},
		{Number: "1002002", Password: "bob-pw", Nick: "bob"},
	}})
	r.register(alice, "1001001")
	r.available(aliceHW, "", "")
	if !r.srv.WaitOnline("1001001", true, waitFor) {
		t.Fatal("alice not logged in to IMIP")
	}
	bob := dialPeer(t, r.srv, "1002002", "bob-pw")
	mark := r.x.mark()
	const n = 50
	for i := range n {
		r.chat(fmt.Sprintf("x%d", i), aliceHW, cj("1002002"), "chat", fmt.Sprint("to bob ", i))
		if _, err := bob.sess.SendMessage("1001001", fmt.Sprint("to alice ", i)); err != nil {
			t.Fatal(err)
		}
	}
	got := bob.messages(n)
	for i, text := range got {
		if text != fmt.Sprint("to bob ", i) {
			t.Fatalf("bob's message %d = %q, want in order", i, text)
		}
	}
	waitUntil(t, "alice's messages", func() bool {
		return len(r.x.messages(mark, func(m xmppside.Message) bool { return m.Type == "chat" })) >= n
	})
	for i, m := range r.x.messages(mark, func(m xmppside.Message) bool { return m.Type == "chat" }) {
		if m.Body != fmt.Sprint("to alice ", i) || !m.From.Equal(cj("1002002")) {
			t.Fatalf("alice's message %d = %q from %s, want in order from bob", i, m.Body, m.From)
		}
	}
	// Everything confirmed: nothing left in the gateway's store, nothing
	// held by the IMIP server.
	waitUntil(t, "the gateway's queue empty", func() bool {
		qs, _ := r.st.Messages(context.Background(), alice)
		return len(qs) == 0
	})
	waitUntil(t, "the IMIP server's queue empty", func() bool {
		ms, _ := r.srv.Store().Messages(context.Background(), "1001001", 0, 100)
		return len(ms) == 0
	})

	// alice's IMIP connection drops: messages to her wait on the server
	// and come after the gateway logs in again; hers wait in the gateway.
	r.srv.Kill("1001001")
	if _, err := bob.sess.SendMessage("1001001", "while you were away"); err != nil {
		t.Fatal(err)
	}
	r.chat("late", aliceHW, cj("1002002"), "chat", "sent during the drop")
	if got := bob.messages(1); got[0] != "sent during the drop" {
		t.Errorf("bob got %q after the drop", got)
	}
	r.x.waitMessage(t, mark, "the message of the drop", func(m xmppside.Message) bool { return m.Body == "while you were away" })
	if errs := r.x.messages(mark, func(m xmppside.Message) bool { return m.Type == "error" }); len(errs) != 0 {
		t.Errorf("errors: %s", dump(toAny(errs)))
	}
}

// A re-registration with a wrong password, against the real IMIP server,
// leaves the live session alone: the contact never sees the user go
// offline, no new login replaces the session, and the user's chat goes on.
func TestRealIMIPFailedReRegistrationNoFlap(t *testing.T) {
	r := newRealIMIP(t, imiptest.Options{Accounts: []imiptest.Account{
		{Number: "1001001", Password: "pw", Nick: "alice"},
		{Number: "1002002", Password: "bob-pw", Nick: "bob"},
	}})
	r.register(alice, "1001001")
	r.available(aliceHW, "", "")
	if !r.srv.WaitOnline("1001001", true, waitFor) {
		t.Fatal("alice not logged in to IMIP")
	}
	bob := dialPeer(t, r.srv, "1002002", "bob-pw")
	r.settle()
	dials := r.dials.Load()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := r.g.Register(ctx, aliceJID, "1001001", "wrong"); err == nil {
		t.Fatal("re-registration with a wrong password succeeded")
	}
	r.chat("after", aliceHW, cj("1002002"), "chat", "still connected")
	if got := bob.messages(1); got[0] != "still connected" {
		t.Fatalf("bob got %q", got)
	}
	if n := r.dials.Load() - dials; n != 1 {
		t.Errorf("%d IMIP logins after the failed re-registration, want 1 (its own check)", n)
	}
	if !r.srv.Online("1001001") {
		t.Error("alice offline on IMIP")
	}
}
