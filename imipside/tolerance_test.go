package imipside

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"

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

// TestListRejectWithoutAck: the ACK to a client LIST REJECT is [ours]; a
// server that never sends it still gives the request an outcome, implicit,
// through its reply to a later block. An 8xx that does come is the failure.
func TestListRejectWithoutAck(t *testing.T) {
	ts := login(t, nil)
	if _, err := ts.s.SendListReject("7744387"); err != nil {
		t.Fatal(err)
	}
	ts.f.expect("LIST REJECT 7744387\r\n27\r\nID: 1003\r\nFrom: 6340564\r\n\r\n")
	ts.f.send(ack(811, 1003))
	want := ReplyEvent{ID: 1003, Type: RequestListReject, Number: "7744387", Code: wire.CodeIllegalUser}
	if diff := cmp.Diff(want, ts.ev.reply(t)); diff != "" {
		t.Errorf("ReplyEvent mismatch (-want +got):\n%s", diff)
	}

	for _, n := range []wire.Number{"42", "43"} { // 1004 and 1005: no ACK
		if _, err := ts.s.SendListReject(n); err != nil {
			t.Fatal(err)
		}
		ts.f.next()
	}
	if _, err := ts.s.SendStatus(wire.StatusBusy, ""); err != nil {
		t.Fatal(err)
	}
	ts.f.next()
	ts.f.send(ack(600, 1006))
	for i, w := range []ReplyEvent{
		{ID: 1004, Type: RequestListReject, Number: "42", Code: 600, Implicit: true},
		{ID: 1005, Type: RequestListReject, Number: "43", Code: 600, Implicit: true},
		{ID: 1006, Type: RequestSTAT, Code: 600},
	} {
		if diff := cmp.Diff(w, ts.ev.reply(t)); diff != "" {
			t.Errorf("%d: ReplyEvent mismatch (-want +got):\n%s", i, diff)
		}
	}
	// A stray 8xx for a settled reject reports nothing.
	ts.f.send(ack(811, 1005) + frame("STAT AWAY", "From: 1\r\nID: 2\r\n"))
	if ev, ok := ts.ev.next(t).(StatEvent); !ok {
		t.Errorf("got %#v for a settled LIST REJECT, want nothing", ev)
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
	want := MessageEvent{BlockID: 40, From: "7744387", To: testNumber, Text: "hi"}
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
