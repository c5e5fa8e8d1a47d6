#!/usr/bin/env bash
# Installs the pinned staticcheck from the Go module proxy (go install; a
# no-op in under a second once it is built) and runs it on the module:
# ./... unless packages are given. Any finding makes it exit non-zero.
#
# Debian's go-staticcheck (2023.1) predates Go 1.26 and cannot load this
# module, so the proxy's build is used. To move to a newer version, change
# STATICCHECK_VERSION here; .ci/run and `make lint` both use this script.
#
# Usage: .ci/staticcheck.sh [packages...]
set -euo pipefail
cd "$(dirname "$0")/.."

# honnef.co/go/tools v0.8.2 is staticcheck 2026.2.2.
STATICCHECK_VERSION=v0.8.2

gobin=$(go env GOBIN)
if [[ -z $gobin ]]; then
	gobin="$(go env GOPATH)/bin"
fi
if ! go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"; then
	printf 'staticcheck: go install honnef.co/go/tools/cmd/staticcheck@%s failed\n' "$STATICCHECK_VERSION" >&2
	exit 1
fi
if (($# == 0)); then
	set -- ./...
fi
"$gobin/staticcheck" -version
"$gobin/staticcheck" "$@"
