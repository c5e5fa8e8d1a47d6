package imipserver_test

// Hostile clients against the server: malformed and odd blocks before and
// after login, each with its documented answer (package doc, docs/PROTOCOL.md §10:
// 800, 801, 810, 811, 812, 813 or 600) and the connection's state after it
// (open: the next block is answered; closed). Meanwhile alice and bob, two
// other logged-in users, exchange a message each way after every case, and
// in the middle of the cases whose block arrives in pieces.

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

// answer is a block the server must send: its type line and its Reference
// ("" for none; "*" for any).
type answer struct{ line, ref string }

func ackAnswer(code wire.Code, ref string) answer {
	return answer{"ACK " + strconv.Itoa(int(code)), ref}
}

// hostileClientCase is one thing a client sends.
type hostileClientCase struct {
	name      string
	login     bool // carol logs in first
	helo      bool // HELO first (not logged in)
	raw       string
	chunk     int  // >0: written this many bytes at a time, alice and bob talking after the first piece
	halfClose bool // the client shuts its sending side after raw
	want      []answer
	closed    bool // the server closes the connection after the answers
	// check, when set, looks at the answers and the server afterwards.
	check func(t *testing.T, ts *testServer, got []*wire.Block)
}

// conversation is alice and bob exchanging messages.
type conversation struct {
	a, b *rawClient
	n    int
}

// exchange sends one message each way and checks both arrive, each sender
// getting its ACK 600 first (the server ACKs once the message is written
// to the recipient). Any other block on either side fails the test.
func (cv *conversation) exchange(t *testing.T, when string) {
	t.Helper()
	cv.a.t, cv.b.t = t, t
	for _, dir := range []struct {
		from, to *rawClient
		num      wire.Number
	}{{cv.a, cv.b, bob}, {cv.b, cv.a, alice}} {
		cv.n++
		text := fmt.Sprintf("%s: message %d", when, cv.n)
		id := dir.from.send(wire.TypeMESG, "", text, wire.HdrTo, string(dir.num))
		dir.from.expectACK(wire.CodeOK, id)
		if m := dir.to.expect(wire.TypeMESG); string(m.Body) != text {
			t.Fatalf("%s: %s received %q, want %q", when, dir.num, m.Body, text)
		}
	}
}

func hostileClientCases() []hostileClientCase {
	const closes = true
	a812 := func(ref string) []answer { return []answer{ackAnswer(wire.CodeNotAllowed, ref)} }
	a811 := func(ref string) []answer { return []answer{ackAnswer(wire.CodeIllegalUser, ref)} }
	a810 := []answer{ackAnswer(wire.CodeWrongPassword, "7")}
	a813 := []answer{ackAnswer(wire.CodeMalformedBlock, "")}
	a600 := func(ref string) []answer { return []answer{ackAnswer(wire.CodeOK, ref)} }
	mesgTo := func(to, hdrs, body string) string {
		c := "ID: 7\r\nTo: " + to + "\r\n" + hdrs + "\r\n" + body
		return sized("MESG", c)
	}
	// A MESG that fits the limit but not once the server adds its headers.
	tooBig := func() string {
		hdrs := "ID: 7\r\nTo: " + string(dave) + "\r\n\r\n"
		return sized("MESG", hdrs+strings.Repeat("x", wire.DefaultMaxSize-len(hdrs)))
	}()
	pipelined := ""
	var pipelinedAnswers []answer
	for i := range 50 {
		pipelined += sized("PING", "ID: "+strconv.Itoa(100+i)+"\r\n\r\n")
		pipelinedAnswers = append(pipelinedAnswers, ackAnswer(wire.CodeNotAllowed, strconv.Itoa(100+i)))
	}
	framing := []struct{ name, raw string }{
		{"size not a number", "STAT ONLINE\r\nxx\r\n"},
		{"negative size", "STAT ONLINE\r\n-12\r\nID: 7\r\n\r\n"},
		{"size above the limit", "MESG\r\n65537\r\n"},
		{"size of 11 digits", "MESG\r\n99999999999\r\n"},
		{"size line of 300 digits", "MESG\r\n" + strings.Repeat("9", 300) + "\r\n"},
		{"type line of 300 bytes", strings.Repeat("A", 300) + "\r\n12\r\n"},
		{"no line end in 4 KiB", strings.Repeat("A", 4096)},
		{"empty type line", "\r\n0\r\n"},
		{"type line starting with a space", " PING\r\n0\r\n"},
		{"NUL in the type line", "PI\x00NG\r\n12\r\nID: 7\r\n\r\n"},
		{"header without colon", sized("PING", "ID 7\r\n\r\n")},
		{"65 headers", sized("PING", strings.Repeat("X-Pad: 1\r\n", 65)+"\r\n")},
		{"lone CR inside a header line", sized("PING", "ID: 7\rX: 1\r\n\r\n")},
		{"body without the empty line", sized("STAT AWAY", "ID: 7\r\nout for lunch")},
	}
	cases := []hostileClientCase{
		// Before login: only HELO and LOGN.
		{name: "STAT before login", raw: sized("STAT ONLINE", "ID: 7\r\n\r\n"), want: a812("7")},
		{name: "MESG to alice before login", raw: mesgTo(string(alice), "", "spam"), want: a812("7")},
		{name: "LIST ADD before login", raw: sized("LIST ADD "+string(alice), "ID: 7\r\nList: Buddy\r\n\r\n"), want: a812("7")},
		{name: "PING before login", raw: sized("PING", "ID: 7\r\n\r\n"), want: a812("7")},
		{name: "DISC before login", raw: sized("DISC", "ID: 7\r\n\r\n"), want: a812("7")},
		{name: "ACK before login", raw: sized("ACK 600", "ID: 7\r\nReference: 10000\r\n\r\n"), want: a812("7")},
		{name: "unknown type before login", raw: sized("XYZZY", "ID: 7\r\n\r\n"), want: a812("7")},
		{name: "lowercase helo", raw: sized("helo", "ID: 7\r\nProtocol: IMIP/1.0\r\n\r\n"), want: a812("7")},
		{name: "LOGN before HELO", raw: sized("LOGN "+string(carol), "ID: 7\r\n\r\n0123456789abcdef0123456789abcdef"), want: a812("7")},
		{name: "block without ID before login", raw: sized("STAT ONLINE", "\r\n"), want: a812("")},
		{name: "HELO twice", raw: sized("HELO", "ID: 7\r\n\r\n") + sized("HELO", "ID: 8\r\n\r\n"),
			want: []answer{{"HELO", ""}, {"HELO", ""}},
			check: func(t *testing.T, _ *testServer, got []*wire.Block) {
				if string(got[0].Body) == "" || string(got[0].Body) != string(got[1].Body) {
					t.Errorf("salts %q and %q, want one salt per connection", got[0].Body, got[1].Body)
				}
			}},
		{name: "LOGN with a number that is not digits", helo: true, raw: sized("LOGN abc", "ID: 7\r\n\r\nx"), want: a811("7"), closed: closes},
		{name: "LOGN of an unknown number (answered like a wrong password)", helo: true, raw: sized("LOGN 999", "ID: 7\r\n\r\nx"), want: []answer{ackAnswer(wire.CodeWrongPassword, "7")}, closed: closes},
		{name: "LOGN of a 21-digit number", helo: true, raw: sized("LOGN "+strings.Repeat("1", 21), "ID: 7\r\n\r\nx"), want: a811("7"), closed: closes},
		{name: "LOGN with garbage after the number", helo: true, raw: sized("LOGN "+string(carol)+" x", "ID: 7\r\n\r\nx"), want: a811("7"), closed: closes},
		{name: "LOGN with a wrong digest", helo: true, raw: sized("LOGN "+string(carol), "ID: 7\r\n\r\n0123456789abcdef0123456789abcdef"), want: a810, closed: closes},
		{name: "LOGN without body", helo: true, raw: sized("LOGN "+string(carol), "ID: 7\r\n\r\n"), want: a810, closed: closes},
		{name: "LOGN with NUL bytes as the digest", helo: true, raw: sized("LOGN "+string(carol), "ID: 7\r\n\r\n"+strings.Repeat("\x00", 32)), want: a810, closed: closes},
		{name: "EOF inside a block before login", raw: "STAT ONLINE\r\n40\r\nID: 7", halfClose: true, closed: closes},
		{name: "a block one byte per write before login", raw: sized("PING", "ID: 7\r\n\r\n"), chunk: 1, want: a812("7")},
		{name: "50 blocks in one write before login", raw: pipelined, want: pipelinedAnswers},

		// After login.
		{name: "STAT without status", login: true, raw: sized("STAT", "ID: 7\r\n\r\n"), want: []answer{ackAnswer(wire.CodeNoStatus, "7")}},
		{name: "STAT with an unknown status", login: true, raw: sized("STAT DANCING", "ID: 7\r\n\r\n"), want: []answer{ackAnswer(wire.CodeUnknownStatus, "7")}},
		{name: "STAT with a lowercase status", login: true, raw: sized("STAT away", "ID: 7\r\n\r\n"), want: a600("7")},
		{name: "STAT with NUL and invalid UTF-8 text", login: true, raw: sized("STAT BUSY", "ID: 7\r\n\r\n\x00\xff\xfe"), want: a600("7")},
		{name: "STAT with 60 KiB of text", login: true, raw: sized("STAT AWAY", "ID: 7\r\n\r\n"+strings.Repeat("t", 60<<10)), want: a600("7")},
		{name: "MESG without To", login: true, raw: sized("MESG", "ID: 7\r\n\r\nhi"), want: a811("7")},
		{name: "MESG to a non-number", login: true, raw: mesgTo("bob", "", "hi"), want: a811("7")},
		{name: "MESG to an unknown number", login: true, raw: mesgTo("999", "", "hi"), want: a811("7")},
		{name: "MESG to a 21-digit number", login: true, raw: mesgTo(strings.Repeat("1", 21), "", "hi"), want: a811("7")},
		{name: "MESG errors-only to an unknown number", login: true, raw: mesgTo("999", "ACK-Type: errors-only\r\n", "hi"), want: a811("7")},
		{name: "MESG errors-only to dave: silent", login: true, raw: mesgTo(string(dave), "ACK-Type: errors-only\r\n", "quiet one")},
		{name: "MESG with a spoofed From", login: true, raw: mesgTo(string(dave), "From: "+string(alice)+"\r\n", "spoofed"), want: a600("7"),
			check: func(t *testing.T, ts *testServer, _ []*wire.Block) { heldFor(t, ts, dave, carol, "spoofed") }},
		{name: "MESG with NUL and invalid UTF-8 in the body", login: true, raw: mesgTo(string(dave), "", "a\x00b\xffc"), want: a600("7"),
			check: func(t *testing.T, ts *testServer, _ []*wire.Block) { heldFor(t, ts, dave, carol, "a\x00b\xffc") }},
		{name: "MESG too large once the server's headers are added", login: true, raw: tooBig, want: []answer{ackAnswer(wire.CodeMalformedBlock, "7")}},
		{name: "MESG to oneself", login: true, raw: mesgTo(string(carol), "", "me"), want: []answer{{"MESG", ""}, ackAnswer(wire.CodeOK, "7")}},
		{name: "LIST without operation", login: true, raw: sized("LIST", "ID: 7\r\n\r\n"), want: a812("7")},
		{name: "LIST with an unknown operation", login: true, raw: sized("LIST FROB "+string(dave), "ID: 7\r\n\r\n"), want: a812("7")},
		{name: "LIST ADD of a non-number", login: true, raw: sized("LIST ADD abc", "ID: 7\r\n\r\n"), want: a811("7")},
		{name: "LIST ADD of oneself", login: true, raw: sized("LIST ADD "+string(carol), "ID: 7\r\n\r\n"), want: a811("7")},
		{name: "LIST ADD of an unknown number", login: true, raw: sized("LIST ADD 999", "ID: 7\r\n\r\n"), want: a811("7")},
		{name: "LIST ADD with an unterminated nickname", login: true, raw: sized("LIST ADD "+string(dave)+` "x`, "ID: 7\r\n\r\n"), want: a811("7")},
		{name: "LIST ACCEPT without a request", login: true, raw: sized("LIST ACCEPT "+string(dave), "ID: 7\r\n\r\n"), want: a812("7")},
		{name: "LIST REJECT without a request", login: true, raw: sized("LIST REJECT "+string(dave), "ID: 7\r\n\r\n"), want: a600("7")},
		{name: "LIST REMOVE of a number not on the list", login: true, raw: sized("LIST REMOVE "+string(dave), "ID: 7\r\n\r\n"), want: a600("7")},
		{name: "client ACK with a garbage code: ignored", login: true, raw: sized("ACK x!", "ID: 7\r\nReference: 10001\r\n\r\n")},
		{name: "client ACK 600 referencing nothing: ignored", login: true, raw: sized("ACK 600", "ID: 7\r\nReference: 1\r\n\r\n")},
		{name: "HELO after login", login: true, raw: sized("HELO", "ID: 7\r\n\r\n"), want: a812("7")},
		{name: "LOGN after login", login: true, raw: sized("LOGN "+string(carol), "ID: 7\r\n\r\nx"), want: a812("7")},
		{name: "unknown type after login", login: true, raw: sized("XYZZY", "ID: 7\r\n\r\n"), want: a812("7")},
		{name: "lowercase type after login", login: true, raw: sized("ping", "ID: 7\r\n\r\n"), want: a812("7")},
		{name: "PING without ID", login: true, raw: sized("PING", "\r\n"), want: a600("")},
		{name: "PING with an ID that is not a number", login: true, raw: sized("PING", "ID: x-1\r\n\r\n"), want: a600("x-1")},
		{name: "PING with 64 headers", login: true, raw: sized("PING", "ID: 7\r\n"+strings.Repeat("X-Pad: 1\r\n", 63)+"\r\n"), want: a600("7")},
		{name: "PING with a 60 KiB header value", login: true, raw: sized("PING", "ID: 7\r\nX-Junk: "+strings.Repeat("j", 60<<10)+"\r\n\r\n"), want: a600("7")},
		{name: "EOF inside a block after login", login: true, raw: "MESG\r\n80\r\nID: 7\r\nTo: " + string(dave), halfClose: true, closed: closes},
		{name: "DISC and a PING in one write", login: true, raw: sized("DISC", "ID: 7\r\n\r\n") + sized("PING", "ID: 8\r\n\r\n"), want: a600("7"), closed: closes},
		{name: "a MESG three bytes per write after login", login: true, raw: mesgTo(string(dave), "", "slowly"), chunk: 3, want: a600("7")},
	}
	for _, f := range framing {
		cases = append(cases,
			hostileClientCase{name: f.name + " before login", raw: f.raw, want: a813, closed: closes},
			hostileClientCase{name: f.name + " after login", login: true, raw: f.raw, want: a813, closed: closes})
	}
	return cases
}

// heldFor checks that the Store holds a message for to from from with text.
func heldFor(t *testing.T, ts *testServer, to, from wire.Number, text string) {
	t.Helper()
	msgs, err := ts.store.Messages(context.Background(), to, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Text == text {
			if m.From != from {
				t.Errorf("message %q held with From %s, want %s", text, m.From, from)
			}
			return
		}
	}
	t.Errorf("no message %q held for %s", text, to)
}

// TestHostileClients runs hostileClientCases against one server while
// alice and bob talk.
func TestHostileClients(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	cv := &conversation{a: loginRaw(t, ts.addr, alice), b: loginRaw(t, ts.addr, bob)}
	cv.exchange(t, "before the suite")
	cases := hostileClientCases()
	if len(cases) < 50 {
		t.Fatalf("%d cases, want at least 50", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c *rawClient
			switch {
			case tc.login:
				c = loginRaw(t, ts.addr, carol)
			case tc.helo:
				c = dialRaw(t, ts.addr)
				c.helo()
			default:
				c = dialRaw(t, ts.addr)
			}
			defer c.nc.Close()
			writeHostile(t, c, tc.raw, tc.chunk, func() { cv.exchange(t, tc.name+" (mid-block)") })
			if tc.halfClose {
				if err := c.nc.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			got := make([]*wire.Block, len(tc.want))
			for i, w := range tc.want {
				got[i] = c.read()
				ref, hasRef := got[i].Lookup(wire.HdrReference)
				if got[i].TypeLine() != w.line || w.ref != "*" && (ref != w.ref || hasRef != (w.ref != "")) {
					t.Fatalf("answer %d: %q Reference %q (%v), want %q Reference %q", i, got[i].TypeLine(), ref, hasRef, w.line, w.ref)
				}
			}
			if tc.check != nil {
				tc.check(t, ts, got)
			}
			if tc.closed {
				c.expectClosed()
				if tc.login {
					waitFor(t, "carol offline", func() bool { return !ts.srv.Online(carol) })
				}
			} else {
				// Still open, and nothing else was sent before the answer
				// to the next block.
				code := wire.CodeNotAllowed
				if tc.login {
					code = wire.CodeOK
				}
				c.writeRaw(sized("PING", "ID: 9999\r\n\r\n"))
				c.expectACK(code, 9999)
				if tc.login && !ts.srv.Online(carol) {
					t.Fatal("carol went offline")
				}
			}
			cv.exchange(t, "after "+tc.name)
		})
	}
	if !ts.srv.Online(alice) || !ts.srv.Online(bob) {
		t.Fatal("alice or bob went offline during the suite")
	}
}

// writeHostile writes raw, in pieces of chunk bytes when chunk > 0, and
// calls mid after the first piece. The server may close the connection
// before it has read everything (a refused block): a write that fails then
// is expected and ends the writing.
func writeHostile(t *testing.T, c *rawClient, raw string, chunk int, mid func()) {
	t.Helper()
	c.t = t
	if chunk <= 0 {
		chunk = len(raw)
	}
	for first := true; len(raw) > 0; first = false {
		n := min(chunk, len(raw))
		c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.nc.Write([]byte(raw[:n])); err != nil {
			return
		}
		raw = raw[n:]
		if first && len(raw) > 0 {
			mid()
		}
	}
}
