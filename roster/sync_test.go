package roster

import (
	"testing"

	"imip-transport/imipside/wire"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestSync(t *testing.T) {
	tests := []struct {
		name    string
		last    []Contact
		buddies []wire.Buddy
		want    SyncPlan
	}{
		0: {name: "empty", want: SyncPlan{}},
		1: {name: "first login",
			buddies: []wire.Buddy{{Number: "200", Nick: "b"}, {Number: "100", Nick: "a"}},
			want: SyncPlan{
				Add:    []Contact{{Number: "200", Nick: "b", InList: true}, {Number: "100", Nick: "a", InList: true}},
				Result: []Contact{{Number: "100", Nick: "a", InList: true}, {Number: "200", Nick: "b", InList: true}},
			}},
		2: {name: "nothing changed",
			last:    []Contact{listed},
			buddies: []wire.Buddy{{Number: "100", Nick: "ann"}},
			want:    SyncPlan{Unchanged: []Contact{listed}, Result: []Contact{listed}}},
		3: {name: "nick changed",
			last:    []Contact{listed},
			buddies: []wire.Buddy{{Number: "100", Nick: "anna"}},
			want: SyncPlan{
				Update: []Contact{{Number: "100", Nick: "anna", InList: true}},
				Result: []Contact{{Number: "100", Nick: "anna", InList: true}},
			}},
		4: {name: "empty nick keeps known nick",
			last:    []Contact{listed},
			buddies: []wire.Buddy{{Number: "100"}},
			want:    SyncPlan{Unchanged: []Contact{listed}, Result: []Contact{listed}}},
		5: {name: "listed contact vanished",
			last: []Contact{listed, {Number: "101", InList: true}},
			want: SyncPlan{Remove: []Contact{listed, {Number: "101", InList: true}}, Result: []Contact{}}},
		6: {name: "pending ones are kept",
			last: []Contact{pendingOut, pendingIn},
			want: SyncPlan{Unchanged: []Contact{pendingOut, pendingIn}, Result: []Contact{pendingOut, pendingIn}}},
		7: {name: "vanished but asking us: off the list, request kept",
			last: []Contact{listedIn},
			want: SyncPlan{
				Remove: []Contact{listedIn},
				Result: []Contact{{Number: "400", Nick: "cat", PendingIn: true, InText: "me too"}},
			}},
		8: {name: "request accepted while offline",
			last:    []Contact{pendingOut, outIn},
			buddies: []wire.Buddy{{Number: "200", Nick: "eve"}, {Number: "500"}},
			want: SyncPlan{
				Add: []Contact{{Number: "200", Nick: "eve", InList: true},
					{Number: "500", Nick: "dan", InList: true, PendingIn: true, InText: "y"}},
				Result: []Contact{{Number: "200", Nick: "eve", InList: true},
					{Number: "500", Nick: "dan", InList: true, PendingIn: true, InText: "y"}},
			}},
		9: {name: "buddy asking us becomes listed",
			last:    []Contact{pendingIn},
			buddies: []wire.Buddy{{Number: "300", Nick: "bobby"}},
			want: SyncPlan{
				Add:    []Contact{{Number: "300", Nick: "bobby", InList: true, PendingIn: true, InText: "add me"}},
				Result: []Contact{{Number: "300", Nick: "bobby", InList: true, PendingIn: true, InText: "add me"}},
			}},
		10: {name: "invalid and duplicate buddies",
			buddies: []wire.Buddy{{Number: "7", Nick: "first"}, {Number: ""}, {Number: "+8"}, {Number: "7", Nick: "second"}},
			want: SyncPlan{
				Add:    []Contact{{Number: "7", Nick: "first", InList: true}},
				Result: []Contact{{Number: "7", Nick: "first", InList: true}},
			}},
		11: {name: "mixed",
			last: []Contact{listed, pendingOut, pendingIn, {Number: "600", Nick: "gone", InList: true}},
			buddies: []wire.Buddy{{Number: "100", Nick: "ann"}, {Number: "200", Nick: "eve"},
				{Number: "700", Nick: "new"}},
			want: SyncPlan{
				Add:       []Contact{{Number: "200", Nick: "eve", InList: true}, {Number: "700", Nick: "new", InList: true}},
				Remove:    []Contact{{Number: "600", Nick: "gone", InList: true}},
				Unchanged: []Contact{listed, pendingIn},
				Result: []Contact{listed, {Number: "200", Nick: "eve", InList: true}, pendingIn,
					{Number: "700", Nick: "new", InList: true}},
			}},
	}
	opt := cmpopts.EquateEmpty()
	for i, tc := range tests {
		got := Sync(tc.last, tc.buddies)
		if d := cmp.Diff(tc.want, got, opt); d != "" {
			t.Errorf("%d %s: Sync (-want +got):\n%s", i, tc.name, d)
		}
		if want := len(tc.want.Add)+len(tc.want.Update)+len(tc.want.Remove) > 0; got.Changed() != want {
			t.Errorf("%d %s: Changed() = %v, want %v", i, tc.name, got.Changed(), want)
		}
		// Idempotence: syncing the result against the same buddies is a no-op.
		again := Sync(got.Result, tc.buddies)
		if again.Changed() {
			t.Errorf("%d %s: second Sync changed: %+v", i, tc.name, again)
		}
		if d := cmp.Diff(got.Result, again.Result, opt); d != "" {
			t.Errorf("%d %s: second Sync result differs (-first +second):\n%s", i, tc.name, d)
		}
		if d := cmp.Diff(New(Options{}, got.Result).Contacts(), again.Unchanged, opt,
			cmpopts.SortSlices(func(a, b Contact) bool { return a.Number < b.Number })); d != "" {
			t.Errorf("%d %s: second Sync Unchanged is not the whole list (-want +got):\n%s", i, tc.name, d)
		}
	}
}

func TestSyncDoesNotAliasInput(t *testing.T) {
	last := []Contact{listed}
	p := Sync(last, []wire.Buddy{{Number: "100", Nick: "new"}})
	p.Result[0].Nick = "mutated"
	if last[0].Nick != "ann" {
		t.Errorf("Sync changed its input: Nick = %q", last[0].Nick)
	}
	if p.Update[0].Nick != "new" {
		t.Errorf("Update aliases Result: Nick = %q", p.Update[0].Nick)
	}
}

// TestGen: Gen moves with every change and stays put otherwise.
func TestGen(t *testing.T) {
	l := New(Options{}, []Contact{{Number: "100", Nick: "ann", InList: true}})
	g0 := l.Gen()
	if _, ok := l.Contact("100"); !ok || l.Gen() != g0 {
		t.Fatalf("a read moved Gen: %d -> %d", g0, l.Gen())
	}
	l.Apply(ServerListAdd{Number: "200", Nick: "bo"})
	g1 := l.Gen()
	if g1 == g0 {
		t.Errorf("a contact's request did not move Gen")
	}
	l.Apply(ServerListRemove{Number: "100"})
	if l.Gen() == g1 {
		t.Errorf("a removal did not move Gen")
	}
}
