package imipside

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"imip-transport/imipside/wire"
)

// benchLogin logs a session in over loopback TCP against a server that, once
// the login is done, hands its end of the connection to serve.
func benchLogin(b *testing.B, h Handler, serve func(net.Conn)) *Session {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		f := newFakeServer(b, c)
		for _, reply := range []string{serverHELO("60", testSalt), serverLOGN("")} {
			if _, err := f.readRaw(5 * time.Second); err != nil {
				return
			}
			c.Write([]byte(reply))
		}
		c.SetReadDeadline(time.Time{})
		serve(&bufConn{Conn: c, r: f.br})
	}()
	s, err := Dial(context.Background(), Config{Addr: ln.Addr().String(), Number: testNumber, Password: testPassword, KeepAlive: time.Hour, Handler: h})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(); <-srvDone })
	return s
}

// bufConn reads through the buffered reader that the login used.
type bufConn struct {
	net.Conn
	r io.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// BenchmarkSendMessage measures SendMessage and its outcome: the server
// reads every block and, each time it has read all that arrived, ACKs the
// last one (which settles the earlier ones, implicitly). The sender keeps at
// most 512 requests without an outcome, the Handler counting them down.
func BenchmarkSendMessage(b *testing.B) {
	const window = 512
	sem := make(chan struct{}, window)
	h := HandlerFunc(func(ev Event) {
		if _, ok := ev.(ReplyEvent); ok {
			<-sem
		}
	})
	s := benchLogin(b, h, func(c net.Conn) {
		r := wire.NewReader(c, wire.Limits{})
		var blk wire.Block
		var out []byte
		for r.ReadBlock(&blk) == nil {
			if r.Buffered() > 0 {
				continue
			}
			id, _ := blk.ID()
			out = append(out[:0], "ACK 600\r\n"...)
			content := "ID: 1\r\nReference: " + strconv.FormatUint(id, 10) + "\r\n"
			out = strconv.AppendInt(out, int64(len(content)), 10)
			out = append(out, "\r\n"...)
			out = append(out, content...)
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	})
	text := "Hi there! Are you coming to the meeting at noon tomorrow?? :-)"
	b.ReportAllocs()
	for b.Loop() {
		sem <- struct{}{}
		if _, err := s.SendMessage("7744387", text); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadMESG measures the read path: the server pushes MESG blocks
// as fast as it can, the Handler counts them.
func BenchmarkReadMESG(b *testing.B) {
	block := frame("MESG", "Content-Type: text/plain;charset=utf-8\r\nFrom: 7744387 \"mawis76\"\r\nID: 19220\r\n"+
		"Timo: 2001-03-14T09:26:53Z\r\nTo: 6340564\r\n\r\nHi there! Are you coming to the meeting at noon tomorrow?? :-)")
	chunk := []byte(strings.Repeat(block, 64))
	var n atomic.Int64
	target := make(chan struct{})
	var want atomic.Int64
	want.Store(1 << 62)
	h := HandlerFunc(func(ev Event) {
		if _, ok := ev.(MessageEvent); ok && n.Add(1) == want.Load() {
			close(target)
		}
	})
	start := make(chan struct{})
	s := benchLogin(b, h, func(c net.Conn) {
		<-start
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	_ = s
	b.ReportAllocs()
	b.ResetTimer()
	want.Store(int64(b.N))
	close(start)
	<-target
	b.StopTimer()
	b.SetBytes(int64(len(block)))
}
