/*
 * Fuzz harness for the syslog framer and its parser (syslog_frame.h),
 * and for the line splitter and redactor (lines.h).
 *
 * Input layout: byte 0 selects the target, the rest is data.
 *   0: syslog_frame_parse() on the data, repeatedly, as a receiver walks
 *      a body: it returns -1, 0, or a length within what it was given,
 *      and the message it reports lies inside the frame.
 *   1: the data as four NUL-separated header fields (host, app, procid,
 *      msgid) and a message; syslog_frame() then syslog_frame_parse()
 *      must round-trip: the length matches syslog_frame_len(), the parse
 *      consumes exactly the frame, the message comes back unchanged
 *      (less one trailing '\n'), and header fields are printable ASCII
 *      within their RFC lengths.
 *   2/3: lines_split() on the data as a logfmt/JSON line with a limit of
 *      1024: the parts are numbered 1..n, each ends in '\n', and when
 *      there are several none has another newline.
 *   4/5: lines_redact_line() with a fixed pattern list on the data as a
 *      logfmt/JSON line: returns >= 0 and, when 0, copies it unchanged.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "sfrelay/lines.h"
#include "sfrelay/syslog_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "invariant broken: %s\n", what);
		abort();
	}
}

static void
check_field(const char *p, size_t n, size_t max, const char *what)
{
	check(n >= 1 && n <= max, what);
	for (size_t i = 0; i < n; i++)
		check((unsigned char)p[i] >= 33 && (unsigned char)p[i] <= 126,
		      what);
}

static void
parse_all(const char *b, size_t n)
{
	size_t off = 0;
	while (off < n) {
		struct syslog_parsed p;
		long r = syslog_frame_parse(b + off, n - off, &p);
		if (r <= 0)
			return;
		check((size_t)r <= n - off, "parse consumed past the input");
		check(p.msg >= b + off && p.msg + p.msg_len <= b + off + r,
		      "msg outside the frame");
		check(p.pri >= 0 && p.pri <= 191, "pri range");
		off += (size_t)r;
	}
}

static void
round_trip(const char *d, size_t n)
{
	const char *f[4] = {"", "", "", ""};
	size_t start = 0, k = 0;
	char *copy = malloc(n + 1);
	memcpy(copy, d, n);
	copy[n] = '\0';
	for (size_t i = 0; i <= n && k < 4; i++)
		if (i == n || copy[i] == '\0') {
			f[k++] = copy + start;
			start = i + 1;
		}
	const char *msg = start <= n ? copy + start : "";
	size_t mlen = start <= n ? n - start : 0;
	static const char ts[] = "2026-11-26T19:27:53.123456Z";
	struct syslog_header h = {(int)(n % 40) - 8, (int)(n % 11) - 2, f[0],
				  f[1], f[2], f[3]};
	struct evbuffer *b = evbuffer_new();
	long len = syslog_frame(b, &h, ts, msg, mlen, 1);
	check(len > 0, "frame failed");
	check((size_t)len == syslog_frame_len(&h, ts, msg, mlen, 1),
	      "frame_len disagrees");
	const char *out = (const char *)evbuffer_pullup(b, -1);
	struct syslog_parsed p;
	check(syslog_frame_parse(out, (size_t)len, &p) == len,
	      "own frame not parsed whole");
	size_t want = mlen > 0 && msg[mlen - 1] == '\n' ? mlen - 1 : mlen;
	check(p.msg_len == want && memcmp(p.msg, msg, want) == 0,
	      "message changed");
	check_field(p.hostname, p.hostname_len, SYSLOG_HOSTNAME_MAX, "host");
	check_field(p.app_name, p.app_name_len, SYSLOG_APP_NAME_MAX, "app");
	check_field(p.procid, p.procid_len, SYSLOG_PROCID_MAX, "procid");
	check_field(p.msgid, p.msgid_len, SYSLOG_MSGID_MAX, "msgid");
	evbuffer_free(b);
	free(copy);
}

struct count {
	unsigned next;
};

static int
on_part(void *arg, const char *part, size_t plen, unsigned k, unsigned n)
{
	struct count *c = arg;
	check(k == ++c->next && k <= n, "part numbering");
	check(plen >= 1 && part[plen - 1] == '\n', "part ends in newline");
	/* A line within the limit passes through as it is. */
	check(n == 1 || memchr(part, '\n', plen - 1) == NULL,
	      "newline inside a part");
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *d = (const char *)data + 1;
	size_t n = size - 1;
	switch (data[0] % 6) {
	case 0:
		parse_all(d, n);
		break;
	case 1:
		round_trip(d, n);
		break;
	case 2:
	case 3: {
		struct count c = {0};
		enum format_kind kind = data[0] % 6 == 2 ? FORMAT_LOGFMT
							 : FORMAT_JSON;
		int parts = lines_split(kind, d, n, 1024, on_part, &c);
		check(parts == -1 || (unsigned)parts == c.next, "part count");
		break;
	}
	default: {
		const char *pats[] = {"password", "*token*", "a?c"};
		struct lines_redact *r = lines_redact_new(pats, 3);
		struct evbuffer *b = evbuffer_new();
		enum format_kind kind = data[0] % 6 == 4 ? FORMAT_LOGFMT
							 : FORMAT_JSON;
		int rc = lines_redact_line(r, kind, d, n, b);
		check(rc >= 0, "redact failed");
		if (rc == 0)
			check(evbuffer_get_length(b) == n &&
				      (n == 0 ||
				       memcmp(evbuffer_pullup(b, -1), d, n) ==
					       0),
			      "unredacted line changed");
		evbuffer_free(b);
		lines_redact_free(r);
		break;
	}
	}
	return 0;
}
