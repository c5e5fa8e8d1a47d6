package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
			// The transport's own latency, from its /metrics: every
			// message of the chat went straight through (the users were
			// online), and it is a part of the end-to-end latency.
			if r := w.Relay; r == nil || r.Count != uint64(w.Delivered) || r.P99ms < r.P50ms || r.Meanms <= 0 || r.Meanms > w.Maxms {
				t.Errorf("rate %d: the transport's relay latency %+v, for %d messages delivered", rate, r, w.Delivered)
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

// On PostgreSQL, as a one-instance cluster (-store-dsn, -cluster): the
// transport takes each user's ownership, its slot check comes back through
// the tool's server, the barriers go per user, and every message arrives
// once.
func TestRunCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	if err := testenv.PostgresAvailable(); err != nil {
		testenv.SkipUnavailable(t, err)
	}
	pg := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := Run(ctx, Config{Users: 1, Cluster: true, Quiet: true}, nil); err == nil || !strings.Contains(err.Error(), "-store-dsn") {
		t.Errorf("-cluster without -store-dsn: %v, want it refused", err)
	}
	rep, err := Run(ctx, Config{Users: 20, Messages: 300, Rate: 500, Idle: 500 * time.Millisecond, Quiet: true,
		StoreDSN: pg.NewDatabase(t), Cluster: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []Way{rep.ToIMIP, rep.ToXMPP} {
		if w.Sent != 300 || w.Delivered != 300 || w.Duplicated != 0 || w.Refused != 0 {
			t.Errorf("%+v, want 300 sent and delivered once", w)
		}
	}
	if rep.Lost != 0 || rep.Users != 20 {
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

// The relay summary is read from the transport's Prometheus histograms:
// the chat's share (a scrape minus the one before), its mean, and the
// bucket bounds the percentiles are at or below.
func TestRelaySummary(t *testing.T) {
	page := func(b1, b2, inf uint64, sum float64) string {
		return fmt.Sprintf(`# TYPE imip_transport_relay_seconds histogram
imip_transport_relay_seconds_bucket{direction="to_imip",le="0.001"} %d
imip_transport_relay_seconds_bucket{direction="to_imip",le="0.002"} %d
imip_transport_relay_seconds_bucket{direction="to_imip",le="+Inf"} %d
imip_transport_relay_seconds_sum{direction="to_imip"} %g
imip_transport_relay_seconds_count{direction="to_imip"} %d
imip_transport_imip_sessions{state="online"} 3
`, b1, b2, inf, sum, inf)
	}
	var body atomic.Value
	body.Store(page(5, 5, 5, 0.004))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, body.Load().(string))
	}))
	defer srv.Close()
	ctx := context.Background()
	addr := strings.TrimPrefix(srv.URL, "http://")
	before := relayHistograms(ctx, addr)
	// 100 more: 98 at most 1 ms, 1 at most 2 ms, 1 above.
	body.Store(page(103, 104, 105, 0.004+0.1))
	after := relayHistograms(ctx, addr)
	s := after["to_imip"].since(before["to_imip"]).summary()
	if s == nil || s.Count != 100 || s.P50ms != 1 || s.P99ms != 2 || math.Abs(s.Meanms-1) > 1e-9 {
		t.Errorf("summary %+v, want 100 messages, mean 1 ms, p50 <= 1 ms, p99 <= 2 ms", s)
	}
	if s := after["to_xmpp"].since(before["to_xmpp"]).summary(); s != nil {
		t.Errorf("summary of a direction not scraped: %+v, want none", s)
	}
	// Beyond the last bound, a percentile is unbounded (-1, which JSON
	// carries): 98 of 200 at most 1 ms, the rest above 2 ms.
	body.Store(page(103, 103, 205, 10))
	s = relayHistograms(ctx, addr)["to_imip"].since(before["to_imip"]).summary()
	if s == nil || s.P50ms != -1 || s.P99ms != -1 {
		t.Errorf("summary %+v, want p50 and p99 above the last bound (-1)", s)
	}
	if _, err := json.Marshal(s); err != nil {
		t.Errorf("the summary does not go into the JSON report: %v", err)
	}
}
