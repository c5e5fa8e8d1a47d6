package imipside

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"imip-transport/imipside/wire"
)

// TestRequestsGolden pins the exact bytes of every client block after login
// (IMIP.md's worked bytes where it gives them) and checks that each request
// is answered by the ACK that references it.
func TestRequestsGolden(t *testing.T) {
	ts := login(t, nil)
	ctx := context.Background()
	tests := []struct {
		name  string
		call  func() error
		want  string
		reply bool // the server ACKs it
	}{
		0: {"STAT", func() error { return ts.s.SetStatus(ctx, wire.StatusOnline, "") },
			"STAT ONLINE\r\n12\r\nID: 1003\r\n\r\n", true},
		1: {"STAT with text", func() error { return ts.s.SetStatus(ctx, wire.StatusAway, "gone fishing") },
			"STAT AWAY\r\n24\r\nID: 1004\r\n\r\ngone fishing", true},
		2: {"PING", func() error { return ts.s.Ping(ctx) },
			"PING\r\n12\r\nID: 1005\r\n\r\n", true},
		3: {"MESG", func() error {
			id, err := ts.s.SendMessage(ctx, "7744387", "hi, é")
			if err == nil && id != 1006 {
				return fmt.Errorf("SendMessage id = %d, want 1006", id)
			}
			return err
		}, "MESG\r\n69\r\nID: 1006\r\nTo: 7744387\r\nACK-Type: errors-only\r\nFrom: 6340564\r\n\r\nhi, é", false},
		4: {"LIST ADD", func() error { return ts.s.ListAdd(ctx, "7744387", "") },
			"LIST ADD 7744387\r\n40\r\nID: 1007\r\nList: Buddy\r\nFrom: 6340564\r\n\r\n", true},
		5: {"LIST ADD with text", func() error { return ts.s.ListAdd(ctx, "7744387", "it's me") },
			"LIST ADD 7744387\r\n47\r\nID: 1008\r\nList: Buddy\r\nFrom: 6340564\r\n\r\nit's me", true},
		6: {"LIST ACCEPT", func() error { return ts.s.ListAccept(ctx, "7744387", "mawis76") },
			"LIST ACCEPT 7744387 \"mawis76\"\r\n27\r\nID: 1009\r\nFrom: 6340564\r\n\r\n", true},
		7: {"LIST REJECT", func() error { return ts.s.ListReject(ctx, "7744387") },
			"LIST REJECT 7744387\r\n27\r\nID: 1010\r\nFrom: 6340564\r\n\r\n", true},
		8: {"LIST REMOVE", func() error { return ts.s.ListRemove(ctx, "7744387") },
			"LIST REMOVE 7744387\r\n40\r\nID: 1011\r\nList: Buddy\r\nFrom: 6340564\r\n\r\n", true},
		9: {"STAT OFFLINE", func() error { return ts.s.SetStatus(ctx, wire.StatusOffline, "") },
			"STAT OFFLINE\r\n12\r\nID: 1012\r\n\r\n", true},
	}
	for i, tt := range tests {
		errc := async(tt.call)
		b := ts.f.expect(tt.want)
		if tt.reply {
			id, _ := b.ID()
			ts.f.send(ack(600, id))
		}
		if err := wait(t, errc); err != nil {
			t.Errorf("%d %s: %v", i, tt.name, err)
		}
	}
	// The worked bytes of IMIP.md: the server's ACK to STAT 1003.
	errc := async(func() error { return ts.s.Ping(ctx) })
	ts.f.expect("PING\r\n12\r\nID: 1013\r\n\r\n")
	ts.f.send("ACK 600\r\n28\r\nID: 19195\r\nReference: 1013\r\n")
	if err := wait(t, errc); err != nil {
		t.Errorf("Ping: %v", err)
	}
	ts.ev.none(t)
}

func TestAckErrors(t *testing.T) {
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
		errc := async(func() error { return ts.s.SetStatus(ctx, "BOGUS", "") })
		_, b := ts.f.next()
		id, _ := b.ID()
		if want := uint64(1003 + i); id != want || b.Arg != "BOGUS" {
			t.Fatalf("%d: client sent %s %s ID %d, want STAT BOGUS ID %d", i, b.Type, b.Arg, id, want)
		}
		ts.f.send(ack(tt.code, id))
		err := wait(t, errc)
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
}

// TestRepliesOutOfOrder answers three requests in reverse order: each gets
// its own ACK, by Reference.
func TestRepliesOutOfOrder(t *testing.T) {
	ts := login(t, nil)
	ctx := context.Background()
	calls := []func() error{
		func() error { return ts.s.Ping(ctx) },
		func() error { return ts.s.SetStatus(ctx, wire.StatusBusy, "") },
		func() error { return ts.s.ListAdd(ctx, "42", "") },
	}
	var errcs []<-chan error
	for i, c := range calls {
		errcs = append(errcs, async(c))
		_, b := ts.f.next()
		if id, _ := b.ID(); id != uint64(1003+i) {
			t.Fatalf("call %d went out with ID %d, want %d", i, id, 1003+i)
		}
	}
	ts.f.send(ack(801, 1005) + ack(800, 1004)) // two replies, one write
	for _, i := range []int{2, 1} {
		var ae *AckError
		if err := wait(t, errcs[i]); !errors.As(err, &ae) || int(ae.Code) != 801-(2-i) {
			t.Errorf("call %d: %v, want *AckError{%d}", i, err, 801-(2-i))
		}
	}
	select {
	case err := <-errcs[0]:
		t.Fatalf("Ping returned %v before its ACK", err)
	case <-time.After(20 * time.Millisecond):
	}
	ts.f.send(ack(600, 1003))
	if err := wait(t, errcs[0]); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestRequestContext(t *testing.T) {
	ts := login(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	errc := async(func() error { return ts.s.SetStatus(ctx, wire.StatusOnline, "") })
	ts.f.expect("STAT ONLINE\r\n12\r\nID: 1003\r\n\r\n")
	if err := wait(t, errc); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SetStatus = %v, want DeadlineExceeded", err)
	}
	ts.s.mu.Lock()
	n := len(ts.s.pending)
	ts.s.mu.Unlock()
	if n != 0 {
		t.Errorf("%d waiters left after ctx ended, want 0", n)
	}
	// The late ACK is ignored; the session goes on.
	ts.f.send(ack(600, 1003))
	errc = async(func() error { return ts.s.Ping(context.Background()) })
	ts.f.expect("PING\r\n12\r\nID: 1004\r\n\r\n")
	ts.f.send(ack(600, 1004))
	if err := wait(t, errc); err != nil {
		t.Errorf("Ping after a late ACK: %v", err)
	}
	// A ctx that has already ended writes nothing.
	if err := ts.s.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping with an ended ctx = %v, want DeadlineExceeded", err)
	}
	if err := ts.s.Err(); err != nil {
		t.Errorf("Err() = %v, want the session alive", err)
	}
}

// TestRefusedBlocksTakeNoID checks that invalid requests fail before
// anything is written and do not consume an ID.
func TestRefusedBlocksTakeNoID(t *testing.T) {
	ts := login(t, nil)
	ctx := context.Background()
	tests := []struct {
		call func() error
		want error  // sentinel to match, or nil
		subs string // else a substring of the message
	}{
		0: {func() error { _, err := ts.s.SendMessage(ctx, "12x", "hi"); return err }, nil, "invalid recipient"},
		1: {func() error { return ts.s.ListAdd(ctx, "", "") }, nil, "invalid number"},
		2: {func() error { return ts.s.ListAccept(ctx, "1", "bad\r\nnick") }, wire.ErrNewline, ""},
		3: {func() error { return ts.s.SetStatus(ctx, "ON\nLINE", "") }, wire.ErrNewline, ""},
		4: {func() error { return ts.s.ListAccept(ctx, "1", "tab\tnick") }, wire.ErrBadTypeLine, ""},
		5: {func() error { _, err := ts.s.SendMessage(ctx, "1", strings.Repeat("x", 70000)); return err }, wire.ErrSizeTooLarge, ""},
	}
	for i, tt := range tests {
		err := tt.call()
		if err == nil || !strings.HasPrefix(err.Error(), "imipside: ") ||
			(tt.want != nil && !errors.Is(err, tt.want)) || (tt.want == nil && !strings.Contains(err.Error(), tt.subs)) {
			t.Errorf("%d: error %v, want %v%s", i, err, tt.want, tt.subs)
		}
	}
	errc := async(func() error { return ts.s.Ping(ctx) })
	ts.f.expect("PING\r\n12\r\nID: 1003\r\n\r\n")
	ts.f.send(ack(600, 1003))
	if err := wait(t, errc); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentRequests runs SendMessage and SetStatus from many goroutines:
// every block goes out whole, IDs are consecutive and each STAT gets its ACK.
func TestConcurrentRequests(t *testing.T) {
	ts := login(t, nil)
	const workers, each = 8, 20
	srv := make(chan []uint64, 1)
	go func() {
		var ids []uint64
		for {
			raw, err := ts.f.readRaw(10 * time.Second)
			if err != nil {
				srv <- ids
				return
			}
			var b wire.Block
			if err := wire.NewReader(strings.NewReader(raw), wire.Limits{}).ReadBlock(&b); err != nil {
				srv <- nil
				return
			}
			id, _ := b.ID()
			ids = append(ids, id)
			switch b.Type {
			case wire.TypeSTAT:
				ts.f.conn.Write([]byte(ack(600, id)))
			case wire.TypeDISC:
				ts.f.conn.Write([]byte(ack(600, id)))
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
					_, err = ts.s.SendMessage(context.Background(), "7744387", "m "+strconv.Itoa(j))
				} else {
					err = ts.s.SetStatus(context.Background(), wire.StatusAway, "s")
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
	if err := ts.s.Disconnect(context.Background()); err != nil {
		t.Errorf("Disconnect: %v", err)
	}
	ids := wait(t, srv)
	if len(ids) != workers*each+1 {
		t.Fatalf("server got %d blocks, want %d", len(ids), workers*each+1)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for i, id := range ids {
		if id != uint64(1003+i) {
			t.Fatalf("IDs not consecutive from 1003: position %d has %d", i, id)
		}
	}
}
