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
	ts := startServer(t, imipserver.Config{Store: st})
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
	before := measure()
	for i := range users {
		c := dialRaw(t, ts.addr)
		c.login(wire.Number(strconv.Itoa(5000000 + i)))
		conns = append(conns, c.nc)
	}
	waitFor(t, "all online", func() bool { return ts.srv.Online(wire.Number(strconv.Itoa(5000000 + users - 1))) })
	time.Sleep(50 * time.Millisecond) // writer goroutines exit once queues drain
	after := measure()
	heap := (int64(after.HeapInuse) - int64(before.HeapInuse)) / users
	stack := (int64(after.StackInuse) - int64(before.StackInuse)) / users
	per := heap + stack
	t.Logf("per idle logged-in user: %d bytes of heap (server and test client) + %d bytes of stack (the server's reader goroutine)", heap, stack)
	if per > 16<<10 {
		t.Errorf("%d bytes per idle user, want under 16 KiB", per)
	}
}
