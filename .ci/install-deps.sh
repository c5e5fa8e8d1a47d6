#!/usr/bin/env bash
# Installs the real XMPP servers and the Python client the integration tests
# use (internal/xmppserver, internal/testenv): Prosody 0.12 (+ prosody-modules
# for mod_privilege, lua-unbound), ejabberd 23.01 and python3-slixmpp.
#
# Idempotent and quick when everything is installed: apt-get update runs only
# when a package is missing. It never starts system daemons: it first makes
# sure /usr/sbin/policy-rc.d says "exit 101" (Debian's switch that stops
# maintainer scripts from starting services). If a server daemon appears on
# a default XMPP/epmd port during this run anyway, that daemon (and only a
# process that was not listening there before this run) is stopped by PID.
#
# Usage: .ci/install-deps.sh   (as root, or with sudo available)
set -euo pipefail

PACKAGES=(prosody prosody-modules lua-unbound python3-slixmpp ejabberd)
# Ports the packaged daemons listen on by default: c2s, s2s, component,
# HTTP/BOSH, ejabberd's extra listeners (1883 MQTT, 5443), epmd.
DEFAULT_PORTS=(5222 5223 5269 5347 5280 5281 5443 1883 4369)

log() { printf 'install-deps: %s\n' "$*" >&2; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		log "must run as root (or with sudo)"
		exit 1
	fi
fi

ensure_policy_rc_d() {
	local f=/usr/sbin/policy-rc.d
	if [[ -f $f ]] && grep -qx 'exit 101' "$f" && [[ -x $f ]]; then
		return
	fi
	log "writing $f (exit 101): apt will not start services"
	printf '#!/bin/sh\n# Written by imip-transport .ci/install-deps.sh: never start services from apt.\nexit 101\n' |
		"${SUDO[@]}" tee "$f" >/dev/null
	"${SUDO[@]}" chmod 0755 "$f"
}

missing_packages() {
	local p status
	for p in "${PACKAGES[@]}"; do
		status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
		[[ $status == "install ok installed" ]] || printf '%s\n' "$p"
	done
}

# listeners prints "pid command" for processes listening on DEFAULT_PORTS.
listeners() {
	command -v ss >/dev/null 2>&1 || return 0
	local filter="" p
	for p in "${DEFAULT_PORTS[@]}"; do
		filter+="${filter:+ or }sport = :$p"
	done
	"${SUDO[@]}" ss -Hltnp "( $filter )" 2>/dev/null |
		grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u |
		while read -r pid; do
			printf '%s %s\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-200)"
		done
}

# stop_new_daemons stops, by PID, server processes that listen on a default
# port now but did not before this run.
stop_new_daemons() {
	local before=$1 pid cmd
	while read -r pid cmd; do
		[[ -n $pid ]] || continue
		grep -q "^$pid " <<<"$before" && continue
		case $cmd in
		*prosody* | *beam* | *epmd* | *ejabberd*) ;;
		*) continue ;;
		esac
		log "stopping daemon started during install: pid $pid ($cmd)"
		"${SUDO[@]}" kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 50); do
			"${SUDO[@]}" kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if "${SUDO[@]}" kill -0 "$pid" 2>/dev/null; then
			log "pid $pid ignored SIGTERM for 5s; sending SIGKILL"
			"${SUDO[@]}" kill -KILL "$pid" 2>/dev/null || true
		fi
	done < <(listeners)
}

main() {
	ensure_policy_rc_d
	mapfile -t missing < <(missing_packages)
	if ((${#missing[@]} == 0)); then
		log "all installed: ${PACKAGES[*]}"
		return
	fi
	log "missing: ${missing[*]}"
	local before
	before=$(listeners)
	export DEBIAN_FRONTEND=noninteractive
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
	stop_new_daemons "$before"
	mapfile -t missing < <(missing_packages)
	if ((${#missing[@]} != 0)); then
		log "still missing after install: ${missing[*]}"
		exit 1
	fi
	log "installed: ${PACKAGES[*]}"
}

main "$@"
