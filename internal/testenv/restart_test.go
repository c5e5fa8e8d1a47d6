package testenv

import (
	"testing"
	"time"

	"imip-transport/internal/xmppserver"
)

func TestRestart(t *testing.T) {
	cases := []struct {
		name string
		get  func(t *testing.T) xmppserver.Server
	}{
		// A Prosody of its own, to also time a cold start and stop.
		{"prosody", func(t *testing.T) xmppserver.Server {
			began := time.Now()
			srv := Prosody(t, xmppserver.ProsodyOptions{Users: map[string]string{"erin": "pw"}})
			t.Logf("prosody cold start: %v", time.Since(began))
			return srv
		}},
		// The shared node: Restart leaves it as it was (same ports, data).
		{"ejabberd", func(t *testing.T) xmppserver.Server {
			began := time.Now()
			srv := sharedEjabberd.Get(t)
			t.Logf("ejabberd first Get (a cold start unless another test ran first): %v", time.Since(began))
			if err := srv.AddUser(testCtx(t), "erin", "pw"); err != nil {
				t.Fatal(err)
			}
			return srv
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.get(t)
			ctx := testCtx(t)
			c2s, comp := srv.C2SAddr(), srv.ComponentAddr()
			old := DialComponent(ctx, t, srv)
			oldDone := Serve(t, old, nil)

			began := time.Now()
			if err := srv.Restart(ctx); err != nil {
				t.Fatalf("case %d: Restart: %v", i, err)
			}
			t.Logf("case %d: %s restart (stop+start): %v", i, srv.Kind(), time.Since(began))

			if srv.C2SAddr() != c2s || srv.ComponentAddr() != comp {
				t.Errorf("case %d: addresses changed: %s %s -> %s %s", i, c2s, comp, srv.C2SAddr(), srv.ComponentAddr())
			}
			select {
			case err := <-oldDone:
				if err == nil {
					t.Errorf("case %d: old component session ended without error", i)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("case %d: old component session still served after restart", i)
			}
			// The component can reconnect (the name is free again) and the
			// account survived.
			DialComponent(ctx, t, srv)
			DialClient(ctx, t, srv, "erin", "pw", "")
		})
	}
}

func TestStopIsIdempotent(t *testing.T) {
	srv := Prosody(t, xmppserver.ProsodyOptions{})
	ctx := testCtx(t)
	began := time.Now()
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("prosody stop: %v", time.Since(began))
	if pid := srv.PID(); pid != 0 {
		t.Errorf("PID after Stop = %d, want 0", pid)
	}
	if err := srv.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := TryDialClient(ctx, srv, "nobody", "pw", ""); err == nil {
		t.Errorf("c2s still accepts logins after Stop")
	}
}
