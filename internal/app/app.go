// Package app wires the transport together: the store, the IMIP dialer, the
// gateway and the XMPP component. cmd/imip-transport decodes the
// configuration file into Options; end-to-end tests build Options directly.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"mellium.im/xmpp/jid"

	"imip-transport/gateway"
	"imip-transport/gateway/sqlitestore"
	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/internal/cluster"
	"imip-transport/internal/metrics"
	"imip-transport/internal/storelock"
	"imip-transport/xmppside"
)

// ShutdownGrace bounds the whole shutdown after the context ends.
const ShutdownGrace = 5 * time.Second

// logoutTimeout bounds an IMIP logout (the server's answers to the MESGs
// sent before it, then its answer to DISC): well inside the gateway's
// close budget of ShutdownGrace less a second, so that a slow server
// costs a shutdown its answers, never the run loops' end.
const logoutTimeout = ShutdownGrace / 2

// Options are the decoded settings of one transport.
type Options struct {
	Domain       jid.JID // component domain
	XMPPServer   string  // component listener, host:port
	Secret       string
	MinBackoff   time.Duration
	MaxBackoff   time.Duration
	IMIPServer   string // host:port
	ClientName   string
	MaxBlockSize int
	LoginTimeout time.Duration
	OpTimeout    time.Duration
	RetryMin     time.Duration
	RetryMax     time.Duration
	StorePath    string // SQLite file
	KeyFile      string // seals the store's IMIP passwords (sqlitestore.Options.KeyFile)
	// StoreLock, when set, is the path the store lock is taken beside
	// instead of StorePath (the key file, for a PostgreSQL store).
	StoreLock string
	// OpenStore, when set, opens the store instead of the SQLite file at
	// StorePath (cmd/imip-transport: the configured driver).
	OpenStore   func(context.Context, *slog.Logger) (gateway.Store, error)
	RosterGroup string
	AllowRemove bool
	// Admins may run the administrators' ad-hoc commands (bare JIDs).
	Admins []jid.JID
	// ProbeTimeout and RegisterGrace tune the gateway (zero: its defaults).
	ProbeTimeout  time.Duration
	RegisterGrace time.Duration
	Version       string
	Logger        *slog.Logger
	// Trace, when set, receives the component's XML stream (both ways).
	Trace io.Writer
	// MaxStanzaSize is the largest stanza the component sends, in bytes
	// (0: xmppside's default).
	MaxStanzaSize int
	// MaxRegistrations bounds the registration IQs in flight (0:
	// xmppside's default).
	MaxRegistrations int
	// Limits and DeliveryTimeout tune the gateway (zero: its defaults).
	Limits          gateway.Limits
	DeliveryTimeout time.Duration
	// HoldWrites is gateway.Config.HoldWrites (0: its default; negative:
	// every message written before it goes on).
	HoldWrites time.Duration
	// MonitorAddr, when set, is the listen address (host:port) of the
	// monitoring endpoints: /metrics and /healthz (see internal/metrics).
	MonitorAddr string
	// Pprof adds the net/http/pprof handlers to the monitoring endpoints.
	Pprof bool
	// MonitorReady, when set, is called with the monitoring listener's
	// address once it listens.
	MonitorReady func(addr string)
	// Ready, when set, is called once the parts are built, before the
	// component connects.
	Ready func(*gateway.Gateway, *xmppside.Component)
	// Cluster, when set, makes this transport one instance of several on
	// one PostgreSQL store (see internal/cluster and cluster.go).
	Cluster *ClusterOptions
}

// Run runs the transport until ctx ends, then logs every user out and sends
// the goodbye presences, within ShutdownGrace.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The lock tells the admin commands (and a second transport) that the
	// store is in use; the kernel drops it when the process ends.
	lockPath := o.StorePath
	if o.StoreLock != "" {
		lockPath = o.StoreLock
	}
	acquire := storelock.Acquire
	if o.Cluster != nil {
		// The instances on this host share it; admin commands that
		// write are refused while any runs.
		acquire = storelock.AcquireShared
	}
	lock, err := acquire(lockPath)
	if errors.Is(err, storelock.ErrLocked) {
		return fmt.Errorf("another imip-transport runs on this store: %w", err)
	}
	if err != nil {
		return err
	}
	defer func() { _ = lock.Release() }()
	var store gateway.Store
	if o.OpenStore != nil {
		store, err = o.OpenStore(ctx, log)
	} else {
		store, err = sqlitestore.Open(ctx, o.StorePath, sqlitestore.Options{KeyFile: o.KeyFile, Logger: log})
	}
	if err != nil {
		return err
	}
	closeStore := true // false when run loops may still use it
	defer func() {
		if closeStore {
			_ = store.Close()
		}
	}()

	dialer := gateway.DialerFunc(func(ctx context.Context, n wire.Number, password string, h imipside.Handler) (gateway.IMIPSession, error) {
		s, err := imipside.Dial(ctx, imipside.Config{
			Addr:       o.IMIPServer,
			Number:     n,
			Password:   password,
			ClientName: o.ClientName,
			Limits:     wire.Limits{MaxSize: o.MaxBlockSize},
			Handler:    h,
			Logger:     log.With("imip", string(n)),
			// A logout at shutdown must end within the gateway's close
			// budget (ShutdownGrace less a second), not after it.
			LogoutTimeout: logoutTimeout,
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	})
	var node *cluster.Node
	var owners gateway.Ownership
	if o.Cluster != nil {
		node, err = cluster.Join(ctx, cluster.Config{DSN: o.Cluster.DSN, Password: o.Cluster.Password,
			Name: o.Cluster.Name, Slots: o.Cluster.Slots, CheckInterval: o.Cluster.CheckInterval, Logger: log})
		if err != nil {
			return err
		}
		defer node.Close() // after Leave, or without it on an error
		owners = node
	}
	g, err := gateway.New(ctx, gateway.Config{
		Domain:          o.Domain,
		Store:           store,
		Dialer:          dialer,
		Logger:          log,
		LoginTimeout:    o.LoginTimeout,
		OpTimeout:       o.OpTimeout,
		RetryMin:        o.RetryMin,
		RetryMax:        o.RetryMax,
		RosterGroup:     o.RosterGroup,
		AllowRemove:     o.AllowRemove,
		Admins:          o.Admins,
		ProbeTimeout:    o.ProbeTimeout,
		RegisterGrace:   o.RegisterGrace,
		Limits:          o.Limits,
		DeliveryTimeout: o.DeliveryTimeout,
		HoldWrites:      o.HoldWrites,
		Owners:          owners,
		HandoverTimeout: handover(o.Cluster),
	})
	if err != nil {
		return err
	}
	compCfg := xmppside.Config{
		Domain:     o.Domain,
		Server:     o.XMPPServer,
		Secret:     o.Secret,
		Name:       "imip-transport",
		Version:    o.Version,
		Logger:     log,
		MinBackoff: o.MinBackoff,
		MaxBackoff: o.MaxBackoff,
		Trace:      o.Trace,

		MaxStanzaSize:    o.MaxStanzaSize,
		MaxRegistrations: o.MaxRegistrations,
	}
	var slots *slotConns
	var comp *xmppside.Component
	if node != nil {
		slots = newSlotConns(g, node, o.Cluster.Slots, compCfg, log)
		comp = slots.main
	} else {
		comp = xmppside.New(compCfg, g)
	}
	g.SetXMPP(comp)
	if o.MonitorAddr != "" {
		mon, err := metrics.Listen(metrics.Options{
			Addr:   o.MonitorAddr,
			Source: g,
			Checks: healthChecks(g, o.IMIPServer, slots),
			Pprof:  o.Pprof,
			Logger: log,
		})
		if err != nil {
			_ = g.Close(context.Background())
			return err
		}
		log.Info("monitoring", "addr", mon.Addr().String(), "pprof", o.Pprof)
		if o.MonitorReady != nil {
			o.MonitorReady(mon.Addr().String())
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := mon.Close(cctx); err != nil {
				log.Debug("monitoring stopped", "err", err)
			}
		}()
	}
	if o.Ready != nil {
		o.Ready(g, comp)
	}

	compCtx, cancelComp := context.WithCancel(context.Background())
	defer cancelComp()
	runErr := make(chan error, 1)
	clusterErr := make(chan error, 1)
	if slots != nil {
		// The component connections open as the cluster gives this
		// instance slots (none while every slot is held elsewhere).
		slots.start(compCtx, runErr)
		nodeCtx, cancelNode := context.WithCancel(context.Background())
		defer cancelNode()
		go func() { clusterErr <- node.Run(nodeCtx) }()
	} else {
		go func() { runErr <- comp.Run(compCtx) }()
	}
	log.Info("imip-transport started", "component", o.Domain, "xmpp", o.XMPPServer, "imip", o.IMIPServer, "version", o.Version)

	select {
	case <-ctx.Done():
	case err := <-runErr:
		_ = g.Close(context.Background())
		return fmt.Errorf("component: %w", err)
	case err := <-clusterErr:
		// Other instances may take this one's users now: stop at once,
		// without logging anyone out (their sessions end with the
		// process), so that no user has two IMIP sessions.
		log.Error("cluster: stopping at once", "err", err)
		closeStore = false
		return fmt.Errorf("cluster: %w", err)
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace-time.Second)
	defer cancel()
	if node != nil {
		if err := node.Stopping(sctx); err != nil {
			log.Warn("cluster: marking this instance as stopping", "err", err)
		}
	}
	// Users are logged out and told while the component link is up; then
	// the component closes its stream in order and reads until the
	// server's close, and what the server wrote before it saw ours is
	// stored for after the restart (Stop keeps the store open for it);
	// only then are the store writes closed.
	if err := g.Stop(sctx); err != nil {
		log.Warn("gateway stop", "err", err)
	}
	cancelComp()
	if slots != nil {
		if !slots.wait(time.Second) {
			log.Warn("component did not stop in time")
		}
	} else {
		select {
		case err := <-runErr:
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Debug("component stopped", "err", err)
			}
		case <-time.After(time.Second):
			log.Warn("component did not stop in time")
		}
	}
	if err := g.Close(sctx); err != nil {
		// Some run loop is stuck past the grace: leave the store open for
		// it (the process is about to exit; SQLite's WAL keeps what was
		// committed).
		log.Warn("gateway close", "err", err)
		closeStore = false
	}
	if node != nil {
		// The connections are closed and the users written: their slots
		// and the users go to the other instances now.
		if err := node.Leave(sctx); err != nil {
			log.Warn("cluster: leaving", "err", err)
		}
	}
	log.Info("stopped")
	return nil
}

// HealthChecks are the checks of /healthz: the component link is up, the
// store takes a write (through the group commit), the IMIP server accepts
// a TCP connection.
func HealthChecks(g *gateway.Gateway, imipServer string) []metrics.Check {
	return healthChecks(g, imipServer, nil)
}

// healthChecks are HealthChecks; with a cluster, an instance that holds no
// slot (a standby: every slot is held by the others) has no component
// link and is healthy.
func healthChecks(g *gateway.Gateway, imipServer string, slots *slotConns) []metrics.Check {
	return []metrics.Check{
		{Name: "component", Run: func(context.Context) error {
			if slots != nil && slots.standby() {
				return nil
			}
			if !g.LinkUp() {
				return errors.New("component link to the XMPP server is down")
			}
			return nil
		}},
		{Name: "store", Run: g.CheckStore},
		{Name: "imip", Run: metrics.DialCheck(imipServer)},
	}
}

var (
	_ gateway.XMPP         = (*xmppside.Component)(nil)
	_ gateway.RosterAccess = (*xmppside.Component)(nil)
)
