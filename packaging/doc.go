// Package packaging holds the release files of imip-transport and imipd,
// and the test that checks them; it has no code of its own.
//
//   - deb-version.sh: the Debian version of a `git describe` string.
//   - systemd/: the hardened units imip-transport.service and imipd.service.
//   - sysusers.d/: the system users _imip-transport and _imipd.
//   - deb/: the nfpm configuration of the Debian package, its maintainer
//     scripts, /etc/default/imipd, and config.sh, which derives the
//     packaged /etc/imip-transport/config.toml from the repository's
//     config.toml.
//
// `make dist` builds the static binaries for linux/amd64 and linux/arm64
// with a SHA256SUMS file, `make deb` the packages (see docs/DEPLOYMENT.md,
// "Install from a package"). TestRelease runs make deb into a temporary
// directory and checks what it made.
package packaging
