#!/usr/bin/env bash
# Installs the Debian packages sfrelay needs to build and test.
#   scripts/install-deps.sh          install what is missing
#   scripts/install-deps.sh --check  exit 0 if nothing is missing, 1 if not
# Runs apt-get as root, or through sudo otherwise.
set -euo pipefail

PACKAGES=(
	gcc make pkg-config ca-certificates curl
	libcurl4-openssl-dev libjson-c-dev libevent-dev libssl-dev
	libcmocka-dev valgrind clang libclang-rt-dev
	libevent-openssl-2.1-7 openssl rsyslog rsyslog-openssl
	# libpq for the Postgres checkpoint store; the server for its tests
	# (started by tests/pgtest.c in a temp dir, never as a service).
	libpq-dev postgresql
	# syslog-ng-core conflicts with rsyslog (both are the system logger):
	# the tests run it unpacked (scripts/syslog-ng-local.sh); these are
	# its libraries.
	libivykis0 libnet1 libglib2.0-0 libwrap0 libpcre3 libjson-c5 libcap2
)

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ "${1:-}" = "--check" ]; then
	[ ${#missing[@]} -eq 0 ] && exit 0
	echo "missing packages: ${missing[*]}"
	exit 1
fi

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: apt-get not found; install these packages by hand: ${missing[*]}" >&2
	exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		echo "install-deps: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
		exit 1
	fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get update -qq; then
	echo "install-deps: apt-get update failed" >&2
	exit 1
fi
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
	echo "install-deps: apt-get install failed for: ${missing[*]}" >&2
	exit 1
fi
echo "install-deps: done"
