package imipside_test

// Client against the reference server (imipserver via imiptest) over
// loopback: every flow of docs/PROTOCOL.md, then the server's fault knobs.

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"imip-transport/imipside"
	"imip-transport/imipside/imipserver/imiptest"
	"imip-transport/imipside/wire"
)

const (
	alice = wire.Number("1001001")
	bob   = wire.Number("1002002")
	carol = wire.Number("1003003")
)

var flowAccounts = []imiptest.Account{
	{Number: alice, Password: "alice-pw", Nick: "alice"},
	{Number: bob, Password: "bob-pw", Nick: "bob"},
	{Number: carol, Password: "carol-pw", Nick: "carol"},
}

func flowPassword(n wire.Number) string {
	for _, a := range flowAccounts {
		if a.Number == n {
			return a.Password
		}
	}
	return "nope"
}

// recorder collects a session's events.
type recorder struct{ ch chan imipside.Event }

func (r *recorder) HandleIMIP(ev imipside.Event) {
	select {
	case r.ch <- ev:
	default:
		panic("flows_test: recorder full")
	}
}

// user is a logged-in client session with its events.
type user struct {
	*imipside.Session
	ev *recorder
}

func startServer(t *testing.T, f imiptest.Faults) *imiptest.Server {
	return imiptest.Start(t, imiptest.Options{Accounts: flowAccounts, Faults: f})
}

func login(t *testing.T, srv *imiptest.Server, n wire.Number) *user {
	t.Helper()
	u, err := tryLogin(t, srv, n, flowPassword(n))
	if err != nil {
		t.Fatalf("login %s: %v", n, err)
	}
	return u
}

func tryLogin(t *testing.T, srv *imiptest.Server, n wire.Number, pw string) (*user, error) {
	t.Helper()
	rec := &recorder{ch: make(chan imipside.Event, 256)}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := imipside.Dial(ctx, imipside.Config{Addr: srv.Addr(), Number: n, Password: pw, Handler: rec})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { s.Close() })
	return &user{Session: s, ev: rec}, nil
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// next returns the next event of type T that match accepts, skipping
// others; it fails the test after 5 s.
func next[T imipside.Event](t *testing.T, u *user, match func(T) bool) T {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-u.ev.ch:
			if e, ok := ev.(T); ok && (match == nil || match(e)) {
				return e
			}
			t.Logf("%s: skipping %#v", u.Number(), ev)
		case <-timeout:
			var zero T
			t.Fatalf("%s: no %T within 5s", u.Number(), zero)
			return zero
		}
	}
}

// none checks that no event of type T arrives within d.
func none[T imipside.Event](t *testing.T, u *user, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev := <-u.ev.ch:
			if _, ok := ev.(T); ok {
				t.Fatalf("%s: unexpected %#v", u.Number(), ev)
			}
		case <-timeout:
			return
		}
	}
}

func statFrom(n wire.Number, st wire.Status, text string) func(imipside.StatEvent) bool {
	return func(e imipside.StatEvent) bool { return e.From == n && e.Status == st && e.Text == text }
}

func TestFlowLogin(t *testing.T) {
	srv := startServer(t, imiptest.Faults{})
	for i, tc := range []struct {
		name    string
		number  wire.Number
		pw      string
		wantErr error
		code    wire.Code
	}{
		{"ok", alice, "alice-pw", nil, 0},
		{"wrong password", bob, "wrong", imipside.ErrWrongPassword, wire.CodeWrongPassword},
		{"unknown user (answered like a wrong password)", "9999999", "x", imipside.ErrWrongPassword, wire.CodeWrongPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := tryLogin(t, srv, tc.number, tc.pw)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("%d: %v", i, err)
				}
				if !srv.Online(tc.number) || len(u.Contacts()) != 0 || u.KeepAlive() != 60*time.Second {
					t.Errorf("%d: online %v contacts %v keep-alive %v", i, srv.Online(tc.number), u.Contacts(), u.KeepAlive())
				}
				return
			}
			var le *imipside.LoginError
			if !errors.Is(err, tc.wantErr) || !errors.As(err, &le) || le.Code != tc.code {
				t.Fatalf("%d: err %v, want %v (code %d)", i, err, tc.wantErr, tc.code)
			}
			if srv.Online(tc.number) {
				t.Errorf("%d: online after a refused login", i)
			}
		})
	}
}

func TestFlowPresenceBothWays(t *testing.T) {
	srv := startServer(t, imiptest.Faults{})
	ctx := ctx5(t)
	for _, p := range [][2]wire.Number{{alice, bob}, {bob, alice}} {
		if err := srv.Store().AddContact(ctx, p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	a := login(t, srv, alice)
	if got := a.Contacts(); len(got) != 1 || got[0] != (wire.Buddy{Number: bob, Nick: "bob"}) {
		t.Errorf("alice contacts %v", got)
	}
	b := login(t, srv, bob)
	next(t, b, statFrom(alice, wire.StatusOnline, "")) // [ours] pushed at login
	next(t, a, statFrom(bob, wire.StatusOnline, ""))   // bob came online

	if err := a.SetStatus(ctx, wire.StatusAway, "out for lunch"); err != nil {
		t.Fatal(err)
	}
	next(t, b, statFrom(alice, wire.StatusAway, "out for lunch"))
	if err := b.SetStatus(ctx, wire.StatusBusy, "in a meeting"); err != nil {
		t.Fatal(err)
	}
	next(t, a, statFrom(bob, wire.StatusBusy, "in a meeting"))

	// Invisible: the other side sees OFFLINE, without the text.
	if err := a.SetStatus(ctx, wire.StatusOffline, "secret"); err != nil {
		t.Fatal(err)
	}
	next(t, b, statFrom(alice, wire.StatusOffline, ""))

	// An unknown status: ACK 801.
	var ae *imipside.AckError
	if err := a.SetStatus(ctx, wire.Status("SLEEPING"), ""); !errors.As(err, &ae) || ae.Code != wire.CodeUnknownStatus {
		t.Errorf("unknown status: %v, want AckError 801", err)
	}

	// bob's connection drops: alice sees him go OFFLINE.
	srv.Kill(bob)
	next(t, a, statFrom(bob, wire.StatusOffline, ""))
	if ev := next[imipside.ClosedEvent](t, b, nil); ev.Err == nil {
		t.Errorf("bob's session ended with a nil error after a drop")
	}
}

func TestFlowMessages(t *testing.T) {
	srv := startServer(t, imiptest.Faults{})
	a := login(t, srv, alice)
	b := login(t, srv, bob)

	before := time.Now().UTC().Truncate(time.Second)
	if _, err := a.SendMessage(bob, "hi bob, ça va?"); err != nil {
		t.Fatal(err)
	}
	m := next(t, b, func(m imipside.MessageEvent) bool { return true })
	if m.From != alice || m.Nick != "alice" || m.To != bob || m.Text != "hi bob, ça va?" ||
		m.Time.Before(before) || m.Time.After(time.Now()) {
		t.Errorf("bob got %+v", m)
	}
	if _, err := b.SendMessage(alice, "fine, thanks"); err != nil {
		t.Fatal(err)
	}
	if m := next[imipside.MessageEvent](t, a, nil); m.From != bob || m.Nick != "bob" || m.Text != "fine, thanks" {
		t.Errorf("alice got %+v", m)
	}

	// Every MESG gets its outcome; an unknown recipient is a failure with 811.
	reply := func(id uint64) func(imipside.ReplyEvent) bool {
		return func(r imipside.ReplyEvent) bool { return r.ID == id }
	}
	id, err := a.SendMessage("9999999", "anyone?")
	if err != nil {
		t.Fatal(err)
	}
	if f := next(t, a, reply(id)); f.Code != wire.CodeIllegalUser || f.Number != "9999999" || f.Type != imipside.RequestMESG || f.Implicit {
		t.Errorf("failure event %+v, want ID %d code 811", f, id)
	}
}

func TestFlowMessageToOfflineUser(t *testing.T) {
	srv := startServer(t, imiptest.Faults{})
	ctx := ctx5(t)
	a := login(t, srv, alice)
	sent := time.Now().UTC().Truncate(time.Second)
	for _, text := range []string{"are you there?", "call me"} {
		if _, err := a.SendMessage(carol, text); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Ping(ctx); err != nil { // the server answers in order: both MESGs were handled
		t.Fatal(err)
	}
	for range 2 {
		if r := next[imipside.ReplyEvent](t, a, nil); !r.OK() {
			t.Errorf("MESG to an offline user: %+v", r)
		}
	}
	time.Sleep(1100 * time.Millisecond) // the login is in a later second than Timo
	c := login(t, srv, carol)
	for i, want := range []string{"are you there?", "call me"} {
		m := next[imipside.MessageEvent](t, c, nil)
		if m.Text != want || m.From != alice || m.Time.Before(sent) || m.Time.After(sent.Add(time.Second)) {
			t.Errorf("%d: carol got %+v, want %q sent at %v", i, m, want, sent)
		}
	}
}

func TestFlowAddAcceptPresence(t *testing.T) {
	srv := startServer(t, imiptest.Faults{})
	ctx := ctx5(t)
	a := login(t, srv, alice)
	b := login(t, srv, bob)
	if err := b.SetStatus(ctx, wire.StatusAway, "gone fishing"); err != nil {
		t.Fatal(err)
	}
	if err := a.ListAdd(ctx, bob, "it's alice, add me?"); err != nil {
		t.Fatal(err)
	}
	req := next[imipside.ListAddEvent](t, b, nil)
	if req.From != alice || req.Nick != "alice" || req.Text != "it's alice, add me?" {
		t.Errorf("request %+v", req)
	}
	if err := b.ListAccept(ctx, req.From, req.Nick); err != nil {
		t.Fatal(err)
	}
	// Accepting sends bob's current presence to alice.
	next(t, a, statFrom(bob, wire.StatusAway, "gone fishing"))
	if err := b.SetStatus(ctx, wire.StatusOnline, ""); err != nil {
		t.Fatal(err)
	}
	next(t, a, statFrom(bob, wire.StatusOnline, ""))
	// One-directional: bob does not see alice.
	if err := a.SetStatus(ctx, wire.StatusBusy, ""); err != nil {
		t.Fatal(err)
	}
	none[imipside.StatEvent](t, b, 100*time.Millisecond)
	// The list is on the server: alice's next login carries bob.
	if err := a.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	a = login(t, srv, alice)
	if got := a.Contacts(); len(got) != 1 || got[0] != (wire.Buddy{Number: bob, Nick: "bob"}) {
		t.Errorf("contacts after re-login %v", got)
	}
	next(t, a, statFrom(bob, wire.StatusOnline, ""))
}

func TestFlowRequestWhileOffline(t *testing.T) {
	srv := startServer(t, imiptest.Faults{})
	ctx := ctx5(t)
	a := login(t, srv, alice)
	if err := a.ListAdd(ctx, carol, "hello carol"); err != nil {
		t.Fatal(err)
	}
	c := login(t, srv, carol)
	if req := next[imipside.ListAddEvent](t, c, nil); req.From != alice || req.Text != "hello carol" {
		t.Errorf("request %+v", req)
	}
	if err := c.ListAccept(ctx, alice, "alice"); err != nil {
		t.Fatal(err)
	}
	next(t, a, statFrom(carol, wire.StatusOnline, ""))
}

func TestFlowAddReject(t *testing.T) {
	srv := startServer(t, imiptest.Faults{})
	ctx := ctx5(t)
	a := login(t, srv, alice)
	c := login(t, srv, carol)
	if err := a.ListAdd(ctx, carol, ""); err != nil {
		t.Fatal(err)
	}
	req := next[imipside.ListAddEvent](t, c, nil)
	id, err := c.SendListReject(req.From)
	if err != nil {
		t.Fatal(err)
	}
	if r := next(t, c, func(r imipside.ReplyEvent) bool { return r.ID == id }); !r.OK() || r.Implicit {
		t.Errorf("LIST REJECT outcome %+v, want an ACK 600", r)
	}
	if ev := next[imipside.ListRejectEvent](t, a, nil); ev.From != carol {
		t.Errorf("reject %+v", ev)
	}
	// Nothing changed: a re-login shows an empty list.
	if err := a.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if got := login(t, srv, alice).Contacts(); len(got) != 0 {
		t.Errorf("contacts %v after a rejected request", got)
	}
	// Adding an unknown number: ACK 811.
	if err := c.ListAdd(ctx, "9999999", ""); !errors.Is(err, imipside.ErrIllegalUser) {
		t.Errorf("ListAdd unknown: %v, want ErrIllegalUser", err)
	}
}

func TestFlowRemove(t *testing.T) {
	srv := startServer(t, imiptest.Faults{})
	ctx := ctx5(t)
	if err := srv.Store().AddContact(ctx, alice, bob); err != nil {
		t.Fatal(err)
	}
	a := login(t, srv, alice)
	b := login(t, srv, bob)
	next(t, a, statFrom(bob, wire.StatusOnline, ""))
	if err := a.ListRemove(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if ev := next[imipside.ListRemoveEvent](t, b, nil); ev.From != alice {
		t.Errorf("remove %+v", ev)
	}
	// alice no longer sees bob.
	if err := b.SetStatus(ctx, wire.StatusAway, ""); err != nil {
		t.Fatal(err)
	}
	none[imipside.StatEvent](t, a, 100*time.Millisecond)
}

func TestFlowPingDisc(t *testing.T) {
	srv := startServer(t, imiptest.Faults{})
	ctx := ctx5(t)
	a := login(t, srv, alice)
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := next[imipside.ClosedEvent](t, a, nil); ev.Err != nil {
		t.Errorf("ClosedEvent after Disconnect: %v", ev.Err)
	}
	if !srv.WaitOnline(alice, false, 5*time.Second) {
		t.Error("alice still online after DISC")
	}
	if err := a.Ping(ctx); !errors.Is(err, imipside.ErrClosed) {
		t.Errorf("Ping after Disconnect: %v, want ErrClosed", err)
	}
}

// TestFlowFaultsWireStyle runs a short flow against servers that write
// blocks differently; the client must not care.
func TestFlowFaultsWireStyle(t *testing.T) {
	for i, tc := range []struct {
		name string
		f    imiptest.Faults
	}{
		{"omit empty line", imiptest.Faults{OmitEmptyLine: true}},
		{"always empty line", imiptest.Faults{AlwaysEmptyLine: true}},
		{"shuffled headers", imiptest.Faults{ShuffleHeaders: true}},
		{"ID last", imiptest.Faults{IDLast: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, tc.f)
			ctx := ctx5(t)
			if err := srv.Store().AddContact(ctx, alice, bob); err != nil {
				t.Fatal(err)
			}
			a := login(t, srv, alice)
			b := login(t, srv, bob)
			next(t, a, statFrom(bob, wire.StatusOnline, ""))
			if err := b.SetStatus(ctx, wire.StatusBusy, ""); err != nil {
				t.Fatalf("%d: %v", i, err)
			}
			next(t, a, statFrom(bob, wire.StatusBusy, ""))
			if _, err := b.SendMessage(alice, "x"); err != nil {
				t.Fatal(err)
			}
			if m := next[imipside.MessageEvent](t, a, nil); m.Text != "x" || m.Nick != "bob" || m.Time.IsZero() {
				t.Errorf("%d: %+v", i, m)
			}
			if err := a.Ping(ctx); err != nil {
				t.Fatalf("%d: %v", i, err)
			}
		})
	}
}

func TestFlowFaultDropAfterLogin(t *testing.T) {
	srv := startServer(t, imiptest.Faults{DropAfterLogin: true})
	a := login(t, srv, alice)
	ev := next[imipside.ClosedEvent](t, a, nil)
	if ev.Err == nil {
		t.Error("ClosedEvent.Err is nil after the server dropped the connection")
	}
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if a.Err() == nil {
		t.Error("Err() is nil after the drop")
	}
}

func TestFlowFaultDelayedACK(t *testing.T) {
	// Long enough that a 50 ms context cannot see the ACK even on a loaded
	// machine.
	const delay = time.Second
	srv := startServer(t, imiptest.Faults{DelayACK: delay})
	ctx := ctx5(t)
	a := login(t, srv, alice)
	start := time.Now()
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < delay {
		t.Errorf("Ping returned after %v, before the delayed ACK (%v)", d, delay)
	}
	// A caller that gives up early gets its ctx error; the late ACK is
	// dropped and the session still works.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := a.SetStatus(short, wire.StatusAway, ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("SetStatus with a 50ms ctx: %v, want DeadlineExceeded", err)
	}
	if err := a.SetStatus(ctx, wire.StatusBusy, ""); err != nil {
		t.Fatal(err)
	}
	if err := a.Err(); err != nil {
		t.Errorf("session ended: %v", err)
	}
}

func TestFlowFaultNoOurs(t *testing.T) {
	srv := startServer(t, imiptest.Faults{NoOurs: true})
	ctx := ctx5(t)
	if err := srv.Store().AddContact(ctx, bob, alice); err != nil {
		t.Fatal(err)
	}
	a := login(t, srv, alice)
	b := login(t, srv, bob)
	// No presence push at login: bob learns alice's state only on change.
	none[imipside.StatEvent](t, b, 150*time.Millisecond)
	if err := a.SetStatus(ctx, wire.StatusAway, ""); err != nil {
		t.Fatal(err)
	}
	next(t, b, statFrom(alice, wire.StatusAway, ""))

	// A request that is rejected without S LIST REJECT simply stays pending.
	c := login(t, srv, carol)
	if err := a.ListAdd(ctx, carol, "hi"); err != nil {
		t.Fatal(err)
	}
	next[imipside.ListAddEvent](t, c, nil)
	if _, err := c.SendListReject(alice); err != nil {
		t.Fatal(err)
	}
	none[imipside.ListRejectEvent](t, a, 200*time.Millisecond)
	// Removing without S LIST REMOVE: bob hears nothing.
	if err := b.ListRemove(ctx, alice); err != nil {
		t.Fatal(err)
	}
	none[imipside.ListRemoveEvent](t, a, 100*time.Millisecond)
	// The client still works.
	if _, err := a.SendMessage(carol, "still here"); err != nil {
		t.Fatal(err)
	}
	if m := next[imipside.MessageEvent](t, c, nil); m.Text != "still here" {
		t.Errorf("%+v", m)
	}
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFlowFaultRawBytes(t *testing.T) {
	srv := startServer(t, imiptest.Faults{})
	ctx := ctx5(t)
	a := login(t, srv, alice)

	// A well-formed block pushed raw, Odigo style, is decoded.
	srv.PushRaw(alice, sized("STAT BUSY", "From: 1002002\r\nID: 9\r\n\r\nbusy"))
	next(t, a, statFrom(bob, wire.StatusBusy, "busy"))
	// An unknown block type is ignored.
	srv.PushRaw(alice, sized("ZZZZ", "ID: 10\r\n"))
	if err := a.Ping(ctx); err != nil {
		t.Fatalf("after an unknown block: %v", err)
	}
	// A malformed block ends the session with a wire error.
	if !srv.PushRaw(alice, []byte("STAT ONLINE\r\nxyz\r\nFrom: 1002002\r\n")) {
		t.Fatal("PushRaw failed")
	}
	ev := next[imipside.ClosedEvent](t, a, nil)
	var we *wire.Error
	if !errors.As(ev.Err, &we) || !errors.Is(ev.Err, wire.ErrBadSize) {
		t.Errorf("ClosedEvent.Err = %v, want a *wire.Error for the bad size", ev.Err)
	}
	if !srv.WaitOnline(alice, false, 5*time.Second) {
		t.Error("the server still has alice online after the client closed")
	}
}

// sized returns a raw block with the right SIZE line for content.
func sized(typeLine, content string) []byte {
	return []byte(typeLine + "\r\n" + strconv.Itoa(len(content)) + "\r\n" + content)
}
