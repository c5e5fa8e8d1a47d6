package gateway_test

// Benchmarks of durable message writes on the real SQLite store (a file in
// the test's temporary directory, WAL, synchronous=FULL): one transaction
// per write against the group commit. Each message is an insert and, once
// "delivered", a delete: 2 ops. Run with
//
//	go test -run '^$' -bench 'ApplyPerMessage|Committer' -benchtime 3s ./gateway/

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"imip-transport/gateway"
	"imip-transport/gateway/sqlitestore"
	"imip-transport/imipside/wire"
)

const benchUsers = 256

func benchJID(i int) string { return fmt.Sprintf("user%d@localhost", i%benchUsers) }

// openBenchStore returns a store on a new file with benchUsers
// registrations.
func openBenchStore(b *testing.B) *sqlitestore.Store {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	st, err := sqlitestore.Open(ctx, dir+"/bench.db", sqlitestore.Options{KeyFile: dir + "/bench.key"})
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

func benchMessage(i int) *gateway.QueuedMessage {
	return &gateway.QueuedMessage{JID: benchJID(i), Dir: gateway.ToIMIP, Peer: "7744387",
		StanzaID: fmt.Sprint("m", i), Resource: "phone", Body: "Hello, how are you today?"}
}

// runSenders runs n goroutines that together send b.N messages with send.
func runSenders(b *testing.B, n int, send func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range n {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := send(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkApplyPerMessage: every op its own Store.Apply, its own fsync.
func BenchmarkApplyPerMessage(b *testing.B) {
	for _, senders := range []int{1, 16} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			st := openBenchStore(b)
			ctx := context.Background()
			runSenders(b, senders, func(i int) error {
				m := benchMessage(i)
				if err := st.Apply(ctx, []gateway.Op{gateway.OpPutMessage{Msg: m}}); err != nil {
					return err
				}
				return st.Apply(ctx, []gateway.Op{gateway.OpDeleteMessage{ID: m.ID}})
			})
		})
	}
}

// BenchmarkCommitter: the ops go through the group commit; each sender
// waits for its insert to commit before it submits the delete, and for the
// delete before its next message.
func BenchmarkCommitter(b *testing.B) {
	for _, senders := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			st := openBenchStore(b)
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
			s := c.Stats()
			if s.Batches > 0 {
				b.ReportMetric(float64(s.Ops)/float64(s.Batches), "ops/batch")
			}
			if s.Failed > 0 {
				b.Errorf("%d batches failed", s.Failed)
			}
		})
	}
}
