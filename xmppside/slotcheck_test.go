package xmppside

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

// The slot check sends its messages on this connection; one of them coming
// back on it means the server routes here, and it never reaches the
// handler. None coming back within the bound means no slot.
func TestCheckSlot(t *testing.T) {
	env := startEnv(t, nil)
	defer env.stop()

	type result struct {
		ok  bool
		err error
	}
	run := func(d time.Duration) chan result {
		done := make(chan result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			ok, err := env.c.CheckSlot(ctx, 4)
			done <- result{ok, err}
		}()
		return done
	}

	done := run(waitFor)
	var ids []string
	for range 4 {
		n := env.fc.expect(t)
		if n.XMLName.Local != "message" || n.attr("to") != "imip.localhost" || !strings.HasSuffix(n.attr("from"), "@imip.localhost") {
			t.Fatalf("slot check sent %v", n)
		}
		ids = append(ids, n.attr("id"))
	}
	// The server routes the third one back here.
	env.fc.send(t, fmt.Sprintf(`<message from='slot-1@imip.localhost' to='imip.localhost' type='normal' id='%s'/>`, ids[2]))
	if r := <-done; !r.ok || r.err != nil {
		t.Fatalf("CheckSlot = %v, %v; want true", r.ok, r.err)
	}
	// Another instance's check arriving here is dropped, not handed on.
	env.fc.send(t, `<message from='slot-2@imip.localhost' to='imip.localhost' type='normal' id='imip-slotcheck-0123456789abcdef-0'/>`)
	env.fc.send(t, `<message from='a@example.org' to='1@imip.localhost' type='chat' id='m1'><body>hi</body></message>`)
	if m := env.h.nextMessage(t); m.ID != "m1" {
		t.Fatalf("handler got %q first; want m1 (the slot check's message is not the handler's)", m.ID)
	}

	// Nothing comes back: no slot.
	done = run(200 * time.Millisecond)
	for range 4 {
		env.fc.expect(t)
	}
	if r := <-done; r.ok || r.err != nil {
		t.Fatalf("CheckSlot with nothing routed back = %v, %v; want false", r.ok, r.err)
	}
}

// A reply the server routes to another connection of the process (a
// domain spread over several) reaches the waiter on the one that asked.
func TestRepliesFromAnotherConnection(t *testing.T) {
	a := startEnv(t, nil)
	defer a.stop()
	b := startEnv(t, nil)
	defer b.stop()
	b.c.SetReplies(a.c.TakeReply)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		done <- a.c.Barrier(ctx, jid.MustParse("user@localhost"), a.c.LinkSeq())
	}()
	iq := a.fc.expect(t)
	if iq.XMLName.Local != "iq" {
		t.Fatalf("barrier sent %v", iq)
	}
	// The answer comes on b's connection.
	b.fc.send(t, fmt.Sprintf(`<iq type='result' from='user@localhost' to='imip.localhost' id='%s'/>`, iq.attr("id")))
	if err := <-done; err != nil {
		t.Fatalf("Barrier answered on another connection = %v; want nil", err)
	}
}
