#!/usr/bin/env bash
# Profiling helper for the relay's hot path (not part of `make bench`):
# starts sfmock with N retained PushTopic events (~500 bytes, the shape
# bench/run.sh uses), then runs the optimized relay once under benchrun,
# with WRAP (a command prefix) in front of it:
#
#   bench/profile.sh [N] [WRAP...]
#   bench/profile.sh 20000 valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out
#   OUTER="perf record -g -o /tmp/relay.data" bench/profile.sh 200000
#
# OUTER (optional) goes in front of benchrun instead, for tools that
# follow children but do not pass SIGTERM on (perf record, perf stat);
# filter their report on the sfrelay command (perf report --comm sfrelay).
#   bench/profile.sh 20000 valgrind --tool=massif --massif-out-file=/tmp/m.out
#
# PRELOAD (optional) is put in LD_PRELOAD of the relay only (an
# interposing allocator, say). RELAY (optional) names another relay binary, e.g. a
# build of an older commit for a side-by-side comparison. Run
# `make bench-build` first.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
BB=${BENCH_B:-build/bench}
N=${1:-200000}
[ $# -gt 0 ] && shift
work=$(mktemp -d "${TMPDIR:-/tmp}/sfrelay-prof-XXXXXX")
mock_pid=
cleanup() {
	[ -n "$mock_pid" ] && kill -TERM "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

"$BB/sfmock" --port 0 --log-level warn --channel /topic/BenchTopic \
	--retention "$N" >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
port=
for _ in $(seq 1 200); do
	port=$(sed -n 's|^sfmock listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$work/mock.out")
	[ -n "$port" ] && break
	sleep 0.05
done
[ -n "$port" ] || { cat "$work/mock.err" >&2; exit 1; }
url=http://127.0.0.1:$port
note='Key account, renewal due in Q3; contact Pat Lee (VP Ops) before pricing changes. '
desc=
while [ ${#desc} -lt 30 ]; do desc=$desc$note; done
printf '{"Industry":"Technology","Type":"Customer - Direct","BillingCity":"San Francisco","BillingState":"CA","BillingCountry":"USA","Phone":"(415) 555-0100","Website":"https://www.example.com","AnnualRevenue":125000000,"NumberOfEmployees":5400,"OwnerId":"005xx000001X8UzAAK","Description":"%s"}' \
	"$desc" >"$work/body.json"
curl -sS --max-time 300 -X POST -H 'Content-Type: application/json' \
	--data-binary "@$work/body.json" \
	"$url/_mock/publish?channel=%2Ftopic%2FBenchTopic&count=$N" >/dev/null || exit 1

env SFDC_LOGIN_URL="$url" SFDC_CLIENT_ID=sfmock-client-id \
	SFDC_CLIENT_SECRET=sfmock-client-secret SFDC_USERNAME=relay@sfmock.test \
	SFDC_PASSWORD=sfmock-password SFRELAY_CHANNELS=/topic/BenchTopic \
	SFRELAY_REPLAY_FROM=-2 SFRELAY_STATE_DIR="$work/state" \
	SFRELAY_FORMAT=logfmt \
	${OUTER:-} "$BB/bench/benchrun" -n "$N" -t 600 -- \
	"$@" ${PRELOAD:+env LD_PRELOAD=$PRELOAD} "${RELAY:-$BB/sfrelay}"
