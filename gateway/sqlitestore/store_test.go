package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pressly/goose/v3"
	"go.uber.org/goleak"

	"imip-transport/gateway"
	"imip-transport/imipside/wire"
	"imip-transport/roster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// keyFor is the key file the tests use for the database at path.
func keyFor(path string) string { return path + ".key" }

func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, Options{KeyFile: keyFor(path)})
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

// migrationCount returns the number of migrations: the embedded SQL ones
// and the Go one that seals the passwords (after the first two SQL ones),
// numbered from 1 without gaps.
func migrationCount(t *testing.T) int {
	t.Helper()
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("embedded migrations: %v, %v", files, err)
	}
	if sealVersion != 3 || len(files) < 2 {
		t.Fatalf("sealVersion %d, %d SQL migrations: the sealing is version 3, after 00001 and 00002", sealVersion, len(files))
	}
	return len(files) + 1
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
	s, err := Open(ctx, path, Options{KeyFile: keyFor(path)})
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
		if want := migrationCount(t); err != nil || rows != want || maxv != want {
			t.Errorf("%d: goose_db_version: %d applied, max %d, %v; want %d migrations, version %[5]d",
				i, rows, maxv, err, want)
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
	s2, err := Open(ctx, path, Options{KeyFile: keyFor(path)})
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
		if s, err := Open(ctx, p, Options{KeyFile: filepath.Join(dir, "k")}); err == nil {
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
	if _, err := Open(c, filepath.Join(t.TempDir(), "x.db"), Options{KeyFile: filepath.Join(t.TempDir(), "k")}); err == nil {
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

// ------------------------------------------------------ queues and Apply

func mustApply(t *testing.T, s *Store, ops ...gateway.Op) {
	t.Helper()
	if err := s.Apply(ctx, ops); err != nil {
		t.Fatalf("Apply(%d ops): %v", len(ops), err)
	}
}

func mustMessages(t *testing.T, s *Store, jid string) []gateway.QueuedMessage {
	t.Helper()
	ms, err := s.Messages(ctx, jid)
	if err != nil {
		t.Fatalf("Messages(%q): %v", jid, err)
	}
	return ms
}

func mustJIDs(t *testing.T, f func(context.Context) ([]string, error), what string) []string {
	t.Helper()
	jids, err := f(ctx)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return jids
}

func bob() gateway.Registration { return gateway.Registration{JID: "bob@localhost", Number: "5"} }

// trackContacts logs every insert, update and delete of a contact row into
// the temporary table contact_writes (the Store has one connection, so the
// temporary objects stay) and returns a function that reads and clears the
// log, as "insert 100" and the like, in order.
func trackContacts(t *testing.T, s *Store) func() []string {
	t.Helper()
	for _, q := range []string{
		"CREATE TEMP TABLE contact_writes (n INTEGER PRIMARY KEY, what TEXT)",
		`CREATE TEMP TRIGGER log_insert AFTER INSERT ON main.contacts BEGIN
			INSERT INTO contact_writes (what) VALUES ('insert ' || NEW.number); END`,
		`CREATE TEMP TRIGGER log_update AFTER UPDATE ON main.contacts BEGIN
			INSERT INTO contact_writes (what) VALUES ('update ' || NEW.number); END`,
		`CREATE TEMP TRIGGER log_delete AFTER DELETE ON main.contacts BEGIN
			INSERT INTO contact_writes (what) VALUES ('delete ' || OLD.number); END`,
	} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	return func() []string {
		t.Helper()
		rows, err := s.db.QueryContext(ctx, "SELECT what FROM contact_writes ORDER BY n")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		log := []string{}
		for rows.Next() {
			var w string
			if err := rows.Scan(&w); err != nil {
				t.Fatal(err)
			}
			log = append(log, w)
		}
		if _, err := s.db.ExecContext(ctx, "DELETE FROM contact_writes"); err != nil {
			t.Fatal(err)
		}
		return log
	}
}

func TestApplyMessagesRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	mustPut(t, s, alice())
	mustPut(t, s, bob())
	clk := newClock()
	s.now = clk.now
	in := []*gateway.QueuedMessage{
		{JID: alice().JID, Dir: gateway.ToIMIP, Peer: "7744387", StanzaID: "m1", Resource: "phone",
			Body: "hi 😀\nline 2", Receipt: true},
		{JID: bob().JID, Dir: gateway.ToXMPP, Peer: "100", StanzaID: "imip-1", Nick: "Zoë",
			Body: "from imip", Stamp: time.Date(2024, 4, 30, 23, 59, 58, 123456000, time.UTC), Tries: 2},
		{JID: alice().JID, Dir: gateway.ToXMPP, Peer: "100", StanzaID: "imip-2", Body: "no stamp",
			ID: 99, Accepted: time.Unix(5, 0)}, // ignored
		{JID: alice().JID, Dir: gateway.ToIMIP, Peer: "0042", Body: ""},
	}
	ops := make([]gateway.Op, len(in))
	for i, m := range in {
		ops[i] = gateway.OpPutMessage{Msg: m}
	}
	mustApply(t, s, ops...)
	accepted := time.Date(2024, 5, 1, 12, 0, 1, 123456789, time.UTC) // the clock's first tick
	for i, m := range in {
		if m.ID <= 0 || (i > 0 && m.ID <= in[i-1].ID) {
			t.Errorf("%d: ID %d; want ascending IDs above 0", i, m.ID)
		}
		if !m.Accepted.Equal(accepted) {
			t.Errorf("%d: Accepted %v, want %v", i, m.Accepted, accepted)
		}
	}
	want := []gateway.QueuedMessage{*in[0], *in[2], *in[3]}
	if d := cmp.Diff(want, mustMessages(t, s, alice().JID)); d != "" {
		t.Errorf("Messages(alice) (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]gateway.QueuedMessage{*in[1]}, mustMessages(t, s, bob().JID)); d != "" {
		t.Errorf("Messages(bob) (-want +got):\n%s", d)
	}
	if got := mustMessages(t, s, "nobody@localhost"); got == nil || len(got) != 0 {
		t.Errorf("Messages(nobody) = %#v, want empty", got)
	}
	want2 := []string{alice().JID, bob().JID}
	if got := mustJIDs(t, s.QueuedJIDs, "QueuedJIDs"); !cmp.Equal(got, want2) {
		t.Errorf("QueuedJIDs = %q, want %q", got, want2)
	}

	// Touch, delete; bob's queue empties.
	mustApply(t, s,
		gateway.OpTouchMessage{ID: in[0].ID, Tries: 3},
		gateway.OpDeleteMessage{ID: in[1].ID},
		gateway.OpDeleteMessage{ID: in[2].ID},
	)
	in[0].Tries = 3
	if d := cmp.Diff([]gateway.QueuedMessage{*in[0], *in[3]}, mustMessages(t, s, alice().JID)); d != "" {
		t.Errorf("after touch and delete (-want +got):\n%s", d)
	}
	if got := mustJIDs(t, s.QueuedJIDs, "QueuedJIDs"); !cmp.Equal(got, []string{alice().JID}) {
		t.Errorf("QueuedJIDs after delete = %q, want only alice", got)
	}
	// Applying nothing is fine.
	mustApply(t, s)
}

// A stamp keeps microseconds, and years far from the Unix epoch (a Timo can
// say anything from 0000 to 9999).
func TestMessageStampRange(t *testing.T) {
	s, _ := openTemp(t)
	mustPut(t, s, alice())
	stamps := []time.Time{
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Second), // zero is "none"
		time.Date(1600, 2, 29, 1, 2, 3, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(2024, 5, 1, 12, 0, 0, 1999, time.UTC), // nanoseconds: cut
	}
	for _, st := range stamps {
		mustApply(t, s, gateway.OpPutMessage{Msg: &gateway.QueuedMessage{
			JID: alice().JID, Dir: gateway.ToXMPP, Peer: "1", Stamp: st}})
	}
	for i, m := range mustMessages(t, s, alice().JID) {
		if want := stamps[i].Truncate(time.Microsecond); !m.Stamp.Equal(want) {
			t.Errorf("%d: Stamp %v, want %v", i, m.Stamp, want)
		}
	}
}

func TestMessageIDsNeverReused(t *testing.T) {
	s, path := openTemp(t)
	mustPut(t, s, alice())
	put := func() int64 {
		m := &gateway.QueuedMessage{JID: alice().JID, Dir: gateway.ToIMIP, Peer: "1", Body: "x"}
		mustApply(t, s, gateway.OpPutMessage{Msg: m})
		return m.ID
	}
	ids := []int64{put(), put(), put()}
	mustApply(t, s, gateway.OpDeleteMessage{ID: ids[2]}, gateway.OpDeleteMessage{ID: ids[1]})
	if id := put(); id <= ids[2] {
		t.Errorf("ID after deleting the highest = %d, want above %d", id, ids[2])
	}
	// Nor after the queue empties, the user re-registers and the file is
	// reopened.
	if err := s.DeleteRegistration(ctx, alice().JID); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, alice())
	s.Close()
	s = openAt(t, path)
	if id := put(); id <= ids[2]+1 {
		t.Errorf("ID after re-registering and reopening = %d, want above %d", id, ids[2]+1)
	}
}

func TestApplySkipsUnregistered(t *testing.T) {
	s, _ := openTemp(t)
	mustPut(t, s, alice())
	track := trackContacts(t, s)
	const gone = "gone@localhost"
	lost := &gateway.QueuedMessage{ID: 7, JID: gone, Dir: gateway.ToIMIP, Peer: "1", Body: "x",
		Accepted: time.Unix(1, 0)}
	kept := &gateway.QueuedMessage{JID: alice().JID, Dir: gateway.ToIMIP, Peer: "1", Body: "y"}
	mustApply(t, s,
		gateway.OpPutMessage{Msg: lost},
		gateway.OpPutContact{JID: gone, Contact: roster.Contact{Number: "1", InList: true}},
		gateway.OpDeleteContact{JID: gone, Number: "1"},
		gateway.OpSetOnline{JID: gone, Online: true},
		gateway.OpDeleteMessage{ID: 12345},
		gateway.OpTouchMessage{ID: 12345, Tries: 1},
		gateway.OpPutMessage{Msg: kept},
		gateway.OpPutContact{JID: alice().JID, Contact: roster.Contact{Number: "2", InList: true}},
	)
	if lost.ID != 0 || !lost.Accepted.IsZero() {
		t.Errorf("skipped message: ID %d Accepted %v, want both zero", lost.ID, lost.Accepted)
	}
	if kept.ID == 0 {
		t.Errorf("message of a registered JID in the same batch was not stored")
	}
	if got := mustMessages(t, s, gone); len(got) != 0 {
		t.Errorf("Messages(gone) = %v, want none", got)
	}
	if got := mustJIDs(t, s.OnlineJIDs, "OnlineJIDs"); len(got) != 0 {
		t.Errorf("OnlineJIDs = %q, want none", got)
	}
	if got, want := track(), []string{"insert 2"}; !cmp.Equal(got, want) {
		t.Errorf("contact writes = %q, want %q", got, want)
	}
	// The JID registers later: nothing of the skipped ops shows up.
	mustPut(t, s, gateway.Registration{JID: gone, Number: "9"})
	if got := mustContacts(t, s, gone); len(got) != 0 {
		t.Errorf("Contacts(gone) after registering = %v, want none", got)
	}
}

// A batch is one transaction: an op that fails in SQLite undoes the ops
// before it, and the messages' IDs are not set.
func TestApplyAllOrNothing(t *testing.T) {
	s, _ := openTemp(t)
	mustPut(t, s, alice())
	mustSave(t, s, alice().JID, []roster.Contact{{Number: "1", InList: true}})
	if _, err := s.db.ExecContext(ctx, `CREATE TEMP TRIGGER boom BEFORE INSERT ON main.messages
		WHEN NEW.body = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	first := &gateway.QueuedMessage{JID: alice().JID, Dir: gateway.ToIMIP, Peer: "1", Body: "ok"}
	err := s.Apply(ctx, []gateway.Op{
		gateway.OpPutMessage{Msg: first},
		gateway.OpSetOnline{JID: alice().JID, Online: true},
		gateway.OpDeleteContact{JID: alice().JID, Number: "1"},
		gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: alice().JID, Dir: gateway.ToIMIP, Peer: "1", Body: "boom"}},
	})
	if err == nil || !strings.HasPrefix(err.Error(), "sqlitestore: ") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Apply with a failing op = %v, want a sqlitestore error about boom", err)
	}
	if first.ID != 0 || !first.Accepted.IsZero() {
		t.Errorf("failed batch set ID %d, Accepted %v", first.ID, first.Accepted)
	}
	if got := mustMessages(t, s, alice().JID); len(got) != 0 {
		t.Errorf("failed batch stored %v", got)
	}
	if got := mustJIDs(t, s.OnlineJIDs, "OnlineJIDs"); len(got) != 0 {
		t.Errorf("failed batch set online: %q", got)
	}
	if got := mustContacts(t, s, alice().JID); len(got) != 1 {
		t.Errorf("failed batch deleted a contact: %v", got)
	}
}

func TestApplyInvalidOps(t *testing.T) {
	s, _ := openTemp(t)
	mustPut(t, s, alice())
	a := alice().JID
	msg := func(f func(*gateway.QueuedMessage)) gateway.Op {
		m := &gateway.QueuedMessage{JID: a, Dir: gateway.ToIMIP, Peer: "1"}
		f(m)
		return gateway.OpPutMessage{Msg: m}
	}
	for i, op := range []gateway.Op{
		0:  nil,
		1:  gateway.OpPutMessage{},
		2:  msg(func(m *gateway.QueuedMessage) { m.JID = "" }),
		3:  msg(func(m *gateway.QueuedMessage) { m.Dir = 0 }),
		4:  msg(func(m *gateway.QueuedMessage) { m.Dir = 3 }),
		5:  msg(func(m *gateway.QueuedMessage) { m.Peer = "" }),
		6:  msg(func(m *gateway.QueuedMessage) { m.Tries = -1 }),
		7:  gateway.OpDeleteMessage{},
		8:  gateway.OpTouchMessage{ID: 1, Tries: -1},
		9:  gateway.OpTouchMessage{Tries: 1},
		10: gateway.OpPutContact{JID: a},
		11: gateway.OpPutContact{Contact: roster.Contact{Number: "1"}},
		12: gateway.OpDeleteContact{JID: a},
		13: gateway.OpDeleteContact{Number: "1"},
		14: gateway.OpSetOnline{Online: true},
		15: &gateway.OpSetOnline{JID: a, Online: true},
	} {
		good := &gateway.QueuedMessage{JID: a, Dir: gateway.ToIMIP, Peer: "1"}
		err := s.Apply(ctx, []gateway.Op{gateway.OpPutMessage{Msg: good}, op})
		if !errors.Is(err, gateway.ErrBadOp) || !strings.HasPrefix(err.Error(), "sqlitestore: ") {
			t.Errorf("%d: Apply(%#v) = %v, want a sqlitestore error wrapping ErrBadOp", i, op, err)
		}
		if good.ID != 0 {
			t.Errorf("%d: the valid op of a refused batch got ID %d", i, good.ID)
		}
	}
	if got := mustMessages(t, s, a); len(got) != 0 {
		t.Errorf("refused batches stored %v", got)
	}
}

func TestOnlineFlag(t *testing.T) {
	s, _ := openTemp(t)
	mustPut(t, s, alice())
	mustPut(t, s, bob())
	if got := mustJIDs(t, s.OnlineJIDs, "OnlineJIDs"); got == nil || len(got) != 0 {
		t.Errorf("OnlineJIDs of new registrations = %#v, want empty", got)
	}
	mustApply(t, s, gateway.OpSetOnline{JID: bob().JID, Online: true}, gateway.OpSetOnline{JID: alice().JID, Online: true})
	want := []string{alice().JID, bob().JID}
	if got := mustJIDs(t, s.OnlineJIDs, "OnlineJIDs"); !cmp.Equal(got, want) {
		t.Errorf("OnlineJIDs = %q, want %q", got, want)
	}
	// Updating the registration (even its number) keeps the flag.
	r := alice()
	r.Number, r.Password = "777", "new"
	mustPut(t, s, r)
	mustApply(t, s, gateway.OpSetOnline{JID: bob().JID, Online: false})
	if got := mustJIDs(t, s.OnlineJIDs, "OnlineJIDs"); !cmp.Equal(got, []string{alice().JID}) {
		t.Errorf("OnlineJIDs after bob went offline = %q, want only alice", got)
	}
}

func TestDeleteRegistrationDropsQueue(t *testing.T) {
	s, _ := openTemp(t)
	mustPut(t, s, alice())
	mustPut(t, s, bob())
	var ops []gateway.Op
	for _, jid := range []string{alice().JID, bob().JID} {
		for _, d := range []gateway.Direction{gateway.ToIMIP, gateway.ToXMPP} {
			ops = append(ops, gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: jid, Dir: d, Peer: "1"}})
		}
		ops = append(ops, gateway.OpSetOnline{JID: jid, Online: true})
	}
	mustApply(t, s, ops...)
	// A change of number keeps the queue: the gateway bounces or sends it.
	r := alice()
	r.Number = "777"
	mustPut(t, s, r)
	if got := mustMessages(t, s, r.JID); len(got) != 2 {
		t.Errorf("after a number change: %d messages, want the 2 queued", len(got))
	}
	if err := s.DeleteRegistration(ctx, r.JID); err != nil {
		t.Fatal(err)
	}
	if got := mustMessages(t, s, r.JID); len(got) != 0 {
		t.Errorf("after unregistering: Messages = %v, want none", got)
	}
	if got := mustMessages(t, s, bob().JID); len(got) != 2 {
		t.Errorf("bob's queue: %d messages, want 2", len(got))
	}
	for _, f := range []struct {
		name string
		f    func(context.Context) ([]string, error)
	}{{"QueuedJIDs", s.QueuedJIDs}, {"OnlineJIDs", s.OnlineJIDs}} {
		if got := mustJIDs(t, f.f, f.name); !cmp.Equal(got, []string{bob().JID}) {
			t.Errorf("%s after unregistering alice = %q, want only bob", f.name, got)
		}
	}
	// Registering again starts with an empty queue, offline.
	mustPut(t, s, r)
	if got := mustMessages(t, s, r.JID); len(got) != 0 {
		t.Errorf("after re-registering: Messages = %v, want none", got)
	}
	if got := mustJIDs(t, s.OnlineJIDs, "OnlineJIDs"); !cmp.Equal(got, []string{bob().JID}) {
		t.Errorf("OnlineJIDs after re-registering = %q, want only bob", got)
	}
}

// OpPutContact and OpDeleteContact write exactly one row, whatever the
// length of the list.
func TestContactOpsWriteOneRow(t *testing.T) {
	s, _ := openTemp(t)
	mustPut(t, s, alice())
	mustPut(t, s, bob())
	a := alice().JID
	var list []roster.Contact
	for i := range 600 {
		list = append(list, roster.Contact{Number: wire.Number(fmt.Sprint(10000 + i)), Nick: fmt.Sprint(i), InList: true})
	}
	mustSave(t, s, a, list)
	mustSave(t, s, bob().JID, list[:1])
	track := trackContacts(t, s)

	added := roster.Contact{Number: "5", Nick: "new", PendingOut: true, OutText: "hi"}
	changed := list[7]
	changed.PendingIn, changed.InText = true, "please"
	mustApply(t, s,
		gateway.OpPutContact{JID: a, Contact: added},
		gateway.OpPutContact{JID: a, Contact: changed},
		gateway.OpDeleteContact{JID: a, Number: list[599].Number},
		gateway.OpDeleteContact{JID: a, Number: "404"}, // absent: nothing
	)
	if got, want := track(), []string{"insert 5", "update 10007", "delete 10599"}; !cmp.Equal(got, want) {
		t.Errorf("contact writes = %q, want %q", got, want)
	}
	want := append([]roster.Contact{}, list[:599]...)
	want[7] = changed
	want = append(want, added)
	slices.SortFunc(want, func(x, y roster.Contact) int { return strings.Compare(string(x.Number), string(y.Number)) })
	if d := cmp.Diff(want, mustContacts(t, s, a)); d != "" {
		t.Errorf("Contacts after ops (-want +got):\n%s", d)
	}
	if got := mustContacts(t, s, bob().JID); !cmp.Equal(got, list[:1]) {
		t.Errorf("bob's contacts = %v, want his one contact untouched", got)
	}
}

// SaveContacts writes only the rows that differ from the stored list.
func TestSaveContactsWritesOnlyDiff(t *testing.T) {
	s, _ := openTemp(t)
	mustPut(t, s, alice())
	a := alice().JID
	var list []roster.Contact
	for i := range 600 {
		list = append(list, roster.Contact{Number: wire.Number(fmt.Sprint(10000 + i)), InList: true})
	}
	mustSave(t, s, a, list)
	track := trackContacts(t, s)

	mustSave(t, s, a, list)
	if got := track(); len(got) != 0 {
		t.Errorf("saving the same list wrote %q, want nothing", got)
	}

	next := slices.Clone(list[1:]) // 10000 goes
	next[10].Nick = "renamed"      // 10011 changes
	next = append(next, roster.Contact{Number: "20000", PendingIn: true})
	mustSave(t, s, a, next)
	if got, want := track(), []string{"update 10011", "insert 20000", "delete 10000"}; !cmp.Equal(got, want) {
		t.Errorf("contact writes = %q, want %q", got, want)
	}
	if d := cmp.Diff(next, mustContacts(t, s, a)); d != "" {
		t.Errorf("Contacts after the diff save (-want +got):\n%s", d)
	}
}

// The queue queries use the indexes of migration 2.
func TestQueuePlans(t *testing.T) {
	s, _ := openTemp(t)
	for i, tc := range []struct{ query, want string }{
		0: {"SELECT " + msgColumns + " FROM messages WHERE jid = ? ORDER BY id", "USING INDEX messages_jid"},
		1: {"SELECT DISTINCT jid FROM messages ORDER BY jid", "USING COVERING INDEX messages_jid"},
		2: {"SELECT jid FROM registrations WHERE online = 1 ORDER BY jid", "USING COVERING INDEX registrations_online"},
		3: {deleteMessage, "USING INTEGER PRIMARY KEY"},
		4: {"DELETE FROM registrations WHERE jid = ?", "SEARCH messages USING COVERING INDEX messages_jid"},
	} {
		rows, err := s.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+tc.query, "x")
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if all := strings.Join(plan, "; "); !strings.Contains(all, tc.want) {
			t.Errorf("%d: plan of %q = %q, want %q", i, tc.query, all, tc.want)
		}
	}
}

// A database made by the previous schema version (1) is upgraded in place
// when opened, its data intact, and the downgrade to 1 works too.
func TestMigrateFromVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.db")
	if err := prepareFile(path); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	v1, err := fs.ReadFile(migrations, "migrations/00001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db,
		fstest.MapFS{"00001_init.sql": {Data: v1}}, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO registrations (jid, number, password, allow_remove, created, updated)
			VALUES ('alice@localhost', '6340564', 'secret', 1, 1000, 2000)`,
		`INSERT INTO contacts (jid, number, nick, in_list, pending_out, out_text, pending_in, in_text)
			VALUES ('alice@localhost', '7744387', 'mawis76', 1, 0, '', 1, 'hello')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	check := func(s *Store) {
		t.Helper()
		r, err := s.Registration(ctx, "alice@localhost")
		want := gateway.Registration{JID: "alice@localhost", Number: "6340564", Password: "secret", AllowRemove: true,
			Created: time.Unix(0, 1000).UTC(), Updated: time.Unix(0, 2000).UTC()}
		if err != nil || !cmp.Equal(r, want) {
			t.Errorf("Registration = %+v, %v; want %+v", r, err, want)
		}
		wantCs := []roster.Contact{{Number: "7744387", Nick: "mawis76", InList: true, PendingIn: true, InText: "hello"}}
		if d := cmp.Diff(wantCs, mustContacts(t, s, "alice@localhost")); d != "" {
			t.Errorf("Contacts (-want +got):\n%s", d)
		}
	}
	s := openAt(t, path)
	check(s)
	var version int
	if err := s.db.QueryRowContext(ctx, "SELECT MAX(version_id) FROM goose_db_version").Scan(&version); err != nil ||
		version != migrationCount(t) {
		t.Errorf("version after Open = %d, %v; want %d", version, err, migrationCount(t))
	}
	if got := mustJIDs(t, s.OnlineJIDs, "OnlineJIDs"); len(got) != 0 {
		t.Errorf("OnlineJIDs after the upgrade = %q, want none", got)
	}
	mustApply(t, s, gateway.OpSetOnline{JID: "alice@localhost", Online: true},
		gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: "alice@localhost", Dir: gateway.ToXMPP, Peer: "1"}})
	if got := mustMessages(t, s, "alice@localhost"); len(got) != 1 {
		t.Errorf("Messages after the upgrade = %v, want 1", got)
	}

	// Down to 1 keeps registrations (the password unsealed again) and
	// contacts.
	p, err = s.provider()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 1); err != nil {
		t.Fatalf("DownTo(1): %v", err)
	}
	var pw string
	if err := s.db.QueryRowContext(ctx, "SELECT password FROM registrations WHERE jid = 'alice@localhost'").Scan(&pw); err != nil || pw != "secret" {
		t.Errorf("password after DownTo(1) = %q, %v; want the clear %q", pw, err, "secret")
	}
	if d := cmp.Diff([]roster.Contact{{Number: "7744387", Nick: "mawis76", InList: true, PendingIn: true, InText: "hello"}},
		mustContacts(t, s, "alice@localhost")); d != "" {
		t.Errorf("Contacts after DownTo(1) (-want +got):\n%s", d)
	}
	var n int
	if err := s.db.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM sqlite_schema WHERE name IN ('messages', 'messages_jid', 'registrations_online', 'sealing')").Scan(&n); err != nil || n != 0 {
		t.Errorf("schema objects of migrations 2 and 3 left after DownTo(1): %d, %v", n, err)
	}
	s.Close()
	check(openAt(t, path)) // and up again
}

// MessagesPage reads one direction of one user's queue, a page at a time,
// in ID order.
func TestMessagesPage(t *testing.T) {
	s, _ := openTemp(t)
	mustPut(t, s, alice())
	mustPut(t, s, bob())
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
	mustApply(t, s, ops...)
	var got []string
	var after int64
	for pages := 0; ; pages++ {
		page, err := s.MessagesPage(ctx, alice().JID, gateway.ToXMPP, after, 4)
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
	all, err := s.MessagesPage(ctx, alice().JID, gateway.ToIMIP, 0, 0)
	if err != nil || len(all) != 4 {
		t.Errorf("MessagesPage(ToIMIP, no limit) = %d messages, %v; want 4", len(all), err)
	}
}

// Setting the online flag records the last login; clearing it keeps it.
func TestLastLogin(t *testing.T) {
	s, _ := openTemp(t)
	clk := newClock()
	s.now = clk.now
	mustPut(t, s, alice())
	r, err := s.Registration(ctx, alice().JID)
	if err != nil || !r.LastLogin.IsZero() {
		t.Fatalf("new registration: last login %v, %v; want zero", r.LastLogin, err)
	}
	at := clk.now().Add(time.Second) // the clock moves a second per reading
	mustApply(t, s, gateway.OpSetOnline{JID: alice().JID, Online: true})
	mustApply(t, s, gateway.OpSetOnline{JID: alice().JID, Online: false})
	rs, err := s.Registrations(ctx)
	if err != nil || len(rs) != 1 || !rs[0].LastLogin.Equal(at) {
		t.Fatalf("Registrations: %+v, %v; want last login %v", rs, err, at)
	}
	mustPut(t, s, alice()) // a new password keeps it
	if r, err := s.Registration(ctx, alice().JID); err != nil || !r.LastLogin.Equal(at) {
		t.Errorf("after PutRegistration: last login %v, %v; want %v", r.LastLogin, err, at)
	}
}
