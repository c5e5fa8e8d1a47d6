#!/bin/sh
# Writes, to standard output, the configuration the Debian package installs
# as /etc/imip-transport/config.toml: the repository's config.toml (every
# key with its comment) with the names and paths of the packaged service.
# Each replaced line must appear exactly once in the source, so a change
# there that this script no longer matches fails the build instead of
# shipping a development setting.
#
# Usage: packaging/deb/config.sh config.toml > config.deb.toml
set -eu

src=${1:?usage: config.sh CONFIG.TOML}

awk '
BEGIN {
	n = 0
	from[++n] = "component = \"imip.localhost\"";  to[n] = "component = \"imip.example.org\""
	from[++n] = "secret = \"change-me\"";          to[n] = "#secret = \"change-me\""
	from[++n] = "# secret_file = \"/etc/imip-transport/secret\""
	to[n] = "# Under the packaged unit (imip-transport.service), systemd passes the root-only\n# /etc/imip-transport/component-secret here (LoadCredential).\nsecret_file = \"/run/credentials/imip-transport.service/component-secret\""
	from[++n] = "path = \"imip-transport.db\"";    to[n] = "path = \"/var/lib/imip-transport/imip-transport.db\""
	from[++n] = "key_file = \"imip-transport.key\""; to[n] = "key_file = \"/var/lib/imip-transport-key/imip-transport.key\""
	print "# /etc/imip-transport/config.toml, installed by the imip-transport package"
	print "# (root:_imip-transport, 0640). A conffile: upgrades keep your changes"
	print "# (dpkg asks when the packaged version changed too)."
	print "# Before `systemctl enable --now imip-transport`: set [xmpp] component and"
	print "# server and [imip] server below, and write the component secret to"
	print "# /etc/imip-transport/component-secret (root, 0600). See"
	print "# /usr/share/doc/imip-transport/DEPLOYMENT.md."
	print "#"
}
{
	for (i = 1; i <= n; i++) {
		if ($0 == from[i]) {
			seen[i]++
			print to[i]
			next
		}
	}
	print
}
END {
	bad = 0
	for (i = 1; i <= n; i++) {
		if (seen[i] != 1) {
			printf "config.sh: %s: line %s appears %d times, want once\n", FILENAME, from[i], seen[i] + 0 > "/dev/stderr"
			bad = 1
		}
	}
	exit bad
}
' "$src"
