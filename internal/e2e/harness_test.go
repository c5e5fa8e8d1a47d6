package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"imip-transport/gateway"
	"imip-transport/imipside"
	"imip-transport/imipside/imipserver/imiptest"
	"imip-transport/imipside/wire"
	"imip-transport/internal/app"
	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
	"imip-transport/xmppside"
)

var (
	prosodyPriv   = testenv.SharedProsody(xmppserver.ProsodyOptions{Privilege: true})
	prosodyNoPriv = testenv.SharedProsody(xmppserver.ProsodyOptions{})
	ejabberd      = testenv.SharedEjabberd(xmppserver.EjabberdOptions{Privilege: true})
)

func TestMain(m *testing.M) { testenv.Main(m, prosodyPriv, prosodyNoPriv, ejabberd) }

// transport is one running transport and the IMIP server it talks to.
type transport struct {
	t      *testing.T
	srv    xmppserver.Server
	imip   *imiptest.Server
	domain jid.JID
	store  string
	comp   atomic.Pointer[xmppside.Component]
	gw     atomic.Pointer[gateway.Gateway]
	cancel context.CancelFunc
	done   chan error
	// tweak, when set, adjusts the options before each start.
	tweak func(*app.Options)
}

// startTransport starts the IMIP server with accounts and a transport
// connected to srv, and waits until its component is connected.
func startTransport(t *testing.T, srv xmppserver.Server, accounts ...imiptest.Account) *transport {
	t.Helper()
	return startTransportWith(t, srv, nil, accounts...)
}

// startTransportWith is startTransport with adjusted options.
func startTransportWith(t *testing.T, srv xmppserver.Server, tweak func(*app.Options), accounts ...imiptest.Account) *transport {
	t.Helper()
	imip := imiptest.Start(t, imiptest.Options{Accounts: accounts})
	tr := &transport{t: t, srv: srv, imip: imip, store: filepath.Join(t.TempDir(), "transport.db"), tweak: tweak}
	tr.domain = jid.MustParse(srv.ComponentName())
	tr.start()
	t.Cleanup(tr.stop)
	return tr
}

func (tr *transport) start() {
	t := tr.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tr.cancel = cancel
	tr.done = make(chan error, 1)
	level := slog.LevelInfo
	if os.Getenv("E2E_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	opts := app.Options{
		Domain:       tr.domain,
		XMPPServer:   tr.srv.ComponentAddr(),
		Secret:       tr.srv.Secret(),
		MinBackoff:   100 * time.Millisecond,
		MaxBackoff:   time.Second,
		IMIPServer:   tr.imip.Addr(),
		LoginTimeout: 5 * time.Second,
		OpTimeout:    5 * time.Second,
		RetryMin:     200 * time.Millisecond,
		RetryMax:     2 * time.Second,
		StorePath:    tr.store,
		KeyFile:      tr.store + ".key",
		ProbeTimeout: 2 * time.Second,
		Version:      "e2e",
		Logger:       log,
		Ready: func(g *gateway.Gateway, c *xmppside.Component) {
			tr.gw.Store(g)
			tr.comp.Store(c)
		},
	}
	if os.Getenv("E2E_TRACE") != "" {
		opts.Trace = testWriter{t}
	}
	if tr.tweak != nil {
		tr.tweak(&opts)
	}
	go func() { tr.done <- app.Run(ctx, opts) }()
	tr.waitConnected()
}

// waitConnected waits until the component has completed a handshake.
func (tr *transport) waitConnected() {
	tr.t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		if c := tr.comp.Load(); c != nil && c.Connected() {
			return
		}
		select {
		case err := <-tr.done:
			tr.t.Fatalf("transport exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	tr.t.Fatalf("component not connected to %s within %v", tr.srv.Kind(), waitFor)
}

// stop shuts the transport down and waits for it.
func (tr *transport) stop() {
	if tr.cancel == nil {
		return
	}
	tr.cancel()
	tr.cancel = nil
	select {
	case err := <-tr.done:
		if err != nil {
			tr.t.Errorf("transport: %v", err)
		}
	case <-time.After(app.ShutdownGrace + time.Second):
		tr.t.Errorf("transport did not stop within %v", app.ShutdownGrace+time.Second)
	}
}

// restart stops the transport and starts it again on the same store.
func (tr *transport) restart() {
	tr.stop()
	tr.start()
}

// contact returns number@gateway.
func (tr *transport) contact(n wire.Number) string { return string(n) + "@" + tr.domain.String() }

var userSeq atomic.Int64

// newUser creates a Jabber account on srv, logs it in and sends initial
// presence, as clients do.
func newUser(t *testing.T, srv xmppserver.Server, base string) *client {
	t.Helper()
	c := newQuietUser(t, srv, base)
	c.rosterItems() // an interested resource: the server pushes roster changes to it
	c.send(`<presence/>`)
	c.online = true
	return c
}

// newQuietUser is newUser without initial presence.
func newQuietUser(t *testing.T, srv xmppserver.Server, base string) *client {
	t.Helper()
	name := fmt.Sprintf("%s%d", base, userSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := srv.AddUser(ctx, name, "pw-"+name); err != nil {
		t.Fatalf("adding %s: %v", name, err)
	}
	return login(t, srv, name, "pw-"+name)
}

// register registers c with the gateway as number/password and returns the
// IQ answer.
func (c *client) register(tr *transport, number, password string) got {
	c.t.Helper()
	return c.iq("set", tr.domain.String(), fmt.Sprintf(
		`<query xmlns="jabber:iq:register"><username>%s</username><password>%s</password></query>`, number, password))
}

// mustRegister registers and approves the gateway's subscription request.
func (c *client) mustRegister(tr *transport, number, password string) {
	c.t.Helper()
	if r := c.register(tr, number, password); r.Type != "result" {
		c.t.Fatalf("register %s: %s", number, r.Raw)
	}
	c.expect("subscribe from the gateway", isPresence(tr.domain.String(), "subscribe"))
	c.send(`<presence type="subscribed" to=%q/>`, tr.domain.String())
	c.send(`<presence type="subscribe" to=%q/>`, tr.domain.String())
	if c.online {
		// The approval sends the gateway this resource's presence; the
		// gateway answers the new resource with its own presence, to the
		// full JID. From then on the gateway knows the resource.
		c.expect("the gateway's presence to this resource", func(g got) bool {
			return isPresence(tr.domain.String(), "")(g) && g.To == c.jid.String()
		})
	}
}

// imipUser is an IMIP client on the other side of the gateway.
type imipUser struct {
	t      *testing.T
	number wire.Number
	sess   *imipside.Session
	events chan imipside.Event
}

func dialIMIP(t *testing.T, tr *transport, n wire.Number, password string) *imipUser {
	t.Helper()
	u := &imipUser{t: t, number: n, events: make(chan imipside.Event, 256)}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := imipside.Dial(ctx, imipside.Config{Addr: tr.imip.Addr(), Number: n, Password: password, AutoConfirm: true,
		Handler: imipside.HandlerFunc(func(ev imipside.Event) {
			select {
			case u.events <- ev:
			default:
				t.Errorf("imip user %s: event dropped: %#v", n, ev)
			}
		})})
	if err != nil {
		t.Fatalf("imip login %s: %v", n, err)
	}
	u.sess = s
	t.Cleanup(func() { _ = s.Close() })
	return u
}

// expect waits for an IMIP event matching pred.
func (u *imipUser) expect(what string, pred func(imipside.Event) bool) imipside.Event {
	u.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case ev := <-u.events:
			if pred(ev) {
				return ev
			}
		case <-deadline:
			u.t.Fatalf("imip user %s: no %s within %v", u.number, what, waitFor)
			return nil
		}
	}
}

func (u *imipUser) expectStat(from wire.Number, st wire.Status, text string) {
	u.t.Helper()
	u.expect(fmt.Sprintf("STAT %s %q from %s", st, text, from), func(ev imipside.Event) bool {
		s, ok := ev.(imipside.StatEvent)
		return ok && s.From == from && s.Status == st && s.Text == text
	})
}

func (u *imipUser) expectMessage(from wire.Number, text string) imipside.MessageEvent {
	u.t.Helper()
	return u.expect(fmt.Sprintf("MESG %q from %s", text, from), func(ev imipside.Event) bool {
		m, ok := ev.(imipside.MessageEvent)
		return ok && m.From == from && m.Text == text
	}).(imipside.MessageEvent)
}

func (u *imipUser) send(to wire.Number, text string) {
	u.t.Helper()
	if _, err := u.sess.SendMessage(to, text); err != nil {
		u.t.Fatalf("imip user %s: MESG: %v", u.number, err)
	}
}

func (u *imipUser) setStatus(st wire.Status, text string) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := u.sess.SetStatus(ctx, st, text); err != nil {
		u.t.Fatalf("imip user %s: STAT: %v", u.number, err)
	}
}

// testWriter sends log lines to t.Log, and drops them after the test.
type testWriter struct{ t *testing.T }

var twMu sync.Mutex

func (w testWriter) Write(p []byte) (int, error) {
	twMu.Lock()
	defer twMu.Unlock()
	defer func() { _ = recover() }() // t.Log after the test ended panics
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
