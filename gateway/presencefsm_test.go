package gateway

import (
	"fmt"
	"slices"
	"testing"

	"mellium.im/xmpp/jid"

	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// av builds a pending availability presence of from (a full or bare JID).
func av(from, typ, show, status string, prio int, toGateway bool, link uint64) pendingAvail {
	return pendingAvail{p: xmppside.Presence{From: jid.MustParse(from), Type: typ, Show: show, Status: status, Priority: prio},
		toGateway: toGateway, link: link}
}

func TestPresenceMachine(t *testing.T) {
	const (
		phone  = "alice@localhost/phone"
		laptop = "alice@localhost/laptop"
		bare   = "alice@localhost"
	)
	type step struct {
		batch  []pendingAvail
		fresh  []string
		any    bool
		status wire.Status
		text   string
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"first resource is fresh, a copy is not", []step{
			{[]pendingAvail{av(phone, "", "", "", 0, true, 1)}, []string{phone}, true, wire.StatusOnline, ""},
			{[]pendingAvail{av(phone, "", "", "", 0, false, 1)}, nil, true, wire.StatusOnline, ""},
		}},
		{"show maps to status; a change is not fresh", []step{
			{[]pendingAvail{av(phone, "", "dnd", "busy", 0, true, 1)}, []string{phone}, true, wire.StatusBusy, "busy"},
			{[]pendingAvail{av(phone, "", "xa", "", 0, true, 1)}, nil, true, wire.StatusAway, ""},
		}},
		{"highest priority wins, newest on a tie", []step{
			{[]pendingAvail{av(phone, "", "away", "p", 5, true, 1), av(laptop, "", "", "l", 1, true, 1)}, []string{phone, laptop}, true, wire.StatusAway, "p"},
			{[]pendingAvail{av(laptop, "", "dnd", "l2", 5, true, 1)}, nil, true, wire.StatusBusy, "l2"},
			{[]pendingAvail{av(phone, "", "", "p2", 5, true, 1)}, nil, true, wire.StatusOnline, "p2"},
		}},
		{"last unavailable leaves none", []step{
			{[]pendingAvail{av(phone, "", "", "", 0, true, 1), av(laptop, "", "", "", 0, true, 1)}, []string{phone, laptop}, true, wire.StatusOnline, ""},
			{[]pendingAvail{av(phone, "unavailable", "", "", 0, true, 1)}, nil, true, wire.StatusOnline, ""},
			{[]pendingAvail{av(laptop, "unavailable", "", "", 0, true, 1)}, nil, false, wire.StatusOffline, ""},
		}},
		{"bare unavailable clears every resource", []step{
			{[]pendingAvail{av(phone, "", "", "", 0, true, 1), av(laptop, "", "", "", 0, true, 1)}, []string{phone, laptop}, true, wire.StatusOnline, ""},
			{[]pendingAvail{av(bare, "unavailable", "", "", 0, true, 1)}, nil, false, wire.StatusOffline, ""},
		}},
		{"directed unavailable to one contact keeps a broadcast resource", []step{
			{[]pendingAvail{av(phone, "", "", "", 0, true, 1)}, []string{phone}, true, wire.StatusOnline, ""},
			{[]pendingAvail{av(phone, "unavailable", "", "", 0, false, 1)}, nil, true, wire.StatusOnline, ""},
		}},
		{"unavailable to a contact ends a resource never seen by the gateway", []step{
			{[]pendingAvail{av(phone, "", "", "", 0, false, 1)}, []string{phone}, true, wire.StatusOnline, ""},
			{[]pendingAvail{av(phone, "unavailable", "", "", 0, false, 1)}, nil, false, wire.StatusOffline, ""},
		}},
		{"unavailable then available in one batch: fresh again", []step{
			{[]pendingAvail{av(phone, "", "", "", 0, true, 1)}, []string{phone}, true, wire.StatusOnline, ""},
			{[]pendingAvail{av(phone, "unavailable", "", "", 0, true, 1), av(phone, "", "away", "", 0, true, 1)}, []string{phone}, true, wire.StatusAway, ""},
		}},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d/%s", i, c.name), func(t *testing.T) {
			var r resources
			for j, s := range c.steps {
				var fresh []string
				for _, f := range r.apply(s.batch) {
					fresh = append(fresh, f.String())
				}
				st, text := r.aggregate()
				if !slices.Equal(fresh, s.fresh) || r.any() != s.any || st != s.status || text != s.text {
					t.Fatalf("step %d: fresh %q any %v aggregate %s %q; want %q %v %s %q", j, fresh, r.any(), st, text, s.fresh, s.any, s.status, s.text)
				}
			}
		})
	}
}

// After the component link came back, resources last heard of on an older
// link must answer the gateway's probe; those that do not are dropped. A
// resource known only through contact JIDs cannot answer and is kept.
func TestPresenceMachineLinkUp(t *testing.T) {
	var r resources
	r.apply([]pendingAvail{
		av("alice@localhost/a", "", "", "", 0, true, 1),
		av("alice@localhost/b", "", "", "", 0, true, 1),
		av("alice@localhost/c", "", "", "", 0, false, 1),
	})
	if r.linkUp(1) {
		t.Fatalf("linkUp of the same link marked resources")
	}
	if !r.linkUp(2) {
		t.Fatalf("linkUp(2) marked nothing")
	}
	// a answers the probe on link 2 with the same presence.
	if fresh := r.apply([]pendingAvail{av("alice@localhost/a", "", "", "", 0, true, 2)}); len(fresh) != 0 {
		t.Errorf("probe answer reported fresh %v", fresh)
	}
	if n := r.dropUnconfirmed(); n != 1 {
		t.Errorf("dropUnconfirmed = %d, want 1 (b)", n)
	}
	var left []string
	for _, e := range r.m {
		left = append(left, e.name)
	}
	slices.Sort(left)
	if !slices.Equal(left, []string{"a", "c"}) {
		t.Errorf("left %q, want a and c", left)
	}
	// An answer stamped with an older link than the mark does not confirm.
	r.linkUp(3)
	r.apply([]pendingAvail{av("alice@localhost/a", "", "", "", 0, true, 2)})
	if n := r.dropUnconfirmed(); n != 1 {
		t.Errorf("answer from an older link confirmed the resource (dropped %d, want 1)", n)
	}
}
