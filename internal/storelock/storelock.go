// Package storelock is the lock that a running transport holds on its
// store, so that the admin commands that write to the store (users delete,
// migrate, rotate-key) refuse to run beside it, and a second transport does
// not start on the same store.
//
// The lock is an advisory flock(2) on a file beside the database
// (PATH.lock), held exclusively for the life of the holder; the kernel
// releases it when the process ends, however it ends, so a crash leaves no
// stale lock. The file itself is left in place (removing it would race with
// a process about to lock it); it holds the holder's PID, for messages only.
package storelock

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned, wrapped, by Acquire when another process (or
// another Lock in this process) holds the lock. Test for it with errors.Is.
var ErrLocked = errors.New("storelock: held by another process")

// Lock is a held lock.
type Lock struct {
	f *os.File
}

// Path returns the lock file of the database at dbPath.
func Path(dbPath string) string { return dbPath + ".lock" }

// Acquire takes the lock of the database at dbPath without waiting. When
// it is held elsewhere the error wraps ErrLocked and names the holder's PID
// when known.
func Acquire(dbPath string) (*Lock, error) { return acquire(dbPath, unix.LOCK_EX) }

// AcquireShared takes the lock shared: the instances of a cluster on one
// host hold it together, and an Acquire (an admin command that writes, a
// transport without a cluster) is refused while any of them runs. It is
// refused itself while an Acquire holds it.
func AcquireShared(dbPath string) (*Lock, error) { return acquire(dbPath, unix.LOCK_SH) }

func acquire(dbPath string, how int) (*Lock, error) {
	p := Path(dbPath)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("storelock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if pid := holder(p); pid > 0 {
				return nil, fmt.Errorf("%w: %s (pid %d)", ErrLocked, p, pid)
			}
			return nil, fmt.Errorf("%w: %s", ErrLocked, p)
		}
		return nil, fmt.Errorf("storelock: flock %s: %w", p, err)
	}
	// The PID is informative only: failing to write it is not fatal (and
	// shared holders leave the first one's).
	if how == unix.LOCK_EX {
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
	}
	return &Lock{f: f}, nil
}

// holder reads the PID written in the lock file p, or 0.
func holder(p string) int {
	b, err := os.ReadFile(p)
	if err != nil || len(b) > 32 {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// Release gives the lock up. It is safe to call on a nil Lock and more than
// once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	// Closing the last descriptor releases the flock.
	if err := f.Close(); err != nil {
		return fmt.Errorf("storelock: %w", err)
	}
	return nil
}
