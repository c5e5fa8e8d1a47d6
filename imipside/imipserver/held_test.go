package imipserver_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

// countStore is a MemStore that counts PutMessage calls.
type countStore struct {
	*imipserver.MemStore
	puts atomic.Int64
}

func (c *countStore) PutMessage(ctx context.Context, m imipserver.Message) (int64, error) {
	c.puts.Add(1)
	return c.MemStore.PutMessage(ctx, m)
}

func newCountStore(t *testing.T) *countStore {
	t.Helper()
	st := &countStore{MemStore: imipserver.NewMemStore()}
	for _, a := range testAccounts {
		if err := st.PutAccount(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// A message to a mesg-ack recipient is pushed before it is stored; the
// recipient's confirmation within HoldWrites brings the sender's ACK 600,
// and the message is never stored.
func TestHeldMessageConfirmedNotStored(t *testing.T) {
	st := newCountStore(t)
	ts := startServer(t, imipserver.Config{Store: st, HoldWrites: time.Minute})
	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	b.expectPing() // the login's own delivery ran: messages may be pushed live
	a := loginRaw(t, ts.addr, alice)
	id := a.send(wire.TypeMESG, "", "quick", wire.HdrTo, string(bob))
	m := b.expect(wire.TypeMESG)
	if string(m.Body) != "quick" || m.Get("Message-ID") == "" {
		t.Fatalf("pushed %v %q, want the message with a Message-ID", m.Headers, m.Body)
	}
	a.expectSilence(50 * time.Millisecond) // no ACK before the confirmation
	b.confirm(blockID(t, m))
	a.expectACK(wire.CodeOK, id)
	if n := st.puts.Load(); n != 0 {
		t.Errorf("stored %d times, want never", n)
	}
}

// Not confirmed within HoldWrites: the message is stored, the sender's
// ACK follows the write, the Message-ID stays the one of the push, the
// confirmation then deletes it, and it is never pushed twice.
func TestHeldMessageStoredWhenNotConfirmed(t *testing.T) {
	st := newCountStore(t)
	ts := startServer(t, imipserver.Config{Store: st, HoldWrites: 30 * time.Millisecond})
	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	b.expectPing() // the login's own delivery ran: messages may be pushed live
	a := loginRaw(t, ts.addr, alice)
	id := a.send(wire.TypeMESG, "", "slow", wire.HdrTo, string(bob))
	m := b.expect(wire.TypeMESG)
	a.expectACK(wire.CodeOK, id) // after the hold, once stored
	msgs := held(t, st, bob)
	if len(msgs) != 1 || msgs[0].Key != m.Get("Message-ID") {
		t.Fatalf("held %+v, want the message with Key %q", msgs, m.Get("Message-ID"))
	}
	// Another message is stored and pushed (the window takes it): the
	// first one is not pushed again.
	sendTexts(a, bob, "second")
	if m2 := b.expect(wire.TypeMESG); string(m2.Body) != "second" {
		t.Fatalf("pushed %q, want the second message", m2.Body)
	}
	b.confirm(blockID(t, m))
	b.expectPing()
	waitHeld(t, st, bob, 1) // the second waits for its own confirmation
	b.expectSilence(100 * time.Millisecond)
}

// A sender's answers stay in order: the ACK of a held message comes before
// the answers to the blocks sent after it, which wait for it, while the
// sender's connection keeps reading.
func TestHeldACKOrder(t *testing.T) {
	ts := startServer(t, imipserver.Config{HoldWrites: time.Minute})
	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	b.expectPing() // the login's own delivery ran: messages may be pushed live
	a := loginRaw(t, ts.addr, alice)
	id := a.send(wire.TypeMESG, "", "first", wire.HdrTo, string(bob))
	m := b.expect(wire.TypeMESG)
	ping := a.send(wire.TypePING, "", "")
	a.expectSilence(50 * time.Millisecond) // the PING's ACK waits behind the MESG's
	b.confirm(blockID(t, m))
	a.expectACK(wire.CodeOK, id)
	a.expectACK(wire.CodeOK, ping)
}

// Two mesg-ack users writing to each other at once, each confirming what
// it gets: nothing waits for the hold (a sender's reader does not wait
// for its recipient), nothing is stored.
func TestHeldBothWays(t *testing.T) {
	st := newCountStore(t)
	ts := startServer(t, imipserver.Config{Store: st, HoldWrites: time.Minute})
	const n = 20 // within the delivery window (32): none waits in the Store
	var wg sync.WaitGroup
	peer := map[wire.Number]wire.Number{alice: bob, bob: alice}
	clients := map[wire.Number]*rawClient{}
	for _, who := range []wire.Number{alice, bob} {
		c := dialRaw(t, ts.addr)
		c.loginMesgAck(who)
		c.expectPing()
		clients[who] = c
	}
	for who, c := range clients {
		for i := range n {
			c.send(wire.TypeMESG, "", texts(string(who), n)[i], wire.HdrTo, string(peer[who]))
		}
		wg.Go(func() {
			// Read n pushes (confirming each) and n ACK 600 answers, in
			// any interleaving; the ACKs come only after the peer confirmed.
			pushes, acks := 0, 0
			for pushes < n || acks < n {
				blk, err := c.tryRead(10 * time.Second)
				if err != nil {
					t.Errorf("%s: after %d pushes, %d ACKs: %v", who, pushes, acks, err)
					return
				}
				switch blk.TypeLine() {
				case wire.TypeMESG:
					pushes++
					c.confirm(blockID(t, blk))
				case "ACK 600":
					acks++
				default:
					t.Errorf("%s: unexpected %q", who, blk.TypeLine())
					return
				}
			}
		})
	}
	wg.Wait()
	if p := st.puts.Load(); p != 0 {
		t.Errorf("%d messages stored, want none", p)
	}
}

// slowPutStore is a MemStore whose PutMessage takes a while (an fsync).
type slowPutStore struct {
	*imipserver.MemStore
	delay time.Duration
}

func (s *slowPutStore) PutMessage(ctx context.Context, m imipserver.Message) (int64, error) {
	time.Sleep(s.delay)
	return s.MemStore.PutMessage(ctx, m)
}

// failingStore is a MemStore whose writes of held messages (those with a
// Key), or deletes, fail on demand; entered receives a value each time a
// held message's PutMessage starts, when not nil.
type failingStore struct {
	*imipserver.MemStore
	failHeld, failDelete atomic.Bool
	block                chan struct{} // when not nil, a held PutMessage waits for it
	entered              chan struct{}
}

func (s *failingStore) PutMessage(ctx context.Context, m imipserver.Message) (int64, error) {
	if m.Key != "" {
		if s.entered != nil {
			s.entered <- struct{}{}
		}
		if s.block != nil {
			<-s.block
		}
		if s.failHeld.Load() {
			return 0, errors.New("test: disk full")
		}
	}
	return s.MemStore.PutMessage(ctx, m)
}

func (s *failingStore) DeleteMessages(ctx context.Context, ids ...int64) error {
	if s.failDelete.Load() {
		return errors.New("test: delete failed")
	}
	return s.MemStore.DeleteMessages(ctx, ids...)
}

func newFailingStore(t *testing.T) *failingStore {
	t.Helper()
	st := &failingStore{MemStore: imipserver.NewMemStore()}
	for _, a := range testAccounts {
		if err := st.PutAccount(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// DISC while a held message's ACK waits: the message is stored (its
// recipient did not confirm), then the sender gets the MESG's ACK and the
// DISC's, in that order, then the end.
func TestHeldThenDISC(t *testing.T) {
	ts := startServer(t, imipserver.Config{HoldWrites: time.Minute})
	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	b.expectPing() // the login's own delivery ran: messages may be pushed live
	a := loginRaw(t, ts.addr, alice)
	id := a.send(wire.TypeMESG, "", "bye soon", wire.HdrTo, string(bob))
	b.expect(wire.TypeMESG) // not confirmed
	disc := a.send(wire.TypeDISC, "", "")
	a.expectACK(wire.CodeOK, id)
	a.expectACK(wire.CodeOK, disc)
	a.expectClosed()
	if msgs := held(t, ts.store, bob); len(msgs) != 1 || msgs[0].Text != "bye soon" {
		t.Errorf("held %+v, want the message stored", msgs)
	}
}

// A recipient that logs in again while a message pushed to its old
// connection waits: that message comes before the sender's next one on
// the new connection.
func TestHeldOrderAcrossRelogin(t *testing.T) {
	st := &slowPutStore{MemStore: imipserver.NewMemStore(), delay: 2 * time.Millisecond}
	for _, a := range testAccounts {
		if err := st.PutAccount(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, imipserver.Config{Store: st, HoldWrites: time.Minute})
	b1 := dialRaw(t, ts.addr)
	b1.loginMesgAck(bob)
	b1.expectPing()
	a := loginRaw(t, ts.addr, alice)
	a.send(wire.TypeMESG, "", "one", wire.HdrTo, string(bob))
	b1.expect(wire.TypeMESG) // not confirmed
	b2 := dialRaw(t, ts.addr)
	b2.loginMesgAck(bob) // replaces b1
	a.send(wire.TypeMESG, "", "two", wire.HdrTo, string(bob))
	var got []string
	for len(got) < 2 {
		blk := b2.read()
		if blk.Type == wire.TypeMESG {
			got = append(got, string(blk.Body))
		}
	}
	if got[0] != "one" || got[1] != "two" {
		t.Errorf("bob's new connection got %v, want [one two]", got)
	}
}

// A graceful shutdown stores the held messages still unconfirmed.
func TestHeldStoredAtShutdown(t *testing.T) {
	st := openSQLite(t, filepath.Join(t.TempDir(), "imipd.db"))
	defer st.Close()
	for _, acct := range testAccounts {
		if err := st.PutAccount(context.Background(), acct); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, imipserver.Config{Store: st, HoldWrites: time.Minute})
	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	b.expectPing() // the login's own delivery ran: messages may be pushed live
	a := loginRaw(t, ts.addr, alice)
	a.send(wire.TypeMESG, "", "in flight", wire.HdrTo, string(bob))
	b.expect(wire.TypeMESG) // not confirmed
	ts.stop()
	if msgs := held(t, st, bob); len(msgs) != 1 || msgs[0].Key == "" {
		t.Errorf("held %+v after the shutdown, want the message with its key", msgs)
	}
}

// A held message whose write fails: the sender is disconnected and gets no
// answer to any later block (it would take one as confirming the MESG).
func TestHeldStoreFailure(t *testing.T) {
	st := newFailingStore(t)
	st.failHeld.Store(true)
	st.block = make(chan struct{})
	st.entered = make(chan struct{}, 1)
	ts := startServer(t, imipserver.Config{Store: st, HoldWrites: 10 * time.Millisecond})
	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	b.expectPing() // the login's own delivery ran: messages may be pushed live
	a := loginRaw(t, ts.addr, alice)
	a.send(wire.TypeMESG, "", "doomed", wire.HdrTo, string(bob))
	b.expect(wire.TypeMESG)
	for range 20 { // their answers wait behind the MESG's
		a.send(wire.TypePING, "", "")
	}
	<-st.entered    // the hold ended: the write starts, and waits
	close(st.block) // the write fails
	for {
		blk, err := a.tryRead(10 * time.Second)
		if err != nil {
			break // closed
		}
		if blk.Type == wire.TypeACK {
			t.Fatalf("got %q (Reference %s) after the held message's write failed", blk.TypeLine(), blk.Get(wire.HdrReference))
		}
	}
}

// Answers waiting behind a held ACK count against OutQueueBytes: a sender
// that piles them up is disconnected, as one that does not read.
func TestHeldAnswersBounded(t *testing.T) {
	st := newFailingStore(t)
	st.block = make(chan struct{})
	st.entered = make(chan struct{}, 1)
	defer close(st.block)
	ts := startServer(t, imipserver.Config{Store: st, HoldWrites: 10 * time.Millisecond, OutQueueBytes: 16 << 10})
	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	b.expectPing() // the login's own delivery ran: messages may be pushed live
	a := loginRaw(t, ts.addr, alice)
	a.send(wire.TypeMESG, "", "stuck", wire.HdrTo, string(bob))
	b.expect(wire.TypeMESG)
	<-st.entered // the write stalls
	for i := 0; i < 5000 && ts.srv.Online(alice); i++ {
		b := wire.Block{Type: wire.TypePING}
		b.Add(wire.HdrID, strconv.Itoa(5000+i))
		if err := a.w.WriteBlock(&b); err != nil {
			break // disconnected
		}
	}
	waitFor(t, "alice disconnected", func() bool { return !ts.srv.Online(alice) })
}

// A held message stored, then confirmed, whose delete fails: it is not
// pushed again on the same connection.
func TestHeldFailedDeleteNotPushedAgain(t *testing.T) {
	st := newFailingStore(t)
	ts := startServer(t, imipserver.Config{Store: st, HoldWrites: 10 * time.Millisecond})
	b := dialRaw(t, ts.addr)
	b.loginMesgAck(bob)
	b.expectPing() // the login's own delivery ran: messages may be pushed live
	a := loginRaw(t, ts.addr, alice)
	id := a.send(wire.TypeMESG, "", "once", wire.HdrTo, string(bob))
	m := b.expect(wire.TypeMESG)
	a.expectACK(wire.CodeOK, id) // stored once the hold ended
	st.failDelete.Store(true)
	b.confirm(blockID(t, m))
	sendTexts(a, bob, "next") // stored or pushed: deliver runs
	if m2 := b.expect(wire.TypeMESG); string(m2.Body) != "next" {
		t.Errorf("pushed %q (Message-ID %s) again, want the next message", m2.Body, m2.Get("Message-ID"))
	}
}

// A live message to a plain recipient (no mesg-ack) is answered once
// written, in its place among the sender's answers: a later PING's answer
// comes after it. A push the recipient's connection drops unwritten is
// stored (it goes at the next login) before the sender's ACK.
func TestLivePushAnswerOrder(t *testing.T) {
	// Every ACK waits 300 ms before it is written (alice's too).
	ts := startServer(t, imipserver.Config{Faults: imipserver.Faults{DelayACK: 300 * time.Millisecond}})
	b := loginRaw(t, ts.addr, bob) // plain
	b.send(wire.TypePING, "", "")  // its ACK holds bob's queue for 300 ms
	a := loginRaw(t, ts.addr, alice)
	id := a.send(wire.TypeMESG, "", "live", wire.HdrTo, string(bob))
	ping := a.send(wire.TypePING, "", "")
	ts.srv.Kick(bob) // before the push could be written
	a.expectACK(wire.CodeOK, id)
	a.expectACK(wire.CodeOK, ping)
	if msgs := held(t, ts.store, bob); len(msgs) != 1 || msgs[0].Text != "live" {
		t.Errorf("held for bob: %+v, want the message", msgs)
	}
}
