package xmppserver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// kill stops the node behind p: SIGTERM to its beam.smp, wait for the
// foreground ejabberdctl to exit, SIGKILL on timeout, and finally SIGKILL
// for any process still carrying this node's name.
// Only processes whose command line names s.node are signalled: the node
// name is random per StartEjabberd, so other ejabberd nodes (and the
// system's, if any) are never touched.
func (s *Ejabberd) kill(ctx context.Context, p *proc) error {
	beams := s.nodePIDs(true)
	for _, pid := range beams {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	if len(beams) == 0 {
		// Not started far enough to have a beam: end the script itself.
		p.signal(syscall.SIGTERM)
	}
	err := p.wait(ctx, DefaultStopTimeout)
	if err != nil {
		for _, pid := range s.nodePIDs(false) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		p.signal(syscall.SIGKILL)
		if werr := p.wait(context.Background(), 3*time.Second); werr != nil {
			return fmt.Errorf("ejabberdctl pid %d survived SIGKILL: %w", p.pid(), werr)
		}
	}
	// Leftovers (helper processes of a killed beam) die with the node name.
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := s.nodePIDs(false)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes of node %s still running: %v", s.node, left)
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("node %s killed after graceful stop failed: %w", s.node, err)
	}
	return nil
}

// nodePIDs scans /proc for processes of this node. With serverOnly it
// returns only the node's own VM (argument "-sname NODE" or "-name NODE");
// otherwise also any process with an argument equal to or ending in
// "-NODE" (ejabberdctl's helper VMs are named "xyz-ctl-NODE").
func (s *Ejabberd) nodePIDs(serverOnly bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		if matchNode(bytes.Split(bytes.TrimRight(raw, "\x00"), []byte{0}), s.node, serverOnly) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func matchNode(args [][]byte, node string, serverOnly bool) bool {
	isVM := len(args) > 0 && strings.Contains(filepath.Base(string(args[0])), "beam")
	for i, a := range args {
		arg := string(a)
		if serverOnly {
			if isVM && i > 0 && arg == node {
				if prev := string(args[i-1]); prev == "-sname" || prev == "-name" {
					return true
				}
			}
			continue
		}
		if arg == node || strings.HasSuffix(arg, "-"+node) {
			return true
		}
	}
	return false
}
