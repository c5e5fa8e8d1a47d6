package roster

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"imip-transport/imipside/wire"
)

// Contacts in each state, for the transition table.
var (
	listed     = Contact{Number: "100", Nick: "ann", InList: true}
	pendingOut = Contact{Number: "200", PendingOut: true, OutText: "hi, it's me"}
	pendingIn  = Contact{Number: "300", Nick: "bob", PendingIn: true, InText: "add me"}
	// listedIn is on the user's list and also asks to be added to the user's.
	listedIn = Contact{Number: "400", Nick: "cat", InList: true, PendingIn: true, InText: "me too"}
	// outIn: both sides asked, neither answered.
	outIn = Contact{Number: "500", Nick: "dan", PendingOut: true, OutText: "x", PendingIn: true, InText: "y"}
)

func TestApply(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		before []Contact
		ev     Event
		want   []Action
		after  []Contact // nil: same as before
	}{
		// User's subscribe.
		0: {name: "subscribe new", ev: UserSubscribe{Number: "123", Status: "hello"},
			want:  []Action{SendListAdd{Number: "123", Text: "hello"}, Persist{Number: "123"}},
			after: []Contact{{Number: "123", PendingOut: true, OutText: "hello"}}},
		1: {name: "subscribe listed", before: []Contact{listed}, ev: UserSubscribe{Number: "100"},
			want: []Action{PresenceToUser{From: "100", Type: Subscribed}}},
		2: {name: "subscribe again while pending", before: []Contact{pendingOut}, ev: UserSubscribe{Number: "200", Status: "again"},
			want: nil},
		3: {name: "subscribe to someone asking us", before: []Contact{pendingIn}, ev: UserSubscribe{Number: "300", Status: "sure"},
			want:  []Action{SendListAdd{Number: "300", Text: "sure"}, Persist{Number: "300"}},
			after: []Contact{{Number: "300", Nick: "bob", PendingOut: true, OutText: "sure", PendingIn: true, InText: "add me"}}},
		4: {name: "subscribe invalid number", ev: UserSubscribe{Number: "12a"}, want: nil, after: []Contact{}},

		// Acceptance of the user's request.
		5: {name: "first STAT accepts", before: []Contact{pendingOut}, ev: ServerStat{Number: "200"},
			want: []Action{PresenceToUser{From: "200", Type: Subscribed},
				RosterUpsert{Contact: Contact{Number: "200", InList: true}}, Persist{Number: "200"}},
			after: []Contact{{Number: "200", InList: true}}},
		6: {name: "LIST ACCEPT accepts with nick", before: []Contact{pendingOut}, ev: ServerListAccept{Number: "200", Nick: "eve"},
			want: []Action{PresenceToUser{From: "200", Type: Subscribed},
				RosterUpsert{Contact: Contact{Number: "200", Nick: "eve", InList: true}}, Persist{Number: "200"}},
			after: []Contact{{Number: "200", Nick: "eve", InList: true}}},
		7:  {name: "STAT from listed", before: []Contact{listed}, ev: ServerStat{Number: "100"}, want: nil},
		8:  {name: "STAT from stranger", ev: ServerStat{Number: "999"}, want: nil, after: []Contact{}},
		9:  {name: "STAT from one asking us", before: []Contact{pendingIn}, ev: ServerStat{Number: "300"}, want: nil},
		10: {name: "LIST ACCEPT unasked", before: []Contact{listed}, ev: ServerListAccept{Number: "100", Nick: "zed"}, want: nil},
		11: {name: "STAT accepts, own request kept", before: []Contact{outIn}, ev: ServerStat{Number: "500"},
			want: []Action{PresenceToUser{From: "500", Type: Subscribed},
				RosterUpsert{Contact: Contact{Number: "500", Nick: "dan", InList: true, PendingIn: true, InText: "y"}}, Persist{Number: "500"}},
			after: []Contact{{Number: "500", Nick: "dan", InList: true, PendingIn: true, InText: "y"}}},

		// Server's LIST REJECT.
		12: {name: "reject pending", before: []Contact{listed, pendingOut}, ev: ServerListReject{Number: "200"},
			want:  []Action{PresenceToUser{From: "200", Type: Unsubscribed}, Persist{Number: "200"}},
			after: []Contact{listed}},
		13: {name: "reject listed ignored", before: []Contact{listed}, ev: ServerListReject{Number: "100"}, want: nil},
		14: {name: "reject unknown ignored", ev: ServerListReject{Number: "100"}, want: nil, after: []Contact{}},
		15: {name: "reject keeps contact's own request", before: []Contact{outIn}, ev: ServerListReject{Number: "500"},
			want:  []Action{PresenceToUser{From: "500", Type: Unsubscribed}, Persist{Number: "500"}},
			after: []Contact{{Number: "500", Nick: "dan", PendingIn: true, InText: "y"}}},

		// Server's LIST ADD.
		16: {name: "incoming request", ev: ServerListAdd{Number: "777", Nick: "fay", Text: "let me in"},
			want:  []Action{PresenceToUser{From: "777", Type: Subscribe, Nick: "fay", Status: "let me in"}, Persist{Number: "777"}},
			after: []Contact{{Number: "777", Nick: "fay", PendingIn: true, InText: "let me in"}}},
		17: {name: "repeated request", before: []Contact{pendingIn}, ev: ServerListAdd{Number: "300", Nick: "bob", Text: "add me!!"},
			want: nil},
		18: {name: "request from listed keeps nick", before: []Contact{listed}, ev: ServerListAdd{Number: "100", Nick: "other", Text: "t"},
			want:  []Action{PresenceToUser{From: "100", Type: Subscribe, Nick: "other", Status: "t"}, Persist{Number: "100"}},
			after: []Contact{{Number: "100", Nick: "ann", InList: true, PendingIn: true, InText: "t"}}},
		19: {name: "request invalid number", ev: ServerListAdd{Number: "+1", Nick: "x"}, want: nil, after: []Contact{}},

		// User's subscribed.
		20: {name: "accept request", before: []Contact{pendingIn}, ev: UserSubscribed{Number: "300"},
			want: []Action{SendListAccept{Number: "300", Nick: "bob"}, Persist{Number: "300"}}, after: []Contact{}},
		21: {name: "accept request of listed", before: []Contact{listedIn}, ev: UserSubscribed{Number: "400"},
			want:  []Action{SendListAccept{Number: "400", Nick: "cat"}, Persist{Number: "400"}},
			after: []Contact{{Number: "400", Nick: "cat", InList: true}}},
		22: {name: "subscribed without request", before: []Contact{listed}, ev: UserSubscribed{Number: "100"}, want: nil},
		23: {name: "subscribed to stranger", ev: UserSubscribed{Number: "100"}, want: nil, after: []Contact{}},

		// User's unsubscribed.
		24: {name: "reject request", before: []Contact{pendingIn}, ev: UserUnsubscribed{Number: "300"},
			want: []Action{SendListReject{Number: "300"}, Persist{Number: "300"}}, after: []Contact{}},
		25: {name: "reject request of listed keeps contact", before: []Contact{listedIn}, ev: UserUnsubscribed{Number: "400"},
			want:  []Action{SendListReject{Number: "400"}, Persist{Number: "400"}},
			after: []Contact{{Number: "400", Nick: "cat", InList: true}}},
		26: {name: "unsubscribed never deletes listed", opts: Options{AllowRemove: true}, before: []Contact{listed},
			ev: UserUnsubscribed{Number: "100"}, want: nil},
		27: {name: "unsubscribed never cancels own request", before: []Contact{pendingOut}, ev: UserUnsubscribed{Number: "200"}, want: nil},
		28: {name: "unsubscribed stranger", ev: UserUnsubscribed{Number: "1"}, want: nil, after: []Contact{}},

		// User's unsubscribe.
		29: {name: "withdraw request", before: []Contact{pendingOut}, ev: UserUnsubscribe{Number: "200"},
			want: []Action{SendListRemove{Number: "200"}, Persist{Number: "200"}}, after: []Contact{}},
		30: {name: "withdraw request keeps contact's", before: []Contact{outIn}, ev: UserUnsubscribe{Number: "500"},
			want:  []Action{SendListRemove{Number: "500"}, Persist{Number: "500"}},
			after: []Contact{{Number: "500", Nick: "dan", PendingIn: true, InText: "y"}}},
		31: {name: "remove listed refused", before: []Contact{listed}, ev: UserUnsubscribe{Number: "100"},
			want: []Action{Refused{Number: "100", Reason: RefuseRemove}}},
		32: {name: "remove listed allowed", opts: Options{AllowRemove: true}, before: []Contact{listed, pendingOut},
			ev: UserUnsubscribe{Number: "100"}, want: []Action{SendListRemove{Number: "100"}, Persist{Number: "100"}}, after: []Contact{pendingOut}},
		33: {name: "remove listed allowed keeps request", opts: Options{AllowRemove: true}, before: []Contact{listedIn},
			ev: UserUnsubscribe{Number: "400"}, want: []Action{SendListRemove{Number: "400"}, Persist{Number: "400"}},
			after: []Contact{{Number: "400", Nick: "cat", PendingIn: true, InText: "me too"}}},
		34: {name: "unsubscribe stranger", opts: Options{AllowRemove: true}, ev: UserUnsubscribe{Number: "100"}, want: nil, after: []Contact{}},
		35: {name: "unsubscribe from one asking us", opts: Options{AllowRemove: true}, before: []Contact{pendingIn},
			ev: UserUnsubscribe{Number: "300"}, want: nil},

		// Server's LIST REMOVE.
		36: {name: "contact drops user", before: []Contact{listed, pendingIn}, ev: ServerListRemove{Number: "100"},
			want: []Action{PresenceToUser{From: "100", Type: Unsubscribe}, PresenceToUser{From: "100", Type: Unsubscribed},
				RosterRemove{Number: "100"}, Persist{Number: "100"}},
			after: []Contact{pendingIn}},
		37: {name: "pending contact drops user", before: []Contact{outIn}, ev: ServerListRemove{Number: "500"},
			want: []Action{PresenceToUser{From: "500", Type: Unsubscribe}, PresenceToUser{From: "500", Type: Unsubscribed},
				RosterRemove{Number: "500"}, Persist{Number: "500"}},
			after: []Contact{}},
		38: {name: "stranger drops user", before: []Contact{listed}, ev: ServerListRemove{Number: "999"},
			want:  []Action{PresenceToUser{From: "999", Type: Unsubscribe}, PresenceToUser{From: "999", Type: Unsubscribed}},
			after: []Contact{listed}},

		39: {name: "unknown event", before: []Contact{listed}, ev: nil, want: nil},
	}
	for i, tc := range tests {
		l := New(tc.opts, tc.before)
		got := l.Apply(tc.ev)
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%d %s: Apply(%#v) actions (-want +got):\n%s", i, tc.name, tc.ev, d)
		}
		after := tc.after
		if after == nil {
			after = tc.before
		}
		if after == nil {
			after = []Contact{}
		}
		if d := cmp.Diff(after, l.Contacts()); d != "" {
			t.Errorf("%d %s: contacts after Apply(%#v) (-want +got):\n%s", i, tc.name, tc.ev, d)
		}
		changed := !cmp.Equal(New(tc.opts, tc.before).Contacts(), l.Contacts())
		var persisted bool
		if len(got) > 0 {
			last, ok := got[len(got)-1].(Persist)
			persisted = ok
			if ok && last.Number != eventNumber(tc.ev) {
				t.Errorf("%d %s: Persist{%q}, want the event's number %q", i, tc.name, last.Number, eventNumber(tc.ev))
			}
		}
		if changed != persisted {
			t.Errorf("%d %s: state changed = %v but ends with Persist = %v", i, tc.name, changed, persisted)
		}
	}
}

// eventNumber returns the number an event is about.
func eventNumber(ev Event) wire.Number {
	switch ev := ev.(type) {
	case UserSubscribe:
		return ev.Number
	case UserSubscribed:
		return ev.Number
	case UserUnsubscribe:
		return ev.Number
	case UserUnsubscribed:
		return ev.Number
	case ServerStat:
		return ev.Number
	case ServerListAdd:
		return ev.Number
	case ServerListAccept:
		return ev.Number
	case ServerListReject:
		return ev.Number
	case ServerListRemove:
		return ev.Number
	}
	return ""
}

// A whole exchange, step by step: the user's request accepted, a request
// from the contact, the contact leaving.
func TestApplySequence(t *testing.T) {
	l := New(Options{}, nil)
	steps := []struct {
		ev   Event
		want []Action
	}{
		0: {UserSubscribe{Number: "42", Status: "hi"}, []Action{SendListAdd{Number: "42", Text: "hi"}, Persist{Number: "42"}}},
		1: {UserSubscribe{Number: "42", Status: "hi"}, nil},
		2: {ServerStat{Number: "42"}, []Action{PresenceToUser{From: "42", Type: Subscribed},
			RosterUpsert{Contact: Contact{Number: "42", InList: true}}, Persist{Number: "42"}}},
		3: {ServerStat{Number: "42"}, nil},
		4: {ServerListAdd{Number: "42", Nick: "deep", Text: "back"}, []Action{
			PresenceToUser{From: "42", Type: Subscribe, Nick: "deep", Status: "back"}, Persist{Number: "42"}}},
		5: {ServerListAdd{Number: "42", Nick: "deep", Text: "back"}, nil},
		6: {UserSubscribed{Number: "42"}, []Action{SendListAccept{Number: "42", Nick: "deep"}, Persist{Number: "42"}}},
		7: {UserSubscribed{Number: "42"}, nil},
		8: {UserUnsubscribe{Number: "42"}, []Action{Refused{Number: "42", Reason: RefuseRemove}}},
		9: {ServerListRemove{Number: "42"}, []Action{PresenceToUser{From: "42", Type: Unsubscribe},
			PresenceToUser{From: "42", Type: Unsubscribed}, RosterRemove{Number: "42"}, Persist{Number: "42"}}},
		10: {ServerListRemove{Number: "42"}, []Action{PresenceToUser{From: "42", Type: Unsubscribe},
			PresenceToUser{From: "42", Type: Unsubscribed}}},
	}
	for i, s := range steps {
		if d := cmp.Diff(s.want, l.Apply(s.ev)); d != "" {
			t.Errorf("%d: Apply(%#v) (-want +got):\n%s", i, s.ev, d)
		}
	}
	if l.Len() != 0 {
		t.Errorf("after the contact left: Len() = %d, want 0", l.Len())
	}
}

func TestNew(t *testing.T) {
	in := []Contact{
		{Number: "300", InList: true},
		{Number: "", InList: true},       // invalid number
		{Number: "12x", PendingIn: true}, // invalid number
		{Number: "100", Nick: "dead"},    // no state
		{Number: "200", PendingOut: true},
		{Number: "300", Nick: "dup", PendingIn: true}, // duplicate: first wins
	}
	l := New(Options{}, in)
	want := []Contact{{Number: "200", PendingOut: true}, {Number: "300", InList: true}}
	if d := cmp.Diff(want, l.Contacts()); d != "" {
		t.Errorf("New contacts (-want +got):\n%s", d)
	}
	in[0].Nick = "changed"
	if c, _ := l.Contact("300"); c.Nick != "" {
		t.Errorf("New kept a reference to its input: Contact(300).Nick = %q", c.Nick)
	}
	cs := l.Contacts()
	cs[0].Nick = "changed"
	if c, _ := l.Contact("200"); c.Nick != "" {
		t.Errorf("Contacts returned a reference to the list: Contact(200).Nick = %q", c.Nick)
	}
	if _, ok := l.Contact("999"); ok {
		t.Errorf("Contact(999) found, want absent")
	}
	var zero List
	if got := zero.Apply(UserSubscribe{Number: "1"}); len(got) != 2 || zero.Len() != 1 {
		t.Errorf("zero List: Apply = %v, Len = %d; want a request and one contact", got, zero.Len())
	}
}
