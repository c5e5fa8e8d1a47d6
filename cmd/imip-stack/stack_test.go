package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/imipserver"
	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
)

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startStack runs the whole stack on free ports in dir until the returned
// stop function is called; it returns once the banner is printed.
func startStack(t *testing.T, dir string, o options) (out *syncBuffer, stop func() error) {
	t.Helper()
	out, logs := &syncBuffer{}, &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, out, log) }()
	stop = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatalf("run did not return within 30 s of cancel; logs:\n%s", logs.String())
			return nil
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "imip-stack is running") {
		select {
		case err := <-done:
			t.Fatalf("run returned %v before the banner; logs:\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = stop()
			t.Fatalf("no banner after 30 s; logs:\n%s", logs.String())
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stack logs:\n%s", logs.String())
		}
	})
	return out, stop
}

func distinctFreePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// TestStackEndToEnd runs the stack as a user would: a Jabber client logs
// in, finds the gateway, registers with a demo IMIP number and writes to
// the other demo number, which is logged in on IMIP. Then the stack stops
// and its Prosody is gone; a second start reuses the secret.
func TestStackEndToEnd(t *testing.T) {
	testenv.SkipUnavailable(t, xmppserver.ProsodyAvailable(""))
	ports := distinctFreePorts(t, 3)
	dir := filepath.Join(t.TempDir(), ".stack")
	o := options{Dir: dir, C2SPort: ports[0], CompPort: ports[1], IMIPPort: ports[2],
		Accounts: "../imipd/accounts.example.toml", Prosody: "prosody", LogLevel: slog.LevelDebug}
	accts := readAccounts(t, o.Accounts)
	a, b := accts[0], accts[1]

	out, stop := startStack(t, dir, o)
	for _, want := range []string{"port " + strconv.Itoa(o.C2SPort), "/dev/tcp/127.0.0.1/" + strconv.Itoa(o.IMIPPort)} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q", want)
		}
	}
	pid := stalePID(filepath.Join(dir, "prosody", "prosody.pid"))
	if pid == 0 {
		t.Fatal("no running Prosody PID in the state directory")
	}
	secret, err := os.ReadFile(filepath.Join(dir, secretFile))
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The other demo number is logged in on IMIP.
	got := make(chan imipside.MessageEvent, 8)
	bob, err := imipside.Dial(ctx, imipside.Config{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.IMIPPort)), Number: b.Number, Password: b.Password, AutoConfirm: true,
		Handler: imipside.HandlerFunc(func(ev imipside.Event) {
			if m, ok := ev.(imipside.MessageEvent); ok {
				got <- m
			}
		}),
	})
	if err != nil {
		t.Fatalf("IMIP login as %s: %v", b.Number, err)
	}
	defer bob.Close()

	// alice@localhost on Jabber.
	sess := dialAlice(ctx, t, o.C2SPort)
	gw := jid.MustParse(component)
	gwOnline := make(chan struct{}, 16)
	served := make(chan error, 1)
	go func() { served <- sess.Serve(aliceHandler(t, sess, gw, gwOnline)) }()
	defer func() {
		_ = sess.Close()
		_ = sess.Conn().Close()
		<-served
	}()
	if err := sess.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	info, err := disco.GetInfo(ctx, "", gw, sess)
	if err != nil {
		t.Fatalf("disco#info %s: %v", gw, err)
	}
	if len(info.Identity) == 0 || info.Identity[0].Category != "gateway" {
		t.Errorf("disco#info %s identities = %+v, want a gateway", gw, info.Identity)
	}
	register(ctx, t, sess, gw, string(a.Number), a.Password)
	// Like a Jabber client, alice approved the gateway's subscription
	// request; the gateway then sees her presence and logs her in.
	select {
	case <-gwOnline:
	case <-ctx.Done():
		t.Fatal("the gateway never came online for alice")
	}

	to := jid.MustParse(string(b.Number) + "@" + component)
	text := "hello from the imip-stack test"
	body := xmlstream.Wrap(xmlstream.Token(xml.CharData(text)), xml.StartElement{Name: xml.Name{Local: "body"}})
	if err := sess.Send(ctx, stanza.Message{To: to, Type: stanza.ChatMessage}.Wrap(body)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.From != a.Number || m.Text != text {
			t.Errorf("IMIP message = from %s %q, want from %s %q", m.From, m.Text, a.Number, text)
		}
	case <-ctx.Done():
		t.Fatalf("no IMIP message for %s", b.Number)
	}

	if err := stop(); err != nil {
		t.Errorf("run after cancel = %v, want nil", err)
	}
	if stalePID(filepath.Join(dir, "prosody", "prosody.pid")) == pid {
		t.Errorf("Prosody PID %d still runs after the stack stopped", pid)
	}

	// A second start reuses the state.
	_, stop = startStack(t, dir, o)
	again, err := os.ReadFile(filepath.Join(dir, secretFile))
	if err != nil || !bytes.Equal(again, secret) {
		t.Errorf("secret after restart = %q, %v; want the first one", again, err)
	}
	if err := stop(); err != nil {
		t.Errorf("second run after cancel = %v, want nil", err)
	}
}

func readAccounts(t *testing.T, path string) []imipserver.Account {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	accts, err := imipserver.DecodeAccounts(f)
	if err != nil || len(accts) < 2 {
		t.Fatalf("accounts %s: %v (%d accounts)", path, err, len(accts))
	}
	return accts
}

func dialAlice(ctx context.Context, t *testing.T, port int) *xmpp.Session {
	t.Helper()
	u := demoUsers[0]
	origin := jid.MustParse(u.Name + "@" + domain)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := xmpp.NewClientSession(ctx, origin, conn,
		xmpp.StartTLS(&tls.Config{ServerName: domain, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}), // #nosec G402 -- the stack's self-signed certificate.
		xmpp.SASL("", u.Password, sasl.ScramSha256, sasl.Plain),
		xmpp.BindResource(),
	)
	if err != nil {
		conn.Close()
		t.Fatalf("Jabber login as %s: %v", origin, err)
	}
	return sess
}

// register sends a XEP-0077 registration with the legacy fields and fails
// t unless the gateway answers with a result.
func register(ctx context.Context, t *testing.T, sess *xmpp.Session, gw jid.JID, user, password string) {
	t.Helper()
	field := func(name, v string) xml.TokenReader {
		return xmlstream.Wrap(xmlstream.Token(xml.CharData(v)), xml.StartElement{Name: xml.Name{Local: name}})
	}
	q := xmlstream.Wrap(xmlstream.MultiReader(field("username", user), field("password", password)),
		xml.StartElement{Name: xml.Name{Space: "jabber:iq:register", Local: "query"}})
	resp, err := sess.SendIQ(ctx, stanza.IQ{Type: stanza.SetIQ, To: gw}.Wrap(q))
	if err != nil {
		t.Fatalf("register with %s: %v", gw, err)
	}
	defer resp.Close()
	var reply struct {
		Type  string `xml:"type,attr"`
		Error struct {
			Inner []byte `xml:",innerxml"`
		} `xml:"error"`
	}
	if err := xml.NewTokenDecoder(resp).Decode(&reply); err != nil {
		t.Fatalf("register reply: %v", err)
	}
	if reply.Type != "result" {
		t.Fatalf("register as %s = %s %s, want result", user, reply.Type, reply.Error.Inner)
	}
}

// aliceHandler approves the gateway's subscription request, as a Jabber
// client's user would, and signals every available presence of the gateway.
// Every stanza error is logged.
func aliceHandler(t *testing.T, sess *xmpp.Session, gw jid.JID, gwOnline chan<- struct{}) xmpp.Handler {
	return xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		var st struct {
			From  string `xml:"from,attr"`
			Type  string `xml:"type,attr"`
			Error struct {
				Inner string `xml:",innerxml"`
			} `xml:"error"`
		}
		if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(&st); err != nil {
			return err
		}
		if st.Type == "error" {
			t.Logf("alice got a %s error from %s: %s", start.Name.Local, st.From, st.Error.Inner)
		}
		if start.Name.Local != "presence" || st.From != gw.String() {
			return nil
		}
		switch st.Type {
		case "subscribe":
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return sess.Send(ctx, stanza.Presence{To: gw, Type: stanza.SubscribedPresence}.Wrap(nil))
		case "":
			select {
			case gwOnline <- struct{}{}:
			default:
			}
		}
		return nil
	})
}
