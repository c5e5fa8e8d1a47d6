package imipserver_test

import (
	"context"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

// TestIdleMemoryPerUser logs in many users over loopback and measures
// what the server holds per idle logged-in user (heap and stacks, client
// sockets included). Target: a few KiB.
func TestIdleMemoryPerUser(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	const users = 500
	st := imipserver.NewMemStore()
	for i := range users {
		n := wire.Number(strconv.Itoa(5000000 + i))
		if err := st.PutAccount(context.Background(), imipserver.Account{Number: n, Password: password(n), Nick: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, imipserver.Config{Store: st, ParkAfter: 5 * time.Millisecond})
	conns := make([]net.Conn, 0, users)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	measure := func() runtime.MemStats {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m
	}
	goroutines := runtime.NumGoroutine()
	before := measure()
	for i := range users {
		c := dialRaw(t, ts.addr)
		c.login(wire.Number(strconv.Itoa(5000000 + i)))
		conns = append(conns, c.nc)
	}
	waitFor(t, "all online", func() bool { return ts.srv.Online(wire.Number(strconv.Itoa(5000000 + users - 1))) })
	// Writer goroutines exit once queues drain, readers park once idle.
	waitFor(t, "idle connections parked", func() bool { return runtime.NumGoroutine() < goroutines+users/50 })
	after := measure()
	heap := (int64(after.HeapInuse) - int64(before.HeapInuse)) / users
	stack := (int64(after.StackInuse) - int64(before.StackInuse)) / users
	per := heap + stack
	t.Logf("per idle logged-in user: %d bytes of heap (server and test client) + %d bytes of stack", heap, stack)
	if per > 8<<10 {
		t.Errorf("%d bytes per idle user, want under 8 KiB (parked: no reader goroutine, no read buffer)", per)
	}
}
