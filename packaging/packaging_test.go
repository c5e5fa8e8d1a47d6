package packaging

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"imip-transport/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// root is the repository's root, from this package's directory.
const root = ".."

// arches are the architectures make dist builds, with their ELF machine.
var arches = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

var commands = []string{"imip-transport", "imipd"}

// buildBudget bounds make deb: four static builds (cached after the first
// run) and two packages.
const buildBudget = 5 * time.Minute

// need skips (or fails, under IMIP_REQUIRE_SERVERS=1) when a tool is not
// installed.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.SkipUnavailable(t, fmt.Errorf("%s not installed: %w", tool, err))
		}
	}
}

// run runs name with args in dir and returns its standard output; a
// failure fails t with the command's output.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), buildBudget)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// TestRelease runs `make deb` (which runs make dist) into a temporary
// directory and checks the binaries, SHA256SUMS and the packages.
func TestRelease(t *testing.T) {
	need(t, "make", "git", "sha256sum", "dpkg-deb")
	version := strings.TrimSpace(run(t, root, "git", "describe", "--tags", "--always", "--dirty"))
	debVersion := strings.TrimSpace(run(t, root, "sh", "packaging/deb-version.sh", version))
	dist := filepath.Join(t.TempDir(), "dist")
	start := time.Now()
	run(t, root, "make", "deb", "DIST="+dist)
	t.Logf("make deb: %v (version %s, package version %s)", time.Since(start).Round(time.Millisecond), version, debVersion)

	t.Run("binaries", func(t *testing.T) {
		for arch, machine := range arches {
			for _, cmd := range commands {
				checkBinary(t, filepath.Join(dist, cmd+"-linux-"+arch), arch, machine, version)
			}
		}
	})
	t.Run("version", func(t *testing.T) {
		if _, ok := arches[runtime.GOARCH]; !ok || runtime.GOOS != "linux" {
			t.Skipf("cannot run linux/amd64 or linux/arm64 binaries on %s/%s", runtime.GOOS, runtime.GOARCH)
		}
		for _, cmd := range commands {
			out := run(t, dist, filepath.Join(dist, cmd+"-linux-"+runtime.GOARCH), "-version")
			if want := cmd + " " + version + "\n"; out != want {
				t.Errorf("%s -version printed %q, want %q", cmd, out, want)
			}
		}
	})
	t.Run("SHA256SUMS", func(t *testing.T) { checkSums(t, dist) })
	t.Run("reproducible", func(t *testing.T) {
		// Same tree, same toolchain: the same bytes (-trimpath, and the
		// packages' files dated at the last commit).
		again := filepath.Join(t.TempDir(), "dist")
		run(t, root, "make", "deb", "DIST="+again)
		if a, b := readFile(t, filepath.Join(dist, "SHA256SUMS")), readFile(t, filepath.Join(again, "SHA256SUMS")); a != b {
			t.Errorf("a second make deb made other files:\n%s\nthen:\n%s", a, b)
		}
	})
	for arch, machine := range arches {
		t.Run("deb-"+arch, func(t *testing.T) {
			deb := filepath.Join(dist, "imip-transport_"+debVersion+"_"+arch+".deb")
			checkDeb(t, dist, deb, arch, machine, debVersion)
		})
	}
}

// checkBinary checks that path is a static ELF executable for arch, built
// by make dist's rules with version stamped.
func checkBinary(t *testing.T, path, arch string, machine elf.Machine, version string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	if f.Machine != machine || f.Type != elf.ET_EXEC {
		t.Errorf("%s: ELF machine %v type %v, want %v ET_EXEC", path, f.Machine, f.Type, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: has a %v program header: not static", path, p.Type)
		}
	}
	if s := f.Section(".dynamic"); s != nil {
		t.Errorf("%s: has a .dynamic section: not static", path)
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s: imports %v (%v), want none", path, libs, err)
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: build info: %v", path, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"GOOS": "linux", "GOARCH": arch, "CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[k] != want {
			t.Errorf("%s: build setting %s = %q, want %q", path, k, settings[k], want)
		}
	}
	// -trimpath keeps -ldflags out of the build information: the stamped
	// string itself must be in the binary (and -version prints it, below).
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(version)) {
		t.Errorf("%s: version string %q not in the binary", path, version)
	}
}

// checkSums checks that SHA256SUMS lists every other file of dist, once,
// with its SHA-256, in the format sha256sum --check reads.
func checkSums(t *testing.T, dist string) {
	t.Helper()
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`^([0-9a-f]{64})  (\S+)$`)
	var listed []string
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Errorf("SHA256SUMS: line %q is not \"HEX  NAME\"", sc.Text())
			continue
		}
		data, err := os.ReadFile(filepath.Join(dist, m[2]))
		if err != nil {
			t.Errorf("SHA256SUMS lists %s: %v", m[2], err)
			continue
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != m[1] {
			t.Errorf("SHA256SUMS: %s: sum %s, file has %x", m[2], m[1], sum)
		}
		listed = append(listed, m[2])
	}
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if e.Name() != "SHA256SUMS" {
			files = append(files, e.Name())
		}
	}
	slices.Sort(listed)
	if !slices.Equal(listed, files) {
		t.Errorf("SHA256SUMS lists %v; dist/ has %v", listed, files)
	}
	if want := 2*len(arches) + len(arches); len(files) != want {
		t.Errorf("dist/ has %d files %v, want %d (binaries and packages)", len(files), files, want)
	}
	run(t, dist, "sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS")
}

// debFile is one line of dpkg-deb -c.
type debFile struct{ mode, owner string }

// checkDeb checks the package's fields, files, modes, conffiles and
// maintainer scripts, then what it installs: the binaries of make dist,
// the units (systemd-analyze verify), the configuration (-check-config).
func checkDeb(t *testing.T, dist, deb, arch string, machine elf.Machine, debVersion string) {
	t.Helper()
	fields := run(t, dist, "dpkg-deb", "-f", deb, "Package", "Version", "Architecture")
	if want := fmt.Sprintf("Package: imip-transport\nVersion: %s\nArchitecture: %s\n", debVersion, arch); fields != want {
		t.Errorf("dpkg-deb -f: %q, want %q", fields, want)
	}

	files := map[string]debFile{}
	for l := range strings.Lines(run(t, dist, "dpkg-deb", "-c", deb)) {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c: line %q", l)
		}
		files[strings.TrimPrefix(f[5], ".")] = debFile{mode: f[0], owner: f[1]}
	}
	for path, want := range map[string]debFile{
		"/usr/bin/imip-transport":                    {"-rwxr-xr-x", "root/root"},
		"/usr/bin/imipd":                             {"-rwxr-xr-x", "root/root"},
		"/lib/systemd/system/imip-transport.service": {"-rw-r--r--", "root/root"},
		"/lib/systemd/system/imipd.service":          {"-rw-r--r--", "root/root"},
		"/usr/lib/sysusers.d/imip-transport.conf":    {"-rw-r--r--", "root/root"},
		// root:root in the archive; postinst sets the group (statoverride).
		"/etc/imip-transport/config.toml":             {"-rw-r-----", "root/root"},
		"/etc/imip-transport/":                        {"drwxr-xr-x", "root/root"},
		"/etc/default/imipd":                          {"-rw-r--r--", "root/root"},
		"/usr/share/doc/imip-transport/DEPLOYMENT.md": {"-rw-r--r--", "root/root"},
	} {
		if got, ok := files[path]; !ok || got != want {
			t.Errorf("dpkg-deb -c: %s: %+v (listed: %v), want %+v", path, got, ok, want)
		}
	}

	ctrl := filepath.Join(t.TempDir(), "DEBIAN")
	run(t, dist, "dpkg-deb", "-e", deb, ctrl)
	conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(conffiles))
	slices.Sort(got)
	if want := []string{"/etc/default/imipd", "/etc/imip-transport/config.toml"}; !slices.Equal(got, want) {
		t.Errorf("conffiles %v, want %v", got, want)
	}
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		fi, err := os.Stat(filepath.Join(ctrl, script))
		if err != nil {
			t.Errorf("maintainer script: %v", err)
			continue
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, want 0755", script, fi.Mode().Perm())
		}
		sameFile(t, filepath.Join(ctrl, script), filepath.Join(root, "packaging", "deb", script))
	}

	fs := filepath.Join(t.TempDir(), "root")
	run(t, dist, "dpkg-deb", "-x", deb, fs)
	for _, cmd := range commands {
		sameFile(t, filepath.Join(fs, "usr", "bin", cmd), filepath.Join(dist, cmd+"-linux-"+arch))
		sameFile(t, filepath.Join(fs, "lib", "systemd", "system", cmd+".service"), filepath.Join(root, "packaging", "systemd", cmd+".service"))
	}
	sameFile(t, filepath.Join(fs, "usr", "lib", "sysusers.d", "imip-transport.conf"), filepath.Join(root, "packaging", "sysusers.d", "imip-transport.conf"))
	cfg := filepath.Join(fs, "etc", "imip-transport", "config.toml")
	if want := run(t, root, "sh", "packaging/deb/config.sh", "config.toml"); readFile(t, cfg) != want {
		t.Errorf("%s differs from packaging/deb/config.sh config.toml", cfg)
	}
	if f, err := elf.Open(filepath.Join(fs, "usr", "bin", "imipd")); err != nil || f.Machine != machine {
		t.Errorf("%s package: /usr/bin/imipd: %v, want ELF for %v", arch, err, machine)
	} else {
		f.Close()
	}
	if arch == runtime.GOARCH && runtime.GOOS == "linux" {
		checkConfig(t, fs)
		verifyUnits(t, fs)
	}
}

// checkConfig runs the packaged imip-transport -check-config on the
// packaged config.toml, with its /var/lib and credential paths moved
// into a temporary directory (the only change).
func checkConfig(t *testing.T, fs string) {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "component-secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"imip-transport", "imip-transport-key"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg := readFile(t, filepath.Join(fs, "etc", "imip-transport", "config.toml"))
	for from, to := range map[string]string{
		`"/run/credentials/imip-transport.service/component-secret"`: strconv.Quote(secret),
		`"/var/lib/imip-transport/`:                                  `"` + filepath.Join(dir, "imip-transport") + "/",
		`"/var/lib/imip-transport-key/`:                              `"` + filepath.Join(dir, "imip-transport-key") + "/",
	} {
		if strings.Count(cfg, from) != 1 {
			t.Fatalf("packaged config.toml: %s appears %d times, want once", from, strings.Count(cfg, from))
		}
		cfg = strings.Replace(cfg, from, to, 1)
	}
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o640); err != nil {
		t.Fatal(err)
	}
	out := run(t, dir, filepath.Join(fs, "usr", "bin", "imip-transport"), "-config", path, "-check-config")
	if out != "configuration ok: "+path+"\n" {
		t.Errorf("-check-config of the packaged config.toml printed %q", out)
	}
}

// verifyUnits runs systemd-analyze verify on the packaged units, their
// /usr/bin paths pointed at the extracted package (verify checks that the
// commands exist), and requires a clean pass and a low exposure score.
func verifyUnits(t *testing.T, fs string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze not installed: the units are not verified")
		return
	}
	dir := t.TempDir()
	var units []string
	for _, cmd := range commands {
		unit := readFile(t, filepath.Join(fs, "lib", "systemd", "system", cmd+".service"))
		unit = strings.ReplaceAll(unit, "/usr/bin/", filepath.Join(fs, "usr", "bin")+"/")
		path := filepath.Join(dir, cmd+".service")
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, path)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// verify exits 0 on a bad value it ignores, so its output must be empty.
	out, err := exec.CommandContext(ctx, "systemd-analyze", append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	exposure := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)
	for _, u := range units {
		out, err := exec.CommandContext(ctx, "systemd-analyze", "security", "--offline=yes", "--no-pager", u).CombinedOutput()
		m := exposure.FindSubmatch(out)
		if err != nil || m == nil {
			t.Errorf("systemd-analyze security %s: %v\n%s", u, err, out)
			continue
		}
		// systemd's scale: 0 (locked down) to 10 (unprotected); below 2 is
		// "OK". Measured on systemd 252: 1.5 for both units.
		if v, _ := strconv.ParseFloat(string(m[1]), 64); v > 2.0 {
			t.Errorf("systemd-analyze security %s: exposure %s, want at most 2.0\n%s", filepath.Base(u), m[1], out)
		} else {
			t.Logf("systemd-analyze security %s: exposure %s", filepath.Base(u), m[1])
		}
	}
}

func sameFile(t *testing.T, got, want string) {
	t.Helper()
	if readFile(t, got) != readFile(t, want) {
		t.Errorf("%s differs from %s", got, want)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSysusers applies the sysusers.d file to an empty temporary root
// (systemd-sysusers --root) and checks the two users it creates.
func TestSysusers(t *testing.T) {
	if _, err := exec.LookPath("systemd-sysusers"); err != nil {
		t.Skip("systemd-sysusers not installed")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"passwd", "group", "shadow", "gshadow"} {
		if err := os.WriteFile(filepath.Join(dir, "etc", f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := filepath.Abs(filepath.Join("sysusers.d", "imip-transport.conf"))
	if err != nil {
		t.Fatal(err)
	}
	run(t, dir, "systemd-sysusers", "--root="+dir, conf)
	passwd := readFile(t, filepath.Join(dir, "etc", "passwd"))
	group := readFile(t, filepath.Join(dir, "etc", "group"))
	for user, home := range map[string]string{"_imip-transport": "/var/lib/imip-transport", "_imipd": "/var/lib/imipd"} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(user) + `:x:(\d+):(\d+):[^:]*:` + regexp.QuoteMeta(home) + `:/usr/sbin/nologin$`)
		m := re.FindStringSubmatch(passwd)
		if m == nil {
			t.Errorf("passwd has no system user %s with home %s and no shell:\n%s", user, home, passwd)
			continue
		}
		if uid, _ := strconv.Atoi(m[1]); uid >= 1000 || uid == 0 {
			t.Errorf("%s: uid %d, want a system uid (1-999)", user, uid)
		}
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(user) + `:x:` + m[2] + `:`).MatchString(group) {
			t.Errorf("group has no %s with gid %s:\n%s", user, m[2], group)
		}
	}
}

// TestShellcheck lints the packaging's shell scripts.
func TestShellcheck(t *testing.T) {
	need(t, "shellcheck")
	run(t, ".", "shellcheck", "deb-version.sh", "deb/config.sh", "deb/postinst", "deb/prerm", "deb/postrm")
}

// TestDebVersion checks the Debian version of git describe strings, and
// that dpkg sorts them in release order.
func TestDebVersion(t *testing.T) {
	need(t, "git")
	for _, tc := range []struct{ in, want string }{
		{"v1.2.0", "1.2.0"},
		{"1.2.0", "1.2.0"},
		{"v1.2.0-5-gabc1234", "1.2.0+git5.gabc1234"},
		{"v1.2.0-5-gabc1234-dirty", "1.2.0+git5.gabc1234.dirty"},
		{"v1.3.0-rc1", "1.3.0~rc1"},
		{"v1.3.0-rc1-2-gabc1234", "1.3.0~rc1+git2.gabc1234"},
	} {
		if got := strings.TrimSpace(run(t, ".", "sh", "deb-version.sh", tc.in)); got != tc.want {
			t.Errorf("deb-version.sh %s = %q, want %q", tc.in, got, tc.want)
		}
	}
	// No tag: 0.0~gitN.HASH, N the commits up to HEAD.
	n := strings.TrimSpace(run(t, root, "git", "rev-list", "--count", "HEAD"))
	for in, want := range map[string]string{"4f40a27": "0.0~git" + n + ".4f40a27", "abc1234-dirty": "0.0~git" + n + ".abc1234.dirty"} {
		if got := strings.TrimSpace(run(t, ".", "sh", "deb-version.sh", in)); got != want {
			t.Errorf("deb-version.sh %s = %q, want %q", in, got, want)
		}
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		return
	}
	order := []string{"0.0~git5.abc1234", "0.0~git6.abc1234", "1.2.0", "1.2.0+git5.gabc1234", "1.3.0~rc1", "1.3.0~rc1+git2.gabc1234", "1.3.0"}
	for i := 1; i < len(order); i++ {
		cmd := exec.CommandContext(t.Context(), "dpkg", "--compare-versions", order[i-1], "lt", order[i])
		if err := cmd.Run(); err != nil {
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				t.Errorf("dpkg: %s does not sort before %s", order[i-1], order[i])
				continue
			}
			t.Fatal(err)
		}
	}
}

// fakeCommand stands in for every command the maintainer scripts run: it
// logs its name and arguments, and answers the queries as the FAKE_*
// variables say (exit status; unset: the first-install answer).
const fakeCommand = `#!/bin/sh
echo "${0##*/} $*" >>"$FAKE_LOG"
case "${0##*/} $*" in
"getent "*) exit "${FAKE_GETENT:-0}" ;;
"dpkg-statoverride --list "*) exit "${FAKE_LISTED:-1}" ;;
"deb-systemd-helper debian-installed "*) exit "${FAKE_INSTALLED:-1}" ;;
"deb-systemd-helper --quiet was-enabled "*) exit "${FAKE_ENABLED:-1}" ;;
esac
exit 0
`

// TestMaintainerScripts runs postinst, prerm and postrm with a PATH that
// holds only stand-ins (nothing on this machine changes) and checks the
// commands they run: users created, the configuration's group set, the
// units never enabled or started on a first install, an upgrade keeping
// the administrator's choice and restarting what runs, purge undoing the
// overrides. What depends on this machine (a running systemd, an
// installed deb-systemd-helper) is expected as the scripts see it.
func TestMaintainerScripts(t *testing.T) {
	const config = "/etc/imip-transport/config.toml"
	units := []string{"imip-transport.service", "imipd.service"}
	_, err := os.Stat("/run/systemd/system")
	systemd := err == nil
	fi, err := os.Stat("/usr/bin/deb-systemd-helper")
	helper := err == nil && fi.Mode()&0o111 != 0

	// lines builds the expected log: each unit in turn for a "%s" line.
	lines := func(parts ...any) []string {
		var out []string
		for _, p := range parts {
			switch p := p.(type) {
			case string:
				out = append(out, p)
			case []string:
				out = append(out, p...)
			}
		}
		return out
	}
	perUnit := func(format ...string) []string {
		var out []string
		for _, u := range units {
			for _, f := range format {
				out = append(out, fmt.Sprintf(f, u))
			}
		}
		return out
	}
	when := func(cond bool, l ...string) []string {
		if cond {
			return l
		}
		return nil
	}
	both := strings.Join(units, " ")

	for _, tc := range []struct {
		name     string
		script   string
		args     []string
		sysusers bool
		env      []string
		want     []string
	}{
		{
			name: "first install", script: "postinst", args: []string{"configure", ""}, sysusers: true,
			want: lines(
				"systemd-sysusers imip-transport.conf",
				"dpkg-statoverride --list "+config,
				"dpkg-statoverride --update --add root _imip-transport 0640 "+config,
				perUnit("deb-systemd-helper debian-installed %s", "deb-systemd-helper update-state %s"),
				when(systemd, "systemctl --system daemon-reload"),
			),
		},
		{
			name: "upgrade without systemd-sysusers, units enabled", script: "postinst", args: []string{"configure", "0.0~git1.abc1234"},
			env: []string{"FAKE_GETENT=2", "FAKE_LISTED=0", "FAKE_INSTALLED=0", "FAKE_ENABLED=0"},
			want: lines(
				"getent passwd _imip-transport",
				"useradd --system --user-group --home-dir /var/lib/imip-transport --no-create-home --shell /usr/sbin/nologin --comment imip-transport IMIP gateway _imip-transport",
				"getent passwd _imipd",
				"useradd --system --user-group --home-dir /var/lib/imipd --no-create-home --shell /usr/sbin/nologin --comment imipd IMIP server _imipd",
				"dpkg-statoverride --list "+config,
				perUnit("deb-systemd-helper debian-installed %s", "deb-systemd-helper --quiet was-enabled %s",
					"deb-systemd-helper enable %s", "deb-systemd-helper update-state %s"),
				when(systemd, "systemctl --system daemon-reload", "deb-systemd-invoke try-restart "+both),
			),
		},
		{
			name: "reinstall, users present, units not enabled", script: "postinst", args: []string{"configure", "0.0~git1.abc1234"},
			env: []string{"FAKE_LISTED=0", "FAKE_INSTALLED=0"},
			want: lines(
				"getent passwd _imip-transport",
				"getent passwd _imipd",
				"dpkg-statoverride --list "+config,
				perUnit("deb-systemd-helper debian-installed %s", "deb-systemd-helper --quiet was-enabled %s", "deb-systemd-helper update-state %s"),
				when(systemd, "systemctl --system daemon-reload", "deb-systemd-invoke try-restart "+both),
			),
		},
		{name: "prerm remove", script: "prerm", args: []string{"remove"}, want: when(systemd, "deb-systemd-invoke stop "+both)},
		{name: "prerm upgrade", script: "prerm", args: []string{"upgrade", "0.0~git9.abc1234"}},
		{
			name: "postrm remove", script: "postrm", args: []string{"remove"},
			want: lines(when(systemd, "systemctl --system daemon-reload"), when(helper, "deb-systemd-helper mask "+both)),
		},
		{
			name: "postrm purge", script: "postrm", args: []string{"purge"}, env: []string{"FAKE_LISTED=0"},
			want: lines(
				when(helper, "deb-systemd-helper purge "+both, "deb-systemd-helper unmask "+both),
				"dpkg-statoverride --list "+config,
				"dpkg-statoverride --remove "+config,
			),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			fakes := []string{"getent", "useradd", "dpkg-statoverride", "deb-systemd-helper", "deb-systemd-invoke", "systemctl"}
			if tc.sysusers {
				fakes = append(fakes, "systemd-sysusers")
			}
			for _, name := range fakes {
				if err := os.WriteFile(filepath.Join(bin, name), []byte(fakeCommand), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			log := filepath.Join(dir, "log")
			script, err := filepath.Abs(filepath.Join("deb", tc.script))
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), "/bin/sh", append([]string{script}, tc.args...)...)
			cmd.Dir = dir
			cmd.Env = append([]string{"PATH=" + bin, "FAKE_LOG=" + log}, tc.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s %v: %v\n%s", tc.script, tc.args, err, out)
			}
			var got []string
			if b, err := os.ReadFile(log); err == nil {
				got = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			} else if !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s %v ran:\n  %s\nwant:\n  %s", tc.script, tc.args, strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}
