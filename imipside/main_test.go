package imipside

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"imip-transport/imipside/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Bytes from docs/PROTOCOL.md and the login the tests share.
const (
	testNumber   = wire.Number("6340564")
	testPassword = "password"
	testSalt     = "1919833824"
	testDigest   = "c35900c24a82592dd2d0db27c647ff17" // MD5(testSalt + testPassword), from docs/PROTOCOL.md
	testClient   = "Yahoo! IMIP Client"

	goldenHELO = "HELO\r\n32\r\nID: 1001\r\nProtocol: IMIP/1.0\r\n\r\n"
	goldenLOGN = "LOGN 6340564\r\n93\r\nID: 1002\r\nClient: Yahoo! IMIP Client\r\nAuth-Type: imip-md5\r\n\r\n" + testDigest
)

// frame builds a block by hand: the type line, SIZE = len(content), content.
func frame(typeLine, content string) string {
	return typeLine + "\r\n" + strconv.Itoa(len(content)) + "\r\n" + content
}

// serverHELO is an Odigo HELO reply: headers sorted, the salt as body.
// keepAlive "" leaves the Keep-Alive header out.
func serverHELO(keepAlive, salt string) string {
	c := "Auth-Type: imip-md5\r\nCapabilities: server-lists\r\nID: 19193\r\n"
	if keepAlive != "" {
		c += "Keep-Alive: " + keepAlive + "\r\n"
	}
	c += "Protocol: IMIP/1.0\r\nRegistration: http://www.odigo.com/register\r\nService: odigo.com\r\nServiceDisplayName: Odigo\r\n\r\n" + salt
	return frame("HELO", c)
}

// serverLOGN is the LOGN reply, Odigo style (sorted, no empty line).
func serverLOGN(buddy string) string {
	c := ""
	if buddy != "" {
		c = "Buddy: " + buddy + "\r\n"
	}
	return frame("LOGN 6340564", c+"ID: 19194\r\nReference: 1002\r\n")
}

// ack is an Odigo ACK referencing ref.
func ack(code int, ref uint64) string {
	return frame("ACK "+strconv.Itoa(code), "ID: 29999\r\nReference: "+strconv.FormatUint(ref, 10)+"\r\n")
}

// fakeServer plays the server end of a connection, step by step.
type fakeServer struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func newFakeServer(t testing.TB, conn net.Conn) *fakeServer {
	return &fakeServer{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// pipe returns a fake server and a Config.Dial that hands out the client end.
func pipe(t testing.TB) (*fakeServer, func(context.Context, string, string) (net.Conn, error)) {
	c, s := net.Pipe()
	t.Cleanup(func() { s.Close(); c.Close() })
	return newFakeServer(t, s), func(context.Context, string, string) (net.Conn, error) { return c, nil }
}

// readRaw reads one block's exact bytes: type line, size line, SIZE bytes.
func (f *fakeServer) readRaw(timeout time.Duration) (string, error) {
	f.conn.SetReadDeadline(time.Now().Add(timeout))
	typ, err := f.br.ReadString('\n')
	if err != nil {
		return typ, err
	}
	size, err := f.br.ReadString('\n')
	if err != nil {
		return typ + size, err
	}
	n, err := strconv.Atoi(strings.TrimSuffix(size, "\r\n"))
	if err != nil || n > 1<<20 {
		return typ + size, fmt.Errorf("bad size line %q", size)
	}
	content := make([]byte, n)
	if _, err := io.ReadFull(f.br, content); err != nil {
		return typ + size + string(content), err
	}
	return typ + size + string(content), nil
}

func parseBlock(t testing.TB, raw string) *wire.Block {
	t.Helper()
	var b wire.Block
	if err := wire.NewReader(strings.NewReader(raw), wire.Limits{}).ReadBlock(&b); err != nil {
		t.Fatalf("client block %q does not parse: %v", raw, err)
	}
	return &b
}

// next reads the client's next block.
func (f *fakeServer) next() (string, *wire.Block) {
	f.t.Helper()
	raw, err := f.readRaw(5 * time.Second)
	if err != nil {
		f.t.Fatalf("server: reading a block: %v (got %q)", err, raw)
	}
	return raw, parseBlock(f.t, raw)
}

// expect reads the client's next block and compares its exact bytes.
func (f *fakeServer) expect(want string) *wire.Block {
	f.t.Helper()
	raw, b := f.next()
	if raw != want {
		f.t.Fatalf("client wrote\n%q\nwant\n%q", raw, want)
	}
	return b
}

func (f *fakeServer) send(s string) {
	f.t.Helper()
	f.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(f.conn, s); err != nil {
		f.t.Fatalf("server: write: %v", err)
	}
}

// quiet checks that the client writes nothing within d.
func (f *fakeServer) quiet(d time.Duration) {
	f.t.Helper()
	raw, err := f.readRaw(d)
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || raw != "" {
		f.t.Fatalf("server: want nothing within %v, got %q, %v", d, raw, err)
	}
}

// expectEOF checks that the client closed the connection.
func (f *fakeServer) expectEOF() {
	f.t.Helper()
	f.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [64]byte
	for range 100 {
		n, err := f.br.Read(buf[:])
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				f.t.Fatalf("server: want EOF, got %v", err)
			}
			return
		}
		f.t.Logf("server: discarding %q before EOF", buf[:n])
	}
	f.t.Fatal("server: no EOF")
}

// events collects a session's events.
type events struct {
	ch chan Event
}

func newEvents() *events { return &events{ch: make(chan Event, 1024)} }

func (e *events) HandleIMIP(ev Event) {
	select {
	case e.ch <- ev:
	default: // a test that floods this many events fails on the count instead
	}
}

func (e *events) next(t testing.TB) Event {
	t.Helper()
	select {
	case ev := <-e.ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
		return nil
	}
}

// reply returns the next event, which must be a ReplyEvent.
func (e *events) reply(t testing.TB) ReplyEvent {
	t.Helper()
	ev := e.next(t)
	r, ok := ev.(ReplyEvent)
	if !ok {
		t.Fatalf("event %#v, want a ReplyEvent", ev)
	}
	return r
}

// closed returns the next event, which must be a ClosedEvent.
func (e *events) closed(t testing.TB) ClosedEvent {
	t.Helper()
	ev := e.next(t)
	c, ok := ev.(ClosedEvent)
	if !ok {
		t.Fatalf("event %#v, want a ClosedEvent", ev)
	}
	return c
}

func (e *events) none(t testing.TB) {
	t.Helper()
	select {
	case ev := <-e.ch:
		t.Fatalf("unexpected event %#v", ev)
	default:
	}
}

type dialResult struct {
	s   *Session
	err error
}

// dialAsync runs Dial on its own goroutine.
func dialAsync(ctx context.Context, cfg Config) <-chan dialResult {
	res := make(chan dialResult, 1)
	go func() {
		s, err := Dial(ctx, cfg)
		res <- dialResult{s, err}
	}()
	return res
}

func wait[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("nothing within 5 s")
		var zero T
		return zero
	}
}

// async runs f on its own goroutine and returns its error on a channel.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

type testSession struct {
	s  *Session
	f  *fakeServer
	ev *events
}

func baseConfig(dial func(context.Context, string, string) (net.Conn, error), ev *events) Config {
	var h Handler
	if ev != nil {
		h = ev
	}
	return Config{
		Addr:       "imip.example:11319",
		Number:     testNumber,
		Password:   testPassword,
		ClientName: testClient,
		Dial:       dial,
		KeepAlive:  time.Hour, // no PING unless a test asks for one
		Handler:    h,
	}
}

// login logs a session in over a pipe with the standard handshake; the
// next client block has ID 1003.
func login(t testing.TB, mod func(*Config)) *testSession {
	t.Helper()
	f, dial := pipe(t)
	ev := newEvents()
	cfg := baseConfig(dial, ev)
	if mod != nil {
		mod(&cfg)
	}
	res := dialAsync(context.Background(), cfg)
	f.expect(goldenHELO)
	f.send(serverHELO("60", testSalt))
	f.expect(goldenLOGN)
	f.send(serverLOGN(`7744387 "mawis76"`))
	r := wait(t, res)
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	t.Cleanup(func() { r.s.Close() })
	return &testSession{s: r.s, f: f, ev: ev}
}

// syncWriter is a concurrency-safe buffer for Trace and logs.
type syncWriter struct {
	mu sync.Mutex
	sb strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sb.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sb.String()
}
