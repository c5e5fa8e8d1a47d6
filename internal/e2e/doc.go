// Package e2e holds the end-to-end tests of the transport: real Prosody and
// ejabberd servers (Debian packages, private instances on loopback ports),
// the reference IMIP server, the transport as cmd/imip-transport wires it,
// and real XMPP clients (mellium client sessions and python3-slixmpp).
//
// The tests skip when the servers are not installed, unless
// IMIP_REQUIRE_SERVERS=1 (as in CI), where a missing server fails them.
package e2e
