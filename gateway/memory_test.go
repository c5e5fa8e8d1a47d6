//go:build !race

package gateway

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"

	"imip-transport/imipside/wire"
)

// TestIdleUserMemory measures the live heap per idle logged-in user with two
// contacts: the gateway's state plus the test fakes' (a fake session, the
// fake XMPP side's records, the in-memory store), so it is an upper bound
// for the gateway alone. (Skipped under -race, which inflates the heap.)
// With IMIP_HEAP_PROFILE=file it also writes a heap profile of every
// allocation still live, for `go tool pprof -sample_index=inuse_space -top`.
func TestIdleUserMemory(t *testing.T) {
	const n = 300
	profile := os.Getenv("IMIP_HEAP_PROFILE")
	if profile != "" {
		old := runtime.MemProfileRate
		runtime.MemProfileRate = 1
		defer func() { runtime.MemProfileRate = old }()
	}
	h := newHarness(t, "")
	for i := range n {
		num := wire.Number(fmt.Sprint(5000000 + i))
		h.d.setBuddies(num, wire.Buddy{Number: "100", Nick: "ann"}, wire.Buddy{Number: "200", Nick: "bo"})
	}
	before := heapLive()
	for i := range n {
		h.login(fmt.Sprintf("u%d@localhost/r", i), wire.Number(fmt.Sprint(5000000+i)))
	}
	h.settle()
	per := (heapLive() - before) / n
	t.Logf("idle user: %d bytes of heap each (gateway and fakes)", per)
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
	}
	if per > 6<<10 {
		t.Errorf("an idle user costs %d bytes with the fakes, want <= 6 KiB", per)
	}
}

func heapLive() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
