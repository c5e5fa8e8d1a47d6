package app

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"imip-transport/gateway"
	"imip-transport/internal/cluster"
	"imip-transport/xmppside"
)

// ClusterOptions make a transport one instance of several on one
// PostgreSQL store, behind an XMPP server that spreads the component
// domain over Slots connections (ejabberd: domain_balancing with
// component_number).
type ClusterOptions struct {
	// DSN and Password are the store's (the cluster's tables are there).
	DSN, Password string
	// Name is shown in logs (default: host name and PID).
	Name string
	// Slots is ejabberd's component_number for the domain.
	Slots int
	// CheckInterval is how often the instance looks for dead instances
	// and free slots (0: cluster.DefaultCheckInterval).
	CheckInterval time.Duration
	// HandoverTimeout bounds the wait for another instance to give up a
	// user (0: gateway.DefaultHandoverTimeout).
	HandoverTimeout time.Duration
}

// handover returns the gateway's HandoverTimeout for c.
func handover(c *ClusterOptions) time.Duration {
	if c == nil {
		return 0
	}
	return c.HandoverTimeout
}

// slotConns runs one component connection per slot the cluster gives
// this instance. The first one is the gateway's own (every stanza it sends
// goes there); the others only receive what the server routes to their
// slots, and answer IQs.
type slotConns struct {
	g    *gateway.Gateway
	cfg  xmppside.Config
	log  *slog.Logger
	main *xmppside.Component

	mu       sync.Mutex
	ctx      context.Context // set by start; nil before
	runErr   chan<- error
	node     *cluster.Node
	slots    int   // the cluster's, for the slot check
	given    []int // the slots held, as the node last said
	running  map[int]*slotRun
	mainSlot int // the main connection's slot; 0 before it runs
	wg       sync.WaitGroup
}

func newSlotConns(g *gateway.Gateway, node *cluster.Node, slots int, cfg xmppside.Config, log *slog.Logger) *slotConns {
	s := &slotConns{g: g, cfg: cfg, log: log, node: node, slots: slots, running: make(map[int]*slotRun)}
	s.main = xmppside.New(cfg, mainHandler{Gateway: g, s: s})
	node.SetHooks(cluster.Hooks{Slots: s.onSlots, Release: g.ReleaseUser, Give: s.give, Registered: g.AddRegistered})
	return s
}

// slotRun is the connection of one slot.
type slotRun struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when its Run returned
}

// mainHandler is the gateway, with the slot of its connection logged.
type mainHandler struct {
	*gateway.Gateway
	s *slotConns
}

func (h mainHandler) HandleConnected(ctx context.Context) {
	h.s.mu.Lock()
	slot := h.s.mainSlot
	h.s.mu.Unlock()
	h.s.log.Info("cluster: slot connection up", "slot", slot, "main", true)
	h.s.node.SlotUp(slot)
	go h.s.checkSlot(ctx, h.s.main, slot)
	h.Gateway.HandleConnected(ctx)
}

// slotHandler is the gateway behind a connection of a further slot: its
// link coming up probes the users whose stanzas may now come here; it is
// not the link the gateway sends on.
type slotHandler struct {
	*gateway.Gateway
	s    *slotConns
	comp *xmppside.Component // set once made
	slot int
}

func (h *slotHandler) HandleConnected(ctx context.Context) {
	h.s.log.Info("cluster: slot connection up", "slot", h.slot, "main", false)
	h.s.node.SlotUp(h.slot)
	go h.s.checkSlot(ctx, h.comp, h.slot)
	h.Gateway.SlotConnected(ctx)
}

func (h *slotHandler) HandleDisconnected(err error) {
	h.s.log.Info("cluster: slot connection down", "slot", h.slot, "err", err)
}

// slotCheckTimeout bounds the wait for the slot check's messages.
const slotCheckTimeout = 5 * time.Second

// checkSlot makes sure the server routes to comp's new connection (ctx
// is its link's): one made before the server let go of the slot's former
// connection (its instance died without closing it: a crashed host) gets
// no slot, and would receive nothing for good. Such a connection is
// dropped and made again (after the component's backoff) until it holds
// the slot.
func (s *slotConns) checkSlot(ctx context.Context, comp *xmppside.Component, slot int) {
	cctx, cancel := context.WithTimeout(ctx, slotCheckTimeout)
	defer cancel()
	ok, err := comp.CheckSlot(cctx, 16*s.slots)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		s.log.Warn("cluster: slot check not sent", "slot", slot, "err", err)
	case !ok:
		s.log.Warn("cluster: the server routes nothing to this slot connection (the slot's former connection is still registered there); connecting again", "slot", slot)
		comp.Reconnect()
	default:
		s.log.Debug("cluster: slot check passed", "slot", slot)
	}
}

// start runs the connections of the slots given so far, and of those
// given later, until ctx ends. The main connection's Run error goes to
// runErr.
func (s *slotConns) start(ctx context.Context, runErr chan<- error) {
	s.mu.Lock()
	s.ctx, s.runErr = ctx, runErr
	given := s.given
	s.mu.Unlock()
	s.onSlots(given)
}

// onSlots is the node's Slots hook.
func (s *slotConns) onSlots(slots []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.given = slices.Clone(slots)
	if s.ctx == nil || s.ctx.Err() != nil {
		return
	}
	for _, slot := range slots {
		if s.running[slot] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		r := &slotRun{cancel: cancel, done: make(chan struct{})}
		s.running[slot] = r
		s.wg.Add(1)
		if s.mainSlot == 0 {
			s.mainSlot = slot
			go func() {
				defer s.wg.Done()
				defer close(r.done)
				s.refresh(ctx)
				if err := s.main.Run(ctx); err != nil {
					s.runErr <- err
				}
			}()
			continue
		}
		h := &slotHandler{Gateway: s.g, s: s, slot: slot}
		comp := xmppside.New(s.cfg, h)
		h.comp = comp
		// Replies to what the main connection asked (the barriers) come
		// on the connection of the asked address's slot.
		comp.SetReplies(s.main.TakeReply)
		go func() {
			defer s.wg.Done()
			defer close(r.done)
			s.refresh(ctx)
			if err := comp.Run(ctx); err != nil {
				s.log.Error("cluster: slot connection refused", "slot", slot, "err", err)
			}
		}()
	}
	// A slot is taken from a live instance only when the others took it
	// for dead: close what is not held any more (Run then stops at once
	// on the lost lock).
	for slot, r := range s.running {
		if !slices.Contains(slots, slot) {
			r.cancel()
			delete(s.running, slot)
		}
	}
}

// give is the node's Give hook: the connection of the highest slot of
// eligible other than the main one closes (in order: the server
// unregisters it before the stream ends); the node frees the slot once it
// is closed.
func (s *slotConns) give(eligible []int) (int, <-chan struct{}, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	slot := 0
	for k := range s.running {
		if k != s.mainSlot && k > slot && slices.Contains(eligible, k) {
			slot = k
		}
	}
	if slot == 0 {
		return 0, nil, false
	}
	r := s.running[slot]
	delete(s.running, slot)
	s.log.Info("cluster: closing a slot connection for another instance", "slot", slot)
	r.cancel()
	return slot, r.done, true
}

// refresh brings the gateway's registered users up to date before a slot's
// connection opens: the users of that slot may have registered through the
// instance that held it before.
func (s *slotConns) refresh(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.g.RefreshRegistered(rctx); err != nil {
		s.log.Warn("cluster: registered users not refreshed", "err", err)
	}
}

// standby reports whether the instance holds no slot: it has no component
// connection, and the server routes nothing to it.
func (s *slotConns) standby() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.running) == 0
}

// wait waits up to d for every connection to end (their context ended),
// and reports whether they did.
func (s *slotConns) wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
