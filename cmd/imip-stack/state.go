package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// secretFile is the component secret's file inside the state directory.
const secretFile = "component.secret"

// stateDir creates dir (mode 0700) and returns its absolute path.
func stateDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	return abs, nil
}

// loadSecret returns the component secret kept in dir, creating a random
// one (mode 0600) on the first start.
func loadSecret(dir string) (string, error) {
	path := filepath.Join(dir, secretFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		s := string(bytes.TrimSpace(b))
		if s == "" {
			return "", fmt.Errorf("component secret %s is empty: delete it to get a new one", path)
		}
		return s, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("component secret: %w", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("component secret: %w", err)
	}
	s := hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("component secret: %w", err)
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("component secret: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("component secret: %w", err)
	}
	return s, nil
}

// portUse names one port the stack needs and the flag that changes it.
type portUse struct {
	flag, what string
	port       int
}

// checkPorts makes sure every port is free on 127.0.0.1. The error names
// each busy port, the flag that moves it and, when an earlier stack's
// Prosody may still hold it, that Prosody's PID.
func checkPorts(ports []portUse, prosodyPIDFile string) error {
	var errs []error
	for _, p := range ports {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)))
		if err != nil {
			errs = append(errs, fmt.Errorf("port %d (%s) on 127.0.0.1 is taken: stop what holds it or choose another with %s N (%v)",
				p.port, p.what, p.flag, err))
			continue
		}
		_ = ln.Close()
	}
	if len(errs) == 0 {
		return nil
	}
	if pid := stalePID(prosodyPIDFile); pid > 0 {
		errs = append(errs, fmt.Errorf("the Prosody of a stack with this state directory runs as PID %d (%s): "+
			"if no imip-stack is running, it was left behind: stop it with `kill %d`", pid, prosodyPIDFile, pid))
	}
	return errors.Join(errs...)
}

// stalePID returns the PID recorded in path if that process still exists,
// else 0. It never signals the process.
func stalePID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err != nil {
		return 0
	}
	return pid
}
