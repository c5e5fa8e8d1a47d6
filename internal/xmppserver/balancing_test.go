package xmppserver_test

import (
	"context"
	"crypto/sha1" // #nosec G505 -- XEP-0114's handshake is defined with SHA-1.
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
)

// balanceWait bounds every wait of TestEjabberdComponentBalancing.
const balanceWait = 10 * time.Second

// rawComponent is a XEP-0114 connection written by hand, so that the test
// controls exactly when it connects and closes, and sees every message
// ejabberd routes to it.
type rawComponent struct {
	name string
	conn net.Conn
	done chan struct{} // closed when the reader saw the stream end or EOF

	mu   sync.Mutex
	msgs []compMsg
	err  error // why the reader ended, if not a clean stream end
}

type compMsg struct{ from, body string }

// dialRawComponent opens a component stream to srv and completes the
// handshake; a goroutine then records every <message/> until the stream
// ends. The connection is closed at cleanup. It fails t on error.
func dialRawComponent(ctx context.Context, t *testing.T, srv *xmppserver.Ejabberd, name string) *rawComponent {
	t.Helper()
	c, err := tryDialRawComponent(ctx, t, srv, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tryDialRawComponent is dialRawComponent returning the error.
func tryDialRawComponent(ctx context.Context, t *testing.T, srv *xmppserver.Ejabberd, name string) (*rawComponent, error) {
	t.Helper()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", srv.ComponentAddr())
	if err != nil {
		return nil, fmt.Errorf("component %s: %w", name, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	fmt.Fprintf(conn, "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "+
		"xmlns:stream='http://etherx.jabber.org/streams' to='%s'>", srv.ComponentName())
	dec := xml.NewDecoder(conn)
	fail := func(what string, err error) (*rawComponent, error) {
		_ = conn.Close()
		return nil, fmt.Errorf("component %s: %s: %w", name, what, err)
	}
	start, err := nextStart(dec)
	if err == nil && start.Name.Local != "stream" {
		err = fmt.Errorf("got <%s>", start.Name.Local)
	}
	if err != nil {
		return fail("no stream header", err)
	}
	var id string
	for _, a := range start.Attr {
		if a.Name.Local == "id" {
			id = a.Value
		}
	}
	sum := sha1.Sum([]byte(id + srv.Secret())) // #nosec G401 -- XEP-0114.
	fmt.Fprintf(conn, "<handshake>%s</handshake>", hex.EncodeToString(sum[:]))
	start, err = nextStart(dec)
	if err == nil && start.Name.Local != "handshake" {
		err = fmt.Errorf("got <%s>", start.Name.Local)
	}
	if err == nil {
		err = dec.Skip()
	}
	if err != nil {
		return fail("handshake refused", err)
	}
	_ = conn.SetDeadline(time.Time{})
	c := &rawComponent{name: name, conn: conn, done: make(chan struct{})}
	t.Cleanup(func() {
		_ = conn.Close()
		<-c.done
	})
	go c.read(dec)
	return c, nil
}

func nextStart(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		if s, ok := tok.(xml.StartElement); ok {
			return s, nil
		}
	}
}

func (c *rawComponent) read(dec *xml.Decoder) {
	defer close(c.done)
	for {
		tok, err := dec.Token()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				c.mu.Lock()
				c.err = err
				c.mu.Unlock()
			}
			return
		}
		switch tok := tok.(type) {
		case xml.EndElement: // </stream:stream>
			return
		case xml.StartElement:
			if tok.Name.Local != "message" {
				if err := dec.Skip(); err != nil {
					return
				}
				continue
			}
			var m struct {
				From string `xml:"from,attr"`
				Body string `xml:"body"`
			}
			if err := dec.DecodeElement(&m, &tok); err != nil {
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, compMsg{from: m.From, body: m.Body})
			c.mu.Unlock()
		}
	}
}

// received returns the bodies received so far.
func (c *rawComponent) received() []compMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]compMsg(nil), c.msgs...)
}

// close ends the stream and waits until ejabberd closed its side. ejabberd
// (p1_xmpp's xmpp_stream_in) runs the component's terminate, which turns
// its slot into a placeholder, before it writes its stream end and closes
// the socket: once this returns, the slot is free.
func (c *rawComponent) close(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(c.conn, "</stream:stream>"); err != nil {
		t.Fatalf("component %s: close: %v", c.name, err)
	}
	select {
	case <-c.done:
	case <-time.After(balanceWait):
		t.Fatalf("component %s: ejabberd did not end the stream within %v", c.name, balanceWait)
	}
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		t.Fatalf("component %s: stream ended with %v", c.name, err)
	}
	_ = c.conn.Close()
}

// waitUntil polls cond every 10 ms until it holds, failing t after
// balanceWait.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(balanceWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, balanceWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// balanceUser is a Jabber user of the balancing tests.
type balanceUser struct {
	name string
	sess *xmpp.Session
	own  <-chan testenv.Message // messages to the user, for the markers
}

const (
	balanceUsers = 30     // Jabber users of each balancing test
	echoUser     = "echo" // the component's user every message is sent to
)

// balanceRig is a private ejabberd with balanceUsers logged-in users.
type balanceRig struct {
	t     *testing.T
	ctx   context.Context
	srv   *xmppserver.Ejabberd
	users []*balanceUser
}

// newBalanceRig starts ejabberd with balancing b for the component and
// logs the users in (in parallel).
func newBalanceRig(t *testing.T, b *xmppserver.ComponentBalancing) *balanceRig {
	t.Helper()
	_, err := xmppserver.EjabberdAvailable("")
	testenv.SkipUnavailable(t, err)
	users := make(map[string]string, balanceUsers)
	for i := range balanceUsers {
		users[fmt.Sprintf("bal%02d", i)] = fmt.Sprintf("pw-%02d", i)
	}
	began := time.Now()
	srv := testenv.Ejabberd(t, xmppserver.EjabberdOptions{Balancing: b, Users: users})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	r := &balanceRig{t: t, ctx: ctx, srv: srv, users: make([]*balanceUser, balanceUsers)}
	errs := make([]error, balanceUsers)
	var wg sync.WaitGroup
	for i := range balanceUsers {
		wg.Go(func() {
			name := fmt.Sprintf("bal%02d", i)
			sess, err := testenv.TryDialClient(ctx, srv, name, users[name], "")
			r.users[i], errs[i] = &balanceUser{name: name, sess: sess}, err
		})
	}
	wg.Wait()
	for i, u := range r.users {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		u.own = testenv.ServeMessages(t, u.sess)
	}
	t.Logf("ejabberd up, %d users logged in, in %v", balanceUsers, time.Since(began).Round(time.Millisecond))
	return r
}

// send sends body from u to the component's echo user.
func (r *balanceRig) send(u *balanceUser, body string) {
	r.t.Helper()
	to := jid.MustParse(echoUser + "@" + r.srv.ComponentName())
	if err := testenv.SendChat(r.ctx, u.sess, jid.JID{}, to, body); err != nil {
		r.t.Fatal(err)
	}
}

// sendAll sends perUser numbered messages "TAG-USER-K" from every user.
func (r *balanceRig) sendAll(tag string, perUser int) {
	r.t.Helper()
	for _, u := range r.users {
		for k := range perUser {
			r.send(u, fmt.Sprintf("%s-%s-%d", tag, u.name, k))
		}
	}
}

// where returns, for each body received by one of cs, the connections
// that received it (several would be a duplicate).
func where(cs []*rawComponent) map[string][]string {
	m := make(map[string][]string)
	for _, c := range cs {
		for _, msg := range c.received() {
			m[msg.body] = append(m[msg.body], c.name)
		}
	}
	return m
}

// TestEjabberdComponentBalancing proves, against the installed ejabberd,
// what ComponentBalancing's documentation says about domain_balancing with
// type bare_source and component_number 3 (the behaviour the transport's
// cluster mode is built on):
//
//   - every message of one user reaches the same connection, and each of
//     the three slot holders gets some users;
//   - a fourth connection made while three hold the slots receives nothing;
//   - when a slot holder closes, the messages of its users reach no
//     connection (not the fourth one either), and are not kept: a new
//     connection takes the slot and receives only what is sent after it.
func TestEjabberdComponentBalancing(t *testing.T) {
	const (
		slots   = 3
		nUsers  = balanceUsers
		perUser = 3
	)
	began := time.Now()
	r := newBalanceRig(t, &xmppserver.ComponentBalancing{Type: "bare_source", ComponentNumber: slots})
	ctx, srv, us, send := r.ctx, r.srv, r.users, r.send

	// The slot holders, one after the other (each takes the first free
	// slot), then one connection too many.
	var comps []*rawComponent
	for i := range slots {
		comps = append(comps, dialRawComponent(ctx, t, srv, fmt.Sprint("slot", i)))
	}
	extra := dialRawComponent(ctx, t, srv, "extra")
	all := func() []*rawComponent { return append(append([]*rawComponent(nil), comps...), extra) }

	// Phase 1: every user sends perUser messages.
	r.sendAll("p1", perUser)
	waitUntil(t, "every phase-1 message at a slot holder", func() bool { return len(where(all())) == nUsers*perUser })
	owner := make(map[string]int) // user -> index in comps
	perComp := make([]int, slots)
	got := where(all())
	for _, u := range us {
		owner[u.name] = -1
		for k := range perUser {
			at := got[fmt.Sprintf("p1-%s-%d", u.name, k)]
			if len(at) != 1 {
				t.Fatalf("%s's message %d reached %v, want exactly one connection", u.name, k, at)
			}
			i := indexOf(comps, at[0])
			if i < 0 {
				t.Fatalf("%s's message %d reached %s, which holds no slot", u.name, k, at[0])
			}
			if owner[u.name] >= 0 && owner[u.name] != i {
				t.Fatalf("%s's messages reached both %s and %s", u.name, comps[owner[u.name]].name, comps[i].name)
			}
			owner[u.name] = i
		}
		perComp[owner[u.name]]++
	}
	t.Logf("users per slot holder: %v", perComp)
	for i, n := range perComp {
		if n == 0 {
			t.Errorf("slot holder %s got no user", comps[i].name)
		}
	}
	if n := len(extra.received()); n != 0 {
		t.Errorf("the connection without a slot received %d messages", n)
	}

	// Phase 2: the holder of slot 1 closes; its users' messages go
	// nowhere. Each of them then sends a marker to their own full JID: it
	// comes back through the same ejabberd process that routed the
	// message before it, so the message has been routed by then.
	victim := comps[1]
	victim.close(t)
	var victims, others []*balanceUser
	for _, u := range us {
		if owner[u.name] == 1 {
			victims = append(victims, u)
		} else {
			others = append(others, u)
		}
	}
	for _, u := range us {
		send(u, "p2-"+u.name)
	}
	for _, u := range victims {
		self := u.sess.LocalAddr()
		if err := testenv.SendChat(ctx, u.sess, jid.JID{}, self, "marker-"+u.name); err != nil {
			t.Fatal(err)
		}
		if m := testenv.Receive(t, u.own, balanceWait); m.Body != "marker-"+u.name {
			t.Fatalf("%s: got %q, want its marker", u.name, m.Body)
		}
	}
	waitUntil(t, "the other users' phase-2 messages", func() bool {
		got := where(all())
		for _, u := range others {
			if len(got["p2-"+u.name]) == 0 {
				return false
			}
		}
		return true
	})

	// Phase 3: a new connection takes the free slot and gets what the
	// victims send from now on, and nothing of what was dropped.
	fresh := dialRawComponent(ctx, t, srv, "fresh")
	for _, u := range victims {
		send(u, "p3-"+u.name)
	}
	waitUntil(t, "the victims' phase-3 messages at the new connection", func() bool {
		got := where([]*rawComponent{fresh})
		for _, u := range victims {
			if len(got["p3-"+u.name]) == 0 {
				return false
			}
		}
		return true
	})

	// Final accounting, over every connection.
	got = where(append(all(), fresh))
	for _, u := range us {
		p2 := got["p2-"+u.name]
		switch {
		case owner[u.name] == 1 && len(p2) != 0:
			t.Errorf("%s's message to the closed slot reached %v, want none", u.name, p2)
		case owner[u.name] != 1 && (len(p2) != 1 || p2[0] != comps[owner[u.name]].name):
			t.Errorf("%s's phase-2 message reached %v, want %s", u.name, p2, comps[owner[u.name]].name)
		}
		if p3 := got["p3-"+u.name]; owner[u.name] == 1 && (len(p3) != 1 || p3[0] != fresh.name) {
			t.Errorf("%s's phase-3 message reached %v, want %s", u.name, p3, fresh.name)
		}
	}
	if n := len(extra.received()); n != 0 {
		t.Errorf("the connection without a slot received %d messages, want 0 (it never gets the freed slot)", n)
	}
	for _, c := range append(all(), fresh) {
		for _, m := range c.received() {
			if !strings.Contains(m.from, "/") {
				t.Errorf("%s: message from %q, want a full JID", c.name, m.from)
			}
		}
	}
	t.Logf("%d users, %d of them behind the closed slot; took %v", nUsers, len(victims), time.Since(began).Round(time.Millisecond))
}

// indexOf returns the index of the connection named name, or -1.
func indexOf(cs []*rawComponent, name string) int {
	for i, c := range cs {
		if c.name == name {
			return i
		}
	}
	return -1
}

// spread sends perUser messages from every user to the component, waits
// until conns received them all, and returns, per connection, the number
// of users it got messages of, and how many users' messages reached more
// than one connection.
func (r *balanceRig) spread(conns []*rawComponent, perUser int) (usersPer []int, split int) {
	r.t.Helper()
	r.sendAll("s", perUser)
	waitUntil(r.t, "every message at a connection", func() bool { return len(where(conns)) == len(r.users)*perUser })
	got := where(conns)
	usersPer = make([]int, len(conns))
	for _, u := range r.users {
		at := make(map[string]bool)
		for k := range perUser {
			b := got[fmt.Sprintf("s-%s-%d", u.name, k)]
			if len(b) != 1 {
				r.t.Fatalf("%s's message %d reached %v, want exactly one connection", u.name, k, b)
			}
			at[b[0]] = true
		}
		for i, c := range conns {
			if at[c.name] {
				usersPer[i]++
			}
		}
		if len(at) > 1 {
			split++
		}
	}
	return usersPer, split
}

// With a domain_balancing entry for the component but no
// component_number, ejabberd 23.01 cannot take a component connection at
// all: ejabberd_router:get_component_number/1 reads component_number with
// maps:get/2 and no default, so every handshake crashes the connection's
// process ({badkey,component_number}) and the connection is closed.
func TestEjabberdBalancingWithoutComponentNumber(t *testing.T) {
	r := newBalanceRig(t, &xmppserver.ComponentBalancing{Type: "bare_source"})
	from := logLen(r.srv.LogPath())
	c, err := tryDialRawComponent(r.ctx, t, r.srv, "conn")
	if err == nil {
		c.close(t)
		t.Fatal("the component handshake succeeded; ejabberd 23.01 crashes it without component_number")
	}
	t.Logf("handshake: %v", err)
	waitUntil(t, "ejabberd's crash report", func() bool {
		return strings.Contains(logFrom(r.srv.LogPath(), from), "{badkey,component_number}")
	})
}

// logLen is the size of the file at path (0 if it cannot be read).
func logLen(path string) int {
	data, _ := os.ReadFile(path)
	return len(data)
}

// logFrom is the file at path from byte from on ("" if it cannot be read).
func logFrom(path string, from int) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) < from {
		return ""
	}
	return string(data[from:])
}

// Without domain_balancing, ejabberd picks a connection at random for each
// stanza: one user's messages reach several connections. (With 30 users
// and 5 messages each, all of every user's messages meeting on one of
// three connections at random has a probability of (1/81)^30.)
func TestEjabberdNoBalancing(t *testing.T) {
	r := newBalanceRig(t, nil)
	var conns []*rawComponent
	for i := range 3 {
		conns = append(conns, dialRawComponent(r.ctx, t, r.srv, fmt.Sprint("conn", i)))
	}
	usersPer, split := r.spread(conns, 5)
	t.Logf("users per connection: %v; users on several connections: %d of %d", usersPer, split, len(r.users))
	if split == 0 {
		t.Errorf("every user's messages reached one connection: want them spread per stanza")
	}
	for i, n := range usersPer {
		if n == 0 {
			t.Errorf("connection %s got nothing", conns[i].name)
		}
	}
}
