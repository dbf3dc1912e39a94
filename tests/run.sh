#!/usr/bin/env bash
# Runs every test binary given, prints each one's cmocka output, and ends
# with one closing line "N passed, N failed" summed over all of them. A
# binary that crashes or prints no summary counts as one failure.
# VALGRIND=1 runs each under valgrind with a full leak check.
# TEST_JOBS=N runs up to N binaries at once (each in its own temp dirs,
# on its own ports); outputs are still printed whole, in the given order.
set -u
passed=0
failed=0
crashed=()
vg=()
if [ "${VALGRIND:-0}" = 1 ]; then
	vg=(valgrind -q --error-exitcode=99 --leak-check=full
	    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect)
fi
jobs=${TEST_JOBS:-1}
work=$(mktemp -d "${TMPDIR:-/tmp}/sfrelay-run.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

# Runs binary number $1 ($2), leaving its output and exit status in $work.
run_one() {
	"${vg[@]}" "$2" >"$work/$1.out" 2>&1
	echo $? >"$work/$1.rc"
}

# Prints binary number $1's output ($2) and adds up its summary.
report() {
	local name out rc p f
	name=$(basename "$2")
	out=$work/$1.out
	rc=$(cat "$work/$1.rc" 2>/dev/null || echo 127)
	cat "$out"
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
	if [ -z "$p$f" ]; then
		failed=$((failed + 1))
		crashed+=("$name (exit $rc, no summary)")
		return
	fi
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
	if [ "$rc" -ne 0 ] && [ -z "$f" ]; then
		failed=$((failed + 1))
		crashed+=("$name (exit $rc)")
	fi
}

i=0
running=0
for bin in "$@"; do
	if [ "$jobs" -le 1 ]; then
		# One at a time: each output as soon as its binary ends.
		run_one "$i" "$bin"
		report "$i" "$bin"
		i=$((i + 1))
		continue
	fi
	if [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
	run_one "$i" "$bin" &
	running=$((running + 1))
	i=$((i + 1))
done
if [ "$jobs" -gt 1 ]; then
	wait
	i=0
	for bin in "$@"; do
		report "$i" "$bin"
		i=$((i + 1))
	done
fi
for c in "${crashed[@]+"${crashed[@]}"}"; do
	echo "test binary failed: $c"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
