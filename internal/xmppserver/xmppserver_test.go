package xmppserver

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLuaQuote(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", `""`},
		{"secret", `"secret"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"line\nnext", `"line\nnext"`},
		{"nul\x001", `"nul\0001"`},
		{"tab\tx\x7f", `"tab\009x\127"`},
		{"ünï", `"ünï"`},
		{"]]--", `"]]--"`},
	}
	for i, c := range cases {
		if got := luaQuote(c.in); got != c.want {
			t.Errorf("case %d: luaQuote(%q) = %s, want %s", i, c.in, got, c.want)
		}
	}
}

func TestProsodyEncode(t *testing.T) {
	cases := []struct{ in, want string }{
		{"localhost", "localhost"},
		{"imip.localhost", "imip%2elocalhost"},
		{"bob.smith", "bob%2esmith"},
		{"a-b_c", "a%2db%5fc"},
		{"é", "%c3%a9"},
	}
	for i, c := range cases {
		if got := prosodyEncode(c.in); got != c.want {
			t.Errorf("case %d: prosodyEncode(%q) = %q, want %q", i, c.in, got, c.want)
		}
	}
}

func TestCheckLocalpart(t *testing.T) {
	for i, name := range []string{"alice", "bob.smith", "4711", "x_y-z"} {
		if err := checkLocalpart(name); err != nil {
			t.Errorf("case %d: checkLocalpart(%q) = %v, want nil", i, name, err)
		}
	}
	for i, name := range []string{"", "a@b", "a/b", "a b", "a'b", "a\nb", strings.Repeat("x", 1024)} {
		if err := checkLocalpart(name); err == nil {
			t.Errorf("case %d: checkLocalpart(%q) = nil, want error", i, name)
		}
	}
}

func TestWriteCertificate(t *testing.T) {
	dir := t.TempDir()
	files, err := WriteCertificate(dir, "localhost", "imip.localhost")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatalf("certificate and key do not pair: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for i, host := range []string{"localhost", "imip.localhost", "127.0.0.1"} {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("case %d: VerifyHostname(%q): %v", i, host, err)
		}
	}
	if err := leaf.VerifyHostname("example.com"); err == nil {
		t.Errorf("certificate also valid for example.com")
	}
	if leaf.IsCA {
		t.Errorf("certificate is a CA")
	}
	combined, err := os.ReadFile(files.Combined)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for rest := combined; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		types = append(types, b.Type)
	}
	if strings.Join(types, ",") != "CERTIFICATE,PRIVATE KEY" {
		t.Errorf("combined PEM blocks = %v, want certificate then key", types)
	}
	if st, err := os.Stat(files.Key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v (%v), want 0600", st.Mode().Perm(), err)
	}
}

func TestMatchNode(t *testing.T) {
	const node = "imip0a1b2c3d@localhost"
	args := func(s string) [][]byte {
		var out [][]byte
		for _, f := range strings.Fields(s) {
			out = append(out, []byte(f))
		}
		return out
	}
	cases := []struct {
		cmdline          string
		server, anything bool
	}{
		{"/usr/lib/erlang/erts-13.1.5/bin/beam.smp -K true -- -root /usr/lib/erlang -sname " + node + " -noinput", true, true},
		{"/usr/lib/erlang/erts-13.1.5/bin/beam.smp -- -sname imip99999999@localhost", false, false},
		{"su -s /bin/sh -c x ejabberd -- /usr/bin/erl -sname " + node, false, true},
		{"/usr/lib/erlang/erts-13.1.5/bin/beam.smp -- -sname abc-ctl-" + node + " -hidden", false, true},
		{"/usr/lib/erlang/erts-13.1.5/bin/beam.smp -- -sname x" + node, false, false},
		{"/usr/bin/epmd -daemon", false, false},
	}
	for i, c := range cases {
		if got := matchNode(args(c.cmdline), node, true); got != c.server {
			t.Errorf("case %d: matchNode(server only) = %v, want %v", i, got, c.server)
		}
		if got := matchNode(args(c.cmdline), node, false); got != c.anything {
			t.Errorf("case %d: matchNode(any) = %v, want %v", i, got, c.anything)
		}
	}
}

func TestConfigs(t *testing.T) {
	p := prosodyConfig{
		dataDir: "/d/data", certDir: "/d/certs", logPath: "/d/p.log", pidPath: "/d/p.pid",
		c2sPort: 1111, componentPort: 2222, domain: "localhost", component: "imip.localhost",
		secret: `s"cret`, logLevel: "info", privilege: true,
	}.render()
	for i, want := range []string{
		"run_as_root = true", "c2s_ports = { 1111 }", "component_ports = { 2222 }",
		"use_ipv6 = false", `authentication = "internal_plain"`, "c2s_require_encryption = true",
		"network_settings = { nagle = false }", `component_secret = "s\"cret"`,
		`["imip.localhost"] = { roster = "both"; message = "outgoing"; presence = "roster" };`,
		`"privilege"`, `"s2s"`, `"bosh"`, `"websocket"`,
	} {
		if !strings.Contains(p, want) {
			t.Errorf("case %d: prosody config lacks %q:\n%s", i, want, p)
		}
	}
	e := ejabberdConfig{
		certFile: "/d/server.pem", pidPath: "/d/e.pid", c2sPort: 1111, componentPort: 2222,
		httpPort: 3333, distPort: 4444, domain: "localhost", component: "imip.localhost",
		secret: "s", logLevel: "info", privilege: true,
	}
	y := e.renderYAML()
	for i, want := range []string{
		"starttls_required: true", "module: ejabberd_service", "check_from: true",
		`"imip.localhost":`, `password: "s"`, "both: imip_component", "outgoing: imip_component",
		"roster: imip_component", `ip: "127.0.0.1"`, "mod_roster: {}", "mod_disco: {}",
	} {
		if !strings.Contains(y, want) {
			t.Errorf("case %d: ejabberd.yml lacks %q:\n%s", i, want, y)
		}
	}
	if strings.Count(y, `ip: "127.0.0.1"`) != 3 {
		t.Errorf("ejabberd.yml: want all three listeners on 127.0.0.1:\n%s", y)
	}
	if strings.Contains(y, "domain_balancing") {
		t.Errorf("ejabberd.yml has domain_balancing without Balancing:\n%s", y)
	}
	e.balancing = &ComponentBalancing{Type: "bare_source", ComponentNumber: 3}
	if y := e.renderYAML(); !strings.Contains(y, "domain_balancing:\n  \"imip.localhost\":\n    type: bare_source\n    component_number: 3\n") {
		t.Errorf("ejabberd.yml lacks the component's domain_balancing:\n%s", y)
	}
	for i, b := range []*ComponentBalancing{{Type: "sticky"}, {ComponentNumber: 1}, {ComponentNumber: 1001}} {
		if b.validate() == nil {
			t.Errorf("case %d: %+v accepted", i, *b)
		}
	}
	ctl := e.renderCtl()
	for i, want := range []string{"ERL_EPMD_ADDRESS=127.0.0.1", "ERL_DIST_PORT=4444", "inet_dist_use_interface {127,0,0,1}", "EJABBERD_PID_PATH='/d/e.pid'"} {
		if !strings.Contains(ctl, want) {
			t.Errorf("case %d: ejabberdctl.cfg lacks %q:\n%s", i, want, ctl)
		}
	}
}
