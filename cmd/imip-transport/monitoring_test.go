package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestMonitoringConfig(t *testing.T) {
	c, err := loadConfig(filepath.Join("..", "..", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Monitoring.Listen != "127.0.0.1:9105" || c.Monitoring.Pprof || c.Monitoring.AllowRemote {
		t.Errorf("shipped [monitoring] decoded to %+v, want loopback 9105, pprof and allow_remote off", c.Monitoring)
	}
	c, err = loadConfig(writeConfig(t, validConfig))
	if err != nil || c.Monitoring.Listen != "" || c.Monitoring.Pprof {
		t.Errorf("no [monitoring]: %+v, %v; want off", c.Monitoring, err)
	}
	for i, tc := range []struct{ section, want string }{
		0: {"listen = \"0.0.0.0:9105\"", "not a loopback address"},
		1: {"listen = \":9105\"", "not a loopback address"},
		2: {"listen = \"127.0.0.1\"", "want host:port"},
		3: {"pprof = true", "monitoring.pprof needs monitoring.listen"},
		4: {"listen = \"127.0.0.1:9105\"\nauth = true", "unknown keys: monitoring.auth"},
	} {
		_, err := loadConfig(writeConfig(t, validConfig+"[monitoring]\n"+tc.section+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d: loadConfig = %v, want error containing %q", i, err, tc.want)
		}
	}
	// Beyond loopback only when allowed, and then with a warning.
	cfg := writeConfig(t, validConfig+"[monitoring]\nlisten = \"0.0.0.0:9105\"\nallow_remote = true\npprof = true\n")
	var out, errb bytes.Buffer
	if code := run([]string{"-config", cfg, "-check-config"}, &out, &errb); code != 0 {
		t.Fatalf("-check-config exit %d: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "monitoring listens beyond loopback") || !strings.Contains(errb.String(), "pprof") {
		t.Errorf("no warning about a remote monitoring listener: %q", errb.String())
	}
}
