package roster

import "imip-transport/imipside/wire"

// SyncPlan is the outcome of [Sync]: what changed on the IMIP list while the
// gateway was not looking, and the list to persist.
type SyncPlan struct {
	// Add holds contacts now on the IMIP list that were not before: new
	// numbers, and pending requests the contact accepted meanwhile.
	Add []Contact
	// Update holds listed contacts whose nickname changed.
	Update []Contact
	// Remove holds contacts that left the IMIP list, as they were before.
	// A contact that still has a pending request is also kept in Result.
	Remove []Contact
	// Unchanged holds the contacts that need nothing: listed contacts
	// still listed, and pending requests not on the Buddy list.
	Unchanged []Contact
	// Result is the list after the sync, ordered by number.
	Result []Contact
}

// Changed reports whether the plan adds, updates or removes anything.
func (p SyncPlan) Changed() bool {
	return len(p.Add) > 0 || len(p.Update) > 0 || len(p.Remove) > 0
}

// Sync reconciles last, the list stored at the previous session, with
// buddies, the Buddy list of a successful login.
//
// The Buddy list is the truth for listed contacts: every buddy is InList
// afterwards, and a listed contact missing from it is no longer InList.
// Pending requests are kept as they are, unless the buddy list shows an
// outgoing request was accepted.
// A buddy without a nickname does not erase a known one.
// Buddies with an invalid number are skipped; of duplicates, the first wins.
// Running Sync again on the Result with the same buddies returns a plan that
// has not Changed.
func Sync(last []Contact, buddies []wire.Buddy) SyncPlan {
	prev := New(Options{}, last)
	next := New(Options{}, nil)
	var p SyncPlan
	for _, b := range buddies {
		if !b.Number.Valid() {
			continue
		}
		if _, dup := next.Contact(b.Number); dup {
			continue
		}
		c, found := prev.Contact(b.Number)
		switch {
		case !found:
			c = Contact{Number: b.Number, Nick: b.Nick, InList: true}
			p.Add = append(p.Add, c)
		case !c.InList:
			c.InList, c.PendingOut, c.OutText = true, false, ""
			if b.Nick != "" {
				c.Nick = b.Nick
			}
			p.Add = append(p.Add, c)
		case b.Nick != "" && b.Nick != c.Nick:
			c.Nick = b.Nick
			p.Update = append(p.Update, c)
		default:
			p.Unchanged = append(p.Unchanged, c)
		}
		next.put(c)
	}
	for _, c := range prev.cs {
		if _, seen := next.Contact(c.Number); seen {
			continue
		}
		if c.InList {
			p.Remove = append(p.Remove, c)
			c.InList = false
			next.put(c) // kept only if a request is still pending
			continue
		}
		p.Unchanged = append(p.Unchanged, c)
		next.put(c)
	}
	p.Result = next.cs
	return p
}
