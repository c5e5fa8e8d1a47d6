// Package storetest is the contract test suite of gateway.Store: every
// implementation (gateway/sqlitestore, gateway/pgstore) runs [Run] against
// fresh databases, so they behave alike: order, paging, idempotence,
// not-found errors, the all-or-nothing batch and sealed passwords.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"imip-transport/gateway"
	"imip-transport/imipside/wire"
	"imip-transport/internal/seal"
	"imip-transport/roster"
)

// Opener opens the database of one test with the key file keyFile (created
// if absent). Opening it twice gives two handles on the same data.
type Opener func(ctx context.Context, keyFile string) (gateway.Store, error)

// Fresh returns an Opener of a new, empty database for t.
type Fresh func(t *testing.T) Opener

// Run runs the contract suite, each test on a database of its own.
func Run(t *testing.T, fresh Fresh) {
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"RegistrationRoundTrip", testRegistrationRoundTrip},
		{"NotFound", testNotFound},
		{"Order", testOrder},
		{"ContactsDiffAndIdempotence", testContacts},
		{"NumberChangeDropsContacts", testNumberChange},
		{"DeleteCascades", testDeleteCascades},
		{"ApplyMessages", testApplyMessages},
		{"ApplySkipsUnregistered", testApplySkipsUnregistered},
		{"ApplyIdempotentDeletes", testApplyIdempotentDeletes},
		{"ApplyInvalid", testApplyInvalid},
		{"MessageIDsNeverReused", testIDsNeverReused},
		{"MessagesPage", testMessagesPage},
		{"OnlineAndLastLogin", testOnline},
		{"Sealing", testSealing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{t: t, fresh: fresh, open: fresh(t), key: filepath.Join(t.TempDir(), "store.key")}
			e.s = e.reopen()
			tc.fn(t, e)
		})
	}
}

type env struct {
	t     *testing.T
	fresh Fresh
	open  Opener
	key   string
	s     gateway.Store
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// reopen opens another handle on the test's database (closed at cleanup).
func (e *env) reopen() gateway.Store {
	e.t.Helper()
	s, err := e.open(ctxFor(e.t), e.key)
	if err != nil {
		e.t.Fatalf("open: %v", err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

func alice() gateway.Registration {
	return gateway.Registration{JID: "alice@localhost", Number: "7744387", Password: "s3cret ü"}
}

func bob() gateway.Registration { return gateway.Registration{JID: "bob@localhost", Number: "5"} }

func (e *env) put(r gateway.Registration) {
	e.t.Helper()
	if err := e.s.PutRegistration(ctxFor(e.t), r); err != nil {
		e.t.Fatalf("PutRegistration(%s): %v", r.JID, err)
	}
}

func (e *env) apply(ops ...gateway.Op) {
	e.t.Helper()
	if err := e.s.Apply(ctxFor(e.t), ops); err != nil {
		e.t.Fatalf("Apply: %v", err)
	}
}

func (e *env) messages(jid string) []gateway.QueuedMessage {
	e.t.Helper()
	ms, err := e.s.Messages(ctxFor(e.t), jid)
	if err != nil {
		e.t.Fatalf("Messages(%s): %v", jid, err)
	}
	return ms
}

func (e *env) contacts(jid string) []roster.Contact {
	e.t.Helper()
	cs, err := e.s.Contacts(ctxFor(e.t), jid)
	if err != nil {
		e.t.Fatalf("Contacts(%s): %v", jid, err)
	}
	return cs
}

func (e *env) jids(f func(context.Context) ([]string, error)) []string {
	e.t.Helper()
	js, err := f(ctxFor(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	return js
}

func testRegistrationRoundTrip(t *testing.T, e *env) {
	ctx := ctxFor(t)
	before := time.Now().Add(-time.Second)
	a := alice()
	a.AllowRemove, a.Group = true, "Odigo friends"
	e.put(a)
	r, err := e.s.Registration(ctx, a.JID)
	if err != nil {
		t.Fatal(err)
	}
	if r.JID != a.JID || r.Number != a.Number || r.Password != a.Password || !r.AllowRemove || r.Group != a.Group {
		t.Errorf("Registration = %+v, want %+v", r, a)
	}
	if r.Created.Before(before) || !r.Updated.Equal(r.Created) || !r.LastLogin.IsZero() {
		t.Errorf("times: created %v updated %v last login %v", r.Created, r.Updated, r.LastLogin)
	}
	// Putting it again updates the password and keeps Created.
	a.Password, a.AllowRemove, a.Group = "new", false, ""
	e.put(a)
	r2, err := e.s.Registration(ctx, a.JID)
	if err != nil || r2.Password != "new" || r2.AllowRemove || r2.Group != "" || !r2.Created.Equal(r.Created) || r2.Updated.Before(r.Updated) {
		t.Errorf("after update: %+v, %v", r2, err)
	}
	if err := e.s.PutRegistration(ctx, gateway.Registration{JID: "x@localhost"}); err == nil {
		t.Error("PutRegistration without a number succeeded")
	}
	if err := e.s.PutRegistration(ctx, gateway.Registration{Number: "1"}); err == nil {
		t.Error("PutRegistration without a JID succeeded")
	}
}

func testNotFound(t *testing.T, e *env) {
	ctx := ctxFor(t)
	e.put(alice())
	const absent = "nobody@localhost"
	if _, err := e.s.Registration(ctx, absent); !errors.Is(err, gateway.ErrNotFound) {
		t.Errorf("Registration(absent) error = %v, want ErrNotFound", err)
	}
	if err := e.s.DeleteRegistration(ctx, absent); !errors.Is(err, gateway.ErrNotFound) {
		t.Errorf("DeleteRegistration(absent) error = %v, want ErrNotFound", err)
	}
	if err := e.s.SaveContacts(ctx, absent, []roster.Contact{{Number: "1", InList: true}}); !errors.Is(err, gateway.ErrNotFound) {
		t.Errorf("SaveContacts(absent) error = %v, want ErrNotFound", err)
	}
	if cs := e.contacts(absent); cs == nil || len(cs) != 0 {
		t.Errorf("Contacts(absent) = %#v, want empty, not nil", cs)
	}
	if ms := e.messages(absent); ms == nil || len(ms) != 0 {
		t.Errorf("Messages(absent) = %#v, want empty, not nil", ms)
	}
	if err := e.s.DeleteRegistration(ctx, alice().JID); err != nil {
		t.Fatal(err)
	}
	if err := e.s.DeleteRegistration(ctx, alice().JID); !errors.Is(err, gateway.ErrNotFound) {
		t.Errorf("second DeleteRegistration error = %v, want ErrNotFound", err)
	}
}

// Listings are in bytewise order of JID (registrations, queued, online) or
// number (contacts), whatever the database's collation.
func testOrder(t *testing.T, e *env) {
	jids := []string{"Zed@localhost", "a.b@localhost", "a@localhost", "ab@localhost", "zoë@localhost"}
	for i := len(jids) - 1; i >= 0; i-- {
		e.put(gateway.Registration{JID: jids[i], Number: "1"})
		e.apply(gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: jids[i], Dir: gateway.ToIMIP, Peer: "1"}},
			gateway.OpSetOnline{JID: jids[i], Online: true})
	}
	rs, err := e.s.Registrations(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.JID)
	}
	if !cmp.Equal(got, jids) {
		t.Errorf("Registrations order %q, want %q", got, jids)
	}
	if got := e.jids(e.s.QueuedJIDs); !cmp.Equal(got, jids) {
		t.Errorf("QueuedJIDs %q, want %q", got, jids)
	}
	if got := e.jids(e.s.OnlineJIDs); !cmp.Equal(got, jids) {
		t.Errorf("OnlineJIDs %q, want %q", got, jids)
	}
	numbers := []string{"0042", "10", "100", "2", "9"}
	var cs []roster.Contact
	for i := len(numbers) - 1; i >= 0; i-- {
		cs = append(cs, roster.Contact{Number: wireNumber(numbers[i]), InList: true})
	}
	if err := e.s.SaveContacts(ctxFor(t), jids[0], cs); err != nil {
		t.Fatal(err)
	}
	var gotN []string
	for _, c := range e.contacts(jids[0]) {
		gotN = append(gotN, string(c.Number))
	}
	if !cmp.Equal(gotN, numbers) {
		t.Errorf("Contacts order %q, want %q", gotN, numbers)
	}
}

func testContacts(t *testing.T, e *env) {
	ctx := ctxFor(t)
	e.put(alice())
	cs := []roster.Contact{
		{Number: "1", Nick: "Zoë", InList: true},
		{Number: "2", PendingOut: true, OutText: "hi"},
		{Number: "3", PendingIn: true, InText: "let me in"},
	}
	for range 2 { // saving the same list twice is idempotent
		if err := e.s.SaveContacts(ctx, alice().JID, cs); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(cs, e.contacts(alice().JID)); d != "" {
			t.Errorf("Contacts (-want +got):\n%s", d)
		}
	}
	// One row per change through Apply; deleting twice is fine.
	e.apply(gateway.OpPutContact{JID: alice().JID, Contact: roster.Contact{Number: "2", InList: true}},
		gateway.OpDeleteContact{JID: alice().JID, Number: "3"},
		gateway.OpDeleteContact{JID: alice().JID, Number: "3"},
		gateway.OpDeleteContact{JID: alice().JID, Number: "404"})
	want := []roster.Contact{cs[0], {Number: "2", InList: true}}
	if d := cmp.Diff(want, e.contacts(alice().JID)); d != "" {
		t.Errorf("after ops (-want +got):\n%s", d)
	}
	if err := e.s.SaveContacts(ctx, alice().JID, []roster.Contact{{Number: "1"}, {Number: "1"}}); err == nil {
		t.Error("SaveContacts with a number twice succeeded")
	}
	if err := e.s.SaveContacts(ctx, alice().JID, []roster.Contact{{Nick: "x"}}); err == nil {
		t.Error("SaveContacts with a contact without a number succeeded")
	}
	if d := cmp.Diff(want, e.contacts(alice().JID)); d != "" {
		t.Errorf("a refused SaveContacts changed the list (-want +got):\n%s", d)
	}
	if err := e.s.SaveContacts(ctx, alice().JID, nil); err != nil {
		t.Fatal(err)
	}
	if got := e.contacts(alice().JID); len(got) != 0 {
		t.Errorf("after saving none: %v", got)
	}
}

func testNumberChange(t *testing.T, e *env) {
	e.put(alice())
	e.apply(gateway.OpPutContact{JID: alice().JID, Contact: roster.Contact{Number: "1", InList: true}})
	e.put(alice()) // same number: contacts stay
	if got := e.contacts(alice().JID); len(got) != 1 {
		t.Fatalf("contacts after re-put with the same number: %v", got)
	}
	a := alice()
	a.Number = "999"
	e.put(a)
	if got := e.contacts(alice().JID); len(got) != 0 {
		t.Errorf("contacts after a number change: %v, want none", got)
	}
}

func testDeleteCascades(t *testing.T, e *env) {
	e.put(alice())
	e.put(bob())
	e.apply(gateway.OpPutContact{JID: alice().JID, Contact: roster.Contact{Number: "1"}},
		gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: alice().JID, Dir: gateway.ToIMIP, Peer: "1"}},
		gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: bob().JID, Dir: gateway.ToIMIP, Peer: "1"}},
		gateway.OpSetOnline{JID: alice().JID, Online: true})
	if err := e.s.DeleteRegistration(ctxFor(t), alice().JID); err != nil {
		t.Fatal(err)
	}
	if len(e.contacts(alice().JID)) != 0 || len(e.messages(alice().JID)) != 0 {
		t.Error("contacts or messages survive their registration")
	}
	if got := e.jids(e.s.QueuedJIDs); !cmp.Equal(got, []string{bob().JID}) {
		t.Errorf("QueuedJIDs = %q, want bob only", got)
	}
	if got := e.jids(e.s.OnlineJIDs); len(got) != 0 {
		t.Errorf("OnlineJIDs = %q, want none", got)
	}
}

func testApplyMessages(t *testing.T, e *env) {
	e.put(alice())
	e.put(bob())
	before := time.Now().Add(-time.Second)
	in := []*gateway.QueuedMessage{
		{JID: alice().JID, Dir: gateway.ToIMIP, Peer: "7744387", StanzaID: "m1", Resource: "phone",
			Body: "hi 😀\nline 2", Receipt: true},
		{JID: bob().JID, Dir: gateway.ToXMPP, Peer: "100", StanzaID: "imip-1", Nick: "Zoë",
			Body: "from imip", Stamp: time.Date(2024, 4, 30, 23, 59, 58, 123456000, time.UTC), Tries: 2},
		{JID: alice().JID, Dir: gateway.ToXMPP, Peer: "100", StanzaID: "imip-2", Body: "no stamp",
			ID: 99, Accepted: time.Unix(5, 0)}, // ID and Accepted are the store's
		{JID: alice().JID, Dir: gateway.ToXMPP, Peer: "0042",
			Stamp: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}, // microseconds kept
	}
	var ops []gateway.Op
	for _, m := range in {
		ops = append(ops, gateway.OpPutMessage{Msg: m})
	}
	e.apply(ops...)
	for i, m := range in {
		if m.ID <= 0 || (i > 0 && m.ID <= in[i-1].ID) {
			t.Errorf("%d: ID %d; want ascending IDs above 0", i, m.ID)
		}
		if m.Accepted.Before(before) || !m.Accepted.Equal(in[0].Accepted) {
			t.Errorf("%d: Accepted %v: want the batch's time", i, m.Accepted)
		}
	}
	in[3].Stamp = in[3].Stamp.Truncate(time.Microsecond)
	if d := cmp.Diff([]gateway.QueuedMessage{*in[0], *in[2], *in[3]}, e.messages(alice().JID)); d != "" {
		t.Errorf("Messages(alice) (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]gateway.QueuedMessage{*in[1]}, e.messages(bob().JID)); d != "" {
		t.Errorf("Messages(bob) (-want +got):\n%s", d)
	}
	e.apply(gateway.OpTouchMessage{ID: in[0].ID, Tries: 3},
		gateway.OpDeleteMessage{ID: in[1].ID},
		gateway.OpDeleteMessage{ID: in[2].ID})
	in[0].Tries = 3
	if d := cmp.Diff([]gateway.QueuedMessage{*in[0], *in[3]}, e.messages(alice().JID)); d != "" {
		t.Errorf("after touch and delete (-want +got):\n%s", d)
	}
	if got := e.jids(e.s.QueuedJIDs); !cmp.Equal(got, []string{alice().JID}) {
		t.Errorf("QueuedJIDs = %q, want alice only", got)
	}
	e.apply() // nothing is fine
	// Another handle sees the same queue (a restart).
	if d := cmp.Diff([]gateway.QueuedMessage{*in[0], *in[3]}, mustMessages(t, e.reopen(), alice().JID)); d != "" {
		t.Errorf("after reopening (-want +got):\n%s", d)
	}
}

func mustMessages(t *testing.T, s gateway.Store, jid string) []gateway.QueuedMessage {
	t.Helper()
	ms, err := s.Messages(ctxFor(t), jid)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// Ops of a JID that is not registered are skipped, not errors: the user
// was deleted while the batch waited.
func testApplySkipsUnregistered(t *testing.T, e *env) {
	e.put(alice())
	const gone = "gone@localhost"
	lost := &gateway.QueuedMessage{ID: 7, JID: gone, Dir: gateway.ToIMIP, Peer: "1", Accepted: time.Unix(1, 0)}
	kept := &gateway.QueuedMessage{JID: alice().JID, Dir: gateway.ToIMIP, Peer: "1"}
	e.apply(gateway.OpPutMessage{Msg: lost},
		gateway.OpPutContact{JID: gone, Contact: roster.Contact{Number: "1"}},
		gateway.OpSetOnline{JID: gone, Online: true},
		gateway.OpPutMessage{Msg: kept})
	if lost.ID != 0 || !lost.Accepted.IsZero() {
		t.Errorf("skipped message: ID %d Accepted %v, want zero", lost.ID, lost.Accepted)
	}
	if kept.ID == 0 {
		t.Error("message of a registered JID in the same batch was not stored")
	}
	e.put(gateway.Registration{JID: gone, Number: "9"})
	if len(e.contacts(gone)) != 0 || len(e.messages(gone)) != 0 || len(e.jids(e.s.OnlineJIDs)) != 0 {
		t.Error("skipped ops show up after the JID registers")
	}
}

// Deleting or touching a message that is gone is a no-op: a batch may be
// retried.
func testApplyIdempotentDeletes(t *testing.T, e *env) {
	e.put(alice())
	m := &gateway.QueuedMessage{JID: alice().JID, Dir: gateway.ToIMIP, Peer: "1"}
	e.apply(gateway.OpPutMessage{Msg: m})
	for range 2 {
		e.apply(gateway.OpDeleteMessage{ID: m.ID}, gateway.OpTouchMessage{ID: m.ID, Tries: 1},
			gateway.OpDeleteMessage{ID: 1 << 40})
	}
	if got := e.messages(alice().JID); len(got) != 0 {
		t.Errorf("Messages = %v, want none", got)
	}
}

// An invalid op refuses the whole batch before anything is written.
func testApplyInvalid(t *testing.T, e *env) {
	e.put(alice())
	first := &gateway.QueuedMessage{JID: alice().JID, Dir: gateway.ToIMIP, Peer: "1"}
	for _, bad := range []gateway.Op{
		gateway.OpPutMessage{},
		gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: alice().JID, Dir: 7, Peer: "1"}},
		gateway.OpDeleteMessage{ID: 0},
		gateway.OpTouchMessage{ID: 1, Tries: -1},
		gateway.OpPutContact{JID: alice().JID},
		gateway.OpSetOnline{},
		nil,
	} {
		err := e.s.Apply(ctxFor(t), []gateway.Op{gateway.OpPutMessage{Msg: first}, bad})
		if !errors.Is(err, gateway.ErrBadOp) {
			t.Errorf("Apply(%#v) error = %v, want ErrBadOp", bad, err)
		}
	}
	if first.ID != 0 || len(e.messages(alice().JID)) != 0 {
		t.Error("a refused batch wrote its valid ops")
	}
}

func testIDsNeverReused(t *testing.T, e *env) {
	e.put(alice())
	put := func() int64 {
		m := &gateway.QueuedMessage{JID: alice().JID, Dir: gateway.ToIMIP, Peer: "1"}
		e.apply(gateway.OpPutMessage{Msg: m})
		return m.ID
	}
	ids := []int64{put(), put(), put()}
	e.apply(gateway.OpDeleteMessage{ID: ids[2]}, gateway.OpDeleteMessage{ID: ids[1]})
	if id := put(); id <= ids[2] {
		t.Errorf("ID after deleting the highest = %d, want above %d", id, ids[2])
	}
	if err := e.s.DeleteRegistration(ctxFor(t), alice().JID); err != nil {
		t.Fatal(err)
	}
	e.put(alice())
	e.s = e.reopen()
	if id := put(); id <= ids[2]+1 {
		t.Errorf("ID after re-registering and reopening = %d, want above %d", id, ids[2]+1)
	}
}

func testMessagesPage(t *testing.T, e *env) {
	e.put(alice())
	e.put(bob())
	var ops []gateway.Op
	var toXMPP []string
	for i := range 10 {
		dir := gateway.ToXMPP
		if i%3 == 0 {
			dir = gateway.ToIMIP
		} else {
			toXMPP = append(toXMPP, fmt.Sprint("b", i))
		}
		ops = append(ops, gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: alice().JID, Dir: dir, Peer: "100", Body: fmt.Sprint("b", i)}},
			gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: bob().JID, Dir: gateway.ToXMPP, Peer: "100", Body: "bob's"}})
	}
	e.apply(ops...)
	var got []string
	var after int64
	for pages := 0; ; pages++ {
		page, err := e.s.MessagesPage(ctxFor(t), alice().JID, gateway.ToXMPP, after, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 4 || pages > 3 {
			t.Fatalf("page %d has %d messages (limit 4)", pages, len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			if m.Dir != gateway.ToXMPP || m.JID != alice().JID || m.ID <= after {
				t.Errorf("page %d holds %+v", pages, m)
			}
			after = m.ID
			got = append(got, m.Body)
		}
	}
	if !cmp.Equal(got, toXMPP) {
		t.Errorf("pages read %q, want %q", got, toXMPP)
	}
	all, err := e.s.MessagesPage(ctxFor(t), alice().JID, gateway.ToIMIP, 0, 0)
	if err != nil || len(all) != 4 {
		t.Errorf("MessagesPage(ToIMIP, no limit) = %d messages, %v; want 4", len(all), err)
	}
	none, err := e.s.MessagesPage(ctxFor(t), "nobody@localhost", gateway.ToIMIP, 0, 10)
	if err != nil || none == nil || len(none) != 0 {
		t.Errorf("MessagesPage(nobody) = %#v, %v; want empty", none, err)
	}
}

func testOnline(t *testing.T, e *env) {
	e.put(alice())
	e.put(bob())
	before := time.Now().Add(-time.Second)
	e.apply(gateway.OpSetOnline{JID: alice().JID, Online: true}, gateway.OpSetOnline{JID: alice().JID, Online: true},
		gateway.OpSetOnline{JID: bob().JID, Online: false})
	if got := e.jids(e.s.OnlineJIDs); !cmp.Equal(got, []string{alice().JID}) {
		t.Errorf("OnlineJIDs = %q, want alice", got)
	}
	r, err := e.s.Registration(ctxFor(t), alice().JID)
	if err != nil || r.LastLogin.Before(before) {
		t.Fatalf("last login %v, %v", r.LastLogin, err)
	}
	e.apply(gateway.OpSetOnline{JID: alice().JID, Online: false})
	if got := e.jids(e.s.OnlineJIDs); len(got) != 0 {
		t.Errorf("OnlineJIDs = %q, want none", got)
	}
	e.put(alice()) // clearing the flag and re-putting keep the last login
	if r2, err := e.s.Registration(ctxFor(t), alice().JID); err != nil || !r2.LastLogin.Equal(r.LastLogin) {
		t.Errorf("last login %v, %v; want %v", r2.LastLogin, err, r.LastLogin)
	}
}

// Passwords are sealed under the key file: another key cannot open the
// database, and the same key on a new handle reads them.
func testSealing(t *testing.T, e *env) {
	e.put(alice())
	if r, err := e.reopen().Registration(ctxFor(t), alice().JID); err != nil || r.Password != alice().Password {
		t.Errorf("password through a new handle: %q, %v", r.Password, err)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	s, err := e.fresh(t)(ctxFor(t), other) // creates the other key
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = e.open(ctxFor(t), other)
	if err == nil {
		s.Close()
		t.Fatal("opened with another key file")
	}
	if !errors.Is(err, seal.ErrWrongKey) {
		t.Errorf("open with another key: %v, want seal.ErrWrongKey", err)
	}
}

func wireNumber(s string) wire.Number { return wire.Number(s) }
