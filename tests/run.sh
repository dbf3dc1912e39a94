#!/usr/bin/env bash
# Runs every test binary given, prints each one's cmocka output, and ends
# with one closing line "N passed, N failed" summed over all of them. A
# binary that crashes or prints no summary counts as one failure.
# VALGRIND=1 runs each under valgrind with a full leak check.
set -u
passed=0
failed=0
crashed=()
vg=()
if [ "${VALGRIND:-0}" = 1 ]; then
	vg=(valgrind -q --error-exitcode=99 --leak-check=full
	    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect)
fi
for bin in "$@"; do
	name=$(basename "$bin")
	out=$(mktemp)
	"${vg[@]}" "$bin" >"$out" 2>&1
	rc=$?
	cat "$out"
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
	rm -f "$out"
	if [ -z "$p$f" ]; then
		failed=$((failed + 1))
		crashed+=("$name (exit $rc, no summary)")
		continue
	fi
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
	if [ "$rc" -ne 0 ] && [ -z "$f" ]; then
		failed=$((failed + 1))
		crashed+=("$name (exit $rc)")
	fi
done
for c in "${crashed[@]+"${crashed[@]}"}"; do
	echo "test binary failed: $c"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
