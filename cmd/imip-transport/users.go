package main

// The admin commands on the configured store: users list, users show JID,
// users delete JID, migrate. They work with the transport stopped; the
// ones that write (delete, migrate) refuse to run while a transport holds
// the store's lock (internal/storelock), the reading ones say that the
// state they show is the one last recorded.

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"mellium.im/xmpp/jid"

	"imip-transport/gateway"
	"imip-transport/internal/storelock"
)

// Exit codes of the commands.
const (
	exitOK    = 0
	exitError = 1 // the command failed: store, lock, no such registration
	exitUsage = 2 // bad arguments
)

// adminTimeout bounds one admin command's work on the store.
const adminTimeout = 2 * time.Minute

const usersUsage = `usage:
  imip-transport users list [-config FILE]
  imip-transport users show [-config FILE] JID
  imip-transport users delete [-config FILE] JID
  imip-transport migrate [-config FILE]
`

// cmdFlags parses a command's flags and positional arguments; flags may
// come before or after the positional ones. It returns the configuration
// path, the positional arguments and an exit code (-1: go on).
func cmdFlags(name string, args []string, stderr io.Writer) (string, []string, int) {
	fs := flag.NewFlagSet("imip-transport "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usersUsage) }
	cfgPath := fs.String("config", "config.toml", "configuration file")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return "", nil, exitOK
			}
			return "", nil, exitUsage
		}
		if fs.NArg() == 0 {
			return *cfgPath, pos, -1
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// adminBackend is what the admin commands need of a store: both
// sqlitestore and pgstore have it.
type adminBackend interface {
	gateway.Store
	SchemaVersion(ctx context.Context) (int64, error)
}

// adminStore is the configured store opened for an admin command, and the
// lock when the command writes.
type adminStore struct {
	cfg   *Config
	store adminBackend
	lock  *storelock.Lock
	// running says a transport holds the store's lock (reading commands
	// only; writing ones refuse).
	running bool
}

func (a *adminStore) close() {
	if a.store != nil {
		_ = a.store.Close()
	}
	_ = a.lock.Release()
}

// openAdmin reads the configuration and opens its store. write takes the
// store's lock (refused while a transport runs); create allows a database
// that does not exist yet (migrate).
func openAdmin(ctx context.Context, name, cfgPath string, write, create bool, stderr io.Writer) (*adminStore, error) {
	cfg, err := decodeConfig(cfgPath, false)
	if err != nil {
		return nil, err
	}
	printWarnings(stderr, cfg.warnings(cfgPath))
	if cfg.Storage.Driver == "sqlite" && !create {
		path := cfg.Storage.Path
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s (storage.path): the transport creates it at its first start, or run imip-transport migrate", path)
		} else if err != nil {
			return nil, err
		}
	}
	a := &adminStore{cfg: cfg}
	lock, err := storelock.Acquire(cfg.Storage.lockPath())
	switch {
	case errors.Is(err, storelock.ErrLocked) && write:
		return nil, fmt.Errorf("a transport is running on this store (%w): stop it first; %s changes the store only while no transport uses it", err, name)
	case errors.Is(err, storelock.ErrLocked):
		a.running = true
	case err != nil:
		return nil, err
	case write:
		a.lock = lock
	default:
		_ = lock.Release() // reading: only to know whether a transport runs
	}
	st, err := openStore(ctx, cfg.Storage, nil)
	if err == nil {
		b, ok := st.(adminBackend)
		if !ok {
			st.Close()
			err = fmt.Errorf("the %s store has no admin interface", cfg.Storage.Driver)
		}
		a.store = b
	}
	if err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// users is `imip-transport users ...`.
func users(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usersUsage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	cfgPath, pos, code := cmdFlags("users "+sub, args, stderr)
	if code >= 0 {
		return code
	}
	want := map[string]int{"list": 0, "show": 1, "delete": 1}
	n, ok := want[sub]
	if !ok {
		fmt.Fprintf(stderr, "imip-transport users: unknown command %q\n%s", sub, usersUsage)
		return exitUsage
	}
	if len(pos) != n {
		fmt.Fprintf(stderr, "imip-transport users %s: want %d argument(s), got %d\n%s", sub, n, len(pos), usersUsage)
		return exitUsage
	}
	var bare string
	if n == 1 {
		j, err := jid.Parse(pos[0])
		if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
			fmt.Fprintf(stderr, "imip-transport users %s: %q is not a bare JID (user@domain)\n", sub, pos[0])
			return exitUsage
		}
		bare = j.Bare().String()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	a, err := openAdmin(ctx, "users "+sub, cfgPath, sub == "delete", false, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "imip-transport users %s: %v\n", sub, err)
		return exitError
	}
	defer a.close()
	switch sub {
	case "list":
		err = usersList(ctx, a, stdout)
	case "show":
		err = usersShow(ctx, a, bare, stdout)
	case "delete":
		err = usersDelete(ctx, a, bare, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "imip-transport users %s: %v\n", sub, err)
		return exitError
	}
	return exitOK
}

// userInfo is what the commands show of one registration (never the
// password).
type userInfo struct {
	reg              gateway.Registration
	online           bool
	contacts         int
	pending          int // contact requests either way
	toIMIP, fromIMIP int // queued messages
}

// info gathers r's contacts and queued messages; queued says whether r has
// any (QueuedJIDs), to skip the read otherwise.
func info(ctx context.Context, st gateway.Store, r gateway.Registration, online, queued bool) (userInfo, error) {
	u := userInfo{reg: r, online: online}
	cs, err := st.Contacts(ctx, r.JID)
	if err != nil {
		return u, err
	}
	for _, c := range cs {
		if c.InList {
			u.contacts++
		}
		if c.PendingIn || c.PendingOut {
			u.pending++
		}
	}
	if !queued {
		return u, nil
	}
	ms, err := st.Messages(ctx, r.JID)
	if err != nil {
		return u, err
	}
	for _, m := range ms {
		if m.Dir == gateway.ToIMIP {
			u.toIMIP++
		} else {
			u.fromIMIP++
		}
	}
	return u, nil
}

func (u userInfo) state() string {
	if u.online {
		return "online"
	}
	return "offline"
}

func (u userInfo) lastLogin() string {
	if u.reg.LastLogin.IsZero() {
		return "never"
	}
	return u.reg.LastLogin.UTC().Format(time.RFC3339)
}

// runningNote is printed when a transport holds the store.
func (a *adminStore) runningNote(w io.Writer) {
	if a.running {
		fmt.Fprintf(w, "note: a transport is running on this store; the state shown is the one it last recorded\n")
	}
}

func jidSet(ctx context.Context, f func(context.Context) ([]string, error)) (map[string]bool, error) {
	js, err := f(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]bool, len(js))
	for _, j := range js {
		m[j] = true
	}
	return m, nil
}

func usersList(ctx context.Context, a *adminStore, stdout io.Writer) error {
	st := a.store
	regs, err := st.Registrations(ctx)
	if err != nil {
		return err
	}
	online, err := jidSet(ctx, st.OnlineJIDs)
	if err != nil {
		return err
	}
	queued, err := jidSet(ctx, st.QueuedJIDs)
	if err != nil {
		return err
	}
	a.runningNote(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "JID\tNUMBER\tSTATE\tLAST LOGIN\tCONTACTS\tQUEUED")
	for _, r := range regs {
		u, err := info(ctx, st, r, online[r.JID], queued[r.JID])
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", r.JID, r.Number, u.state(), u.lastLogin(), u.contacts, u.toIMIP+u.fromIMIP)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d registration(s)\n", len(regs))
	return nil
}

func usersShow(ctx context.Context, a *adminStore, bare string, stdout io.Writer) error {
	st := a.store
	r, err := st.Registration(ctx, bare)
	if errors.Is(err, gateway.ErrNotFound) {
		return fmt.Errorf("no registration for %s", bare)
	}
	if err != nil {
		return err
	}
	online, err := jidSet(ctx, st.OnlineJIDs)
	if err != nil {
		return err
	}
	u, err := info(ctx, st, r, online[bare], true)
	if err != nil {
		return err
	}
	a.runningNote(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 8, 1, ' ', 0)
	yes := map[bool]string{true: "yes", false: "no"}
	for _, l := range [][2]string{
		{"jid", r.JID},
		{"number", string(r.Number)},
		{"state", u.state() + " (logged in to IMIP, as last recorded)"},
		{"last login", u.lastLogin()},
		{"registered", r.Created.UTC().Format(time.RFC3339)},
		{"updated", r.Updated.UTC().Format(time.RFC3339)},
		{"allow remove", yes[r.AllowRemove]},
		{"roster group", cmp.Or(r.Group, "(the gateway's)")},
		{"contacts", fmt.Sprintf("%d (and %d pending request(s))", u.contacts, u.pending)},
		{"queued", fmt.Sprintf("%d to IMIP, %d from IMIP", u.toIMIP, u.fromIMIP)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", l[0], l[1])
	}
	return tw.Flush()
}

func usersDelete(ctx context.Context, a *adminStore, bare string, stdout io.Writer) error {
	st := a.store
	r, err := st.Registration(ctx, bare)
	if errors.Is(err, gateway.ErrNotFound) {
		return fmt.Errorf("no registration for %s", bare)
	}
	if err != nil {
		return err
	}
	u, err := info(ctx, st, r, false, true)
	if err != nil {
		return err
	}
	cs, err := st.Contacts(ctx, bare)
	if err != nil {
		return err
	}
	if err := st.DeleteRegistration(ctx, bare); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted %s (IMIP number %s): the registration, %d contact row(s) and %d queued message(s) (%d to IMIP, %d from IMIP; not delivered)\n",
		bare, r.Number, len(cs), u.toIMIP+u.fromIMIP, u.toIMIP, u.fromIMIP)
	fmt.Fprintln(stdout, "The user's roster on their XMPP server is not changed: the gateway's contacts stay listed until the user removes them.")
	return nil
}

// migrate is `imip-transport migrate`: it creates the database if needed,
// applies the pending schema migrations and exits.
func migrate(args []string, stdout, stderr io.Writer) int {
	cfgPath, pos, code := cmdFlags("migrate", args, stderr)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "imip-transport migrate: unexpected argument %q\n%s", pos[0], usersUsage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	a, err := openAdmin(ctx, "migrate", cfgPath, true, true, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "imip-transport migrate:", err)
		return exitError
	}
	defer a.close()
	v, err := a.store.SchemaVersion(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "imip-transport migrate:", err)
		return exitError
	}
	fmt.Fprintf(stdout, "imip-transport migrate: %s is at schema version %d (up to date)\n", a.cfg.Storage.where(), v)
	return exitOK
}
