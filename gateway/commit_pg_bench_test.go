package gateway_test

// The committer on each store, durability on: SQLite (WAL,
// synchronous=FULL) against PostgreSQL (a private server from
// internal/testenv: fsync=on, synchronous_commit=on, unix socket). Run with
//
//	go test -run '^$' -bench 'CommitterStores' -benchtime 3s ./gateway/

import (
	"context"
	"fmt"
	"testing"
	"time"

	"imip-transport/gateway"
	"imip-transport/gateway/pgstore"
	"imip-transport/imipside/wire"
	"imip-transport/internal/testenv"
)

// openBenchPostgres returns a store on a new database of pg with
// benchUsers registrations.
func openBenchPostgres(b *testing.B, pg *testenv.Postgres) gateway.Store {
	b.Helper()
	ctx := context.Background()
	st, err := pgstore.Open(ctx, pg.NewDatabase(b), pgstore.Options{KeyFile: b.TempDir() + "/bench.key"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	for i := range benchUsers {
		r := gateway.Registration{JID: benchJID(i), Number: wire.Number(fmt.Sprint(1000 + i)), Password: "pw"}
		if err := st.PutRegistration(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	return st
}

func BenchmarkCommitterStores(b *testing.B) {
	pg := testenv.StartPostgres(b)
	stores := []struct {
		name string
		open func(*testing.B) gateway.Store
	}{
		{"sqlite", func(b *testing.B) gateway.Store { return openBenchStore(b) }},
		{"postgres", func(b *testing.B) gateway.Store { return openBenchPostgres(b, pg) }},
	}
	for _, s := range stores {
		for _, senders := range []int{1, 256} {
			b.Run(fmt.Sprintf("store=%s/senders=%d", s.name, senders), func(b *testing.B) {
				st := s.open(b)
				c := gateway.NewCommitter(st, gateway.CommitConfig{})
				commit := func(ops ...gateway.Op) error {
					done := make(chan error, 1)
					if !c.Submit(ops, func(err error) { done <- err }) {
						return fmt.Errorf("queue full")
					}
					return <-done
				}
				runSenders(b, senders, func(i int) error {
					m := benchMessage(i)
					if err := commit(gateway.OpPutMessage{Msg: m}); err != nil {
						return err
					}
					if m.ID == 0 {
						return fmt.Errorf("message %d not stored", i)
					}
					return commit(gateway.OpDeleteMessage{ID: m.ID})
				})
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := c.Close(ctx); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
