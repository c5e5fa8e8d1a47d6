// Package testenv wraps internal/xmppserver for tests: it starts private
// Prosody and ejabberd instances bound to a testing.TB, applies the skip
// policy, and dials mellium client and component sessions against them.
//
// Skip policy: when a server's binaries are missing the test is skipped
// with a message naming .ci/install-deps.sh, unless the environment
// variable IMIP_REQUIRE_SERVERS=1 is set (CI sets it), in which case the
// test fails. A server that is installed but fails to start always fails
// the test, with the tail of its log.
//
// Per-test servers ([Prosody], [Ejabberd]) are stopped by t.Cleanup.
// Per-package servers ([SharedProsody], [SharedEjabberd]) start on first
// use and are stopped by [Main] (or [RunMain]) from TestMain:
//
//	var ejd = testenv.SharedEjabberd(xmppserver.EjabberdOptions{Privilege: true})
//
//	func TestMain(m *testing.M) { testenv.Main(m, ejd) }
//
//	func TestSomething(t *testing.T) {
//		srv := ejd.Get(t)
//		...
//	}
package testenv
