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
# Its wall time goes in $work/$1.time, for the line that names the slow ones.
run_one() {
	local t0=$SECONDS
	"${vg[@]}" "$2" >"$work/$1.out" 2>&1
	echo $? >"$work/$1.rc"
	echo $((SECONDS - t0)) >"$work/$1.time"
}

# Prints binary number $1's output ($2) and adds up its summary.
report() {
	local name out rc p f
	name=$(basename "$2")
	out=$work/$1.out
	rc=$(cat "$work/$1.rc" 2>/dev/null || echo 127)
	cat "$out"
	echo "# $name: $(cat "$work/$1.time" 2>/dev/null || echo '?') s"
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

# Several at a time: the longest suites start first, so that none of
# them is left running alone at the end. Most suites spend their time
# waiting (timeouts, restarts), which is why more jobs than cores pay.
order=("$@")
if [ "$jobs" -gt 1 ]; then
	order=()
	for slow in e2e_pg test_pgtest e2e_syslog e2e_poll test_leader; do
		for bin in "$@"; do
			[ "$(basename "$bin")" = "$slow" ] && order+=("$bin")
		done
	done
	for bin in "$@"; do
		case " ${order[*]} " in *" $bin "*) ;; *) order+=("$bin") ;; esac
	done
fi

# The position of $1 among the rest: a binary's number, so that reports
# still come out in the order given.
index_of() {
	local want=$1 k=0 b
	shift
	for b in "$@"; do
		[ "$b" = "$want" ] && { echo "$k"; return; }
		k=$((k + 1))
	done
}

i=0
running=0
for bin in "${order[@]}"; do
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
	run_one "$(index_of "$bin" "$@")" "$bin" &
	running=$((running + 1))
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
