package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A small run end to end (the real binaries, built here): every message
// arrives once, and the report's counts are what was sent.
func TestSmallRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, rate := range []int{0, 500} {
		rep, err := Run(ctx, Config{Users: 20, Messages: 300, Rate: rate, Window: 50, Idle: time.Second, Quiet: true}, nil)
		if err != nil {
			t.Fatalf("rate %d: %v", rate, err)
		}
		for _, w := range []Way{rep.ToIMIP, rep.ToXMPP} {
			if w.Sent != 300 || w.Delivered != 300 || w.Duplicated != 0 || w.Refused != 0 {
				t.Errorf("rate %d: %+v, want 300 sent and delivered once", rate, w)
			}
			if w.P50ms <= 0 || w.P99ms < w.P50ms || w.Maxms < w.P99ms {
				t.Errorf("rate %d: latencies %+v", rate, w)
			}
		}
		if rep.Lost != 0 || rep.LoginsPerSecond <= 0 || rep.TransportRSSIdle <= 0 || rep.IMIPdRSSIdle <= 0 {
			t.Errorf("rate %d: report %+v", rate, rep)
		}
	}
}

// The charts of a sweep are SVG files with the series' labels.
func TestWriteCharts(t *testing.T) {
	reps := []*Report{
		{Users: 100, ToIMIP: Way{PerSecond: 1900, P99ms: 40}, ToXMPP: Way{PerSecond: 1800, P99ms: 45}, TransportKiBUser: 30, IMIPdKiBConn: 20},
		{Users: 1000, ToIMIP: Way{PerSecond: 2000, P99ms: 230}, ToXMPP: Way{PerSecond: 2000, P99ms: 225}, TransportKiBUser: 27, IMIPdKiBConn: 16},
	}
	dir := t.TempDir()
	if err := WriteCharts(reps, dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"throughput.svg", "latency.svg", "rss.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), "users") {
			t.Errorf("%s is not a chart: %.200s", f, b)
		}
	}
	if _, err := parseSizes("100,x"); err == nil {
		t.Error("parseSizes accepted x")
	}
}
