package imipside

// A hostile server: malformed and odd blocks, each with its asserted
// reaction. Every case runs on its own session over net.Pipe, with a STAT
// request outstanding (ID 1003). A block is either ignored or turned into
// its events (the session stays up: the next good block is handled and the
// request gets its ReplyEvent), or it ends the session with a typed error
// (ClosedEvent.Err and Err match it, Done is closed, the request gets no
// ReplyEvent, the Send methods return ErrClosed). Throughout, the Handler
// contract is checked: one call at a time, nothing after ClosedEvent.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"imip-transport/imipside/wire"
)

// contractHandler records events and checks the Handler contract as they
// arrive.
type contractHandler struct {
	ch     chan Event
	busy   atomic.Int32
	closed atomic.Bool
	mu     sync.Mutex
	broken []string
}

func newContractHandler() *contractHandler { return &contractHandler{ch: make(chan Event, 4096)} }

func (h *contractHandler) HandleIMIP(ev Event) {
	if h.busy.Add(1) != 1 {
		h.breach("HandleIMIP called while another call runs")
	}
	defer h.busy.Add(-1)
	if h.closed.Load() {
		h.breach(fmt.Sprintf("event %#v after ClosedEvent", ev))
	}
	if _, ok := ev.(ClosedEvent); ok {
		h.closed.Store(true)
	}
	select {
	case h.ch <- ev:
	default:
		h.breach("more than 4096 events")
	}
}

func (h *contractHandler) breach(what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.broken = append(h.broken, what)
}

// check fails the test for any breach of the contract seen so far.
func (h *contractHandler) check(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.broken {
		t.Errorf("Handler contract: %s", b)
	}
}

func (h *contractHandler) next(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-h.ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
		return nil
	}
}

// sendHostile writes raw in pieces of chunk bytes (all at once for 0). The
// session may close the connection before reading everything: a write
// that fails then is expected, and the rest is not sent.
func (f *fakeServer) sendHostile(raw string, chunk int) {
	f.t.Helper()
	if chunk <= 0 {
		chunk = len(raw)
	}
	for len(raw) > 0 {
		n := min(chunk, len(raw))
		f.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(f.conn, raw[:n]); err != nil {
			if errors.Is(err, io.ErrClosedPipe) {
				return
			}
			f.t.Fatalf("server: write: %v", err)
		}
		raw = raw[n:]
	}
}

// stat is a server STAT from number, Odigo style.
func stat(status, from, text string) string {
	c := "From: " + from + "\r\nID: 40001\r\n"
	if text != "" {
		c += "\r\n" + text
	}
	return frame("STAT "+status, c)
}

// mesg is a server MESG with the given headers (after Content-Type) and body.
func mesg(headers, body string) string {
	return frame("MESG", "Content-Type: text/plain;charset=utf-8\r\n"+headers+"\r\n"+body)
}

// buddyList returns a Buddy header value of n entries.
func buddyList(n int) string {
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Itoa(1000000 + i))
		sb.WriteString(` "n`)
		sb.WriteString(strconv.Itoa(i))
		sb.WriteByte('"')
	}
	return sb.String()
}

// protocolErr matches an error that wraps ErrProtocol and the wire
// sentinel (nil: none required).
type protocolErr struct{ wire error }

// eofErr is a session ended by the connection, not by a malformed block.
type eofErr struct{ err error }

// hostileCase is one thing a server sends after login.
type hostileCase struct {
	name  string
	raw   string // sent after login, with STAT 1003 outstanding
	chunk int    // >0: written this many bytes at a time
	close bool   // the server closes the connection after raw
	want  []Event
	// end is nil when the session stays up; else a protocolErr or an
	// eofErr that ClosedEvent.Err must match.
	end any
}

// The good block sent after each case where the session must stay up.
var (
	afterBlock = stat("ONLINE", "4242", "after")
	afterEvent = StatEvent{From: "4242", Status: wire.StatusOnline, Text: "after"}
)

func hostileCases() []hostileCase {
	const ref = "Reference: 1003\r\n"
	reply := func(code wire.Code) ReplyEvent { return ReplyEvent{ID: 1003, Type: RequestSTAT, Code: code} }
	online42 := StatEvent{From: "42", Status: wire.StatusOnline}
	many := ""
	var manyEvents []Event
	for i := range 100 {
		n := strconv.Itoa(10000 + i)
		many += stat("AWAY", n, "")
		manyEvents = append(manyEvents, StatEvent{From: wire.Number(n), Status: wire.StatusAway})
	}
	const lfContent = "From: 42\nID: 7\n\nhi"
	headers64 := "From: 42\r\n" + strings.Repeat("X-Pad: y\r\n", 63)
	big := strings.Repeat("b", wire.DefaultMaxSize-len("Content-Type: text/plain;charset=utf-8\r\nFrom: 42\r\n\r\n"))
	return []hostileCase{
		// Framing: the codec refuses the block; the session ends.
		{name: "size not a number", raw: "STAT ONLINE\r\nxx\r\n", end: protocolErr{wire.ErrBadSize}},
		{name: "negative size", raw: "STAT ONLINE\r\n-26\r\nFrom: 42\r\nID: 1\r\n", end: protocolErr{wire.ErrBadSize}},
		{name: "size with a plus sign", raw: "STAT ONLINE\r\n+18\r\nFrom: 42\r\nID: 1\r\n", end: protocolErr{wire.ErrBadSize}},
		{name: "size with a leading space", raw: "STAT ONLINE\r\n 18\r\nFrom: 42\r\nID: 1\r\n", end: protocolErr{wire.ErrBadSize}},
		{name: "hex size", raw: "STAT ONLINE\r\n0x12\r\nFrom: 42\r\nID: 1\r\n", end: protocolErr{wire.ErrBadSize}},
		{name: "empty size line", raw: "STAT ONLINE\r\n\r\nFrom: 42\r\n", end: protocolErr{wire.ErrBadSize}},
		{name: "NUL bytes as the size", raw: "STAT ONLINE\r\n\x00\x00\r\n", end: protocolErr{wire.ErrBadSize}},
		{name: "CR inside the size line", raw: "STAT ONLINE\r\n1\r8\r\nFrom: 42\r\nID: 1\r\n", end: protocolErr{wire.ErrBadSize}},
		{name: "size of 11 digits", raw: "STAT ONLINE\r\n99999999999\r\n", end: protocolErr{wire.ErrBadSize}},
		{name: "size of 2^63", raw: "STAT ONLINE\r\n9223372036854775808\r\n", end: protocolErr{wire.ErrBadSize}},
		{name: "size line of 300 digits", raw: "STAT ONLINE\r\n" + strings.Repeat("9", 300) + "\r\n", end: protocolErr{wire.ErrLineTooLong}},
		{name: "size above the limit", raw: "MESG\r\n65537\r\n" + strings.Repeat("x", 1000), end: protocolErr{wire.ErrSizeTooLarge}},
		{name: "size of 2 GiB", raw: "MESG\r\n2147483648\r\n", end: protocolErr{wire.ErrSizeTooLarge}},
		{name: "type line of 300 bytes", raw: strings.Repeat("S", 300) + "\r\n0\r\n", end: protocolErr{wire.ErrLineTooLong}},
		{name: "no line end in 4 KiB", raw: strings.Repeat("S", 4096), end: protocolErr{wire.ErrLineTooLong}},
		{name: "empty type line", raw: "\r\n0\r\n", end: protocolErr{wire.ErrBadTypeLine}},
		{name: "type line starting with a space", raw: " STAT ONLINE\r\n0\r\n", end: protocolErr{wire.ErrBadTypeLine}},
		{name: "NUL in the type line", raw: "ST\x00AT ONLINE\r\n0\r\n", end: protocolErr{wire.ErrBadTypeLine}},
		{name: "CR inside the type line", raw: "STAT\rONLINE\r\n0\r\n", end: protocolErr{wire.ErrBadTypeLine}},
		{name: "DEL in the type line", raw: "STAT\x7f\r\n0\r\n", end: protocolErr{wire.ErrBadTypeLine}},
		{name: "header without colon", raw: frame("STAT ONLINE", "From 42\r\nID: 1\r\n"), end: protocolErr{wire.ErrBadHeader}},
		{name: "header with an empty name", raw: frame("STAT ONLINE", ": 42\r\nID: 1\r\n"), end: protocolErr{wire.ErrBadHeader}},
		{name: "lone CR inside a header line", raw: frame("STAT ONLINE", "From: 42\rID: 1\r\n"), end: protocolErr{wire.ErrBadHeader}},
		{name: "65 headers", raw: frame("STAT ONLINE", "From: 42\r\n"+strings.Repeat("X-Pad: y\r\n", 64)), end: protocolErr{wire.ErrTooManyHeaders}},
		{name: "body without the empty line", raw: frame("MESG", "From: 42\r\nhello"), end: protocolErr{wire.ErrBadHeader}},
		{name: "SIZE short: the rest is read as a type line", raw: "STAT ONLINE\r\n10\r\nFrom: 42\r\n ID: 5\r\n",
			want: []Event{online42}, end: protocolErr{wire.ErrBadTypeLine}},
		{name: "a malformed block one byte per write", raw: "STAT ONLINE\r\n1x\r\n", chunk: 1, end: protocolErr{wire.ErrBadSize}},
		// The connection ends: typed, but no protocol violation.
		{name: "EOF inside the content", raw: "STAT ONLINE\r\n18\r\nFrom: 4", close: true, end: eofErr{io.ErrUnexpectedEOF}},
		{name: "EOF inside the size line", raw: "STAT ONLINE\r\n1", close: true, end: eofErr{io.ErrUnexpectedEOF}},
		{name: "EOF between blocks", raw: stat("AWAY", "42", ""), close: true,
			want: []Event{StatEvent{From: "42", Status: wire.StatusAway}}, end: eofErr{io.EOF}},

		// ACK: a code that is not three digits ends the session.
		{name: "ACK with a code that is not a number", raw: frame("ACK abc", "ID: 1\r\n"+ref), end: protocolErr{wire.ErrBadValue}},
		{name: "ACK without a code", raw: frame("ACK", "ID: 1\r\n"+ref), end: protocolErr{wire.ErrBadValue}},
		{name: "ACK with a 4-digit code", raw: frame("ACK 6000", "ID: 1\r\n"+ref), end: protocolErr{wire.ErrBadValue}},
		{name: "ACK with code 099", raw: frame("ACK 099", "ID: 1\r\n"+ref), end: protocolErr{wire.ErrBadValue}},
		{name: "ACK with a signed code", raw: frame("ACK +60", "ID: 1\r\n"+ref), end: protocolErr{wire.ErrBadValue}},
		// ACK: ignored unless it answers an outstanding request.
		{name: "ACK with a bad code and no Reference", raw: frame("ACK abc", "ID: 1\r\n")},
		{name: "ACK referencing a block never sent", raw: ack(600, 99999)},
		{name: "ACK referencing block 0", raw: ack(811, 0)},
		{name: "ACK referencing the LOGN, settled at login", raw: ack(811, 1002)},
		{name: "ACK whose Reference is not a number", raw: frame("ACK 811", "ID: 1\r\nReference: abc\r\n")},
		{name: "ACK with a negative Reference", raw: frame("ACK 811", "ID: 1\r\nReference: -1003\r\n")},
		{name: "ACK with a Reference of 25 digits", raw: frame("ACK 811", "ID: 1\r\nReference: "+strings.Repeat("1", 25)+"\r\n")},
		{name: "ACK 811 answers the request", raw: ack(811, 1003), want: []Event{reply(811)}},
		{name: "ACK with an unknown failure code", raw: ack(999, 1003), want: []Event{reply(999)}},
		{name: "ACK with an unknown success code", raw: ack(650, 1003), want: []Event{reply(650)}},
		{name: "two ACKs for one request", raw: ack(600, 1003) + ack(811, 1003), want: []Event{reply(600)}},
		{name: "unknown type with a Reference answers the request", raw: frame("XYZZY", "ID: 1\r\n"+ref), want: []Event{reply(600)}},

		// Unknown and unexpected types: ignored.
		{name: "unknown type", raw: frame("XYZZY", "ID: 1\r\n")},
		{name: "type line of invalid UTF-8", raw: frame("\xff\xfe\xfd", "ID: 1\r\n")},
		{name: "HELO pushed after login", raw: frame("HELO", "ID: 1\r\nProtocol: IMIP/1.0\r\n\r\n12345")},
		{name: "LOGN with a Buddy list pushed after login", raw: frame("LOGN 6340564", "Buddy: "+buddyList(3000)+"\r\nID: 1\r\n")},
		{name: "PING pushed by the server", raw: frame("PING", "ID: 1\r\n")},
		{name: "DISC pushed by the server", raw: frame("DISC", "ID: 1\r\n")},
		{name: "lowercase type and status", raw: frame("stat online", "From: 42\r\nID: 1\r\n"), want: []Event{online42}},

		// STAT.
		{name: "STAT with an unknown status", raw: stat("DANCING", "42", "")},
		{name: "STAT without status", raw: frame("STAT", "From: 42\r\nID: 1\r\n")},
		{name: "STAT without From", raw: frame("STAT ONLINE", "ID: 1\r\n")},
		{name: "STAT with From not a number", raw: stat("ONLINE", "abc", "")},
		{name: "STAT with From of 21 digits", raw: stat("ONLINE", strings.Repeat("4", 21), "")},
		{name: "STAT with NUL after the From number", raw: stat("ONLINE", "42\x00", "")},
		{name: "STAT with an unterminated nickname", raw: stat("ONLINE", `42 "nick`, "")},
		{name: "STAT with invalid UTF-8 text", raw: stat("AWAY", "42", "\xff\xfe gone"),
			want: []Event{StatEvent{From: "42", Status: wire.StatusAway, Text: "\xff\xfe gone"}}},
		{name: "STAT with two From headers: the first counts", raw: frame("STAT ONLINE", "From: 42\r\nFrom: 43\r\nID: 1\r\n"), want: []Event{online42}},
		{name: "header name in odd case, no space after the colon", raw: frame("STAT ONLINE", "fROM:42\r\nID: 1\r\n"), want: []Event{online42}},
		{name: "exactly 64 headers", raw: frame("STAT ONLINE", headers64), want: []Event{online42}},
		{name: "a 60 KiB header value", raw: frame("STAT ONLINE", "From: 42\r\nX-Junk: "+strings.Repeat("j", 60<<10)+"\r\n"), want: []Event{online42}},

		// MESG.
		{name: "MESG without From", raw: mesg("ID: 1\r\nTo: 6340564\r\n", "hi")},
		{name: "MESG with From not a number", raw: mesg("From: 4x2\r\nID: 1\r\n", "hi")},
		{name: "MESG with To not a number", raw: mesg("From: 42\r\nID: 1\r\nTo: me\r\n", "hi")},
		{name: "MESG with NUL inside the From header's name", raw: mesg("Fr\x00om: 42\r\nID: 1\r\n", "hi")},
		{name: "MESG with a garbage Timo", raw: mesg("From: 42 \"x\"\r\nID: 7\r\nTimo: yesterday\r\n", "hi"),
			want: []Event{MessageEvent{BlockID: 7, From: "42", Nick: "x", To: testNumber, Text: "hi"}}},
		{name: "MESG with NUL bytes and invalid UTF-8 in the body", raw: mesg("From: 42\r\nID: 7\r\n", "a\x00b\xffc"),
			want: []Event{MessageEvent{BlockID: 7, From: "42", To: testNumber, Text: "a\x00b\xffc"}}},
		{name: "MESG with an ID that is not a number", raw: mesg("From: 42\r\nID: seven\r\n", "hi"),
			want: []Event{MessageEvent{From: "42", To: testNumber, Text: "hi"}}},
		{name: "MESG with a malformed Message-ID", raw: mesg("From: 42\r\nID: 7\r\nMessage-ID: m 1\r\n", "hi"),
			want: []Event{MessageEvent{BlockID: 7, From: "42", To: testNumber, Text: "hi"}}},
		{name: "MESG at the size limit", raw: mesg("From: 42\r\n", big),
			want: []Event{MessageEvent{From: "42", To: testNumber, Text: big}}},
		{name: "MESG with bare LF line ends", raw: "MESG\n" + strconv.Itoa(len(lfContent)) + "\n" + lfContent,
			want: []Event{MessageEvent{BlockID: 7, From: "42", To: testNumber, Text: "hi"}}},

		// LIST.
		{name: "LIST without operation", raw: frame("LIST", "From: 42\r\nID: 1\r\n")},
		{name: "LIST with an unknown operation", raw: frame("LIST FROB", "From: 42\r\nID: 1\r\n")},
		{name: "LIST ADD without From or number", raw: frame("LIST ADD", "ID: 1\r\nList: Buddy\r\n")},
		{name: "LIST REMOVE of a number that is not one", raw: frame("LIST REMOVE abc", "ID: 1\r\n")},
		{name: "LIST ACCEPT with an unterminated nickname", raw: frame(`LIST ACCEPT 42 "nick`, "ID: 1\r\n")},
		{name: "LIST ADD with the number on the type line only", raw: frame("LIST ADD 42", "ID: 1\r\n\r\nadd me"),
			want: []Event{ListAddEvent{From: "42", Text: "add me"}}},
		{name: "LIST REJECT: the From header wins over the type line", raw: frame("LIST REJECT 43", "From: 42\r\nID: 1\r\n"),
			want: []Event{ListRejectEvent{From: "42"}}},

		// Splitting and volume.
		{name: "a good block one byte per write", raw: stat("ONLINE", "42", ""), chunk: 1, want: []Event{online42}},
		{name: "100 blocks in one write", raw: many, want: manyEvents},
	}
}

// TestHostileServer runs hostileCases, each on its own session.
func TestHostileServer(t *testing.T) {
	for i, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			h := newContractHandler()
			ts := loginWith(t, h, func(c *Config) { c.ConfirmInterval = time.Hour })
			id, err := ts.s.SendStatus(wire.StatusAway, "")
			if err != nil || id != 1003 {
				t.Fatalf("SendStatus = %d, %v; want 1003", id, err)
			}
			ts.f.next()
			ts.f.sendHostile(tc.raw, tc.chunk)
			if tc.close {
				ts.f.conn.Close()
			}
			settled := false
			for j, w := range tc.want {
				got := h.next(t)
				if diff := cmp.Diff(w, got); diff != "" {
					t.Fatalf("%d: event %d (-want +got):\n%s", i, j, diff)
				}
				if r, ok := w.(ReplyEvent); ok && r.ID == id {
					settled = true
				}
			}
			if tc.end != nil {
				checkEnded(t, ts.s, h, tc.end)
				return
			}
			ts.f.send(afterBlock + ack(600, id))
			if diff := cmp.Diff(Event(afterEvent), h.next(t)); diff != "" {
				t.Fatalf("%d: the next good block (-want +got):\n%s", i, diff)
			}
			if !settled {
				want := ReplyEvent{ID: id, Type: RequestSTAT, Code: 600}
				if diff := cmp.Diff(Event(want), h.next(t)); diff != "" {
					t.Fatalf("%d: the request's reply (-want +got):\n%s", i, diff)
				}
			}
			if err := ts.s.Err(); err != nil {
				t.Fatalf("%d: session Err = %v, want nil (still up)", i, err)
			}
			select {
			case ev := <-h.ch:
				t.Fatalf("%d: extra event %#v", i, ev)
			default:
			}
			h.check(t)
		})
	}
}

// checkEnded checks a session that must end with an error matching end:
// the next event is its ClosedEvent, Err agrees, Done is closed, the
// outstanding request got no ReplyEvent and Send methods fail.
func checkEnded(t *testing.T, s *Session, h *contractHandler, end any) {
	t.Helper()
	ev := h.next(t)
	c, ok := ev.(ClosedEvent)
	if !ok {
		t.Fatalf("event %#v, want the ClosedEvent", ev)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the ClosedEvent")
	}
	if !errors.Is(s.Err(), c.Err) || !errors.Is(c.Err, s.Err()) {
		t.Errorf("Err() = %v, ClosedEvent.Err = %v: differ", s.Err(), c.Err)
	}
	switch e := end.(type) {
	case protocolErr:
		var we *wire.Error
		if !errors.Is(c.Err, ErrProtocol) || !errors.As(c.Err, &we) || !errors.Is(c.Err, e.wire) {
			t.Errorf("ClosedEvent.Err = %v, want ErrProtocol and %v", c.Err, e.wire)
		}
	case eofErr:
		if !errors.Is(c.Err, e.err) || errors.Is(c.Err, ErrProtocol) {
			t.Errorf("ClosedEvent.Err = %v, want %v and no ErrProtocol", c.Err, e.err)
		}
	default:
		t.Fatalf("bad end %#v", end)
	}
	if _, err := s.SendStatus(wire.StatusOnline, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("SendStatus after the end = %v, want ErrClosed", err)
	}
	select {
	case ev := <-h.ch:
		t.Errorf("event %#v after ClosedEvent", ev)
	default:
	}
	h.check(t)
}

// loginWith logs a session in over a pipe with handler h, as login does.
func loginWith(t *testing.T, h Handler, mod func(*Config)) *testSession {
	t.Helper()
	f, dial := pipe(t)
	cfg := baseConfig(dial, nil)
	cfg.Handler = h
	if mod != nil {
		mod(&cfg)
	}
	res := dialAsync(context.Background(), cfg)
	f.expect(goldenHELO)
	f.send(serverHELO("60", testSalt))
	f.expect(goldenLOGN)
	f.send(serverLOGN(`7744387 "mawis76"`))
	r := wait(t, res)
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	t.Cleanup(func() { r.s.Close() })
	return &testSession{s: r.s, f: f}
}

// TestHostileLogin: what a server sends during the handshake. Each case
// logs in, or fails Dial with a typed error.
func TestHostileLogin(t *testing.T) {
	lognReply := func(buddy string) string {
		return frame("LOGN 6340564", "Buddy: "+buddy+"\r\nID: 19194\r\nReference: 1002\r\n")
	}
	flood := strings.Repeat(stat("ONLINE", "42", ""), 64)
	tests := []struct {
		name     string
		helo     string // the server's answer to HELO
		logn     string // its answer to LOGN; "" when the client must not get that far
		limits   wire.Limits
		contacts int   // with err nil: how many contacts the login keeps
		err      error // the Dial error must match it
		wireErr  error // and, when set, this wire sentinel
	}{
		{name: "HELO reply without salt", helo: frame("HELO", "Auth-Type: imip-md5\r\nID: 1\r\n"), err: ErrProtocol},
		{name: "HELO reply with another Auth-Type", helo: frame("HELO", "Auth-Type: plain\r\nID: 1\r\n\r\n123"), err: ErrProtocol},
		{name: "HELO reply with a bad size", helo: "HELO\r\n-1\r\n", err: ErrProtocol, wireErr: wire.ErrBadSize},
		{name: "HELO reply with a garbage Keep-Alive", helo: frame("HELO", "ID: 1\r\nKeep-Alive: -5x\r\n\r\n123"),
			logn: serverLOGN(""), contacts: 0},
		{name: "64 pushed blocks and no HELO reply", helo: flood, err: ErrProtocol},
		{name: "ACK with a bad code to the LOGN", helo: serverHELO("60", testSalt), logn: frame("ACK 6x0", "ID: 1\r\nReference: 1002\r\n"),
			err: ErrProtocol, wireErr: wire.ErrBadValue},
		{name: "ACK 810 to the LOGN", helo: serverHELO("60", testSalt), logn: ack(810, 1002), err: ErrWrongPassword},
		{name: "connection closed after the HELO reply", helo: serverHELO("60", testSalt), logn: "close", err: io.EOF},
		{name: "Buddy list of 100,000 entries above the size limit", helo: serverHELO("60", testSalt), logn: lognReply(buddyList(100000)),
			err: ErrProtocol, wireErr: wire.ErrSizeTooLarge},
		{name: "Buddy list of 100,000 entries within a raised limit", helo: serverHELO("60", testSalt), logn: lognReply(buddyList(100000)),
			limits: wire.Limits{MaxSize: 4 << 20}, contacts: 100000},
		{name: "Buddy list of garbage", helo: serverHELO("60", testSalt), logn: lognReply(`x,,"",42 "a`), contacts: 0},
		{name: "Buddy list with one good entry among garbage", helo: serverHELO("60", testSalt), logn: lognReply(`x,43 "b",12a`), contacts: 1},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, dial := pipe(t)
			cfg := baseConfig(dial, nil)
			cfg.Limits = tc.limits
			res := dialAsync(context.Background(), cfg)
			f.expect(goldenHELO)
			f.sendHostile(tc.helo, 0)
			switch tc.logn {
			case "":
			case "close":
				f.expect(goldenLOGN)
				f.conn.Close()
			default:
				f.next() // the LOGN
				f.sendHostile(tc.logn, 0)
			}
			r := wait(t, res)
			if tc.err == nil {
				if r.err != nil {
					t.Fatalf("%d: Dial: %v, want a login", i, r.err)
				}
				defer r.s.Close()
				if n := len(r.s.Contacts()); n != tc.contacts {
					t.Errorf("%d: %d contacts, want %d", i, n, tc.contacts)
				}
				return
			}
			if r.err == nil {
				r.s.Close()
				t.Fatalf("%d: Dial succeeded, want %v", i, tc.err)
			}
			if !errors.Is(r.err, tc.err) || (tc.wireErr != nil && !errors.Is(r.err, tc.wireErr)) {
				t.Errorf("%d: Dial error %v, want %v and %v", i, r.err, tc.err, tc.wireErr)
			}
		})
	}
}
