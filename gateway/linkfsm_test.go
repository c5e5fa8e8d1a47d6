package gateway

import (
	"fmt"
	"slices"
	"testing"
)

func TestLinkMachine(t *testing.T) {
	type step struct {
		ev    linkEvent
		acts  []linkAction
		state linkState
	}
	var (
		want    = linkWant{on: true}
		unwant  = linkWant{on: false}
		ok      = linkDialed{result: dialOK}
		auth    = linkDialed{result: dialAuth}
		failed  = linkDialed{result: dialTransient}
		closed  = linkClosed{}
		retry   = linkRetryDue{}
		grace   = linkGraceDue{}
		adopt   = linkAdopt{}
		stop    = linkStop{}
		creds   = linkCredentials{}
		kick    = linkKick{}
		actions = func(a ...linkAction) []linkAction { return a }
	)
	cases := []struct {
		name  string
		steps []step
	}{
		{"first resource logs in", []step{
			{want, actions(actDial), linkDialing},
			{ok, actions(actCancelRetry, actUp), linkOnline},
		}},
		{"an admin logs the user out; presence does not log in, new credentials do", []step{
			{want, actions(actDial), linkDialing},
			{ok, actions(actCancelRetry, actUp), linkOnline},
			{kick, actions(actCancelGrace, actLogout), linkOffline},
			{want, nil, linkOffline},
			{kick, nil, linkOffline},
			{creds, actions(actDial), linkDialing},
			{kick, actions(actAbandonDial), linkOffline},
			{unwant, nil, linkOffline},
			{want, actions(actDial), linkDialing},
			{failed, actions(actLoginFailed, actArmRetry), linkRetryWait},
			{kick, actions(actCancelRetry), linkOffline},
		}},
		{"last resource logs out", []step{
			{want, actions(actDial), linkDialing},
			{ok, actions(actCancelRetry, actUp), linkOnline},
			{unwant, actions(actLogout), linkOffline},
		}},
		{"repeated availability changes nothing", []step{
			{want, actions(actDial), linkDialing},
			{want, nil, linkDialing},
			{ok, actions(actCancelRetry, actUp), linkOnline},
			{want, nil, linkOnline},
		}},
		{"user leaves during the login: the session is ended", []step{
			{want, actions(actDial), linkDialing},
			{unwant, nil, linkDialing},
			{ok, actions(actCancelRetry, actEndDialed), linkOffline},
		}},
		{"user leaves and comes back during the login", []step{
			{want, actions(actDial), linkDialing},
			{unwant, nil, linkDialing},
			{want, nil, linkDialing},
			{ok, actions(actCancelRetry, actUp), linkOnline},
		}},
		{"refused credentials are final", []step{
			{want, actions(actDial), linkDialing},
			{auth, actions(actCancelRetry, actAuthFailed), linkAuthFailed},
			{unwant, nil, linkAuthFailed},
			{want, nil, linkAuthFailed},
			{retry, nil, linkAuthFailed},
		}},
		{"a new registration ends auth-failed", []step{
			{want, actions(actDial), linkDialing},
			{auth, actions(actCancelRetry, actAuthFailed), linkAuthFailed},
			{adopt, actions(actUp), linkOnline},
		}},
		{"transient failure retries while wanted", []step{
			{want, actions(actDial), linkDialing},
			{failed, actions(actLoginFailed, actArmRetry), linkRetryWait},
			{retry, actions(actDial), linkDialing},
			{failed, actions(actLoginFailed, actArmRetry), linkRetryWait},
			{retry, actions(actDial), linkDialing},
			{ok, actions(actCancelRetry, actUp), linkOnline},
		}},
		{"transient failure after the user left: nothing to retry", []step{
			{want, actions(actDial), linkDialing},
			{unwant, nil, linkDialing},
			{failed, actions(actCancelRetry), linkOffline},
		}},
		{"user leaves while waiting to retry", []step{
			{want, actions(actDial), linkDialing},
			{failed, actions(actLoginFailed, actArmRetry), linkRetryWait},
			{unwant, actions(actCancelRetry), linkOffline},
			{retry, nil, linkOffline},
		}},
		{"dropped session retries", []step{
			{want, actions(actDial), linkDialing},
			{ok, actions(actCancelRetry, actUp), linkOnline},
			{closed, actions(actCancelGrace, actLost, actArmRetry), linkRetryWait},
			{retry, actions(actDial), linkDialing},
		}},
		{"registration without presence: grace, then logout", []step{
			{adopt, actions(actUp, actArmGrace), linkGrace},
			{grace, actions(actLogout), linkOffline},
			{grace, nil, linkOffline},
		}},
		{"registration, then the user's presence: online", []step{
			{adopt, actions(actUp, actArmGrace), linkGrace},
			{want, actions(actCancelGrace), linkOnline},
			{grace, nil, linkOnline},
		}},
		{"grace session dropped: no retry without presence", []step{
			{adopt, actions(actUp, actArmGrace), linkGrace},
			{closed, actions(actCancelGrace, actLost), linkOffline},
		}},
		{"re-registration replaces the live session", []step{
			{want, actions(actDial), linkDialing},
			{ok, actions(actCancelRetry, actUp), linkOnline},
			{adopt, actions(actCancelGrace, actLogout, actUp), linkOnline},
		}},
		{"registration during a login abandons it", []step{
			{want, actions(actDial), linkDialing},
			{adopt, actions(actAbandonDial, actUp), linkOnline},
			{ok, actions(actEndDialed), linkOnline},
		}},
		{"registration while waiting to retry", []step{
			{want, actions(actDial), linkDialing},
			{failed, actions(actLoginFailed, actArmRetry), linkRetryWait},
			{adopt, actions(actCancelRetry, actUp), linkOnline},
		}},
		{"new credentials end auth-failed: offline", []step{
			{want, actions(actDial), linkDialing},
			{auth, actions(actCancelRetry, actAuthFailed), linkAuthFailed},
			{unwant, nil, linkAuthFailed},
			{creds, nil, linkOffline},
			{want, actions(actDial), linkDialing},
		}},
		{"new credentials end auth-failed: a waiting user logs in", []step{
			{want, actions(actDial), linkDialing},
			{auth, actions(actCancelRetry, actAuthFailed), linkAuthFailed},
			{creds, actions(actDial), linkDialing},
		}},
		{"new credentials end a grace session", []step{
			{adopt, actions(actUp, actArmGrace), linkGrace},
			{creds, actions(actCancelGrace, actLogout), linkOffline},
		}},
		{"new credentials replace an online session of the old ones", []step{
			{want, actions(actDial), linkDialing},
			{ok, actions(actCancelRetry, actUp), linkOnline},
			{creds, actions(actCancelGrace, actLogout, actDial), linkDialing},
			{ok, actions(actCancelRetry, actUp), linkOnline},
		}},
		{"new credentials during a wanted login: it is abandoned, a new one starts", []step{
			{want, actions(actDial), linkDialing},
			{creds, actions(actAbandonDial, actDial), linkDialing},
			{ok, actions(actCancelRetry, actUp), linkOnline},
		}},
		{"new credentials during an unwanted login: a later want logs in with them", []step{
			{want, actions(actDial), linkDialing},
			{unwant, nil, linkDialing},
			{creds, actions(actAbandonDial), linkOffline},
			{want, actions(actDial), linkDialing},
		}},
		{"new credentials end a retry wait: the login is at once", []step{
			{want, actions(actDial), linkDialing},
			{failed, actions(actLoginFailed, actArmRetry), linkRetryWait},
			{creds, actions(actCancelRetry, actDial), linkDialing},
		}},
		{"new credentials while offline change nothing", []step{
			{creds, nil, linkOffline},
		}},
		{"stop while online logs out, then nothing", []step{
			{want, actions(actDial), linkDialing},
			{ok, actions(actCancelRetry, actUp), linkOnline},
			{stop, actions(actCancelGrace, actLogout), linkStopped},
			{want, nil, linkStopped},
			{adopt, nil, linkStopped},
			{closed, nil, linkStopped},
		}},
		{"stop while dialing: the late session is ended", []step{
			{want, actions(actDial), linkDialing},
			{stop, actions(actAbandonDial), linkStopped},
			{ok, actions(actEndDialed), linkStopped},
		}},
		{"stop while waiting to retry", []step{
			{want, actions(actDial), linkDialing},
			{failed, actions(actLoginFailed, actArmRetry), linkRetryWait},
			{stop, actions(actCancelRetry), linkStopped},
			{retry, nil, linkStopped},
		}},
		{"close of no session is ignored", []step{
			{closed, nil, linkOffline},
			{want, actions(actDial), linkDialing},
			{closed, nil, linkDialing},
		}},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d/%s", i, c.name), func(t *testing.T) {
			var l imipLink
			for j, s := range c.steps {
				got := l.apply(s.ev)
				if !slices.Equal(got, s.acts) || l.state != s.state {
					t.Fatalf("step %d: apply(%T%+v) = %v, state %v; want %v, state %v", j, s.ev, s.ev, got, l.state, s.acts, s.state)
				}
			}
		})
	}
}

// TestLinkMachineInvariants drives the machine with every event from every
// reachable state and checks what must always hold.
func TestLinkMachineInvariants(t *testing.T) {
	events := []linkEvent{linkWant{true}, linkWant{false}, linkDialed{dialOK}, linkDialed{dialAuth},
		linkDialed{dialTransient}, linkClosed{}, linkRetryDue{}, linkGraceDue{}, linkAdopt{}, linkStop{}, linkCredentials{}}
	type node struct {
		l    imipLink
		path string
	}
	seen := map[imipLink]bool{}
	queue := []node{{}}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if seen[n.l] {
			continue
		}
		seen[n.l] = true
		for _, ev := range events {
			l := n.l
			acts := l.apply(ev)
			path := fmt.Sprintf("%s -> %T%v", n.path, ev, ev)
			// A dial is started only when wanted, and only from the
			// dialing state.
			if slices.Contains(acts, actDial) && (l.state != linkDialing || !l.want) {
				t.Errorf("%s: dial in state %v want %v", path, l.state, l.want)
			}
			// A live session without resources is always the grace state.
			if l.state == linkOnline && !l.want {
				t.Errorf("%s: online without a resource", path)
			}
			// A retry is armed only in retry-wait.
			if slices.Contains(acts, actArmRetry) && l.state != linkRetryWait {
				t.Errorf("%s: retry armed in state %v", path, l.state)
			}
			// Leaving a live state always ends or loses the session.
			if n.l.state.live() && !l.state.live() && !slices.Contains(acts, actLogout) && !slices.Contains(acts, actLost) {
				t.Errorf("%s: left %v for %v without logout or lost", path, n.l.state, l.state)
			}
			queue = append(queue, node{l: l, path: path})
		}
	}
	if len(seen) < 9 { // offline, dialing×2, online, grace, retry-wait, auth-failed×2, stopped
		t.Fatalf("explored only %d states", len(seen))
	}
}
