package imipserver_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	alice = wire.Number("1001001")
	bob   = wire.Number("1002002")
	carol = wire.Number("1003003")
	dave  = wire.Number("1004004")
)

var testAccounts = []imipserver.Account{
	{Number: alice, Password: "alice-pw", Nick: "alice"},
	{Number: bob, Password: "bob-pw", Nick: "bob"},
	{Number: carol, Password: "carol-pw", Nick: "carol"},
	{Number: dave, Password: "dave-pw", Nick: "dave"},
}

func password(n wire.Number) string {
	for _, a := range testAccounts {
		if a.Number == n {
			return a.Password
		}
	}
	return "none"
}

// testServer is a running server with a cancel func that stops it.
type testServer struct {
	srv   *imipserver.Server
	store imipserver.Store
	addr  string
	stop  func()
}

// startServer runs a server with cfg (a MemStore with testAccounts when
// cfg.Store is nil) until stop or the test's end.
func startServer(t testing.TB, cfg imipserver.Config) *testServer {
	t.Helper()
	if cfg.Store == nil {
		st := imipserver.NewMemStore()
		for _, a := range testAccounts {
			if err := st.PutAccount(context.Background(), a); err != nil {
				t.Fatal(err)
			}
		}
		cfg.Store = st
	}
	srv, err := imipserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s")
		}
	}
	t.Cleanup(stop)
	return &testServer{srv: srv, store: cfg.Store, addr: ln.Addr().String(), stop: stop}
}

// rawClient speaks IMIP block by block, Yahoo style.
type rawClient struct {
	t    testing.TB
	nc   net.Conn
	rd   *wire.Reader
	w    *wire.Writer
	next uint64
	salt string
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, rd: wire.NewReader(nc, wire.Limits{}), w: wire.NewWriter(nc), next: wire.FirstClientBlockID}
}

// send writes a block with the next client ID first and returns that ID.
func (c *rawClient) send(typ, arg, body string, hdrs ...string) uint64 {
	c.t.Helper()
	id := c.next
	c.next++
	b := wire.Block{Type: typ, Arg: arg, Body: []byte(body)}
	b.Add(wire.HdrID, strconv.FormatUint(id, 10))
	for i := 0; i+1 < len(hdrs); i += 2 {
		b.Add(hdrs[i], hdrs[i+1])
	}
	if err := c.w.WriteBlock(&b); err != nil {
		c.t.Fatalf("write %s: %v", typ, err)
	}
	return id
}

func (c *rawClient) writeRaw(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next block, failing the test after 5 s.
func (c *rawClient) read() *wire.Block {
	c.t.Helper()
	b, err := c.tryRead(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return b
}

func (c *rawClient) tryRead(d time.Duration) (*wire.Block, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	b := new(wire.Block)
	if err := c.rd.ReadBlock(b); err != nil {
		return nil, err
	}
	b.Body = append([]byte(nil), b.Body...)
	return b, nil
}

// expect reads the next block and checks its type line.
func (c *rawClient) expect(typeLine string) *wire.Block {
	c.t.Helper()
	b := c.read()
	if got := b.TypeLine(); got != typeLine {
		c.t.Fatalf("got block %q (headers %v, body %q), want %q", got, b.Headers, b.Body, typeLine)
	}
	return b
}

// expectACK reads an ACK with the code and Reference ref.
func (c *rawClient) expectACK(code wire.Code, ref uint64) {
	c.t.Helper()
	b := c.expect("ACK " + strconv.Itoa(int(code)))
	if got, ok := b.Reference(); !ok || got != ref {
		c.t.Fatalf("ACK %d Reference = %q, want %d", code, b.Get(wire.HdrReference), ref)
	}
}

// expectClosed checks that the server closes the connection without
// sending anything more.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	b, err := c.tryRead(5 * time.Second)
	if err == nil {
		c.t.Fatalf("got %q, want the connection closed", b.TypeLine())
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
		c.t.Fatalf("read: %v, want EOF", err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !errors.Is(err, os.ErrDeadlineExceeded)
}

// expectSilence checks that nothing arrives for d.
func (c *rawClient) expectSilence(d time.Duration) {
	c.t.Helper()
	b, err := c.tryRead(d)
	if err == nil {
		c.t.Fatalf("got %q (headers %v), want nothing", b.TypeLine(), b.Headers)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("read: %v, want a timeout", err)
	}
}

// helo sends HELO and reads the server's HELO, keeping the salt.
func (c *rawClient) helo() *wire.Block {
	c.t.Helper()
	c.send(wire.TypeHELO, "", "", wire.HdrProtocol, wire.ProtocolIMIP10)
	b := c.expect(wire.TypeHELO)
	c.salt = string(b.Body)
	return b
}

// logn sends LOGN for n with the digest of pw and returns its ID.
func (c *rawClient) logn(n wire.Number, pw string) uint64 {
	return c.send(wire.TypeLOGN, string(n), wire.AuthDigest(c.salt, pw),
		wire.HdrClient, "raw test", wire.HdrAuthType, wire.AuthTypeMD5)
}

// login does HELO and LOGN and returns the LOGN reply.
func (c *rawClient) login(n wire.Number) *wire.Block {
	c.t.Helper()
	c.helo()
	id := c.logn(n, password(n))
	b := c.expect("LOGN " + string(n))
	if ref, _ := b.Reference(); ref != id {
		c.t.Fatalf("LOGN reply Reference = %d, want %d", ref, id)
	}
	return b
}

// loginRaw dials and logs n in.
func loginRaw(t testing.TB, addr string, n wire.Number) *rawClient {
	t.Helper()
	c := dialRaw(t, addr)
	c.login(n)
	return c
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// watch puts contact on owner's list directly in the store.
func watch(t testing.TB, ts *testServer, owner, contact wire.Number) {
	t.Helper()
	if err := ts.store.AddContact(context.Background(), owner, contact); err != nil {
		t.Fatal(err)
	}
}

// loginMesgAck does HELO and a LOGN announcing mesg-ack (the server's HELO
// must offer it) and returns the LOGN reply.
func (c *rawClient) loginMesgAck(n wire.Number) *wire.Block {
	c.t.Helper()
	if caps := c.helo().Get(wire.HdrCapabilities); !strings.Contains(caps, "mesg-ack") {
		c.t.Fatalf("HELO Capabilities %q without mesg-ack", caps)
	}
	id := c.send(wire.TypeLOGN, string(n), wire.AuthDigest(c.salt, password(n)),
		wire.HdrClient, "raw test", wire.HdrAuthType, wire.AuthTypeMD5, wire.HdrCapabilities, "mesg-ack")
	b := c.expect("LOGN " + string(n))
	if ref, _ := b.Reference(); ref != id {
		c.t.Fatalf("LOGN reply Reference = %d, want %d", ref, id)
	}
	return b
}

// confirm sends the mesg-ack confirm of the pushed MESG with block ID ref.
func (c *rawClient) confirm(ref uint64) {
	c.t.Helper()
	c.send(wire.TypeACK, "600", "", wire.HdrReference, strconv.FormatUint(ref, 10))
}
