// Package citest tests the shell scripts under .ci/ (which is not a Go
// package directory) by running them with bash against a simulated machine.
//
// A test builds a temporary directory whose bin/ is the whole PATH of the
// script: stub executables for the commands that would touch the real
// system (dpkg-query, apt-get, ss, sudo, id) and symlinks to a few harmless
// real tools (grep, tee, sleep, kill, ...). The stubs keep their state in
// files: apt-get records its arguments and marks the packages it
// "installs", dpkg-query reports a package installed only once it is
// marked, ss prints listeners the test chose. The policy-rc.d path is
// redirected with IMIP_POLICY_RC_D, so nothing outside the temporary
// directory is written. The "daemons" are sleep processes the test starts
// itself, and only those are ever signalled.
//
// The package has no non-test code; `go test ./internal/citest` is fast
// (well under five seconds) and needs only bash and coreutils.
package citest
