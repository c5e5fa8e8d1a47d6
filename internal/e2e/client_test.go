package e2e

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
)

// waitFor bounds every wait for a stanza.
const waitFor = 15 * time.Second

// got is a stanza a test client received, flattened for assertions.
type got struct {
	Name     string // message, presence or iq
	Type     string
	From, To string
	ID       string
	Body     string
	Subject  string
	Show     string
	Status   string
	Nick     string
	ErrCond  string
	ErrText  string
	Delay    string
	Items    []gotItem // roster push items
	XItems   []gotItem // XEP-0144 roster item exchange items
	Raw      string
}

type gotItem struct {
	JID          string   `xml:"jid,attr"`
	Name         string   `xml:"name,attr"`
	Subscription string   `xml:"subscription,attr"`
	Action       string   `xml:"action,attr"` // XEP-0144
	Groups       []string `xml:"group"`
}

type wireStanza struct {
	XMLName xml.Name
	Type    string `xml:"type,attr"`
	From    string `xml:"from,attr"`
	To      string `xml:"to,attr"`
	ID      string `xml:"id,attr"`
	Body    string `xml:"body"`
	Subject string `xml:"subject"`
	Show    string `xml:"show"`
	Status  string `xml:"status"`
	Nick    string `xml:"http://jabber.org/protocol/nick nick"`
	Delay   struct {
		Stamp string `xml:"stamp,attr"`
	} `xml:"urn:xmpp:delay delay"`
	Error struct {
		Inner []struct {
			XMLName xml.Name
			Text    string `xml:",chardata"`
		} `xml:",any"`
	} `xml:"error"`
	Query struct {
		Items []gotItem `xml:"item"`
	} `xml:"jabber:iq:roster query"`
	RosterX struct {
		Items []gotItem `xml:"item"`
	} `xml:"http://jabber.org/protocol/rosterx x"`
}

// client is a logged-in XMPP client that records what it receives.
type client struct {
	t    *testing.T
	sess *xmpp.Session
	jid  jid.JID

	mu      sync.Mutex
	backlog []got
	notify  chan struct{}
	// seen are the ids of the chat messages with a body received, by
	// sender: the gateway delivers at least once, and a message resent
	// after a crash or a link drop keeps its id, so a client drops it as a
	// duplicate (dups counts them).
	seen map[string]time.Time
	dups int
	// online: the client sent its initial presence.
	online bool
	// autoApprove answers subscribe requests from JIDs ending in it with
	// subscribed and a subscribe back, as most clients do once the user
	// accepts (slixmpp's auto_subscribe).
	autoApprove string
	// features are advertised in disco#info besides disco#info itself
	// (guarded by mu).
	features []string
}

// login logs user in and starts recording. It sends initial presence only
// when available is set.
func login(t *testing.T, srv xmppserver.Server, user, password string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	sess := testenv.DialClient(ctx, t, srv, user, password, "")
	c := &client{t: t, sess: sess, jid: sess.LocalAddr(), notify: make(chan struct{}, 1)}
	testenv.Serve(t, sess, xmpp.HandlerFunc(c.handle))
	return c
}

func (c *client) handle(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	var buf bytes.Buffer
	enc := xml.NewEncoder(&buf)
	if err := enc.EncodeToken(*start); err != nil {
		return err
	}
	if _, err := xmlstream.Copy(enc, xmlstream.Inner(r)); err != nil {
		return err
	}
	if err := enc.EncodeToken(start.End()); err != nil {
		return err
	}
	if err := enc.Flush(); err != nil {
		return err
	}
	var w wireStanza
	if err := xml.Unmarshal(buf.Bytes(), &w); err != nil {
		return fmt.Errorf("decoding %s: %w", buf.String(), err)
	}
	g := got{Name: start.Name.Local, Type: w.Type, From: w.From, To: w.To, ID: w.ID, Body: w.Body,
		Subject: w.Subject, Show: w.Show, Status: w.Status, Nick: w.Nick, Delay: w.Delay.Stamp,
		Items: w.Query.Items, XItems: w.RosterX.Items, Raw: buf.String()}
	for _, in := range w.Error.Inner {
		if in.XMLName.Local == "text" {
			g.ErrText = in.Text
		} else if g.ErrCond == "" {
			g.ErrCond = in.XMLName.Local
		}
	}
	if g.Name == "iq" && (g.Type == "set" || g.Type == "get") {
		// Roster pushes and disco queries: answer like a plain client.
		reply := fmt.Sprintf(`<iq type="result" id=%q to=%q/>`, g.ID, g.From)
		if g.From == "" {
			reply = fmt.Sprintf(`<iq type="result" id=%q/>`, g.ID)
		}
		if strings.Contains(g.Raw, "http://jabber.org/protocol/disco#info") {
			c.mu.Lock()
			advertised := append([]string{"http://jabber.org/protocol/disco#info"}, c.features...)
			c.mu.Unlock()
			var feats strings.Builder
			for _, f := range advertised {
				fmt.Fprintf(&feats, `<feature var=%q/>`, f)
			}
			reply = fmt.Sprintf(`<iq type="result" id=%q to=%q><query xmlns="http://jabber.org/protocol/disco#info"><identity category="client" type="pc"/>%s</query></iq>`, g.ID, g.From, feats.String())
		}
		// Answer within the handler: mellium answers an IQ that its handler
		// left unanswered with service-unavailable, before any answer sent
		// later.
		if err := encodeRaw(r, reply); err != nil {
			return fmt.Errorf("answering %s: %w", g.Raw, err)
		}
	}
	if g.Name == "presence" && g.Type == "subscribe" && c.autoApprove != "" && strings.HasSuffix(g.From, c.autoApprove) {
		go func() {
			c.sendRaw(fmt.Sprintf(`<presence type="subscribed" to=%q/>`, bare(g.From)))
			c.sendRaw(fmt.Sprintf(`<presence type="subscribe" to=%q/>`, bare(g.From)))
		}()
	}
	c.mu.Lock()
	if g.Name == "message" && g.Body != "" && g.ID != "" && g.Type != "error" {
		k := g.From + "\x00" + g.ID
		if first, ok := c.seen[k]; ok {
			c.dups++
			c.mu.Unlock()
			c.t.Logf("%s: duplicate of message %s from %s dropped (resent after a crash, a link drop or a hand-over; first received at %s)",
				c.jid, g.ID, g.From, first.Format("15:04:05.000"))
			return nil
		}
		if c.seen == nil {
			c.seen = make(map[string]time.Time)
		}
		c.seen[k] = time.Now()
	}
	c.backlog = append(c.backlog, g)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return nil
}

// encodeRaw writes the stanza raw (XML in the client namespace) to w.
func encodeRaw(w xmlstream.TokenWriter, raw string) error {
	d := xml.NewDecoder(strings.NewReader(raw))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := w.EncodeToken(xml.CopyToken(tok)); err != nil {
			return err
		}
	}
}

// sendRaw sends one stanza written as XML in the client namespace.
func (c *client) sendRaw(raw string) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	d := xml.NewDecoder(strings.NewReader(raw))
	if err := c.sess.Send(ctx, xmlstream.ReaderFunc(func() (xml.Token, error) {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		return xml.CopyToken(tok), nil
	})); err != nil {
		c.t.Logf("%s: send %s: %v", c.jid, raw, err)
	}
}

// sendBytes writes raw to the stream as it is, bypassing mellium's encoder
// (which would escape a tab as &#x9;, five bytes): what another client
// could send.
func (c *client) sendBytes(raw string) {
	c.t.Helper()
	tw := c.sess.TokenWriter() // holds the session's output lock
	defer tw.Close()
	if err := tw.Flush(); err != nil {
		c.t.Fatalf("%s: flush before a raw write: %v", c.jid, err)
	}
	if _, err := io.WriteString(c.sess.Conn(), raw); err != nil {
		c.t.Fatalf("%s: raw write of %d bytes: %v", c.jid, len(raw), err)
	}
}

// send formats and sends a stanza.
func (c *client) send(format string, args ...any) { c.sendRaw(fmt.Sprintf(format, args...)) }

// expect waits for a stanza matching pred (received since the last expect
// that consumed it) and removes it from the backlog.
func (c *client) expect(what string, pred func(got) bool) got {
	c.t.Helper()
	deadline := time.After(waitFor)
	for {
		c.mu.Lock()
		for i, g := range c.backlog {
			if pred(g) {
				c.backlog = append(c.backlog[:i], c.backlog[i+1:]...)
				c.mu.Unlock()
				return g
			}
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-deadline:
			c.mu.Lock()
			var seen []string
			for _, g := range c.backlog {
				seen = append(seen, g.Raw)
			}
			c.mu.Unlock()
			c.t.Fatalf("%s: no %s within %v; received:\n%s", c.jid, what, waitFor, strings.Join(seen, "\n"))
			return got{}
		}
	}
}

// never fails if a stanza matching pred arrives within d.
func (c *client) never(what string, d time.Duration, pred func(got) bool) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		c.mu.Lock()
		for _, g := range c.backlog {
			if pred(g) {
				c.mu.Unlock()
				c.t.Fatalf("%s: unexpected %s: %s", c.jid, what, g.Raw)
			}
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-deadline:
			return
		}
	}
}

// iq sends an IQ with a fresh id and waits for its answer.
var iqSeq struct {
	sync.Mutex
	n int
}

func (c *client) iq(typ, to, payload string) got {
	c.t.Helper()
	iqSeq.Lock()
	iqSeq.n++
	id := fmt.Sprintf("e2e-%d", iqSeq.n)
	iqSeq.Unlock()
	if to == "" {
		c.send(`<iq type=%q id=%q>%s</iq>`, typ, id, payload)
	} else {
		c.send(`<iq type=%q id=%q to=%q>%s</iq>`, typ, id, to, payload)
	}
	return c.expect("answer to iq "+id, func(g got) bool { return g.Name == "iq" && g.ID == id })
}

// Matchers.
func isPresence(from, typ string) func(got) bool {
	return func(g got) bool {
		return g.Name == "presence" && bare(g.From) == from && g.Type == typ
	}
}

func isMessage(from string) func(got) bool {
	return func(g got) bool {
		return g.Name == "message" && bare(g.From) == from && g.Type != "error" && g.Body != ""
	}
}

func isMessageError(id string) func(got) bool {
	return func(g got) bool { return g.Name == "message" && g.Type == "error" && g.ID == id }
}

func bare(s string) string {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}
