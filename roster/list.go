package roster

import (
	"cmp"
	"slices"

	"imip-transport/imipside/wire"
)

// Contact is one entry of a user's contact list, as stored.
// A contact with none of InList, PendingOut and PendingIn set is not kept.
type Contact struct {
	Number wire.Number
	// Nick is the contact's nickname, from the server's Buddy list or from
	// the contact's own request.
	Nick string
	// InList: the contact is on the user's IMIP list (the user receives its
	// presence).
	InList bool
	// PendingOut: the user asked to add the contact; no answer yet.
	PendingOut bool
	// OutText is the text sent with the user's request.
	OutText string
	// PendingIn: the contact asked to add the user; the user has not
	// answered yet.
	PendingIn bool
	// InText is the text of the contact's request.
	InText string
}

// live reports whether the contact carries any state worth keeping.
func (c *Contact) live() bool { return c.InList || c.PendingOut || c.PendingIn }

// Options are one user's list settings.
type Options struct {
	// AllowRemove lets the user's unsubscribe remove a contact from the
	// IMIP list. Without it, only pending requests can be withdrawn.
	AllowRemove bool
}

// RefuseRemove is the reason of the [Refused] action for an unsubscribe from
// a listed contact while [Options.AllowRemove] is off.
const RefuseRemove = "Removing contacts from your IMIP list is turned off for your account, so the contact " +
	"stays on your IMIP list. To allow it, register again with the gateway and tick the option to remove contacts."

// List is one user's contact list, kept sorted by number.
// A List is not safe for concurrent use: one goroutine owns it.
// The zero value is an empty list with default options.
type List struct {
	Options
	cs  []Contact
	gen uint64 // changes counted by put and drop (see Gen)
}

// New returns a list holding cs with opts.
// It copies cs, drops entries with an invalid number or no state, and keeps
// the first of duplicate numbers.
func New(opts Options, cs []Contact) *List {
	l := &List{Options: opts, cs: make([]Contact, 0, len(cs))}
	for _, c := range cs {
		if !c.Number.Valid() || !c.live() {
			continue
		}
		if _, ok := l.find(c.Number); ok {
			continue
		}
		l.put(c)
	}
	return l
}

// Len returns the number of contacts.
func (l *List) Len() int { return len(l.cs) }

// Contacts returns a copy of the contacts, ordered by number.
func (l *List) Contacts() []Contact { return slices.Clone(l.cs) }

// Contact returns the contact n, if the list holds it.
func (l *List) Contact(n wire.Number) (Contact, bool) {
	i, ok := l.find(n)
	if !ok {
		return Contact{}, false
	}
	return l.cs[i], true
}

func (l *List) find(n wire.Number) (int, bool) {
	return slices.BinarySearchFunc(l.cs, n, func(c Contact, n wire.Number) int {
		return cmp.Compare(c.Number, n)
	})
}

// Gen counts the calls that may have changed the list: a List whose Gen
// did not move holds the same contacts as before.
func (l *List) Gen() uint64 { return l.gen }

// put inserts or replaces c, or deletes it when it carries no state.
func (l *List) put(c Contact) {
	l.gen++
	i, ok := l.find(c.Number)
	switch {
	case ok && c.live():
		l.cs[i] = c
	case ok:
		l.cs = slices.Delete(l.cs, i, i+1)
	case c.live():
		l.cs = slices.Insert(l.cs, i, c)
	}
}

// drop deletes contact n.
func (l *List) drop(n wire.Number) {
	l.gen++
	if i, ok := l.find(n); ok {
		l.cs = slices.Delete(l.cs, i, i+1)
	}
}
