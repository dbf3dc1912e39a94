#!/usr/bin/env bash
# `make bench`: sfrelay against the floor and the JavaScript peers, against
# the same sfmock, in the same run. The method is in docs/benchmarks.md.
#
# Settings (environment; bench/bench.mk passes them through):
#   BENCH_RUNS         runs of every measurement (default 5; medians)
#   BENCH_EVENTS       events per throughput run (default 200000)
#   BENCH_LAT_RATES    latency publish rates, events/s (default "1000 10000")
#   BENCH_LAT_SECONDS  how long each latency run publishes (default 5)
#   BENCH_ALLOC_EVENTS two event counts for the allocation count under
#                      valgrind (default "5000 15000"; "" skips it)
#   BENCH_PEERS        0 skips the JavaScript peers
#   BENCH_TIMEOUT      bound on one client run, seconds (default 300)
#   BENCH_OUT          the markdown report (default bench/results/latest.md)
#   BENCH_B            the optimized build directory (default build/bench)
#   BENCH_KEEP         1 keeps the work directory (logs, raw numbers)
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
BB=${BENCH_B:-build/bench}
RUNS=${BENCH_RUNS:-5}
EVENTS=${BENCH_EVENTS:-200000}
LAT_RATES=${BENCH_LAT_RATES:-"1000 10000"}
LAT_SECONDS=${BENCH_LAT_SECONDS:-5}
ALLOC_EVENTS=${BENCH_ALLOC_EVENTS-"5000 15000"}
PEERS=${BENCH_PEERS:-1}
TIMEOUT=${BENCH_TIMEOUT:-300}
OUT=${BENCH_OUT:-bench/results/latest.md}

RELAY=$BB/sfrelay
MOCK=$BB/sfmock
BENCHRUN=$BB/bench/benchrun
FLOOR=$BB/bench/floor
PUBLISH=$BB/bench/publish

for f in "$RELAY" "$MOCK" "$BENCHRUN" "$FLOOR" "$PUBLISH"; do
	if [ ! -x "$f" ]; then
		echo "bench: $f is missing: run it through make bench" >&2
		exit 1
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/sfrelay-bench-XXXXXX")
RAW=$work/raw.tsv      # scenario client run key=value...
NOTES=$work/notes.txt  # lines for the report's notes section
: >"$RAW"
: >"$NOTES"
mock_pid=
bg_pid=

cleanup() {
	trap - EXIT INT TERM
	if [ -n "$bg_pid" ]; then
		kill -TERM "$bg_pid" 2>/dev/null
		wait "$bg_pid" 2>/dev/null
	fi
	stop_mock
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "bench: work directory kept: $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

say() { echo "bench: $*" >&2; }
note() { echo "$*" >>"$NOTES"; say "$*"; }

# ---------------------------------------------------------------- mock

start_mock() { # name, sfmock options...
	local name=$1 port=
	shift
	"$MOCK" --port 0 --log-level warn "$@" >"$work/mock-$name.out" \
		2>"$work/mock-$name.err" &
	mock_pid=$!
	for _ in $(seq 1 200); do
		port=$(sed -n 's|^sfmock listening on http://127.0.0.1:\([0-9]*\)$|\1|p' \
			"$work/mock-$name.out" 2>/dev/null)
		[ -n "$port" ] && break
		kill -0 "$mock_pid" 2>/dev/null || break
		sleep 0.05
	done
	if [ -z "$port" ]; then
		say "sfmock did not start:"
		cat "$work/mock-$name.err" >&2
		exit 1
	fi
	MOCK_URL=http://127.0.0.1:$port
	login_env
}

stop_mock() {
	if [ -n "$mock_pid" ]; then
		kill -TERM "$mock_pid" 2>/dev/null
		wait "$mock_pid" 2>/dev/null
		mock_pid=
	fi
}

urlenc() { # channel names use [A-Za-z0-9_./-] only
	printf '%s' "$1" | sed 's|/|%2F|g'
}

# publish_bulk channel count body_file: preloads count events.
publish_bulk() {
	local ch=$1 left=$2 body=$3 n reply
	while [ "$left" -gt 0 ]; do
		n=$((left > 1000000 ? 1000000 : left))
		reply=$(curl -sS --max-time 300 -X POST \
			-H 'Content-Type: application/json' --data-binary "@$body" \
			"$MOCK_URL/_mock/publish?channel=$(urlenc "$ch")&count=$n") || {
			say "publishing to $ch failed"
			exit 1
		}
		case $reply in
		*'"published":'"$n"*) ;;
		*)
			say "publishing to $ch failed: $reply"
			exit 1
			;;
		esac
		left=$((left - n))
	done
}

mock_stat() { # key: a top-level counter of /_mock/stats
	curl -sS --max-time 5 "$MOCK_URL/_mock/stats" |
		sed -n 's/.*"'"$1"'":\([0-9]*\).*/\1/p'
}

# ---------------------------------------------------------------- bodies

# repeat_to sentence n: whole copies of sentence until at least n bytes
# (whole, so an escape sequence is never cut).
repeat_to() {
	local s=$1 n=$2 out=
	while [ ${#out} -lt "$n" ]; do out=$out$s; done
	printf '%s' "$out"
}

NOTE_TEXT='Key account, renewal due in Q3; contact Pat Lee (VP Ops) before pricing changes. '
ESC_TEXT='Call notes: customer said \"ship it\" = yes; next step\tfollow-up\n'

make_bodies() {
	# PushTopic, about 500 bytes per Bayeux message once the mock adds
	# Id, Name, Seq, the event header and the channel.
	printf '{"Industry":"Technology","Type":"Customer - Direct","BillingCity":"San Francisco","BillingState":"CA","BillingCountry":"USA","Phone":"(415) 555-0100","Website":"https://www.example.com","AnnualRevenue":125000000,"NumberOfEmployees":5400,"OwnerId":"005xx000001X8UzAAK","Description":"%s"}' \
		"$(repeat_to "$NOTE_TEXT" 30)" >"$work/topic500.json"
	# Platform event, about 500 bytes.
	printf '{"Action__c":"ReportExport","Source_IP__c":"203.0.113.7","User__c":"005xx000001X8UzAAK","Session_Key__c":"vMASKIU6AxEr+Op5","Application__c":"Browser","Rows__c":1520,"Detail__c":"%s"}' \
		"$(repeat_to "$NOTE_TEXT" 160)" >"$work/event500.json"
	# Change Data Capture: the mock writes the ChangeEventHeader (with
	# changedFields from these keys) and appends these fields.
	printf '{"Name":"Acme Corp","Industry":"Technology","Phone":"(415) 555-0100","AnnualRevenue":125000000,"Rating":"Hot","Description":"%s"}' \
		"$(repeat_to "$NOTE_TEXT" 80)" >"$work/cdc.json"
	# PushTopic, about 4 KB, with escapes (quotes, tabs, newlines).
	printf '{"Industry":"Technology","Type":"Customer - Direct","Phone":"(415) 555-0100","Description":"%s"}' \
		"$(repeat_to "$ESC_TEXT$NOTE_TEXT" 3700)" >"$work/topic4k.json"
	# Latency: the publisher adds "PubUs" to these.
	cp "$work/topic500.json" "$work/latency.json"
}

# ---------------------------------------------------------------- peers

PEER_NOTE=
setup_peers() {
	local lock=bench/peers/package-lock.json
	local stamp=bench/peers/node_modules/.package-lock.json
	if [ "$PEERS" != 1 ]; then
		PEER_NOTE="peers skipped: BENCH_PEERS=$PEERS"
		return 1
	fi
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		PEER_NOTE="peers skipped: node or npm is not installed"
		return 1
	fi
	if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
		say "installing the peers (npm ci in bench/peers)"
		if ! (cd bench/peers && npm ci --no-audit --no-fund \
			>"$work/npm.log" 2>&1); then
			PEER_NOTE="peers skipped: npm ci failed: $(tail -n 3 "$work/npm.log" | tr '\n' ' ')"
			return 1
		fi
	fi
	return 0
}

# ---------------------------------------------------------------- clients

login_env() {
	export SFDC_LOGIN_URL=$MOCK_URL
	export SFDC_CLIENT_ID=sfmock-client-id
	export SFDC_CLIENT_SECRET=sfmock-client-secret
	export SFDC_USERNAME=relay@sfmock.test
	export SFDC_PASSWORD=sfmock-password
}

# client_cmd client channels events replay latency(0|1) tag:
# sets CMD (array) and CLIENT_ENV (array of NAME=value) for one client.
client_cmd() {
	local client=$1 chans=$2 n=$3 replay=$4 lat=$5 tag=$6
	CLIENT_ENV=()
	case $client in
	floor)
		CMD=("$FLOOR" -u "$MOCK_URL" -c "$chans" -n "$n" -r "$replay"
			-o "$work/$tag.floor")
		[ "$lat" = 1 ] && CMD+=(-L)
		;;
	sfrelay)
		CLIENT_ENV=(SFRELAY_CHANNELS="$chans" SFRELAY_REPLAY_FROM="$replay"
			SFRELAY_STATE_DIR="$work/state-$tag" SFRELAY_FORMAT=logfmt)
		CMD=("$RELAY")
		;;
	jsforce)
		CLIENT_ENV=(BENCH_LOGIN_URL="$MOCK_URL" BENCH_CHANNELS="$chans"
			BENCH_EVENTS="$n" BENCH_REPLAY="$replay")
		CMD=(node bench/peers/jsforce-peer.cjs)
		;;
	cometd)
		CLIENT_ENV=(BENCH_LOGIN_URL="$MOCK_URL" BENCH_CHANNELS="$chans"
			BENCH_EVENTS="$n" BENCH_REPLAY="$replay")
		CMD=(node bench/peers/cometd-peer.mjs)
		;;
	esac
}

# record scenario client run kv...: one row of raw numbers.
record() {
	local s=$1 c=$2 r=$3
	shift 3
	printf '%s\t%s\t%s\t%s\n' "$s" "$c" "$r" "$*" >>"$RAW"
}

kv() { # key line: the value of key=value in line
	printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1
}

# throughput scenario channels client run
throughput_run() {
	local s=$1 chans=$2 client=$3 r=$4 tag="$1-$3-$4" res n
	client_cmd "$client" "$chans" "$EVENTS" -2 0 "$tag"
	# The floor exits by itself; the others are stopped at EVENTS lines.
	n=$EVENTS
	[ "$client" = floor ] && n=0
	res=$(env "${CLIENT_ENV[@]+"${CLIENT_ENV[@]}"}" "$BENCHRUN" -n "$n" \
		-t "$TIMEOUT" -s "$work/$tag.sample" -- "${CMD[@]}" \
		2>"$work/$tag.err")
	if [ "$client" = floor ]; then
		res="$res $(cat "$work/$tag.floor" 2>/dev/null)"
		# The floor's events stand for its lines.
		res="$res lines=$(kv events "$res") lines_total=$(kv events "$res")"
		res=$(printf '%s' "$res" | sed 's/^lines=0 lines_total=0 //')
	fi
	record "$s" "$client" "$r" "$res"
	say "$s $client run $r: $res"
	n=$(kv lines "$res")
	if [ -z "$n" ] || [ "$n" -lt "$EVENTS" ]; then
		note "$s: $client run $r delivered $(kv lines "$res") of $EVENTS events; stderr: $(tail -c 600 "$work/$tag.err" | tr '\n' ' ')"
	fi
}

# latency rate client run
latency_run() {
	local rate=$1 client=$2 r=$3 tag="lat$1-$2-$3" n res pub= sub0 con0 ok=0
	n=$(awk -v r="$rate" -v s="$LAT_SECONDS" 'BEGIN { printf "%d", r * s + 0.5 }')
	client_cmd "$client" /topic/BenchLatency "$n" -1 1 "$tag"
	sub0=$(mock_stat subscribes)
	con0=$(mock_stat connects)
	local bn=$n
	[ "$client" = floor ] && bn=0
	env "${CLIENT_ENV[@]+"${CLIENT_ENV[@]}"}" "$BENCHRUN" -L -n "$bn" \
		-t $((LAT_SECONDS + 60)) -- "${CMD[@]}" >"$work/$tag.res" \
		2>"$work/$tag.err" &
	bg_pid=$!
	# Subscribed, and the long poll is held (the first connect after a
	# handshake is answered at once; the second one waits).
	for _ in $(seq 1 300); do
		if [ "$(mock_stat subscribes)" -gt "$sub0" ] &&
			[ "$(mock_stat connects)" -ge $((con0 + 2)) ]; then
			ok=1
			break
		fi
		kill -0 "$bg_pid" 2>/dev/null || break
		sleep 0.05
	done
	if [ $ok = 1 ]; then
		sleep 0.2
		pub=$("$PUBLISH" -u "$MOCK_URL" -c /topic/BenchLatency -r "$rate" \
			-d "$LAT_SECONDS" -b "$work/latency.json" 2>>"$work/$tag.err")
	else
		note "latency $rate/s: $client run $r never subscribed; stderr: $(tail -c 600 "$work/$tag.err" | tr '\n' ' ')"
		kill -TERM "$bg_pid" 2>/dev/null
	fi
	wait "$bg_pid"
	bg_pid=
	res=$(cat "$work/$tag.res")
	if [ "$client" = floor ]; then
		res="$(cat "$work/$tag.floor" 2>/dev/null) $res"
	fi
	record "lat$rate" "$client" "$r" "$res $pub"
	say "latency $rate/s $client run $r: $res $pub"
	if [ "$(kv lat_n "$res")" != "$n" ]; then
		note "latency $rate/s: $client run $r timed $(kv lat_n "$res") of $n events ($pub)"
	fi
}

# alloc n: the relay under valgrind, stopped after n lines.
alloc_run() {
	local n=$1 tag="alloc-$1" res heap
	client_cmd sfrelay /topic/BenchTopic "$n" -2 0 "$tag"
	res=$(env "${CLIENT_ENV[@]}" "$BENCHRUN" -n "$n" -t 1200 -- \
		valgrind --tool=memcheck --leak-check=no \
		--log-file="$work/$tag.vg" "$RELAY" 2>"$work/$tag.err")
	heap=$(sed -n 's/.*total heap usage: \([0-9,]*\) allocs, [0-9,]* frees, \([0-9,]*\) bytes allocated.*/allocs=\1 heap_bytes=\2/p' \
		"$work/$tag.vg" | tr -d ,)
	record alloc sfrelay "$n" "$res $heap"
	say "allocations, $n events: $res $heap"
}

# ---------------------------------------------------------------- report

# stat scenario client expr: median, min, max over runs of an awk
# expression of the run's key=value fields (f["key"]).
stat() {
	awk -F'\t' -v s="$1" -v c="$2" '
		$1 == s && $2 == c {
			delete f
			n = split($4, kvs, " ")
			for (i = 1; i <= n; i++) {
				p = index(kvs[i], "=")
				# the first occurrence of a key wins (the floor
				# fields come before those of benchrun)
				if (p > 0 && !(substr(kvs[i], 1, p - 1) in f))
					f[substr(kvs[i], 1, p - 1)] = substr(kvs[i], p + 1)
			}
			v = '"$3"'
			if (v != "") print v
		}' "$RAW" | sort -g | awk '
		{ a[NR] = $1 }
		END {
			if (NR == 0) { print "- - -"; exit }
			m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
			print m, a[1], a[NR]
		}'
}

fmt() { # value, printf format
	case $1 in -) printf -- '-' ;; *) printf "$2" "$1" ;; esac
}

cell() { # "median min max", printf format
	local m lo hi
	read -r m lo hi <<<"$1"
	if [ "$m" = - ]; then printf -- '-'; return; fi
	if [ "$RUNS" -gt 1 ]; then
		printf "$2 ($2–$2)" "$m" "$lo" "$hi"
	else
		printf "$2" "$m"
	fi
}

med() { set -- $1; printf '%s' "$1"; }

ratio() { # a b -> a/b with 2 decimals, or -
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}

# Expressions over one run's fields.
E_WALL='f["wall_s"]'
E_EPS='(f["wall_s"] > 0 ? f["lines"] / f["wall_s"] : "")'
E_CPU='(f["lines_total"] > 0 ? (f["user_s"] + f["sys_s"]) * 100000 / f["lines_total"] : "")'
E_RSS='f["maxrss_kb"] / 1024'
E_ANON='f["anon_peak_kb"] / 1024'
E_START='f["first_s"]'
E_BPE='(f["events"] > 0 ? f["bytes"] / f["events"] : "")'

throughput_table() { # scenario title
	local s=$1 c fw cw
	echo "### $2"
	echo
	echo "| client | wall s | events/s | CPU s per 100k events | peak RSS MB | own memory MB | wall / floor |"
	echo "|---|---|---|---|---|---|---|"
	fw=$(med "$(stat "$s" floor "$E_WALL")")
	for c in $CLIENTS; do
		grep -q "^$s	$c	" "$RAW" || continue
		cw=$(med "$(stat "$s" "$c" "$E_WALL")")
		printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$c" \
			"$(cell "$(stat "$s" "$c" "$E_WALL")" %.2f)" \
			"$(cell "$(stat "$s" "$c" "$E_EPS")" %.0f)" \
			"$(cell "$(stat "$s" "$c" "$E_CPU")" %.3f)" \
			"$(cell "$(stat "$s" "$c" "$E_RSS")" %.1f)" \
			"$(cell "$(stat "$s" "$c" "$E_ANON")" %.1f)" \
			"$(ratio "$cw" "$fw")"
	done
	echo
	echo "Bayeux bytes per event on the wire (floor): $(fmt "$(med "$(stat "$s" floor "$E_BPE")")" %.0f)."
	echo
}

ratios_table() { # scenario
	local s=$1 p rc pc rr pr rw pw
	rc=$(med "$(stat "$s" sfrelay "$E_CPU")")
	rr=$(med "$(stat "$s" sfrelay "$E_RSS")")
	rw=$(med "$(stat "$s" sfrelay "$E_WALL")")
	for p in jsforce cometd; do
		grep -q "^$s	$p	" "$RAW" || continue
		pc=$(med "$(stat "$s" "$p" "$E_CPU")")
		pr=$(med "$(stat "$s" "$p" "$E_RSS")")
		pw=$(med "$(stat "$s" "$p" "$E_WALL")")
		printf '| %s | %s | %s | %s | %s |\n' "$s" "$p" \
			"$(ratio "$rc" "$pc")" "$(ratio "$rr" "$pr")" "$(ratio "$rw" "$pw")"
	done
}

latency_table() {
	local rate c
	echo "| rate | client | p50 ms | p99 ms | max ms | events timed |"
	echo "|---|---|---|---|---|---|"
	for rate in $LAT_RATES; do
		for c in $CLIENTS; do
			grep -q "^lat$rate	$c	" "$RAW" || continue
			printf '| %s/s | %s | %s | %s | %s | %s |\n' "$rate" "$c" \
				"$(cell "$(stat "lat$rate" "$c" 'f["lat_p50_us"] / 1000')" %.2f)" \
				"$(cell "$(stat "lat$rate" "$c" 'f["lat_p99_us"] / 1000')" %.2f)" \
				"$(cell "$(stat "lat$rate" "$c" 'f["lat_max_us"] / 1000')" %.2f)" \
				"$(cell "$(stat "lat$rate" "$c" 'f["lat_n"]')" %.0f)"
		done
	done
}

machine() {
	local cpu mem
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
	echo "- machine: $(nproc) CPUs ($cpu), $mem memory, Linux $(uname -r)"
	echo "- compiler: $(${CC:-cc} --version | head -n 1); libcurl $(pkg-config --modversion libcurl 2>/dev/null), json-c $(pkg-config --modversion json-c 2>/dev/null), libevent $(pkg-config --modversion libevent 2>/dev/null)"
	if [ -n "$PEER_OK" ]; then
		echo "- peers: node $(node --version), jsforce $(node -p 'require("./bench/peers/node_modules/jsforce/package.json").version'), cometd $(node -p 'require("./bench/peers/node_modules/cometd/package.json").version'), cometd-nodejs-client $(node -p 'require("./bench/peers/node_modules/cometd-nodejs-client/package.json").version')"
	fi
	echo "- sfrelay: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src include 2>/dev/null || echo ' (with uncommitted changes in src/ or include/)'), built with the Makefile's -O2 and -DNDEBUG into $BB"
	echo "- machine load (/proc/loadavg, 1/5/15 min): $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; busiest processes at the start: $BUSY_START"
}

report() {
	local rc pc best s p targ
	{
		echo "# Benchmark results"
		echo
		echo "Written by \`make bench\` (bench/run.sh) on $(date -u +%Y-%m-%dT%H:%MZ). Method: docs/benchmarks.md."
		echo
		machine
		echo "- settings: BENCH_RUNS=$RUNS BENCH_EVENTS=$EVENTS BENCH_LAT_RATES=\"$LAT_RATES\" BENCH_LAT_SECONDS=$LAT_SECONDS; sfmock --max-batch 1000 (events per connect response)"
		echo
		if [ "$RUNS" -gt 1 ]; then
			echo "Cells are the median of $RUNS runs, (min–max) after it."
		else
			echo "One run per cell (a smoke check, not a measurement)."
		fi
		echo
		echo "## Throughput: $EVENTS retained events replayed with -2"
		echo
		throughput_table topic "PushTopic, one channel, ~500-byte events"
		throughput_table mixed "Mixed: 40% platform events (~500 B), 40% CDC with ChangeEventHeader (~850 B), 20% PushTopic ~4 KB with escapes; three channels"
		if [ -n "$PEER_OK" ]; then
			echo "### sfrelay against each peer (median / median; below 1 is better)"
			echo
			echo "| scenario | peer | CPU per event | peak RSS | wall time |"
			echo "|---|---|---|---|---|"
			ratios_table topic
			ratios_table mixed
			echo
		fi
		echo "## Latency: publish to line read"
		echo
		echo "Events published at a fixed rate for ${LAT_SECONDS} s on one PushTopic (~500 B) while the client is subscribed with -1."
		echo
		latency_table
		echo
		echo "## Allocations (sfrelay under valgrind memcheck)"
		echo
		if grep -q "^alloc	" "$RAW"; then
			echo "| events relayed | heap allocations | bytes allocated |"
			echo "|---|---|---|"
			awk -F'\t' '$1 == "alloc" {
				delete f; n = split($4, kvs, " ")
				for (i = 1; i <= n; i++) { p = index(kvs[i], "="); f[substr(kvs[i], 1, p - 1)] = substr(kvs[i], p + 1) }
				printf "| %s | %s | %s |\n", f["lines_total"], f["allocs"], f["heap_bytes"]
			}' "$RAW"
			echo
			echo "Allocations per event (difference of the two runs over the difference of events): $ALLOCS_PER_EVENT; bytes allocated per event: $BYTES_PER_EVENT."
		else
			echo "Not measured: $ALLOC_NOTE"
		fi
		echo
		echo "## Targets"
		echo
		echo "| target | measured | met |"
		echo "|---|---|---|"
		rc=$(med "$(stat topic sfrelay "$E_CPU")")
		best=
		for p in jsforce cometd; do
			pc=$(med "$(stat topic "$p" "$E_CPU")")
			[ "$pc" = - ] && continue
			if [ -z "$best" ] || awk -v a="$pc" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$pc; fi
		done
		if [ -n "$best" ]; then
			targ=$(ratio "$rc" "$best")
			echo "| CPU per event at most 1/10 of the best peer's (PushTopic) | sfrelay $(fmt "$rc" %.3f) s per 100k vs best peer $(fmt "$best" %.3f): ratio $targ | $(awk -v r="$targ" 'BEGIN { print (r != "-" && r <= 0.1) ? "yes" : "no" }') |"
		else
			echo "| CPU per event at most 1/10 of the best peer's | no peer measured | - |"
		fi
		for s in topic mixed; do
			rc=$(stat "$s" sfrelay "$E_RSS")
			set -- $rc
			echo "| peak RSS at most 8 MB ($s) | median $(fmt "$1" %.1f) MB, max $(fmt "$3" %.1f) MB (own memory: median $(fmt "$(med "$(stat "$s" sfrelay "$E_ANON")")" %.1f) MB; the rest is shared libraries) | $(awk -v r="$3" 'BEGIN { print (r != "-" && r <= 8) ? "yes" : "no" }') |"
		done
		for s in topic mixed; do
			rc=$(med "$(stat "$s" sfrelay "$E_WALL")")
			pc=$(med "$(stat "$s" floor "$E_WALL")")
			targ=$(ratio "$rc" "$pc")
			echo "| wall time within 1.5x of the floor ($s) | $(fmt "$rc" %.2f) s vs $(fmt "$pc" %.2f) s: $targ | $(awk -v r="$targ" 'BEGIN { print (r != "-" && r <= 1.5) ? "yes" : "no" }') |"
		done
		for s in $LAT_RATES; do
			rc=$(med "$(stat "lat$s" sfrelay 'f["lat_p99_us"] / 1000')")
			pc=$(med "$(stat "lat$s" floor 'f["lat_p99_us"] / 1000')")
			targ=$(awk -v a="$rc" -v b="$pc" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.2f", a - b }')
			# The target is set at 1,000/s; other rates are shown
			# for scale, not judged.
			met="-"
			[ "$s" = 1000 ] && met=$(awk -v r="$targ" 'BEGIN { print (r != "-" && r < 2) ? "yes" : "no" }')
			label="added latency p99 under 2 ms at $s/s"
			[ "$s" = 1000 ] || label="added latency p99 at $s/s (for scale: the target is at 1000/s)"
			echo "| $label (sfrelay p99 − floor p99) | $(fmt "$rc" %.2f) − $(fmt "$pc" %.2f) = $targ ms | $met |"
		done
		echo
		tls=$("$BB/bench/tlsfloor" 2>&1 | sed -n 's/^step=ca_bundle hwm_kb=\([0-9]*\) .*/\1/p')
		if [ -n "$tls" ]; then
			echo "For scale, the RSS targets: \`tlsfloor\`, a program that only initialises the OpenSSL these libraries link, makes a TLS client context and loads the CA bundle (what libcurl does before its first HTTPS request), peaks at $(fmt "$(awk -v k="$tls" 'BEGIN { print k / 1024 }')" %.1f) MB."
			echo
		fi
		echo "## First line of each client's output (PushTopic run 1, cut at 240 bytes)"
		echo
		echo '```'
		for c in sfrelay jsforce cometd; do
			[ -f "$work/topic-$c-1.sample" ] && printf '%s: %s\n' "$c" "$(head -c 240 "$work/topic-$c-1.sample" | head -n 1)"
		done
		echo '```'
		echo
		echo "## Notes"
		echo
		[ -n "$PEER_NOTE" ] && echo "- $PEER_NOTE"
		if [ -s "$NOTES" ]; then
			sed 's/^/- /' "$NOTES"
		else
			echo "- every run delivered every event it was asked for"
		fi
		echo
		echo "## Raw numbers"
		echo
		echo "One row per run: scenario, client, run, then benchrun's and the floor's fields."
		echo
		echo '```'
		cat "$RAW"
		echo '```'
	} >"$OUT.tmp" && mv "$OUT.tmp" "$OUT"
}

# ---------------------------------------------------------------- main

LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
BUSY_START=$(ps -eo pcpu=,comm= --sort=-pcpu 2>/dev/null | head -n 3 | awk '{ printf "%s%s %s%%", (NR > 1 ? ", " : ""), $2, $1 }')
PEER_OK=
if setup_peers; then PEER_OK=1; else say "$PEER_NOTE"; fi
CLIENTS="floor sfrelay"
[ -n "$PEER_OK" ] && CLIENTS="$CLIENTS jsforce cometd"
make_bodies

# PushTopic, one channel.
start_mock topic --channel /topic/BenchTopic --retention "$EVENTS"
say "preloading $EVENTS PushTopic events"
publish_bulk /topic/BenchTopic "$EVENTS" "$work/topic500.json"
for r in $(seq 1 "$RUNS"); do
	for c in $CLIENTS; do throughput_run topic /topic/BenchTopic "$c" "$r"; done
done
ALLOCS_PER_EVENT=-
BYTES_PER_EVENT=-
ALLOC_NOTE=
if [ -z "$ALLOC_EVENTS" ]; then
	ALLOC_NOTE="BENCH_ALLOC_EVENTS is empty"
elif ! command -v valgrind >/dev/null; then
	ALLOC_NOTE="valgrind is not installed"
else
	for n in $ALLOC_EVENTS; do alloc_run "$n"; done
	read -r ALLOCS_PER_EVENT BYTES_PER_EVENT < <(awk -F'\t' '$1 == "alloc" {
		delete f; n = split($4, kvs, " ")
		for (i = 1; i <= n; i++) { p = index(kvs[i], "="); f[substr(kvs[i], 1, p - 1)] = substr(kvs[i], p + 1) }
		k++; e[k] = f["lines_total"]; a[k] = f["allocs"]; b[k] = f["heap_bytes"]
	} END {
		if (k >= 2 && e[k] + 0 > e[1] + 0 && a[1] != "" && a[k] != "")
			printf "%.1f %.0f\n", (a[k] - a[1]) / (e[k] - e[1]), (b[k] - b[1]) / (e[k] - e[1])
		else print "- -"
	}' "$RAW")
fi
stop_mock

# Mixed channels and sizes.
MIX=/event/Bench_Event__e,/data/AccountChangeEvent,/topic/BenchBig
start_mock mixed --channel /event/Bench_Event__e \
	--channel /data/AccountChangeEvent --channel /topic/BenchBig \
	--retention "$EVENTS"
n_ev=$((EVENTS * 2 / 5))
n_cdc=$((EVENTS * 2 / 5))
n_big=$((EVENTS - n_ev - n_cdc))
say "preloading $EVENTS mixed events ($n_ev platform, $n_cdc CDC, $n_big 4 KB)"
# Interleaved in small batches, so connect responses mix the kinds.
while [ $((n_ev + n_cdc + n_big)) -gt 0 ]; do
	k=$((n_ev > 2000 ? 2000 : n_ev))
	[ $k -gt 0 ] && publish_bulk /event/Bench_Event__e $k "$work/event500.json"
	n_ev=$((n_ev - k))
	k=$((n_cdc > 2000 ? 2000 : n_cdc))
	[ $k -gt 0 ] && publish_bulk /data/AccountChangeEvent $k "$work/cdc.json"
	n_cdc=$((n_cdc - k))
	k=$((n_big > 1000 ? 1000 : n_big))
	[ $k -gt 0 ] && publish_bulk /topic/BenchBig $k "$work/topic4k.json"
	n_big=$((n_big - k))
done
for r in $(seq 1 "$RUNS"); do
	for c in $CLIENTS; do throughput_run mixed "$MIX" "$c" "$r"; done
done
stop_mock

# Latency.
start_mock latency --channel /topic/BenchLatency --retention 100000
for rate in $LAT_RATES; do
	for r in $(seq 1 "$RUNS"); do
		for c in $CLIENTS; do latency_run "$rate" "$c" "$r"; done
	done
done
stop_mock

mkdir -p "$(dirname "$OUT")"
report
say "report written to $OUT"
