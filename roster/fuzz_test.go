package roster

import (
	"cmp"
	"fmt"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"imip-transport/imipside/wire"
)

// fuzzNumbers are the numbers fuzzed events name: a few valid ones, so that
// events meet the same contacts again, and invalid ones, which every event
// must ignore.
var fuzzNumbers = []wire.Number{"100", "200", "300", "4000000000000000001", "", "12a", "+1", "123456789012345678901"}

// fuzzTexts are the nicks and texts fuzzed events carry.
var fuzzTexts = []string{"", "hi", "ann", "bob", `a "quoted", nick`}

// fuzzEvents decodes data into list options, the last session's contacts,
// a sequence of events and a Buddy list. Every byte string decodes to
// something: the first byte picks the options and how many of the following
// 3-byte groups are stored contacts; then each 3-byte group is an event
// (kind, number, text), and the last 3-byte group's bytes also pick buddies.
func fuzzEvents(data []byte) (Options, []Contact, []Event, []wire.Buddy) {
	if len(data) == 0 {
		return Options{}, nil, nil, nil
	}
	opts := Options{AllowRemove: data[0]&1 == 1}
	nStored := int(data[0]>>1) % 4
	data = data[1:]
	pick := func(b byte, from []wire.Number) wire.Number { return from[int(b)%len(from)] }
	text := func(b byte) string { return fuzzTexts[int(b)%len(fuzzTexts)] }
	var stored []Contact
	var evs []Event
	var buddies []wire.Buddy
	for len(data) >= 3 {
		k, n, x := data[0], pick(data[1], fuzzNumbers), data[2]
		data = data[3:]
		if len(stored) < nStored {
			// A state Apply and Sync produce: a listed contact has no
			// request of the user's out, and only a pending request has
			// a text.
			c := Contact{Number: n, Nick: text(x), InList: k&1 == 1, PendingOut: k&3 == 2, PendingIn: k&4 == 4}
			if c.PendingOut {
				c.OutText = text(x >> 3)
			}
			if c.PendingIn {
				c.InText = text(x >> 5)
			}
			stored = append(stored, c)
			continue
		}
		var ev Event
		switch k % 10 {
		case 0:
			ev = UserSubscribe{Number: n, Status: text(x)}
		case 1:
			ev = UserSubscribed{Number: n}
		case 2:
			ev = UserUnsubscribe{Number: n}
		case 3:
			ev = UserUnsubscribed{Number: n}
		case 4:
			ev = ServerStat{Number: n}
		case 5:
			ev = ServerListAdd{Number: n, Nick: text(x), Text: text(x >> 4)}
		case 6:
			ev = ServerListAccept{Number: n, Nick: text(x)}
		case 7:
			ev = ServerListReject{Number: n}
		case 8:
			ev = ServerListRemove{Number: n}
		case 9:
			// Not an event: a buddy for the final Sync.
			buddies = append(buddies, wire.Buddy{Number: n, Nick: text(x)})
			continue
		}
		evs = append(evs, ev)
	}
	return opts, stored, evs, buddies
}

// actionNumber returns the number an action is about.
func actionNumber(a Action) wire.Number {
	switch a := a.(type) {
	case SendListAdd:
		return a.Number
	case SendListAccept:
		return a.Number
	case SendListReject:
		return a.Number
	case SendListRemove:
		return a.Number
	case PresenceToUser:
		return a.From
	case RosterUpsert:
		return a.Contact.Number
	case RosterRemove:
		return a.Number
	case Refused:
		return a.Number
	case Persist:
		return a.Number
	}
	panic(fmt.Sprintf("unknown action %T", a))
}

// checkList checks what every List must be: contacts ordered by number,
// no number twice, none invalid, none without state (a contact with
// nothing to keep is absent, never stored), and no listed contact with a
// request of the user's still out.
func checkList(t *testing.T, where string, cs []Contact) {
	t.Helper()
	for i, c := range cs {
		if !c.Number.Valid() {
			t.Fatalf("%s: contact %d has invalid number %q", where, i, c.Number)
		}
		if !c.live() {
			t.Fatalf("%s: contact %+v kept without state", where, c)
		}
		if c.InList && c.PendingOut {
			t.Fatalf("%s: contact %+v both listed and asked", where, c)
		}
		if !c.PendingOut && c.OutText != "" || !c.PendingIn && c.InText != "" {
			t.Fatalf("%s: contact %+v keeps the text of a request that is not pending", where, c)
		}
		if i > 0 && cmp.Compare(cs[i-1].Number, c.Number) >= 0 {
			t.Fatalf("%s: contacts out of order or repeated: %q then %q", where, cs[i-1].Number, c.Number)
		}
	}
}

// FuzzRosterApply applies a sequence of events from fuzz bytes to a List
// and checks after each: Apply never panics; the list stays ordered, with
// valid numbers and live contacts only; an event changes only its own
// contact; every action names the event's number; a change of state ends
// with exactly one Persist of that number and a Persist comes only with a
// change; invalid numbers change nothing and get no action; the effect on
// the contact is the one the event means. At the end, the list as stored
// (Contacts) loads back the same (New), and Sync of the stored list with a
// Buddy list, run again on its Result with the same buddies, has not
// Changed.
func FuzzRosterApply(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 4, 0, 0})                            // subscribe 100, STAT: accepted
	f.Add([]byte{1, 5, 1, 1, 1, 1, 0, 2, 1, 0})                   // ADD from 200, accept, unsubscribe
	f.Add([]byte{2, 3, 0, 2, 2, 0, 0, 8, 0, 0, 9, 0, 1, 9, 1, 2}) // a stored contact, remove, buddies
	f.Add([]byte{7, 7, 0, 0, 3, 1, 3, 0, 2, 0, 2, 0, 0, 6, 2, 0, 7, 2, 0, 9, 0, 0, 9, 0, 0})
	f.Add([]byte{0, 0, 4, 0, 0, 5, 0, 1, 6, 0, 2, 7, 0, 3, 8, 0})    // invalid numbers
	f.Add([]byte{6, 7, 0, 4, 5, 1, 4, 0, 0, 9, 2, 3, 9, 1, 0, 9, 0}) // stored pending both ways
	f.Fuzz(func(t *testing.T, data []byte) {
		opts, stored, evs, buddies := fuzzEvents(data)
		l := New(opts, stored)
		checkList(t, "New", l.Contacts())
		for i, ev := range evs {
			where := fmt.Sprintf("event %d %T%+v", i, ev, ev)
			before := l.Contacts()
			n := eventNumber(ev)
			old, had := l.Contact(n)
			acts := l.Apply(ev)
			after := l.Contacts()
			checkList(t, where, after)
			now, has := l.Contact(n)

			if !n.Valid() {
				if acts != nil || !slices.Equal(before, after) {
					t.Fatalf("%s: invalid number gave %v and changed the list", where, acts)
				}
				continue
			}
			// Only the event's contact may change.
			others := func(cs []Contact) []Contact {
				return slices.DeleteFunc(slices.Clone(cs), func(c Contact) bool { return c.Number == n })
			}
			if diff := gocmp.Diff(others(before), others(after)); diff != "" {
				t.Fatalf("%s: other contacts changed:\n%s", where, diff)
			}
			changed := had != has || old != now
			persists := 0
			for j, a := range acts {
				if an := actionNumber(a); an != n {
					t.Fatalf("%s: action %d %+v names %q, not the event's %q", where, j, a, an, n)
				}
				if _, ok := a.(Persist); ok {
					persists++
					if j != len(acts)-1 {
						t.Fatalf("%s: Persist is action %d of %d, not the last: %v", where, j, len(acts), acts)
					}
				}
			}
			switch {
			case changed && persists != 1:
				t.Fatalf("%s: %+v (%v) became %+v (%v) with %d Persist: %v", where, old, had, now, has, persists, acts)
			case !changed && persists != 0:
				t.Fatalf("%s: nothing changed but Persist: %v", where, acts)
			}
			checkEffect(t, where, l.AllowRemove, ev, old, had, now, has, acts)
		}

		// The list as the gateway stores it loads back the same.
		stored = l.Contacts()
		if diff := gocmp.Diff(stored, New(opts, stored).Contacts()); diff != "" {
			t.Fatalf("reload changed the list:\n%s", diff)
		}
		p1 := Sync(stored, buddies)
		checkList(t, "Sync Result", p1.Result)
		for _, b := range buddies {
			if !b.Number.Valid() {
				continue
			}
			if c, ok := New(opts, p1.Result).Contact(b.Number); !ok || !c.InList {
				t.Fatalf("buddy %q is not InList after Sync: %+v", b.Number, p1.Result)
			}
		}
		p2 := Sync(p1.Result, buddies)
		if p2.Changed() {
			t.Fatalf("second Sync of the same buddies changed: add %v update %v remove %v", p2.Add, p2.Update, p2.Remove)
		}
		if diff := gocmp.Diff(p1.Result, p2.Result); diff != "" {
			t.Fatalf("second Sync changed the Result:\n%s", diff)
		}
	})
}

// checkEffect checks the event's meaning on its contact (valid number).
func checkEffect(t *testing.T, where string, allowRemove bool, ev Event, old Contact, had bool, now Contact, has bool, acts []Action) {
	t.Helper()
	hasAction := func(match func(Action) bool) bool { return slices.ContainsFunc(acts, match) }
	fail := func(what string) {
		t.Helper()
		t.Fatalf("%s: %s; %+v (%v) -> %+v (%v), actions %v", where, what, old, had, now, has, acts)
	}
	switch ev := ev.(type) {
	case UserSubscribe:
		if !now.InList && !now.PendingOut {
			fail("subscribe leaves the contact neither listed nor asked")
		}
		sent := hasAction(func(a Action) bool { _, ok := a.(SendListAdd); return ok })
		if sent != (!old.InList && !old.PendingOut) {
			fail("LIST ADD sent unless listed or asked already")
		}
	case UserSubscribed:
		if old.PendingIn && (now.PendingIn || !hasAction(func(a Action) bool { _, ok := a.(SendListAccept); return ok })) {
			fail("accepting a pending request sends LIST ACCEPT and clears it")
		}
	case UserUnsubscribed:
		if old.PendingIn && (now.PendingIn || !hasAction(func(a Action) bool { _, ok := a.(SendListReject); return ok })) {
			fail("refusing a pending request sends LIST REJECT and clears it")
		}
		if now.InList != old.InList || now.PendingOut != old.PendingOut {
			fail("unsubscribed touched the user's own list")
		}
	case UserUnsubscribe:
		refused := hasAction(func(a Action) bool { _, ok := a.(Refused); return ok })
		if refused != (old.InList && !old.PendingOut && !allowRemove) {
			fail("Refused exactly for a listed contact while removing is off")
		}
		if now.PendingOut {
			fail("unsubscribe leaves a request out")
		}
		if allowRemove && now.InList {
			fail("unsubscribe with AllowRemove leaves the contact listed")
		}
	case ServerStat, ServerListAccept:
		if old.PendingOut && (!now.InList || now.PendingOut) {
			fail("acceptance of a pending request lists the contact")
		}
		if !old.PendingOut && changedContact(old, had, now, has) {
			fail("STAT or LIST ACCEPT without a request changed the contact")
		}
		if nick := acceptNick(ev); old.PendingOut && nick != "" && now.Nick != nick {
			fail("LIST ACCEPT nick not kept")
		}
	case ServerListAdd:
		if !now.PendingIn {
			fail("LIST ADD leaves no pending request")
		}
		if old.PendingIn && changedContact(old, had, now, has) {
			fail("a repeated LIST ADD changed the contact")
		}
		if !old.PendingIn && now.InText != ev.Text {
			fail("request text not kept")
		}
	case ServerListReject:
		if now.PendingOut || now.InList != old.InList || now.PendingIn != old.PendingIn {
			fail("LIST REJECT clears the user's request only")
		}
	case ServerListRemove:
		if has {
			fail("LIST REMOVE leaves the contact")
		}
		if !hasAction(func(a Action) bool { p, ok := a.(PresenceToUser); return ok && p.Type == Unsubscribed }) {
			fail("LIST REMOVE without unsubscribed to the user")
		}
	}
}

func changedContact(old Contact, had bool, now Contact, has bool) bool {
	return had != has || old != now
}

func acceptNick(ev Event) string {
	if a, ok := ev.(ServerListAccept); ok {
		return a.Nick
	}
	return ""
}
