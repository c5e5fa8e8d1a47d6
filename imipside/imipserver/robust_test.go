package imipserver_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

func TestMalformedInputGets813AndClose(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	a := loginRaw(t, ts.addr, alice)
	b := loginRaw(t, ts.addr, bob)
	for i, tc := range []struct{ name, raw string }{
		{"size not a number", "STAT ONLINE\r\nxx\r\n"},
		{"size above the limit", "MESG\r\n99999999\r\n"},
		{"size line of 11 digits", "HELO\r\n99999999999\r\n"},
		{"type line too long", strings.Repeat("A", 300) + "\r\n12\r\n"},
		{"no line end at all", strings.Repeat("A", 4096)},
		{"header without colon", sized("PING", "ID 1001\r\n\r\n")},
		{"too many headers", sized("PING", strings.Repeat("X-A: 1\r\n", 65)+"\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for j, loggedIn := range []bool{false, true} {
				var c *rawClient
				if loggedIn {
					c = loginRaw(t, ts.addr, carol)
				} else {
					c = dialRaw(t, ts.addr)
				}
				c.writeRaw(tc.raw)
				blk := c.expect("ACK 813")
				if _, ok := blk.Lookup(wire.HdrReference); ok {
					t.Errorf("%d/%d: ACK 813 has a Reference", i, j)
				}
				c.expectClosed()
			}
			// Others are unaffected.
			a.send(wire.TypeMESG, "", "still here", wire.HdrTo, string(bob), wire.HdrACKType, wire.ACKTypeErrorsOnly)
			if m := b.expect(wire.TypeMESG); string(m.Body) != "still here" {
				t.Errorf("%d: body %q", i, m.Body)
			}
		})
	}
}

func TestHugeSizeAllocatesNothing(t *testing.T) {
	ts := startServer(t, imipserver.Config{Limits: wire.Limits{MaxSize: 1024}})
	c := loginRaw(t, ts.addr, alice)
	// Within the limit: fine.
	id := c.send(wire.TypeSTAT, "AWAY", strings.Repeat("x", 900))
	c.expectACK(wire.CodeOK, id)
	// Above it: 813 and close, before any body byte is sent.
	c.writeRaw("STAT AWAY\r\n1025\r\n")
	c.expect("ACK 813")
	c.expectClosed()
}

func TestKeepAliveTimeout(t *testing.T) {
	// 2 × 300 ms of silence closes a connection; the pinger's 50 ms keep
	// a wide margin even on a loaded machine.
	ts := startServer(t, imipserver.Config{KeepAlive: 300 * time.Millisecond})
	silent := dialRaw(t, ts.addr)
	if ka := silent.helo().Get(wire.HdrKeepAlive); ka != "1" {
		t.Errorf("Keep-Alive = %q, want 1 (rounded up to whole seconds)", ka)
	}
	pinger := loginRaw(t, ts.addr, alice)
	start := time.Now()
	// The pinger stays: it sends every 50 ms, well under 2 × 300 ms.
	for time.Since(start) < 1500*time.Millisecond {
		id := pinger.send(wire.TypePING, "", "")
		pinger.expectACK(wire.CodeOK, id)
		time.Sleep(50 * time.Millisecond)
	}
	silent.expectClosed()
	if !ts.srv.Online(alice) {
		t.Fatal("the pinging client was closed")
	}
	// Then the pinger falls silent too.
	pinger.expectClosed()
	waitFor(t, "alice offline", func() bool { return !ts.srv.Online(alice) })
}

// A client that never reads must not delay delivery between others. Live
// messages to it stop at half its queue and are stored instead (up to the
// caps; beyond them the sender gets ACK 814), so its queue never
// overflows; it is disconnected once a write to it stalls for
// WriteTimeout, and what was stored for it stays stored.
func TestStalledClientDoesNotDelayOthers(t *testing.T) {
	ts := startServer(t, imipserver.Config{OutQueueBytes: 64 << 10, WriteTimeout: time.Second,
		Abuse: imipserver.AbuseLimits{SendBurst: 5000, SendRate: 5000}})
	stalled := loginRaw(t, ts.addr, carol)
	_ = stalled // never read from again
	a := loginRaw(t, ts.addr, alice)
	b := loginRaw(t, ts.addr, bob)
	d := loginRaw(t, ts.addr, dave)

	big := strings.Repeat("z", 8000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Far more than the socket buffers and the queue hold.
		for i := 0; i < 2000; i++ {
			b := wire.Block{Type: wire.TypeMESG, Body: []byte(big)}
			b.Add(wire.HdrID, "1")
			b.Add(wire.HdrTo, string(carol))
			b.Add(wire.HdrACKType, wire.ACKTypeErrorsOnly)
			buf, _ := wire.AppendBlock(nil, &b)
			if _, err := a.nc.Write(buf); err != nil {
				return
			}
		}
	}()
	// Meanwhile bob -> dave keeps flowing.
	for i := 0; i < 20; i++ {
		start := time.Now()
		b.send(wire.TypeMESG, "", "ping "+string(rune('a'+i)), wire.HdrTo, string(dave), wire.HdrACKType, wire.ACKTypeErrorsOnly)
		m := d.expect(wire.TypeMESG)
		if took := time.Since(start); took > time.Second {
			t.Fatalf("%d: delivery took %v while a client is stalled", i, took)
		}
		if want := "ping " + string(rune('a'+i)); string(m.Body) != want {
			t.Fatalf("%d: body %q, want %q", i, m.Body, want)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the server stopped reading alice while carol stalls")
	}
	waitFor(t, "the stalled client to be disconnected", func() bool { return !ts.srv.Online(carol) })
	if n := len(held(t, ts.store, carol)); n != imipserver.DefaultAbuseLimits.MaxHeldPerSender {
		t.Errorf("%d messages held for the stalled client, want the cap %d", n, imipserver.DefaultAbuseLimits.MaxHeldPerSender)
	}
	// alice's own connection is fine: past the ACK 814 of the messages
	// beyond the cap, her PING is answered.
	id := a.send(wire.TypePING, "", "")
	refused := 0
	for {
		blk := a.read()
		ref, _ := blk.Reference()
		if ref == id {
			if blk.Type != wire.TypeACK || blk.Arg != "600" {
				t.Fatalf("answer to the PING: %s %s", blk.Type, blk.Arg)
			}
			break
		}
		if blk.Type != wire.TypeACK || blk.Arg != "814" {
			t.Fatalf("block %s %s before the PING's answer, want only ACK 814", blk.Type, blk.Arg)
		}
		refused++
	}
	if refused == 0 {
		t.Error("no message was refused beyond the cap")
	}
}

// sized returns a block with a correct SIZE line for content.
func sized(typeLine, content string) string {
	return typeLine + "\r\n" + strconv.Itoa(len(content)) + "\r\n" + content
}
