package gateway

import (
	"errors"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"imip-transport/xmppside"
)

// TestReviewRelayAfterRelogin: a message taken while the session is live
// (waited false) but still in the store's write when the session drops
// goes on the next session with tries 0 and waited false: the relay
// latency counts the whole outage as time the transport added.
func TestReviewRelayAfterRelogin(t *testing.T) {
	h := newHarness(t, "", writeFirst)
	s := h.login(aliceHW, "6340564")
	apply := make(chan struct{})
	h.st.mu.Lock()
	h.st.applyHold = apply // the message's write waits
	h.st.mu.Unlock()
	h.chat("m1", aliceHW, cj("100"), "chat", "slow store")
	waitUntil(t, "the message's write under way", func() bool {
		h.st.mu.Lock()
		defer h.st.mu.Unlock()
		return h.st.applyHeld == 1
	})
	h.d.setFail(errors.New("connection refused"))
	s.drop(errors.New("reset"))
	h.d.waitAttempts(t, h.d.attemptCount()+1)
	h.st.mu.Lock()
	h.st.applyHold = nil
	h.st.mu.Unlock()
	close(apply)
	h.settle() // the write is done while there is no session: the message waits for the next login
	n := h.d.sessionCount()
	h.d.setFail(nil)
	s2 := h.d.waitSession(t, n)
	s2.waitCall(t, "MESG 100 slow store")
	st := h.g.Stats()
	if st.RelayToIMIP.Count != 0 {
		t.Errorf("relay to IMIP: %d measured, sum %v, after a message that waited for a login; want none", st.RelayToIMIP.Count, st.RelayToIMIP.Sum)
	}
}

// TestReviewCorkHeldOverStoreWrite: the run loop keeps its session corked
// while it handles an event that waits for the store on the run loop
// (here the settings command's PutRegistration; registrations do the
// same), so a MESG queued by an earlier event of the same batch is held
// for as long as the store takes (up to OpTimeout), where it used to go
// out at once.
func TestReviewCorkHeldOverStoreWrite(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	release := h.holdStore(alice)
	h.g.mu.Lock()
	u := h.g.users[alice]
	h.g.mu.Unlock()
	yes := true
	reply := make(chan cmdReply, 1)
	u.mu.Lock() // both in one batch, the message first
	u.enqueueLocked(evMessage{m: xmppside.Message{ID: "m1", From: jid.MustParse(aliceHW), To: cj("100"), Type: "chat", Body: "before the store"}, at: time.Now()})
	u.enqueueLocked(evCommand{op: opSettings, allowRemove: &yes, reply: reply})
	u.mu.Unlock()
	h.waitHeld() // the run loop waits in PutRegistration, after it uncorked (or not)
	held := len(s.callsWith("MESG 100 before the store")) == 0
	release()
	s.waitCall(t, "MESG 100 before the store")
	if held {
		t.Errorf("the MESG of an earlier event stayed corked for as long as the run loop waited for the store")
	}
}
