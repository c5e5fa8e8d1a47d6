package imipserver

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"imip-transport/imipside/wire"
)

// AbuseLimits bound what one client can do to other users and to the
// server. Every limit is per server process; zero fields take the defaults
// (DefaultAbuseLimits).
type AbuseLimits struct {
	// MaxHeldPerSender is the most messages one sender may have stored
	// for one recipient; beyond it the MESG is answered ACK 814 [ours].
	MaxHeldPerSender int
	// MaxHeldPerRecipient is the most messages stored for one recipient
	// from all senders; beyond it ACK 814.
	MaxHeldPerRecipient int
	// MaxRequestsPerRecipient is the most pending contact requests one
	// user may have; beyond it a new LIST ADD is answered ACK 814.
	MaxRequestsPerRecipient int
	// SendRate and SendBurst bound the MESG and LIST ADD blocks of one
	// connection (per second, and at once); beyond them ACK 815 [ours].
	SendRate  float64
	SendBurst int
	// MaxConns bounds the open connections; MaxPending the connections not
	// logged in yet, and MaxPendingPerAddr those from one IP address. A
	// connection beyond a bound is closed at once. Logged-in connections
	// are not limited per address: a gateway holds one per user.
	MaxConns, MaxPending, MaxPendingPerAddr int
	// LoginTimeout closes a connection that has not logged in this long
	// after it was accepted.
	LoginTimeout time.Duration
	// Refused logins: an address gets AddrFailBurst refused logins, then
	// one per AddrFailEvery; a number NumberFailBurst, then one per
	// NumberFailEvery, except from the address it last logged in from
	// (a stranger guessing cannot lock the owner out). A login beyond a
	// budget is answered ACK 810 without its password being checked.
	AddrFailBurst, NumberFailBurst int
	AddrFailEvery, NumberFailEvery time.Duration
}

// DefaultAbuseLimits are the defaults of AbuseLimits.
var DefaultAbuseLimits = AbuseLimits{
	MaxHeldPerSender:        200,
	MaxHeldPerRecipient:     2000,
	MaxRequestsPerRecipient: 100,
	SendRate:                50,
	SendBurst:               500,
	MaxConns:                50000,
	MaxPending:              1024,
	MaxPendingPerAddr:       64,
	LoginTimeout:            30 * time.Second,
	AddrFailBurst:           20,
	AddrFailEvery:           time.Second,
	NumberFailBurst:         10,
	NumberFailEvery:         6 * time.Second,
}

func (l AbuseLimits) withDefaults() AbuseLimits {
	d := DefaultAbuseLimits
	pick := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&l.MaxHeldPerSender, d.MaxHeldPerSender)
	pick(&l.MaxHeldPerRecipient, d.MaxHeldPerRecipient)
	pick(&l.MaxRequestsPerRecipient, d.MaxRequestsPerRecipient)
	pick(&l.SendBurst, d.SendBurst)
	pick(&l.MaxConns, d.MaxConns)
	pick(&l.MaxPending, d.MaxPending)
	pick(&l.MaxPendingPerAddr, d.MaxPendingPerAddr)
	pick(&l.AddrFailBurst, d.AddrFailBurst)
	pick(&l.NumberFailBurst, d.NumberFailBurst)
	if l.SendRate <= 0 {
		l.SendRate = d.SendRate
	}
	if l.LoginTimeout <= 0 {
		l.LoginTimeout = d.LoginTimeout
	}
	if l.AddrFailEvery <= 0 {
		l.AddrFailEvery = d.AddrFailEvery
	}
	if l.NumberFailEvery <= 0 {
		l.NumberFailEvery = d.NumberFailEvery
	}
	return l
}

// maxTracked bounds each map of login-failure buckets; beyond it the idle
// ones (full again) are forgotten, and if that is not enough, all.
const maxTracked = 10000

// guard holds the server-wide abuse state: connection counts and the
// refused-login buckets. Its own mutex; never held while calling out.
type guard struct {
	lim AbuseLimits

	mu        sync.Mutex
	conns     int
	pending   int
	perAddr   map[string]int           // connections not logged in, by IP
	addrFails map[string]*rate.Limiter // refused logins, by IP
	numFails  map[wire.Number]*rate.Limiter
	lastAddr  map[wire.Number]string // the IP each number last logged in from
}

func newGuard(l AbuseLimits) *guard {
	return &guard{lim: l, perAddr: make(map[string]int), addrFails: make(map[string]*rate.Limiter),
		numFails: make(map[wire.Number]*rate.Limiter), lastAddr: make(map[wire.Number]string)}
}

// hostOf returns the IP of a remote address ("" when it has none).
func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// admit counts a new connection from addr, pending login; false means it
// must be closed at once (why says which bound).
func (g *guard) admit(addr string) (ok bool, why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.conns >= g.lim.MaxConns:
		return false, "too many connections"
	case g.pending >= g.lim.MaxPending:
		return false, "too many connections not logged in"
	case g.perAddr[addr] >= g.lim.MaxPendingPerAddr:
		return false, "too many connections not logged in from this address"
	}
	g.conns++
	g.pending++
	g.perAddr[addr]++
	return true, ""
}

// loggedIn moves a connection of addr from pending to logged in.
func (g *guard) loggedIn(addr string, n wire.Number) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.unpendLocked(addr)
	if len(g.lastAddr) >= maxTracked {
		clear(g.lastAddr)
	}
	g.lastAddr[n] = addr
}

func (g *guard) unpendLocked(addr string) {
	g.pending--
	if g.perAddr[addr]--; g.perAddr[addr] <= 0 {
		delete(g.perAddr, addr)
	}
}

// closed forgets a connection of addr; pending says it never logged in.
func (g *guard) closed(addr string, pending bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conns--
	if pending {
		g.unpendLocked(addr)
	}
}

// loginAllowed reports whether a login for n from addr may be checked now:
// the address and the number have refused logins left (the number's budget
// does not apply from the address it last logged in from).
func (g *guard) loginAllowed(addr string, n wire.Number) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if l := g.addrFails[addr]; l != nil && l.Tokens() < 1 {
		return false
	}
	if g.lastAddr[n] == addr {
		return true
	}
	if l := g.numFails[n]; l != nil && l.Tokens() < 1 {
		return false
	}
	return true
}

// refused counts a refused login for n from addr.
func (g *guard) refused(addr string, n wire.Number) {
	g.mu.Lock()
	defer g.mu.Unlock()
	take(g.addrFails, addr, g.lim.AddrFailEvery, g.lim.AddrFailBurst)
	if n != "" && g.lastAddr[n] != addr {
		take(g.numFails, n, g.lim.NumberFailEvery, g.lim.NumberFailBurst)
	}
}

// take spends a token of m[k], making the bucket (and pruning the map).
func take[K comparable](m map[K]*rate.Limiter, k K, every time.Duration, burst int) {
	l := m[k]
	if l == nil {
		if len(m) >= maxTracked {
			for key, b := range m {
				if b.Tokens() >= float64(burst) {
					delete(m, key)
				}
			}
			if len(m) >= maxTracked {
				clear(m)
			}
		}
		l = rate.NewLimiter(rate.Every(every), burst)
		m[k] = l
	}
	l.Allow()
}
