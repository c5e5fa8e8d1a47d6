package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
)

// The fault suite (TestFaults) runs the real transport binary and the real
// imipd binary beside a private Prosody. In each scenario a Jabber user and
// an IMIP user, contacts of each other, send numbered messages both ways at
// a steady rate (faultRate each way) while one fault is injected; then the
// senders stop, and once every message is accounted for (or faultDrain
// has passed) each one is classified:
//
//   - delivered: the other side received it (once);
//   - duplicated: received more than once (counted besides delivered;
//     duplicates keep their id, so a client can drop them);
//   - bounced: not received, and its sender saw an error (an error message
//     with its id for the Jabber user; an ACK error, or a session that
//     ended before the ACK, for the IMIP user);
//   - not sent: the sender's own connection refused it (the Jabber user's
//     stream was down during a Prosody restart);
//   - ignored: see below;
//   - lost: none of these. The test fails when any message is lost.
//
// The only messages the suite may ignore are Jabber messages that reached
// the transport in the last moment before it was killed with SIGKILL (or
// before its component link was cut under it): XEP-0114 has no
// acknowledgement, so a stanza Prosody wrote to the socket but the
// transport had not yet stored is gone with the process, and so is one
// Prosody writes after the kill but before it noticed the socket close.
// Likewise a Prosody restart: what the Jabber user's client wrote just
// before it and Prosody had not read from the client's stream is gone with
// Prosody (a client without XEP-0198 cannot know; the transport never saw
// it). The suite ignores a Jabber message only when all of these hold: the
// scenario is one of those, the message was sent less than faultInFlight
// before or after the kill, cut or restart, and it was neither delivered
// nor bounced. Their number is printed.
//
// Traffic between the transport and imipd, and the component link, go
// through a small TCP proxy of the test's, which cuts a connection in the
// middle of a block or stanza (half of a read is forwarded, then both
// sides are closed) or refuses connections for a while.

const (
	faultRate     = 20                     // messages per second, each way
	faultBefore   = 3 * time.Second        // traffic before the fault
	faultAfter    = 3 * time.Second        // traffic after recovery
	faultDrain    = 90 * time.Second       // bound on waiting for the last messages
	faultInFlight = 300 * time.Millisecond // see the package comment above
)

// ---------------------------------------------------------------- proxy

// proxy forwards TCP connections to target and injects faults.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu    sync.Mutex
	pairs map[*pair]bool
	down  bool      // refuse connections (close them at once)
	cut   [2]bool   // cut the next read in this direction (0: to target, 1: from target)
	cutAt time.Time // when the last cut happened
	what  [2]string // the start of what was cut, for the log
	wg    sync.WaitGroup
}

type pair struct{ client, server net.Conn }

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, pairs: make(map[*pair]bool)}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		pr := &pair{client: c, server: s}
		p.mu.Lock()
		p.pairs[pr] = true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pr, 0, c, s)
		go p.pipe(pr, 1, s, c)
	}
}

// pipe copies src to dst; a cut armed for dir forwards half of the next
// read and closes the pair.
func (p *proxy) pipe(pr *pair, dir int, src, dst net.Conn) {
	defer p.wg.Done()
	defer p.drop(pr)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			cut := p.cut[dir]
			if cut {
				p.cut[dir] = false
				p.cutAt = time.Now()
				p.what[dir] = strconv.Quote(string(buf[:min(n, 40)]))
			}
			p.mu.Unlock()
			if cut {
				_, _ = dst.Write(buf[:n/2])
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) drop(pr *pair) {
	p.mu.Lock()
	delete(p.pairs, pr)
	p.mu.Unlock()
	pr.client.Close()
	pr.server.Close()
}

// cutNext arms a cut of the next read in dir and waits until it happened.
func (p *proxy) cutNext(dir int) (time.Time, string) {
	p.t.Helper()
	p.mu.Lock()
	p.cut[dir] = true
	p.mu.Unlock()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		done, at, what := !p.cut[dir], p.cutAt, p.what[dir]
		p.mu.Unlock()
		if done {
			return at, what
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.t.Fatalf("proxy to %s: nothing to cut in direction %d within %v", p.target, dir, waitFor)
	return time.Time{}, ""
}

// setDown refuses new connections and closes the open ones (down), or
// accepts again.
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	var open []*pair
	if down {
		for pr := range p.pairs {
			open = append(open, pr)
		}
	}
	p.mu.Unlock()
	for _, pr := range open {
		pr.client.Close()
		pr.server.Close()
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.setDown(true)
	p.wg.Wait()
}

// ---------------------------------------------------------------- processes

// faultRig is Prosody, imipd and the transport, each restartable.
type faultRig struct {
	t        *testing.T
	dir      string
	srv      *xmppserver.Prosody
	domain   jid.JID
	trBin    string
	imipdBin string
	imipAddr string // imipd's own listener (the IMIP users connect here)
	imipPx   *proxy // the transport's way to imipd
	compPx   *proxy // the transport's way to Prosody's component port
	imipd    *exec.Cmd
	tr       *exec.Cmd
	trLog    *os.File
	accounts []imipAccount
}

type imipAccount struct {
	number   wire.Number
	password string
	contact  wire.Number
}

// buildBinary builds pkg (cmd/...) into dir.
func buildBinary(t *testing.T, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newFaultRig(t *testing.T, pairs int) *faultRig {
	t.Helper()
	r := &faultRig{t: t, dir: t.TempDir()}
	r.srv = testenv.Prosody(t, xmppserver.ProsodyOptions{Privilege: true, ExtraModules: []string{"offline"}})
	r.domain = jid.MustParse(r.srv.ComponentName())
	bin := filepath.Join(r.dir, "bin")
	r.trBin = buildBinary(t, bin, "imip-transport/cmd/imip-transport")
	r.imipdBin = buildBinary(t, bin, "imip-transport/cmd/imipd")
	var acc strings.Builder
	for i := range pairs {
		a := imipAccount{number: wire.Number(fmt.Sprint(4100000 + i)), password: fmt.Sprint("a-pw-", i), contact: wire.Number(fmt.Sprint(4200000 + i))}
		b := imipAccount{number: a.contact, password: fmt.Sprint("b-pw-", i), contact: a.number}
		r.accounts = append(r.accounts, a, b)
		for _, x := range []imipAccount{a, b} {
			fmt.Fprintf(&acc, "[[account]]\nnumber = %q\npassword = %q\nnick = \"n%s\"\ncontacts = [%q]\n\n", x.number, x.password, x.number, x.contact)
		}
	}
	if err := os.WriteFile(filepath.Join(r.dir, "accounts.toml"), []byte(acc.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r.imipAddr = freeAddr(t)
	r.startIMIPd()
	r.imipPx = newProxy(t, r.imipAddr)
	r.compPx = newProxy(t, r.srv.ComponentAddr())
	cfg := linksConfig(r.srv.ComponentName(), r.compPx.addr(), r.srv.Secret(), r.imipPx.addr(), "1s") + fmt.Sprintf(`
[storage]
driver = "sqlite"
path = %q
key_file = %q

[limits]
# The suite sends faultRate messages a second per user: above the default
# bucket (10/s, burst 50), which would bounce some of them.
messages_per_second = 100
message_burst = 200

[log]
level = "info"
`, filepath.Join(r.dir, "transport.db"), filepath.Join(r.dir, "transport.key"))
	if err := os.WriteFile(filepath.Join(r.dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(r.dir, "transport.log"))
	if err != nil {
		t.Fatal(err)
	}
	r.trLog = log
	r.startTransport()
	t.Cleanup(func() {
		r.stopTransport(syscall.SIGTERM)
		r.stopIMIPd(syscall.SIGTERM)
		log.Close()
		if t.Failed() {
			t.Logf("transport log (tail):\n%s", xmppserver.Tail(8<<10, log.Name()))
			t.Logf("imipd log (tail):\n%s", xmppserver.Tail(4<<10, filepath.Join(r.dir, "imipd.log")))
		}
	})
	return r
}

func (r *faultRig) startIMIPd() {
	r.t.Helper()
	log, err := os.OpenFile(filepath.Join(r.dir, "imipd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(r.imipdBin, "-listen", r.imipAddr, "-data", filepath.Join(r.dir, "imipd-data"),
		"-key-file", filepath.Join(r.dir, "imipd.key"), "-accounts", filepath.Join(r.dir, "accounts.toml"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.imipd = cmd
	if !listening(r.imipAddr) {
		r.t.Fatalf("imipd does not listen on %s within %v; its log:\n%s", r.imipAddr, waitFor,
			xmppserver.Tail(4<<10, filepath.Join(r.dir, "imipd.log")))
	}
}

func (r *faultRig) stopIMIPd(sig syscall.Signal) {
	if r.imipd == nil {
		return
	}
	_ = r.imipd.Process.Signal(sig)
	_ = r.imipd.Wait()
	r.imipd = nil
}

func (r *faultRig) startTransport() {
	r.t.Helper()
	cmd := exec.Command(r.trBin, "-config", filepath.Join(r.dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = r.trLog, r.trLog
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.tr = cmd
}

func (r *faultRig) stopTransport(sig syscall.Signal) {
	if r.tr == nil {
		return
	}
	_ = r.tr.Process.Signal(sig)
	_ = r.tr.Wait()
	r.tr = nil
}

// listening waits until addr accepts connections (waitFor at most).
func listening(addr string) bool {
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// ---------------------------------------------------------------- the two users

// sentMsg is one numbered message as its sender knows it.
type sentMsg struct {
	at      time.Time
	sent    bool // the sender's connection took it
	bounced bool // the sender saw an error for it
}

// jabberSide is the Jabber user: a Prosody account that logs in again
// when its stream dies (a Prosody restart).
type jabberSide struct {
	t       *testing.T
	r       *faultRig
	user    string
	mu      sync.Mutex
	c       *client
	old     []*client // earlier sessions, whose receipts still count
	sent    []sentMsg
	contact string // the IMIP contact's JID
}

func (j *jabberSide) client() *client {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.c
}

// relogin logs the user in again (after a Prosody restart).
func (j *jabberSide) relogin() {
	j.t.Helper()
	c := login(j.t, j.r.srv, j.user, "pw-"+j.user)
	c.rosterItems()
	c.send(`<presence/>`)
	c.online = true
	j.mu.Lock()
	j.old = append(j.old, j.c)
	j.c = c
	j.mu.Unlock()
}

// send sends message n; it reports whether the stream took it.
func (j *jabberSide) send(scen string, n int) {
	c := j.client()
	raw := fmt.Sprintf(`<message type="chat" to=%q id="%s-a%d"><body>a%d</body></message>`, j.contact, scen, n, n)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d := xml.NewDecoder(strings.NewReader(raw))
	at := time.Now()
	err := c.sess.Send(ctx, xmlstream.ReaderFunc(func() (xml.Token, error) {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		return xml.CopyToken(tok), nil
	}))
	j.mu.Lock()
	j.sent = append(j.sent, sentMsg{at: at, sent: err == nil})
	j.mu.Unlock()
}

// received counts the messages from the contact, by number, over every
// session of the user; errors lists the ids of error messages.
func (j *jabberSide) received() (map[int]int, map[string]bool) {
	j.mu.Lock()
	clients := append(append([]*client(nil), j.old...), j.c)
	j.mu.Unlock()
	got := make(map[int]int)
	errs := make(map[string]bool)
	for _, c := range clients {
		c.mu.Lock()
		for _, g := range c.backlog {
			if g.Name != "message" {
				continue
			}
			if g.Type == "error" {
				errs[g.ID] = true
				continue
			}
			if bare(g.From) != j.contact {
				continue
			}
			if n, err := strconv.Atoi(strings.TrimPrefix(g.Body, "b")); err == nil && strings.HasPrefix(g.Body, "b") {
				got[n]++
			}
		}
		// Duplicates the client dropped by id count as receipts too.
		c.mu.Unlock()
	}
	return got, errs
}

// dups is the number of duplicates the sessions' clients dropped by id.
func (j *jabberSide) dups() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, c := range append(append([]*client(nil), j.old...), j.c) {
		c.mu.Lock()
		n += c.dups
		c.mu.Unlock()
	}
	return n
}

// imipSide is the IMIP user, connected straight to imipd, logging in
// again when imipd goes away.
type imipSide struct {
	t       *testing.T
	addr    string
	acct    imipAccount
	mu      sync.Mutex
	sess    *imipside.Session
	ids     map[*imipside.Session]map[uint64]int // outstanding MESGs by block ID, per session
	sent    []sentMsg
	got     map[int]int
	closing bool
	wg      sync.WaitGroup
	// observe, when set, sees every event first (from the session's
	// goroutine, before u.mu is taken); it must not block or call u.
	observe func(imipside.Event)
}

func dialIMIPSide(t *testing.T, addr string, a imipAccount) *imipSide {
	t.Helper()
	u := &imipSide{t: t, addr: addr, acct: a, ids: make(map[*imipside.Session]map[uint64]int), got: make(map[int]int)}
	u.connect(waitFor)
	t.Cleanup(u.close)
	return u
}

// connect logs in, retrying until within passes.
func (u *imipSide) connect(within time.Duration) {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		box := new(sessBox) // set under u.mu once Dial returned
		h := imipside.HandlerFunc(func(ev imipside.Event) { u.handle(box, ev) })
		u.mu.Lock()
		sess, err := imipside.Dial(ctx, imipside.Config{Addr: u.addr, Number: u.acct.number, Password: u.acct.password,
			AutoConfirm: true, Handler: h, KeepAlive: 5 * time.Second})
		cancel()
		if err == nil {
			box.s = sess
			u.sess = sess
			u.ids[sess] = make(map[uint64]int)
			u.mu.Unlock()
			return
		}
		u.mu.Unlock()
		if time.Now().After(deadline) {
			u.t.Errorf("IMIP user %s: no login within %v: %v", u.acct.number, within, err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sessBox holds the session a handler belongs to (guarded by imipSide.mu).
type sessBox struct{ s *imipside.Session }

func (u *imipSide) handle(box *sessBox, ev imipside.Event) {
	if u.observe != nil {
		u.observe(ev)
	}
	u.mu.Lock()
	s := box.s
	switch ev := ev.(type) {
	case imipside.MessageEvent:
		if ev.From == u.acct.contact && strings.HasPrefix(ev.Text, "a") {
			if n, err := strconv.Atoi(ev.Text[1:]); err == nil {
				u.got[n]++
			}
		}
	case imipside.ReplyEvent:
		if ev.Type == imipside.RequestMESG {
			if n, ok := u.ids[s][ev.ID]; ok {
				delete(u.ids[s], ev.ID)
				if !ev.OK() {
					u.sent[n].bounced = true
				}
			}
		}
	case imipside.ClosedEvent:
		// Every MESG of this session without an answer failed: its
		// sender saw the error.
		for _, n := range u.ids[s] {
			u.sent[n].bounced = true
		}
		delete(u.ids, s)
		if u.sess == s && !u.closing {
			u.sess = nil
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				u.connect(2 * faultDrain)
			}()
		}
	}
	u.mu.Unlock()
}

// send sends message n to the contact.
func (u *imipSide) send(n int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sent = append(u.sent, sentMsg{at: time.Now()})
	if u.sess == nil {
		return // not sent: the user is not logged in
	}
	id, err := u.sess.SendMessage(u.acct.contact, fmt.Sprint("b", n))
	if err != nil {
		return
	}
	u.sent[n].sent = true
	if m := u.ids[u.sess]; m != nil {
		m[id] = n
	}
}

func (u *imipSide) close() {
	u.mu.Lock()
	u.closing = true
	s := u.sess
	u.mu.Unlock()
	if s != nil {
		s.Close()
	}
	u.wg.Wait()
}

// ---------------------------------------------------------------- scenarios

// tally is one direction's classification.
type tally struct {
	sent, notSent, delivered, dups, bounced, ignored, lost int
	lostNums                                               []int
}

func (t tally) String() string {
	return fmt.Sprintf("sent %d (not taken %d): delivered %d, duplicated %d, bounced %d, ignored %d, lost %d",
		t.sent, t.notSent, t.delivered, t.dups, t.bounced, t.ignored, t.lost)
}

// classify sorts sent messages by what became of them. inFlight, when not
// zero, is the kill or cut time of the transport (see faultInFlight).
func classify(sent []sentMsg, got map[int]int, bounced func(n int) bool, inFlight time.Time) tally {
	return classifyBy(sent, got, bounced, func(at time.Time) bool {
		return !inFlight.IsZero() && !at.Before(inFlight.Add(-faultInFlight)) && !at.After(inFlight.Add(faultInFlight))
	})
}

// classifyBy is classify with the in-flight rule given as a function: a
// message neither delivered, refused nor bounced is ignored when
// ignorable(its send time), and lost otherwise.
func classifyBy(sent []sentMsg, got map[int]int, bounced func(n int) bool, ignorable func(at time.Time) bool) tally {
	var t tally
	for n, m := range sent {
		t.sent++
		switch {
		case got[n] > 0:
			t.delivered++
			t.dups += got[n] - 1
		case !m.sent:
			t.notSent++
		case m.bounced || bounced(n):
			t.bounced++
		case ignorable(m.at):
			t.ignored++
		default:
			t.lost++
			t.lostNums = append(t.lostNums, n)
		}
	}
	return t
}

type faultCase struct {
	name string
	// inject injects the fault and returns when the system is up again;
	// it returns the time of a transport kill or component cut (zero
	// otherwise), for the in-flight rule.
	inject func(r *faultRig, s *faultScene) time.Time
}

// faultScene is one scenario's pair of users and its senders.
type faultScene struct {
	t     *testing.T
	name  string
	j     *jabberSide
	u     *imipSide
	stop  chan struct{}
	done  sync.WaitGroup
	pause sync.Mutex // held while the Jabber side must not send (its stream is being replaced)
}

func (s *faultScene) startSenders() {
	s.stop = make(chan struct{})
	tick := time.Second / faultRate
	s.done.Add(2)
	go func() {
		defer s.done.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		for n := 0; ; n++ {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			s.pause.Lock()
			s.j.send(s.name, n)
			s.pause.Unlock()
		}
	}()
	go func() {
		defer s.done.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		for n := 0; ; n++ {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			s.u.send(n)
		}
	}()
}

func (s *faultScene) stopSenders() {
	close(s.stop)
	s.done.Wait()
}

// sumTally adds b to a.
func sumTally(a *tally, b tally) {
	a.sent += b.sent
	a.notSent += b.notSent
	a.delivered += b.delivered
	a.dups += b.dups
	a.bounced += b.bounced
	a.ignored += b.ignored
	a.lost += b.lost
}

// TestFaults: see the comment at the top of this file.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite takes minutes")
	}
	cases := []faultCase{
		{"kill-9-transport", func(r *faultRig, s *faultScene) time.Time {
			at := time.Now()
			r.stopTransport(syscall.SIGKILL)
			r.startTransport()
			return at
		}},
		{"kill-9-imipd", func(r *faultRig, s *faultScene) time.Time {
			r.stopIMIPd(syscall.SIGKILL)
			r.startIMIPd()
			return time.Time{}
		}},
		{"prosody-restart", func(r *faultRig, s *faultScene) time.Time {
			s.pause.Lock()
			defer s.pause.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), restartBudget)
			defer cancel()
			at := time.Now()
			if err := r.srv.Restart(ctx); err != nil {
				s.t.Fatalf("restarting prosody: %v", err)
			}
			s.j.relogin()
			return at
		}},
		{"cut-block-to-imipd", func(r *faultRig, s *faultScene) time.Time {
			_, what := r.imipPx.cutNext(0)
			s.t.Logf("cut transport -> imipd in %s", what)
			return time.Time{}
		}},
		{"cut-block-from-imipd", func(r *faultRig, s *faultScene) time.Time {
			_, what := r.imipPx.cutNext(1)
			s.t.Logf("cut imipd -> transport in %s", what)
			return time.Time{}
		}},
		{"cut-stanza-to-prosody", func(r *faultRig, s *faultScene) time.Time {
			// The cut closes the whole link: what Prosody wrote toward the
			// transport at that moment (in the proxy, or in the
			// transport's socket when the reset arrives) is gone, as in
			// the other direction's cut.
			at, what := r.compPx.cutNext(0)
			s.t.Logf("cut transport -> prosody in %s", what)
			return at
		}},
		{"cut-stanza-from-prosody", func(r *faultRig, s *faultScene) time.Time {
			at, what := r.compPx.cutNext(1)
			s.t.Logf("cut prosody -> transport in %s", what)
			return at
		}},
		{"component-down-then-kill-9", func(r *faultRig, s *faultScene) time.Time {
			r.compPx.setDown(true)
			at := time.Now()
			time.Sleep(2 * time.Second) // the outage under test, not a wait for a condition
			r.stopTransport(syscall.SIGKILL)
			r.startTransport()
			time.Sleep(time.Second) // still down after the restart
			r.compPx.setDown(false)
			return at
		}},
		{"sigstop-imipd-20s", func(r *faultRig, s *faultScene) time.Time {
			if err := r.imipd.Process.Signal(syscall.SIGSTOP); err != nil {
				s.t.Fatal(err)
			}
			time.Sleep(20 * time.Second) // the stop under test
			if err := r.imipd.Process.Signal(syscall.SIGCONT); err != nil {
				s.t.Fatal(err)
			}
			return time.Time{}
		}},
		{"sigterm-restart", func(r *faultRig, s *faultScene) time.Time {
			r.stopTransport(syscall.SIGTERM)
			r.startTransport()
			return time.Time{}
		}},
	}
	r := newFaultRig(t, len(cases))
	var toIMIP, toXMPP tally
	began := time.Now()
	for i, fc := range cases {
		a, b := r.accounts[2*i], r.accounts[2*i+1]
		t.Run(fc.name, func(t *testing.T) {
			up, down := runFault(t, r, fc, a, b)
			sumTally(&toIMIP, up)
			sumTally(&toXMPP, down)
		})
	}
	t.Logf("fault suite, %d scenarios in %v:\n  Jabber -> IMIP: %v\n  IMIP -> Jabber: %v",
		len(cases), time.Since(began).Round(time.Second), toIMIP, toXMPP)
	fmt.Fprintf(os.Stderr, "fault suite: Jabber -> IMIP: %v; IMIP -> Jabber: %v\n", toIMIP, toXMPP)
}

// runFault runs one scenario and returns both directions' tallies.
func runFault(t *testing.T, r *faultRig, fc faultCase, a, b imipAccount) (up, down tally) {
	// The IMIP user first, so the Jabber user's login finds it online.
	u := dialIMIPSide(t, r.imipAddr, b)
	c := newUser(t, r.srv, "fault")
	tr := &transport{t: t, domain: r.domain}
	c.autoApprove = r.domain.String()
	// The transport may still be starting (a restart of the scenario before).
	var reg got
	deadline := time.Now().Add(waitFor)
	for {
		reg = c.register(tr, string(a.number), a.password)
		if reg.Type == "result" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if reg.Type != "result" {
		t.Fatalf("registering %s: %s", a.number, reg.Raw)
	}
	contact := tr.contact(b.number)
	c.expect("the contact's presence", isPresence(contact, ""))
	j := &jabberSide{t: t, r: r, user: c.jid.Localpart(), c: c, contact: contact}
	s := &faultScene{t: t, name: fc.name, j: j, u: u}

	s.startSenders()
	time.Sleep(faultBefore) // steady traffic before the fault (the rate decides the count)
	inFlight := fc.inject(r, s)
	time.Sleep(faultAfter) // and after it
	s.stopSenders()

	// Wait until every message is delivered or bounced, or faultDrain.
	deadline = time.Now().Add(faultDrain)
	for {
		gotX, errs := j.received()
		u.mu.Lock()
		up = classify(j.sent, u.got, func(n int) bool { return errs[fmt.Sprintf("%s-a%d", fc.name, n)] }, inFlight)
		down = classify(u.sent, gotX, func(int) bool { return false }, time.Time{})
		u.mu.Unlock()
		if (up.lost == 0 && down.lost == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	down.dups += j.dups()
	t.Logf("Jabber -> IMIP: %v", up)
	t.Logf("IMIP -> Jabber: %v", down)
	if up.lost > 0 || down.lost > 0 {
		t.Errorf("lost messages: Jabber -> IMIP %v, IMIP -> Jabber %v", up.lostNums, down.lostNums)
	}
	// End the scenario's users: the next scenario starts quiet.
	c.send(`<presence type="unavailable"/>`)
	return up, down
}
