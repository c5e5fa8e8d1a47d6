package imipside

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"imip-transport/imipside/wire"
)

var msgTime = time.Date(2001, 3, 4, 5, 6, 7, 0, time.UTC)

func TestDecodePush(t *testing.T) {
	tests := []struct {
		raw  string
		want Event // nil: ignored
	}{
		0: {frame("STAT ONLINE", "From: 7744387\r\nID: 19196\r\n"), StatEvent{From: "7744387", Status: wire.StatusOnline}},
		1: {frame("STAT AWAY", "From: 7744387\r\nID: 1\r\n\r\nat lunch"), StatEvent{From: "7744387", Status: wire.StatusAway, Text: "at lunch"}},
		2: {frame("STAT offline", "ID: 1\r\nfrom: 7744387 \"nick\"\r\n"), StatEvent{From: "7744387", Status: wire.StatusOffline}},
		3: {frame("STAT", "From: 7744387\r\nID: 1\r\n"), nil},
		4: {frame("STAT WEIRD", "From: 7744387\r\nID: 1\r\n"), nil},
		5: {frame("STAT ONLINE", "ID: 1\r\n"), nil},
		6: {frame("STAT ONLINE", "From: abc\r\nID: 1\r\n"), nil},
		7: {frame("MESG", "Content-Type: text/plain;charset=utf-8\r\nFrom: 7744387 \"mawis76\"\r\nID: 19200\r\nTimo: 2001-03-04T05:06:07Z\r\nTo: 6340564\r\n\r\nhello\r\nthere"),
			MessageEvent{BlockID: 19200, From: "7744387", Nick: "mawis76", To: "6340564", Time: msgTime, Text: "hello\r\nthere"}},
		8: {frame("MESG", "From: 7744387 \"a, \"b\"\"\r\nTime: 2001-03-04T05:06:07Z\r\nID: 5\r\n\r\nx"),
			MessageEvent{BlockID: 5, From: "7744387", Nick: `a, "b"`, To: testNumber, Time: msgTime, Text: "x"}},
		9: {frame("MESG", "From: 7744387\r\nTimo: yesterday\r\n\r\nno time"),
			MessageEvent{From: "7744387", To: testNumber, Text: "no time"}},
		10: {frame("MESG", "To: 6340564\r\n\r\nno sender"), nil},
		11: {frame("MESG", "From: 1\r\nTo: x\r\n\r\nbad recipient"), nil},
		12: {frame("LIST ADD", "From: 7744387 \"mawis76\"\r\nID: 7\r\nList: Buddy\r\n\r\nplease add me"),
			ListAddEvent{From: "7744387", Nick: "mawis76", Text: "please add me"}},
		13: {frame("LIST ADD", "From: 7744387 \"mawis76\"\r\nID: 7\r\nList: Buddy\r\n"), ListAddEvent{From: "7744387", Nick: "mawis76"}},
		14: {frame("LIST ACCEPT", "From: 7744387 \"m\"\r\nID: 8\r\n"), ListAcceptEvent{From: "7744387", Nick: "m"}},
		15: {frame("LIST ACCEPT 7744387 \"m, n\"", "ID: 8\r\n"), ListAcceptEvent{From: "7744387", Nick: "m, n"}},
		16: {frame("LIST ACCEPT 7744387 \"m\"", "From: 7744387\r\nID: 8\r\n"), ListAcceptEvent{From: "7744387", Nick: "m"}},
		17: {frame("LIST REJECT 7744387", "From: 7744387\r\nID: 9\r\n"), ListRejectEvent{From: "7744387"}},
		18: {frame("LIST REJECT 7744387", "ID: 9\r\n"), ListRejectEvent{From: "7744387"}},
		19: {frame("LIST REMOVE 7744387", "ID: 9\r\nList: Buddy\r\nFrom: 7744387\r\n"), ListRemoveEvent{From: "7744387"}},
		20: {frame("LIST REMOVE", "From: 7744387\r\n"), ListRemoveEvent{From: "7744387"}},
		21: {frame("list remove 7744387", "ID: 1\r\n"), ListRemoveEvent{From: "7744387"}},
		22: {frame("LIST REMOVE", "ID: 1\r\n"), nil},
		23: {frame("LIST REMOVE x1", "ID: 1\r\n"), nil},
		24: {frame("LIST MOVE 1", "From: 1\r\n"), nil},
		25: {frame("LIST", "From: 1\r\n"), nil},
		26: {frame("NOTE 1", "From: 1\r\n"), nil},
		27: {frame("MESG", "From: 1\r\nTo: 123 \"me\"\r\n\r\nx"), MessageEvent{From: "1", To: "123", Text: "x"}},
		28: {frame("MESG", "From: 1\r\nTo:  123 \r\n\r\nx"), MessageEvent{From: "1", To: "123", Text: "x"}},
		29: {frame("MESG", "From: 1\r\nTo: 123 me\r\n\r\nx"), nil},
	}
	for i, tt := range tests {
		b := parseBlock(t, tt.raw)
		got, err := decodePush(b, testNumber)
		if tt.want == nil {
			if err == nil || !errors.Is(err, errIgnored) {
				t.Errorf("%d: decodePush(%q) = %#v, %v; want ignored", i, tt.raw, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%d: decodePush(%q): %v", i, tt.raw, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%d: decodePush(%q) mismatch (-want +got):\n%s", i, tt.raw, diff)
		}
	}
}

// TestPushedStream sends Odigo-style blocks (no empty line, sorted headers,
// some with ID last), unknown blocks among them, all in one write.
func TestPushedStream(t *testing.T) {
	ts := login(t, nil)
	stream := "STAT ONLINE\r\n26\r\nFrom: 7744387\r\nID: 19196\r\n" +
		frame("FOO bar", "ID: 1\r\n") + // unknown type: ignored
		frame("PING", "ID: 2\r\n") + // server PING: not answered
		frame("ACK 600", "ID: 3\r\n") + // ACK without Reference: ignored
		frame("ACK 600", "ID: 3\r\nReference: 4711\r\n") + // references nothing
		frame("STAT BOGUS", "From: 1\r\nID: 4\r\n") + // unknown presence: ignored
		frame("MESG", "Content-Type: text/plain;charset=utf-8\r\nFrom: 7744387 \"mawis76\"\r\nTimo: 2001-03-04T05:06:07Z\r\nTo: 6340564\r\nID: 19200\r\n\r\nhi") +
		frame("LIST ADD", "From: 1234567 \"new, friend\"\r\nList: Buddy\r\nID: 19201\r\n\r\nadd me?") +
		frame("LIST REMOVE 7744387", "From: 7744387\r\nList: Buddy\r\nID: 19202\r\n")
	ts.f.send(stream)
	want := []Event{
		StatEvent{From: "7744387", Status: wire.StatusOnline},
		MessageEvent{BlockID: 19200, From: "7744387", Nick: "mawis76", To: testNumber, Time: msgTime, Text: "hi"},
		ListAddEvent{From: "1234567", Nick: "new, friend", Text: "add me?"},
		ListRemoveEvent{From: "7744387"},
	}
	for i, w := range want {
		if diff := cmp.Diff(w, ts.ev.next(t)); diff != "" {
			t.Errorf("event %d mismatch (-want +got):\n%s", i, diff)
		}
	}
	ts.ev.none(t)
	// Nothing was answered: the next client block is the one we send now.
	if _, err := ts.s.SendStatus(wire.StatusOnline, ""); err != nil {
		t.Fatal(err)
	}
	ts.f.expect("STAT ONLINE\r\n12\r\nID: 1003\r\n\r\n")
}

func TestMalformedBlockEndsSession(t *testing.T) {
	tests := []struct {
		raw      string
		sentinel error
	}{
		0: {"STAT ONLINE\r\nabc\r\n", wire.ErrBadSize},
		1: {frame("STAT ONLINE", "no colon here\r\n"), wire.ErrBadHeader},
		2: {"STAT ONLINE\r\n99999999\r\n", wire.ErrSizeTooLarge},
		3: {frame("ACK 6x0", "ID: 1\r\nReference: 1003\r\n"), wire.ErrBadValue},
	}
	for i, tt := range tests {
		ts := login(t, nil)
		errc := async(func() error { return ts.s.SetStatus(context.Background(), wire.StatusOnline, "") })
		ts.f.next()
		ts.f.send(tt.raw)
		ev, ok := ts.ev.next(t).(ClosedEvent) // no ReplyEvent for the request: it failed
		if !ok || !errors.Is(ev.Err, tt.sentinel) || !strings.Contains(ev.Err.Error(), "malformed") {
			t.Errorf("%d: event %#v, want ClosedEvent with %v", i, ev, tt.sentinel)
		}
		wait(t, ts.s.Done())
		if err := ts.s.Err(); !errors.Is(err, tt.sentinel) {
			t.Errorf("%d: Err() = %v, want %v", i, err, tt.sentinel)
		}
		if err := wait(t, errc); !errors.Is(err, ErrClosed) || !errors.Is(err, tt.sentinel) {
			t.Errorf("%d: pending SetStatus = %v, want ErrClosed wrapping %v", i, err, tt.sentinel)
		}
		ts.f.expectEOF()
	}
}

// TestMessageFailed: an ACK 811 to a MESG is its failure ReplyEvent; a
// second ACK for the same MESG reports nothing more.
func TestMessageFailed(t *testing.T) {
	ts := login(t, nil)
	id, err := ts.s.SendMessage("999", "to nobody")
	if err != nil || id != 1003 {
		t.Fatalf("SendMessage = %d, %v; want 1003", id, err)
	}
	ts.f.next()
	ts.f.send(ack(811, id))
	want := ReplyEvent{ID: 1003, Type: RequestMESG, Number: "999", Code: wire.CodeIllegalUser}
	if diff := cmp.Diff(Event(want), ts.ev.next(t)); diff != "" {
		t.Errorf("event mismatch (-want +got):\n%s", diff)
	}
	ts.f.send(ack(811, id) + frame("STAT AWAY", "From: 1\r\nID: 2\r\n"))
	if _, ok := ts.ev.next(t).(StatEvent); !ok {
		t.Error("a repeated ACK 811 was reported again")
	}
}

// TestOutstandingBounded: beyond MaxOutstanding requests without an
// outcome, a Send method returns ErrBusy and queues nothing; an outcome
// makes room again.
func TestOutstandingBounded(t *testing.T) {
	const max = 8
	ts := login(t, func(c *Config) { c.MaxOutstanding = max })
	for i := range max {
		if _, err := ts.s.SendMessage("1", "x"); err != nil {
			t.Fatalf("SendMessage %d: %v", i, err)
		}
		ts.f.next()
	}
	for i, send := range []func() (uint64, error){
		func() (uint64, error) { return ts.s.SendMessage("1", "x") },
		func() (uint64, error) { return ts.s.SendStatus(wire.StatusAway, "") },
		func() (uint64, error) { return ts.s.SendListReject("1") },
	} {
		if id, err := send(); !errors.Is(err, ErrBusy) || id != 0 || !strings.HasPrefix(err.Error(), "imipside: ") {
			t.Errorf("%d: beyond the bound: %d, %v; want ErrBusy", i, id, err)
		}
	}
	ts.f.send(ack(600, 1003))
	if r := ts.ev.reply(t); r.ID != 1003 {
		t.Fatalf("ReplyEvent %+v, want 1003", r)
	}
	id, err := ts.s.SendMessage("1", "x")
	if err != nil || id != 1003+max {
		t.Fatalf("SendMessage after an outcome = %d, %v; want %d", id, err, 1003+max)
	}
	ts.f.expect("MESG\r\n35\r\nID: " + itoa(id) + "\r\nTo: 1\r\nFrom: 6340564\r\n\r\nx")
}

// TestPushBeforeLoginReply: blocks pushed before the LOGN reply are kept
// and delivered, in order, once Dial has returned.
func TestPushBeforeLoginReply(t *testing.T) {
	f, dial := pipe(t)
	ev := newEvents()
	res := dialAsync(context.Background(), baseConfig(dial, ev))
	f.expect(goldenHELO)
	f.send(serverHELO("60", testSalt))
	f.expect(goldenLOGN)
	f.send(frame("STAT BUSY", "From: 1\r\nID: 5\r\n") + frame("JUNK", "ID: 6\r\n") +
		frame("LIST ADD", "From: 2 \"two\"\r\nID: 7\r\n") + serverLOGN(""))
	r := wait(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.s.Close()
	want := []Event{StatEvent{From: "1", Status: wire.StatusBusy}, ListAddEvent{From: "2", Nick: "two"}}
	for i, w := range want {
		if diff := cmp.Diff(w, ev.next(t)); diff != "" {
			t.Errorf("event %d mismatch (-want +got):\n%s", i, diff)
		}
	}
	ev.none(t)
}

// TestLargePushedMessages: big blocks, alone or followed by more bytes in
// the same write, are delivered whole and the session reads on.
func TestLargePushedMessages(t *testing.T) {
	ts := login(t, nil)
	big := strings.Repeat("é", 3000)
	mesg := frame("MESG", "From: 1\r\nID: 9\r\n\r\n"+big)
	ts.f.send(mesg + frame("STAT AWAY", "From: 1\r\nID: 10\r\n"))
	ts.f.send(mesg)
	ts.f.send(frame("STAT ONLINE", "From: 1\r\nID: 11\r\n"))
	for i, w := range []Event{
		MessageEvent{BlockID: 9, From: "1", To: testNumber, Text: big},
		StatEvent{From: "1", Status: wire.StatusAway},
		MessageEvent{BlockID: 9, From: "1", To: testNumber, Text: big},
		StatEvent{From: "1", Status: wire.StatusOnline},
	} {
		if diff := cmp.Diff(w, ts.ev.next(t)); diff != "" {
			t.Errorf("event %d mismatch (-want +got):\n%s", i, diff)
		}
	}
}
