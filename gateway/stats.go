package gateway

// The gateway's counters, for monitoring (internal/metrics exports them to
// Prometheus) and for the admins' statistics. The run loops and the other
// hot paths update them with atomic adds only: no lock, no allocation per
// message. Stats takes a snapshot; it is the only place that locks (the
// registry and the queues, briefly, to read their sizes).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync/atomic"
	"time"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
)

// LatencyBounds are the upper bounds, in seconds, of the buckets of the
// latency histograms in [Stats] (store commits, IMIP round trips, relays); one more
// bucket holds everything above the last bound.
var LatencyBounds = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Login failure reasons, the keys of Stats.LoginFailures.
const (
	// LoginFailAuth: IMIP refused the credentials (ACK 810 or 811).
	LoginFailAuth = "auth"
	// LoginFailRefused: IMIP answered the login with another error code.
	LoginFailRefused = "refused"
	// LoginFailTimeout: the login did not end within the login timeout.
	LoginFailTimeout = "timeout"
	// LoginFailNetwork: the connection failed or ended (the IMIP server is
	// unreachable, or closed it).
	LoginFailNetwork = "network"
)

// loginFailReasons are the reasons in the order of stats.loginFails.
var loginFailReasons = [...]string{LoginFailAuth, LoginFailRefused, LoginFailTimeout, LoginFailNetwork}

// maxCode bounds the IMIP codes counted one by one; others count as
// maxCode.
const maxCode = 1000

// histogram is a fixed-bucket latency histogram updated with atomics.
type histogram struct {
	buckets [len(LatencyBounds) + 1]atomic.Uint64
	sumNs   atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	s := d.Seconds()
	i := 0
	for i < len(LatencyBounds) && s > LatencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNs.Add(uint64(d))
}

func (h *histogram) snapshot() Histogram {
	var out Histogram
	for i := range h.buckets {
		out.Counts[i] = h.buckets[i].Load()
		out.Count += out.Counts[i]
	}
	out.Sum = time.Duration(h.sumNs.Load())
	return out
}

// Histogram is a snapshot of a latency histogram: Counts[i] counts the
// observations at most LatencyBounds[i] seconds and above the bound before
// it (not cumulative); the last count is for those above every bound.
type Histogram struct {
	Counts [len(LatencyBounds) + 1]uint64
	Count  uint64
	Sum    time.Duration
}

// stats are the live counters of a Gateway.
type stats struct {
	start time.Time

	// linkStates counts users by IMIP link state; offline and stopped are
	// not counted (every registered user is offline until they come).
	linkStates [linkStopped + 1]atomic.Int64

	logins     atomic.Uint64
	loginFails [len(loginFailReasons)]atomic.Uint64

	msgToIMIP atomic.Uint64 // confirmed by IMIP
	msgToXMPP atomic.Uint64 // confirmed by the user's server
	// heldUnwritten counts messages confirmed while their write was held,
	// so never written (Config.HoldWrites).
	heldUnwritten atomic.Uint64
	bounces       atomic.Uint64 // message errors the gateway sent
	stanzaIn      atomic.Uint64 // presences and messages from the component
	stanzaOut     atomic.Uint64 // presences and messages written to it

	queuedToIMIP atomic.Int64 // messages for IMIP held by run loops
	queuedToXMPP atomic.Int64 // messages from IMIP held by run loops

	compConnects   atomic.Uint64 // component handshakes
	imipLost       atomic.Uint64 // live IMIP sessions that ended on their own
	usersTaken     atomic.Uint64 // users this instance took (cluster)
	usersGiven     atomic.Uint64 // users this instance gave to another (cluster)
	imipReconnects atomic.Uint64 // logins started by the retry timer

	imipCodes [maxCode + 1]atomic.Uint64 // IMIP error codes received

	storeLatency histogram // one Apply of the group commit
	imipRTT      histogram // an IMIP request to its answer
	// relayToIMIP: a message from the component's read to its MESG queued
	// on the IMIP session (written at once, or with the rest of its run
	// loop's batch, see corker); relayToXMPP: a MESG from the IMIP session's read
	// to the stanza handed to the component socket. Only messages that go
	// straight through (not those that waited for a login, a link or a
	// resend) are measured: this is the latency the transport adds.
	relayToIMIP, relayToXMPP histogram

	// loginResult is the outcome of the newest finished IMIP login:
	// 0 none yet, 1 ok, 2 failed for network reasons, 3 failed otherwise.
	loginResult atomic.Uint32
}

func newStats() *stats { return &stats{start: time.Now()} }

// linkMoved counts a user's link going from one state to another.
func (s *stats) linkMoved(from, to linkState) {
	if from == to {
		return
	}
	if from != linkOffline && from != linkStopped {
		s.linkStates[from].Add(-1)
	}
	if to != linkOffline && to != linkStopped {
		s.linkStates[to].Add(1)
	}
}

// loginEnded counts the end of one IMIP login (err nil: it succeeded).
func (s *stats) loginEnded(err error) {
	if err == nil {
		s.logins.Add(1)
		s.loginResult.Store(1)
		return
	}
	r := loginFailReason(err)
	for i, name := range loginFailReasons {
		if name == r {
			s.loginFails[i].Add(1)
		}
	}
	var le *imipside.LoginError
	if errors.As(err, &le) {
		s.code(le.Code)
	}
	if r == LoginFailNetwork || r == LoginFailTimeout {
		s.loginResult.Store(2)
	} else {
		s.loginResult.Store(3)
	}
}

// code counts an IMIP error code received.
func (s *stats) code(c wire.Code) {
	i := int(c)
	if i < 0 || i > maxCode {
		i = maxCode
	}
	s.imipCodes[i].Add(1)
}

// loginFailReason classifies a failed login.
func loginFailReason(err error) string {
	var le *imipside.LoginError
	if errors.As(err, &le) {
		if le.Code == wire.CodeWrongPassword || le.Code == wire.CodeIllegalUser {
			return LoginFailAuth
		}
		return LoginFailRefused
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return LoginFailTimeout
	}
	return LoginFailNetwork
}

// Stats is a snapshot of the gateway's counters. Counters (Total in the
// name, or counts of events) only grow while the process runs; the others
// are current values.
type Stats struct {
	// Start is when the gateway was created; Uptime is the time since.
	Start  time.Time
	Uptime time.Duration
	// Registered is the number of registered users; Loaded, of those the
	// gateway holds in memory (they sent something since the start).
	Registered, Loaded int
	// LinkUp says the component link to the XMPP server is up.
	LinkUp bool
	// Sessions counts users by IMIP link state: "dialing", "online",
	// "grace", "retry-wait", "auth-failed" (the others, offline and
	// stopped, are not counted).
	Sessions map[string]int64
	// Logins counts successful IMIP logins; LoginFailures failed ones by
	// reason (LoginFailAuth, LoginFailRefused, LoginFailTimeout,
	// LoginFailNetwork; every key is present).
	Logins        uint64
	LoginFailures map[string]uint64
	// LastLogin is the outcome of the newest finished IMIP login: "" (none
	// yet), "ok", "unreachable" (network error or timeout) or "failed"
	// (IMIP answered with an error).
	LastLogin string
	// MessagesToIMIP counts messages IMIP confirmed; MessagesToXMPP,
	// messages from IMIP the user's server confirmed; Bounces, message
	// errors the gateway sent back to Jabber users.
	MessagesToIMIP, MessagesToXMPP, Bounces uint64
	// MessagesUnwritten counts the messages (either way) confirmed while
	// their write was held (Config.HoldWrites), so never written to the
	// store.
	MessagesUnwritten uint64
	// StanzasIn counts presences and messages received on the component
	// link; StanzasOut, those written to it.
	StanzasIn, StanzasOut uint64
	// QueuedToIMIP and QueuedToXMPP are the messages the users' run loops
	// hold, accepted and not yet delivered or bounced (messages from IMIP
	// beyond 64 per user wait in the store only and are not counted).
	QueuedToIMIP, QueuedToXMPP int64
	// CommitQueue is the store writes waiting for the group commit (in
	// ops); OutboxQueue the stanzas waiting to be written to the
	// component link; OutboxDropped the stanzas refused by a full outbox.
	CommitQueue, OutboxQueue int
	OutboxDropped            uint64
	// ComponentConnects counts component handshakes (the first one
	// included); IMIPSessionsLost live IMIP sessions that ended without
	// the gateway asking; IMIPReconnects logins started by the retry timer
	// after a failure or a loss.
	ComponentConnects, IMIPSessionsLost, IMIPReconnects uint64
	// UsersTaken counts the users this instance took from another
	// instance (or from none) in a cluster; UsersGiven those it gave up
	// when another asked (see Ownership).
	UsersTaken, UsersGiven uint64
	// IMIPErrors counts the error codes IMIP answered logins and requests
	// with, by code (codes above 1000 count as 1000).
	IMIPErrors map[wire.Code]uint64
	// StoreLatency is the time of each group commit's store write;
	// IMIPRoundTrip, of each IMIP request to its answer.
	StoreLatency, IMIPRoundTrip Histogram
	// RelayToIMIP and RelayToXMPP are the latency the transport adds to a
	// message that goes straight through: from the read of the stanza
	// (of the IMIP block) to the MESG queued on the IMIP session (to the
	// write of the stanza).
	RelayToIMIP, RelayToXMPP Histogram
}

// Stats returns a snapshot of the gateway's counters. It is cheap (a few
// short locks) and safe to call from any goroutine at any time.
func (g *Gateway) Stats() Stats {
	s := g.stats
	out := Stats{
		Start:             s.start,
		Uptime:            time.Since(s.start),
		LinkUp:            g.up.Load(),
		Sessions:          make(map[string]int64, 5),
		Logins:            s.logins.Load(),
		LoginFailures:     make(map[string]uint64, len(loginFailReasons)),
		MessagesToIMIP:    s.msgToIMIP.Load(),
		MessagesToXMPP:    s.msgToXMPP.Load(),
		MessagesUnwritten: s.heldUnwritten.Load(),
		Bounces:           s.bounces.Load(),
		StanzasIn:         s.stanzaIn.Load(),
		StanzasOut:        s.stanzaOut.Load(),
		QueuedToIMIP:      s.queuedToIMIP.Load(),
		QueuedToXMPP:      s.queuedToXMPP.Load(),
		ComponentConnects: s.compConnects.Load(),
		IMIPSessionsLost:  s.imipLost.Load(),
		UsersTaken:        s.usersTaken.Load(),
		UsersGiven:        s.usersGiven.Load(),
		IMIPReconnects:    s.imipReconnects.Load(),
		IMIPErrors:        make(map[wire.Code]uint64),
		StoreLatency:      s.storeLatency.snapshot(),
		IMIPRoundTrip:     s.imipRTT.snapshot(),
		RelayToIMIP:       s.relayToIMIP.snapshot(),
		RelayToXMPP:       s.relayToXMPP.snapshot(),
	}
	for st := linkDialing; st < linkStopped; st++ {
		out.Sessions[st.String()] = s.linkStates[st].Load()
	}
	for i, r := range loginFailReasons {
		out.LoginFailures[r] = s.loginFails[i].Load()
	}
	switch s.loginResult.Load() {
	case 1:
		out.LastLogin = "ok"
	case 2:
		out.LastLogin = "unreachable"
	case 3:
		out.LastLogin = "failed"
	}
	for i := range s.imipCodes {
		if n := s.imipCodes[i].Load(); n > 0 {
			out.IMIPErrors[wire.Code(i)] = n
		}
	}
	g.mu.Lock()
	out.Registered, out.Loaded = len(g.registered), len(g.users)
	g.mu.Unlock()
	out.CommitQueue = g.commit.Stats().Queued
	g.out.mu.Lock()
	out.OutboxQueue, out.OutboxDropped = len(g.out.q), g.out.dropped
	g.out.mu.Unlock()
	return out
}

// probeID is the message ID the store check deletes: no message ever has
// it (IDs ascend from 1), so the write changes nothing.
const probeID = math.MaxInt64

// CheckStore checks that the store takes writes: a write transaction
// (deleting a message that does not exist) through the group commit, so
// a jammed commit queue fails it too. It waits for the outcome, bounded by
// ctx.
func (g *Gateway) CheckStore(ctx context.Context) error {
	done := make(chan error, 1)
	if !g.commit.Submit([]Op{OpDeleteMessage{ID: probeID}}, func(err error) { done <- err }) {
		return errors.New("gateway: the store's commit queue is full or closed")
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("gateway: store write not done: %w", ctx.Err())
	}
}

// LinkUp reports whether the component link to the XMPP server is up.
func (g *Gateway) LinkUp() bool { return g.up.Load() }
