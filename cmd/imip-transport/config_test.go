package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imip-transport/gateway"
	"imip-transport/xmppside"
)

func TestShippedConfigDecodes(t *testing.T) {
	c, err := loadConfig(filepath.Join("..", "..", "config.toml"))
	if err != nil {
		t.Fatalf("loadConfig(config.toml) = %v", err)
	}
	if c.XMPP.Component != "imip.localhost" || c.IMIP.Server != "127.0.0.1:11319" || c.Storage.Driver != "sqlite" {
		t.Errorf("config.toml decoded to %+v", c)
	}
	if c.IMIP.LoginTimeout.Duration != 20*time.Second || c.XMPP.MaxBackoff.Duration != 30*time.Second {
		t.Errorf("durations decoded to %v and %v", c.IMIP.LoginTimeout, c.XMPP.MaxBackoff)
	}
	if c.XMPP.MaxStanzaSize != xmppside.DefaultMaxStanzaSize {
		t.Errorf("xmpp.max_stanza_size decoded to %d, want the default %d", c.XMPP.MaxStanzaSize, xmppside.DefaultMaxStanzaSize)
	}
	if c.XMPP.MaxRegistrations != xmppside.DefaultMaxRegistrations {
		t.Errorf("xmpp.max_registrations decoded to %d, want the default %d", c.XMPP.MaxRegistrations, xmppside.DefaultMaxRegistrations)
	}
	if c.Roster.Group != "IMIP" || c.Roster.AllowRemove {
		t.Errorf("roster section decoded to %+v", c.Roster)
	}
	// The example shows the defaults: what it says is what an empty
	// section gives.
	if got := c.Limits.gateway(); got != gateway.DefaultLimits {
		t.Errorf("limits decoded to %+v, want the defaults %+v", got, gateway.DefaultLimits)
	}
	if c.Limits.DeliveryTimeout.Duration != gateway.DefaultDeliveryTimeout {
		t.Errorf("limits.delivery_timeout decoded to %v, want the default %v", c.Limits.DeliveryTimeout, gateway.DefaultDeliveryTimeout)
	}
	if c.Storage.KeyFile != "imip-transport.key" {
		t.Errorf("storage.key_file decoded to %q", c.Storage.KeyFile)
	}
}

// TestShippedConfigDocumentsEveryKey checks that each key of the shipped
// file carries a comment, as admins rely on it.
func TestShippedConfigDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[") {
			continue
		}
		if i == 0 || !strings.HasPrefix(lines[i-1], "#") {
			t.Errorf("line %d %q has no comment above it", i+1, l)
		}
	}
}

const validConfig = `
[xmpp]
component = "gw.example"
server = "127.0.0.1:5347"
secret = "s"
[imip]
server = "127.0.0.1:11319"
[storage]
driver = "sqlite"
path = "x.db"
key_file = "x.key"
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigErrors(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		text, want string
	}{
		0:  {validConfig + "\n[extra]\nkey = 1\n", "unknown keys: extra"},
		1:  {strings.Replace(validConfig, `secret = "s"`, `secret = "s"`+"\nsecrt = \"t\"", 1), "unknown keys: xmpp.secrt"},
		2:  {strings.Replace(validConfig, `secret = "s"`, "", 1), "xmpp.secret or xmpp.secret_file is required"},
		3:  {strings.Replace(validConfig, `component = "gw.example"`, `component = "a@gw.example"`, 1), "not a bare domain"},
		4:  {strings.Replace(validConfig, `driver = "sqlite"`, `driver = "mysql"`, 1), `storage.driver "mysql"`},
		5:  {validConfig + "[log]\nlevel = \"loud\"\n", `log.level "loud"`},
		6:  {strings.Replace(validConfig, "[imip]", "[imip]\nlogin_timeout = \"soon\"", 1), "login_timeout"},
		7:  {strings.Replace(validConfig, `secret = "s"`, `secret = "s"`+"\nsecret_file = \""+secret+"\"", 1), "not both"},
		8:  {strings.Replace(validConfig, "[imip]", "max_stanza_size = 4096\n[imip]", 1), "xmpp.max_stanza_size must be"},
		9:  {strings.Replace(validConfig, "[imip]", "max_stanza_size = -1\n[imip]", 1), "xmpp.max_stanza_size must be"},
		10: {strings.Replace(validConfig, "[imip]", "max_stanza_size = 16777217\n[imip]", 1), "xmpp.max_stanza_size must be"},
		11: {strings.Replace(validConfig, "[imip]", "max_stanza_size = \"big\"\n[imip]", 1), "max_stanza_size"},
		12: {strings.Replace(validConfig, `key_file = "x.key"`, "", 1), "storage.key_file is required"},
		13: {strings.Replace(validConfig, `key_file = "x.key"`, `key_file = "/no/such/dir/x.key"`, 1), "storage.key_file: seal: directory of the key file"},
		14: {strings.Replace(validConfig, `key_file = "x.key"`, `key_file = "`+secret+`"`, 1), "storage.key_file: seal: key file " + secret + ": not a key"},
		15: {strings.Replace(validConfig, `key_file = "x.key"`, `key_file = "x.key"`+"\nkey = \"k\"", 1), "unknown keys: storage.key"},
		16: {strings.Replace(validConfig, "[imip]", "max_registrations = -1\n[imip]", 1), "xmpp.max_registrations must be"},
		17: {strings.Replace(validConfig, "[imip]", "max_registrations = 20000\n[imip]", 1), "xmpp.max_registrations must be"},
		18: {strings.Replace(validConfig, `driver = "sqlite"`, `driver = "sqlite"`+"\nhold_writes = \"6s\"", 1), "storage.hold_writes 6s is above 5s"},
		19: {validConfig + "[admin]\njids = [\"localhost\"]\n", `admin.jids: "localhost" is not a bare user JID`},
		20: {validConfig + "[admin]\njids = [\"root@localhost/pc\"]\n", `admin.jids: "root@localhost/pc" is not a bare user JID`},
		21: {validConfig + "[admin]\njids = [\"a@b@c\"]\n", `admin.jids: "a@b@c" is not a JID`},
		22: {validConfig + "[admin]\njid = [\"root@localhost\"]\n", "unknown keys: admin.jid"},
		23: {validConfig + "[admin]\njids = \"root@localhost\"\n", "admin.jids"},
	}
	for i, c := range cases {
		_, err := loadConfig(writeConfig(t, c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%d: loadConfig = %v, want error containing %q", i, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "from-file") {
			t.Errorf("%d: the error quotes a file's contents: %v", i, err)
		}
	}
}

func TestAdminJIDs(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, validConfig+"[admin]\njids = [\"root@localhost\", \"Ops@Example.org\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := cfg.adminJIDs()
	if err != nil || len(js) != 2 || js[0].String() != "root@localhost" || js[1].Domainpart() != "example.org" {
		t.Errorf("adminJIDs = %v, %v", js, err)
	}
}

func TestSecretFile(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(validConfig, `secret = "s"`, `secret_file = "`+secret+`"`, 1)
	c, err := loadConfig(writeConfig(t, text))
	if err != nil {
		t.Fatal(err)
	}
	if c.XMPP.Secret != "from-file" {
		t.Errorf("secret from file = %q, want %q", c.XMPP.Secret, "from-file")
	}
}

func TestCheckConfigAndVersionFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"-config", writeConfig(t, validConfig), "-check-config"}, &out, &errb); code != 0 {
		t.Fatalf("-check-config exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "configuration ok") {
		t.Errorf("-check-config printed %q", out.String())
	}
	out.Reset()
	if code := run([]string{"-version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "imip-transport ") {
		t.Errorf("-version exit %d, printed %q", code, out.String())
	}
	errb.Reset()
	if code := run([]string{"-config", writeConfig(t, validConfig+"bogus = 1\n"), "-check-config"}, &out, &errb); code != 1 {
		t.Errorf("bad config: exit %d, want 1", code)
	}
	if strings.Contains(errb.String(), `"s"`) {
		t.Errorf("error output leaks the secret: %s", errb.String())
	}
}

// storage.hold_writes: unset takes the gateway's default (0), "0s" turns the
// hold off (negative for the gateway), a value is taken as it is.
func TestHoldWrites(t *testing.T) {
	for _, c := range []struct {
		line string
		want time.Duration
	}{
		{"", 0},
		{`hold_writes = "0s"`, -1},
		{`hold_writes = "120ms"`, 120 * time.Millisecond},
	} {
		cfg, err := loadConfig(writeConfig(t, strings.Replace(validConfig, `driver = "sqlite"`, `driver = "sqlite"`+"\n"+c.line, 1)))
		if err != nil {
			t.Fatalf("%q: %v", c.line, err)
		}
		if got := cfg.Storage.holdWrites(); got != c.want {
			t.Errorf("%q: holdWrites() = %v, want %v", c.line, got, c.want)
		}
	}
}
