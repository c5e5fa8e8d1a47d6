package gateway

import (
	"context"
	"fmt"
	"testing"

	"mellium.im/xmpp/jid"
)

// BenchmarkInbox: the cost of handing one event to a user's run loop and
// having it handled (an event that does nothing), events spread over 100
// users posted from one goroutine, as the component's read loop does: the
// hand-off itself (a goroutine woken or started per burst), not the work.
func BenchmarkInbox(b *testing.B) {
	g, err := New(context.Background(), Config{Domain: gw, Store: newMemStore(), Dialer: newFakeDialer(), InboxSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close(context.Background())
	users := make([]*user, 100)
	for i := range users {
		users[i] = newUser(g, jid.MustParse(fmt.Sprintf("u%d@localhost", i)))
		users[i].loaded = true
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		users[i%len(users)].post(evLoad{})
	}
	if err := g.runs.wait(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkInboxOneAtATime: the same, one event at a time (each handled
// before the next is posted), as at a steady low rate: every event finds
// its user's loop stopped.
func BenchmarkInboxOneAtATime(b *testing.B) {
	g, err := New(context.Background(), Config{Domain: gw, Store: newMemStore(), Dialer: newFakeDialer()})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close(context.Background())
	u := newUser(g, jid.MustParse("u@localhost"))
	u.loaded = true
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		u.post(evLoad{})
		if err := g.runs.wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
