package xmppside

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitFor bounds every wait in the tests.
const waitFor = 5 * time.Second

// fakeServer plays the server side of XEP-0114 on 127.0.0.1.
type fakeServer struct {
	ln     net.Listener
	secret string
	conns  chan *fakeConn
	mu     sync.Mutex
	all    []*fakeConn
	wg     sync.WaitGroup
	nextID int
	done   chan struct{}
}

// fakeConn is one accepted, handshaken component connection.
type fakeConn struct {
	conn   net.Conn
	to     string     // the to of the component's stream header
	in     chan *node // top-level elements from the component
	closed chan struct{}
	wmu    sync.Mutex
}

// node is a generic XML element for assertions.
type node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []*node    `xml:",any"`
	Text    string     `xml:",chardata"`
	// wire is the number of bytes the element took on the stream (set for
	// top-level elements; the component writes nothing between stanzas).
	wire int
}

func (n *node) attr(local string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attrs {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// child returns the first child named local (in space, if not empty).
func (n *node) child(space, local string) *node {
	if n == nil {
		return nil
	}
	for _, c := range n.Nodes {
		if c.XMLName.Local == local && (space == "" || c.XMLName.Space == space) {
			return c
		}
	}
	return nil
}

// path follows children by local name.
func (n *node) path(locals ...string) *node {
	for _, l := range locals {
		n = n.child("", l)
	}
	return n
}

// text returns the character data of n, "" for a missing element.
func (n *node) text() string {
	if n == nil {
		return ""
	}
	return n.Text
}

func (n *node) String() string {
	if n == nil {
		return "<nil>"
	}
	b, _ := xml.Marshal(n)
	return string(b)
}

func newFakeServer(t *testing.T, secret string) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &fakeServer{ln: ln, secret: secret, conns: make(chan *fakeConn, 8), done: make(chan struct{})}
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.nextID++
		id := fmt.Sprintf("stream%d", s.nextID)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c, id)
		}()
	}
}

func (s *fakeServer) close() {
	close(s.done)
	_ = s.ln.Close()
	s.mu.Lock()
	for _, fc := range s.all {
		_ = fc.conn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// serve performs the handshake and then reads stanzas until the stream ends.
func (s *fakeServer) serve(c net.Conn, id string) {
	_ = c.SetDeadline(time.Now().Add(waitFor))
	dec := xml.NewDecoder(c)
	fc := &fakeConn{conn: c, in: make(chan *node, 256), closed: make(chan struct{})}
	defer close(fc.closed)
	defer c.Close()
	s.mu.Lock()
	s.all = append(s.all, fc)
	s.mu.Unlock()

	header, err := nextStart(dec)
	if err != nil || header.Name.Local != "stream" {
		return
	}
	for _, a := range header.Attr {
		if a.Name.Local == "to" {
			fc.to = a.Value
		}
	}
	fmt.Fprintf(c, `<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' from='%s' id='%s'>`, fc.to, id)
	hs, err := nextStart(dec)
	if err != nil || hs.Name.Local != "handshake" {
		return
	}
	var got string
	if err := dec.DecodeElement(&got, &hs); err != nil {
		return
	}
	sum := sha1.Sum([]byte(id + s.secret))
	if got != hex.EncodeToString(sum[:]) {
		io.WriteString(c, `<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
		return
	}
	io.WriteString(c, `<handshake/>`)
	_ = c.SetDeadline(time.Time{})
	select {
	case s.conns <- fc:
	case <-s.done:
		return
	}
	for {
		off := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := new(node)
			if err := dec.DecodeElement(n, &t); err != nil {
				return
			}
			n.wire = int(dec.InputOffset() - off)
			fc.in <- n
		case xml.EndElement: // </stream:stream>
			fc.write(`</stream:stream>`)
			return
		}
	}
}

func nextStart(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se, nil
		}
	}
}

// accept waits for the next handshaken connection.
func (s *fakeServer) accept(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case fc := <-s.conns:
		return fc
	case <-time.After(waitFor):
		t.Fatal("no component connection")
		return nil
	}
}

func (fc *fakeConn) write(raw string) error {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	_, err := io.WriteString(fc.conn, raw)
	return err
}

// send writes raw XML to the component.
func (fc *fakeConn) send(t *testing.T, raw string) {
	t.Helper()
	if err := fc.write(raw); err != nil {
		t.Fatalf("fake server write: %v", err)
	}
}

// expect returns the next element the component sent.
func (fc *fakeConn) expect(t *testing.T) *node {
	t.Helper()
	select {
	case n := <-fc.in:
		return n
	case <-time.After(waitFor):
		t.Fatal("timed out waiting for a stanza from the component")
		return nil
	}
}

// expectNone checks that the component sends nothing for d.
func (fc *fakeConn) expectNone(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case n := <-fc.in:
		t.Fatalf("unexpected stanza from the component: %s", n)
	case <-time.After(d):
	}
}

// roundTrip sends an IQ and returns the reply with the same id.
func (fc *fakeConn) roundTrip(t *testing.T, raw string) *node {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(raw))
	se, err := nextStart(dec)
	if err != nil {
		t.Fatalf("bad test IQ %q: %v", raw, err)
	}
	var id string
	for _, a := range se.Attr {
		if a.Name.Local == "id" {
			id = a.Value
		}
	}
	fc.send(t, raw)
	for {
		n := fc.expect(t)
		if n.XMLName.Local == "iq" && n.attr("id") == id {
			return n
		}
		t.Logf("skipping %s while waiting for reply %s", n, id)
	}
}

// waitClosed waits until the component ends the connection.
func (fc *fakeConn) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-fc.closed:
	case <-time.After(waitFor):
		t.Fatal("connection not closed")
	}
}

// errCondition returns the stanza error condition of a reply, or "".
func errCondition(n *node) string {
	e := n.child("", "error")
	if e == nil {
		return ""
	}
	for _, c := range e.Nodes {
		if c.XMLName.Space == nsStanzaErr && c.XMLName.Local != "text" {
			return c.XMLName.Local
		}
	}
	return ""
}

// errText returns the stanza error text of a reply, or "".
func errText(n *node) string {
	if t := n.child("", "error").child(nsStanzaErr, "text"); t != nil {
		return t.Text
	}
	return ""
}
