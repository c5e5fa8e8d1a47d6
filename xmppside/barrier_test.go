package xmppside

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"mellium.im/xmpp/jid"
)

// A barrier is a ping written after the stanzas it covers, on the same
// link; any answer (an error included) confirms them. On another link than
// the one asked for, it fails at once.
func TestBarrier(t *testing.T) {
	env := startEnv(t, nil)
	ctx := context.Background()
	seq := env.c.LinkSeq()
	if seq == 0 {
		t.Fatal("LinkSeq = 0 while the link is up")
	}
	server := jid.MustParse("localhost")
	for i, answer := range []string{`type="result"`, `type="error"><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq`} {
		if err := env.c.SendMessage(ctx, Message{From: jid.MustParse("1@imip.localhost"), To: jid.MustParse("juliet@localhost"), Type: "chat", Body: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
		done := asyncCall(func() error { return env.c.Barrier(ctx, server, seq) })
		if m := env.fc.expect(t); m.XMLName.Local != "message" {
			t.Fatalf("%d: first on the wire: %s, want the message", i, m)
		}
		ping := env.fc.expect(t)
		if ping.XMLName.Local != "iq" || ping.child("urn:xmpp:ping", "ping") == nil || ping.attr("to") != "localhost" {
			t.Fatalf("%d: barrier sent %s, want a ping to localhost", i, ping)
		}
		reply := fmt.Sprintf(`<iq from="localhost" to="imip.localhost" id="%s" %s>`, ping.attr("id"), answer)
		if answer == `type="result"` {
			reply = fmt.Sprintf(`<iq from="localhost" to="imip.localhost" id="%s" type="result"/>`, ping.attr("id"))
		}
		env.fc.send(t, reply)
		if err := waitErr(t, done); err != nil {
			t.Errorf("%d: Barrier = %v, want nil", i, err)
		}
	}
	// A remote domain the server cannot reach: what went before bounced.
	remote := jid.MustParse("far.example")
	for _, cond := range []string{"remote-server-not-found", "remote-server-timeout"} {
		done := asyncCall(func() error { return env.c.Barrier(ctx, remote, seq) })
		ping := env.fc.expect(t)
		if ping.attr("to") != "far.example" {
			t.Fatalf("barrier sent %s, want a ping to far.example", ping)
		}
		env.fc.send(t, fmt.Sprintf(`<iq from="far.example" to="imip.localhost" id="%s" type="error"><error type="cancel"><%s xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`, ping.attr("id"), cond))
		if err := waitErr(t, done); !errors.Is(err, ErrRemoteUnreachable) {
			t.Errorf("Barrier answered %s = %v, want ErrRemoteUnreachable", cond, err)
		}
	}
	if err := env.c.Barrier(ctx, server, seq+1); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Barrier on another link = %v, want ErrNotConnected", err)
	}
	// The link drops before the answer: the barrier fails.
	done := asyncCall(func() error { return env.c.Barrier(ctx, server, seq) })
	env.fc.expect(t)
	_ = env.fc.conn.Close()
	if err := waitErr(t, done); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Barrier across a drop = %v, want ErrNotConnected", err)
	}
}
