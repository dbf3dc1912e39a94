#!/usr/bin/env bash
# Checks the Dockerfile without Docker: runs its steps, as written, in
# chroots made from a bare Debian bookworm (debootstrap --variant=minbase,
# close to debian:bookworm-slim), from a copy of the source tree such as a
# `git push heroku` would send. Then starts the image's command as an
# arbitrary non-root user (as Heroku does) against the bundled mock org and
# waits for an event line, a clean SIGTERM exit and a checkpoint.
#
#   scripts/heroku-image-check.sh          as root; needs Debian's mirrors
#
# It understands the instructions the Dockerfile uses (FROM, WORKDIR,
# COPY, RUN, ARG, ENV, USER, CMD) and stops at any other. The bookworm
# tree is cached in $SFRELAY_IMAGE_CHECK_DIR (default
# /tmp/sfrelay-image-check); the rest is made fresh each run. Ends with
# "image check: ok" or an error.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
work=${SFRELAY_IMAGE_CHECK_DIR:-/tmp/sfrelay-image-check}
base=$work/bookworm
# Docker's default PATH, which the image inherits.
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Any user id with no passwd entry: Heroku does not run as the image's user.
RUN_UID=54321

die() {
	echo "image check: $*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root (chroot, mount)"

mounted=()
pids=()
cleanup() {
	local p m
	for p in "${pids[@]+"${pids[@]}"}"; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	for m in "${mounted[@]+"${mounted[@]}"}"; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
}
trap cleanup EXIT

# debian:bookworm-slim's package sources (the release, its updates and
# security), so that the chroot installs what the image would.
write_sources() {
	rm -f "$1/etc/apt/sources.list"
	cat >"$1/etc/apt/sources.list.d/debian.sources" <<-'EOF'
		Types: deb
		URIs: http://deb.debian.org/debian
		Suites: bookworm bookworm-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: http://deb.debian.org/debian-security
		Suites: bookworm-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
}

if [ ! -x "$base/bin/sh" ]; then
	command -v debootstrap >/dev/null ||
		apt-get install -y -qq --no-install-recommends debootstrap
	rm -rf "$base"
	mkdir -p "$work"
	echo "image check: debootstrap bookworm into $base (once)"
	debootstrap --variant=minbase bookworm "$base" http://deb.debian.org/debian \
		>"$work/debootstrap.log" 2>&1 || die "debootstrap failed: $work/debootstrap.log"
	write_sources "$base"
	chroot "$base" apt-get clean
fi

# The build context: the files git would push (tracked, plus new files not
# ignored), less what .dockerignore leaves out.
ctx=$work/context
rm -rf "$ctx" "$work"/stage-*
mkdir -p "$ctx"
# shellcheck disable=SC2016 # expanded by the inner sh
(cd "$top" && git ls-files -co --exclude-standard -z |
	xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
	tar --null -T - -cf -) | tar -xf - -C "$ctx"
if [ -f "$top/.dockerignore" ]; then
	while IFS= read -r pat; do
		case "$pat" in '' | '#'*) continue ;; esac
		if [ "${pat#\*\*/}" != "$pat" ]; then
			find "$ctx" -name "${pat#\*\*/}" -prune -exec rm -rf {} +
		else
			find "$ctx" -path "$ctx/$pat" -prune -exec rm -rf {} +
		fi
	done <"$top/.dockerignore"
fi

# Runs one command line in a stage's tree, as Docker's shell form does.
in_stage() {
	local root=$1 dir=$2 cmd=$3
	shift 3
	env -i PATH="$IMAGE_PATH" HOME=/root "$@" \
		chroot "$root" /bin/sh -c "cd '$dir' && $cmd"
}

declare -A stage_root=()
root=
wdir=/
user=
cmd_json=
envs=()
build_args=()
stage_n=0

run_instruction() {
	local ins=$1 args=$2 src dst from words
	read -ra words <<<"$args"
	set -- "${words[@]}"
	case "$ins" in
	FROM)
		stage_n=$((stage_n + 1))
		root=$work/stage-$stage_n
		[ "$1" = debian:bookworm-slim ] || die "FROM $1: only debian:bookworm-slim is modelled"
		cp -a "$base" "$root"
		cp /etc/resolv.conf "$root/etc/resolv.conf"
		mount -t proc proc "$root/proc"
		mounted+=("$root/proc")
		if [ $# -ge 3 ] && [ "${2^^}" = AS ]; then
			stage_root[$3]=$root
		fi
		wdir=/
		user=''
		cmd_json=''
		envs=()
		build_args=()
		;;
	WORKDIR)
		wdir=$args
		mkdir -p "$root$wdir"
		;;
	COPY)
		from=
		if [ "${1#--from=}" != "$1" ]; then
			from=${stage_root[${1#--from=}]:-}
			[ -n "$from" ] || die "COPY $1: no such stage"
			shift
		fi
		[ $# -eq 2 ] || die "COPY $args: one source and one destination only"
		src=$1 dst=$2
		[ "${dst#/}" != "$dst" ] || dst=$wdir/$dst
		if [ -n "$from" ]; then src=$from/$src; else src=$ctx/$src; fi
		if [ -d "$src" ]; then
			mkdir -p "$root$dst"
			cp -a "$src"/. "$root$dst"/
		else
			mkdir -p "$(dirname "$root$dst")"
			cp -a "$src" "$root$dst"
		fi
		;;
	RUN)
		echo "image check: stage $stage_n: RUN $args"
		in_stage "$root" "$wdir" "$args" "${build_args[@]+"${build_args[@]}"}" \
			"${envs[@]+"${envs[@]}"}" ||
			die "stage $stage_n: RUN $args failed"
		;;
	# A build argument is in the environment of later RUNs only.
	ARG)
		[ "${args#*=}" != "$args" ] || die "ARG $args: give it a default"
		build_args+=("$args")
		;;
	ENV) envs+=("$args") ;;
	USER) user=$args ;;
	CMD) cmd_json=$args ;;
	*) die "$ins: not modelled by this check" ;;
	esac
}

# Instructions, with continuation lines joined and comments dropped.
line=
while IFS= read -r raw || [ -n "$raw" ]; do
	case "$raw" in '#'*) continue ;; esac
	if [ "${raw%\\}" != "$raw" ]; then
		line+="${raw%\\} "
		continue
	fi
	line+=$raw
	line=$(printf '%s' "$line" | tr '\t' ' ' | sed 's/  */ /g; s/^ //; s/ $//')
	if [ -n "$line" ]; then
		run_instruction "${line%% *}" "${line#* }"
	fi
	line=
done <"$top/Dockerfile"

[ -n "$cmd_json" ] || die "the Dockerfile names no CMD"
final=$root
image_cmd=$(printf '%s' "$cmd_json" | sed 's/^\[ *"//; s/" *\]$//; s/" *, *"/ /g')
[ -n "$user" ] || die "the image runs as root (no USER)"
grep -q "^$user:" "$final/etc/passwd" || die "USER $user: no such user in the image"
[ -z "$(find "$final/usr/bin" "$final/usr/local/bin" -name 'gcc*' -o -name cc)" ] ||
	die "the final image holds a compiler"
added=$(($(du -sxm "$final" | cut -f1) - $(du -sxm "$base" | cut -f1)))
echo "image check: the final stage adds ${added} MB to the base; it runs \"$image_cmd\" as $user"

# The mock org, built in the build stage (which has the compiler and source).
build_root=${stage_root[build]:-$work/stage-1}
in_stage "$build_root" /src "make -s build/sfmock" || die "make build/sfmock failed"
out=$work/run
mkdir -p "$out"
env -i PATH="$IMAGE_PATH" chroot "$build_root" /src/build/sfmock --port 0 \
	--channel /topic/AccountWatch \
	>"$out/mock.out" 2>"$out/mock.err" &
pids+=($!)
port=
for _ in $(seq 1 100); do
	port=$(sed -n 's|^sfmock listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$out/mock.out")
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || die "sfmock did not start: $(cat "$out/mock.err")"

# The image's command, as Heroku starts it: a user id of its own, the
# image's ENV, config vars on top. start_relay NAME [VAR=value...] leaves
# its pid in $relay, its output in $out/NAME.out and NAME.err.
start_relay() {
	local name=$1
	shift
	env -i PATH="$IMAGE_PATH" "${envs[@]+"${envs[@]}"}" \
		SFDC_LOGIN_URL="http://127.0.0.1:$port" \
		SFDC_CLIENT_ID=sfmock-client-id SFDC_CLIENT_SECRET=sfmock-client-secret \
		SFRELAY_CHANNELS=/topic/AccountWatch "$@" \
		chroot --userspec="$RUN_UID:$RUN_UID" "$final" \
		/bin/sh -c "cd / && exec $image_cmd" \
		>"$out/$name.out" 2>"$out/$name.err" &
	relay=$!
	pids+=("$relay")
}

# wait_for FILE TEXT COUNT SECONDS: until FILE has COUNT lines holding TEXT.
wait_for() {
	for _ in $(seq 1 $(($4 * 10))); do
		[ "$(grep -c -- "$2" "$1" 2>/dev/null || true)" -ge "$3" ] && return 0
		sleep 0.1
	done
	return 1
}

publish() {
	curl -fsS -X POST \
		"http://127.0.0.1:$port/_mock/publish?channel=%2Ftopic%2FAccountWatch&count=$1" \
		>/dev/null || die "publishing to the mock failed"
}

stop_relay() {
	local pid=$1 name=$2 rc=0
	kill -TERM "$pid"
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ] ||
		die "$name exited $rc on SIGTERM: $(tail -5 "$out/$name.err")"
}

# 1. One dyno, no database: the file checkpoint, in the image's
# SFRELAY_STATE_DIR, written by a user the image does not know.
start_relay file DYNO=worker.1
wait_for "$out/file.err" subscribed 1 10 ||
	die "the relay did not subscribe: $(tail -5 "$out/file.err")"
publish 3
wait_for "$out/file.out" '^at=event ' 3 10 ||
	die "no event lines; relay stderr: $(tail -5 "$out/file.err")"
stop_relay "$relay" file
# shellcheck disable=SC2016 # expanded inside the image
state=$(env -i PATH="$IMAGE_PATH" "${envs[@]+"${envs[@]}"}" chroot "$final" \
	/bin/sh -c 'echo "$SFRELAY_STATE_DIR"')
[ -n "$(find "$final$state" -type f -user "$RUN_UID" 2>/dev/null)" ] ||
	die "no checkpoint written by uid $RUN_UID under $state"
echo "image check: $(head -1 "$out/file.out" | cut -c1-100)..."

# 2. Two dynos and Heroku Postgres (a throw-away server on loopback): one
# leads, the other waits, and takes over when the leader is stopped as a
# daily restart stops it. Only when this sfrelay reads DATABASE_URL.
pgbin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null |
	sort -V | tail -n 1)
if ! env -i PATH="$IMAGE_PATH" chroot "$final" sfrelay --help | grep -q DATABASE_URL; then
	echo "image check: Postgres part skipped: this sfrelay does not read DATABASE_URL"
elif [ -z "$pgbin" ] || ! id postgres >/dev/null 2>&1; then
	echo "image check: Postgres part skipped: no PostgreSQL server here" \
		"(scripts/install-deps.sh installs it)"
else
	pgdir=$work/pg
	rm -rf "$pgdir"
	mkdir -p "$pgdir"
	chown postgres "$pgdir"
	pgport=
	for p in $(shuf -i 20000-60000 -n 50); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			pgport=$p
			break
		fi
	done
	[ -n "$pgport" ] || die "no free port for PostgreSQL"
	runuser -u postgres -- "$pgbin/initdb" -D "$pgdir/data" --auth=trust \
		-U postgres >"$pgdir/initdb.log" 2>&1 || die "initdb failed: $pgdir/initdb.log"
	runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
		-o "-c listen_addresses=127.0.0.1 -p $pgport -c unix_socket_directories=$pgdir" \
		start >/dev/null || die "PostgreSQL did not start: $pgdir/server.log"
	pg_stop() {
		runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop \
			>/dev/null 2>&1 || true
	}
	trap 'cleanup; pg_stop' EXIT
	db=DATABASE_URL=postgres://postgres@127.0.0.1:$pgport/postgres

	start_relay pg1 "$db" DYNO=worker.1
	first=$relay
	wait_for "$out/pg1.err" 'msg="leader lock acquired"' 1 20 ||
		die "worker.1 did not lead: $(tail -5 "$out/pg1.err")"
	wait_for "$out/pg1.err" subscribed 1 10 || die "worker.1 did not subscribe"
	start_relay pg2 "$db" DYNO=worker.2
	second=$relay
	wait_for "$out/pg2.err" 'msg="waiting for the leader lock"' 1 20 ||
		die "worker.2 is no standby: $(tail -5 "$out/pg2.err")"
	publish 3
	wait_for "$out/pg1.out" '^at=event ' 3 10 || die "worker.1 relayed nothing"
	[ "$(grep -c '^at=event ' "$out/pg2.out" || true)" -eq 0 ] ||
		die "the standby relayed too"
	stop_relay "$first" pg1
	wait_for "$out/pg2.err" 'msg="leader lock acquired"' 1 30 ||
		die "worker.2 did not take over: $(tail -5 "$out/pg2.err")"
	wait_for "$out/pg2.err" subscribed 1 10 || die "worker.2 did not subscribe"
	publish 2
	wait_for "$out/pg2.out" '^at=event ' 2 10 || die "worker.2 relayed nothing"
	# It resumed from worker.1's checkpoint: only the new events.
	[ "$(grep -c '^at=event ' "$out/pg2.out")" -eq 2 ] ||
		die "worker.2 relayed $(grep -c '^at=event ' "$out/pg2.out") lines, not 2"
	stop_relay "$second" pg2
	pos=$(runuser -u postgres -- "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U postgres -At \
		-c "SELECT position FROM sfrelay_checkpoints WHERE key LIKE '%/topic/AccountWatch%'")
	[ -n "$pos" ] || die "no checkpoint row for /topic/AccountWatch"
	echo "image check: Postgres: worker.1 led, worker.2 waited, then took over" \
		"at checkpoint $pos"
fi
echo "image check: ok"
