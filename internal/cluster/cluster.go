// Package cluster lets several transport instances serve one component
// domain from one PostgreSQL database, behind an XMPP server that spreads
// the domain's stanzas over several component connections (ejabberd's
// domain_balancing with component_number).
//
// Three things are decided here, all through the database (no protocol of
// its own between instances):
//
//   - Which instances are alive. Each instance holds a session-level
//     advisory lock (LockSpace, its id) on a connection of its own for its
//     whole life; PostgreSQL drops the lock the moment that connection
//     ends, however the process ended. An instance whose lock is free is
//     dead: the others delete its row, which frees its slots and its users.
//     An instance that loses that connection stops (Run returns an error):
//     the others may take its users at once, and two IMIP sessions for one
//     user must never exist.
//   - Which instance holds which slot. The XMPP server has a fixed number
//     of slots for the domain (ejabberd: component_number); a connection
//     takes a free slot, a connection made while every slot is held gets
//     none and receives nothing, and stanzas hashed to a slot without a
//     connection are dropped. So the instances keep exactly Slots
//     connections between them: a table row per slot, assigned to the live
//     instance holding the fewest, and an instance opens a connection only
//     for a row it holds, and frees the row only once that connection is
//     closed.
//   - Which instance owns which user's IMIP session (cluster_owners). An
//     instance claims a user before it loads it; a user owned by a dead
//     instance is free; a user owned by a live one is asked for (a
//     notification) and the owner logs the user out and releases it.
//
// Notifications (LISTEN/NOTIFY on one channel) only make things quicker:
// every decision is also taken by the check that runs every CheckInterval.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// LockSpace is the first key of the instances' advisory locks ("IMIP").
const LockSpace int32 = 0x494D4950

// channel is the one LISTEN/NOTIFY channel of the instances.
const channel = "imip_cluster"

// Defaults of Config.
const (
	DefaultCheckInterval   = 250 * time.Millisecond
	DefaultHandoverTimeout = 10 * time.Second
	// DefaultMinHold is how long an instance keeps a user it just took
	// before it gives it up to another that asks: two instances that both
	// receive stanzas of one user (the server's routing changed under
	// them) pass it back and forth at most once per MinHold.
	DefaultMinHold = 2 * time.Second
	// maxConns bounds the node's own pool (the store has its own).
	maxConns = 4
)

// ErrLost is returned, wrapped, by Run when the instance lost its lock
// (its database connection ended): other instances may own its users now.
var ErrLost = errors.New("cluster: lost this instance's lock")

// Config configures [Join].
type Config struct {
	// DSN is the database, as for the store (a libpq URL or key=value
	// string); Password, when set, replaces its password.
	DSN      string
	Password string
	// Name is shown to admins and in logs (default: host name and PID).
	Name string
	// Slots is the number of component connections the XMPP server takes
	// for the domain (ejabberd's component_number). Every instance of a
	// cluster must use the same.
	Slots int
	// CheckInterval is how often the instance looks for dead instances and
	// free slots, and checks its own lock (default 250 ms).
	CheckInterval time.Duration
	// MinHold is how long this instance keeps a user it just took before
	// it gives it up to another that asks (default DefaultMinHold; tests
	// set it shorter).
	MinHold time.Duration
	// GiveAfter is how long this instance holds a slot, and has had its
	// connection up (see [Node.SlotUp]), before it gives it to an
	// instance that holds fewer (default MinHold + 1 s). The users
	// a slot brings are taken as the server answers the probes its
	// connection sends when it comes up; given sooner, they would stay
	// here for the rest of their minimum hold while the server routes
	// their stanzas (the answers to this instance's barriers among them)
	// to the new holder, and what this instance sent them meanwhile
	// would go again from there.
	GiveAfter time.Duration
	// Logger receives the node's notices; nil discards them.
	Logger *slog.Logger
}

// Hooks are how a Node tells its instance what to do. Each is called on
// the node's own goroutines and must not block.
type Hooks struct {
	// Slots is called with the slots this instance holds, in order,
	// whenever that set changes: the instance opens one component
	// connection per slot it holds and closes the others (then calls
	// [Node.FreeSlot]).
	Slots func(slots []int)
	// Release is called when another instance asks for a user this
	// instance owns: log the user out of IMIP, store what must be stored,
	// then call [Node.Release].
	Release func(jid string)
	// Registered is called when another instance announced a new
	// registration (see [Node.Registered]).
	Registered func(jid string)
	// Give is called when this instance holds two slots more than
	// another: close the connection of one of the slots in eligible (those
	// held for Config.GiveAfter at least; never the one the instance sends
	// on) and return the slot and a channel closed once the connection is
	// closed; ok false when there is none to give. The node frees the slot
	// then, and until it did, the Slots hook is not told about that slot.
	Give func(eligible []int) (slot int, closed <-chan struct{}, ok bool)
}

// Node is this instance's membership of the cluster.
type Node struct {
	cfg    Config
	log    *slog.Logger
	pool   *pgxpool.Pool
	lock   *pgx.Conn // holds the instance's advisory lock
	listen *pgx.Conn // LISTEN channel
	id     int32

	hooks Hooks
	kick  chan struct{} // wakes Run's check

	mu      sync.Mutex
	held    []int                      // slots held, as last read
	gained  map[int]time.Time          // when each slot held was first read as held
	giving  int                        // the slot being given, 0 when none
	force   bool                       // call the Slots hook at the next read
	suspect map[int32]time.Time        // instances seen without their lock, since
	waiting map[string][]chan struct{} // Acquire calls waiting for a release
	since   map[string]time.Time       // when this instance took each user
	asked   map[string]bool            // release requests being carried out
	closed  bool
}

// Join connects to the database, registers this instance and takes its
// lock. The schema must be migrated (the store's Open does it).
func Join(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Slots < 1 {
		return nil, errors.New("cluster: slots must be at least 1 (ejabberd's component_number)")
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.MinHold <= 0 {
		cfg.MinHold = DefaultMinHold
	}
	if cfg.GiveAfter <= 0 {
		cfg.GiveAfter = cfg.MinHold + time.Second
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("cluster: dsn: %w", err)
	}
	if cfg.Password != "" {
		pcfg.ConnConfig.Password = cfg.Password
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pcfg.MaxConns = maxConns
	n := &Node{cfg: cfg, kick: make(chan struct{}, 1), suspect: make(map[int32]time.Time),
		waiting: make(map[string][]chan struct{}), since: make(map[string]time.Time), asked: make(map[string]bool),
		gained: make(map[int]time.Time)}
	ok := false
	defer func() {
		if !ok {
			n.closeConns()
		}
	}()
	if n.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, fmt.Errorf("cluster: connect: %w", err)
	}
	if n.lock, err = pgx.ConnectConfig(ctx, pcfg.ConnConfig.Copy()); err != nil {
		return nil, fmt.Errorf("cluster: connect: %w", err)
	}
	if n.listen, err = pgx.ConnectConfig(ctx, pcfg.ConnConfig.Copy()); err != nil {
		return nil, fmt.Errorf("cluster: connect: %w", err)
	}
	if _, err := n.listen.Exec(ctx, "LISTEN "+channel); err != nil {
		return nil, fmt.Errorf("cluster: listen: %w", err)
	}
	// One transaction: the others see the row only with its lock held
	// (a row without it is a dead instance's). The session lock outlives
	// the transaction.
	err = pgx.BeginFunc(ctx, n.lock, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO cluster_instances (name, started) VALUES ($1, $2) RETURNING id`,
			cfg.Name, time.Now().UnixNano()).Scan(&n.id)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, LockSpace, n.id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: registering the instance: %w", err)
	}
	n.log = log.With("instance", n.id)
	if err := n.setupSlots(ctx); err != nil {
		_, _ = n.pool.Exec(context.WithoutCancel(ctx), `DELETE FROM cluster_instances WHERE id = $1`, n.id)
		return nil, err
	}
	ok = true
	n.log.Info("cluster: joined", "name", cfg.Name, "slots", cfg.Slots)
	return n, nil
}

// ID returns the instance's id in the database.
func (n *Node) ID() int32 { return n.id }

// live is the SQL condition "instance ID is alive": its lock is held.
const live = `EXISTS (SELECT 1 FROM pg_locks l
	WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
	AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND l.classid::bigint = %d AND l.objid::bigint = %s)`

// isLive returns the condition for the instance whose id is the SQL
// expression expr.
func isLive(expr string) string { return fmt.Sprintf(live, LockSpace, expr) }

// setupSlots makes the slot table match cfg.Slots when no other instance
// is alive, and checks it otherwise.
func (n *Node) setupSlots(ctx context.Context) error {
	return pgx.BeginFunc(ctx, n.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, 0)`, LockSpace); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		var others int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM cluster_instances i WHERE i.id <> $1 AND `+isLive("i.id"), n.id).Scan(&others); err != nil {
			return fmt.Errorf("cluster: counting instances: %w", err)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM cluster_slots`).Scan(&have); err != nil {
			return fmt.Errorf("cluster: counting slots: %w", err)
		}
		if have == n.cfg.Slots {
			return nil
		}
		if others > 0 && have > 0 {
			return fmt.Errorf("cluster: slots is %d here but %d in the database, where %d other instance(s) run: every instance must use the same number (ejabberd's component_number)", n.cfg.Slots, have, others)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM cluster_slots WHERE slot > $1`, n.cfg.Slots); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO cluster_slots (slot) SELECT generate_series(1, $1) ON CONFLICT DO NOTHING`, n.cfg.Slots)
		if err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		return nil
	})
}

// SetHooks sets the hooks; call it before Run.
func (n *Node) SetHooks(h Hooks) { n.hooks = h }

// Run keeps the instance's membership until ctx ends (then it returns
// nil; call Leave) or the instance's lock is lost (an error wrapping
// ErrLost: stop the instance at once).
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := n.listenLoop(ctx); ctx.Err() == nil {
			lost <- err
		}
	}()
	defer wg.Wait()
	t := time.NewTicker(n.cfg.CheckInterval)
	defer t.Stop()
	for {
		if err := n.check(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrLost) {
				return err
			}
			n.log.Warn("cluster: check failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-lost:
			return fmt.Errorf("%w: %w", ErrLost, err)
		case <-t.C:
		case <-n.kick:
		}
	}
}

// wakeIn makes Run check again after d.
func (n *Node) wakeIn(d time.Duration) { time.AfterFunc(d, n.wake) }

// wake makes Run check now.
func (n *Node) wake() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// check verifies the instance's lock, clears dead instances, hands out
// free slots and tells the hooks about this instance's slots.
func (n *Node) check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, max(n.cfg.CheckInterval*4, 2*time.Second))
	defer cancel()
	var held bool
	err := n.lock.QueryRow(cctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND granted AND classid::bigint = $1 AND objid::bigint = $2)`,
		int64(LockSpace), int64(n.id)).Scan(&held)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrLost, err)
	}
	if !held {
		return fmt.Errorf("%w: the lock is no longer held", ErrLost)
	}
	changed := false
	var mine, least int64 // slots held by this instance, and by the one holding fewest
	err = pgx.BeginFunc(cctx, n.pool, func(tx pgx.Tx) error {
		changed, mine, least = false, 0, 0
		if _, err := tx.Exec(cctx, `SELECT pg_advisory_xact_lock($1, 0)`, LockSpace); err != nil {
			return err
		}
		rows, err := tx.Query(cctx, `SELECT i.id, i.name, (SELECT count(*) FROM cluster_owners o WHERE o.instance = i.id)
			FROM cluster_instances i WHERE NOT `+isLive("i.id"))
		if err != nil {
			return err
		}
		type deadInst struct {
			ID    int32
			Name  string
			Users int64
		}
		dead, err := pgx.CollectRows(rows, pgx.RowToStructByPos[deadInst])
		if err != nil {
			return err
		}
		now := time.Now()
		seen := make(map[int32]bool, len(dead))
		for _, d := range dead {
			seen[d.ID] = true
			// Dead from the second look on, a check interval apart: an
			// instance that lost its lock (not its process) has that long
			// to notice and stop before its users go to others.
			n.mu.Lock()
			first, ok := n.suspect[d.ID]
			if !ok {
				n.suspect[d.ID] = now
			}
			n.mu.Unlock()
			if !ok || now.Sub(first) < n.cfg.CheckInterval {
				n.wakeIn(n.cfg.CheckInterval)
				continue
			}
			// ON DELETE: its users are free, its slots free.
			if _, err := tx.Exec(cctx, `DELETE FROM cluster_instances WHERE id = $1`, d.ID); err != nil {
				return err
			}
			n.log.Warn("cluster: an instance is gone; its users and slots are free", "gone", d.ID, "name", d.Name, "users", d.Users)
			changed = true
		}
		n.mu.Lock()
		for id := range n.suspect {
			if !seen[id] {
				delete(n.suspect, id)
			}
		}
		n.mu.Unlock()
		rows, err = tx.Query(cctx, `SELECT i.id, (SELECT count(*) FROM cluster_slots s WHERE s.instance = i.id)
			FROM cluster_instances i WHERE NOT i.stopping AND `+isLive("i.id")+` ORDER BY i.id`)
		if err != nil {
			return err
		}
		type load struct {
			ID    int32
			Slots int64
		}
		loads, err := pgx.CollectRows(rows, pgx.RowToStructByPos[load])
		if err != nil {
			return err
		}
		if len(loads) == 0 {
			return nil
		}
		rows, err = tx.Query(cctx, `SELECT slot FROM cluster_slots WHERE instance IS NULL ORDER BY slot`)
		if err != nil {
			return err
		}
		free, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return err
		}
		for _, s := range free {
			// The live instance holding the fewest, the oldest first.
			best := 0
			for i := range loads {
				if loads[i].Slots < loads[best].Slots {
					best = i
				}
			}
			if _, err := tx.Exec(cctx, `UPDATE cluster_slots SET instance = $1 WHERE slot = $2`, loads[best].ID, s); err != nil {
				return err
			}
			loads[best].Slots++
			changed = true
		}
		least = loads[0].Slots
		for _, l := range loads {
			least = min(least, l.Slots)
			if l.ID == n.id {
				mine = l.Slots
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster: check: %w", err)
	}
	if changed {
		n.notify(cctx, "changed")
	}
	if err := n.readSlots(cctx); err != nil {
		return err
	}
	// Spread the slots: an instance holding two more than another (one
	// that joined while the others held every slot) gives one up. The
	// slot is without a connection from its close until the other's
	// connection is up, a few milliseconds: the server drops what it
	// routes there meanwhile, so this is done one slot at a time, and
	// only with a slot held for GiveAfter.
	if mine >= 2 && mine-least >= 2 && n.hooks.Give != nil {
		n.mu.Lock()
		busy := n.giving != 0
		var eligible []int
		for _, s := range n.held {
			if time.Since(n.gained[s]) >= n.cfg.GiveAfter {
				eligible = append(eligible, s)
			}
		}
		n.mu.Unlock()
		if !busy && len(eligible) > 0 {
			if slot, closed, ok := n.hooks.Give(eligible); ok {
				n.log.Info("cluster: giving a slot to an instance that holds fewer", "slot", slot, "held", mine, "fewest", least)
				n.mu.Lock()
				n.giving = slot
				n.mu.Unlock()
				go func() {
					<-closed
					fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
					defer cancel()
					n.FreeSlot(fctx, slot)
				}()
			}
		}
	}
	return nil
}

// readSlots reads the slots this instance holds and calls the Slots hook
// when they changed.
func (n *Node) readSlots(ctx context.Context) error {
	rows, err := n.pool.Query(ctx, `SELECT slot FROM cluster_slots WHERE instance = $1 ORDER BY slot`, n.id)
	if err != nil {
		return fmt.Errorf("cluster: reading slots: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("cluster: reading slots: %w", err)
	}
	slots := make([]int, 0, len(got))
	n.mu.Lock()
	for _, s := range got {
		if int(s) != n.giving { // its connection is closing
			slots = append(slots, int(s))
		}
	}
	same := slices.Equal(slots, n.held) && !n.force
	n.held, n.force = slots, false
	now := time.Now()
	for s := range n.gained {
		if !slices.Contains(slots, s) {
			delete(n.gained, s)
		}
	}
	for _, s := range slots {
		if _, ok := n.gained[s]; !ok {
			n.gained[s] = now
		}
	}
	n.mu.Unlock()
	if !same && n.hooks.Slots != nil {
		n.log.Info("cluster: slots held", "slots", slots)
		n.hooks.Slots(slots)
	}
	return nil
}

// SlotUp tells the node that the connection of slot came up (again):
// GiveAfter counts from then too, since the users the slot brings are
// taken as the server answers the probes that connection sends.
func (n *Node) SlotUp(slot int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.gained[slot]; ok {
		n.gained[slot] = time.Now()
	}
}

// FreeSlot gives back slot, whose connection is closed: it goes to the
// instance holding the fewest (at the next check, which it starts). When
// the database does not take it, the slot stays this instance's, and the
// Slots hook is told again (its connection reopens).
func (n *Node) FreeSlot(ctx context.Context, slot int) {
	_, err := n.pool.Exec(ctx, `UPDATE cluster_slots SET instance = NULL WHERE slot = $1 AND instance = $2`, slot, n.id)
	if err != nil {
		n.log.Warn("cluster: freeing a slot", "slot", slot, "err", err)
	}
	n.mu.Lock()
	if n.giving == slot {
		n.giving = 0
	}
	n.force = true
	n.mu.Unlock()
	n.notify(ctx, "changed")
	n.wake()
}

// notify sends payload on the channel; a failure only delays the others
// until their next check.
func (n *Node) notify(ctx context.Context, payload string) {
	if _, err := n.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
		n.log.Debug("cluster: notify", "err", err)
	}
}

// listenLoop handles the channel's notifications until ctx ends or the
// connection fails, and returns why.
func (n *Node) listenLoop(ctx context.Context) error {
	for {
		nt, err := n.listen.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		n.onNotification(nt)
	}
}

func (n *Node) onNotification(nt *pgconn.Notification) {
	f := strings.SplitN(nt.Payload, " ", 4)
	switch f[0] {
	case "changed":
		n.wake()
	case "released":
		if len(f) == 2 {
			n.wakeWaiters(f[1])
		}
	case "registered":
		if len(f) == 2 && n.hooks.Registered != nil {
			n.hooks.Registered(f[1])
		}
	case "release":
		if len(f) != 4 {
			return
		}
		owner, err := strconv.ParseInt(f[1], 10, 32)
		if err != nil || int32(owner) != n.id {
			return
		}
		jid := f[3]
		n.mu.Lock()
		if n.asked[jid] || n.closed || n.since[jid].IsZero() {
			// Carried out already, or stale: this instance does not
			// hold the user (it gave it up just before the asker looked).
			n.mu.Unlock()
			return
		}
		n.asked[jid] = true
		wait := time.Until(n.since[jid].Add(n.cfg.MinHold))
		n.mu.Unlock()
		n.log.Debug("cluster: asked for a user", "user", jid, "by", f[2])
		if n.hooks.Release == nil {
			return
		}
		if wait > 0 {
			time.AfterFunc(wait, func() { n.hooks.Release(jid) })
			return
		}
		n.hooks.Release(jid)
	}
}

func (n *Node) wakeWaiters(jid string) {
	n.mu.Lock()
	ws := n.waiting[jid]
	delete(n.waiting, jid)
	n.mu.Unlock()
	for _, w := range ws {
		close(w)
	}
}

// Acquire makes this instance the owner of jid's IMIP session: at once
// when nobody owns it (or this one does); when another instance owns it,
// that one is asked to release it, and Acquire waits for it (or for the
// check to clear it, dead) until ctx ends. took reports whether the user was not this
// instance's already. A user that is not registered (any more) cannot be
// owned: the error says so.
func (n *Node) Acquire(ctx context.Context, jid string) (took bool, err error) {
	asked := time.Time{}
	for {
		n.mu.Lock()
		if n.asked[jid] {
			// This instance is giving the user up to another: wait until
			// it did, then claim like anyone.
			w := make(chan struct{})
			n.waiting[jid] = append(n.waiting[jid], w)
			n.mu.Unlock()
			if err := n.sleep(ctx, w); err != nil {
				return false, fmt.Errorf("cluster: %s is being handed over: %w", jid, err)
			}
			continue
		}
		n.mu.Unlock()
		now := time.Now().UnixNano()
		var owner int32
		var since int64
		// A row is never taken from another instance here, not even a
		// dead one's: the check deletes a dead instance (a check interval
		// after its lock went, so that one that lost only its database
		// connection stops first), and its rows go with it.
		err := n.pool.QueryRow(ctx, `INSERT INTO cluster_owners (jid, instance, since) VALUES ($1, $2, $3)
			ON CONFLICT (jid) DO NOTHING
			RETURNING instance, since`, jid, n.id, now).Scan(&owner, &since)
		if errors.Is(err, pgx.ErrNoRows) {
			err = n.pool.QueryRow(ctx, `SELECT instance, since FROM cluster_owners WHERE jid = $1`, jid).Scan(&owner, &since)
			if errors.Is(err, pgx.ErrNoRows) {
				continue // released meanwhile: claim again
			}
		}
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.ConstraintName == "cluster_owners_jid_fkey" {
				return false, fmt.Errorf("cluster: %s is not registered", jid)
			}
			return false, fmt.Errorf("cluster: claiming %s: %w", jid, err)
		}
		if owner == n.id {
			took = since == now
			n.mu.Lock()
			if took || n.since[jid].IsZero() {
				n.since[jid] = time.Unix(0, since)
			}
			n.mu.Unlock()
			return took, nil
		}
		// A live instance owns it: ask (again, each second), wait for its
		// release or the next try.
		w := make(chan struct{})
		n.mu.Lock()
		n.waiting[jid] = append(n.waiting[jid], w)
		n.mu.Unlock()
		if time.Since(asked) >= time.Second {
			n.notify(ctx, fmt.Sprintf("release %d %d %s", owner, n.id, jid))
			asked = time.Now()
		}
		if err := n.sleep(ctx, w); err != nil {
			return false, fmt.Errorf("cluster: %s is owned by instance %d, which did not release it: %w", jid, owner, err)
		}
	}
}

// sleep waits for w, at most CheckInterval (a wake-up may be missed: the
// caller looks again), or until ctx ends.
func (n *Node) sleep(ctx context.Context, w <-chan struct{}) error {
	t := time.NewTimer(n.cfg.CheckInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-w:
	case <-t.C:
	}
	return nil
}

// Release gives up jid, which this instance owns, once its IMIP session
// is over and its writes are done; whoever asked for it takes it.
func (n *Node) Release(ctx context.Context, jid string) error {
	_, err := n.pool.Exec(ctx, `DELETE FROM cluster_owners WHERE jid = $1 AND instance = $2`, jid, n.id)
	// Only now may a local Acquire claim it again (see Acquire). When the
	// database refused, the user is still this instance's: the asker's
	// next request (each second) is carried out again.
	n.mu.Lock()
	if err == nil {
		delete(n.since, jid)
	}
	delete(n.asked, jid)
	n.mu.Unlock()
	n.wakeWaiters(jid)
	if err != nil {
		return fmt.Errorf("cluster: releasing %s: %w", jid, err)
	}
	n.notify(ctx, "released "+jid)
	return nil
}

// Registered announces a new registration of jid to the other instances
// (their Registered hook); a failure only leaves it to their next read of
// the registrations (each slot connection that opens reads them).
func (n *Node) Registered(ctx context.Context, jid string) { n.notify(ctx, "registered "+jid) }

// Forget drops what the node remembers of jid: its registration was
// deleted, and its ownership row with it (ON DELETE CASCADE).
func (n *Node) Forget(jid string) {
	n.mu.Lock()
	delete(n.since, jid)
	delete(n.asked, jid)
	n.mu.Unlock()
	n.wakeWaiters(jid)
}

// Owns reports whether this instance took jid and has not given it up.
func (n *Node) Owns(jid string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.since[jid].IsZero()
}

// QueuedFree returns the users with queued messages whom nobody owns: the
// instance that brings a slot up loads them, so their messages flow.
func (n *Node) QueuedFree(ctx context.Context) ([]string, error) {
	rows, err := n.pool.Query(ctx, `SELECT DISTINCT m.jid FROM messages m LEFT JOIN cluster_owners o ON o.jid = m.jid
		WHERE o.jid IS NULL ORDER BY m.jid`)
	if err != nil {
		return nil, fmt.Errorf("cluster: queued users: %w", err)
	}
	jids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("cluster: queued users: %w", err)
	}
	return jids, nil
}

// Stopping marks the instance as stopping: no free slot goes to it from
// now on. Its slots stay its own until Leave.
func (n *Node) Stopping(ctx context.Context) error {
	if _, err := n.pool.Exec(ctx, `UPDATE cluster_instances SET stopping = true WHERE id = $1`, n.id); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// Leave ends the membership: call it once the instance's component
// connections are closed and its users logged out and written. Its users
// and slots are free at once, and the others are told.
func (n *Node) Leave(ctx context.Context) error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	defer n.closeConns()
	if _, err := n.pool.Exec(ctx, `DELETE FROM cluster_instances WHERE id = $1`, n.id); err != nil {
		return fmt.Errorf("cluster: leaving: %w", err)
	}
	n.notify(ctx, "changed")
	n.log.Info("cluster: left")
	return nil
}

// Close ends the membership without clearing it (the others see the lock
// gone and clear it): for an instance that stops on an error.
func (n *Node) Close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.closeConns()
}

func (n *Node) closeConns() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if n.listen != nil {
		_ = n.listen.Close(ctx)
	}
	if n.lock != nil {
		_ = n.lock.Close(ctx)
	}
	if n.pool != nil {
		n.pool.Close()
	}
}
