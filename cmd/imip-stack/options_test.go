package main

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestParseOptionsDefaults(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatalf("parseOptions(nil) = %v", err)
	}
	want := options{Dir: ".stack", C2SPort: 5222, CompPort: 5347, IMIPPort: 11319,
		Accounts: "cmd/imipd/accounts.example.toml", Prosody: "prosody", LogLevel: slog.LevelInfo}
	if o != want {
		t.Errorf("parseOptions(nil) = %+v, want %+v", o, want)
	}
}

func TestParseOptions(t *testing.T) {
	cases := []struct {
		args    []string
		wantErr string // "" means success
		check   func(options) bool
	}{
		0: {[]string{"-c2s-port", "15222", "-component-port", "15347", "-imip-port", "21319", "-dir", "/tmp/x"}, "",
			func(o options) bool {
				return o.C2SPort == 15222 && o.CompPort == 15347 && o.IMIPPort == 21319 && o.Dir == "/tmp/x"
			}},
		1: {[]string{"-log-level", "debug", "-prosody-debug"}, "",
			func(o options) bool { return o.LogLevel == slog.LevelDebug && o.ProsodyDebug }},
		2: {[]string{"-c2s-port", "5347"}, "-c2s-port and -component-port are both 5347", nil},
		3: {[]string{"-imip-port", "0"}, "-imip-port 0: not a TCP port", nil},
		4: {[]string{"-imip-port", "70000"}, "-imip-port 70000: not a TCP port", nil},
		5: {[]string{"-log-level", "loud"}, `-log-level "loud"`, nil},
		6: {[]string{"extra"}, "unexpected arguments: extra", nil},
		7: {[]string{"-dir", ""}, "-dir must not be empty", nil},
	}
	for i, c := range cases {
		o, err := parseOptions(c.args, io.Discard)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%d: parseOptions(%q) = %v, want success", i, c.args, err)
		case c.wantErr == "" && !c.check(o):
			t.Errorf("%d: parseOptions(%q) = %+v: wrong values", i, c.args, o)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%d: parseOptions(%q) = %v, want error containing %q", i, c.args, err, c.wantErr)
		}
	}
}

func TestParseOptionsHelp(t *testing.T) {
	var out strings.Builder
	_, err := parseOptions([]string{"-h"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseOptions(-h) = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-c2s-port", "-component-port", "-imip-port", "-dir", "-accounts"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %s:\n%s", want, out.String())
		}
	}
	if code := mainArgs([]string{"-h"}, io.Discard, io.Discard); code != 0 {
		t.Errorf("mainArgs(-h) = %d, want 0", code)
	}
	if code := mainArgs([]string{"-imip-port", "0"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("mainArgs(-imip-port 0) = %d, want 2", code)
	}
}
