package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(mainArgs(os.Args[1:], os.Stdout, os.Stderr))
}

// mainArgs runs the command and returns its exit status.
func mainArgs(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "imip-stack:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.LogLevel}))
	// `make stack | tee log` and Ctrl-C: tee dies first, and the next log
	// line would kill this process by SIGPIPE before it stopped Prosody.
	// Ignored, a write to the closed pipe fails instead, and the stack
	// still stops its children in order.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	// After the first signal a second one kills the command at once.
	context.AfterFunc(ctx, stop)
	defer stop()
	if err := run(ctx, o, stdout, log); err != nil {
		fmt.Fprintln(stderr, "imip-stack:", err)
		return 1
	}
	return 0
}
