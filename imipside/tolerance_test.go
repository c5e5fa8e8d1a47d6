package imipside

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"imip-transport/imipside/wire"
)

// debugLogger returns a Logger writing text records, debug level and up, to w.
func debugLogger(w *syncWriter) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// logLines returns the records in logs whose text holds every one of subs.
func logLines(logs *syncWriter, subs ...string) []string {
	var out []string
	for line := range strings.Lines(logs.String()) {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// TestLoginMalformedBuddyHeader: a Buddy header that does not parse (a
// contact chose a nickname holding `", `) never fails the login; the entries
// that parse are kept and the rest is logged at warn level.
func TestLoginMalformedBuddyHeader(t *testing.T) {
	hostile := wire.FormatBuddyList([]wire.Buddy{{Number: "42", Nick: "a"}, {Number: "43", Nick: `x", y`}, {Number: "44", Nick: "b"}})
	tests := []struct {
		buddy string
		want  []wire.Buddy
		warn  bool
	}{
		0: {`7744387 "mawis76"`, []wire.Buddy{{Number: "7744387", Nick: "mawis76"}}, false},
		1: {hostile, []wire.Buddy{{Number: "42", Nick: "a"}, {Number: "43", Nick: "x"}, {Number: "44", Nick: "b"}}, true},
		2: {`42 "a", x",43 "b"`, []wire.Buddy{{Number: "42", Nick: "a"}, {Number: "43", Nick: "b"}}, true},
		3: {`x`, nil, true},
		4: {`42,`, []wire.Buddy{{Number: "42"}}, true},
	}
	for i, tt := range tests {
		f, dial := pipe(t)
		var logs syncWriter
		cfg := baseConfig(dial, nil)
		cfg.Logger = debugLogger(&logs)
		res := dialAsync(context.Background(), cfg)
		f.expect(goldenHELO)
		f.send(serverHELO("60", testSalt))
		f.expect(goldenLOGN)
		f.send(serverLOGN(tt.buddy))
		r := wait(t, res)
		if r.err != nil {
			t.Errorf("%d %q: Dial: %v, want a login", i, tt.buddy, r.err)
			continue
		}
		if diff := cmp.Diff(tt.want, r.s.Contacts()); diff != "" {
			t.Errorf("%d %q: Contacts() mismatch (-want +got):\n%s", i, tt.buddy, diff)
		}
		warns := logLines(&logs, "level=WARN", "Buddy header")
		if tt.warn && (len(warns) != 1 || !strings.Contains(warns[0], "kept="+strconv.Itoa(len(tt.want)))) {
			t.Errorf("%d %q: warn records %q, want one with kept=%d", i, tt.buddy, warns, len(tt.want))
		}
		if !tt.warn && len(warns) != 0 {
			t.Errorf("%d %q: unexpected warn records %q", i, tt.buddy, warns)
		}
		r.s.Close()
	}
}

// TestListRejectDoesNotWait: the ACK to a client LIST REJECT is [ours], so
// ListReject returns once the block is written, against a server that never
// answers it; an 8xx that does come is reported as a RequestFailedEvent.
func TestListRejectDoesNotWait(t *testing.T) {
	ts := login(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()

	// No ACK at all: ListReject returns at once, without error.
	start := time.Now()
	errc := async(func() error { return ts.s.ListReject(ctx, "7744387") })
	ts.f.expect("LIST REJECT 7744387\r\n27\r\nID: 1003\r\nFrom: 6340564\r\n\r\n")
	if err := wait(t, errc); err != nil {
		t.Fatalf("ListReject without ACK = %v, want nil", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("ListReject took %v without an ACK, want it not to wait", d)
	}

	// A late failure ACK is reported by Reference.
	ts.f.send(ack(811, 1003))
	want := RequestFailedEvent{ID: 1003, Type: "LIST REJECT", Number: "7744387", Code: wire.CodeIllegalUser}
	if diff := cmp.Diff(Event(want), ts.ev.next(t)); diff != "" {
		t.Errorf("event mismatch (-want +got):\n%s", diff)
	}

	// An ACK 600 reports nothing; nor does a stray 8xx for a reject that a
	// reply to a later block has confirmed.
	for _, n := range []wire.Number{"42", "43"} { // 1004 gets ACK 600, 1005 nothing
		errc := async(func() error { return ts.s.ListReject(ctx, n) })
		ts.f.next()
		if err := wait(t, errc); err != nil {
			t.Fatalf("ListReject %s: %v", n, err)
		}
	}
	ts.f.send(ack(600, 1004))
	errc = async(func() error { return ts.s.Ping(ctx) })
	ts.f.expect("PING\r\n12\r\nID: 1006\r\n\r\n")
	ts.f.send(ack(600, 1006))
	if err := wait(t, errc); err != nil {
		t.Fatalf("Ping after LIST REJECTs: %v", err)
	}
	if n := trackedCount(ts.s); n != 0 {
		t.Errorf("%d blocks tracked after a later reply, want 0", n)
	}
	ts.f.send(ack(811, 1005) + frame("STAT AWAY", "From: 1\r\nID: 2\r\n"))
	if ev, ok := ts.ev.next(t).(StatEvent); !ok {
		t.Errorf("got %#v for a confirmed LIST REJECT, want nothing", ev)
	}

	// The requests whose ACK is [wire] or [text] still wait for it.
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	errc = async(func() error { return ts.s.ListAccept(short, "7744387", "m") })
	ts.f.next()
	if err := wait(t, errc); err == nil {
		t.Error("ListAccept without ACK returned nil, want it to wait for the ACK")
	}
}

// TestEarlyPushOverflowLogged: blocks pushed before the LOGN reply beyond
// maxEarlyEvents are dropped, and the drop is logged at warn level with the
// count.
func TestEarlyPushOverflowLogged(t *testing.T) {
	const extra = 8
	f, dial := pipe(t)
	ev := newEvents()
	var logs syncWriter
	cfg := baseConfig(dial, ev)
	cfg.Logger = debugLogger(&logs)
	res := dialAsync(context.Background(), cfg)
	f.expect(goldenHELO)
	f.send(serverHELO("60", testSalt))
	f.expect(goldenLOGN)
	var pushes strings.Builder
	for range maxEarlyEvents + extra {
		pushes.WriteString(frame("STAT BUSY", "From: 1\r\nID: 5\r\n"))
	}
	f.send(pushes.String() + serverLOGN(""))
	r := wait(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.s.Close()
	for i := range maxEarlyEvents {
		if _, ok := ev.next(t).(StatEvent); !ok {
			t.Fatalf("event %d is not the pushed STAT", i)
		}
	}
	ev.none(t)
	if got := logLines(&logs, "level=WARN", "dropped=8"); len(got) != 1 {
		t.Errorf("want one warn record with dropped=8, log:\n%s", logs.String())
	}
}

// TestDroppedPushLogged: a pushed MESG or LIST that cannot be decoded is a
// lost message or request, logged at warn level; a MESG whose To carries a
// nickname is delivered.
func TestDroppedPushLogged(t *testing.T) {
	var logs syncWriter
	ts := login(t, func(c *Config) { c.Logger = debugLogger(&logs) })
	ts.f.send(frame("MESG", "From: 7744387\r\nID: 40\r\nTo: 6340564 \"me\"\r\n\r\nhi") +
		frame("MESG", "From: 7744387\r\nID: 41\r\nTo: x\r\n\r\nsecret text") +
		frame("LIST ADD", "ID: 42\r\nList: Buddy\r\n") +
		frame("STAT WEIRD", "From: 7744387\r\nID: 43\r\n") +
		frame("STAT AWAY", "From: 1\r\nID: 44\r\n"))
	want := MessageEvent{ID: 40, From: "7744387", To: testNumber, Text: "hi"}
	if diff := cmp.Diff(Event(want), ts.ev.next(t)); diff != "" {
		t.Errorf("MESG with a To nickname (-want +got):\n%s", diff)
	}
	if _, ok := ts.ev.next(t).(StatEvent); !ok {
		t.Fatal("the dropped blocks produced events")
	}
	tests := []struct {
		id    string
		level string
	}{
		0: {"id=41", "level=WARN"},
		1: {"id=42", "level=WARN"},
		2: {"id=43", "level=DEBUG"},
	}
	for i, tt := range tests {
		if got := logLines(&logs, tt.level, "ignoring block", tt.id); len(got) != 1 {
			t.Errorf("%d: want one %s record for %s, log:\n%s", i, tt.level, tt.id, logs.String())
		}
	}
	if strings.Contains(logs.String(), "secret text") {
		t.Error("a message text reached the log")
	}
}
