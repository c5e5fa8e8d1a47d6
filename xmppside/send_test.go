package xmppside

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// drainAndAnswer reads everything the component sends on fc, answering IQ
// gets whose id starts with "ans" with an empty result, until stop closes.
// It returns the number of presences read so far.
func drainAndAnswer(t *testing.T, fc *fakeConn, stop <-chan struct{}) (presences *atomic.Int64, done <-chan struct{}) {
	t.Helper()
	presences = new(atomic.Int64)
	d := make(chan struct{})
	go func() {
		defer close(d)
		for {
			select {
			case n := <-fc.in:
				switch {
				case n.XMLName.Local == "presence":
					presences.Add(1)
				case n.XMLName.Local == "iq" && strings.HasPrefix(n.attr("id"), "ans"):
					_ = fc.write(fmt.Sprintf(`<iq type="result" id="%s" from="%s" to="imip.localhost"/>`, n.attr("id"), n.attr("to")))
				}
			case <-stop:
				return
			}
		}
	}()
	return presences, d
}

// TestSendsKeepTheLink sends thousands of stanzas, sequentially and
// concurrently, with IQs whose context ends right after (or before) the
// reply: none may fail and the link must never drop. mellium's Send arms a
// goroutine that sets a past write deadline when its ctx ends; with a
// per-call ctx cancelled after Send returned it landed on later writes.
func TestSendsKeepTheLink(t *testing.T) {
	env := startEnv(t, nil)
	stop := make(chan struct{})
	presences, drained := drainAndAnswer(t, env.fc, stop)
	defer func() { close(stop); <-drained }()

	from, to := jid.MustParse("123@imip.localhost"), jid.MustParse("juliet@localhost")
	var failures atomic.Int64
	var firstMu sync.Mutex
	var first error
	fail := func(what string, err error) {
		failures.Add(1)
		firstMu.Lock()
		if first == nil {
			first = fmt.Errorf("%s: %w", what, err)
		}
		firstMu.Unlock()
	}

	const serial = 3000
	for i := range serial {
		if err := env.c.SendPresence(context.Background(), Presence{From: from, To: to, Status: "s"}); err != nil {
			fail(fmt.Sprintf("serial presence %d", i), err)
		}
	}

	const workers, each = 8, 400
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if i%20 == 0 {
					// An IQ answered by the server, with a ctx cancelled as
					// soon as SendIQ returns.
					ctx, cancel := context.WithTimeout(context.Background(), waitFor)
					_, err := env.c.SendIQ(ctx, stanza.IQ{ID: fmt.Sprintf("ans-%d-%d", w, i), Type: stanza.GetIQ, To: to}, nil)
					cancel()
					if err != nil {
						fail("answered iq", err)
					}
					continue
				}
				if i%50 == 1 {
					// An IQ nobody answers, given up at once: the write must
					// still complete whole.
					ctx, cancel := context.WithCancel(context.Background())
					time.AfterFunc(time.Millisecond, cancel)
					_, err := env.c.SendIQ(ctx, stanza.IQ{Type: stanza.GetIQ, To: to}, nil)
					cancel()
					if err != nil && !errors.Is(err, context.Canceled) {
						fail("abandoned iq", err)
					}
					continue
				}
				if err := env.c.SendPresence(context.Background(), Presence{From: from, To: to, Status: "c"}); err != nil {
					fail("concurrent presence", err)
				}
			}
		}()
	}
	wg.Wait()

	if n := failures.Load(); n > 0 {
		t.Errorf("%d sends failed; first: %v", n, first)
	}
	select {
	case err := <-env.h.disconnected:
		t.Errorf("link dropped under ordinary traffic: %v", err)
	default:
	}
	select {
	case <-env.srv.conns:
		t.Error("component reconnected under ordinary traffic")
	default:
	}
	// Everything sent arrived whole on the one stream: count the presences.
	want := int64(serial + workers*(each-each/20-each/50))
	deadline := time.Now().Add(waitFor)
	for presences.Load() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := presences.Load(); got != want {
		t.Errorf("server read %d presences, want %d", got, want)
	}
}

// pipeConn returns a linkConn on one end of a net.Pipe, already started,
// and the other end.
func pipeConn(t *testing.T, timeout time.Duration) (*linkConn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	c := newLinkConn(a, timeout, nil)
	c.start()
	return c, b
}

// TestLinkConnIgnoresForeignDeadlines checks that once up, the deadlines
// mellium sets are ignored and each write gets its own.
func TestLinkConnIgnoresForeignDeadlines(t *testing.T) {
	c, peer := pipeConn(t, waitFor)
	past := time.Now().Add(-time.Hour)
	if err := c.SetWriteDeadline(past); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(past); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 16)
		n, _ := peer.Read(buf)
		got <- string(buf[:n])
	}()
	if _, err := c.Write([]byte("<a/>")); err != nil {
		t.Fatalf("Write after a foreign past deadline: %v", err)
	}
	if s := <-got; s != "<a/>" {
		t.Errorf("peer read %q", s)
	}
}

// TestLinkConnWriteErrorTearsDown checks that a failed write expires the
// connection, so the read loop ends and the link reconnects.
func TestLinkConnWriteErrorTearsDown(t *testing.T) {
	c, _ := pipeConn(t, 10*time.Millisecond) // nobody reads the peer
	if _, err := c.Write([]byte("<a/>")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write to a stuck peer = %v, want a deadline error", err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	}()
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Read after a failed write = %v, want a deadline error", err)
		}
	case <-time.After(waitFor):
		_ = c.Conn.Close() // unblock the reader
		<-readErr
		t.Error("a failed write did not tear the connection down")
	}
	// Expired for good: a later write does not revive it.
	if _, err := c.Write([]byte("<b/>")); err == nil {
		t.Error("Write after teardown succeeded")
	}
}
