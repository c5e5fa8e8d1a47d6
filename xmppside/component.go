package xmppside

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

// closeGrace bounds the orderly close of a stream when Run's context ends.
const closeGrace = time.Second

// writeTimeout bounds each write on the connection (set by linkConn, never
// by a caller's context); a write that takes longer means the link is dead
// and it is torn down.
const writeTimeout = 30 * time.Second

// errStreamClosed is the cause given when the server ends the stream
// without an error.
var errStreamClosed = errors.New("xmppside: stream closed by server")

// Component is an XEP-0114 external component connection.
// Its methods are safe for concurrent use.
type Component struct {
	cfg    Config
	h      Handler
	log    *slog.Logger
	domain jid.JID

	running   atomic.Bool
	connected atomic.Bool
	link      atomic.Pointer[link]
	seq       atomic.Uint64 // links so far
	jids      jidCache      // addresses of inbound messages and presences

	privMu sync.Mutex
	privs  map[string]Privileges // by server domainpart
	last   Privileges

	cmds *cmdSessions // open XEP-0050 sessions (they outlive a link)

	slots slotChecks // slot checks in progress (slotcheck.go)
	// replies finds the waiter of a reply nobody waits for here (see
	// SetReplies); nil: none.
	replies atomic.Pointer[func(id string) chan []xml.Token]
}

// New returns a Component for cfg that reports to h.
// It does not connect: call Run.
func New(cfg Config, h Handler) *Component {
	cfg = cfg.withDefaults()
	return &Component{
		cfg:    cfg,
		h:      h,
		log:    cfg.Logger.With("component", cfg.Domain.String()),
		domain: cfg.Domain.Domain(),
		cmds:   newCmdSessions(cfg.MaxCommandSessions, cfg.CommandSessionTimeout),
	}
}

// Domain returns the component's JID.
func (c *Component) Domain() jid.JID { return c.domain }

// Connected reports whether the link to the server is up (handshake done).
func (c *Component) Connected() bool { return c.connected.Load() }

// Run connects, performs the handshake and serves; when the link drops it
// reconnects forever with exponential backoff and jitter. The delay starts
// again from MinBackoff after a link that stayed up for a few seconds
// (defaultStableAfter); after a link that the server closed sooner it keeps
// growing, up to MaxBackoff.
// It blocks until ctx is done, then closes the stream and returns nil.
// It returns an error early only for a setup mistake: an invalid Config, a
// second concurrent Run, or a handshake the server refuses (bad secret or
// unknown host) before any handshake of this Run succeeded.
func (c *Component) Run(ctx context.Context) error {
	if c.h == nil {
		return errors.New("xmppside: nil Handler")
	}
	if err := c.cfg.validate(); err != nil {
		return err
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("xmppside: Run called twice")
	}
	defer c.running.Store(false)

	bo := &backoff.ExponentialBackOff{
		InitialInterval:     c.cfg.MinBackoff,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         c.cfg.MaxBackoff,
	}
	bo.Reset()
	everUp := false
	for attempt := 1; ; attempt++ {
		up, wasUp, err := c.connectAndServe(ctx)
		if ctx.Err() != nil {
			c.log.Info("xmpp component stopped")
			return nil
		}
		everUp = everUp || wasUp
		if !everUp && fatalHandshake(err) {
			c.log.Error("xmpp handshake refused", "err", err)
			return err
		}
		if wasUp {
			attempt = 1
			if up >= c.cfg.stableAfter {
				// The link worked: this is a new outage, not the same
				// one going on. A link that the server closes right
				// after the handshake keeps backing off.
				bo.Reset()
			}
		}
		wait := bo.NextBackOff()
		c.log.Warn("xmpp link down, reconnecting", "err", err, "in", wait, "attempt", attempt)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			c.log.Info("xmpp component stopped")
			return nil
		case <-t.C:
		}
	}
}

// fatalHandshake reports handshake refusals that retrying cannot fix.
func fatalHandshake(err error) bool {
	var se stream.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Err == stream.NotAuthorized.Err || se.Err == stream.HostUnknown.Err
}

// connectAndServe runs one link: dial, handshake, serve until it drops.
// wasUp reports whether the handshake succeeded; up is how long the link
// lasted.
func (c *Component) connectAndServe(ctx context.Context) (up time.Duration, wasUp bool, err error) {
	c.log.Debug("xmpp connecting", "server", c.cfg.Server)
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", c.cfg.Server)
	if err != nil {
		return 0, false, fmt.Errorf("xmppside: dial %s: %w", c.cfg.Server, err)
	}
	var tr *tracer
	if c.cfg.Trace != nil {
		tr = &tracer{w: c.cfg.Trace}
	}
	conn := newLinkConn(raw, writeTimeout, tr)
	sess, err := component.NewSession(dctx, c.domain, []byte(c.cfg.Secret), conn)
	if err != nil {
		_ = raw.Close()
		return 0, false, fmt.Errorf("xmppside: handshake with %s: %w", c.cfg.Server, err)
	}
	conn.start()

	start := time.Now()
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	l := newLink(c, sess, conn, lctx)
	l.seq = c.seq.Add(1)
	c.resetPrivileges()
	c.link.Store(l)
	c.connected.Store(true)
	c.log.Info("xmpp component connected", "server", c.cfg.Server)

	done := make(chan error, 1)
	go func() {
		done <- sess.Serve(l)
		lcancel()
	}()
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(closed)
		// Close the stream in order; the deadline bounds the wait for the
		// server's closing tag and any write stuck in progress.
		conn.expire(time.Now().Add(closeGrace))
		_ = sess.Close()
	})

	c.h.HandleConnected(lctx)
	err = <-done

	c.connected.Store(false)
	c.link.CompareAndSwap(l, nil)
	lcancel()
	if !stop() {
		<-closed
	}
	_ = raw.Close()
	l.wg.Wait()
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case err == nil:
		err = errStreamClosed
	default:
		err = fmt.Errorf("xmppside: serve: %w", err)
	}
	up = time.Since(start)
	c.log.Info("xmpp component disconnected", "err", err, "up", up.Round(time.Millisecond))
	c.h.HandleDisconnected(err)
	return up, true, err
}

// current returns the live link or nil.
func (c *Component) current() *link {
	l := c.link.Load()
	if l == nil || l.ctx.Err() != nil {
		return nil
	}
	return l
}

var _ xmpp.Handler = (*link)(nil)
