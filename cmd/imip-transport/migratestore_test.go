package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"imip-transport/gateway"
	"imip-transport/gateway/pgstore"
	"imip-transport/gateway/sqlitestore"
	"imip-transport/internal/testenv"
	"imip-transport/roster"
)

// migrate-store copies a SQLite store into PostgreSQL, re-sealing under
// the target's key, refuses a non-empty target without -force, and copies
// back.
func TestMigrateStore(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	dbPath, key := filepath.Join(dir, "store.db"), filepath.Join(dir, "store.key")
	s, err := sqlitestore.Open(ctx, dbPath, sqlitestore.Options{KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	regs := []gateway.Registration{
		{JID: "alice@localhost", Number: "100", Password: "pw-a"},
		{JID: "bob@localhost", Number: "200", Password: "pw-b", AllowRemove: true},
	}
	for _, r := range regs {
		if err := s.PutRegistration(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	cs := []roster.Contact{{Number: "1", Nick: "one", InList: true}, {Number: "2", PendingOut: true, OutText: "hi"}}
	if err := s.SaveContacts(ctx, "alice@localhost", cs); err != nil {
		t.Fatal(err)
	}
	var ops []gateway.Op
	for i := range 1200 { // more than one batch
		ops = append(ops, gateway.OpPutMessage{Msg: &gateway.QueuedMessage{JID: "bob@localhost",
			Dir: gateway.Direction(1 + i%2), Peer: "7", Body: strings.Repeat("x", i%5), Tries: i % 3}})
	}
	ops = append(ops, gateway.OpSetOnline{JID: "bob@localhost", Online: true})
	if err := s.Apply(ctx, ops); err != nil {
		t.Fatal(err)
	}
	wantMsgs, _ := s.Messages(ctx, "bob@localhost")
	s.Close()

	dsn := pg.NewDatabase(t)
	pgKey := filepath.Join(dir, "pg.key")
	migrate := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(append([]string{"migrate-store"}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := migrate("-from", "sqlite:"+dbPath, "-to", "postgres:"+dsn, "-from-key", key, "-to-key", pgKey); code != 0 {
		t.Fatalf("migrate-store: exit %d: %s", code, out)
	} else if !strings.Contains(out, "2 registration(s), 2 contact(s), 1200 queued message(s)") {
		t.Errorf("output %q", out)
	}
	p, err := pgstore.Open(ctx, dsn, pgstore.Options{KeyFile: pgKey})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Registrations(ctx)
	if err != nil || len(got) != 2 {
		t.Fatalf("registrations %v, %v", got, err)
	}
	for i, r := range got {
		if r.JID != regs[i].JID || r.Number != regs[i].Number || r.Password != regs[i].Password || r.AllowRemove != regs[i].AllowRemove {
			t.Errorf("registration %d = %+v, want %+v", i, r, regs[i])
		}
	}
	if gotCs, err := p.Contacts(ctx, "alice@localhost"); err != nil || !cmp.Equal(gotCs, cs) {
		t.Errorf("contacts %v, %v; want %v", gotCs, err, cs)
	}
	msgs, err := p.Messages(ctx, "bob@localhost")
	if err != nil || len(msgs) != len(wantMsgs) {
		t.Fatalf("messages: %d, %v; want %d", len(msgs), err, len(wantMsgs))
	}
	for i := range msgs {
		w, g := wantMsgs[i], msgs[i]
		if g.Dir != w.Dir || g.Body != w.Body || g.Tries != w.Tries || g.Peer != w.Peer {
			t.Fatalf("message %d = %+v, want %+v", i, g, w)
		}
	}
	if on, err := p.OnlineJIDs(ctx); err != nil || !cmp.Equal(on, []string{"bob@localhost"}) {
		t.Errorf("online %v, %v", on, err)
	}
	p.Close()

	// A second run refuses the non-empty target; -force replaces it.
	if code, out := migrate("-from", "sqlite:"+dbPath, "-to", "postgres:"+dsn, "-from-key", key, "-to-key", pgKey); code != 1 || !strings.Contains(out, "holds 2 registration(s)") {
		t.Errorf("second migrate-store: exit %d: %s; want a refusal", code, out)
	}
	if code, out := migrate("-force", "-from", "sqlite:"+dbPath, "-to", "postgres:"+dsn, "-from-key", key, "-to-key", pgKey); code != 0 {
		t.Errorf("migrate-store -force: exit %d: %s", code, out)
	}
	// And back into a new SQLite file under yet another key.
	back, backKey := filepath.Join(dir, "back.db"), filepath.Join(dir, "back.key")
	if code, out := migrate("-from", "postgres:"+dsn, "-to", "sqlite:"+back, "-from-key", pgKey, "-to-key", backKey); code != 0 {
		t.Fatalf("migrate-store back: exit %d: %s", code, out)
	}
	b, err := sqlitestore.Open(ctx, back, sqlitestore.Options{KeyFile: backKey})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if r, err := b.Registration(ctx, "bob@localhost"); err != nil || r.Password != "pw-b" {
		t.Errorf("back: bob %+v, %v", r, err)
	}
	if code, out := migrate("-from", "mysql:x", "-to", "sqlite:"+back, "-from-key", key); code != 1 || !strings.Contains(out, "not supported") {
		t.Errorf("unknown driver: exit %d: %s", code, out)
	}
}

// rotate-key works on a PostgreSQL store.
func TestRotateKeyPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	dsn, key := pg.NewDatabase(t), filepath.Join(dir, "store.key")
	s, err := pgstore.Open(ctx, dsn, pgstore.Options{KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutRegistration(ctx, gateway.Registration{JID: "a@localhost", Number: "1", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, `[xmpp]
component = "imip.localhost"
server = "127.0.0.1:5347"
secret = "x"
[imip]
server = "127.0.0.1:9999"
[storage]
driver = "postgres"
dsn = "`+dsn+`"
key_file = "`+key+`"
`)
	var out, errOut bytes.Buffer
	if code := run([]string{"rotate-key", "-config", cfg}, &out, &errOut); code != 0 {
		t.Fatalf("rotate-key: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "1 password(s) re-sealed") {
		t.Errorf("output %q", out.String())
	}
	s, err = pgstore.Open(ctx, dsn, pgstore.Options{KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.Registration(ctx, "a@localhost"); err != nil || r.Password != "pw" {
		t.Errorf("after rotation: %+v, %v", r, err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
