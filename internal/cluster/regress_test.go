package cluster_test

// Regression tests (found by a review) of internal/cluster.

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Was a defect: onNotification marks any "release" request addressed to this
// instance as being carried out (asked[jid] = true) and calls the Release
// hook, whether or not this instance owns the user. asked is cleared only
// by Release. A request for a user this instance does not own (a stale
// one: the asker read the owner just before that owner released it; or
// a user the gateway has no value for, so its ReleaseUser returns without
// releasing) leaves asked set for good, and every later Acquire of that
// user by this instance waits on it until its context ends: the instance
// can never serve the user again, and ignores every later release request
// for it.
func TestStaleReleaseRequestIgnored(t *testing.T) {
	r := newRig(t, "u@example.org")
	a := r.join(false) // records release requests; owns nothing to release
	conn, err := pgxConnect(r.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// Another instance asks a for u (it read a as the owner a moment ago).
	if _, err := conn.Exec(context.Background(), `SELECT pg_notify('imip_cluster', $1)`,
		fmt.Sprintf("release %d %d u@example.org", a.ID(), a.ID()+100)); err != nil {
		t.Fatal(err)
	}
	// Nobody owns u: a takes it at once, whenever a reads the request.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	took, err := a.Acquire(ctx, "u@example.org")
	if err != nil || !took {
		t.Fatalf("Acquire of a free user after a release request for it that this instance could not carry out = %v, %v; want took", took, err)
	}
}
