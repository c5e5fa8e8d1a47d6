package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func pgConfig(storage string) string {
	return strings.Replace(validConfig, "driver = \"sqlite\"\npath = \"x.db\"\n", storage, 1)
}

func TestPostgresConfig(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pg-password")
	if err := os.WriteFile(pw, []byte("  s3cret-pw \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	text := pgConfig("driver = \"postgres\"\ndsn = \"host=/run/postgresql dbname=imip user=imip\"\npassword_file = \"" + pw + "\"\n")
	cfgPath := writeConfig(t, text)
	c, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.Password != "s3cret-pw" {
		t.Errorf("password = %q, want it trimmed", c.Storage.Password)
	}
	if w := c.Storage.where(); w != "postgres:imip@/run/postgresql/imip" {
		t.Errorf("where = %q", w)
	}
	// -check-config accepts it, warns about the readable password file and
	// never prints the password.
	var out, errOut bytes.Buffer
	if code := run([]string{"-config", cfgPath, "-check-config"}, &out, &errOut); code != 0 {
		t.Fatalf("-check-config: exit %d: %s", code, errOut.String())
	}
	all := out.String() + errOut.String()
	if !strings.Contains(all, "PostgreSQL password file is readable by group or others") {
		t.Errorf("no warning about the password file's mode: %q", all)
	}
	if strings.Contains(all, "s3cret") {
		t.Errorf("the password is printed: %q", all)
	}

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ storage, want string }{
		{"driver = \"postgres\"\n", "storage.dsn is required"},
		{"driver = \"postgres\"\ndsn = \"postgres://u:hidden-pw@[::1\"\n", "storage.dsn:"},
		{"driver = \"postgres\"\npath = \"x.db\"\ndsn = \"dbname=x\"\n", "storage.path is for the sqlite driver"},
		{"driver = \"postgres\"\ndsn = \"dbname=x\"\npassword_file = \"" + empty + "\"\n", "storage.password_file is empty"},
		{"driver = \"postgres\"\ndsn = \"dbname=x\"\npassword_file = \"" + dir + "/absent\"\n", "storage.password_file:"},
		{"driver = \"sqlite\"\npath = \"x.db\"\ndsn = \"dbname=x\"\n", "are for the postgres driver"},
		{"driver = \"postgres\"\ndsn = \"dbname=x\"\ndsnn = \"y\"\n", "unknown keys: storage.dsnn"},
	}
	for i, c := range cases {
		_, err := loadConfig(writeConfig(t, pgConfig(c.storage)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%d: loadConfig = %v, want error containing %q", i, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hidden-pw") {
			t.Errorf("%d: the error shows the DSN's password: %v", i, err)
		}
	}
}
