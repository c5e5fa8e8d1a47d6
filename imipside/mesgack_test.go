package imipside

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"imip-transport/imipside/wire"
)

// heloWithCaps is serverHELO with the Capabilities header's value replaced;
// caps "" leaves the header out.
func heloWithCaps(caps string) string {
	c := "Auth-Type: imip-md5\r\n"
	if caps != "" {
		c += "Capabilities: " + caps + "\r\n"
	}
	c += "ID: 19193\r\nKeep-Alive: 60\r\nProtocol: IMIP/1.0\r\nService: odigo.com\r\n\r\n" + testSalt
	return frame("HELO", c)
}

const goldenLOGNMesgAck = "LOGN 6340564\r\n117\r\nID: 1002\r\nClient: Yahoo! IMIP Client\r\nAuth-Type: imip-md5\r\n" +
	"Capabilities: mesg-ack\r\n\r\n" + testDigest

// TestMesgAckNegotiation: the client announces mesg-ack in LOGN only when
// the server's HELO offered it.
func TestMesgAckNegotiation(t *testing.T) {
	tests := []struct {
		caps string
		want bool
	}{
		0: {"server-lists,mesg-ack", true},
		1: {"server-lists, MESG-ACK", true},
		2: {" mesg-ack ", true},
		3: {"mesg-ack,future-thing", true},
		4: {"server-lists", false},
		5: {"", false},
		6: {"mesg-acks,mesg-ack-v2", false},
		7: {"server-lists mesg-ack", false},
	}
	for i, tt := range tests {
		f, dial := pipe(t)
		res := dialAsync(context.Background(), baseConfig(dial, nil))
		f.expect(goldenHELO)
		f.send(heloWithCaps(tt.caps))
		if tt.want {
			f.expect(goldenLOGNMesgAck)
		} else {
			f.expect(goldenLOGN)
		}
		f.send(serverLOGN(""))
		r := wait(t, res)
		if r.err != nil {
			t.Fatalf("%d %q: Dial: %v", i, tt.caps, r.err)
		}
		if got := r.s.ConfirmsMessages(); got != tt.want {
			t.Errorf("%d %q: ConfirmsMessages() = %v, want %v", i, tt.caps, got, tt.want)
		}
		r.s.Close()
	}
}

// TestConfirmMessage: a pushed MESG carries its block ID and Message-ID;
// ConfirmMessage queues ACK 600 referencing the block, with the next client
// ID, and gets no reply.
func TestConfirmMessage(t *testing.T) {
	f, dial := pipe(t)
	ev := newEvents()
	res := dialAsync(context.Background(), baseConfig(dial, ev))
	f.expect(goldenHELO)
	f.send(heloWithCaps("server-lists,mesg-ack"))
	f.expect(goldenLOGNMesgAck)
	f.send(serverLOGN(""))
	r := wait(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	s := r.s
	defer s.Close()
	f.send(frame("MESG", "Content-Type: text/plain;charset=utf-8\r\nFrom: 7744387 \"mawis76\"\r\nID: 19200\r\n"+
		"Message-ID: m42\r\nTimo: 2001-03-04T05:06:07Z\r\nTo: 6340564\r\n\r\nhello"))
	want := MessageEvent{BlockID: 19200, MessageID: "m42", From: "7744387", Nick: "mawis76", To: testNumber, Time: msgTime, Text: "hello"}
	got, ok := ev.next(t).(MessageEvent)
	if diff := cmp.Diff(want, got); !ok || diff != "" {
		t.Fatalf("MessageEvent mismatch (-want +got):\n%s", diff)
	}
	if err := s.ConfirmMessage(got.BlockID); err != nil {
		t.Fatal(err)
	}
	f.expect("ACK 600\r\n30\r\nID: 1003\r\nReference: 19200\r\n\r\n")
	if err := s.ConfirmMessage(0); err == nil || !strings.HasPrefix(err.Error(), "imipside: ") {
		t.Errorf("ConfirmMessage(0) = %v, want an error", err)
	}
	if n := outstanding(s); n != 0 {
		t.Errorf("%d requests outstanding after a confirmation, want 0 (the server never answers it)", n)
	}
	if id, err := s.SendStatus(wire.StatusOnline, ""); id != 1004 || err != nil {
		t.Errorf("SendStatus = %d, %v; want the next ID 1004", id, err)
	}
	f.expect("STAT ONLINE\r\n12\r\nID: 1004\r\n\r\n")
	ev.none(t)
}

// TestConfirmMessageUnsupported: without the extension ConfirmMessage
// sends nothing.
func TestConfirmMessageUnsupported(t *testing.T) {
	ts := login(t, nil) // serverHELO offers server-lists only
	if ts.s.ConfirmsMessages() {
		t.Fatal("ConfirmsMessages() = true without mesg-ack")
	}
	if err := ts.s.ConfirmMessage(19200); !errors.Is(err, errors.ErrUnsupported) || !strings.HasPrefix(err.Error(), "imipside: ") {
		t.Errorf("ConfirmMessage = %v, want errors.ErrUnsupported", err)
	}
	if id, err := ts.s.SendStatus(wire.StatusOnline, ""); id != 1003 || err != nil {
		t.Errorf("SendStatus = %d, %v; want ID 1003 (nothing sent before)", id, err)
	}
	ts.f.expect("STAT ONLINE\r\n12\r\nID: 1003\r\n\r\n")
}

func TestMessageID(t *testing.T) {
	tests := []struct {
		header string // "" for none
		want   string
	}{
		0: {"m42", "m42"},
		1: {"A.b_c-9", "A.b_c-9"},
		2: {strings.Repeat("x", 64), strings.Repeat("x", 64)},
		3: {strings.Repeat("x", 65), ""},
		4: {"m 42", ""},
		5: {"m/42", ""},
		6: {"", ""},
		7: {"é", ""},
	}
	for i, tt := range tests {
		h := ""
		if tt.header != "" {
			h = "message-id: " + tt.header + "\r\n"
		}
		b := parseBlock(t, frame("MESG", "From: 1\r\nID: 7\r\n"+h+"\r\nx"))
		ev, err := decodePush(b, testNumber)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if got := ev.(MessageEvent).MessageID; got != tt.want {
			t.Errorf("%d: Message-ID %q: MessageID = %q, want %q", i, tt.header, got, tt.want)
		}
	}
}

// TestAutoConfirm: with Config.AutoConfirm the session confirms each pushed
// MESG itself once the Handler took it; without mesg-ack it sends nothing.
func TestAutoConfirm(t *testing.T) {
	for _, offered := range []bool{true, false} {
		f, dial := pipe(t)
		ev := newEvents()
		cfg := baseConfig(dial, ev)
		cfg.AutoConfirm = true
		res := dialAsync(context.Background(), cfg)
		f.expect(goldenHELO)
		if offered {
			f.send(heloWithCaps("server-lists,mesg-ack"))
			f.expect(goldenLOGNMesgAck)
		} else {
			f.send(heloWithCaps("server-lists"))
			f.expect(goldenLOGN)
		}
		f.send(serverLOGN(""))
		r := wait(t, res)
		if r.err != nil {
			t.Fatal(r.err)
		}
		f.send(frame("MESG", "From: 7744387\r\nID: 19200\r\nMessage-ID: m42\r\nTo: 6340564\r\n\r\nhello"))
		if _, ok := ev.next(t).(MessageEvent); !ok {
			t.Fatal("no MessageEvent")
		}
		if offered {
			f.expect("ACK 600\r\n30\r\nID: 1003\r\nReference: 19200\r\n\r\n")
		}
		// Nothing else (or, without mesg-ack, nothing at all) before this.
		if _, err := r.s.SendStatus(wire.StatusOnline, ""); err != nil {
			t.Fatal(err)
		}
		id := 1003
		if offered {
			id = 1004
		}
		f.expect(fmt.Sprintf("STAT ONLINE\r\n12\r\nID: %d\r\n\r\n", id))
		r.s.Close()
	}
}

// TestConfirmMessageFullQueue: a confirmation goes out even when the queue
// to the server is full (a refused one would have the server send the
// message again at the next login); requests are still refused.
func TestConfirmMessageFullQueue(t *testing.T) {
	f, dial := pipe(t)
	ev := newEvents()
	cfg := baseConfig(dial, ev)
	cfg.MaxQueue = 256
	res := dialAsync(context.Background(), cfg)
	f.expect(goldenHELO)
	f.send(heloWithCaps("server-lists,mesg-ack"))
	f.expect(goldenLOGNMesgAck)
	f.send(serverLOGN(""))
	r := wait(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	s := r.s
	defer s.Close()
	f.send(frame("MESG", "From: 7744387\r\nID: 19200\r\nMessage-ID: m42\r\nTo: 6340564\r\n\r\nhello"))
	got, ok := ev.next(t).(MessageEvent)
	if !ok {
		t.Fatalf("event %T, want MessageEvent", got)
	}
	// The server reads nothing meanwhile: fill the queue.
	sent := 0
	for ; sent < 100; sent++ {
		if _, err := s.SendMessage("7744387", strings.Repeat("x", 60)); err != nil {
			if !errors.Is(err, ErrBusy) {
				t.Fatalf("SendMessage: %v, want ErrBusy once full", err)
			}
			break
		}
	}
	if sent == 0 || sent == 100 {
		t.Fatalf("%d messages queued: the queue never filled, or took nothing", sent)
	}
	if err := s.ConfirmMessage(got.BlockID); err != nil {
		t.Fatalf("ConfirmMessage on a full queue: %v", err)
	}
	for i := range sent {
		if _, b := f.next(); b.Type != wire.TypeMESG {
			t.Fatalf("block %d: %s, want MESG", i, b.Type)
		}
	}
	if _, b := f.next(); b.Type != wire.TypeACK || b.Arg != "600" {
		t.Fatalf("after the MESGs: %s %s, want the ACK 600 confirmation", b.Type, b.Arg)
	}
}
