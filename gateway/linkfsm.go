package gateway

// The IMIP link of one user as a pure state machine: no goroutine, no
// clock, no I/O. The user's run loop feeds it events and carries out the
// actions it returns (see user.execLink).

// linkState is where a user's IMIP link stands.
type linkState uint8

const (
	// linkOffline: no session, no login in flight, nothing armed.
	linkOffline linkState = iota
	// linkDialing: a login is in flight on its own goroutine.
	linkDialing
	// linkOnline: a session is live and the user has an available resource.
	linkOnline
	// linkGrace: a session is live although the user has no available
	// resource yet: the login that checked a registration, kept until the
	// user's presence arrives or the grace period ends.
	linkGrace
	// linkRetryWait: a login failed or the session dropped; the next login
	// waits for the retry timer.
	linkRetryWait
	// linkAuthFailed: IMIP refused the credentials; nothing is tried again
	// until the user registers anew.
	linkAuthFailed
	// linkStopped: the user unregistered or the gateway shuts down.
	linkStopped
)

var linkStateNames = [...]string{"offline", "dialing", "online", "grace", "retry-wait", "auth-failed", "stopped"}

func (s linkState) String() string {
	if int(s) < len(linkStateNames) {
		return linkStateNames[s]
	}
	return "invalid"
}

// live reports whether a session is live in state s.
func (s linkState) live() bool { return s == linkOnline || s == linkGrace }

// dialResult is how a login ended.
type dialResult uint8

const (
	dialOK        dialResult = iota + 1
	dialAuth                 // refused credentials (ACK 810 or 811): final
	dialTransient            // anything else: try again later
)

// Events of the link machine.
type (
	// linkWant: the user's availability changed: on means at least one
	// resource is available.
	linkWant struct{ on bool }
	// linkDialed: the login in flight ended.
	linkDialed struct{ result dialResult }
	// linkClosed: the live session ended on its own (dropped, kicked).
	linkClosed struct{}
	// linkRetryDue: the retry timer fired.
	linkRetryDue struct{}
	// linkGraceDue: the registration's grace period ended.
	linkGraceDue struct{}
	// linkAdopt: a registration checked new credentials with a login of
	// its own; that session becomes the live one, whatever came before.
	linkAdopt struct{}
	// linkCredentials: a registration stored new credentials and its own
	// login was not kept: an auth failure no longer holds, and a session
	// or a login of the old credentials ends (a wanted link logs in anew).
	linkCredentials struct{}
	// linkStop: unregistration or shutdown; the link never comes back.
	linkStop struct{}
	// linkKick: an administrator logged the user out: the session or the
	// login ends and the link stays offline, wanted or not, until the
	// user's availability changes (all resources gone, then one back) or
	// new credentials come (linkCredentials).
	linkKick struct{}
)

type linkEvent interface{ isLinkEvent() }

func (linkWant) isLinkEvent()        {}
func (linkDialed) isLinkEvent()      {}
func (linkClosed) isLinkEvent()      {}
func (linkRetryDue) isLinkEvent()    {}
func (linkGraceDue) isLinkEvent()    {}
func (linkAdopt) isLinkEvent()       {}
func (linkStop) isLinkEvent()        {}
func (linkCredentials) isLinkEvent() {}
func (linkKick) isLinkEvent()        {}

// linkAction is what the run loop must do, in the order given.
type linkAction uint8

const (
	actDial        linkAction = iota + 1 // start a login
	actAbandonDial                       // the login in flight is no longer wanted: end it when it returns
	actEndDialed                         // end the session the finished login produced, unused
	actLogout                            // end the live session (DISC)
	actUp                                // a session became live: STAT, presences, roster sync, queued messages
	actLost                              // the live session is gone: the user's contacts go offline
	actLoginFailed                       // tell the user a login failed and will be retried
	actAuthFailed                        // tell the user IMIP refused the credentials
	actArmRetry                          // arm the retry timer (the backoff picks the delay)
	actCancelRetry                       // disarm it, and start the backoff afresh
	actArmGrace                          // arm the grace timer
	actCancelGrace                       // disarm it
)

var linkActionNames = [...]string{"", "dial", "abandon-dial", "end-dialed", "logout", "up", "lost",
	"login-failed", "auth-failed", "arm-retry", "cancel-retry", "arm-grace", "cancel-grace"}

func (a linkAction) String() string {
	if int(a) < len(linkActionNames) {
		return linkActionNames[a]
	}
	return "invalid"
}

// imipLink is the link machine. The zero value is offline, unwanted.
type imipLink struct {
	state linkState
	want  bool // at least one resource of the user is available
}

// apply runs ev and returns the actions, in order. Events that do not fit
// the state change nothing and return nil.
func (l *imipLink) apply(ev linkEvent) []linkAction {
	if l.state == linkStopped {
		if _, ok := ev.(linkDialed); ok {
			return []linkAction{actEndDialed}
		}
		return nil
	}
	switch ev := ev.(type) {
	case linkWant:
		return l.onWant(ev.on)
	case linkDialed:
		return l.onDialed(ev.result)
	case linkClosed:
		if !l.state.live() {
			return nil
		}
		if l.want {
			l.state = linkRetryWait
			return []linkAction{actCancelGrace, actLost, actArmRetry}
		}
		l.state = linkOffline
		return []linkAction{actCancelGrace, actLost}
	case linkRetryDue:
		if l.state != linkRetryWait {
			return nil
		}
		if !l.want {
			l.state = linkOffline
			return nil
		}
		l.state = linkDialing
		return []linkAction{actDial}
	case linkGraceDue:
		if l.state != linkGrace {
			return nil
		}
		l.state = linkOffline
		return []linkAction{actLogout}
	case linkAdopt:
		var acts []linkAction
		switch l.state {
		case linkOnline, linkGrace:
			acts = append(acts, actCancelGrace, actLogout)
		case linkDialing:
			acts = append(acts, actAbandonDial)
		case linkRetryWait:
			acts = append(acts, actCancelRetry)
		}
		acts = append(acts, actUp)
		if l.want {
			l.state = linkOnline
		} else {
			l.state = linkGrace
			acts = append(acts, actArmGrace)
		}
		return acts
	case linkCredentials:
		// Whatever used the old credentials ends; a wanted link logs in
		// with the new ones at once.
		var acts []linkAction
		switch l.state {
		case linkAuthFailed, linkOffline:
		case linkDialing:
			// The login in flight checks the old credentials: its outcome
			// (a refusal above all) says nothing about the new ones.
			acts = []linkAction{actAbandonDial}
		case linkRetryWait:
			acts = []linkAction{actCancelRetry}
		case linkOnline, linkGrace:
			acts = []linkAction{actCancelGrace, actLogout}
		default:
			return nil
		}
		if l.want {
			l.state = linkDialing
			return append(acts, actDial)
		}
		l.state = linkOffline
		return acts
	case linkKick:
		var acts []linkAction
		switch l.state {
		case linkOnline, linkGrace:
			acts = []linkAction{actCancelGrace, actLogout}
		case linkDialing:
			acts = []linkAction{actAbandonDial}
		case linkRetryWait:
			acts = []linkAction{actCancelRetry}
		default:
			return nil
		}
		l.state = linkOffline
		return acts
	case linkStop:
		var acts []linkAction
		switch l.state {
		case linkOnline, linkGrace:
			acts = []linkAction{actCancelGrace, actLogout}
		case linkDialing:
			acts = []linkAction{actAbandonDial}
		case linkRetryWait:
			acts = []linkAction{actCancelRetry}
		}
		l.state, l.want = linkStopped, false
		return acts
	}
	return nil
}

func (l *imipLink) onWant(on bool) []linkAction {
	if on == l.want {
		return nil
	}
	l.want = on
	switch {
	case on && l.state == linkOffline:
		l.state = linkDialing
		return []linkAction{actDial}
	case on && l.state == linkGrace:
		l.state = linkOnline
		return []linkAction{actCancelGrace}
	case !on && l.state == linkOnline:
		l.state = linkOffline
		return []linkAction{actLogout}
	case !on && l.state == linkRetryWait:
		l.state = linkOffline
		return []linkAction{actCancelRetry}
	}
	// Dialing: the result decides (an unwanted session is ended then).
	// Auth failed: only a new registration helps.
	return nil
}

func (l *imipLink) onDialed(r dialResult) []linkAction {
	if l.state != linkDialing {
		// A login nobody waits for any more (an adopted registration
		// replaced it).
		if r == dialOK {
			return []linkAction{actEndDialed}
		}
		return nil
	}
	switch {
	case r == dialOK && l.want:
		l.state = linkOnline
		return []linkAction{actCancelRetry, actUp}
	case r == dialOK:
		l.state = linkOffline
		return []linkAction{actCancelRetry, actEndDialed}
	case r == dialAuth:
		l.state = linkAuthFailed
		return []linkAction{actCancelRetry, actAuthFailed}
	case l.want:
		l.state = linkRetryWait
		return []linkAction{actLoginFailed, actArmRetry}
	default:
		l.state = linkOffline
		return []linkAction{actCancelRetry}
	}
}
