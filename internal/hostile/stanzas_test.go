package hostile

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"mellium.im/xmpp/jid"

	"imip-transport/gateway"
	"imip-transport/imipside"
	"imip-transport/imipside/imipserver/imiptest"
	"imip-transport/imipside/wire"
	"imip-transport/internal/app"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	domain  = "imip.localhost"
	secret  = "hostile-secret"
	waitFor = 15 * time.Second
)

// waitCond waits until cond holds, failing t after waitFor.
func waitCond(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %v", what, waitFor)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	acctAlice = imiptest.Account{Number: "1001001", Password: "alice-pw", Nick: "alice"}
	acctBob   = imiptest.Account{Number: "2002002", Password: "bob-pw", Nick: "bob"}
	acctEve   = imiptest.Account{Number: "3003003", Password: "eve-pw", Nick: "eve"}
	// carol is on IMIP only: strangers guess her password, eve asks to
	// add her.
	acctCarol = imiptest.Account{Number: "4004004", Password: "carol-pw", Nick: "carol"}
)

// ---------------------------------------------------------------- fake XMPP server

// elem is one top-level element the transport sent.
type elem struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   string     `xml:",innerxml"`
}

func (e elem) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// errCond returns the condition of an error stanza ("" if none).
func (e elem) errCond() string {
	d := xml.NewDecoder(strings.NewReader(e.Inner))
	inError := false
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local == "error" {
				inError = true
				continue
			}
			if inError && se.Name.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && se.Name.Local != "text" {
				return se.Name.Local
			}
		}
	}
}

func (e elem) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "<%s", e.XMLName.Local)
	for _, a := range e.Attrs {
		fmt.Fprintf(&b, " %s=%q", a.Name.Local, a.Value)
	}
	inner := e.Inner
	if len(inner) > 300 {
		inner = inner[:300] + "…"
	}
	fmt.Fprintf(&b, ">%s", inner)
	return b.String()
}

// server is the fake XMPP server: it accepts the transport's component
// connection, answers the IQs the transport asks of users and of itself,
// and records every other stanza.
type server struct {
	t          *testing.T
	ln         net.Listener
	handshakes atomic.Int32

	mu      sync.Mutex
	conn    net.Conn
	got     []elem
	notify  chan struct{}
	online  map[string]string // bare JID -> full JID of users online (answer probes)
	wg      sync.WaitGroup
	sizeMax int // the largest stanza received, in bytes
}

func startServer(t *testing.T) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, ln: ln, notify: make(chan struct{}, 1), online: make(map[string]string)}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go s.serve(c)
	}
}

// countingReader counts the bytes of the stanza being read.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (s *server) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	cr := &countingReader{r: bufio.NewReader(c)}
	d := xml.NewDecoder(cr)
	// The component's stream header.
	for {
		tok, err := d.Token()
		if err != nil {
			return
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			break
		}
	}
	const id = "hostile-stream-1"
	if _, err := fmt.Fprintf(c, `<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='%s' id='%s'>`, domain, id); err != nil {
		return
	}
	var hs struct {
		Text string `xml:",chardata"`
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "handshake" {
			if err := d.DecodeElement(&hs, &se); err != nil {
				return
			}
			break
		}
	}
	sum := sha1.Sum([]byte(id + secret))
	if hs.Text != hex.EncodeToString(sum[:]) {
		fmt.Fprint(c, `<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
		return
	}
	if _, err := io.WriteString(c, `<handshake/>`); err != nil {
		return
	}
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	s.handshakes.Add(1)
	for {
		before := cr.n.Load()
		tok, err := d.Token()
		if err != nil {
			return
		}
		if ee, ok := tok.(xml.EndElement); ok && ee.Name.Local == "stream" {
			_, _ = io.WriteString(c, `</stream:stream>`) // the component closed its stream
			return
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		var e elem
		if err := d.DecodeElement(&e, &se); err != nil {
			return
		}
		size := int(cr.n.Load() - before)
		s.handle(e, size)
	}
}

// handle answers what a server answers for its users and records the rest.
func (s *server) handle(e elem, size int) {
	s.mu.Lock()
	if size > s.sizeMax {
		s.sizeMax = size
	}
	s.mu.Unlock()
	to, from, typ, id := e.attr("to"), e.attr("from"), e.attr("type"), e.attr("id")
	switch {
	case e.XMLName.Local == "iq" && (typ == "get" || typ == "set"):
		// Pings (the transport's delivery barriers), disco and the rest:
		// a plain result, as a client or server that supports them does.
		s.send(`<iq type="result" id=%q from=%q to=%q/>`, id, to, from)
		return
	case e.XMLName.Local == "presence" && typ == "probe":
		s.mu.Lock()
		full, ok := s.online[strings.SplitN(to, "/", 2)[0]]
		s.mu.Unlock()
		if ok {
			s.send(`<presence from=%q to=%q/>`, full, from)
		}
	}
	s.mu.Lock()
	s.got = append(s.got, e)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// send writes a stanza (a format string) to the transport.
func (s *server) send(format string, args ...any) {
	s.sendRaw(fmt.Sprintf(format, args...))
}

func (s *server) sendRaw(raw string) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		s.t.Errorf("send before the component connected")
		return
	}
	if _, err := io.WriteString(c, raw); err != nil {
		s.t.Errorf("write to the transport: %v", err)
	}
}

// mark returns the number of stanzas received so far.
func (s *server) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// since returns the stanzas received after mark matching pred.
func (s *server) since(mark int, pred func(elem) bool) []elem {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []elem
	for _, e := range s.got[mark:] {
		if pred(e) {
			out = append(out, e)
		}
	}
	return out
}

// wait waits for a stanza after mark matching pred.
func (s *server) wait(t *testing.T, mark int, what string, pred func(elem) bool) elem {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		if got := s.since(mark, pred); len(got) > 0 {
			return got[0]
		}
		select {
		case <-s.notify:
		case <-deadline:
			t.Fatalf("no %s within %v", what, waitFor)
			return elem{}
		}
	}
}

// ---------------------------------------------------------------- the rig

type rig struct {
	t    *testing.T
	srv  *server
	imip *imiptest.Server
	bob  *imipside.Session
	seq  int
	// handshakes the link is expected to have had (1 but for the
	// ill-formed XML test, which breaks the stream on purpose).
	handshakes int32

	// bob's log: every message that reached him, in order; nothing is
	// ever taken out, so a check sees what arrived before its barrier.
	bobMu     sync.Mutex
	bobMsgs   []imipside.MessageEvent
	bobNotify chan struct{}
	bobMark   int // len(bobMsgs) when the current case was sent
}

func newRig(t *testing.T) *rig {
	t.Helper()
	imip := imiptest.Start(t, imiptest.Options{Accounts: []imiptest.Account{acctAlice, acctBob, acctEve, acctCarol}})
	ctx := context.Background()
	st := imip.Store()
	for _, p := range [][2]wire.Number{{acctAlice.Number, acctBob.Number}, {acctBob.Number, acctAlice.Number}} {
		if err := st.AddContact(ctx, p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	srv := startServer(t)
	dir := t.TempDir()
	level := slog.LevelWarn
	if os.Getenv("HOSTILE_DEBUG") != "" {
		level = slog.LevelDebug
	}
	opts := app.Options{
		Domain: jid.MustParse(domain), XMPPServer: srv.ln.Addr().String(), Secret: secret,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
		IMIPServer: imip.Addr(), LoginTimeout: 5 * time.Second, OpTimeout: 5 * time.Second,
		RetryMin: 200 * time.Millisecond, RetryMax: 2 * time.Second,
		StorePath: filepath.Join(dir, "t.db"), KeyFile: filepath.Join(dir, "t.key"),
		ProbeTimeout: 2 * time.Second, Version: "hostile",
		// alice chats after every case: far above a person's pace.
		Limits: gateway.Limits{MessageRate: 1000, MessageBurst: 1000},
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})),
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("transport: %v", err)
			}
		case <-time.After(app.ShutdownGrace + time.Second):
			t.Errorf("transport did not stop")
		}
	})
	waitCond(t, "the transport connected", func() bool { return srv.handshakes.Load() > 0 })
	r := &rig{t: t, srv: srv, imip: imip, handshakes: 1, bobNotify: make(chan struct{}, 1)}
	// bob on IMIP.
	dctx, dcancel := context.WithTimeout(ctx, waitFor)
	defer dcancel()
	bob, err := imipside.Dial(dctx, imipside.Config{Addr: imip.Addr(), Number: acctBob.Number, Password: acctBob.Password,
		AutoConfirm: true, Handler: imipside.HandlerFunc(func(ev imipside.Event) {
			me, ok := ev.(imipside.MessageEvent)
			if !ok {
				return
			}
			r.bobMu.Lock()
			r.bobMsgs = append(r.bobMsgs, me)
			r.bobMu.Unlock()
			select {
			case r.bobNotify <- struct{}{}:
			default:
			}
		})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bob.Close() })
	r.bob = bob
	// alice and eve register and go online; mallory never registers.
	r.online("alice@localhost/r", acctAlice)
	r.online("eve@localhost/x", acctEve)
	return r
}

// testWriter sends the transport's log to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// online registers full with the gateway as acct and sends its presence.
func (r *rig) online(full string, acct imiptest.Account) {
	r.t.Helper()
	id := r.id()
	m := r.srv.mark()
	r.srv.send(`<iq type="set" id=%q from=%q to=%q><query xmlns="jabber:iq:register"><username>%s</username><password>%s</password></query></iq>`,
		id, full, domain, acct.Number, acct.Password)
	if e := r.srv.wait(r.t, m, "registration answer", byID(id)); e.attr("type") != "result" {
		r.t.Fatalf("registering %s: %v", full, e)
	}
	bare := strings.SplitN(full, "/", 2)[0]
	r.srv.mu.Lock()
	r.srv.online[bare] = full
	r.srv.mu.Unlock()
	r.srv.send(`<presence from=%q to=%q/>`, full, domain)
	if !r.imip.WaitOnline(acct.Number, true, waitFor) {
		r.t.Fatalf("%s not logged in to IMIP", full)
	}
}

func (r *rig) id() string {
	r.seq++
	return fmt.Sprintf("h%d", r.seq)
}

func byID(id string) func(elem) bool { return func(e elem) bool { return e.attr("id") == id } }

// chatFlows checks that alice and bob still talk both ways, and that the
// component link was never re-established.
func (r *rig) chatFlows(tag string) {
	r.t.Helper()
	text := "flow " + tag
	m := r.srv.mark()
	bm := r.bobLen()
	r.srv.send(`<message type="chat" id=%q from="alice@localhost/r" to="%s@%s"><body>%s</body></message>`, r.id(), acctBob.Number, domain, text)
	if me := r.bobWait(bm, tag+": alice's message to bob", func(me imipside.MessageEvent) bool { return me.Text == text }); me.From != acctAlice.Number {
		r.t.Fatalf("%s: alice's message reached bob from %s", tag, me.From)
	}
	if _, err := r.bob.SendMessage(acctAlice.Number, "back "+tag); err != nil {
		r.t.Fatal(err)
	}
	r.srv.wait(r.t, m, tag+": bob's message to alice", func(e elem) bool {
		return e.XMLName.Local == "message" && strings.HasPrefix(e.attr("to"), "alice@localhost") && strings.Contains(e.Inner, "back "+tag)
	})
	if n := r.srv.handshakes.Load(); n != r.handshakes {
		r.t.Fatalf("%s: %d component handshakes, want %d: the link was dropped", tag, n, r.handshakes)
	}
}

// bobLen returns the number of messages bob has received so far.
func (r *rig) bobLen() int {
	r.bobMu.Lock()
	defer r.bobMu.Unlock()
	return len(r.bobMsgs)
}

// bobSince returns the messages bob received after mark matching pred.
func (r *rig) bobSince(mark int, pred func(imipside.MessageEvent) bool) []imipside.MessageEvent {
	r.bobMu.Lock()
	defer r.bobMu.Unlock()
	var out []imipside.MessageEvent
	for _, me := range r.bobMsgs[mark:] {
		if pred(me) {
			out = append(out, me)
		}
	}
	return out
}

// bobWait waits for a message at bob, after mark, matching pred.
func (r *rig) bobWait(mark int, what string, pred func(imipside.MessageEvent) bool) imipside.MessageEvent {
	r.t.Helper()
	deadline := time.After(waitFor)
	for {
		if got := r.bobSince(mark, pred); len(got) > 0 {
			return got[0]
		}
		select {
		case <-r.bobNotify:
		case <-deadline:
			r.t.Fatalf("no %s within %v", what, waitFor)
			return imipside.MessageEvent{}
		}
	}
}

// ---------------------------------------------------------------- the cases

// A case sends raw (with {id} replaced by a fresh id, {huge:N} by N bytes
// of a, {tabs:N} by N tabs) and checks the reaction.
type hcase struct {
	name string
	raw  string
	// want: "error:<condition>" (an error with the case's id and that
	// condition; "error:*" any condition), "none" (no stanza with the
	// case's id), "result" (an IQ result), "reply" (any stanza with the
	// id). check, when set, runs too.
	want  string
	check func(r *rig, id string, mark int)
}

func expand(raw, id string) string {
	raw = strings.ReplaceAll(raw, "{id}", id)
	for _, k := range []string{"huge", "tabs", "nest"} {
		for {
			i := strings.Index(raw, "{"+k+":")
			if i < 0 {
				break
			}
			j := strings.Index(raw[i:], "}")
			var n int
			fmt.Sscanf(raw[i+len(k)+2:i+j], "%d", &n)
			var rep string
			switch k {
			case "huge":
				rep = strings.Repeat("a", n)
			case "tabs":
				rep = strings.Repeat("\t", n)
			case "nest":
				rep = strings.Repeat("<x>", n) + strings.Repeat("</x>", n)
			}
			raw = raw[:i] + rep + raw[i+j+1:]
		}
	}
	return raw
}

const (
	bobJID = "2002002@" + domain
	eve    = "eve@localhost/x"
	mal    = "mallory@localhost/m"
)

func cases() []hcase {
	msg := func(from, to, attrs, inner string) string {
		return fmt.Sprintf(`<message id="{id}" from=%q to=%q%s>%s</message>`, from, to, attrs, inner)
	}
	pres := func(from, to, attrs, inner string) string {
		return fmt.Sprintf(`<presence id="{id}" from=%q to=%q%s>%s</presence>`, from, to, attrs, inner)
	}
	iq := func(from, to, typ, inner string) string {
		return fmt.Sprintf(`<iq id="{id}" type=%q from=%q to=%q>%s</iq>`, typ, from, to, inner)
	}
	cs := []hcase{
		// Messages.
		{name: "message from an unregistered JID", raw: msg(mal, bobJID, ` type="chat"`, `<body>hi</body>`), want: "error:registration-required"},
		{name: "message to a non-numeric contact", raw: msg(eve, "bob@"+domain, ` type="chat"`, `<body>hi</body>`), want: "error:jid-malformed"},
		{name: "message to a 300-digit number", raw: msg(eve, strings.Repeat("7", 300)+"@"+domain, ` type="chat"`, `<body>hi</body>`), want: "error:jid-malformed"},
		{name: "message to the gateway itself", raw: msg(eve, domain, ` type="chat"`, `<body>hi</body>`), want: "error:service-unavailable"},
		{name: "message too long for IMIP, bounce short", raw: msg(eve, bobJID, ` type="chat"`, `<body>{huge:70000}</body>`), want: "error:not-acceptable", check: smallBounce},
		{name: "120,000 tabs from an unregistered JID, bounce short", raw: msg(mal, bobJID, ` type="chat"`, `<body>{tabs:120000}</body>`), want: "error:registration-required", check: smallBounce},
		{name: "200,000 tabs from a registered user, bounce short", raw: msg(eve, bobJID, ` type="chat"`, `<body>{tabs:200000}</body>`), want: "error:not-acceptable", check: smallBounce},
		{name: "groupchat message", raw: msg(eve, bobJID, ` type="groupchat"`, `<body>hi</body>`), want: "none", check: bobGetsNothingFromEve},
		{name: "headline message", raw: msg(eve, bobJID, ` type="headline"`, `<body>hi</body>`), want: "none", check: bobGetsNothingFromEve},
		{name: "error message to a contact", raw: msg(eve, bobJID, ` type="error"`, `<error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>`), want: "none"},
		{name: "error message with a gateway id", raw: strings.Replace(msg(eve, bobJID, ` type="error"`, `<error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>`), `id="{id}"`, `id="imip-2002002-{id}"`, 1), want: "none"},
		{name: "chat state without body", raw: msg(eve, bobJID, ` type="chat"`, `<composing xmlns="http://jabber.org/protocol/chatstates"/>`), want: "none", check: bobGetsNothingFromEve},
		{name: "message from another domain", raw: msg("eve@evil.example/x", bobJID, ` type="chat"`, `<body>hi</body>`), want: "error:registration-required"},
		{name: "message without from", raw: `<message id="{id}" to="` + bobJID + `" type="chat"><body>hi</body></message>`, want: "none"},
		{name: "message without to (taken as to the gateway)", raw: `<message id="{id}" from="` + eve + `" type="chat"><body>hi</body></message>`, want: "error:service-unavailable"},
		{name: "message with a malformed from", raw: msg("a@b@c", bobJID, ` type="chat"`, `<body>hi</body>`), want: "none"},
		{name: "message with a from that does not read back", raw: msg("x@..", bobJID, ` type="chat"`, `<body>hi</body>`), want: "none"},
		{name: "from in the stream namespace by prefix (impersonating alice)", raw: `<message xmlns:c="jabber:component:accept" c:from="alice@localhost/r" id="{id}" to="` + bobJID + `" type="chat"><body>impersonated</body></message>`,
			want: "none", check: bobGetsNoImpersonation},
		{name: "from in a foreign namespace beside eve's own", raw: `<message xmlns:f="urn:evil" f:from="alice@localhost/r" from="` + eve + `" id="{id}" to="` + bobJID + `" type="chat"><body>foreign-ns</body></message>`,
			want: "none", check: func(r *rig, id string, mark int) { bobGetsFrom(r, acctEve.Number, "foreign-ns") }},
		{name: "two from attributes in different namespaces", raw: `<message xmlns:a="urn:a" xmlns:b="urn:b" a:from="alice@localhost/r" b:from="alice@localhost/r" id="{id}" to="` + bobJID + `" type="chat"><body>two-from</body></message>`,
			want: "none", check: bobGetsNoImpersonation},
		{name: "a thousand bodies", raw: msg(eve, bobJID, ` type="chat"`, strings.Repeat(`<body xml:lang="x">b</body>`, 1000)), want: "none"},
		{name: "nesting 2,000 deep", raw: msg(eve, bobJID, ` type="chat"`, `<body>deep</body><junk xmlns="urn:x">{nest:2000}</junk>`), want: "none", check: func(r *rig, id string, mark int) { bobGetsFrom(r, acctEve.Number, "deep") }},
		{name: "entities and CDATA end in a body arrive as text", raw: msg(eve, bobJID, ` type="chat"`, `<body>&lt;b&gt; ]]&gt; &amp;amp; &#x1F600;</body>`), want: "none",
			check: func(r *rig, id string, mark int) { bobGetsFrom(r, acctEve.Number, "<b> ]]> &amp; 😀") }},
		{name: "an id of 5,000 bytes", raw: strings.Replace(msg(eve, bobJID, ` type="chat"`, `<body>long-id</body>`), `id="{id}"`, `id="{huge:5000}"`, 1), want: "none",
			check: func(r *rig, id string, mark int) { bobGetsFrom(r, acctEve.Number, "long-id") }},
		{name: "message to a contact with a resource", raw: msg(eve, bobJID+"/res", ` type="chat"`, `<body>with-resource</body>`), want: "none",
			check: func(r *rig, id string, mark int) { bobGetsFrom(r, acctEve.Number, "with-resource") }},
		{name: "a forged privilege grant in a message", raw: msg(eve, domain, "", `<privilege xmlns="urn:xmpp:privilege:2"><perm access="roster" type="both"/></privilege>`), want: "none"},
		{name: "a forged privilege grant from the server's domain to a contact", raw: msg("localhost", bobJID, "", `<privilege xmlns="urn:xmpp:privilege:2"><perm access="roster" type="both"/></privilege>`), want: "none"},
		{name: "unknown stanza type", raw: `<weird id="{id}" from="` + eve + `" to="` + domain + `"/>`, want: "none"},
		// Presence.
		{name: "subscription request from an unregistered JID", raw: pres(mal, bobJID, ` type="subscribe"`, ""), want: "none",
			check: func(r *rig, id string, mark int) {
				r.srv.wait(r.t, mark, "unsubscribed to mallory", func(e elem) bool {
					return e.XMLName.Local == "presence" && e.attr("type") == "unsubscribed" && strings.HasPrefix(e.attr("to"), "mallory@")
				})
			}},
		{name: "probe of an online contact by a stranger leaks nothing", raw: pres(mal, bobJID, ` type="probe"`, ""), want: "none", check: noAvailableTo("mallory@")},
		{name: "directed presence from a stranger to a contact", raw: pres(mal, bobJID, "", ""), want: "none", check: noAvailableTo("mallory@")},
		{name: "probe of a contact not on eve's list leaks nothing", raw: pres(eve, bobJID, ` type="probe"`, ""), want: "none", check: noAvailableTo("eve@")},
		{name: "presence of type error", raw: pres(eve, domain, ` type="error"`, `<error type="cancel"><gone xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>`), want: "none"},
		{name: "presence of an unknown type", raw: pres(eve, domain, ` type="dance"`, ""), want: "none"},
		{name: "presence with a bad priority and show", raw: pres(eve, domain, "", `<priority>lots</priority><show>sleeping</show>`), want: "none"},
		{name: "status of 100 KB is cut before IMIP", raw: pres(eve, domain, "", `<show>away</show><status>{huge:100000}</status>`), want: "none",
			check: func(r *rig, id string, mark int) {
				r.t.Helper()
				var text string
				waitCond(r.t, "eve's AWAY with a huge status reached IMIP", func() bool {
					var st wire.Status
					st, text = r.imip.Server().Presence(acctEve.Number)
					return st == wire.StatusAway
				})
				if len(text) > 1024 {
					r.t.Errorf("eve's status on IMIP is %d bytes", len(text))
				}
			}},
		{name: "nick of 10 KB with control-like text", raw: pres(eve, domain, "", `<nick xmlns="http://jabber.org/protocol/nick">{huge:10000}</nick>`), want: "none"},
		{name: "unsubscribed from a stranger", raw: pres(mal, bobJID, ` type="unsubscribed"`, ""), want: "none"},
		{name: "presence without from", raw: `<presence id="{id}" to="` + domain + `"/>`, want: "none"},
		{name: "presence with a malformed to", raw: pres(eve, "@@", "", ""), want: "none"},
		// IQs.
		{name: "iq get without a child", raw: iq(eve, domain, "get", ""), want: "error:*"},
		{name: "iq get with two children (the first is answered)", raw: iq(eve, domain, "get", `<ping xmlns="urn:xmpp:ping"/><query xmlns="jabber:iq:version"/>`), want: "reply"},
		{name: "iq of an unknown type", raw: iq(eve, domain, "weird", `<ping xmlns="urn:xmpp:ping"/>`), want: "error:bad-request"},
		{name: "iq result nobody asked for", raw: iq(eve, domain, "result", ""), want: "none"},
		{name: "iq error nobody asked for", raw: iq(eve, domain, "error", `<error type="cancel"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>`), want: "none"},
		{name: "iq in an unknown namespace", raw: iq(eve, domain, "get", `<query xmlns="urn:evil"/>`), want: "error:service-unavailable"},
		{name: "registration with empty fields", raw: iq(mal, domain, "set", `<query xmlns="jabber:iq:register"><username/><password/></query>`), want: "error:not-acceptable"},
		{name: "registration with a 10 KB number", raw: iq(mal, domain, "set", `<query xmlns="jabber:iq:register"><username>{huge:10000}</username><password>x</password></query>`), want: "error:not-acceptable"},
		{name: "registration as alice's number with a wrong password", raw: iq(mal, domain, "set", `<query xmlns="jabber:iq:register"><username>1001001</username><password>guess</password></query>`), want: "error:not-authorized"},
		{name: "ten registration attempts at once do not pass the guessing limit", raw: tenGuesses(), want: "none",
			check: func(r *rig, id string, mark int) {
				r.t.Helper()
				var refused, limited int
				for i := range 10 {
					e := r.srv.wait(r.t, mark, "answer to guess", byID(fmt.Sprintf("%s-%d", id, i)))
					switch e.errCond() {
					case "not-authorized":
						refused++
					case "policy-violation", "resource-constraint":
						limited++
					default:
						r.t.Errorf("guess %d: %v", i, e)
					}
				}
				if refused > 5 || refused+limited != 10 {
					r.t.Errorf("%d guesses reached IMIP and %d were limited, want at most 5 of 10 to reach IMIP", refused, limited)
				}
			}},
		{name: "unregistration by a stranger", raw: iq(mal, domain, "set", `<query xmlns="jabber:iq:register"><remove/></query>`), want: "error:registration-required"},
		{name: "a roster push from a user", raw: iq(eve, domain, "set", `<query xmlns="jabber:iq:roster"><item jid="`+bobJID+`" subscription="both"/></query>`), want: "error:*"},
		{name: "a roster item exchange from a stranger", raw: msg(mal, domain, "", `<x xmlns="http://jabber.org/protocol/rosterx"><item action="add" jid="`+bobJID+`"/></x>`), want: "none"},
		{name: "ping to the gateway", raw: iq(eve, domain, "get", `<ping xmlns="urn:xmpp:ping"/>`), want: "result"},
		{name: "disco#info of a contact", raw: iq(eve, bobJID, "get", `<query xmlns="http://jabber.org/protocol/disco#info"/>`), want: "result"},
		{name: "version of the gateway", raw: iq(eve, domain, "get", `<query xmlns="jabber:iq:version"/>`), want: "result"},
		{name: "iq from a malformed JID", raw: iq("a@b@c", domain, "get", `<ping xmlns="urn:xmpp:ping"/>`), want: "none"},
		{name: "registration form with junk fields", raw: iq(eve, domain, "set", `<query xmlns="jabber:iq:register"><x xmlns="jabber:x:data" type="submit"><field><value/></field><unexpected/></x></query>`), want: "error:not-acceptable"},
	}
	return append(cs, moreCases()...)
}

// tenGuesses is ten registration IQs at once for alice's number with wrong
// passwords, from one fresh JID.
func tenGuesses() string {
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, `<iq id="{id}-%d" type="set" from="guesser@localhost/g" to=%q><query xmlns="jabber:iq:register"><username>%s</username><password>guess%d</password></query></iq>`,
			i, domain, acctAlice.Number, i)
	}
	return b.String()
}

// smallBounce: the error sent back is far below a server's stanza limit.
func smallBounce(r *rig, id string, mark int) {
	r.t.Helper()
	r.srv.mu.Lock()
	largest := r.srv.sizeMax
	r.srv.mu.Unlock()
	if largest > 64<<10 {
		r.t.Errorf("the transport sent a stanza of %d bytes", largest)
	}
}

// bobGetsFrom waits for a message with text at bob (sent since the case
// began) and checks that it came from n.
func bobGetsFrom(r *rig, n wire.Number, text string) {
	r.t.Helper()
	me := r.bobWait(r.bobMark, fmt.Sprintf("message %q at bob", text), func(me imipside.MessageEvent) bool { return me.Text == text })
	if me.From != n {
		r.t.Errorf("bob got %q from %s, want from %s", text, me.From, n)
	}
}

// bobGetsNone: after the barrier chat, bob has received no message with
// one of texts since the case began.
func bobGetsNone(texts ...string) func(r *rig, id string, mark int) {
	return func(r *rig, id string, mark int) {
		r.t.Helper()
		r.chatFlows("barrier-" + id)
		for _, me := range r.bobSince(r.bobMark, func(me imipside.MessageEvent) bool { return slices.Contains(texts, me.Text) }) {
			r.t.Errorf("bob got %q from %s", me.Text, me.From)
		}
	}
}

// bobGetsNoImpersonation: no message reached bob with the impersonating
// cases' texts.
var bobGetsNoImpersonation = bobGetsNone("impersonated", "two-from")

// bobGetsNothingFromEve: after the barrier chat, nothing reached bob from
// eve since the case began.
func bobGetsNothingFromEve(r *rig, id string, mark int) {
	r.t.Helper()
	r.chatFlows("barrier-" + id)
	for _, me := range r.bobSince(r.bobMark, func(me imipside.MessageEvent) bool { return me.From == acctEve.Number }) {
		r.t.Errorf("bob got %q from eve", me.Text)
	}
}

// noAvailableTo: the gateway sent no available presence of a contact to
// the prefix's JIDs.
func noAvailableTo(prefix string) func(r *rig, id string, mark int) {
	return func(r *rig, id string, mark int) {
		r.t.Helper()
		r.chatFlows("barrier-" + id)
		for _, e := range r.srv.since(mark, func(e elem) bool {
			return e.XMLName.Local == "presence" && strings.HasPrefix(e.attr("to"), prefix) && e.attr("type") == "" &&
				strings.Contains(e.attr("from"), "@")
		}) {
			r.t.Errorf("contact presence leaked: %v", e)
		}
	}
}

// TestHostileStanzas runs every case in turn, checking after each that the
// link stayed up and alice and bob still talk.
func TestHostileStanzas(t *testing.T) {
	r := newRig(t)
	r.chatFlows("start")
	cs := cases()
	for i, c := range cs {
		id := r.id()
		mark := r.srv.mark()
		r.bobMark = r.bobLen()
		r.srv.sendRaw(expand(c.raw, id))
		tag := fmt.Sprintf("%d %s", i, c.name)
		switch {
		case strings.HasPrefix(c.want, "error:"):
			e := r.srv.wait(t, mark, tag+": error reply", func(e elem) bool { return e.attr("id") == id && e.attr("type") == "error" })
			if cond := strings.TrimPrefix(c.want, "error:"); cond != "*" && e.errCond() != cond {
				t.Errorf("%s: error %q, want %q: %v", tag, e.errCond(), cond, e)
			}
		case c.want == "reply":
			r.srv.wait(t, mark, tag+": a reply", byID(id))
		case c.want == "result":
			e := r.srv.wait(t, mark, tag+": result", byID(id))
			if e.attr("type") != "result" {
				t.Errorf("%s: reply %v, want a result", tag, e)
			}
		}
		if c.check != nil {
			c.check(r, id, mark)
		}
		r.chatFlows(fmt.Sprint(i))
		if c.want == "none" {
			if got := r.srv.since(mark, byID(id)); len(got) > 0 {
				t.Errorf("%s: reply %v, want none", tag, got[0])
			}
		}
	}
	t.Logf("%d hostile stanzas, the link stayed up and alice and bob talked after each", len(cs))
}
