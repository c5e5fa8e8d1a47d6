package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"imip-transport/gateway"
	"imip-transport/gateway/pgstore"
	"imip-transport/gateway/sqlitestore"
	"imip-transport/internal/storelock"
	"imip-transport/internal/testenv"
	"imip-transport/roster"
)

// runCmd runs the binary's command line in process.
func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

const (
	alicePW = "alice-secret-pw"
	bobPW   = "bob-secret-pw"
)

// adminFixture writes a configuration in a temp dir and returns its path
// and the database path (not created).
func adminFixture(t *testing.T) (cfg, db string) {
	t.Helper()
	dir := t.TempDir()
	cfg = filepath.Join(dir, "config.toml")
	writeMode(t, cfg, secretsConfig(dir, ""), 0o600)
	return cfg, filepath.Join(dir, "gw.db")
}

// populate stores alice (online, two contacts and a request, three queued
// messages) and bob (nothing).
func populate(t *testing.T, db string) {
	t.Helper()
	st, err := sqlitestore.Open(context.Background(), db, sqlitestore.Options{KeyFile: filepath.Join(filepath.Dir(db), "gw.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	populateStore(t, st)
}

// populateStore is populate on any store.
func populateStore(t *testing.T, st gateway.Store) {
	t.Helper()
	ctx := context.Background()
	for _, r := range []gateway.Registration{
		{JID: "alice@example.org", Number: "6340564", Password: alicePW},
		{JID: "bob@example.org", Number: "7744387", Password: bobPW},
	} {
		if err := st.PutRegistration(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SaveContacts(ctx, "alice@example.org", []roster.Contact{
		{Number: "100", InList: true}, {Number: "200", InList: true}, {Number: "300", PendingIn: true},
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ctx, []gateway.Op{
		gateway.OpSetOnline{JID: "alice@example.org", Online: true},
		gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: "alice@example.org", Dir: gateway.ToIMIP, Peer: "100", Body: "a"}},
		gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: "alice@example.org", Dir: gateway.ToXMPP, Peer: "100", Body: "b"}},
		gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: "alice@example.org", Dir: gateway.ToXMPP, Peer: "200", Body: "c"}},
	}); err != nil {
		t.Fatal(err)
	}
}

func noPasswords(t *testing.T, outs ...string) {
	t.Helper()
	for _, o := range outs {
		if strings.Contains(o, alicePW) || strings.Contains(o, bobPW) {
			t.Errorf("output shows a password:\n%s", o)
		}
	}
}

func TestMigrateCommand(t *testing.T) {
	cfg, db := adminFixture(t)
	code, out, errb := runCmd("users", "list", "-config", cfg)
	if code != exitError || out != "" || !strings.Contains(errb, "no database at "+db) {
		t.Errorf("users list without a database: exit %d, %q, %q; want 1 and no database", code, out, errb)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("users list created the database: %v", err)
	}
	code, out, errb = runCmd("migrate", "-config", cfg)
	if code != exitOK || !regexp.MustCompile(`schema version \d+ \(up to date\)`).MatchString(out) {
		t.Fatalf("migrate: exit %d, out %q, err %q", code, out, errb)
	}
	if _, err := os.Stat(db); err != nil {
		t.Errorf("no database after migrate: %v", err)
	}
	// Again: nothing to do, same answer.
	if code, out2, _ := runCmd("migrate", "-config", cfg); code != exitOK || out2 != out {
		t.Errorf("second migrate: exit %d, %q; want %q", code, out2, out)
	}
	if code, _, _ := runCmd("migrate", "-config", cfg, "extra"); code != exitUsage {
		t.Errorf("migrate with an argument: exit %d, want 2", code)
	}
	if code, _, _ := runCmd("migrate", "-bogus"); code != exitUsage {
		t.Errorf("migrate with a bad flag: exit %d, want 2", code)
	}
	if code, _, errb := runCmd("migrate", "-config", filepath.Join(t.TempDir(), "none.toml")); code != exitError || errb == "" {
		t.Errorf("migrate with a missing config: exit %d, %q", code, errb)
	}
}

func TestUsersListShow(t *testing.T) {
	cfg, db := adminFixture(t)
	populate(t, db)
	code, out, errb := runCmd("users", "list", "-config", cfg)
	if code != exitOK {
		t.Fatalf("users list: exit %d: %s", code, errb)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "JID") || lines[3] != "2 registration(s)" {
		t.Fatalf("users list:\n%s", out)
	}
	alice, bob := strings.Fields(lines[1]), strings.Fields(lines[2])
	if len(alice) != 6 || alice[0] != "alice@example.org" || alice[1] != "6340564" || alice[2] != "online" ||
		!regexp.MustCompile(`^\d{4}-\d\d-\d\dT`).MatchString(alice[3]) || alice[4] != "2" || alice[5] != "3" {
		t.Errorf("alice's row: %q", alice)
	}
	if len(bob) != 6 || bob[0] != "bob@example.org" || bob[2] != "offline" || bob[3] != "never" || bob[4] != "0" || bob[5] != "0" {
		t.Errorf("bob's row: %q", bob)
	}

	// Flags before or after the JID.
	for _, args := range [][]string{
		{"users", "show", "-config", cfg, "alice@example.org"},
		{"users", "show", "alice@example.org", "-config", cfg},
	} {
		code, out, errb = runCmd(args...)
		if code != exitOK {
			t.Fatalf("%q: exit %d: %s", args, code, errb)
		}
		for _, want := range []string{"jid:", "alice@example.org", "number:", "6340564", "state:", "online",
			"last login:", "contacts:", "2 (and 1 pending request(s))", "queued:", "1 to IMIP, 2 from IMIP"} {
			if !strings.Contains(out, want) {
				t.Errorf("users show lacks %q:\n%s", want, out)
			}
		}
		noPasswords(t, out, errb)
	}
	// The JID is normalised as the gateway keys it.
	if code, out, _ := runCmd("users", "show", "-config", cfg, "Alice@Example.org"); code != exitOK || !strings.Contains(out, "6340564") {
		t.Errorf("show with another case: exit %d\n%s", code, out)
	}
	if code, _, errb := runCmd("users", "show", "-config", cfg, "carol@example.org"); code != exitError || !strings.Contains(errb, "no registration for carol@example.org") {
		t.Errorf("show unknown: exit %d, %q", code, errb)
	}
	noPasswords(t, out, errb)
}

func TestUsersUsage(t *testing.T) {
	cfg, db := adminFixture(t)
	populate(t, db)
	for _, args := range [][]string{
		{"users"},
		{"users", "frobnicate", "-config", cfg},
		{"users", "show", "-config", cfg},
		{"users", "show", "-config", cfg, "a@example.org", "b@example.org"},
		{"users", "show", "-config", cfg, "example.org"},
		{"users", "show", "-config", cfg, "a@example.org/res"},
		{"users", "delete", "-config", cfg},
		{"users", "list", "-config", cfg, "extra"},
		{"users", "list", "-nope"},
	} {
		code, out, errb := runCmd(args...)
		if code != exitUsage || errb == "" || out != "" {
			t.Errorf("%q: exit %d, out %q, err %q; want 2 and a message on stderr", args, code, out, errb)
		}
	}
	if code, _, _ := runCmd("users", "list", "-h"); code != exitOK {
		t.Errorf("users list -h: exit %d, want 0", code)
	}
}

func TestUsersDelete(t *testing.T) {
	cfg, db := adminFixture(t)
	populate(t, db)
	code, out, errb := runCmd("users", "delete", "-config", cfg, "alice@example.org")
	if code != exitOK || !strings.Contains(out, "deleted alice@example.org") || !strings.Contains(out, "3 contact row(s) and 3 queued message(s)") {
		t.Fatalf("users delete: exit %d, out %q, err %q", code, out, errb)
	}
	noPasswords(t, out, errb)
	if code, _, errb := runCmd("users", "delete", "-config", cfg, "alice@example.org"); code != exitError || !strings.Contains(errb, "no registration") {
		t.Errorf("delete again: exit %d, %q", code, errb)
	}
	// Every row of hers is gone; bob is untouched.
	ctx := context.Background()
	st, err := sqlitestore.Open(ctx, db, sqlitestore.Options{KeyFile: filepath.Join(filepath.Dir(db), "gw.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cs, _ := st.Contacts(ctx, "alice@example.org")
	ms, _ := st.Messages(ctx, "alice@example.org")
	online, _ := st.OnlineJIDs(ctx)
	queued, _ := st.QueuedJIDs(ctx)
	regs, _ := st.Registrations(ctx)
	if len(cs) != 0 || len(ms) != 0 || len(online) != 0 || len(queued) != 0 || len(regs) != 1 || regs[0].JID != "bob@example.org" {
		t.Errorf("after delete: contacts %v, messages %v, online %v, queued %v, registrations %v", cs, ms, online, queued, regs)
	}
}

// While a transport holds the store's lock, the writing commands refuse
// and say so; the reading ones work and say the state is as recorded.
func TestCommandsBesideRunningTransport(t *testing.T) {
	cfg, db := adminFixture(t)
	populate(t, db)
	lock, err := storelock.Acquire(db) // what a running transport holds
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"users", "delete", "-config", cfg, "alice@example.org"},
		{"migrate", "-config", cfg},
		{"rotate-key", "-config", cfg},
	} {
		code, _, errb := runCmd(args...)
		if code != exitError || !strings.Contains(errb, "a transport is running on this store") || !strings.Contains(errb, storelock.Path(db)) {
			t.Errorf("%q beside a transport: exit %d, %q; want 1 naming the lock", args, code, errb)
		}
	}
	code, out, errb := runCmd("users", "list", "-config", cfg)
	if code != exitOK || !strings.Contains(out, "a transport is running on this store") || !strings.Contains(out, "alice@example.org") {
		t.Errorf("users list beside a transport: exit %d, %q, %q", code, out, errb)
	}
	if err := lock.Release(); err != nil {
		t.Fatal(err)
	}
	if code, _, errb := runCmd("users", "delete", "-config", cfg, "alice@example.org"); code != exitOK {
		t.Errorf("delete once the transport stopped: exit %d, %q", code, errb)
	}
}

// The admin commands work on a PostgreSQL store too.
func TestUsersPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	dsn, key := pg.NewDatabase(t), filepath.Join(dir, "store.key")
	st, err := pgstore.Open(ctx, dsn, pgstore.Options{KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	populateStore(t, st)
	st.Close()
	cfg := filepath.Join(dir, "config.toml")
	writeMode(t, cfg, `[xmpp]
component = "imip.localhost"
server = "127.0.0.1:5347"
secret = "x"
[imip]
server = "127.0.0.1:9999"
[storage]
driver = "postgres"
dsn = "`+dsn+`"
key_file = "`+key+`"
`, 0o600)
	code, out, errb := runCmd("users", "list", "-config", cfg)
	if code != exitOK || !strings.Contains(out, "alice@example.org") || !strings.Contains(out, "2 registration(s)") {
		t.Fatalf("users list: exit %d\n%s%s", code, out, errb)
	}
	if code, out, errb := runCmd("users", "show", "-config", cfg, "alice@example.org"); code != exitOK || !strings.Contains(out, "6340564") {
		t.Fatalf("users show: exit %d\n%s%s", code, out, errb)
	}
	noPasswords(t, out, errb)
	if code, _, errb := runCmd("users", "delete", "-config", cfg, "bob@example.org"); code != exitOK {
		t.Fatalf("users delete: exit %d: %s", code, errb)
	}
	if code, out, _ := runCmd("users", "list", "-config", cfg); code != exitOK || strings.Contains(out, "bob@example.org") {
		t.Errorf("bob still listed after delete:\n%s", out)
	}
	// It names the database, never the DSN's password (there is none here).
	if code, out, errb := runCmd("migrate", "-config", cfg); code != exitOK || !regexp.MustCompile(`migrate: postgres:\S+@\S+/\S+ is at schema version \d+`).MatchString(out) {
		t.Errorf("migrate: exit %d\n%s%s", code, out, errb)
	}
}
