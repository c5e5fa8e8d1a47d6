package imipside

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The tests in this file run under testing/synctest: time is virtual and
// advances only when every goroutine of the test waits, so the intervals
// below are exact.

// TestBarrierPing: a request without a reply for ConfirmInterval makes the
// session send a PING, whose ACK settles it (implicitly). Nothing
// outstanding: no PING.
func TestBarrierPing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ts := login(t, nil)
		start := time.Now()
		if _, err := ts.s.SendMessage("7744387", "hi"); err != nil {
			t.Fatal(err)
		}
		ts.f.next()
		ts.f.expect("PING\r\n12\r\nID: 1004\r\n\r\n")
		if el := time.Since(start); el != DefaultConfirmInterval {
			t.Errorf("barrier PING after %v, want %v", el, DefaultConfirmInterval)
		}
		ts.ev.none(t)
		ts.f.send(ack(600, 1004))
		want := ReplyEvent{ID: 1003, Type: RequestMESG, Number: "7744387", Code: 600, Implicit: true}
		if diff := cmp.Diff(want, ts.ev.reply(t)); diff != "" {
			t.Errorf("ReplyEvent mismatch (-want +got):\n%s", diff)
		}
		ts.f.quiet(time.Minute) // nothing outstanding: no PING
		ts.ev.none(t)
	})
}

// TestBarrierAfterQuiet: a reply read restarts the interval; one PING
// after the newest request is enough, however long its ACK takes.
func TestBarrierAfterQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 2 * time.Second
		ts := login(t, func(c *Config) { c.ConfirmInterval = interval })
		start := time.Now()
		for _, text := range []string{"one", "two"} {
			if _, err := ts.s.SendMessage("7744387", text); err != nil {
				t.Fatal(err)
			}
			ts.f.next()
		}
		time.Sleep(interval / 2)
		ts.f.send(ack(600, 1003))
		if r := ts.ev.reply(t); r.ID != 1003 || r.Implicit {
			t.Errorf("ReplyEvent %+v, want the ACK to 1003", r)
		}
		ts.f.expect("PING\r\n12\r\nID: 1005\r\n\r\n")
		if el := time.Since(start); el != interval/2+interval {
			t.Errorf("barrier PING %v after the requests, want %v (the reply restarted the interval)", el, interval/2+interval)
		}
		ts.f.quiet(time.Minute) // the PING covers 1004: no second one
		// A new request while the PING waits: one more PING after it.
		if _, err := ts.s.SendStatus("AWAY", ""); err != nil {
			t.Fatal(err)
		}
		ts.f.expect("STAT AWAY\r\n12\r\nID: 1006\r\n\r\n")
		ts.f.expect("PING\r\n12\r\nID: 1007\r\n\r\n")
		ts.f.send(ack(600, 1005) + ack(600, 1007))
		for i, w := range []ReplyEvent{
			{ID: 1004, Type: RequestMESG, Number: "7744387", Code: 600, Implicit: true},
			{ID: 1006, Type: RequestSTAT, Code: 600, Implicit: true},
		} {
			if diff := cmp.Diff(w, ts.ev.reply(t)); diff != "" {
				t.Errorf("%d: ReplyEvent mismatch (-want +got):\n%s", i, diff)
			}
		}
		if err := ts.s.Err(); err != nil {
			t.Errorf("Err() = %v, want the session alive", err)
		}
	})
}

// TestBarrierPingUnanswered: the barrier PING is also a keep-alive probe: a
// server that answers nothing is dead KeepAlive after it.
func TestBarrierPingUnanswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ka = 3 * time.Second // below the 5 s of the test helpers
		ts := login(t, func(c *Config) { c.KeepAlive = ka })
		if _, err := ts.s.SendStatus("AWAY", ""); err != nil {
			t.Fatal(err)
		}
		ts.f.next()
		ts.f.expect("PING\r\n12\r\nID: 1004\r\n\r\n")
		start := time.Now()
		ev := ts.ev.closed(t) // no ReplyEvent: the STAT failed with the session
		if !errors.Is(ev.Err, ErrTimeout) {
			t.Errorf("ClosedEvent %v, want ErrTimeout", ev.Err)
		}
		if el := time.Since(start); el != ka {
			t.Errorf("declared dead %v after the PING, want %v", el, ka)
		}
	})
}

// TestKeepAliveHandlerBlocked: while the Handler holds the reader, the ACK
// to a keep-alive PING cannot be read; that is no dead connection.
func TestKeepAliveHandlerBlocked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ka = time.Second
		release := make(chan struct{})
		ts := login(t, func(c *Config) {
			ev := c.Handler
			c.KeepAlive = ka
			c.Handler = HandlerFunc(func(e Event) {
				if _, ok := e.(MessageEvent); ok {
					<-release
				}
				ev.HandleIMIP(e)
			})
		})
		ts.f.send(frame("MESG", "From: 1\r\nID: 5\r\n\r\nslow"))
		ts.f.expect("PING\r\n12\r\nID: 1003\r\n\r\n")
		sent := make(chan struct{})
		go func() { ts.f.send(ack(600, 1003)); close(sent) }() // waits for the reader
		// Three keep-alive intervals, less than the server's 5 s write deadline.
		time.Sleep(3 * ka)
		if err := ts.s.Err(); err != nil {
			t.Fatalf("session ended while the Handler was blocked: %v", err)
		}
		close(release)
		<-sent
		synctest.Wait() // the reader has handled the ACK; no time passed
		if _, ok := ts.ev.next(t).(MessageEvent); !ok {
			t.Fatal("first event is not the MESG")
		}
		ts.s.mu.Lock()
		pingOut := ts.s.pingOut
		ts.s.mu.Unlock()
		if pingOut == 1003 {
			t.Errorf("PING 1003 still unanswered after its ACK was read")
		}
		if err := ts.s.Err(); err != nil {
			t.Errorf("Err() = %v, want the session alive", err)
		}
	})
}

// TestLogoutBound: against a server that never answers DISC, the session
// ends exactly LogoutTimeout after Logout.
func TestLogoutBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const bound = 3 * time.Second // below the 5 s of the test helpers
		ts := login(t, func(c *Config) { c.LogoutTimeout = bound })
		start := time.Now()
		if err := ts.s.Logout(); err != nil {
			t.Fatal(err)
		}
		ts.f.expect("DISC\r\n12\r\nID: 1003\r\n\r\n")
		if ev := ts.ev.closed(t); ev.Err != nil {
			t.Errorf("ClosedEvent %v, want nil", ev.Err)
		}
		if el := time.Since(start); el != bound {
			t.Errorf("ended %v after Logout, want %v", el, bound)
		}
	})
}
