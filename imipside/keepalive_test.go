package imipside

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// The keep-alive tests run under testing/synctest: time is virtual, so the
// intervals are exact however slow or loaded the machine is.

func TestKeepAlivePing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ka = 200 * time.Millisecond
		armed := time.Now() // login takes no virtual time
		ts := login(t, func(c *Config) { c.KeepAlive = ka })
		for i, id := range []uint64{1003, 1004} {
			ts.f.expect("PING\r\n12\r\nID: " + itoa(id) + "\r\n\r\n")
			if el := time.Since(armed); el != ka {
				t.Errorf("%d: PING after %v idle, want %v", i, el, ka)
			}
			armed = time.Now()
			ts.f.send(ack(600, id)) // the ACK re-arms the idle timer
		}
		// Writing resets the idle timer: keep writing for longer than ka and
		// no PING may come in between.
		deadline := time.Now().Add(3 * ka)
		next := uint64(1005)
		for time.Now().Before(deadline) {
			armed = time.Now()
			id, err := ts.s.SendMessage("1", "x")
			if err != nil {
				t.Fatal(err)
			}
			_, b := ts.f.next()
			if b.Type != "MESG" {
				t.Fatalf("got %s while busy, want only MESG", b.Type)
			}
			ts.f.send(ack(600, id))
			next++
			time.Sleep(ka / 5)
		}
		ts.f.expect("PING\r\n12\r\nID: " + itoa(next) + "\r\n\r\n")
		if el := time.Since(armed); el != ka {
			t.Errorf("PING %v after the last write, want %v", el, ka)
		}
		ts.f.send(ack(600, next))
		if err := ts.s.Err(); err != nil {
			t.Errorf("Err() = %v, want the session alive", err)
		}
	})
}

func TestKeepAliveDead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ka = 60 * time.Millisecond
		start := time.Now()
		ts := login(t, func(c *Config) { c.KeepAlive = ka })
		ts.f.expect("PING\r\n12\r\nID: 1003\r\n\r\n")
		// No ACK: the session must give up on its own.
		ev, ok := ts.ev.next(t).(ClosedEvent)
		if !ok || !errors.Is(ev.Err, ErrTimeout) {
			t.Fatalf("event %#v, want ClosedEvent with ErrTimeout", ev)
		}
		if el := time.Since(start); el != 2*ka {
			t.Errorf("declared dead %v after login, want %v (idle, then PING unanswered)", el, 2*ka)
		}
		wait(t, ts.s.Done())
		if err := ts.s.Err(); !errors.Is(err, ErrTimeout) {
			t.Errorf("Err() = %v, want ErrTimeout", err)
		}
		if err := ts.s.Ping(context.Background()); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrTimeout) {
			t.Errorf("Ping on a dead session = %v, want ErrClosed wrapping ErrTimeout", err)
		}
		ts.f.expectEOF()
	})
}

// TestKeepAliveAckedByLaterReply: the server answers in order, so the reply
// to a block after the PING also answers the PING.
func TestKeepAliveAckedByLaterReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ka = 100 * time.Millisecond
		ts := login(t, func(c *Config) { c.KeepAlive = ka })
		ts.f.expect("PING\r\n12\r\nID: 1003\r\n\r\n")
		if _, err := ts.s.SendStatus("AWAY", ""); err != nil {
			t.Fatal(err)
		}
		ts.f.expect("STAT AWAY\r\n12\r\nID: 1004\r\n\r\n")
		ts.f.send(ack(600, 1004))
		if r := ts.ev.reply(t); r.ID != 1004 {
			t.Fatalf("ReplyEvent %+v, want 1004", r)
		}
		synctest.Wait()
		ts.s.mu.Lock()
		pingOut := ts.s.pingOut
		ts.s.mu.Unlock()
		if pingOut != 0 {
			t.Errorf("PING %d still unanswered after the reply to a later block", pingOut)
		}
		armed := time.Now()
		ts.f.expect("PING\r\n12\r\nID: 1005\r\n\r\n")
		if el := time.Since(armed); el != ka {
			t.Errorf("next PING %v after the reply, want %v", el, ka)
		}
		ts.f.send(ack(600, 1005))
		if err := ts.s.Err(); err != nil {
			t.Errorf("Err() = %v, want alive", err)
		}
	})
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
