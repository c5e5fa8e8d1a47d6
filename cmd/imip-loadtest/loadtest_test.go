package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
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
		// With a rate, also a restart: every user logs in again.
		rep, err := Run(ctx, Config{Users: 20, Messages: 300, Rate: rate, Window: 50, Idle: time.Second, Quiet: true, Restart: rate > 0}, nil)
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
		if restarted := rep.RestartSeconds > 0; restarted != (rate > 0) {
			t.Errorf("rate %d: restart measured %v (%.2f s)", rate, restarted, rep.RestartSeconds)
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

// Through a real XMPP server (-xmpp prosody): the users are client sessions
// on a private Prosody, the transport its component; they register with
// the gateway by XEP-0077 through the server, log in, and every message
// arrives once.
func TestRunThroughProsody(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	if err := xmppserver.ProsodyAvailable("prosody"); err != nil {
		testenv.SkipUnavailable(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{XMPP: "prosody", Users: 10, Messages: 200, Window: 50, Idle: 500 * time.Millisecond, Quiet: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []Way{rep.ToIMIP, rep.ToXMPP} {
		if w.Sent != 200 || w.Delivered != 200 || w.Duplicated != 0 || w.Refused != 0 {
			t.Errorf("%+v, want 200 sent and delivered once", w)
		}
	}
	if rep.Lost != 0 || rep.Users != 10 || rep.LoginsPerSecond <= 0 {
		t.Errorf("report %+v", rep)
	}
}

// -xmpp external without the server's addresses is refused before
// anything starts.
func TestExternalNeedsServer(t *testing.T) {
	_, err := Run(context.Background(), Config{XMPP: "external", Users: 1, Transport: "/nonexistent", IMIPd: "/nonexistent", Quiet: true}, nil)
	if err == nil || !strings.Contains(err.Error(), "-c2s") {
		t.Errorf("Run = %v, want the missing server named", err)
	}
}
