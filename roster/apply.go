package roster

import "imip-transport/imipside/wire"

// Apply applies ev to the list and returns the actions the gateway must carry
// out, in order. It returns nil when ev changes nothing and needs no answer.
// Every change of state ends with [Persist].
// Events with an invalid number are ignored.
func (l *List) Apply(ev Event) []Action {
	switch ev := ev.(type) {
	case UserSubscribe:
		return l.userSubscribe(ev)
	case UserSubscribed:
		return l.userSubscribed(ev)
	case UserUnsubscribe:
		return l.userUnsubscribe(ev)
	case UserUnsubscribed:
		return l.userUnsubscribed(ev)
	case ServerStat:
		return l.accepted(ev.Number, "")
	case ServerListAccept:
		return l.accepted(ev.Number, ev.Nick)
	case ServerListAdd:
		return l.serverListAdd(ev)
	case ServerListReject:
		return l.serverListReject(ev)
	case ServerListRemove:
		return l.serverListRemove(ev)
	}
	return nil
}

// lookup returns contact n (or a new one), whether it existed, and whether n
// is a valid number at all.
func (l *List) lookup(n wire.Number) (c Contact, found, valid bool) {
	if !n.Valid() {
		return Contact{}, false, false
	}
	c, found = l.Contact(n)
	if !found {
		c.Number = n
	}
	return c, found, true
}

func (l *List) userSubscribe(ev UserSubscribe) []Action {
	c, _, ok := l.lookup(ev.Number)
	switch {
	case !ok:
		return nil
	case c.InList:
		// Already on the list: confirm at once, nothing for IMIP.
		return []Action{PresenceToUser{From: c.Number, Type: Subscribed}}
	case c.PendingOut:
		// The request is out already; do not pester the contact twice.
		return nil
	}
	c.PendingOut, c.OutText = true, ev.Status
	l.put(c)
	return []Action{SendListAdd{Number: c.Number, Text: ev.Status}, Persist{Number: c.Number}}
}

// accepted handles the contact's acceptance of the user's request: its first
// STAT (nick empty) or a LIST ACCEPT.
func (l *List) accepted(n wire.Number, nick string) []Action {
	c, found, _ := l.lookup(n)
	if !found || !c.PendingOut {
		return nil
	}
	c.InList, c.PendingOut, c.OutText = true, false, ""
	if nick != "" {
		c.Nick = nick
	}
	l.put(c)
	return []Action{
		PresenceToUser{From: c.Number, Type: Subscribed},
		RosterUpsert{Contact: c},
		Persist{Number: c.Number},
	}
}

func (l *List) serverListReject(ev ServerListReject) []Action {
	c, found, _ := l.lookup(ev.Number)
	if !found || !c.PendingOut {
		return nil
	}
	c.PendingOut, c.OutText = false, ""
	l.put(c) // drops the contact unless a request of its own is pending
	return []Action{PresenceToUser{From: c.Number, Type: Unsubscribed}, Persist{Number: c.Number}}
}

func (l *List) serverListAdd(ev ServerListAdd) []Action {
	c, _, ok := l.lookup(ev.Number)
	if !ok || c.PendingIn {
		// Invalid, or a repeated request: the user was asked already.
		return nil
	}
	c.PendingIn, c.InText = true, ev.Text
	if c.Nick == "" {
		c.Nick = ev.Nick
	}
	l.put(c)
	return []Action{
		PresenceToUser{From: c.Number, Type: Subscribe, Nick: ev.Nick, Status: ev.Text},
		Persist{Number: c.Number},
	}
}

func (l *List) userSubscribed(ev UserSubscribed) []Action {
	c, found, _ := l.lookup(ev.Number)
	if !found || !c.PendingIn {
		// IMIP has no pre-approval: nothing to accept.
		return nil
	}
	c.PendingIn, c.InText = false, ""
	l.put(c)
	return []Action{SendListAccept{Number: c.Number, Nick: c.Nick}, Persist{Number: c.Number}}
}

func (l *List) userUnsubscribed(ev UserUnsubscribed) []Action {
	c, found, _ := l.lookup(ev.Number)
	if !found || !c.PendingIn {
		// Declining something IMIP never asked for: never touch the list.
		return nil
	}
	c.PendingIn, c.InText = false, ""
	l.put(c)
	return []Action{SendListReject{Number: c.Number}, Persist{Number: c.Number}}
}

func (l *List) userUnsubscribe(ev UserUnsubscribe) []Action {
	c, found, _ := l.lookup(ev.Number)
	switch {
	case !found:
		return nil
	case c.PendingOut:
		c.PendingOut, c.OutText = false, ""
	case c.InList && !l.AllowRemove:
		return []Action{Refused{Number: c.Number, Reason: RefuseRemove}}
	case c.InList:
		c.InList = false
	default:
		// Only the contact's own request is pending: nothing to withdraw.
		return nil
	}
	l.put(c)
	return []Action{SendListRemove{Number: c.Number}, Persist{Number: c.Number}}
}

func (l *List) serverListRemove(ev ServerListRemove) []Action {
	n := ev.Number
	if _, found, valid := l.lookup(n); !found {
		if !valid {
			return nil
		}
		// Not on the list (the user may have dropped it first): the
		// subscription the contact had still ends on the XMPP side.
		return []Action{
			PresenceToUser{From: n, Type: Unsubscribe},
			PresenceToUser{From: n, Type: Unsubscribed},
		}
	}
	l.drop(n)
	return []Action{
		PresenceToUser{From: n, Type: Unsubscribe},
		PresenceToUser{From: n, Type: Unsubscribed},
		RosterRemove{Number: n},
		Persist{Number: n},
	}
}
