package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"imip-transport/gateway"
	"imip-transport/imipside/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeSource struct {
	st       gateway.Stats
	storeErr error
}

func (f *fakeSource) Stats() gateway.Stats                 { return f.st }
func (f *fakeSource) CheckStore(ctx context.Context) error { return f.storeErr }

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestCollector(t *testing.T) {
	var rtt gateway.Histogram
	rtt.Counts[0], rtt.Counts[3], rtt.Counts[len(gateway.LatencyBounds)] = 2, 1, 1
	rtt.Count, rtt.Sum = 4, 30*time.Second
	src := &fakeSource{st: gateway.Stats{
		Registered: 7, LinkUp: true, Sessions: map[string]int64{"online": 3, "dialing": 1},
		Logins: 5, LoginFailures: map[string]uint64{"auth": 2, "network": 0},
		MessagesToIMIP: 11, MessagesToXMPP: 13, MessagesUnwritten: 9, Bounces: 1, QueuedToIMIP: 4,
		IMIPErrors: map[wire.Code]uint64{811: 6}, IMIPRoundTrip: rtt,
	}}
	code, body := get(t, Handler(Options{Source: src}), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	for _, want := range []string{
		"imip_transport_registered_users 7",
		"imip_transport_component_up 1",
		`imip_transport_imip_sessions{state="online"} 3`,
		`imip_transport_imip_sessions{state="dialing"} 1`,
		"imip_transport_imip_logins_total 5",
		`imip_transport_imip_login_failures_total{reason="auth"} 2`,
		`imip_transport_messages_total{direction="to_imip"} 11`,
		`imip_transport_messages_total{direction="to_xmpp"} 13`,
		"imip_transport_messages_unwritten_total 9",
		`imip_transport_queued_messages{direction="to_imip"} 4`,
		`imip_transport_imip_errors_total{code="811"} 6`,
		`imip_transport_imip_request_seconds_bucket{le="0.0005"} 2`,
		`imip_transport_imip_request_seconds_bucket{le="0.005"} 3`,
		`imip_transport_imip_request_seconds_bucket{le="10"} 3`,
		`imip_transport_imip_request_seconds_bucket{le="+Inf"} 4`,
		"imip_transport_imip_request_seconds_sum 30",
		"imip_transport_imip_request_seconds_count 4",
		"go_goroutines ",
		"process_open_fds ",
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestHealth(t *testing.T) {
	src := &fakeSource{}
	linkUp := true
	checks := []Check{
		{Name: "component", Run: func(context.Context) error {
			if !linkUp {
				return errors.New("link down")
			}
			return nil
		}},
		{Name: "store", Run: func(ctx context.Context) error { return src.CheckStore(ctx) }},
	}
	// Each case gets a handler of its own: answers are cached a second.
	code, body := get(t, Handler(Options{Source: src, Checks: checks}), "/healthz")
	var rep HealthReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil || code != http.StatusOK || rep.Status != "ok" ||
		rep.Checks["component"] != "ok" || rep.Checks["store"] != "ok" {
		t.Errorf("all good: %d %s (%v)", code, body, err)
	}
	linkUp, src.storeErr = false, errors.New("disk full")
	h := Handler(Options{Source: src, Checks: checks})
	code, body = get(t, h, "/healthz")
	rep = HealthReport{}
	if err := json.Unmarshal([]byte(body), &rep); err != nil || code != http.StatusServiceUnavailable || rep.Status != "fail" ||
		rep.Checks["component"] != "link down" || rep.Checks["store"] != "disk full" {
		t.Errorf("two failures: %d %s (%v)", code, body, err)
	}
	// A check that does not end is bounded by the timeout.
	slow := []Check{{Name: "slow", Run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}}
	code, body = get(t, Handler(Options{Source: src, Checks: slow, CheckTimeout: 10 * time.Millisecond}), "/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "deadline") {
		t.Errorf("slow check: %d %s", code, body)
	}
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	src := &fakeSource{}
	if code, _ := get(t, Handler(Options{Source: src}), "/debug/pprof/cmdline"); code != http.StatusNotFound {
		t.Errorf("pprof off: status %d, want 404", code)
	}
	if code, _ := get(t, Handler(Options{Source: src, Pprof: true}), "/debug/pprof/cmdline"); code != http.StatusOK {
		t.Errorf("pprof on: status %d, want 200", code)
	}
	if code, _ := get(t, Handler(Options{Source: src}), "/nothing"); code != http.StatusNotFound {
		t.Errorf("unknown path: status %d", code)
	}
}

func TestServerListenClose(t *testing.T) {
	s, err := Listen(Options{Addr: "127.0.0.1:0", Source: &fakeSource{}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d", resp.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := Listen(Options{Addr: "256.0.0.1:1", Source: &fakeSource{}}); err == nil {
		t.Error("Listen on a bad address succeeded")
	}
}

func TestDialCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := DialCheck(addr)(ctx); err != nil {
		t.Errorf("open port: %v", err)
	}
	ln.Close()
	if err := DialCheck(addr)(ctx); err == nil {
		t.Error("closed port: no error")
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9105": true, "127.1.2.3:1": true, "[::1]:9105": true, "localhost:9105": true,
		":9105": false, "0.0.0.0:9105": false, "10.0.0.1:9105": false, "[::]:1": false, "example.org:1": false, "nonsense": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// Beside the Go runtime's defaults, /metrics counts the goroutines
// started and the scheduler's latencies.
func TestRuntimeMetrics(t *testing.T) {
	code, body := get(t, Handler(Options{Source: &fakeSource{}}), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	for _, want := range []string{"go_sched_goroutines_created_goroutines_total ", "go_sched_latencies_seconds_bucket", "go_goroutines ", "process_cpu_seconds_total "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
}
