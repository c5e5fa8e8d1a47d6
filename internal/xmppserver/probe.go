package xmppserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// probeStream opens an XMPP stream to addr in namespace ns addressed to
// host and reads the answer (at most 8 KiB, at most half a second).
// It succeeds once the answer contains want and no stream error: a server
// that answers a stream header has finished starting and knows host.
func probeStream(ctx context.Context, addr, ns, host, want string) error {
	d := net.Dialer{Timeout: 250 * time.Millisecond}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(500 * time.Millisecond)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	header := fmt.Sprintf("<?xml version='1.0'?><stream:stream to='%s' version='1.0' "+
		"xmlns='%s' xmlns:stream='http://etherx.jabber.org/streams'>", host, ns)
	if _, err := conn.Write([]byte(header)); err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	buf := make([]byte, 0, 8192)
	chunk := make([]byte, 2048)
	for len(buf) < cap(buf) {
		n, err := conn.Read(chunk)
		buf = append(buf, chunk[:min(n, cap(buf)-len(buf))]...)
		if bytes.Contains(buf, []byte("stream:error")) || bytes.Contains(buf, []byte("<error")) {
			return fmt.Errorf("probe %s: stream error: %q", addr, buf)
		}
		if bytes.Contains(buf, []byte(want)) {
			_, _ = conn.Write([]byte("</stream:stream>"))
			return nil
		}
		if err != nil {
			return fmt.Errorf("probe %s: %w (got %q)", addr, err, buf)
		}
	}
	return errors.New("probe " + addr + ": answer too long")
}

// probeC2S succeeds when addr offers STARTTLS for domain.
func probeC2S(ctx context.Context, addr, domain string) error {
	return probeStream(ctx, addr, "jabber:client", domain, "starttls")
}

// probeComponent succeeds when addr answers a XEP-0114 stream header for
// component with a stream ID (the handshake itself is not attempted).
func probeComponent(ctx context.Context, addr, component string) error {
	return probeStream(ctx, addr, "jabber:component:accept", component, "id=")
}
