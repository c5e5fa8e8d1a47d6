package main

// Jabber users through a real XMPP server: each user is a client session
// (c2s, STARTTLS, SASL) on the server, the transport is the server's
// external component. The server is either a private Prosody the tool
// starts (-xmpp prosody) or one the admin runs (-xmpp external).

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"imip-transport/internal/xmppserver"
)

// jabberSide is the Jabber end of a run: the fake server of component mode,
// or client sessions on a real server.
type jabberSide interface {
	// register registers user i with the gateway (XEP-0077) and returns
	// the answer's type ("result" or "error") and error condition.
	register(ctx context.Context, i int) (typ, cond string, err error)
	// login sends user i's available presence.
	login(ctx context.Context, i int) error
	// waitLogins waits until n users got the gateway's presence.
	waitLogins(ctx context.Context, n int, within time.Duration, bar *progressbar.ProgressBar) error
	// sendUp sends user i's message with body to its IMIP peer.
	sendUp(i, seq int, body string)
	// setWays starts the chat's counting: up counts the messages the
	// gateway refused, down receives the messages from IMIP.
	setWays(up, down *way)
	close()
}

// Component mode's fake server as a jabberSide.
func (s *server) login(_ context.Context, i int) error {
	s.send(fmt.Sprintf(`<presence from="%s/r" to=%q/>`, userJID(i), domain))
	return nil
}

func (s *server) sendUp(i, seq int, body string) {
	s.send(fmt.Sprintf(`<message type="chat" id="m%d" from="%s/r" to="%s@%s"><body>%s</body></message>`,
		seq, userJID(i), peerNum(i), domain, body))
}

func (s *server) setWays(up, down *way) {
	s.up2.Store(up)
	s.down.Store(down)
}

// XMPPServer says where the Jabber users' server is, for -xmpp external.
type XMPPServer struct {
	C2S        string // client listener, host:port (STARTTLS required)
	Domain     string // the users' domain
	Component  string // the component listener the transport connects to
	Gateway    string // the component's name: the gateway's JID
	Secret     string // the component secret
	UserFormat string // the users' localparts, with %d for the index
	Password   string // their password, with %d for the index
	// InsecureTLS skips the verification of the server's certificate
	// (a test server's self-signed one).
	InsecureTLS bool
}

func (x XMPPServer) user(i int) string     { return fmt.Sprintf(x.UserFormat, i) }
func (x XMPPServer) password(i int) string { return fmt.Sprintf(x.Password, i) }

// clients are the Jabber users as client sessions on a real server.
type clients struct {
	x        XMPPServer
	gateway  jid.JID
	sess     []*xmpp.Session
	jids     []jid.JID
	loggedIn []atomic.Bool
	logins   atomic.Int64
	up, down atomic.Pointer[way]
	regs     sync.Map // IQ id -> chan [2]string (type, condition)
	wg       sync.WaitGroup
	mu       sync.Mutex
}

func newClients(x XMPPServer, n int) (*clients, error) {
	gw, err := jid.Parse(x.Gateway)
	if err != nil {
		return nil, fmt.Errorf("gateway JID %q: %w", x.Gateway, err)
	}
	return &clients{x: x, gateway: gw, sess: make([]*xmpp.Session, n), jids: make([]jid.JID, n), loggedIn: make([]atomic.Bool, n)}, nil
}

// dial logs user i in: TCP, STARTTLS, SASL (SCRAM-SHA-256 or PLAIN),
// resource "r", and serves its stanzas.
func (c *clients) dial(ctx context.Context, i int) error {
	origin, err := jid.New(c.x.user(i), c.x.Domain, "r")
	if err != nil {
		return fmt.Errorf("user %d: %w", i, err)
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", c.x.C2S)
	if err != nil {
		return fmt.Errorf("user %d: %w", i, err)
	}
	tlsCfg := &tls.Config{ServerName: c.x.Domain, MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.x.InsecureTLS} // #nosec G402 -- only with -xmpp-insecure-tls
	sess, err := xmpp.NewClientSession(dctx, origin, noWriteDeadline{raw},
		xmpp.StartTLS(tlsCfg), xmpp.SASL("", c.x.password(i), sasl.ScramSha256, sasl.Plain), xmpp.BindResource())
	if err != nil {
		_ = raw.Close()
		return fmt.Errorf("user %d (%s): %w", i, origin, err)
	}
	c.mu.Lock()
	c.sess[i], c.jids[i] = sess, sess.LocalAddr()
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		_ = sess.Serve(xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			return c.handle(i, t, start)
		}))
	}()
	return nil
}

// handle takes one stanza for user i.
func (c *clients) handle(i int, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	var st stanza
	// t begins after start.
	if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), t)).Decode(&st); err != nil {
		return err
	}
	from, _ := jid.Parse(st.From)
	switch st.XMLName.Local {
	case "presence":
		switch {
		case st.Type == "subscribe": // the gateway and the IMIP contacts ask: accepted
			c.sendRaw(i, fmt.Sprintf(`<presence type="subscribed" to=%q/>`, from.Bare().String()))
		case st.Type == "" && from.Equal(c.gateway) && !c.loggedIn[i].Swap(true):
			c.logins.Add(1)
		}
	case "message":
		up, down := c.up.Load(), c.down.Load()
		if down == nil {
			return nil
		}
		if st.Type == "error" {
			up.refused.Add(1)
		} else if st.Body != "" {
			down.arrived(st.Body)
		}
	case "iq":
		switch st.Type {
		case "get", "set": // pings, disco: an empty answer
			c.sendRaw(i, fmt.Sprintf(`<iq type="result" id=%q to=%q/>`, st.ID, st.From))
		case "result", "error":
			if ch, ok := c.regs.LoadAndDelete(st.ID); ok {
				cond := ""
				if len(st.Error.Conds) > 0 {
					cond = st.Error.Conds[0].XMLName.Local
				}
				ch.(chan [2]string) <- [2]string{st.Type, cond}
			}
		}
	}
	return nil
}

func (c *clients) sendRaw(i int, raw string) {
	c.mu.Lock()
	s := c.sess[i]
	c.mu.Unlock()
	if s == nil {
		return
	}
	d := xml.NewDecoder(strings.NewReader(raw))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = s.Send(ctx, d)
}

func (c *clients) register(ctx context.Context, i int) (string, string, error) {
	id := fmt.Sprintf("reg%d-%d", i, time.Now().UnixNano())
	ch := make(chan [2]string, 1)
	c.regs.Store(id, ch)
	defer c.regs.Delete(id)
	c.sendRaw(i, fmt.Sprintf(`<iq type="set" id=%q to=%q><query xmlns="jabber:iq:register"><username>%s</username><password>pw-%d</password></query></iq>`,
		id, c.gateway.String(), userNum(i), i))
	select {
	case a := <-ch:
		return a[0], a[1], nil
	case <-time.After(2 * time.Minute):
		return "", "", fmt.Errorf("no answer to user %d's registration", i)
	case <-ctx.Done():
		return "", "", ctx.Err()
	}
}

func (c *clients) login(_ context.Context, i int) error {
	c.sendRaw(i, `<presence/>`)                                        // to the roster, the gateway among them once subscribed
	c.sendRaw(i, fmt.Sprintf(`<presence to=%q/>`, c.gateway.String())) // and to the gateway itself
	return nil
}

func (c *clients) waitLogins(ctx context.Context, n int, within time.Duration, bar *progressbar.ProgressBar) error {
	return waitCount(ctx, &c.logins, n, within, bar, "users logged in")
}

func (c *clients) sendUp(i, seq int, body string) {
	c.sendRaw(i, fmt.Sprintf(`<message type="chat" id="m%d" to="%s@%s"><body>%s</body></message>`, seq, peerNum(i), c.gateway, body))
}

func (c *clients) setWays(up, down *way) {
	c.up.Store(up)
	c.down.Store(down)
}

func (c *clients) close() {
	c.mu.Lock()
	sess := c.sess
	c.sess = make([]*xmpp.Session, len(sess))
	c.mu.Unlock()
	for _, s := range sess {
		if s != nil {
			_ = s.Close()
			_ = s.Conn().Close()
		}
	}
	c.wg.Wait()
}

// waitCount waits until *got reaches n, moving bar.
func waitCount(ctx context.Context, got *atomic.Int64, n int, within time.Duration, bar *progressbar.ProgressBar, what string) error {
	deadline := time.Now().Add(within)
	last := int64(0)
	for {
		g := got.Load()
		_ = bar.Add(int(g - last))
		last = g
		if g >= int64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d %s within %v", g, n, what, within)
		}
		if err := settle(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// noWriteDeadline ignores write deadlines: mellium sets one in the past when
// a Send's context ends after a successful Send, which fails a later write
// at random; every wait of the tool is bounded elsewhere.
type noWriteDeadline struct{ net.Conn }

func (c noWriteDeadline) SetDeadline(t time.Time) error      { return c.Conn.SetReadDeadline(t) }
func (c noWriteDeadline) SetWriteDeadline(t time.Time) error { return nil }

// errNoServer is returned when -xmpp external lacks an address.
var errNoServer = errors.New("-xmpp external needs -c2s, -xmpp-domain, -component, -gateway and -component-secret")

// The accounts of the private Prosody (-xmpp prosody).
const (
	prosodyUser     = "load%d"
	prosodyPassword = "loadpw%d"
)

// startProsody starts a private Prosody on loopback with n user accounts
// and XEP-0356 privileges for the component.
func startProsody(ctx context.Context, n int) (*xmppserver.Prosody, error) {
	users := make(map[string]string, n)
	for i := range n {
		users[fmt.Sprintf(prosodyUser, i)] = fmt.Sprintf(prosodyPassword, i)
	}
	p, err := xmppserver.StartProsody(ctx, xmppserver.ProsodyOptions{Privilege: true, Users: users, LogLevel: "warn",
		// Every user is online and chats: no limits meant for the public.
		ExtraConfig: "limits = { c2s = { rate = \"100mb/s\" } }\nc2s_stanza_size_limit = 1024*1024\n"})
	if err != nil {
		return nil, fmt.Errorf("prosody: %w", err)
	}
	return p, nil
}
