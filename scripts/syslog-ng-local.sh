#!/usr/bin/env bash
# Prints the root of a private syslog-ng (Debian's syslog-ng-core,
# unpacked, never installed), fetching it with apt-get on first use.
#
# rsyslog and syslog-ng-core both provide and conflict with
# system-log-daemon, so Debian will not install both. The tests need both
# receivers, so rsyslog is installed as a package (install-deps.sh) and
# syslog-ng runs from its unpacked .deb: its shared libraries are installed
# normally (install-deps.sh), its own ones come from the unpacked tree
# (LD_LIBRARY_PATH, --module-path). Nothing is started here.
# Usage: scripts/syslog-ng-local.sh [DIR]
#   (default: $XDG_CACHE_HOME/sfrelay or ~/.cache/sfrelay; not under build/,
#   whose *.d names the Makefile reads as dependency files)
set -euo pipefail
root=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/sfrelay}/syslog-ng
if [ -x "$root/usr/sbin/syslog-ng" ]; then
	echo "$root"
	exit 0
fi
rm -rf "$root.tmp"
mkdir -p "$root.tmp"
cd "$root.tmp"
if ! apt-get download syslog-ng-core >/dev/null 2>&1; then
	# Package lists may be missing on a fresh machine.
	apt-get update -qq >/dev/null 2>&1 || true
	apt-get download syslog-ng-core >/dev/null
fi
dpkg-deb -x syslog-ng-core_*.deb root
cd - >/dev/null
rm -rf "$root"
mv "$root.tmp/root" "$root"
rm -rf "$root.tmp"
echo "$root"
