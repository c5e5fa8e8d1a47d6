package sqlitestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"imip-transport/gateway"
	"imip-transport/imipside/wire"
	"imip-transport/roster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gw.db")
	return openAt(t, path), path
}

// fakeClock makes timestamps predictable.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)}
}

var ctx = context.Background()

func alice() gateway.Registration {
	return gateway.Registration{JID: "alice@localhost", Number: "6340564", Password: "pa ss\"wörd'; --"}
}

func mustPut(t *testing.T, s *Store, r gateway.Registration) {
	t.Helper()
	if err := s.PutRegistration(ctx, r); err != nil {
		t.Fatalf("PutRegistration(%q): %v", r.JID, err)
	}
}

func mustSave(t *testing.T, s *Store, jid string, cs []roster.Contact) {
	t.Helper()
	if err := s.SaveContacts(ctx, jid, cs); err != nil {
		t.Fatalf("SaveContacts(%q): %v", jid, err)
	}
}

func mustContacts(t *testing.T, s *Store, jid string) []roster.Contact {
	t.Helper()
	cs, err := s.Contacts(ctx, jid)
	if err != nil {
		t.Fatalf("Contacts(%q): %v", jid, err)
	}
	return cs
}

func TestRegistrationRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	clk := newClock()
	s.now = clk.now
	in := []gateway.Registration{
		{JID: "zed@example.org", Number: "1", Password: "", AllowRemove: true},
		alice(),
		{JID: "bob@localhost", Number: "12345678901234567890", Password: strings.Repeat("x", 1000)},
	}
	for _, r := range in {
		mustPut(t, s, r)
	}
	for i, want := range in {
		got, err := s.Registration(ctx, want.JID)
		if err != nil {
			t.Fatalf("%d: Registration(%q): %v", i, want.JID, err)
		}
		stamp := time.Date(2024, 5, 1, 12, 0, i+1, 123456789, time.UTC)
		want.Created, want.Updated = stamp, stamp
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%d: Registration(%q) (-want +got):\n%s", i, want.JID, d)
		}
	}
	all, err := s.Registrations(ctx)
	if err != nil {
		t.Fatalf("Registrations: %v", err)
	}
	var jids []string
	for _, r := range all {
		jids = append(jids, r.JID)
	}
	if want := []string{"alice@localhost", "bob@localhost", "zed@example.org"}; !cmp.Equal(jids, want) {
		t.Errorf("Registrations JIDs = %q, want %q", jids, want)
	}
}

func TestPutRegistrationInvalid(t *testing.T) {
	s, _ := openTemp(t)
	for i, r := range []gateway.Registration{{Number: "1"}, {JID: "a@b"}} {
		if err := s.PutRegistration(ctx, r); err == nil {
			t.Errorf("%d: PutRegistration(%+v) = nil, want an error", i, r)
		}
	}
	if all, err := s.Registrations(ctx); err != nil || len(all) != 0 {
		t.Errorf("Registrations = %v, %v; want none", all, err)
	}
}

func TestUpdateCredentials(t *testing.T) {
	s, _ := openTemp(t)
	clk := newClock()
	s.now = clk.now
	r := alice()
	mustPut(t, s, r)
	first, _ := s.Registration(ctx, r.JID)
	contacts := []roster.Contact{{Number: "7744387", Nick: "mawis76", InList: true}}
	mustSave(t, s, r.JID, contacts)

	r.Password, r.AllowRemove = "new secret", true
	r.Created = time.Unix(1, 0) // ignored
	mustPut(t, s, r)
	got, err := s.Registration(ctx, r.JID)
	if err != nil {
		t.Fatalf("Registration: %v", err)
	}
	if got.Password != "new secret" || !got.AllowRemove || got.Number != r.Number {
		t.Errorf("after update: %+v, want new password and AllowRemove", got)
	}
	if !got.Created.Equal(first.Created) || !got.Updated.After(first.Updated) {
		t.Errorf("after update: Created %v Updated %v; first Created %v Updated %v",
			got.Created, got.Updated, first.Created, first.Updated)
	}
	if d := cmp.Diff(contacts, mustContacts(t, s, r.JID)); d != "" {
		t.Errorf("password change touched the contacts (-want +got):\n%s", d)
	}

	// Another IMIP number: the old account's list goes.
	r.Number = "999"
	mustPut(t, s, r)
	if got, _ := s.Registration(ctx, r.JID); got.Number != "999" {
		t.Errorf("after number change: Number = %q, want 999", got.Number)
	}
	if cs := mustContacts(t, s, r.JID); len(cs) != 0 {
		t.Errorf("after number change: Contacts = %v, want none", cs)
	}
	if all, _ := s.Registrations(ctx); len(all) != 1 {
		t.Errorf("updates created rows: %d registrations, want 1", len(all))
	}
}

func TestNotFound(t *testing.T) {
	s, _ := openTemp(t)
	mustPut(t, s, alice())
	const absent = "nobody@localhost"
	if _, err := s.Registration(ctx, absent); !errors.Is(err, gateway.ErrNotFound) {
		t.Errorf("Registration(absent) error = %v, want ErrNotFound", err)
	}
	if err := s.DeleteRegistration(ctx, absent); !errors.Is(err, gateway.ErrNotFound) {
		t.Errorf("DeleteRegistration(absent) error = %v, want ErrNotFound", err)
	}
	err := s.SaveContacts(ctx, absent, []roster.Contact{{Number: "1", InList: true}})
	if !errors.Is(err, gateway.ErrNotFound) {
		t.Errorf("SaveContacts(absent) error = %v, want ErrNotFound", err)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "sqlitestore: ") {
		t.Errorf("error %q lacks the package prefix", err)
	}
	if cs, err := s.Contacts(ctx, absent); err != nil || cs == nil || len(cs) != 0 {
		t.Errorf("Contacts(absent) = %#v, %v; want empty, nil", cs, err)
	}
	if _, err := s.Registration(ctx, alice().JID); err != nil {
		t.Errorf("Registration(alice) after misses: %v", err)
	}
}

func TestContactsRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	r := alice()
	mustPut(t, s, r)
	cs := []roster.Contact{
		{Number: "900", Nick: "Zoë \"z\" 😀", InList: true, PendingIn: true, InText: "line1\nline2"},
		{Number: "100", PendingOut: true, OutText: "hi'; DROP TABLE contacts; --"},
		{Number: "200", Nick: "", PendingIn: true},
		{Number: "0042", Nick: "lead zero", InList: true},
	}
	mustSave(t, s, r.JID, cs)
	want := []roster.Contact{cs[3], cs[1], cs[2], cs[0]}
	if d := cmp.Diff(want, mustContacts(t, s, r.JID)); d != "" {
		t.Errorf("Contacts (-want +got):\n%s", d)
	}

	// Another user's list is separate.
	bob := gateway.Registration{JID: "bob@localhost", Number: "5"}
	mustPut(t, s, bob)
	mustSave(t, s, bob.JID, []roster.Contact{{Number: "100", Nick: "bob's", InList: true}})

	// Replace with a shorter list.
	mustSave(t, s, r.JID, cs[2:3])
	if d := cmp.Diff(cs[2:3], mustContacts(t, s, r.JID)); d != "" {
		t.Errorf("after replace (-want +got):\n%s", d)
	}
	// A failing save changes nothing.
	dup := []roster.Contact{{Number: "1", InList: true}, {Number: "1", PendingIn: true}}
	if err := s.SaveContacts(ctx, r.JID, dup); err == nil {
		t.Errorf("SaveContacts with duplicate numbers = nil, want an error")
	}
	if err := s.SaveContacts(ctx, r.JID, []roster.Contact{{Nick: "no number"}}); err == nil {
		t.Errorf("SaveContacts with an empty number = nil, want an error")
	}
	if d := cmp.Diff(cs[2:3], mustContacts(t, s, r.JID)); d != "" {
		t.Errorf("after failed saves (-want +got):\n%s", d)
	}
	// Empty clears.
	mustSave(t, s, r.JID, nil)
	if got := mustContacts(t, s, r.JID); len(got) != 0 {
		t.Errorf("after saving nil: %v, want none", got)
	}
	if got := mustContacts(t, s, bob.JID); len(got) != 1 || got[0].Nick != "bob's" {
		t.Errorf("bob's contacts = %v, want his one contact untouched", got)
	}
}

func TestDeleteCascades(t *testing.T) {
	s, _ := openTemp(t)
	r := alice()
	mustPut(t, s, r)
	mustSave(t, s, r.JID, []roster.Contact{{Number: "1", InList: true}, {Number: "2", PendingOut: true}})
	if err := s.DeleteRegistration(ctx, r.JID); err != nil {
		t.Fatalf("DeleteRegistration: %v", err)
	}
	if _, err := s.Registration(ctx, r.JID); !errors.Is(err, gateway.ErrNotFound) {
		t.Errorf("Registration after delete: %v, want ErrNotFound", err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM contacts").Scan(&n); err != nil || n != 0 {
		t.Errorf("contact rows after delete = %d, %v; want 0", n, err)
	}
	// Registering again starts from an empty list.
	mustPut(t, s, r)
	if cs := mustContacts(t, s, r.JID); len(cs) != 0 {
		t.Errorf("contacts after re-registering = %v, want none", cs)
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	r := alice()
	contacts := []roster.Contact{{Number: "7744387", Nick: "mawis76", InList: true}}
	mustPut(t, s, r)
	mustSave(t, s, r.JID, contacts)
	want, _ := s.Registration(ctx, r.JID)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i := range 2 { // and migrations are a no-op the second time
		s := openAt(t, path)
		got, err := s.Registration(ctx, r.JID)
		if err != nil || !cmp.Equal(want, got) {
			t.Errorf("%d: after reopen Registration = %+v, %v; want %+v", i, got, err, want)
		}
		if d := cmp.Diff(contacts, mustContacts(t, s, r.JID)); d != "" {
			t.Errorf("%d: after reopen contacts (-want +got):\n%s", i, d)
		}
		var rows, maxv int
		err = s.db.QueryRowContext(ctx,
			"SELECT COUNT(*), MAX(version_id) FROM goose_db_version WHERE version_id > 0").Scan(&rows, &maxv)
		if err != nil || rows != 1 || maxv != 1 {
			t.Errorf("%d: goose_db_version: %d applied, max %d, %v; want 1 migration, version 1", i, rows, maxv, err)
		}
		s.Close()
	}
}

// A write acknowledged by one Store is visible to a second process-like Store
// on the same file without any Close (WAL, synchronous=FULL).
func TestTwoHandlesShareFile(t *testing.T) {
	s1, path := openTemp(t)
	s2 := openAt(t, path)
	mustPut(t, s1, alice())
	if _, err := s2.Registration(ctx, alice().JID); err != nil {
		t.Errorf("second handle: %v", err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	s, path := openTemp(t)
	if _, err := s.db.ExecContext(ctx,
		"INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, 1)"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(ctx, path)
	if err == nil {
		s2.Close()
		t.Fatalf("Open on a schema from the future = nil error, want one")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open error = %v, want it to mention the newer schema", err)
	}
}

func TestPragmas(t *testing.T) {
	s, _ := openTemp(t)
	for i, tc := range []struct{ pragma, want string }{
		0: {"journal_mode", "wal"},
		1: {"synchronous", "2"}, // FULL
		2: {"foreign_keys", "1"},
		3: {"busy_timeout", fmt.Sprint(BusyTimeout.Milliseconds())},
	} {
		var got string
		if err := s.db.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil || got != tc.want {
			t.Errorf("%d: PRAGMA %s = %q, %v; want %q", i, tc.pragma, got, err, tc.want)
		}
	}
}

func TestFileMode(t *testing.T) {
	s, path := openTemp(t)
	mustPut(t, s, alice()) // creates the WAL
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("Stat(%s): %v", filepath.Base(p), err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}

	// An existing file readable by others is tightened.
	loose := filepath.Join(t.TempDir(), "loose.db")
	if err := os.WriteFile(loose, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil { // beat the umask
		t.Fatal(err)
	}
	openAt(t, loose)
	if fi, err := os.Stat(loose); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("existing 0644 file after Open: %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

func TestOpenBadPath(t *testing.T) {
	dir := t.TempDir()
	for i, p := range []string{"", ":memory:", filepath.Join(dir, "a?mode=ro"), "file:x.db",
		filepath.Join(dir, "missing", "gw.db"), dir} {
		if s, err := Open(ctx, p); err == nil {
			s.Close()
			t.Errorf("%d: Open(%q) = nil error, want one", i, p)
		}
	}
}

func TestCanceledContext(t *testing.T) {
	s, _ := openTemp(t)
	c, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.PutRegistration(c, alice()); !errors.Is(err, context.Canceled) {
		t.Errorf("PutRegistration(canceled) = %v, want context.Canceled", err)
	}
	if _, err := s.Registration(ctx, alice().JID); !errors.Is(err, gateway.ErrNotFound) {
		t.Errorf("a canceled put stored something: %v", err)
	}
	if _, err := Open(c, filepath.Join(t.TempDir(), "x.db")); err == nil {
		t.Errorf("Open(canceled) = nil error, want one")
	}
}

func TestConcurrentUse(t *testing.T) {
	s, _ := openTemp(t)
	const workers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jid := fmt.Sprintf("user%d@localhost", w)
			for i := range rounds {
				r := gateway.Registration{JID: jid, Number: wire.Number(fmt.Sprint(1000 + w)), Password: fmt.Sprint(i)}
				if err := s.PutRegistration(ctx, r); err != nil {
					errs <- err
					return
				}
				cs := make([]roster.Contact, i%5)
				for k := range cs {
					cs[k] = roster.Contact{Number: wire.Number(fmt.Sprint(k)), Nick: fmt.Sprint(i), InList: true}
				}
				if err := s.SaveContacts(ctx, jid, cs); err != nil {
					errs <- err
					return
				}
				got, err := s.Contacts(ctx, jid)
				if err != nil {
					errs <- err
					return
				}
				if !cmp.Equal(cs, got) && !(len(cs) == 0 && len(got) == 0) {
					errs <- fmt.Errorf("%s round %d: contacts %v, want %v", jid, i, got, cs)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range rounds {
			if _, err := s.Registrations(ctx); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	all, err := s.Registrations(ctx)
	if err != nil || len(all) != workers {
		t.Fatalf("Registrations = %d, %v; want %d", len(all), err, workers)
	}
	for _, r := range all {
		if r.Password != fmt.Sprint(rounds-1) {
			t.Errorf("%s: password %q, want the last round's", r.JID, r.Password)
		}
	}
}
