package xmppside

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"mellium.im/xmpp/jid"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeHandler records what the component delivers.
type fakeHandler struct {
	presences    chan Presence
	messages     chan Message
	privileges   chan Privileges
	connected    chan context.Context
	disconnected chan error

	mu         sync.Mutex
	users      map[string]string // bare JID -> username
	registerFn func(ctx context.Context, user jid.JID, username, password string) error
	regCalls   []string
}

func newFakeHandler() *fakeHandler {
	return &fakeHandler{
		presences:    make(chan Presence, 64),
		messages:     make(chan Message, 64),
		privileges:   make(chan Privileges, 8),
		connected:    make(chan context.Context, 8),
		disconnected: make(chan error, 8),
		users:        map[string]string{},
	}
}

func (h *fakeHandler) HandlePresence(p Presence)           { h.presences <- p }
func (h *fakeHandler) HandleMessage(m Message)             { h.messages <- m }
func (h *fakeHandler) HandlePrivileges(p Privileges)       { h.privileges <- p }
func (h *fakeHandler) HandleConnected(ctx context.Context) { h.connected <- ctx }
func (h *fakeHandler) HandleDisconnected(err error)        { h.disconnected <- err }
func (h *fakeHandler) Prompt() (desc, prompt string)       { return "Enter the IMIP number", "IMIP number" }

func (h *fakeHandler) Translate(input string) (jid.JID, error) {
	input = strings.TrimSpace(input)
	if input == "" || strings.Trim(input, "0123456789") != "" {
		return jid.JID{}, errors.New("not a number: " + input)
	}
	if input == "0" {
		return jid.JID{}, Error{Condition: "item-not-found", Text: "no such number"}
	}
	return jid.Parse(input + "@imip.localhost")
}

func (h *fakeHandler) Registration(_ context.Context, user jid.JID) (string, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if user.String() == "broken@localhost" {
		return "", false, errors.New("database password=hunter2 unreachable")
	}
	u, ok := h.users[user.String()]
	return u, ok, nil
}

func (h *fakeHandler) Register(ctx context.Context, user jid.JID, username, password string) error {
	h.mu.Lock()
	fn := h.registerFn
	h.regCalls = append(h.regCalls, user.String()+" "+username+" "+password)
	h.mu.Unlock()
	if fn != nil {
		if err := fn(ctx, user, username, password); err != nil {
			return err
		}
	}
	h.mu.Lock()
	h.users[user.String()] = username
	h.mu.Unlock()
	return nil
}

func (h *fakeHandler) Unregister(_ context.Context, user jid.JID) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.users[user.String()]; !ok {
		return Error{Condition: "registration-required", Text: "not registered"}
	}
	delete(h.users, user.String())
	h.regCalls = append(h.regCalls, "remove "+user.String())
	return nil
}

func (h *fakeHandler) calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.regCalls...)
}

func (h *fakeHandler) setRegister(fn func(ctx context.Context, user jid.JID, username, password string) error) {
	h.mu.Lock()
	h.registerFn = fn
	h.mu.Unlock()
}

func (h *fakeHandler) waitConnected(t *testing.T) context.Context {
	t.Helper()
	select {
	case ctx := <-h.connected:
		return ctx
	case <-time.After(waitFor):
		t.Fatal("HandleConnected not called")
		return nil
	}
}

func (h *fakeHandler) waitDisconnected(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.disconnected:
		return err
	case <-time.After(waitFor):
		t.Fatal("HandleDisconnected not called")
		return nil
	}
}

func (h *fakeHandler) nextMessage(t *testing.T) Message {
	t.Helper()
	select {
	case m := <-h.messages:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message delivered")
		return Message{}
	}
}

func (h *fakeHandler) nextPresence(t *testing.T) Presence {
	t.Helper()
	select {
	case p := <-h.presences:
		return p
	case <-time.After(waitFor):
		t.Fatal("no presence delivered")
		return Presence{}
	}
}

// testEnv is a Component running against a fakeServer.
type testEnv struct {
	srv  *fakeServer
	c    *Component
	h    *fakeHandler
	fc   *fakeConn
	ctx  context.Context // the link's context from HandleConnected
	stop func() error    // cancels Run and returns its result
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testConfig(addr string) Config {
	return Config{
		Domain:     jid.MustParse("imip.localhost"),
		Server:     addr,
		Secret:     "s3cret",
		Version:    "1.2.3",
		Logger:     quietLogger(),
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	}
}

// startEnv runs a Component against a new fake server and waits until it is
// connected.
func startEnv(t *testing.T, mod func(*Config)) *testEnv {
	t.Helper()
	return startEnvWith(t, mod, nil)
}

// startEnvWith is startEnv with the fake handler wrapped by wrap, for
// handlers with optional interfaces.
func startEnvWith(t *testing.T, mod func(*Config), wrap func(*fakeHandler) Handler) *testEnv {
	t.Helper()
	srv := newFakeServer(t, "s3cret")
	h := newFakeHandler()
	cfg := testConfig(srv.addr())
	if mod != nil {
		mod(&cfg)
	}
	var handler Handler = h
	if wrap != nil {
		handler = wrap(h)
	}
	c := New(cfg, handler)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(waitFor):
				runErr = errors.New("Run did not return after cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	env := &testEnv{srv: srv, c: c, h: h, stop: stop}
	env.fc = srv.accept(t)
	env.ctx = h.waitConnected(t)
	return env
}
