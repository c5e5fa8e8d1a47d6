#!/usr/bin/env bash
# Installs the real XMPP servers and the Python client the integration tests
# use (internal/xmppserver, internal/testenv): Prosody 0.12 (+ prosody-modules
# for mod_privilege, lua-unbound), ejabberd 23.01 and python3-slixmpp; also
# the shell linter (Debian package "shellcheck") that .ci/run runs on .ci/;
# PostgreSQL (Debian package "postgresql": initdb and pg_ctl, which
# internal/testenv runs as a private server in a temp dir, on a unix socket
# there, for gateway/pgstore's tests). Debian's postgresql-common creates a
# "main" cluster on install; policy-rc.d keeps it stopped, the tests never
# use it (nor its port 5432, checked below with the XMPP ports).
#
# Idempotent and quick when everything is installed: apt-get update runs only
# when a package is missing. It never starts system daemons: it first makes
# sure /usr/sbin/policy-rc.d says "exit 101" (Debian's switch that stops
# maintainer scripts from starting services). If a server daemon appears on
# a default XMPP/epmd port during this run anyway, that daemon (and only a
# process that was not listening there before this run) is stopped by PID.
# This check needs ss (iproute2); without it the script says so and skips it.
#
# Usage: .ci/install-deps.sh   (as root, or with sudo available)
#
# Environment: IMIP_POLICY_RC_D overrides the policy-rc.d path (default
# /usr/sbin/policy-rc.d); internal/citest uses it to run this script against
# a simulated machine.
#
# Every failure prints an "install-deps:" line before the non-zero exit; the
# ERR trap below covers anything unforeseen, so the script never stops
# silently.
set -Eeuo pipefail

PACKAGES=(prosody prosody-modules lua-unbound python3-slixmpp ejabberd shellcheck postgresql)
# Ports the packaged daemons listen on by default: c2s, s2s, component,
# HTTP/BOSH, ejabberd's extra listeners (1883 MQTT, 5443), epmd, PostgreSQL.
DEFAULT_PORTS=(5222 5223 5269 5347 5280 5281 5443 1883 4369 5432)
POLICY_RC_D=${IMIP_POLICY_RC_D:-/usr/sbin/policy-rc.d}

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}
trap 'log "unexpected failure (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

uid=$(id -u) || die "id -u failed: cannot tell whether this is root"
SUDO=()
if [[ $uid != 0 ]]; then
	command -v sudo >/dev/null 2>&1 || die "must run as root (or with sudo)"
	SUDO=(sudo)
fi

# as_root runs a command as root: directly when this is root (no sudo
# needed, kill is then the shell builtin), else through sudo.
as_root() {
	if ((${#SUDO[@]} == 0)); then
		"$@"
	else
		"${SUDO[@]}" "$@"
	fi
}

ensure_policy_rc_d() {
	local f=$POLICY_RC_D
	if [[ -f $f && -x $f ]] && grep -qx 'exit 101' "$f"; then
		return 0
	fi
	log "writing $f (exit 101): apt will not start services"
	printf '#!/bin/sh\n# Written by imip-transport .ci/install-deps.sh: never start services from apt.\nexit 101\n' |
		as_root tee "$f" >/dev/null ||
		die "cannot write $f; apt could start services, not installing"
	as_root chmod 0755 "$f" || die "cannot chmod $f; apt could start services, not installing"
}

missing_packages() {
	local p status
	for p in "${PACKAGES[@]}"; do
		status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) || status=""
		[[ $status == "install ok installed" ]] || printf '%s\n' "$p"
	done
}

# listeners prints "pid command" for each process listening on
# DEFAULT_PORTS (nothing when there is none) and fails when ss fails. The
# caller checks that ss exists.
listeners() {
	local filter="" p out rest pid cmd
	local -a args
	local -A seen=()
	for p in "${DEFAULT_PORTS[@]}"; do
		filter+="${filter:+ or }sport = :$p"
	done
	if ! out=$(as_root ss -Hltnp "( $filter )" 2>&1); then
		log "ss failed: ${out:-no output}"
		return 1
	fi
	# Plain bash matching: no grep in a pipeline, which would fail under
	# pipefail when nothing listens.
	rest=$out
	while [[ $rest =~ pid=([0-9]+) ]]; do
		pid=${BASH_REMATCH[1]}
		rest=${rest#*"${BASH_REMATCH[0]}"}
		[[ -z ${seen[$pid]:-} ]] || continue
		seen[$pid]=1
		# The process may have exited since ss ran: then its command is "".
		args=()
		{ mapfile -d '' -t args <"/proc/$pid/cmdline"; } 2>/dev/null || args=()
		cmd="${args[*]}"
		printf '%s %s\n' "$pid" "${cmd:0:200}"
	done
}

# stop_new_daemons stops, by PID, server processes that listen on a default
# port now but did not before this run ($1: listeners' output from before).
stop_new_daemons() {
	local before=$'\n'$1$'\n' after pid cmd
	after=$(listeners) || {
		log "cannot list listeners after the install: not stopping any daemon"
		return 0
	}
	while read -r pid cmd || [[ -n ${pid:-} ]]; do
		[[ -n ${pid:-} ]] || continue
		[[ $before != *$'\n'"$pid "* ]] || continue
		case $cmd in
		*prosody* | *beam* | *epmd* | *ejabberd*) ;;
		*) continue ;;
		esac
		log "stopping daemon started during install: pid $pid ($cmd)"
		if ! as_root kill -TERM "$pid" 2>/dev/null; then
			log "pid $pid already gone"
			continue
		fi
		for _ in $(seq 50); do
			as_root kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if as_root kill -0 "$pid" 2>/dev/null; then
			log "pid $pid ignored SIGTERM for 5s; sending SIGKILL"
			as_root kill -KILL "$pid" 2>/dev/null || true
		fi
		log "stopped pid $pid"
	done <<<"$after"
}

main() {
	local -a missing
	local before="" check_daemons=1 rc=0
	ensure_policy_rc_d
	mapfile -t missing < <(missing_packages)
	if ((${#missing[@]} == 0)); then
		log "all installed: ${PACKAGES[*]}"
		return 0
	fi
	log "missing: ${missing[*]}"
	if ! command -v ss >/dev/null 2>&1; then
		log "ss (iproute2) not found: cannot check for daemons started during the install"
		check_daemons=0
	elif ! before=$(listeners); then
		log "cannot list listeners before the install: will not stop any daemon"
		check_daemons=0
	fi
	log "apt-get update"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
	if ((rc != 0)); then
		die "apt-get update failed (exit $rc)"
	fi
	log "apt-get install --no-install-recommends ${PACKAGES[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" || rc=$?
	# Also after a failed install: it may have started a daemon before failing.
	if ((check_daemons)); then
		stop_new_daemons "$before"
	fi
	if ((rc != 0)); then
		die "apt-get install failed (exit $rc)"
	fi
	mapfile -t missing < <(missing_packages)
	if ((${#missing[@]} != 0)); then
		die "still missing after install: ${missing[*]}"
	fi
	log "installed: ${PACKAGES[*]}"
}

main "$@"
