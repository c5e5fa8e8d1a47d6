package app

// Tests of the slot connections (cluster.go); regression tests found by a
// review.

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"mellium.im/xmpp/jid"

	"imip-transport/gateway"
	"imip-transport/gateway/pgstore"
	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/internal/cluster"
	"imip-transport/internal/testenv"
	"imip-transport/xmppside"
)

// Was a defect: a slot that this instance gives away (give: its connection
// closes, giving[slot] is set) but that comes back to it in the check that
// frees it (the instance it was meant for died or began stopping
// meanwhile, and this one now holds the fewest) leaves the set of slots
// the node reports unchanged, so the Slots hook is never called: giving
// keeps the slot, onSlots never starts a connection for it, and the slot
// stays held in the database without a connection for good (the server
// drops every stanza of the users hashed to it, silently).
func TestGivenSlotComingBackReopens(t *testing.T) {
	if err := testenv.PostgresAvailable(); err != nil {
		t.Skip(err)
	}
	pg := testenv.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	ctx := context.Background()
	st, err := pgstore.Open(ctx, dsn, pgstore.Options{KeyFile: t.TempDir() + "/key"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	node, err := cluster.Join(ctx, cluster.Config{DSN: dsn, Slots: 3, CheckInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	domain := jid.MustParse("imip.localhost")
	g, err := gateway.New(ctx, gateway.Config{Domain: domain, Store: st, Owners: node,
		Dialer: gateway.DialerFunc(func(context.Context, wire.Number, string, imipside.Handler) (gateway.IMIPSession, error) {
			return nil, errors.New("no IMIP here")
		})})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(ctx)
	// No XMPP server: the connections try to connect until closed.
	s := newSlotConns(g, node, 3, xmppside.Config{Domain: domain, Server: "127.0.0.1:1", Secret: "x",
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)},
		slog.New(slog.DiscardHandler))
	q, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)

	// A joiner that dies while the slot is being given to it: a row and
	// its lock, on a connection of the test's.
	joiner, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var jmu sync.Mutex // the joiner's connection is used by the test, then closed by the hook
	given := make(chan int, 1)
	hooks := cluster.Hooks{Slots: s.onSlots, Release: g.ReleaseUser, Give: func(eligible []int) (int, <-chan struct{}, bool) {
		jmu.Lock()
		_ = joiner.Close(ctx) // the joiner dies now
		jmu.Unlock()
		slot, closed, ok := s.give(eligible)
		if ok {
			select {
			case given <- slot:
			default:
			}
		}
		return slot, closed, ok
	}}
	node.SetHooks(hooks)

	compCtx, cancelComp := context.WithCancel(ctx)
	defer cancelComp()
	runErr := make(chan error, 1)
	s.start(compCtx, runErr)
	nodeCtx, cancelNode := context.WithCancel(ctx)
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(nodeCtx) }()
	defer func() {
		cancelNode()
		<-nodeDone
		cancelComp()
		s.wait(5 * time.Second)
	}()
	running := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.running)
	}
	waitCond(t, "three slot connections", func() bool { return running() == 3 })

	var id int32
	jmu.Lock()
	if err := joiner.QueryRow(ctx, `INSERT INTO cluster_instances (name, started) VALUES ('joiner', 0) RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := joiner.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, cluster.LockSpace, id); err != nil {
		t.Fatal(err)
	}
	jmu.Unlock()
	// The node sees the joiner, gives it a slot; the joiner is gone by
	// the check that frees it, so the slot comes back. The slot is without
	// a connection for a few milliseconds only: the hook tells when it was
	// given.
	select {
	case <-given:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the slot given")
	}
	var held int
	waitCond(t, "the node to hold all three slots again", func() bool {
		err := q.QueryRow(ctx, `SELECT count(*) FROM cluster_slots WHERE instance = $1`, node.ID()).Scan(&held)
		return err == nil && held == 3
	})
	deadline := time.Now().Add(3 * time.Second)
	for running() != 3 {
		if time.Now().After(deadline) {
			s.mu.Lock()
			t.Fatalf("the node holds 3 slots in the database, but only %d have a connection", len(s.running))
			s.mu.Unlock()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
