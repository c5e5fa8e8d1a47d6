#!/bin/sh
# Prints the Debian package version for a `git describe --tags --always
# --dirty` string (the first argument): Debian versions must start with a
# digit and sort in release order, which a bare commit hash does not.
#
#   v1.2.0                   -> 1.2.0
#   v1.2.0-5-gabc1234        -> 1.2.0+git5.gabc1234
#   v1.2.0-5-gabc1234-dirty  -> 1.2.0+git5.gabc1234.dirty
#   v1.3.0-rc1               -> 1.3.0~rc1 (sorts before 1.3.0)
#   abc1234 (no tag yet)     -> 0.0~gitN.abc1234, N = commits up to HEAD,
#                               so a later build sorts after an earlier one
#                               (and before any numbered release)
#
# Usage: packaging/deb-version.sh "$(git describe --tags --always --dirty)"
set -eu

desc=${1:?usage: deb-version.sh GIT-DESCRIBE-OUTPUT}
dirty=
case $desc in *-dirty) dirty=.dirty desc=${desc%-dirty} ;; esac
if printf '%s\n' "$desc" | grep -Eqx '[0-9a-f]{4,40}'; then
	# No tag yet: the abbreviated commit hash.
	n=$(git rev-list --count HEAD 2>/dev/null || echo 0)
	printf '0.0~git%s.%s%s\n' "$n" "$desc" "$dirty"
elif printf '%s\n' "$desc" | grep -Eq '^v?[0-9]'; then
	desc=${desc#v}
	# TAG[-N-gHASH]: the suffix counts the commits since TAG.
	since=$(printf '%s\n' "$desc" | sed -n 's/^.*-\([0-9][0-9]*\)-\(g[0-9a-f][0-9a-f]*\)$/+git\1.\2/p')
	tag=$(printf '%s\n' "$desc" | sed 's/-[0-9][0-9]*-g[0-9a-f][0-9a-f]*$//')
	# A hyphen in a tag (v1.0-rc1) marks a pre-release: "~" sorts it first;
	# other characters Debian does not allow become dots.
	printf '%s%s%s\n' "$(printf '%s\n' "$tag" | tr '-' '~' | tr -c 'A-Za-z0-9.+~\n' '.')" "$since" "$dirty"
else
	# A tag that is not a version number: after every numbered release.
	n=$(git rev-list --count HEAD 2>/dev/null || echo 0)
	printf '0.0~git%s.%s%s\n' "$n" "$(printf '%s\n' "$desc" | tr -c 'A-Za-z0-9.+~\n' '.')" "$dirty"
fi
