package xmppside

import (
	"context"
	"fmt"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// grantPrivileges records a XEP-0356 announcement, keyed by the sender's
// domain. Only a server (a bare domain: no localpart, no resourcepart, not
// the component's) may grant privileges, and its grant only covers users of
// that domain (see PrivilegesFor).
func (c *Component) grantPrivileges(from jid.JID, w *wirePrivilege) {
	if from.Localpart() != "" || from.Resourcepart() != "" || from.Domainpart() == c.domain.Domainpart() {
		c.log.Warn("xmpp ignoring privilege announcement from a non-server", "from", from.String())
		return
	}
	p := Privileges{Server: from, Namespace: w.Space, Roster: "none", Message: "none", Presence: "none"}
	for _, perm := range w.Perms {
		switch perm.Access {
		case "roster":
			p.Roster = perm.Type
		case "message":
			p.Message = perm.Type
		case "presence":
			p.Presence = perm.Type
		}
	}
	c.privMu.Lock()
	if c.privs == nil {
		c.privs = make(map[string]Privileges, 1)
	}
	c.privs[from.Domainpart()] = p
	c.last = p
	c.privMu.Unlock()
	c.log.Info("xmpp privileges granted", "server", from.String(), "ns", p.Namespace,
		"roster", p.Roster, "message", p.Message, "presence", p.Presence)
	if ph, ok := c.h.(PrivilegeHandler); ok {
		ph.HandlePrivileges(p)
	}
}

// resetPrivileges forgets the grants of a previous link.
func (c *Component) resetPrivileges() {
	c.privMu.Lock()
	c.privs = nil
	c.last = Privileges{}
	c.privMu.Unlock()
}

// Privileges returns the most recent XEP-0356 grant on the current link
// (the zero value if none), whichever server sent it.
//
// Deprecated: any server domain may send a grant (a federated one too), so
// the most recent grant says nothing about a given user's server. Use
// PrivilegesFor(user), which only looks at the grant of user's own domain.
func (c *Component) Privileges() Privileges {
	c.privMu.Lock()
	defer c.privMu.Unlock()
	return c.last
}

// PrivilegesFor returns the XEP-0356 grant that the server of user's
// domainpart (e.g. localhost for juliet@localhost/balcony) made on the
// current link, or the zero value (Namespace "", nothing allowed) if that
// server granted nothing. A grant from any other domain never changes it.
// The gateway should check privileges with this, per user.
func (c *Component) PrivilegesFor(user jid.JID) Privileges {
	c.privMu.Lock()
	defer c.privMu.Unlock()
	return c.privs[user.Domainpart()]
}

// wireRoster is a jabber:iq:roster query.
type wireRoster struct {
	Items []struct {
		JID          string   `xml:"jid,attr"`
		Name         string   `xml:"name,attr"`
		Subscription string   `xml:"subscription,attr"`
		Groups       []string `xml:"group"`
	} `xml:"item"`
}

// RosterGet reads user's roster through the XEP-0356 privilege: a roster
// get from the component to the user's bare JID.
// It returns ErrNoPrivilege (before sending anything) when the user's server
// granted no roster read, a stanza.Error when the server refuses, and the
// SendIQ errors otherwise; callers fall back on any of them.
func (c *Component) RosterGet(ctx context.Context, user jid.JID) ([]RosterItem, error) {
	if !c.PrivilegesFor(user).CanGetRoster() {
		return nil, fmt.Errorf("%w: get for %s", ErrNoPrivilege, user.Bare())
	}
	var q wireRoster
	iq := stanza.IQ{Type: stanza.GetIQ, To: user.Bare()}
	if err := c.UnmarshalIQ(ctx, iq, elem(nsRoster, "query", nil), &q); err != nil {
		return nil, fmt.Errorf("xmppside: roster get for %s: %w", user.Bare(), err)
	}
	items := make([]RosterItem, 0, len(q.Items))
	for _, it := range q.Items {
		j, err := jid.Parse(it.JID)
		if err != nil {
			continue
		}
		items = append(items, RosterItem{JID: j, Name: it.Name, Subscription: it.Subscription, Groups: it.Groups})
	}
	return items, nil
}

// RosterSet changes user's roster through the XEP-0356 privilege, one
// roster set per item (RFC 6121 allows one item per set), in order.
// Items with Remove are deleted; a non-empty Subscription is passed on
// (servers with XEP-0356 honour it). Errors as RosterGet; it stops at the
// first failing item.
func (c *Component) RosterSet(ctx context.Context, user jid.JID, items []RosterItem) error {
	if !c.PrivilegesFor(user).CanSetRoster() {
		return fmt.Errorf("%w: set for %s", ErrNoPrivilege, user.Bare())
	}
	for _, it := range items {
		if it.JID.String() == "" {
			return fmt.Errorf("xmppside: roster set for %s: item without jid", user.Bare())
		}
		sub := it.Subscription
		if it.Remove {
			sub = "remove"
		}
		iq := stanza.IQ{Type: stanza.SetIQ, To: user.Bare()}
		q := elem(nsRoster, "query", nil, itemElem(it, "subscription", sub))
		if err := c.UnmarshalIQ(ctx, iq, q, nil); err != nil {
			return fmt.Errorf("xmppside: roster set %s for %s: %w", it.JID, user.Bare(), err)
		}
	}
	return nil
}
