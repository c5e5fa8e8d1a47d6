package testenv

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"fmt"
	"net"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/internal/xmppserver"
)

// TLSConfig is the client TLS configuration for a test server: verification
// is off (the certificate is self-signed) and ServerName is domain.
func TLSConfig(domain string) *tls.Config {
	return &tls.Config{
		ServerName:         domain,
		InsecureSkipVerify: true, // #nosec G402 -- throw-away self-signed test certificate.
		MinVersion:         tls.VersionTLS12,
	}
}

// TryDialClient logs user in to srv: TCP to C2SAddr, STARTTLS, SASL
// SCRAM-SHA-256 or PLAIN (no -PLUS mechanisms: ejabberd 23.01's channel
// binding fails on TLS 1.3), resource binding (resource "" lets the server
// choose). The caller closes the session and its connection.
func TryDialClient(ctx context.Context, srv xmppserver.Server, user, password, resource string) (*xmpp.Session, error) {
	origin, err := jid.New(user, srv.Domain(), resource)
	if err != nil {
		return nil, fmt.Errorf("testenv: client JID: %w", err)
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", srv.C2SAddr())
	if err != nil {
		return nil, fmt.Errorf("testenv: dial %s c2s: %w", srv.Kind(), err)
	}
	conn := writeDeadlineFree{raw}
	sess, err := xmpp.NewClientSession(ctx, origin, conn,
		xmpp.StartTLS(TLSConfig(srv.Domain())),
		xmpp.SASL("", password, sasl.ScramSha256, sasl.Plain),
		xmpp.BindResource(),
	)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("testenv: %s login as %s: %w", srv.Kind(), origin, err)
	}
	return sess, nil
}

// DialClient is TryDialClient that fails t on error and closes the session
// at cleanup.
func DialClient(ctx context.Context, t testing.TB, srv xmppserver.Server, user, password, resource string) *xmpp.Session {
	t.Helper()
	sess, err := TryDialClient(ctx, srv, user, password, resource)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeSession(sess) })
	return sess
}

// writeDeadlineFree ignores write deadlines. mellium v0.22.0 starts a
// goroutine per Send that, when the caller's context ends, sets a write
// deadline in the past; cancelling the context right after a successful
// Send (as every caller does) then makes a later write fail at random with
// "i/o timeout". Test clients therefore never let mellium set one; their
// writes go to a loopback server and every wait in the tests is bounded
// elsewhere. (xmppside solves the same problem for the component.)
type writeDeadlineFree struct{ net.Conn }

func (c writeDeadlineFree) SetDeadline(t time.Time) error      { return c.Conn.SetReadDeadline(t) }
func (c writeDeadlineFree) SetWriteDeadline(t time.Time) error { return nil }

// TryDialComponent opens a XEP-0114 session to srv's component port as
// srv.ComponentName() with secret. The caller closes the session and its
// connection. A wrong secret fails with a not-authorized stream error.
func TryDialComponent(ctx context.Context, srv xmppserver.Server, secret string) (*xmpp.Session, error) {
	addr, err := jid.Parse(srv.ComponentName())
	if err != nil {
		return nil, fmt.Errorf("testenv: component JID: %w", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", srv.ComponentAddr())
	if err != nil {
		return nil, fmt.Errorf("testenv: dial %s component port: %w", srv.Kind(), err)
	}
	sess, err := component.NewSession(ctx, addr, []byte(secret), conn)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("testenv: %s component handshake: %w", srv.Kind(), err)
	}
	return sess, nil
}

// DialComponent is TryDialComponent with srv.Secret() that fails t on error
// and closes the session at cleanup.
func DialComponent(ctx context.Context, t testing.TB, srv xmppserver.Server) *xmpp.Session {
	t.Helper()
	sess, err := TryDialComponent(ctx, srv, srv.Secret())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeSession(sess) })
	return sess
}

// closeSession ends the stream and closes the connection; both are
// idempotent enough to run twice (errors are ignored).
func closeSession(sess *xmpp.Session) {
	_ = sess.Close()
	_ = sess.Conn().Close()
}

// Serve runs sess.Serve(h) in a goroutine. At cleanup the session and its
// connection are closed and Serve is waited for (at most five seconds).
// The returned channel receives Serve's result once.
func Serve(t testing.TB, sess *xmpp.Session, h xmpp.Handler) <-chan error {
	t.Helper()
	result := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		result <- sess.Serve(h)
	}()
	t.Cleanup(func() {
		closeSession(sess)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("testenv: Serve did not return within 5s of closing the session")
		}
	})
	return result
}

// Message is a received message stanza with a body, in either the client
// or the component namespace.
type Message struct {
	From, To, ID, Type, Body string
}

type wireMessage struct {
	From string `xml:"from,attr"`
	To   string `xml:"to,attr"`
	ID   string `xml:"id,attr"`
	Type string `xml:"type,attr"`
	Body string `xml:"body"`
}

// ServeMessages is Serve with a handler that decodes every <message/> with
// a non-empty body onto the returned channel (capacity 64; when it is
// full, further messages are dropped and the test fails).
// Other stanzas are ignored (an IQ gets no answer).
func ServeMessages(t testing.TB, sess *xmpp.Session) <-chan Message {
	t.Helper()
	out := make(chan Message, 64)
	h := xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local != "message" {
			return nil
		}
		var m wireMessage
		if err := decodeStanza(r, start, &m); err != nil {
			return err
		}
		if m.Body == "" {
			return nil
		}
		select {
		case out <- Message(m):
		default:
			t.Errorf("testenv: message buffer full, dropped %q", m.Body)
		}
		return nil
	})
	Serve(t, sess, h)
	return out
}

// SendChat sends a chat message with body from `from` (may be the zero JID
// on a client stream) to `to`.
func SendChat(ctx context.Context, sess *xmpp.Session, from, to jid.JID, body string) error {
	msg := stanza.Message{From: from, To: to, Type: stanza.ChatMessage}
	payload := xmlstream.Wrap(xmlstream.Token(xml.CharData(body)), xml.StartElement{Name: xml.Name{Local: "body"}})
	if err := sess.Send(ctx, msg.Wrap(payload)); err != nil {
		return fmt.Errorf("testenv: send chat to %s: %w", to, err)
	}
	return nil
}

// SendPresence sends initial (available) presence, without which servers
// deliver messages addressed to the bare JID to no resource.
func SendPresence(ctx context.Context, sess *xmpp.Session) error {
	if err := sess.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		return fmt.Errorf("testenv: send presence: %w", err)
	}
	return nil
}

// Receive waits for the next message on ch, failing t after timeout.
func Receive(t testing.TB, ch <-chan Message, timeout time.Duration) Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(timeout):
		t.Fatalf("testenv: no message within %v", timeout)
		return Message{}
	}
}

// decodeStanza decodes the element that starts with start and continues
// with r (a handler's reader, which begins after start) into v.
func decodeStanza(r xml.TokenReader, start *xml.StartElement, v any) error {
	return xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(v)
}
