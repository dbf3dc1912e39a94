#!/usr/bin/env bash
# The build steps of the container image (Dockerfile, deployed to Heroku
# through heroku.yml). Kept in a script so that they can be run, and
# tested, without Docker: on any Debian bookworm machine or chroot, as root.
#
#   scripts/heroku-build.sh build-deps     install the compiler and -dev packages
#   scripts/heroku-build.sh build DESTDIR  make, then make install into DESTDIR
#                                          (PREFIX /usr/local), and record there
#                                          which packages the binary needs
#   scripts/heroku-build.sh runtime-deps   on the slim image, after DESTDIR was
#                                          copied to /: install those packages,
#                                          then check that sfrelay starts
#
# The build is the project's own Makefile: the same `make` a developer runs.
set -euo pipefail

PREFIX=/usr/local
# Where `build` records the run-time packages, under PREFIX.
PKG_LIST=share/sfrelay/runtime-packages

# What `make install` needs on a bare bookworm: the compiler (libc6-dev is
# only a recommendation of gcc, and recommendations are not installed),
# pkg-config, the headers of every library in the Makefile's PKGS, and
# binutils' objdump for the run-time package list.
BUILD_PACKAGES=(
	gcc libc6-dev make pkg-config binutils
	libcurl4-openssl-dev libjson-c-dev libevent-dev libssl-dev libpq-dev
)

die() {
	echo "heroku-build: $*" >&2
	exit 1
}

apt_install() {
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends "$@" ||
		die "apt-get install failed for: $*"
	# Package lists are a build-time cache; an image needs none of them.
	rm -rf /var/lib/apt/lists/*
}

# The Debian package that ships one library file. ldd may print either
# spelling of a path on a merged-/usr system (/lib/... or /usr/lib/...),
# while dpkg knows the one the package was built with.
package_of() {
	local path=$1 alt p out
	case "$path" in
	/usr/*) alt=${path#/usr} ;;
	*) alt=/usr$path ;;
	esac
	for p in "$path" "$alt" "$(readlink -f "$path")"; do
		if out=$(dpkg-query -S "$p" 2>/dev/null); then
			# "libcurl4:amd64: /usr/lib/..." -> libcurl4
			echo "${out%%:*}"
			return 0
		fi
	done
	return 1
}

# Packages of the libraries the binary links to directly (its DT_NEEDED
# entries); apt brings their own dependencies.
runtime_packages() {
	local bin=$1 needed lib path pkg pkgs=()
	needed=$(objdump -p "$bin" | awk '$1 == "NEEDED" { print $2 }')
	[ -n "$needed" ] || die "$bin: no shared libraries listed"
	for lib in $needed; do
		path=$(ldd "$bin" | awk -v l="$lib" '$1 == l && $2 == "=>" { print $3 }')
		if [ -z "$path" ] || [ "$path" = "not" ]; then
			die "$bin: $lib not found"
		fi
		pkg=$(package_of "$path") || die "$lib: no package ships $path"
		pkgs+=("$pkg")
	done
	printf '%s\n' "${pkgs[@]}" | sort -u
}

cmd_build_deps() {
	apt_install "${BUILD_PACKAGES[@]}"
}

cmd_build() {
	local dest=${1:-}
	[ -n "$dest" ] || die "usage: $0 build DESTDIR"
	[ -f Makefile ] || die "run from the top of the source tree"
	mkdir -p "$dest"
	dest=$(cd "$dest" && pwd)
	make -j"$(nproc)" install PREFIX="$PREFIX" DESTDIR="$dest"
	local bin=$dest$PREFIX/bin/sfrelay
	[ -x "$bin" ] || die "make install did not install $bin"
	mkdir -p "$(dirname "$dest$PREFIX/$PKG_LIST")"
	runtime_packages "$bin" >"$dest$PREFIX/$PKG_LIST"
	echo "heroku-build: installed $PREFIX/bin/sfrelay; it needs" \
		"$(tr '\n' ' ' <"$dest$PREFIX/$PKG_LIST")"
}

cmd_runtime_deps() {
	local list=$PREFIX/$PKG_LIST bin=$PREFIX/bin/sfrelay
	[ -f "$list" ] || die "$list missing: copy the build's DESTDIR to / first"
	local pkgs
	mapfile -t pkgs <"$list"
	# ca-certificates: the system store that Salesforce's, the database's
	# and a drain's TLS certificates are verified against.
	apt_install ca-certificates "${pkgs[@]}"
	if ldd "$bin" | grep -q 'not found'; then
		ldd "$bin" >&2
		die "$bin: a shared library is missing"
	fi
	"$bin" --version >/dev/null || die "$bin --version failed"
	echo "heroku-build: $("$bin" --version) runs"
}

case "${1:-}" in
build-deps) cmd_build_deps ;;
build) cmd_build "${2:-}" ;;
runtime-deps) cmd_runtime_deps ;;
*)
	sed -n '2,13p' "$0" >&2
	exit 64
	;;
esac
