package gateway

import (
	"errors"
	"testing"
	"time"
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
	const outage = 300 * time.Millisecond
	time.Sleep(outage) // no session: the message waits for the next login
	n := h.d.sessionCount()
	h.d.setFail(nil)
	s2 := h.d.waitSession(t, n)
	s2.waitCall(t, "MESG 100 slow store")
	st := h.g.Stats()
	if st.RelayToIMIP.Count != 0 {
		t.Errorf("relay to IMIP: %d measured, sum %v, after a message that waited %v for a login; want none", st.RelayToIMIP.Count, st.RelayToIMIP.Sum, outage)
	}
}
