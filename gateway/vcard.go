package gateway

import (
	"context"
	"fmt"
	"sync/atomic"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside/wire"
	"imip-transport/roster"
	"imip-transport/xmppside"
)

// What a contact's vCard shows (xmppside.CardProvider):
//
//   - asked by a registered user about a contact of theirs (on their IMIP
//     list, or a request either way): FN and NICKNAME are the contact's
//     IMIP nickname as the gateway knows it (the Buddy list, the contact's
//     request), FN the number when there is none; NOTE (vCard4 note, and
//     vcard-temp DESC, which older clients show as "About") says
//     "IMIP number N".
//   - about any other number, or asked by anyone not registered: FN and the
//     note carry the number only, which the JID says already: nothing of any
//     user's contact list reaches anyone else.
//   - a JID whose local part is no IMIP number: item-not-found.
//
// A registered user's contacts belong to that user's run loop. The first
// vCard request of a user goes through the inbox (evCard) like any other
// event, and the component waits for the answer in a goroutine of its own,
// never on its read loop. The run loop answers it and leaves a read-safe
// copy of the contacts' nicknames (cardSnap) in the user value: later
// requests are answered from it at once, on the component's read loop
// (CardNow), until the list changes; then the run loop drops the copy at the
// end of the event that changed it, and the next request makes a new one.

// Card implements xmppside.CardProvider: the slow path, for a registered
// user without a copy of the nicknames.
func (g *Gateway) Card(ctx context.Context, asker, about jid.JID) (xmppside.Card, error) {
	if c, ok, err := g.CardNow(asker, about); ok {
		return c, err
	}
	n, _ := roster.Number(about, g.cfg.Domain) // valid: CardNow checked it
	nick, err := g.contactNick(ctx, asker.Bare(), n)
	if err != nil {
		return xmppside.Card{}, err
	}
	return contactCard(n, nick), nil
}

// CardNow implements xmppside.CardProvider: everything but a registered
// user's first request (or the first since their list changed) is answered
// at once. It takes only the registry's lock and the user's.
func (g *Gateway) CardNow(asker, about jid.JID) (xmppside.Card, bool, error) {
	if about.Localpart() == "" {
		// The gateway itself; an empty FullName is the disco identity
		// name, which is ServiceName once an IMIP server said its name.
		return xmppside.Card{FullName: g.ServiceName(), Note: "Gateway to the IMIP network."}, true, nil
	}
	n, err := roster.Number(about, g.cfg.Domain)
	if err != nil {
		return xmppside.Card{}, true, &xmppside.Error{Condition: stanza.ItemNotFound, Text: "Not an IMIP number."}
	}
	if asker.Localpart() == "" {
		return contactCard(n, ""), true, nil // a server or a component
	}
	bare := asker.Bare()
	u := g.loadedUser(bare)
	if u == nil {
		if g.isRegistered(bare.String()) {
			return xmppside.Card{}, false, nil // its run loop loads it
		}
		return contactCard(n, ""), true, nil // a stranger
	}
	s := u.cards.Load()
	if s == nil || u.isGone() {
		return xmppside.Card{}, false, nil
	}
	return contactCard(n, s.nicks[n]), true, nil
}

// contactCard is the card of number n with nickname nick ("" for none).
func contactCard(n wire.Number, nick string) xmppside.Card {
	c := xmppside.Card{FullName: string(n), Nickname: nick, Note: "IMIP number " + string(n)}
	if nick != "" {
		c.FullName = nick
	}
	return c
}

// evCard asks a user's run loop for the nickname of a contact; the loop
// sends "" when the number is none of the user's contacts.
type evCard struct {
	n     wire.Number
	reply chan string // buffered: the loop never waits on it
}

func (evCard) isEvent() {}

// contactNick returns the nickname of contact n in the list of user bare,
// "" when bare is not registered or n is not on its list.
func (g *Gateway) contactNick(ctx context.Context, bare jid.JID, n wire.Number) (string, error) {
	u := g.userFor(bare, false)
	if u == nil {
		return "", nil
	}
	ev := evCard{n: n, reply: make(chan string, 1)}
	if !u.post(ev) {
		// A full inbox, or the user value stopped: unregistered (perhaps
		// registered again since) or the gateway is stopping.
		nu := g.userFor(bare, false)
		switch {
		case nu == nil || g.isClosing():
			return "", nil
		case nu == u || !nu.post(ev):
			return "", &xmppside.Error{Condition: stanza.ResourceConstraint, Text: "Busy; try again shortly."}
		}
	}
	select {
	case nick := <-ev.reply:
		return nick, nil
	case <-ctx.Done():
		return "", fmt.Errorf("gateway: vCard of %s for %s: %w", n, bare, ctx.Err())
	}
}

// onCard answers an evCard on the run loop, and leaves the copy of the
// nicknames for the next requests.
func (u *user) onCard(ev evCard) {
	if u.reg == nil || u.isGone() {
		ev.reply <- ""
		return
	}
	s := u.cards.Load()
	if s == nil {
		s = &cardSnap{list: u.list, gen: u.list.Gen(), nicks: make(map[wire.Number]string)}
		for _, c := range u.list.Contacts() {
			if c.Nick != "" {
				s.nicks[c.Number] = c.Nick
			}
		}
		u.cards.Store(s)
	}
	ev.reply <- s.nicks[ev.n]
}

// cardSnap is a read-safe copy of the nicknames of a user's contacts, as of
// generation gen of list. It is never changed once stored.
type cardSnap struct {
	list  *roster.List
	gen   uint64
	nicks map[wire.Number]string // contacts with a nickname
}

// dropStaleCards drops the copy of the nicknames once the list changed. The
// run loop calls it after each event.
func (u *user) dropStaleCards() {
	if s := u.cards.Load(); s != nil && (s.list != u.list || s.gen != u.list.Gen()) {
		u.cards.Store(nil)
	}
}

// serviceName is the one place that holds the IMIP service's name: the
// ServiceDisplayName of the newest HELO reply a login saw (every login
// reads one; they all come from the one configured IMIP server).
type serviceName struct{ v atomic.Pointer[string] }

// serviceNamer is what an IMIPSession tells of the server's HELO reply
// (imipside.Session does).
type serviceNamer interface{ ServiceDisplayName() string }

// noteService records the service name of a session that just logged in.
func (g *Gateway) noteService(s IMIPSession) {
	sn, ok := s.(serviceNamer)
	if !ok {
		return
	}
	name := sn.ServiceDisplayName()
	if name == "" {
		return
	}
	if old := g.service.v.Swap(&name); old == nil || *old != name {
		g.log.Info("IMIP service name", "name", name)
	}
}

// ServiceName implements xmppside.ServiceNamer: the IMIP service's name
// from the newest login's HELO reply, "" before any login.
func (g *Gateway) ServiceName() string {
	if p := g.service.v.Load(); p != nil {
		return *p
	}
	return ""
}

var (
	_ xmppside.CardProvider = (*Gateway)(nil)
	_ xmppside.ServiceNamer = (*Gateway)(nil)
)
