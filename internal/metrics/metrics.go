// Package metrics serves the transport's monitoring endpoints on one HTTP
// listener: Prometheus metrics at /metrics (the gateway's counters from
// gateway.Stats, plus the Go runtime and process collectors, on a registry
// of its own), a health check at /healthz, and, when enabled, the
// net/http/pprof profiles under /debug/pprof/.
//
// The gateway updates its counters with atomic adds; this package reads a
// snapshot at each scrape, so monitoring costs the message path nothing.
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"imip-transport/gateway"
)

// Namespace prefixes every metric of the transport.
const Namespace = "imip_transport"

// Source is what the collector and the health check read: *gateway.Gateway.
type Source interface {
	Stats() gateway.Stats
	CheckStore(ctx context.Context) error
}

// Collector exports a Source's stats as Prometheus metrics.
type Collector struct {
	src Source

	registered, loaded, linkUp, uptime          *prometheus.Desc
	sessions, logins, loginFailures             *prometheus.Desc
	messages, bounces, stanzas, queued          *prometheus.Desc
	unwritten                                   *prometheus.Desc
	commitQueue, outboxQueue, outboxDropped     *prometheus.Desc
	componentConnects, imipLost, imipReconnects *prometheus.Desc
	usersTaken, usersGiven                      *prometheus.Desc
	imipErrors, storeLatency, imipRoundTrip     *prometheus.Desc
	relay                                       *prometheus.Desc
}

// NewCollector returns a collector of src's stats.
func NewCollector(src Source) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
	}
	return &Collector{
		src:               src,
		registered:        d("registered_users", "Users registered with the gateway."),
		loaded:            d("loaded_users", "Registered users held in memory (active since the start)."),
		linkUp:            d("component_up", "1 while the component link to the XMPP server is up."),
		uptime:            d("uptime_seconds", "Seconds since the gateway started."),
		sessions:          d("imip_sessions", "Users by IMIP link state (offline users are not counted).", "state"),
		logins:            d("imip_logins_total", "Successful IMIP logins."),
		loginFailures:     d("imip_login_failures_total", "Failed IMIP logins by reason: auth (credentials refused), refused (another IMIP error), timeout, network.", "reason"),
		messages:          d("messages_total", "Messages delivered, by direction: to_imip (confirmed by IMIP), to_xmpp (confirmed by the user's server).", "direction"),
		bounces:           d("bounces_total", "Message errors sent back to Jabber users."),
		unwritten:         d("messages_unwritten_total", "Messages (either way) confirmed by the other side while their store write was held, so never written."),
		stanzas:           d("stanzas_total", "Presences and messages on the component link, by direction (in, out).", "direction"),
		queued:            d("queued_messages", "Messages accepted and not yet delivered or bounced, held in memory, by direction.", "direction"),
		commitQueue:       d("store_commit_queue_ops", "Store writes waiting for the group commit, in ops."),
		outboxQueue:       d("outbox_stanzas", "Stanzas waiting to be written to the component link."),
		outboxDropped:     d("outbox_dropped_total", "Stanzas dropped because the outbox was full."),
		componentConnects: d("component_connects_total", "Component handshakes with the XMPP server (the first included)."),
		imipLost:          d("imip_sessions_lost_total", "Live IMIP sessions that ended without the gateway asking."),
		usersTaken:        d("imip_cluster_users_taken_total", "Users this instance took from another instance, or from none (cluster)."),
		usersGiven:        d("imip_cluster_users_given_total", "Users this instance gave up to another instance that asked (cluster)."),
		imipReconnects:    d("imip_reconnects_total", "IMIP logins started by the retry timer after a failure or a lost session."),
		imipErrors:        d("imip_errors_total", "Error codes IMIP answered logins and requests with.", "code"),
		storeLatency:      d("store_commit_seconds", "Time of each group commit's store write."),
		imipRoundTrip:     d("imip_request_seconds", "Time from an IMIP request to its answer (ACK or a reply)."),
		relay:             d("relay_seconds", "Latency the transport adds to a message that goes straight through, by direction: to_imip (the stanza read to its MESG queued on the IMIP session), to_xmpp (the MESG read to its stanza written).", "direction"),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.registered, c.loaded, c.linkUp, c.uptime, c.sessions, c.logins, c.loginFailures,
		c.messages, c.bounces, c.unwritten, c.stanzas, c.queued, c.commitQueue, c.outboxQueue, c.outboxDropped,
		c.componentConnects, c.imipLost, c.imipReconnects, c.usersTaken, c.usersGiven, c.imipErrors, c.storeLatency, c.imipRoundTrip, c.relay} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one snapshot per scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.registered, float64(s.Registered))
	gauge(c.loaded, float64(s.Loaded))
	up := 0.0
	if s.LinkUp {
		up = 1
	}
	gauge(c.linkUp, up)
	gauge(c.uptime, s.Uptime.Seconds())
	for state, n := range s.Sessions {
		gauge(c.sessions, float64(n), state)
	}
	counter(c.logins, s.Logins)
	for reason, n := range s.LoginFailures {
		counter(c.loginFailures, n, reason)
	}
	counter(c.messages, s.MessagesToIMIP, "to_imip")
	counter(c.messages, s.MessagesToXMPP, "to_xmpp")
	counter(c.bounces, s.Bounces)
	counter(c.unwritten, s.MessagesUnwritten)
	counter(c.stanzas, s.StanzasIn, "in")
	counter(c.stanzas, s.StanzasOut, "out")
	gauge(c.queued, float64(s.QueuedToIMIP), "to_imip")
	gauge(c.queued, float64(s.QueuedToXMPP), "to_xmpp")
	gauge(c.commitQueue, float64(s.CommitQueue))
	gauge(c.outboxQueue, float64(s.OutboxQueue))
	counter(c.outboxDropped, s.OutboxDropped)
	counter(c.componentConnects, s.ComponentConnects)
	counter(c.imipLost, s.IMIPSessionsLost)
	counter(c.usersTaken, s.UsersTaken)
	counter(c.usersGiven, s.UsersGiven)
	counter(c.imipReconnects, s.IMIPReconnects)
	for code, n := range s.IMIPErrors {
		counter(c.imipErrors, n, strconv.Itoa(int(code)))
	}
	ch <- histogram(c.storeLatency, s.StoreLatency)
	ch <- histogram(c.imipRoundTrip, s.IMIPRoundTrip)
	ch <- histogram(c.relay, s.RelayToIMIP, "to_imip")
	ch <- histogram(c.relay, s.RelayToXMPP, "to_xmpp")
}

// histogram turns a gateway histogram into a Prometheus one (cumulative
// buckets).
func histogram(d *prometheus.Desc, h gateway.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(gateway.LatencyBounds))
	var cum uint64
	for i, b := range gateway.LatencyBounds {
		cum += h.Counts[i]
		buckets[b] = cum
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets, labels...)
}

// Check is one health check: nil when all is well.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Options configure the monitoring server.
type Options struct {
	// Addr is the listen address, host:port.
	Addr string
	// Source is the gateway.
	Source Source
	// Checks run, in order, for each /healthz request.
	Checks []Check
	// CheckTimeout bounds each check (0: DefaultCheckTimeout).
	CheckTimeout time.Duration
	// Pprof adds the net/http/pprof handlers under /debug/pprof/.
	Pprof  bool
	Logger *slog.Logger
}

// Limits of the server.
const (
	// DefaultCheckTimeout bounds one health check.
	DefaultCheckTimeout = 2 * time.Second
	// healthCacheFor: a /healthz answer is reused for this long, so that a
	// burst of requests runs the checks (a store write, a TCP dial) once.
	healthCacheFor = time.Second
	// readHeaderTimeout bounds a request's headers.
	readHeaderTimeout = 5 * time.Second
	// writeTimeout bounds an answer; a pprof profile or trace asked for
	// longer than this is cut (ask for ?seconds= below it).
	writeTimeout = 60 * time.Second
	// maxHeaderBytes bounds a request's headers.
	maxHeaderBytes = 16 << 10
)

// Handler returns the HTTP handler of the monitoring endpoints.
func Handler(o Options) http.Handler {
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = DefaultCheckTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	// Beside the default Go metrics: goroutines started (a busy gateway
	// starts run loops and readers per message: a cost to watch) and the
	// scheduler's latencies.
	goc := collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{
		Matcher: regexp.MustCompile(`^/sched/(goroutines-created|latencies):`)}))
	reg.MustRegister(goc, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		NewCollector(o.Source))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slogPrinter{o.Logger},
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	h := &health{checks: o.Checks, timeout: o.CheckTimeout}
	mux.Handle("GET /healthz", h)
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// slogPrinter logs promhttp's errors.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics", "err", fmt.Sprint(v...)) }

// health answers /healthz: 200 and {"status":"ok",...} when every check
// passes, 503 with the failed checks otherwise.
type health struct {
	checks  []Check
	timeout time.Duration

	mu     sync.Mutex // one run of the checks at a time
	at     time.Time
	status int
	body   []byte
}

// HealthReport is the JSON body of /healthz.
type HealthReport struct {
	Status string            `json:"status"` // "ok" or "fail"
	Checks map[string]string `json:"checks"` // "ok" or what failed
}

func (h *health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	if time.Since(h.at) >= healthCacheFor {
		h.status, h.body = h.run(r.Context())
		h.at = time.Now()
	}
	status, body := h.status, h.body
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (h *health) run(ctx context.Context) (int, []byte) {
	rep := HealthReport{Status: "ok", Checks: make(map[string]string, len(h.checks))}
	status := http.StatusOK
	for _, c := range h.checks {
		cctx, cancel := context.WithTimeout(ctx, h.timeout)
		err := c.Run(cctx)
		cancel()
		if err != nil {
			rep.Checks[c.Name] = err.Error()
			rep.Status, status = "fail", http.StatusServiceUnavailable
		} else {
			rep.Checks[c.Name] = "ok"
		}
	}
	b, _ := json.Marshal(rep)
	return status, append(b, '\n')
}

// Server is the monitoring HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
	err chan error
}

// Listen opens o.Addr and starts serving the monitoring endpoints.
func Listen(o Options) (*Server, error) {
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen %s: %w", o.Addr, err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           Handler(o),
			ReadHeaderTimeout: readHeaderTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		ln:  ln,
		log: log,
		err: make(chan error, 1),
	}
	go func() { s.err <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, waiting for requests in progress within ctx.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	if serr := <-s.err; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}

// DialCheck returns a check that addr accepts a TCP connection within the
// check's timeout (the connection is closed at once).
func DialCheck(addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// IsLoopback reports whether the host of addr (host:port) is a loopback
// address or "localhost"; an empty host (every interface) is not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
