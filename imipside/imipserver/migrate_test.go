package imipserver_test

import (
	"database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

// legacySchema is, byte for byte, the only step of the hand-written
// migration list imipd used before goose (PRAGMA user_version = 1).
const legacySchema = `CREATE TABLE accounts (
		number   TEXT PRIMARY KEY,
		password TEXT NOT NULL,
		nick     TEXT NOT NULL
	) WITHOUT ROWID;
	CREATE TABLE contacts (
		owner   TEXT NOT NULL,
		contact TEXT NOT NULL,
		PRIMARY KEY (owner, contact)
	) WITHOUT ROWID;
	CREATE INDEX contacts_by_contact ON contacts (contact, owner);
	CREATE TABLE requests (
		seq       INTEGER PRIMARY KEY AUTOINCREMENT,
		sender    TEXT NOT NULL,
		recipient TEXT NOT NULL,
		text      TEXT NOT NULL,
		created   INTEGER NOT NULL,
		UNIQUE (sender, recipient)
	);
	CREATE INDEX requests_by_recipient ON requests (recipient, seq);
	CREATE TABLE messages (
		id        INTEGER PRIMARY KEY AUTOINCREMENT,
		sender    TEXT NOT NULL,
		recipient TEXT NOT NULL,
		sent      INTEGER NOT NULL,
		text      TEXT NOT NULL
	);
	CREATE INDEX messages_by_recipient ON messages (recipient, id);`

// createLegacy makes a database the way imipd did before goose: the
// legacy schema in one transaction, user_version set, then the SQL the old
// Store methods ran.
func createLegacy(t *testing.T, path string, userVersion int, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i, q := range append([]string{legacySchema, "PRAGMA user_version = " + strconv.Itoa(userVersion)}, stmts...) {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("legacy statement %d: %v", i, err)
		}
	}
}

// TestSQLiteUpgradesLegacyDatabase: a database written by the code before
// goose (user_version = 1) opens, is adopted by goose, and keeps all its
// data; message IDs (the mesg-ack Message-IDs) keep counting up from the
// old ones, never reusing a deleted one.
func TestSQLiteUpgradesLegacyDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imipd.db")
	createLegacy(t, path, 1,
		`INSERT INTO accounts (number, password, nick) VALUES ('1001001', 'alice-pw', 'alice'), ('1002002', 'bob-pw', 'bob')`,
		`INSERT OR IGNORE INTO contacts (owner, contact) VALUES ('1001001', '1002002')`,
		`INSERT OR REPLACE INTO requests (sender, recipient, text, created) VALUES ('1002002', '1001001', 'hi', 981173106)`,
		`INSERT INTO messages (sender, recipient, sent, text) VALUES ('1001001', '1002002', 981173106, 'one')`,
		`INSERT INTO messages (sender, recipient, sent, text) VALUES ('1001001', '1002002', 981173107, 'two')`,
		`INSERT INTO messages (sender, recipient, sent, text) VALUES ('1001001', '1002002', 981173108, 'gone')`,
		`DELETE FROM messages WHERE id = 3`,
	)

	for round := range 2 { // the second open finds nothing to migrate
		st := openSQLite(t, path)
		ctx := t.Context()
		if v, err := st.SchemaVersion(ctx); err != nil || v != latestSchema {
			t.Fatalf("round %d: schema version %d, %v; want %d", round, v, err, latestSchema)
		}
		if a, err := st.Account(ctx, alice); err != nil || a.Password != "alice-pw" || a.Nick != "alice" {
			t.Errorf("round %d: alice = %+v, %v", round, a, err)
		}
		if got, err := st.Contacts(ctx, alice); err != nil || !cmp.Equal(got, []wire.Buddy{{Number: bob, Nick: "bob"}}) {
			t.Errorf("round %d: alice's contacts = %v, %v", round, got, err)
		}
		t0 := time.Unix(981173106, 0).UTC()
		if got, err := st.Requests(ctx, alice); err != nil || !cmp.Equal(got, []imipserver.Request{{From: bob, To: alice, Text: "hi", Time: t0}}) {
			t.Errorf("round %d: requests = %v, %v", round, got, err)
		}
		want := []imipserver.Message{
			{ID: 1, From: alice, To: bob, Time: t0, Text: "one"},
			{ID: 2, From: alice, To: bob, Time: t0.Add(time.Second), Text: "two"},
		}
		if round == 1 {
			want = append(want, imipserver.Message{ID: 4, From: bob, To: bob, Time: t0, Text: "new"})
		}
		if got, err := st.Messages(ctx, bob, 0, 1000); err != nil || !cmp.Equal(got, want) {
			t.Errorf("round %d: messages = %v, %v; want %v", round, got, err, want)
		}
		if round == 0 {
			id, err := st.PutMessage(ctx, imipserver.Message{From: bob, To: bob, Time: t0, Text: "new"})
			if err != nil || id != 4 {
				t.Errorf("new message ID %d, %v; want 4 (3 was used and deleted)", id, err)
			}
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	legacy := filepath.Join(dir, "legacy.db")
	createLegacy(t, legacy, 2)
	if st, err := imipserver.OpenSQLite(t.Context(), legacy, imipserver.SQLiteOptions{KeyFile: legacy + ".key"}); err == nil || !strings.Contains(err.Error(), "newer") {
		if st != nil {
			st.Close()
		}
		t.Errorf("legacy user_version 2: err = %v, want it to mention the newer schema", err)
	}

	path := filepath.Join(dir, "imipd.db")
	st := openSQLite(t, path)
	st.Close()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, 1)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if st, err := imipserver.OpenSQLite(t.Context(), path, imipserver.SQLiteOptions{KeyFile: path + ".key"}); err == nil || !strings.Contains(err.Error(), "newer") {
		if st != nil {
			st.Close()
		}
		t.Errorf("goose version 99: err = %v, want it to mention the newer schema", err)
	}
}
