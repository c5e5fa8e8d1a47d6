package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"imip-transport/imipside/wire"
	"imip-transport/internal/app"
	"imip-transport/internal/metrics"
	"imip-transport/internal/storelock"
)

// scrape GETs url and returns the status and body.
func scrape(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// metricValue returns the value of the sample named by series (the metric
// name and its labels as written, e.g. `x_total{direction="in"}`), or -1.
func metricValue(body, series string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// The monitoring endpoints during a real run: a user logs in through
// Prosody and chats both ways; /metrics counts it, /healthz is green, and
// pprof answers only when enabled.
func TestMetricsEndpoint(t *testing.T) {
	srv := prosodyPriv.Get(t)
	addrs := make(chan string, 2)
	tr := startTransportWith(t, srv, func(o *app.Options) {
		o.MonitorAddr = "127.0.0.1:0"
		o.Pprof = true
		o.MonitorReady = func(a string) { addrs <- a }
	}, acctAlice, acctBob)
	base := "http://" + <-addrs
	befriend(t, tr, acctAlice.Number, acctBob.Number)
	bob := dialIMIP(t, tr, acctBob.Number, acctBob.Password)
	c := newUser(t, srv, "metrics")
	c.autoApprove = tr.domain.String()
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	bob.expectStat(acctAlice.Number, wire.StatusOnline, "")
	bobJID := tr.contact(acctBob.Number)
	c.send(`<message type="chat" to=%q id="m1"><body>to bob</body></message>`, bobJID)
	bob.expectMessage(acctAlice.Number, "to bob")
	bob.send(acctAlice.Number, "to alice")
	c.expect("bob's message", isMessage(bobJID))
	c.send(`<message type="chat" to=%q id="bad"><body>x</body></message>`, "nobody@"+tr.domain.String())
	c.expect("jid-malformed", isMessageError("bad"))

	want := map[string]float64{
		`imip_transport_component_up`:                             1,
		`imip_transport_registered_users`:                         1,
		`imip_transport_imip_sessions{state="online"}`:            1,
		`imip_transport_messages_total{direction="to_imip"}`:      1,
		`imip_transport_messages_total{direction="to_xmpp"}`:      1,
		`imip_transport_bounces_total`:                            1,
		`imip_transport_queued_messages{direction="to_imip"}`:     0,
		`imip_transport_imip_login_failures_total{reason="auth"}`: 0,
		`imip_transport_component_connects_total`:                 1,
	}
	var body string
	deadline := time.Now().Add(waitFor)
	for {
		var code int
		code, body = scrape(t, base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: status %d\n%s", code, body)
		}
		ok := true
		for series, v := range want {
			if metricValue(body, series) != v {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			for series, v := range want {
				if got := metricValue(body, series); got != v {
					t.Errorf("%s = %v, want %v", series, got, v)
				}
			}
			t.Fatalf("metrics never matched; body:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond) // polling interval only; the deadline decides
	}
	for series, atLeast := range map[string]float64{
		`imip_transport_imip_logins_total`:                      1,
		`imip_transport_stanzas_total{direction="in"}`:          3,
		`imip_transport_stanzas_total{direction="out"}`:         3,
		`imip_transport_store_commit_seconds_count`:             1,
		`imip_transport_imip_request_seconds_count`:             2,
		`imip_transport_imip_request_seconds_bucket{le="+Inf"}`: 2,
		`go_goroutines`:                 1,
		`process_resident_memory_bytes`: 1,
	} {
		if got := metricValue(body, series); got < atLeast {
			t.Errorf("%s = %v, want at least %v", series, got, atLeast)
		}
	}

	code, hb := scrape(t, base+"/healthz")
	var rep metrics.HealthReport
	if err := json.Unmarshal([]byte(hb), &rep); err != nil {
		t.Fatalf("/healthz body %q: %v", hb, err)
	}
	if code != http.StatusOK || rep.Status != "ok" || rep.Checks["component"] != "ok" || rep.Checks["store"] != "ok" || rep.Checks["imip"] != "ok" {
		t.Errorf("/healthz: %d %s", code, hb)
	}
	// The running transport holds the store's lock: the admin commands
	// that write, and a second transport, are refused.
	if _, err := storelock.Acquire(tr.store); !errors.Is(err, storelock.ErrLocked) {
		t.Errorf("store lock while the transport runs: %v, want ErrLocked", err)
	}
	if code, b := scrape(t, base+"/debug/pprof/cmdline"); code != http.StatusOK || b == "" {
		t.Errorf("/debug/pprof/cmdline: %d %q", code, b)
	}
	if code, b := scrape(t, base+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(b, "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine: %d", code)
	}
}
