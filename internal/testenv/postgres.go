package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresBinDirs are searched, newest version first, for initdb and
// pg_ctl (Debian's postgresql package installs them there, off PATH); PATH
// is tried last.
const PostgresBinDirs = "/usr/lib/postgresql/*/bin"

// postgresStartBudget bounds initdb plus the server's start.
const postgresStartBudget = 60 * time.Second

// postgresStopBudget bounds the wait for the server's exit after SIGINT
// (fast shutdown); then it is killed.
const postgresStopBudget = 15 * time.Second

// Postgres is a private PostgreSQL server of a test: a cluster in a temp
// directory, listening only on a unix socket in that directory.
type Postgres struct {
	// Dir holds the cluster (Dir/data) and the socket.
	Dir string
	// User is the superuser's name (the OS user running the server).
	User string
	pid  int
	dbs  atomic.Int64
}

// postgresBin finds a PostgreSQL program.
func postgresBin(name string) (string, error) {
	dirs, _ := filepath.Glob(PostgresBinDirs)
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("PostgreSQL's %s not found in %s or PATH (install the postgresql package): %w", name, PostgresBinDirs, err)
	}
	return p, nil
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// PostgresAvailable reports why a private PostgreSQL cannot be started, or nil.
func PostgresAvailable() error {
	for _, name := range []string{"initdb", "pg_ctl"} {
		if _, err := postgresBin(name); err != nil {
			return err
		}
	}
	return nil
}

// StartPostgres starts a private PostgreSQL for t and stops it (by its
// PID) at cleanup. It skips t when PostgreSQL is not installed, or fails it
// under IMIP_REQUIRE_SERVERS=1. When the test runs as root the server runs
// as the postgres user (nobody if there is none), as PostgreSQL refuses root.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	SkipUnavailable(t, PostgresAvailable())
	pg, err := startPostgres(t)
	if pg != nil {
		t.Cleanup(func() {
			if err := pg.stop(); err != nil {
				t.Errorf("testenv: stopping PostgreSQL: %v", err)
			}
			if err := os.RemoveAll(pg.Dir); err != nil {
				t.Errorf("testenv: %v", err)
			}
		})
	}
	if err != nil && pg != nil {
		if log, rerr := os.ReadFile(filepath.Join(pg.Dir, "server.log")); rerr == nil {
			t.Logf("PostgreSQL log:\n%s", log)
		}
	}
	if err != nil {
		t.Fatalf("testenv: starting PostgreSQL: %v", err)
	}
	return pg
}

func startPostgres(t testing.TB) (*Postgres, error) {
	initdb, err := postgresBin("initdb")
	if err != nil {
		return nil, err
	}
	pgctl, err := postgresBin("pg_ctl")
	if err != nil {
		return nil, err
	}
	// Not t.TempDir(): the server's user must own it. Short, for the
	// socket path's 107-byte limit.
	dir, err := os.MkdirTemp("", "imip-pg-")
	if err != nil {
		return nil, err
	}
	pg := &Postgres{Dir: dir}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			u, err = user.Lookup("nobody")
		}
		if err != nil {
			return pg, fmt.Errorf("running as root and no postgres or nobody user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return pg, err
		}
		pg.User = u.Username
	} else {
		u, err := user.Current()
		if err != nil {
			return pg, err
		}
		pg.User = u.Username
	}
	ctx, cancel := context.WithTimeout(context.Background(), postgresStartBudget)
	defer cancel()
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", filepath.Base(name), err, out)
		}
		return nil
	}
	data := filepath.Join(dir, "data")
	if err := run(initdb, "-D", data, "-U", pg.User, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return pg, err
	}
	opts := fmt.Sprintf("-c listen_addresses='' -k %s -c fsync=on -c synchronous_commit=on", dir)
	if err := run(pgctl, "start", "-w", "-t", "50", "-D", data, "-l", filepath.Join(dir, "server.log"), "-o", opts); err != nil {
		return pg, err
	}
	pidFile, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return pg, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(pidFile), "\n", 2)[0]))
	if err != nil {
		return pg, fmt.Errorf("postmaster.pid: %w", err)
	}
	pg.pid = pid
	return pg, nil
}

// stop shuts the server down by its PID: SIGINT (fast shutdown), then
// SIGKILL after postgresStopBudget.
func (pg *Postgres) stop() error {
	if pg.pid == 0 {
		return nil
	}
	pid := pg.pid
	pg.pid = 0
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(postgresStopBudget)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		// The postmaster is not our child (pg_ctl daemonised it): poll.
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return fmt.Errorf("PostgreSQL (pid %d) did not stop within %v: killed", pid, postgresStopBudget)
		}
	}
	return nil
}

// DSN returns the key=value DSN of database db on the server.
func (pg *Postgres) DSN(db string) string {
	return fmt.Sprintf("host=%s user=%s dbname=%s sslmode=disable", pg.Dir, pg.User, db)
}

// NewDatabase creates an empty database on the server and returns its DSN.
func (pg *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("test%d", pg.dbs.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	return pg.DSN(name)
}
