package e2e

import (
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"imip-transport/imipside/wire"
)

// The cluster tests run several real transports behind one component name
// on ejabberd (domain_balancing type bare_source, component_number equal
// to the number of instances), all on one PostgreSQL store with one key
// file, beside the real imipd; the rig is in cluster_rig_test.go, and its
// switch (clusterDefault, E2E_CLUSTER) chooses between that and a single
// transport without cluster, which validates the harness.
//
// clusterUsers Jabber users are each registered with the gateway to their
// own IMIP number; each has one IMIP contact, an in-process IMIP client
// connected straight to imipd. Every pair sends numbered messages both
// ways at clusterRate a second each way, for clusterBefore before the
// fault and clusterAfter after recovery; then every message is classified
// as in the fault suite (faults_test.go): delivered, duplicated, bounced,
// not sent, ignored or lost, and the tests fail on any lost one.
//
// What ejabberd does with a component's slots decides what may be
// ignored. With component_number N, ejabberd routes each stanza to one of
// N slots by a hash of its sender's bare JID. When the connection that
// holds a slot closes (kill -9, or a graceful stop), the slot stays behind
// without a connection, and ejabberd drops every stanza routed to it
// without an error to the sender, until a new component connection takes
// the slot (internal/xmppserver's TestEjabberdComponentBalancing proves
// it on the installed ejabberd). Those stanzas never reach any transport:
// no transport can save or bounce them. So a Jabber -> IMIP message may be
// ignored (neither delivered nor bounced, and not counted as lost) only
// when it was sent between faultInFlight before the instance was killed
// or told to stop (what the transport had read but not stored, as in the
// fault suite) and the moment a component connection took a slot again
// after that (the first "cluster: slot connection up" line an instance
// logs after it; without cluster, the restarted transport's "xmpp
// component connected"). Nothing else is ignored, and nothing at all
// toward Jabber: imipd keeps a message until a transport confirmed it.
//
// Besides, no number may ever be logged in twice at once (imipd's
// "replaced by a new login" would show it), and every user whose IMIP
// session went down must be back within clusterBackBound. "Back" is
// measured on IMIP: the user's contact sees the number go OFFLINE and
// then ONLINE again (imipd's STAT), which is what IMIP users see of a
// failover.

const (
	clusterUsers  = 50
	clusterRate   = 2                // messages per second per user, each way
	clusterBefore = 3 * time.Second  // traffic before the fault
	clusterAfter  = 3 * time.Second  // traffic after recovery
	clusterDrain  = 30 * time.Second // bound on waiting for the last messages
	// clusterMargin is what clusterBackBound allows beyond the check
	// interval and the logins: noticing the dead peer (its database
	// session ends with the process), taking its slot and users, the
	// process start without cluster.
	clusterMargin = 5 * time.Second
	// clusterBackBound bounds, per user, the time from the kill (or
	// SIGTERM) to the user's number being online on IMIP again: one check
	// interval to notice, every user logged in again at the login rate,
	// and clusterMargin.
	clusterBackBound = clusterCheckInterval + clusterUsers*time.Second/clusterLoginRate + clusterMargin
)

// fault is one fault's times, for the ignore rule and the outages.
type clusterFault struct {
	what   string
	at     time.Time // kill or SIGTERM
	slotUp time.Time // first slot connection up after at
	by     string
}

// ignorable reports whether a Jabber message sent at at may be ignored
// under one of the faults (see the comment at the top).
func ignorableIn(faults []clusterFault) func(time.Time) bool {
	return func(at time.Time) bool {
		for _, f := range faults {
			if !at.Before(f.at.Add(-faultInFlight)) && !at.After(f.slotUp) {
				return true
			}
		}
		return false
	}
}

// slotMoves returns the slots an instance gave to another that joined
// (the cluster spreads its slots): each leaves its slot without a
// connection from the close of the giver's connection until the other's
// is up, a window like a fault's (see the comment at the top).
func (r *clusterRig) slotMoves() []clusterFault {
	var moves []clusterFault
	for _, n := range r.nodes {
		for _, l := range n.lines() {
			if l.msg != "cluster: closing a slot connection for another instance" {
				continue
			}
			m := clusterFault{what: "slot given by " + n.name(), at: l.at, slotUp: l.at, by: "nobody"}
			if at, by := r.firstLine(slotUpMsg(), l.at, func(*clusterNode) bool { return true }); by != nil {
				m.slotUp, m.by = at, by.name()
			}
			moves = append(moves, m)
		}
	}
	return moves
}

// waitSlotUp waits until an instance logged a slot connection up after
// since, and returns when and which (since and "nobody", with t marked
// failed, when none did within clusterBackBound).
func (r *clusterRig) waitSlotUp(since time.Time) (time.Time, string) {
	r.t.Helper()
	deadline := time.Now().Add(clusterBackBound)
	for {
		at, by := r.firstLine(slotUpMsg(), since, func(*clusterNode) bool { return true })
		if by != nil {
			return at, by.name()
		}
		if time.Now().After(deadline) {
			// Not fatal (see waitBack); without that moment no message
			// sent after the fault may be ignored.
			r.t.Errorf("no %q logged within %v after %v", slotUpMsg(), clusterBackBound, since.Format(time.StampMilli))
			return since, "nobody"
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitBack waits until every user in expect has gone OFFLINE after since
// and come back, and no other user that went OFFLINE is still off; it
// marks t failed at since + clusterBackBound and returns. It returns the time each user that
// went offline took to be back, counted from since.
func (r *clusterRig) waitBack(since time.Time, expect []wire.Number) map[wire.Number]time.Duration {
	r.t.Helper()
	deadline := since.Add(clusterBackBound)
	for {
		back := make(map[wire.Number]time.Duration)
		var waiting []wire.Number
		for _, cu := range r.users {
			off, on := cu.outage(since)
			switch {
			case !on.IsZero():
				back[cu.a.number] = on.Sub(since)
			case !off.IsZero() || slices.Contains(expect, cu.a.number):
				waiting = append(waiting, cu.a.number)
			}
		}
		if len(waiting) == 0 {
			return back
		}
		if time.Now().After(deadline) {
			// Not fatal: the traffic goes on, and the classification
			// at the end shows what became of the messages.
			r.t.Errorf("%d users not back on IMIP within %v: %v", len(waiting), clusterBackBound, waiting)
			return back
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logShares prints how many users each instance serves and how many slot
// connections it brought up so far.
func (r *clusterRig) logShares(served map[int][]wire.Number) {
	for _, n := range r.nodes {
		ups := 0
		for _, l := range n.lines() {
			if l.msg == slotUpMsg() {
				ups++
			}
		}
		r.t.Logf("%s (running %v) serves %d users; %q lines so far: %d", n.name(), n.running(), len(served[n.idx]), slotUpMsg(), ups)
	}
}

// report prints one fault's outages.
func reportBack(t *testing.T, what string, back map[wire.Number]time.Duration) time.Duration {
	var all []time.Duration
	for _, d := range back {
		all = append(all, d)
	}
	slices.Sort(all)
	if len(all) == 0 {
		t.Logf("%s: no user came back on IMIP after going offline", what)
		return 0
	}
	maxBack := all[len(all)-1]
	t.Logf("%s: %d users went offline on IMIP and came back, after median %v, max %v (bound %v)",
		what, len(all), all[len(all)/2].Round(time.Millisecond), maxBack.Round(time.Millisecond), clusterBackBound)
	return maxBack
}

// finish stops the traffic, classifies, prints and checks.
func (r *clusterRig) finish(name string, traffic *clusterTraffic, faults []clusterFault, began time.Time) {
	t := r.t
	traffic.halt()
	moves := r.slotMoves()
	for _, m := range moves {
		t.Logf("%s at %s; slot up again at %s by %s (+%v)", m.what, m.at.Format("15:04:05.000"),
			m.slotUp.Format("15:04:05.000"), m.by, m.slotUp.Sub(m.at).Round(time.Millisecond))
	}
	up, down, lostUp, lostDown := r.drain(ignorableIn(append(slices.Clone(faults), moves...)))
	for _, f := range faults {
		t.Logf("%s at %s; slot up again at %s by %s (+%v)", f.what, f.at.Format("15:04:05.000"),
			f.slotUp.Format("15:04:05.000"), f.by, f.slotUp.Sub(f.at).Round(time.Millisecond))
	}
	// Outages over each fault's whole window (up to the next fault): a
	// user may go offline more than once (moved again after the first
	// takeover); the bound is on its last return.
	for i, f := range faults {
		until := time.Now()
		if i+1 < len(faults) {
			until = faults[i+1].at
		}
		var flaps []wire.Number
		var worst time.Duration
		var worstUser wire.Number
		for _, cu := range r.users {
			n, back := cu.settled(f.at, until)
			if n > 1 {
				flaps = append(flaps, cu.a.number)
			}
			if n > 0 && back.IsZero() {
				t.Errorf("%s: user %s still offline on IMIP", f.what, cu.a.number)
			}
			if d := back.Sub(f.at); n > 0 && d > worst {
				worst, worstUser = d, cu.a.number
			}
		}
		if worstUser != "" {
			t.Logf("%s: last return to IMIP %v after (user %s); %d users went offline more than once: %v",
				f.what, worst.Round(time.Millisecond), worstUser, len(flaps), flaps)
		}
		fmt.Fprintf(os.Stderr, "%s: %s: users settled on IMIP after max %v (bound %v); %d users went offline more than once\n",
			name, f.what, worst.Round(time.Millisecond), clusterBackBound, len(flaps))
		if worst > clusterBackBound {
			t.Errorf("%s: user %s settled on IMIP only %v after, beyond the bound %v", f.what, worstUser, worst.Round(time.Millisecond), clusterBackBound)
		}
	}
	t.Logf("Jabber -> IMIP: %v", up)
	t.Logf("IMIP -> Jabber: %v", down)
	fmt.Fprintf(os.Stderr, "%s (%d instance(s), %d users): Jabber -> IMIP: %v; IMIP -> Jabber: %v; took %v\n",
		name, len(r.nodes), len(r.users), up, down, time.Since(began).Round(time.Millisecond))
	if up.lost > 0 || down.lost > 0 {
		t.Errorf("lost messages, by user number: Jabber -> IMIP %v; IMIP -> Jabber %v", lostUp, lostDown)
		// When, against the faults' times above (the first few per user).
		for _, cu := range r.users {
			for dir, nums := range map[string][]int{"Jabber -> IMIP": lostUp[cu.a.number], "IMIP -> Jabber": lostDown[cu.a.number]} {
				var at []string
				for i, n := range nums {
					if i == 3 {
						at = append(at, "...")
						break
					}
					if dir == "Jabber -> IMIP" {
						cu.j.mu.Lock()
						at = append(at, fmt.Sprintf("%d at %s", n, cu.j.sent[n].at.Format("15:04:05.000")))
						cu.j.mu.Unlock()
					} else {
						cu.u.mu.Lock()
						at = append(at, fmt.Sprintf("%d at %s", n, cu.u.sent[n].at.Format("15:04:05.000")))
						cu.u.mu.Unlock()
					}
				}
				if len(at) > 0 {
					t.Logf("lost %s, user %s: %v", dir, cu.a.number, at)
				}
			}
		}
	}
	if n := r.imipdReplaced(); n != 0 {
		t.Errorf("imipd logged %d \"replaced by a new login\": a number was logged in twice at once", n)
	}
}

// TestClusterKill9 kills the instance serving the most users with SIGKILL
// and checks that the others take over its users (without cluster: that
// the restarted transport does), within clusterBackBound each, without a
// lost message or a double login.
func TestClusterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("the cluster tests take about 40 s")
	}
	began := time.Now()
	r := newClusterRig(t, clusterUsers)
	traffic := r.startTraffic()
	time.Sleep(clusterBefore) // steady traffic before the fault (the rate decides the count)

	served := r.servedBy(time.Now())
	victim := r.nodes[0]
	for _, n := range r.nodes {
		if len(served[n.idx]) > len(served[victim.idx]) {
			victim = n
		}
	}
	r.logShares(served)
	f := clusterFault{what: "kill -9 " + victim.name(), at: time.Now()}
	victim.stop(syscall.SIGKILL)
	if !clusterOn() {
		victim.start() // alone, it comes back itself; in a cluster the survivors take over
	}
	f.slotUp, f.by = r.waitSlotUp(f.at)
	back := r.waitBack(f.at, served[victim.idx])
	maxBack := reportBack(t, f.what, back)
	fmt.Fprintf(os.Stderr, "%s: users back on IMIP after the kill: max %v (bound %v)\n", t.Name(), maxBack.Round(time.Millisecond), clusterBackBound)
	time.Sleep(clusterAfter) // and after it
	r.waitAllOnline(time.Now().Add(clusterBackBound))
	r.finish(t.Name(), traffic, []clusterFault{f}, began)
}

// TestClusterRollingRestart stops each instance in turn with SIGTERM,
// waits for its exit, starts it again and waits until it is healthy,
// under traffic; same guarantees as TestClusterKill9.
func TestClusterRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("the cluster tests take about 40 s")
	}
	began := time.Now()
	r := newClusterRig(t, clusterUsers)
	traffic := r.startTraffic()
	time.Sleep(clusterBefore) // steady traffic before the first restart
	var faults []clusterFault
	var maxBack time.Duration
	for i, n := range r.nodes {
		if i > 0 {
			// The previous restart's hand-overs are over (the restarted
			// instance holds a slot again, and the users of that slot
			// moved to it), as in an administrator's rolling upgrade.
			r.waitSettled(time.Second, time.Now().Add(clusterBackBound))
		}
		served := r.servedBy(time.Now())
		r.logShares(served)
		f := clusterFault{what: "SIGTERM " + n.name(), at: time.Now()}
		n.stop(syscall.SIGTERM)
		stopped := time.Since(f.at)
		n.start()
		n.waitHealthy()
		t.Logf("%s: exited after %v, healthy again after %v", f.what, stopped.Round(time.Millisecond), time.Since(f.at).Round(time.Millisecond))
		f.slotUp, f.by = r.waitSlotUp(f.at)
		back := r.waitBack(f.at, served[n.idx])
		maxBack = max(maxBack, reportBack(t, f.what, back))
		faults = append(faults, f)
	}
	fmt.Fprintf(os.Stderr, "%s: users back on IMIP after a restart: max %v (bound %v)\n", t.Name(), maxBack.Round(time.Millisecond), clusterBackBound)
	time.Sleep(clusterAfter) // traffic after the last restart
	// The last restart's hand-overs are over too: the slot given to the
	// restarted instance brings its users there.
	r.waitSettled(time.Second, time.Now().Add(clusterBackBound))
	r.finish(t.Name(), traffic, faults, began)
}
