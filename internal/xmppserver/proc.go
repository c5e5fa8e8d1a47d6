package xmppserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// proc is one started child process whose exit is observed by a single
// goroutine (the one inside exec.Cmd.Wait); done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed
}

// startProc starts name with args, its stdout and stderr appended to outPath.
func startProc(name string, args, env []string, dir, outPath string) (*proc, error) {
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open output file: %w", err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = out
	cmd.Stderr = out
	// Own process group: a Ctrl-C on the test binary's terminal is not
	// delivered to the server behind the harness's back. Pdeathsig: if the
	// process that started it dies (even by SIGKILL), the server gets
	// SIGTERM and does not outlive it with its ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	// The child holds its own copy of the descriptor.
	_ = out.Close()
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitErr describes how the process ended; call only after done closed.
func (p *proc) exitErr() error {
	if p.err == nil {
		return errors.New("exit status 0")
	}
	return p.err
}

// signal sends sig to the process unless it has already exited.
func (p *proc) signal(sig os.Signal) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig)
	}
}

// wait waits for the process to exit, at most until ctx ends or d passes.
func (p *proc) wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("still running after %v", d)
	}
}

// terminate sends SIGTERM and waits up to grace (bounded by ctx); then it
// sends SIGKILL and waits up to two more seconds.
// It returns an error only if the process survived SIGKILL or was killed.
func (p *proc) terminate(ctx context.Context, grace time.Duration) error {
	p.signal(syscall.SIGTERM)
	err := p.wait(ctx, grace)
	if err == nil {
		return nil
	}
	p.signal(syscall.SIGKILL)
	if werr := p.wait(context.Background(), 2*time.Second); werr != nil {
		return fmt.Errorf("pid %d survived SIGKILL: %w", p.pid(), werr)
	}
	return fmt.Errorf("pid %d killed after graceful stop failed: %w", p.pid(), err)
}
