// Command imip-stack runs the whole IMIP gateway demo on one machine with one
// command: a private Prosody, the reference IMIP server (imipd) and the
// transport, all on 127.0.0.1.
//
// Usage (from the repository root):
//
//	go run ./cmd/imip-stack          # or: make stack
//	go run ./cmd/imip-stack -h       # flags: ports, state directory, accounts file
//
// What it starts:
//
//   - Prosody (Debian packages prosody, prosody-modules, lua-unbound; run
//     .ci/install-deps.sh once) with its configuration, data, certificate
//     and log in .stack/prosody, listening for clients on 127.0.0.1:5222
//     (STARTTLS, self-signed certificate) and for the component on
//     127.0.0.1:5347. The users' domain is "localhost"; the gateway is the
//     component "imip.localhost", granted XEP-0356 privileges. Two demo
//     Jabber accounts exist: alice@localhost and bob@localhost.
//   - imipd, in process, on 127.0.0.1:11319, with its SQLite database in
//     .stack/imipd (passwords sealed under .stack/imipd.key) and the demo
//     IMIP accounts of cmd/imipd/accounts.example.toml.
//   - The transport, in process, with its SQLite store in
//     .stack/transport.db, its IMIP passwords sealed under the key file
//     .stack/transport.key.
//
// The component secret is generated once and kept in
// .stack/component.secret (mode 0600). Every port is checked before anything
// starts; a port in use is reported with the flag that changes it.
// Once everything runs, the command prints how to connect a Jabber client,
// register with the gateway and talk to the demo IMIP numbers.
//
// SIGINT (Ctrl-C) or SIGTERM stops the transport, imipd and Prosody (by its
// PID) and exits. The state in .stack is kept: the next start reuses the
// secret, the accounts, the rosters and the registrations. Delete .stack to
// start afresh.
package main
