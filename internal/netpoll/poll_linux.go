//go:build linux

package netpoll

import (
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller parks connections. The zero value is not usable; use Default or
// New.
type Poller struct {
	mu      sync.Mutex
	epfd    int
	evfd    int // eventfd that wakes the loop so it can end
	nextID  uint64
	watches map[uint64]*Watch
	running bool // the loop goroutine exists
}

var (
	defOnce sync.Once
	def     *Poller
	defErr  error
)

// Default returns the process's Poller, created at first use.
func Default() (*Poller, error) {
	defOnce.Do(func() { def, defErr = New() })
	return def, defErr
}

// New creates a Poller. Its goroutine exists only while it has watches.
func New() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: eventfd: %w", err)
	}
	// The eventfd is edge-triggered: one wake per write is all the loop
	// needs to look at its watch count.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET}
	*(*uint64)(eventData(&ev)) = 0
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("netpoll: epoll_ctl eventfd: %w", err)
	}
	return &Poller{epfd: epfd, evfd: evfd, nextID: 1, watches: make(map[uint64]*Watch)}, nil
}

// Watch is one connection's registration.
type Watch struct {
	p      *Poller
	id     uint64
	rc     syscall.RawConn
	wake   func()
	armed  bool // guarded by p.mu
	closed bool // guarded by p.mu
}

// Watch registers c (which must expose its file descriptor through
// syscall.Conn, as *net.TCPConn does), disarmed. wake is called on the
// poller's goroutine, once per Arm, when c is readable; it must not block
// (start a goroutine).
func (p *Poller) Watch(c any, wake func()) (*Watch, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, ErrUnsupported
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, ErrUnsupported
	}
	p.mu.Lock()
	id := p.nextID
	p.nextID++
	w := &Watch{p: p, id: id, rc: rc, wake: wake}
	p.mu.Unlock()
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		// Registered disarmed: ONESHOT with no events reports nothing
		// until the first Arm.
		ev := unix.EpollEvent{Events: unix.EPOLLONESHOT}
		*(*uint64)(eventData(&ev)) = id
		cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil {
		return nil, fmt.Errorf("netpoll: %w", err)
	}
	if cerr != nil {
		if cerr == unix.EPERM {
			return nil, ErrUnsupported // a file epoll cannot watch
		}
		return nil, fmt.Errorf("netpoll: epoll_ctl add: %w", cerr)
	}
	p.mu.Lock()
	p.watches[id] = w
	if !p.running {
		p.running = true
		go p.loop()
	}
	p.mu.Unlock()
	return w, nil
}

// Arm asks for one wake-up when the connection is readable (at once if it
// already is). After a wake-up the watch is disarmed again.
func (w *Watch) Arm() error {
	p := w.p
	p.mu.Lock()
	if w.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	w.armed = true
	p.mu.Unlock()
	var cerr error
	if err := w.rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
		*(*uint64)(eventData(&ev)) = w.id
		cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
	}); err != nil {
		cerr = err
	}
	if cerr != nil {
		p.mu.Lock()
		w.armed = false
		p.mu.Unlock()
		return fmt.Errorf("netpoll: arm: %w", cerr)
	}
	return nil
}

// Close removes the watch; wake is not called after Close returns, except
// by a wake-up the poller had already taken (the caller tolerates one).
// Call it before closing the connection, or after: a closed descriptor
// leaves epoll by itself.
func (w *Watch) Close() {
	p := w.p
	p.mu.Lock()
	if w.closed {
		p.mu.Unlock()
		return
	}
	w.closed, w.armed = true, false
	delete(p.watches, w.id)
	empty := len(p.watches) == 0
	p.mu.Unlock()
	_ = w.rc.Control(func(fd uintptr) {
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	if empty {
		p.kick()
	}
}

// kick wakes the loop so it sees that no watch is left.
func (p *Poller) kick() {
	var one = [8]byte{1}
	_, _ = unix.Write(p.evfd, one[:])
}

// Watches reports how many watches exist (for tests and metrics).
func (p *Poller) Watches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.watches)
}

// loop waits for readiness and calls the wake functions. It ends when no
// watch is left.
func (p *Poller) loop() {
	events := make([]unix.EpollEvent, 128)
	var buf [8]byte
	var wakes []func()
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil && err != unix.EINTR {
			// Not expected from a valid epoll descriptor; end the loop
			// and let the next Watch start a new one.
			p.mu.Lock()
			p.running = false
			p.mu.Unlock()
			return
		}
		wakes = wakes[:0]
		p.mu.Lock()
		for i := range max(n, 0) {
			id := *(*uint64)(eventData(&events[i]))
			if id == 0 {
				_, _ = unix.Read(p.evfd, buf[:])
				continue
			}
			w := p.watches[id]
			if w == nil || !w.armed {
				continue
			}
			w.armed = false
			wakes = append(wakes, w.wake)
		}
		if len(p.watches) == 0 {
			p.running = false
			p.mu.Unlock()
			for _, f := range wakes {
				f()
			}
			return
		}
		p.mu.Unlock()
		for _, f := range wakes {
			f()
		}
		clear(wakes)
	}
}
