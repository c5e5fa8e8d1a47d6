package imiptest_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"imip-transport/imipside/imipserver/imiptest"
	"imip-transport/imipside/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var accounts = []imiptest.Account{
	{Number: "1001001", Password: "a", Nick: "alice"},
	{Number: "1002002", Password: "b", Nick: "bob"},
}

// client logs in over a raw connection and returns it with its reader.
func client(t *testing.T, s *imiptest.Server, n wire.Number, pw string) (net.Conn, *wire.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rd := wire.NewReader(nc, wire.Limits{})
	w := wire.NewWriter(nc)
	w.WriteBlock(&wire.Block{Type: "HELO", Headers: []wire.Header{{Name: "ID", Value: "1001"}}})
	helo := read(t, nc, rd)
	w.WriteBlock(&wire.Block{Type: "LOGN", Arg: string(n), Headers: []wire.Header{{Name: "ID", Value: "1002"}},
		Body: []byte(wire.AuthDigest(string(helo.Body), pw))})
	if b := read(t, nc, rd); b.TypeLine() != "LOGN "+string(n) {
		t.Fatalf("login: %q", b.TypeLine())
	}
	return nc, rd
}

func read(t *testing.T, nc net.Conn, rd *wire.Reader) *wire.Block {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b wire.Block
	if err := rd.ReadBlock(&b); err != nil {
		t.Fatalf("read: %v", err)
	}
	b.Body = bytes.Clone(b.Body)
	return &b
}

func send(t *testing.T, nc net.Conn, raw string) {
	t.Helper()
	if _, err := nc.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
}

func TestFaultsOnTheWire(t *testing.T) {
	ping := "PING\r\n12\r\nID: 1003\r\n\r\n"
	for i, tc := range []struct {
		name   string
		faults imiptest.Faults
		check  func(t *testing.T, ack *wire.Block)
	}{
		{"default is Odigo style", imiptest.Faults{}, func(t *testing.T, b *wire.Block) {
			if !b.NoEmptyLine || b.Headers[0].Name != "ID" {
				t.Errorf("NoEmptyLine %v headers %v", b.NoEmptyLine, b.Headers)
			}
		}},
		{"omit empty line", imiptest.Faults{OmitEmptyLine: true}, func(t *testing.T, b *wire.Block) {
			if !b.NoEmptyLine {
				t.Errorf("empty line sent")
			}
		}},
		{"always empty line", imiptest.Faults{AlwaysEmptyLine: true}, func(t *testing.T, b *wire.Block) {
			if b.NoEmptyLine {
				t.Errorf("no empty line")
			}
		}},
		{"ID last", imiptest.Faults{IDLast: true}, func(t *testing.T, b *wire.Block) {
			if b.Headers[len(b.Headers)-1].Name != "ID" {
				t.Errorf("headers %v", b.Headers)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := imiptest.Start(t, imiptest.Options{Accounts: accounts, Faults: tc.faults})
			nc, rd := client(t, s, "1001001", "a")
			send(t, nc, ping)
			b := read(t, nc, rd)
			if b.TypeLine() != "ACK 600" || b.Get("Reference") != "1003" {
				t.Fatalf("%d: %q %v", i, b.TypeLine(), b.Headers)
			}
			tc.check(t, b)
		})
	}
}

func TestShuffleHeaders(t *testing.T) {
	s := imiptest.Start(t, imiptest.Options{Accounts: accounts, Faults: imiptest.Faults{ShuffleHeaders: true}})
	orders := map[string]bool{}
	for i := 0; i < 40 && len(orders) < 2; i++ {
		nc, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		rd := wire.NewReader(nc, wire.Limits{})
		send(t, nc, "HELO\r\n12\r\nID: 1001\r\n\r\n")
		b := read(t, nc, rd)
		nc.Close()
		var names []string
		for _, h := range b.Headers {
			names = append(names, h.Name)
		}
		if len(names) != 8 {
			t.Fatalf("HELO headers %v", names)
		}
		orders[strings.Join(names, ",")] = true
	}
	if len(orders) < 2 {
		t.Errorf("40 HELO replies all had the same header order")
	}
}

func TestDropAfterLogin(t *testing.T) {
	s := imiptest.Start(t, imiptest.Options{Accounts: accounts, Faults: imiptest.Faults{DropAfterLogin: true}})
	nc, rd := client(t, s, "1001001", "a")
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b wire.Block
	if err := rd.ReadBlock(&b); !errors.Is(err, io.EOF) {
		t.Fatalf("after login: %v %q, want EOF", err, b.TypeLine())
	}
	if s.Online("1001001") {
		t.Errorf("online after the drop")
	}
}

func TestDelayACK(t *testing.T) {
	const delay = 300 * time.Millisecond
	s := imiptest.Start(t, imiptest.Options{Accounts: accounts, Faults: imiptest.Faults{DelayACK: delay}})
	nc, rd := client(t, s, "1001001", "a")
	start := time.Now()
	send(t, nc, "PING\r\n12\r\nID: 1003\r\n\r\n")
	if b := read(t, nc, rd); b.TypeLine() != "ACK 600" {
		t.Fatalf("%q", b.TypeLine())
	}
	if d := time.Since(start); d < delay {
		t.Errorf("ACK after %v, want >= %v", d, delay)
	}
}

func TestNoOurs(t *testing.T) {
	s := imiptest.Start(t, imiptest.Options{Accounts: accounts, Faults: imiptest.Faults{NoOurs: true}})
	if err := s.Store().AddContact(t.Context(), "1002002", "1001001"); err != nil {
		t.Fatal(err)
	}
	a, ra := client(t, s, "1001001", "a")
	b, rb := client(t, s, "1002002", "b") // no STAT push of alice at login
	// A MESG without ACK-Type gets no ACK; the PING after it does.
	send(t, b, "MESG\r\n30\r\nID: 1003\r\nTo: 1001001\r\n\r\nhello")
	send(t, b, "PING\r\n12\r\nID: 1004\r\n\r\n")
	if got := read(t, b, rb); got.TypeLine() != "ACK 600" || got.Get("Reference") != "1004" {
		t.Errorf("bob got %q Reference %q, want the PING's ACK first", got.TypeLine(), got.Get("Reference"))
	}
	if m := read(t, a, ra); string(m.Body) != "hello" {
		t.Errorf("alice got %q", m.Body)
	}
	// alice asks bob; bob rejects: no S LIST REJECT to alice.
	send(t, a, "LIST ADD 1002002\r\n14\r\nID: 1005\r\n\r\nhi")
	if got := read(t, a, ra); got.TypeLine() != "ACK 600" {
		t.Fatalf("alice got %q", got.TypeLine())
	}
	if got := read(t, b, rb); got.TypeLine() != "LIST ADD" {
		t.Fatalf("bob got %q", got.TypeLine())
	}
	send(t, b, "LIST REJECT 1001001\r\n12\r\nID: 1005\r\n\r\n")
	if got := read(t, b, rb); got.TypeLine() != "ACK 600" {
		t.Fatalf("bob got %q", got.TypeLine())
	}
	send(t, a, "PING\r\n12\r\nID: 1006\r\n\r\n")
	if got := read(t, a, ra); got.Get("Reference") != "1006" {
		t.Errorf("alice got %q, want only the PING's ACK", got.TypeLine())
	}
}

func TestPushRawKillOnline(t *testing.T) {
	s := imiptest.Start(t, imiptest.Options{Accounts: accounts[:1]})
	s.AddAccount(imiptest.Account{Number: "1003003", Password: "c", Nick: "carol"})
	nc, rd := client(t, s, "1003003", "c")
	if !s.Online("1003003") || s.Online("1001001") {
		t.Fatalf("Online wrong")
	}
	raw := "STAT AWAY\r\n21\r\nFrom: 1001001\r\nID: 7\r\n"
	if !s.PushRaw("1003003", []byte(raw)) {
		t.Fatal("PushRaw to an online user failed")
	}
	if s.PushRaw("1001001", []byte(raw)) {
		t.Error("PushRaw to an offline user succeeded")
	}
	b := read(t, nc, rd)
	if b.TypeLine() != "STAT AWAY" || !slices.Equal(b.Headers, []wire.Header{{Name: "From", Value: "1001001"}, {Name: "ID", Value: "7"}}) {
		t.Errorf("pushed block read back as %q %v", b.TypeLine(), b.Headers)
	}
	if !s.Kill("1003003") {
		t.Fatal("Kill of an online user failed")
	}
	if !s.WaitOnline("1003003", false, 5*time.Second) {
		t.Fatal("still online after Kill")
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := rd.ReadBlock(b); err == nil {
		t.Errorf("read after Kill returned a block")
	}
}

// loginCaps logs in over a raw connection, announcing caps in the LOGN,
// and returns the connection, its reader and the server's HELO.
func loginCaps(t *testing.T, s *imiptest.Server, n wire.Number, pw, caps string) (net.Conn, *wire.Reader, *wire.Block) {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rd := wire.NewReader(nc, wire.Limits{})
	w := wire.NewWriter(nc)
	w.WriteBlock(&wire.Block{Type: "HELO", Headers: []wire.Header{{Name: "ID", Value: "1001"}}})
	helo := read(t, nc, rd)
	w.WriteBlock(&wire.Block{Type: "LOGN", Arg: string(n),
		Headers: []wire.Header{{Name: "ID", Value: "1002"}, {Name: "Capabilities", Value: caps}},
		Body:    []byte(wire.AuthDigest(string(helo.Body), pw))})
	if b := read(t, nc, rd); b.TypeLine() != "LOGN "+string(n) {
		t.Fatalf("login: %q", b.TypeLine())
	}
	return nc, rd, helo
}

func TestMesgAckOnAndOff(t *testing.T) {
	for i, tc := range []struct {
		faults  imiptest.Faults
		caps    string // HELO Capabilities
		confirm bool   // pushes carry a Message-ID and wait for the confirm
	}{
		{imiptest.Faults{}, "server-lists,mesg-ack", true},
		{imiptest.Faults{NoMesgAck: true}, "server-lists", false},
	} {
		s := imiptest.Start(t, imiptest.Options{Accounts: accounts, Faults: tc.faults})
		b, rb, helo := loginCaps(t, s, "1002002", "b", "mesg-ack")
		if got := helo.Get("Capabilities"); got != tc.caps {
			t.Errorf("%d: HELO Capabilities %q, want %q", i, got, tc.caps)
		}
		a, _ := client(t, s, "1001001", "a")
		send(t, a, sized("MESG", "ID: 1003\r\nTo: 1002002\r\nACK-Type: errors-only\r\n\r\nhello"))
		m := read(t, b, rb)
		if _, ok := m.Lookup("Message-ID"); ok != tc.confirm {
			t.Errorf("%d: MESG headers %v, Message-ID wanted: %v", i, m.Headers, tc.confirm)
		}
		// Held until confirmed with mesg-ack; deleted once written without.
		wantHeld := 0
		if tc.confirm {
			wantHeld = 1
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			msgs, err := s.Store().Messages(t.Context(), "1002002", 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == wantHeld {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d: %d messages held, want %d", i, len(msgs), wantHeld)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func TestSilentMESG(t *testing.T) {
	s := imiptest.Start(t, imiptest.Options{Accounts: accounts, Faults: imiptest.Faults{SilentMESG: true}})
	a, ra := client(t, s, "1001001", "a")
	b, rb := client(t, s, "1002002", "b")
	// No ACK-Type: still no ACK 600; the PING after it is answered first.
	send(t, a, "MESG\r\n30\r\nID: 1003\r\nTo: 1002002\r\n\r\nhello")
	send(t, a, "PING\r\n12\r\nID: 1004\r\n\r\n")
	if got := read(t, a, ra); got.TypeLine() != "ACK 600" || got.Get("Reference") != "1004" {
		t.Errorf("alice got %q Reference %q, want the PING's ACK", got.TypeLine(), got.Get("Reference"))
	}
	if m := read(t, b, rb); string(m.Body) != "hello" {
		t.Errorf("bob got %q", m.Body)
	}
	// Errors are still sent.
	send(t, a, sized("MESG", "ID: 1005\r\nTo: 9999999\r\n\r\nx"))
	if got := read(t, a, ra); got.TypeLine() != "ACK 811" || got.Get("Reference") != "1005" {
		t.Errorf("alice got %q Reference %q, want ACK 811 for 1005", got.TypeLine(), got.Get("Reference"))
	}
}

// sized returns a block with the SIZE line computed for content.
func sized(typeLine, content string) string {
	return typeLine + "\r\n" + strconv.Itoa(len(content)) + "\r\n" + content
}
