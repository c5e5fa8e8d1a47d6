package cluster_test

// Regression tests (second review): failing tests of internal/cluster.

import (
	"context"
	"testing"
	"time"

	"imip-transport/gateway"
	"imip-transport/gateway/pgstore"
)

// Was a defect: Release forgets the user locally (since, asked) even when its
// DELETE failed (a database hiccup; here a context that ended). The row
// still names this instance, which is alive, so nobody else can claim the
// user; and onNotification now ignores every request for it as stale
// (since is zero), so the Release hook is never called again: the user is
// stuck until this instance happens to load it again or stops.
func TestRegressFailedReleaseStrandsUser(t *testing.T) {
	r := newRig(t, "u@example.org")
	a := r.join(true) // carries out every request it gets
	b := r.join(true)
	if took, err := a.Acquire(context.Background(), "u@example.org"); err != nil || !took {
		t.Fatalf("Acquire = %v, %v", took, err)
	}
	failed, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Release(failed, "u@example.org"); err == nil {
		t.Fatal("Release with an ended context succeeded; the test needs it to fail")
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	if took, err := b.Acquire(ctx, "u@example.org"); err != nil || !took {
		t.Fatalf("another instance's Acquire after a failed Release = %v, %v; want took (a is alive and would release it if asked)", took, err)
	}
}

// Was a defect: an unregistration deletes the user's registration, and with it
// (ON DELETE CASCADE) its cluster_owners row, but the owner's node keeps
// since[jid]: Owns stays true for good. Once the JID registers again and
// another instance takes it, both instances' Owns report true; the
// gateway's holdForRestart trusts Owns, so the old instance, stopping,
// keeps a message for a user the other instance serves, which it reads
// only at the user's next hand-over (the defect TestHandoverHeldForRestart-
// WhileAnotherOwns fixed, back through an unregistration).
func TestRegressOwnsOutlivesUnregistration(t *testing.T) {
	r := newRig(t, "u@example.org")
	a := r.join(true)
	b := r.join(true)
	ctx := context.Background()
	if took, err := a.Acquire(ctx, "u@example.org"); err != nil || !took {
		t.Fatalf("Acquire = %v, %v", took, err)
	}
	st, err := pgstore.Open(ctx, r.dsn, pgstore.Options{KeyFile: r.key})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.DeleteRegistration(ctx, "u@example.org"); err != nil { // unregistered on a
		t.Fatal(err)
	}
	a.Forget("u@example.org") // as the gateway does after the delete
	if err := st.PutRegistration(ctx, gateway.Registration{JID: "u@example.org", Number: "1001002", Password: "pw"}); err != nil {
		t.Fatal(err) // registered again, through b
	}
	if took, err := b.Acquire(ctx, "u@example.org"); err != nil || !took {
		t.Fatalf("b's Acquire = %v, %v", took, err)
	}
	if a.Owns("u@example.org") && b.Owns("u@example.org") {
		t.Fatal("two instances report owning one user: a's Owns outlived the unregistration that deleted its row")
	}
}
