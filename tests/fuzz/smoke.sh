#!/usr/bin/env bash
# Brief fuzzing run for CI (make fuzz-smoke).
#
#   smoke.sh FUZZ_BIN_DIR FUZZ_SRC_DIR NAME...
#
# For each harness NAME:
#   1. replays every file in FUZZ_SRC_DIR/regressions/NAME/ (inputs that
#      once failed: they must pass now);
#   2. fuzzes for FUZZ_SECONDS seconds on a temporary copy of
#      FUZZ_SRC_DIR/corpus/NAME/ (plus the regressions as seeds), with
#      FUZZ_BIN_DIR/NAME.dict, so nothing in the repository is written.
# Ends with one line per harness, "fuzz NAME: ok (N runs)" or the failure
# with the path of its reproducer, and exits 1 when any harness failed.
# The temporary directory is removed when all passed and kept otherwise.
#
# FUZZ_SEED fixes libFuzzer's seed, so a run explores the same inputs in
# the same order on every machine (only how far it gets depends on speed):
# CI sets it, so a red build is reproducible and caused by the change
# under test. Unset, each run explores afresh (for longer local runs).
set -u

bin_dir=$1
src_dir=$2
shift 2
seconds=${FUZZ_SECONDS:-15}
rss_mb=${FUZZ_RSS_MB:-512}
timeout=${FUZZ_TIMEOUT:-5}

# A smaller quarantine than ASan's 256 MB keeps a harness well under the
# RSS limit (use-after-free detection still covers the last 64 MB freed).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=64}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

work=$(mktemp -d "${TMPDIR:-/tmp}/sfrelay-fuzz.XXXXXX") || exit 1
summary=()
failed=0

# The newest artifact libFuzzer left under $1 (crash-, leak-, timeout-,
# oom-), or nothing.
artifact() {
	ls -t "$1"/crash-* "$1"/leak-* "$1"/timeout-* "$1"/oom-* \
		2>/dev/null | head -n 1
}

for name in "$@"; do
	bin=$bin_dir/$name
	dir=$work/$name
	regress=$src_dir/regressions/$name
	mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
	# A harness's own scratch files (checkpoint_file) stay in $work even
	# when it dies before cleaning up.
	export TMPDIR=$dir/tmp
	if [ -d "$src_dir/corpus/$name" ]; then
		cp -R "$src_dir/corpus/$name/." "$dir/corpus/"
	fi
	opts=(-rss_limit_mb="$rss_mb" -timeout="$timeout")
	[ -n "${FUZZ_SEED:-}" ] && opts+=(-seed="$FUZZ_SEED")

	# 1. Regressions, one process each, so every failing one is named.
	bad=()
	if [ -d "$regress" ]; then
		while IFS= read -r -d '' f; do
			log=$dir/replay-$(basename "$f").log
			if ! "$bin" "${opts[@]}" "$f" >"$log" 2>&1; then
				echo "---- $name: regression $f fails (log $log):"
				grep -m 1 -E 'invariant broken|ERROR: ' "$log"
				bad+=("$f")
			fi
		done < <(find "$regress" -type f ! -name '.*' -print0 | sort -z)
	fi
	if [ ${#bad[@]} -gt 0 ]; then
		for f in "${bad[@]}"; do
			summary+=("fuzz $name: FAILED (regression), reproducer: $f")
		done
		failed=1
		continue
	fi

	# 2. Fuzzing on the temporary corpus; regressions are read-only seeds.
	seeds=("$dir/corpus")
	[ -d "$regress" ] && seeds+=("$regress")
	dict=()
	[ -s "$bin_dir/$name.dict" ] && dict=(-dict="$bin_dir/$name.dict")
	if "$bin" "${opts[@]}" "${dict[@]}" -max_total_time="$seconds" \
		-print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
		"${seeds[@]}" >"$dir/fuzz.log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' \
			"$dir/fuzz.log" | tail -n 1)
		summary+=("fuzz $name: ok (${runs:-?} runs)")
	else
		repro=$(artifact "$dir/artifacts")
		echo "---- $name: fuzzing failed (log $dir/fuzz.log)"
		tail -n 40 "$dir/fuzz.log"
		summary+=("fuzz $name: FAILED, reproducer: ${repro:-none written, see $dir/fuzz.log}")
		failed=1
	fi
done

for line in "${summary[@]}"; do
	echo "$line"
done
if [ "$failed" -ne 0 ]; then
	echo "fuzz-smoke: failures kept in $work; replay one with" \
		"$bin_dir/<name> <reproducer>"
	exit 1
fi
rm -rf "$work"
exit 0
