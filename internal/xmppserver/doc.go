// Package xmppserver starts private, throw-away XMPP servers (Prosody 0.12 and
// ejabberd 23.01 from the Debian packages) for tests and for a local
// development stack.
//
// Each instance lives in its own directory, listens only on 127.0.0.1 on free
// ports, requires STARTTLS on client connections with a generated
// self-signed certificate, and accepts one XEP-0114 external component
// (by default "imip.localhost").
// Optionally the component is granted XEP-0356 privileges
// (roster both, message outgoing, presence roster).
//
// Both servers implement [Server], so a test suite can run unchanged against
// either of them.
// Servers are started with [StartProsody] and [StartEjabberd] and must be
// stopped with Stop; every start, stop and readiness wait is bounded.
//
// The package never imports testing; see internal/testenv for the
// testing.TB wrappers and the skip policy.
//
// Only processes started by this package are ever signalled, by PID.
// ejabberd runs without epmd: its Erlang distribution listens on a private
// port on 127.0.0.1 (ERL_DIST_PORT), so no shared epmd daemon is started or
// stopped by this package.
package xmppserver
