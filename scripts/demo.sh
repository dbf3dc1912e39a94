#!/usr/bin/env bash
# `make demo`: the relay against the bundled mock org, lines shown live.
# Starts build/sfmock --demo on a free loopback port, points build/sfrelay
# at it, and stops both on Ctrl-C (or when the reader of stdout goes away,
# as in `make demo | head`).
set -u
B=${B:-build}
work=$(mktemp -d "${TMPDIR:-/tmp}/sfrelay-demo-XXXXXX")
mock_pid=
relay_pid=

cleanup() {
	trap - EXIT INT TERM
	[ -n "$relay_pid" ] && kill -TERM "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null
	[ -n "$mock_pid" ] && kill -TERM "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

"$B/sfmock" --demo --port 0 >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!

port=
for _ in $(seq 1 100); do
	port=$(sed -n 's|^sfmock listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$work/mock.out" 2>/dev/null)
	[ -n "$port" ] && break
	kill -0 "$mock_pid" 2>/dev/null || break
	sleep 0.05
done
if [ -z "$port" ]; then
	echo "demo: sfmock did not start:" >&2
	cat "$work/mock.err" >&2
	exit 1
fi

echo "demo: mock org on http://127.0.0.1:$port; relay lines follow (Ctrl-C stops)" >&2
SFDC_LOGIN_URL="http://127.0.0.1:$port" \
SFDC_CLIENT_ID=sfmock-client-id \
SFDC_CLIENT_SECRET=sfmock-client-secret \
SFRELAY_CHANNELS=/topic/AccountWatch,/event/LoginEventStream,/data/AccountChangeEvent,/event/Order_Placed__e \
SFRELAY_STATE_DIR="$work/state" \
"$B/sfrelay" &
relay_pid=$!
wait "$relay_pid"
relay_pid=
exit 0
