package imipserver_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

func openSQLite(t *testing.T, path string) *imipserver.SQLiteStore {
	t.Helper()
	st, err := imipserver.OpenSQLite(t.Context(), path, imipserver.SQLiteOptions{KeyFile: path + ".key"})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStores runs the same checks against both Store implementations.
func TestStores(t *testing.T) {
	for i, tc := range []struct {
		name string
		open func(t *testing.T) imipserver.Store
	}{
		{"mem", func(t *testing.T) imipserver.Store { return imipserver.NewMemStore() }},
		{"sqlite", func(t *testing.T) imipserver.Store {
			st := openSQLite(t, filepath.Join(t.TempDir(), "imipd.db"))
			t.Cleanup(func() { st.Close() })
			return st
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			st := tc.open(t)
			if _, err := st.Account(ctx, alice); !errors.Is(err, imipserver.ErrNotFound) {
				t.Fatalf("%d: Account of a missing user: %v, want ErrNotFound", i, err)
			}
			for _, a := range testAccounts {
				if err := st.PutAccount(ctx, a); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.PutAccount(ctx, imipserver.Account{Number: bob, Password: "new", Nick: "bobby"}); err != nil {
				t.Fatal(err)
			}
			if err := st.PutAccount(ctx, imipserver.Account{Number: "x1", Password: "p"}); err == nil {
				t.Errorf("%d: PutAccount accepted a bad number", i)
			}
			if a, err := st.Account(ctx, bob); err != nil || a.Password != "new" || a.Nick != "bobby" {
				t.Errorf("%d: after upsert: %+v, %v", i, a, err)
			}

			// Lists: alice holds carol and bob, dave holds bob.
			for _, p := range [][2]wire.Number{{alice, carol}, {alice, bob}, {alice, bob}, {dave, bob}} {
				if err := st.AddContact(ctx, p[0], p[1]); err != nil {
					t.Fatal(err)
				}
			}
			got, err := st.Contacts(ctx, alice)
			want := []wire.Buddy{{Number: bob, Nick: "bobby"}, {Number: carol, Nick: "carol"}}
			if err != nil || !cmp.Equal(got, want) {
				t.Errorf("%d: Contacts = %v, %v; want %v", i, got, err, want)
			}
			if w, err := st.Watchers(ctx, bob); err != nil || !slices.Equal(w, []wire.Number{alice, dave}) {
				t.Errorf("%d: Watchers(bob) = %v, %v", i, w, err)
			}
			if has, _ := st.HasContact(ctx, bob, alice); has {
				t.Errorf("%d: lists are not one-directional", i)
			}
			if ok, err := st.RemoveContact(ctx, alice, carol); !ok || err != nil {
				t.Errorf("%d: RemoveContact = %v, %v", i, ok, err)
			}
			if ok, _ := st.RemoveContact(ctx, alice, carol); ok {
				t.Errorf("%d: second RemoveContact reported a removal", i)
			}

			// Requests: replaced by From/To, oldest first.
			t0 := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
			for _, r := range []imipserver.Request{
				{From: bob, To: carol, Text: "old", Time: t0},
				{From: alice, To: carol, Text: "a", Time: t0},
				{From: bob, To: carol, Text: "new", Time: t0.Add(time.Minute)},
				{From: carol, To: dave, Text: "", Time: t0},
			} {
				if err := st.PutRequest(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			reqs, err := st.Requests(ctx, carol)
			wantReqs := []imipserver.Request{
				{From: alice, To: carol, Text: "a", Time: t0},
				{From: bob, To: carol, Text: "new", Time: t0.Add(time.Minute)},
			}
			if err != nil || !cmp.Equal(reqs, wantReqs) {
				t.Errorf("%d: Requests = %v, %v; want %v", i, reqs, err, wantReqs)
			}
			if ok, _ := st.DeleteRequest(ctx, bob, carol); !ok {
				t.Errorf("%d: DeleteRequest found nothing", i)
			}
			if ok, _ := st.DeleteRequest(ctx, bob, carol); ok {
				t.Errorf("%d: second DeleteRequest found something", i)
			}

			// Messages: IDs grow, oldest first, deletion by ID.
			var ids []int64
			for j, text := range []string{"one", "two", "three"} {
				id, err := st.PutMessage(ctx, imipserver.Message{From: alice, To: bob, Time: t0.Add(time.Duration(j) * time.Second), Text: text})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			if !slices.IsSorted(ids) || ids[0] == ids[1] {
				t.Errorf("%d: message IDs %v", i, ids)
			}
			if err := st.DeleteMessages(ctx, ids[1]); err != nil {
				t.Fatal(err)
			}
			msgs, err := st.Messages(ctx, bob, 0, 1000)
			wantMsgs := []imipserver.Message{
				{ID: ids[0], From: alice, To: bob, Time: t0, Text: "one"},
				{ID: ids[2], From: alice, To: bob, Time: t0.Add(2 * time.Second), Text: "three"},
			}
			if err != nil || !cmp.Equal(msgs, wantMsgs) {
				t.Errorf("%d: Messages = %v, %v; want %v", i, msgs, err, wantMsgs)
			}
			if m, _ := st.Messages(ctx, alice, 0, 1000); len(m) != 0 {
				t.Errorf("%d: alice has messages %v", i, m)
			}
			// Paging: IDs above after, at most limit.
			if m, err := st.Messages(ctx, bob, ids[0], 1); err != nil || len(m) != 1 || m[0].ID != ids[2] {
				t.Errorf("%d: Messages after %d limit 1 = %v, %v; want only %d", i, ids[0], m, err, ids[2])
			}
			if m, err := st.Messages(ctx, bob, 0, 1); err != nil || len(m) != 1 || m[0].ID != ids[0] {
				t.Errorf("%d: Messages limit 1 = %v, %v; want only %d", i, m, err, ids[0])
			}
			if _, err := st.Messages(ctx, bob, 0, 0); err == nil {
				t.Errorf("%d: Messages with limit 0 did not fail", i)
			}
			if err := st.DeleteMessages(ctx, ids[0], ids[1], ids[2], 999); err != nil {
				t.Fatal(err)
			}
			if m, _ := st.Messages(ctx, bob, 0, 1000); len(m) != 0 {
				t.Errorf("%d: after DeleteMessages bob has %v", i, m)
			}
			if id, err := st.PutMessage(ctx, imipserver.Message{From: alice, To: bob, Time: t0, Text: "four"}); err != nil || id <= ids[2] {
				t.Errorf("%d: ID after deletes %d, %v; want above %d (never reused)", i, id, err, ids[2])
			}
		})
	}
}

// latestSchema is the newest goose migration in migrations/.
const latestSchema = 3

func TestSQLiteFileModeAndSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imipd.db")
	st := openSQLite(t, path)
	v, err := st.SchemaVersion(t.Context())
	if err != nil || v != latestSchema {
		t.Errorf("schema version %d, %v; want %d", v, err, latestSchema)
	}
	st.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("db mode %v, want 0600", fi.Mode().Perm())
	}
	// Reopening an up-to-date database migrates nothing and works.
	st = openSQLite(t, path)
	defer st.Close()
	if v, _ := st.SchemaVersion(t.Context()); v != latestSchema {
		t.Errorf("schema version after reopen %d", v)
	}
}

// TestRestartKeepsState: accounts, lists, pending requests and held
// messages survive a server restart on the same SQLite file.
func TestRestartKeepsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imipd.db")
	ctx := context.Background()

	st := openSQLite(t, path)
	for _, a := range testAccounts {
		if err := st.PutAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, imipserver.Config{Store: st})
	a := loginRaw(t, ts.addr, alice)
	b := loginRaw(t, ts.addr, bob)
	// alice asks bob, bob accepts: alice's list holds bob.
	id := a.send(wire.TypeLIST, "ADD "+string(bob), "")
	a.expectACK(wire.CodeOK, id)
	b.expect("LIST ADD")
	id = b.send(wire.TypeLIST, "ACCEPT "+string(alice)+` "alice"`, "")
	b.expectACK(wire.CodeOK, id)
	a.expect("STAT ONLINE")
	// A pending request to carol and a message held for her.
	id = a.send(wire.TypeLIST, "ADD "+string(carol), "please")
	a.expectACK(wire.CodeOK, id)
	id = a.send(wire.TypeMESG, "", "while you were out", wire.HdrTo, string(carol))
	a.expectACK(wire.CodeOK, id)
	held, err := st.Messages(ctx, carol, 0, 1000)
	if err != nil || len(held) != 1 {
		t.Fatalf("held %v, %v", held, err)
	}
	ts.stop()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = openSQLite(t, path)
	defer st.Close()
	ts = startServer(t, imipserver.Config{Store: st})
	a2 := dialRaw(t, ts.addr)
	if got := a2.login(alice).Get(wire.HdrBuddy); got != `1002002 "bob"` {
		t.Errorf("Buddy after restart = %q", got)
	}
	c := loginRaw(t, ts.addr, carol)
	if r := c.expect("LIST ADD"); r.Get(wire.HdrFrom) != `1001001 "alice"` || string(r.Body) != "please" {
		t.Errorf("request after restart: %v %q", r.Headers, r.Body)
	}
	m := c.expect(wire.TypeMESG)
	if string(m.Body) != "while you were out" || m.Get(wire.HdrTimo) != wire.FormatTimo(held[0].Time) {
		t.Errorf("held message after restart: %v %q", m.Headers, m.Body)
	}
	waitFor(t, "the delivered message to be deleted", func() bool {
		m, _ := st.Messages(ctx, carol, 0, 1000)
		return len(m) == 0
	})
	ts.stop()
}

// TestSQLiteConcurrentWrites: message writes from many goroutines (group
// committed) all land, each with its own ID, and every message with an ID
// below one just returned is visible.
func TestSQLiteConcurrentWrites(t *testing.T) {
	st := openSQLite(t, filepath.Join(t.TempDir(), "imipd.db"))
	ctx := t.Context()
	const writers, each = 10, 10
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for j := range each {
				id, err := st.PutMessage(ctx, imipserver.Message{From: alice, To: bob, Time: time.Unix(0, 0), Text: fmt.Sprint(w, j)})
				if err != nil {
					t.Error(err)
					return
				}
				msgs, err := st.Messages(ctx, bob, 0, writers*each)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[id] {
					t.Errorf("ID %d returned twice", id)
				}
				seen[id] = true
				mu.Unlock()
				// Every ID up to id is visible: none missing below it.
				var below int64
				for _, m := range msgs {
					if m.ID <= id {
						below++
					}
				}
				if below != id { // IDs start at 1 and nothing is deleted here
					t.Errorf("after PutMessage returned %d, %d messages with an ID up to it are visible", id, below)
				}
				if j%5 == 4 {
					if err := st.DeleteMessages(ctx); err != nil { // no IDs: a no-op
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if msgs, _ := st.Messages(ctx, bob, 0, 2*writers*each); len(msgs) != writers*each {
		t.Errorf("%d messages stored, want %d", len(msgs), writers*each)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutMessage(ctx, imipserver.Message{From: alice, To: bob}); err == nil {
		t.Error("PutMessage after Close did not fail")
	}
	_ = st.Close() // a second Close must not panic
}
