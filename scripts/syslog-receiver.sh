#!/usr/bin/env bash
# Runs a real syslog receiver in the foreground on 127.0.0.1, with its
# own configuration, pid file and state under DIR, for the end-to-end
# tests (no system service is touched). It writes every message it
# receives, one a line, to DIR/received.log as
#   PRI|TIMESTAMP|HOSTNAME|APP-NAME|PROCID|MSGID|SD|MSG
# with each field as the receiver parsed it.
#
# Usage: scripts/syslog-receiver.sh rsyslog|syslog-ng tcp|tls DIR PORT
# tls expects DIR/server.pem and DIR/server.key (scripts/test-ca.sh DIR).
# The receiver replaces this shell (exec), so its pid is the caller's
# child: stop it with SIGTERM.
set -euo pipefail
kind=${1:?kind} mode=${2:?mode} dir=${3:?dir} port=${4:?port}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(cd "$dir" && pwd)
out="$dir/received.log"

case "$kind" in
rsyslog)
	mkdir -p "$dir/rsyslog-work"
	conf="$dir/rsyslog.conf"
	{
		echo "global(workDirectory=\"$dir/rsyslog-work\")"
		if [ "$mode" = tls ]; then
			echo "global(defaultNetstreamDriver=\"ossl\""
			echo "  defaultNetstreamDriverCertFile=\"$dir/server.pem\""
			echo "  defaultNetstreamDriverKeyFile=\"$dir/server.key\")"
			echo "module(load=\"imtcp\" streamDriver.name=\"ossl\""
			echo "  streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")"
		else
			echo "module(load=\"imtcp\")"
		fi
		echo "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"$port\")"
		echo "template(name=\"fields\" type=\"string\""
		echo "  string=\"%pri%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n\")"
		echo "action(type=\"omfile\" file=\"$out\" template=\"fields\")"
	} >"$conf"
	exec /usr/sbin/rsyslogd -n -f "$conf" -i "$dir/rsyslogd.pid"
	;;
syslog-ng)
	root=$("$here/syslog-ng-local.sh")
	root=$(cd "$root" && pwd)
	conf="$dir/syslog-ng.conf"
	if [ "$mode" = tls ]; then
		transport="transport(\"tls\") tls(key-file(\"$dir/server.key\") cert-file(\"$dir/server.pem\") peer-verify(optional-untrusted))"
	else
		transport="transport(\"tcp\")"
	fi
	cat >"$conf" <<CONF
@version: 3.38
options { keep-hostname(yes); frac-digits(6); ts-format(iso); };
source s_net { syslog(ip("127.0.0.1") port($port) $transport); };
destination d_file {
	file("$out" template("\${PRI}|\${ISODATE}|\${HOST}|\${PROGRAM}|\${PID}|\${MSGID}|\${SDATA}|\${MSG}\n"));
};
log { source(s_net); destination(d_file); flags(flow-control); };
CONF
	export LD_LIBRARY_PATH="$root/usr/lib/syslog-ng${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	exec "$root/usr/sbin/syslog-ng" -F --no-caps -f "$conf" \
		--module-path="$root/usr/lib/syslog-ng/3.38" \
		-p "$dir/syslog-ng.pid" -R "$dir/syslog-ng.persist" \
		-c "$dir/syslog-ng.ctl"
	;;
*)
	echo "usage: syslog-receiver.sh rsyslog|syslog-ng tcp|tls DIR PORT" >&2
	exit 64
	;;
esac
