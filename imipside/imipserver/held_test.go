package imipserver_test

import (
	"context"
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
