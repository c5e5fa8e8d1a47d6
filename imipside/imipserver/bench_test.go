package imipserver_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

// benchText is the body of every benchmark message (62 bytes, like the
// wire codec's benchmark).
const benchText = "Hello from the benchmark, this is a typical short chat message."

// BenchmarkSQLiteThroughput measures messages per second through a server
// on a SQLite store in a temporary directory (a real file: every commit
// reaches the disk). Each sub-benchmark sends b.N messages:
//
//   - held/senders=N: N connections pipeline MESGs without ACK-Type to an
//     offline recipient; done when every ACK 600 (sent once the message
//     is durable) has arrived.
//   - live/plain: one sender pipelines errors-only MESGs to a recipient
//     online without mesg-ack; done when it has read them all.
//   - live/mesg-ack/pairs=N: N senders each pipeline errors-only MESGs to
//     their own recipient, online with mesg-ack, which confirms each MESG
//     as it reads it: every message is stored, pushed, confirmed and
//     deleted. Done when all are read and the store is empty.
//
// Run: go test -run '^$' -bench SQLiteThroughput -benchtime 2000x ./imipside/imipserver/
func BenchmarkSQLiteThroughput(b *testing.B) {
	for _, senders := range []int{1, 16} {
		b.Run(fmt.Sprintf("held/senders=%d", senders), func(b *testing.B) {
			ts, from := benchServer(b, senders)
			clients := make([]*rawClient, senders)
			for i := range clients {
				clients[i] = loginRaw(b, ts.addr, from[i])
			}
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, senders)
			for i, c := range clients {
				n := b.N / senders
				if i < b.N%senders {
					n++
				}
				wg.Go(func() { errs <- pipeline(c, bob, n, false) })
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
	b.Run("live/plain", func(b *testing.B) {
		ts, from := benchServer(b, 1)
		sender := loginRaw(b, ts.addr, from[0])
		rcpt := loginRaw(b, ts.addr, bob)
		b.ResetTimer()
		start := time.Now()
		errc := make(chan error, 1)
		go func() { errc <- pipeline(sender, bob, b.N, true) }()
		for range b.N {
			if _, err := readMESG(rcpt); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})
	for _, pairs := range []int{1, 16} {
		b.Run(fmt.Sprintf("live/mesg-ack/pairs=%d", pairs), func(b *testing.B) { benchMesgAck(b, pairs) })
	}
}

// benchMesgAck runs pairs senders, each pipelining its share of b.N
// errors-only MESGs to its own recipient, online with mesg-ack, which
// confirms each MESG as it reads it.
func benchMesgAck(b *testing.B, pairs int) {
	ts, from := benchServer(b, 2*pairs)
	senders, rcpts := from[:pairs], from[pairs:]
	var wg sync.WaitGroup
	errs := make(chan error, 2*pairs)
	for i := range pairs {
		n := b.N / pairs
		if i < b.N%pairs {
			n++
		}
		sender := loginRaw(b, ts.addr, senders[i])
		rcpt := dialRaw(b, ts.addr)
		rcpt.loginMesgAck(rcpts[i])
		wg.Go(func() { errs <- pipeline(sender, rcpts[i], n, true) })
		wg.Go(func() {
			for range n {
				m, err := readMESG(rcpt)
				if err != nil {
					errs <- err
					return
				}
				id, _ := m.ID()
				rcpt.confirm(id)
			}
		})
	}
	b.ResetTimer()
	start := time.Now()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, "every message deleted", func() bool {
		for _, r := range rcpts {
			if m, err := ts.store.Messages(context.Background(), r, 0, 1); err != nil || len(m) > 0 {
				return false
			}
		}
		return true
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// benchServer starts a server on a fresh SQLite store holding the test
// accounts and n more, whose numbers it returns.
func benchServer(b *testing.B, n int) (*testServer, []wire.Number) {
	b.Helper()
	dir := b.TempDir()
	st, err := imipserver.OpenSQLite(context.Background(), filepath.Join(dir, "imipd.db"),
		imipserver.SQLiteOptions{KeyFile: filepath.Join(dir, "imipd.key")})
	if err != nil {
		b.Fatal(err)
	}
	var from []wire.Number
	accts := append([]imipserver.Account(nil), testAccounts...)
	for i := range n {
		num := wire.Number(strconv.Itoa(2000000 + i))
		from = append(from, num)
		accts = append(accts, imipserver.Account{Number: num, Password: password(num), Nick: "s"})
	}
	for _, a := range accts {
		if err := st.PutAccount(context.Background(), a); err != nil {
			b.Fatal(err)
		}
	}
	ts := startServer(b, imipserver.Config{Store: st})
	b.Cleanup(func() {
		ts.stop()
		st.Close()
	})
	return ts, from
}

// pipeline writes n MESGs to `to` without waiting between them. Without
// errorsOnly it then reads one ACK 600 per message (while writing).
func pipeline(c *rawClient, to wire.Number, n int, errorsOnly bool) error {
	acks := make(chan error, 1)
	if !errorsOnly {
		go func() {
			for i := range n {
				blk, err := c.tryRead(30 * time.Second)
				if err != nil {
					acks <- fmt.Errorf("ACK %d of %d: %w", i+1, n, err)
					return
				}
				if blk.TypeLine() != "ACK 600" {
					acks <- fmt.Errorf("got %q, want ACK 600", blk.TypeLine())
					return
				}
			}
			acks <- nil
		}()
	}
	var buf []byte
	for range n {
		blk := wire.Block{Type: wire.TypeMESG, Body: []byte(benchText)}
		blk.Add(wire.HdrID, strconv.FormatUint(c.next, 10))
		c.next++
		blk.Add(wire.HdrTo, string(to))
		if errorsOnly {
			blk.Add(wire.HdrACKType, wire.ACKTypeErrorsOnly)
		}
		buf, _ = wire.AppendBlock(buf[:0], &blk)
		if _, err := c.nc.Write(buf); err != nil {
			return err
		}
	}
	if errorsOnly {
		return nil
	}
	return <-acks
}

// readMESG reads the next block, which must be a MESG.
func readMESG(c *rawClient) (*wire.Block, error) {
	blk, err := c.tryRead(30 * time.Second)
	if err != nil {
		return nil, err
	}
	if blk.Type != wire.TypeMESG {
		return nil, errors.New("got " + blk.TypeLine() + ", want MESG")
	}
	return blk, nil
}
