package imipside

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"imip-transport/imipside/wire"
)

// TestRequestsGolden pins the exact bytes of every non-blocking request
// (docs/PROTOCOL.md's worked bytes where it gives them) and checks the ReplyEvent
// each gets, for a success and for a failure ACK.
func TestRequestsGolden(t *testing.T) {
	ts := login(t, nil)
	tests := []struct {
		name string
		send func() (uint64, error)
		want string // with ID 0000, replaced by the block's ID
		typ  string
		num  wire.Number
	}{
		0: {"STAT", func() (uint64, error) { return ts.s.SendStatus(wire.StatusOnline, "") },
			"STAT ONLINE\r\n12\r\nID: 0000\r\n\r\n", RequestSTAT, ""},
		1: {"STAT with text", func() (uint64, error) { return ts.s.SendStatus(wire.StatusAway, "gone fishing") },
			"STAT AWAY\r\n24\r\nID: 0000\r\n\r\ngone fishing", RequestSTAT, ""},
		2: {"STAT OFFLINE", func() (uint64, error) { return ts.s.SendStatus(wire.StatusOffline, "") },
			"STAT OFFLINE\r\n12\r\nID: 0000\r\n\r\n", RequestSTAT, ""},
		3: {"MESG", func() (uint64, error) { return ts.s.SendMessage("7744387", "hi, é") },
			"MESG\r\n46\r\nID: 0000\r\nTo: 7744387\r\nFrom: 6340564\r\n\r\nhi, é", RequestMESG, "7744387"},
		4: {"LIST ADD", func() (uint64, error) { return ts.s.SendListAdd("7744387", "") },
			"LIST ADD 7744387\r\n40\r\nID: 0000\r\nList: Buddy\r\nFrom: 6340564\r\n\r\n", RequestListAdd, "7744387"},
		5: {"LIST ADD with text", func() (uint64, error) { return ts.s.SendListAdd("7744387", "it's me") },
			"LIST ADD 7744387\r\n47\r\nID: 0000\r\nList: Buddy\r\nFrom: 6340564\r\n\r\nit's me", RequestListAdd, "7744387"},
		6: {"LIST ACCEPT", func() (uint64, error) { return ts.s.SendListAccept("7744387", "mawis76") },
			"LIST ACCEPT 7744387 \"mawis76\"\r\n27\r\nID: 0000\r\nFrom: 6340564\r\n\r\n", RequestListAccept, "7744387"},
		7: {"LIST REJECT", func() (uint64, error) { return ts.s.SendListReject("7744387") },
			"LIST REJECT 7744387\r\n27\r\nID: 0000\r\nFrom: 6340564\r\n\r\n", RequestListReject, "7744387"},
		8: {"LIST REMOVE", func() (uint64, error) { return ts.s.SendListRemove("7744387") },
			"LIST REMOVE 7744387\r\n40\r\nID: 0000\r\nList: Buddy\r\nFrom: 6340564\r\n\r\n", RequestListRemove, "7744387"},
	}
	next := uint64(1003)
	for i, tt := range tests {
		for _, code := range []wire.Code{600, wire.CodeIllegalUser} {
			id, err := tt.send()
			if err != nil || id != next {
				t.Fatalf("%d %s: = %d, %v; want ID %d", i, tt.name, id, err, next)
			}
			next++
			ts.f.expect(strings.Replace(tt.want, "ID: 0000", "ID: "+itoa(id), 1))
			ts.f.send(ack(int(code), id))
			want := ReplyEvent{ID: id, Type: tt.typ, Number: tt.num, Code: code}
			if diff := cmp.Diff(want, ts.ev.reply(t)); diff != "" {
				t.Errorf("%d %s ACK %d: ReplyEvent mismatch (-want +got):\n%s", i, tt.name, code, diff)
			}
		}
	}
	// The worked bytes of docs/PROTOCOL.md: the server's ACK to STAT 1003, here to
	// the next STAT.
	id, _ := ts.s.SendStatus(wire.StatusOnline, "")
	ts.f.expect("STAT ONLINE\r\n12\r\nID: " + itoa(id) + "\r\n\r\n")
	ts.f.send("ACK 600\r\n28\r\nID: 19195\r\nReference: " + itoa(id) + "\r\n")
	if r := ts.ev.reply(t); r.ID != id || r.Code != 600 || r.Implicit || !r.OK() {
		t.Errorf("ReplyEvent %+v, want an explicit 600 for %d", r, id)
	}
	ts.ev.none(t)
}

// TestAckCodes: 6xx is success, 8xx failure, whatever the code; the blocking
// wrapper returns an *AckError matching the code's sentinel.
func TestAckCodes(t *testing.T) {
	ts := login(t, nil)
	ctx := context.Background()
	tests := []struct {
		code     int
		sentinel error
	}{
		0: {800, nil},
		1: {801, nil},
		2: {811, ErrIllegalUser},
		3: {812, nil},
		4: {899, nil},
		5: {650, nil}, // unknown 6xx: success
	}
	for i, tt := range tests {
		id, err := ts.s.SendStatus("BOGUS", "")
		if err != nil {
			t.Fatal(err)
		}
		ts.f.next()
		ts.f.send(ack(tt.code, id))
		if r := ts.ev.reply(t); int(r.Code) != tt.code || r.OK() != (tt.code < 700) || r.Implicit {
			t.Errorf("%d: ACK %d: ReplyEvent %+v", i, tt.code, r)
		}

		errc := async(func() error { return ts.s.SetStatus(ctx, "BOGUS", "") })
		_, b := ts.f.next()
		id, _ = b.ID()
		ts.f.send(ack(tt.code, id))
		err = wait(t, errc)
		if tt.code < 700 {
			if err != nil {
				t.Errorf("%d: ACK %d: SetStatus = %v, want nil", i, tt.code, err)
			}
			continue
		}
		var ae *AckError
		if !errors.As(err, &ae) || int(ae.Code) != tt.code {
			t.Errorf("%d: ACK %d: SetStatus = %v, want *AckError{%d}", i, tt.code, err, tt.code)
		}
		if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
			t.Errorf("%d: errors.Is(%v, %v) = false", i, err, tt.sentinel)
		}
		if tt.sentinel == nil && (errors.Is(err, ErrIllegalUser) || errors.Is(err, ErrWrongPassword)) {
			t.Errorf("%d: %v matches a sentinel it should not", i, err)
		}
	}
	ts.ev.none(t) // the wrappers' outcomes are not events
}

// TestImplicitConfirmation: the server answers in order, so its reply to a
// later block settles the earlier requests: they succeeded without an ACK.
// A late ACK for a settled request reports nothing.
func TestImplicitConfirmation(t *testing.T) {
	ts := login(t, nil)
	if _, err := ts.s.SendMessage("7744387", "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.s.SendListReject("42"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.s.SendStatus(wire.StatusBusy, ""); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ts.f.next()
	}
	if n := outstanding(ts.s); n != 3 {
		t.Fatalf("%d requests outstanding, want 3", n)
	}
	ts.f.send(ack(801, 1005))
	want := []ReplyEvent{
		{ID: 1003, Type: RequestMESG, Number: "7744387", Code: 600, Implicit: true},
		{ID: 1004, Type: RequestListReject, Number: "42", Code: 600, Implicit: true},
		{ID: 1005, Type: RequestSTAT, Code: 801},
	}
	for i, w := range want {
		if diff := cmp.Diff(w, ts.ev.reply(t)); diff != "" {
			t.Errorf("%d: ReplyEvent mismatch (-want +got):\n%s", i, diff)
		}
	}
	if n := outstanding(ts.s); n != 0 {
		t.Errorf("%d requests outstanding after the reply, want 0", n)
	}
	// Late or stray replies: to settled requests, to blocks never sent.
	ts.f.send(ack(811, 1003) + ack(600, 1005) + ack(600, 4711) + ack(600, 7) + frame("STAT AWAY", "From: 1\r\nID: 2\r\n"))
	if ev, ok := ts.ev.next(t).(StatEvent); !ok {
		t.Errorf("got %#v for a stray reply, want nothing", ev)
	}
	// A reply that references a later block settles only what came before.
	id1, _ := ts.s.SendListAdd("42", "")
	id2, _ := ts.s.SendListAdd("43", "")
	ts.f.next()
	ts.f.next()
	ts.f.send(ack(600, id1))
	if r := ts.ev.reply(t); r.ID != id1 || r.Implicit {
		t.Errorf("ReplyEvent %+v, want the explicit reply to %d", r, id1)
	}
	ts.ev.none(t)
	if n := outstanding(ts.s); n != 1 {
		t.Errorf("%d requests outstanding, want 1 (%d)", n, id2)
	}
}

func outstanding(s *Session) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs.len()
}

// TestWrapperContext: a blocking wrapper whose ctx ends returns its error;
// the request stays outstanding until its reply, which is then dropped.
func TestWrapperContext(t *testing.T) {
	ts := login(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	errc := async(func() error { return ts.s.SetStatus(ctx, wire.StatusOnline, "") })
	ts.f.expect("STAT ONLINE\r\n12\r\nID: 1003\r\n\r\n")
	if err := wait(t, errc); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SetStatus = %v, want DeadlineExceeded", err)
	}
	if n := outstanding(ts.s); n != 1 {
		t.Errorf("%d requests outstanding, want 1", n)
	}
	ts.f.send(ack(600, 1003)) // the late ACK: no event
	errc = async(func() error { return ts.s.Ping(context.Background()) })
	ts.f.expect("PING\r\n12\r\nID: 1004\r\n\r\n")
	ts.f.send(ack(600, 1004))
	if err := wait(t, errc); err != nil {
		t.Errorf("Ping after a late ACK: %v", err)
	}
	ts.ev.none(t)
	if err := ts.s.Err(); err != nil {
		t.Errorf("Err() = %v, want the session alive", err)
	}
}

// TestRefusedBlocksTakeNoID checks that invalid requests fail before
// anything is queued and do not use an ID.
func TestRefusedBlocksTakeNoID(t *testing.T) {
	ts := login(t, nil)
	tests := []struct {
		call func() (uint64, error)
		want error  // sentinel to match, or nil
		subs string // else a substring of the message
	}{
		0: {func() (uint64, error) { return ts.s.SendMessage("12x", "hi") }, nil, "invalid recipient"},
		1: {func() (uint64, error) { return ts.s.SendListAdd("", "") }, nil, "invalid number"},
		2: {func() (uint64, error) { return ts.s.SendListAccept("1", "bad\r\nnick") }, wire.ErrNewline, ""},
		3: {func() (uint64, error) { return ts.s.SendStatus("ON\nLINE", "") }, wire.ErrNewline, ""},
		4: {func() (uint64, error) { return ts.s.SendListAccept("1", "tab\tnick") }, wire.ErrBadTypeLine, ""},
		5: {func() (uint64, error) { return ts.s.SendMessage("1", strings.Repeat("x", 70000)) }, wire.ErrSizeTooLarge, ""},
		6: {func() (uint64, error) { return ts.s.SendListAccept("1", strings.Repeat("n", 250)) }, wire.ErrLineTooLong, ""},
		7: {func() (uint64, error) { return ts.s.SendListReject("x") }, nil, "invalid number"},
		8: {func() (uint64, error) { return ts.s.SendListRemove("") }, nil, "invalid number"},
	}
	for i, tt := range tests {
		id, err := tt.call()
		if id != 0 || err == nil || !strings.HasPrefix(err.Error(), "imipside: ") ||
			(tt.want != nil && !errors.Is(err, tt.want)) || (tt.want == nil && !strings.Contains(err.Error(), tt.subs)) {
			t.Errorf("%d: = %d, %v; want %v%s", i, id, err, tt.want, tt.subs)
		}
	}
	if id, err := ts.s.SendStatus(wire.StatusOnline, ""); id != 1003 || err != nil {
		t.Fatalf("SendStatus = %d, %v; want 1003", id, err)
	}
	ts.f.expect("STAT ONLINE\r\n12\r\nID: 1003\r\n\r\n")
	if n := outstanding(ts.s); n != 1 {
		t.Errorf("%d requests outstanding, want 1", n)
	}
}

// TestConcurrentRequests runs SendMessage and SendStatus from many
// goroutines: every block goes out whole, IDs are consecutive and each
// request gets one ReplyEvent.
func TestConcurrentRequests(t *testing.T) {
	ts := login(t, func(c *Config) { c.ConfirmInterval = 20 * time.Millisecond })
	const workers, each = 8, 20
	srv := make(chan []uint64, 1)
	var pings int // confirmation barrier PINGs, read after srv
	go func() {
		var ids []uint64
		r := wire.NewReader(ts.f.br, wire.Limits{})
		var b wire.Block
		for {
			ts.f.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if err := r.ReadBlock(&b); err != nil {
				srv <- ids
				return
			}
			id, _ := b.ID()
			ids = append(ids, id)
			if b.Type == wire.TypePING {
				pings++
			}
			if b.Type == wire.TypeMESG && len(ids)%3 == 0 {
				continue // some MESGs get no ACK, like errors-only
			}
			ts.f.conn.Write([]byte(ack(600, id)))
			if b.Type == wire.TypeDISC {
				srv <- ids
				return
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for j := range each {
				var err error
				if (w+j)%2 == 0 {
					_, err = ts.s.SendMessage("7744387", "m "+strconv.Itoa(j))
				} else {
					_, err = ts.s.SendStatus(wire.StatusAway, "s")
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := map[uint64]bool{}
	for range workers * each {
		r := ts.ev.reply(t)
		if got[r.ID] || !r.OK() {
			t.Fatalf("ReplyEvent %+v: repeated or failed", r)
		}
		got[r.ID] = true
	}
	if err := ts.s.Logout(); err != nil {
		t.Errorf("Logout: %v", err)
	}
	if ev := ts.ev.closed(t); ev.Err != nil {
		t.Errorf("ClosedEvent %v, want nil", ev.Err)
	}
	ids := wait(t, srv)
	if len(ids)-pings != workers*each+1 {
		t.Fatalf("server got %d blocks and %d PINGs, want %d blocks", len(ids)-pings, pings, workers*each+1)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for i, id := range ids {
		if id != uint64(1003+i) {
			t.Fatalf("IDs not consecutive from 1003: position %d has %d", i, id)
		}
	}
}
