/* RFC 5424 / RFC 6587 frames (see syslog_frame.h). */
#include "sfrelay/syslog_frame.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

static int
clamp(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* Days since 1970-01-01 -> civil date (proleptic Gregorian). */
static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t yy = (int64_t)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = yy + (*m <= 2);
}

int
syslog_timestamp(char *buf, size_t len, int64_t sec, long usec)
{
	if (len < SYSLOG_TIMESTAMP_LEN + 1) {
		if (len > 0)
			buf[0] = '\0';
		return -1;
	}
	/* Bounds keep every intermediate far from overflow. */
	if (usec < 0 || usec > 999999 || sec < -62167219200LL ||
	    sec > 253402300799LL) {
		snprintf(buf, len, "-");
		return -1;
	}
	int64_t days = sec >= 0 ? sec / 86400 : -((-sec + 86399) / 86400);
	int64_t rem = sec - days * 86400;
	int64_t y;
	unsigned m, d;
	civil_from_days(days, &y, &m, &d);
	snprintf(buf, len, "%04d-%02u-%02uT%02d:%02d:%02d.%06ldZ", (int)y, m,
		 d, (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60),
		 usec);
	return 0;
}

/* Length of a header field once sanitized. */
static size_t
field_len(const char *s, size_t max)
{
	if (s == NULL || s[0] == '\0')
		return 1;
	size_t n = strlen(s);
	return n < max ? n : max;
}

/* Writes a sanitized header field into dst (field_len bytes). */
static void
field_put(char *dst, const char *s, size_t max)
{
	size_t n = field_len(s, max);
	if (s == NULL || s[0] == '\0') {
		dst[0] = '-';
		return;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[i] = c >= 33 && c <= 126 ? (char)c : '_';
	}
}

static size_t
digits(size_t n)
{
	size_t d = 1;
	while (n >= 10) {
		n /= 10;
		d++;
	}
	return d;
}

static size_t
pri_of(const struct syslog_header *h)
{
	return (size_t)(clamp(h->facility, 0, 23) * 8 +
			clamp(h->severity, 0, 7));
}

/* The RFC 5424 message length (no count prefix) for a body of len. */
static size_t
message_len(const struct syslog_header *h, const char *timestamp, size_t len)
{
	return 1 + digits(pri_of(h)) + 2 + 1 +
	       field_len(timestamp, SYSLOG_TIMESTAMP_LEN + 8) + 1 +
	       field_len(h->hostname, SYSLOG_HOSTNAME_MAX) + 1 +
	       field_len(h->app_name, SYSLOG_APP_NAME_MAX) + 1 +
	       field_len(h->procid, SYSLOG_PROCID_MAX) + 1 +
	       field_len(h->msgid, SYSLOG_MSGID_MAX) + 3 + len;
}

static size_t
msg_body_len(const char *msg, size_t len)
{
	return len > 0 && msg[len - 1] == '\n' ? len - 1 : len;
}

size_t
syslog_frame_len(const struct syslog_header *h, const char *timestamp,
		 const char *msg, size_t len, int counted)
{
	size_t m = message_len(h, timestamp, msg_body_len(msg, len));
	return counted ? digits(m) + 1 + m : m;
}

long
syslog_frame(struct evbuffer *out, const struct syslog_header *h,
	     const char *timestamp, const char *msg, size_t len, int counted)
{
	size_t body = msg_body_len(msg, len);
	size_t m = message_len(h, timestamp, body);
	size_t total = counted ? digits(m) + 1 + m : m;
	struct evbuffer_iovec v;
	if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) < 1 ||
	    v.iov_len < total)
		return -1;
	char *p = v.iov_base;
	if (counted)
		p += sprintf(p, "%zu ", m);
	p += sprintf(p, "<%zu>1 ", pri_of(h));
	const struct {
		const char *s;
		size_t max;
	} f[] = {
		{timestamp, SYSLOG_TIMESTAMP_LEN + 8},
		{h->hostname, SYSLOG_HOSTNAME_MAX},
		{h->app_name, SYSLOG_APP_NAME_MAX},
		{h->procid, SYSLOG_PROCID_MAX},
		{h->msgid, SYSLOG_MSGID_MAX},
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		field_put(p, f[i].s, f[i].max);
		p += field_len(f[i].s, f[i].max);
		*p++ = ' ';
	}
	memcpy(p, "- ", 2);
	p += 2;
	if (body > 0)
		memcpy(p, msg, body);
	p += body;
	v.iov_len = (size_t)(p - (char *)v.iov_base);
	if (v.iov_len != total || evbuffer_commit_space(out, &v, 1) != 0)
		return -1;
	return (long)total;
}

char *
syslog_msgid_of_line(const char *line, size_t len, char *buf, size_t buflen)
{
	const char *v = NULL;
	size_t n = 0;
	if (len >= 3 && memcmp(line, "at=", 3) == 0) {
		v = line + 3;
		while (3 + n < len && line[3 + n] != ' ' && line[3 + n] != '\n')
			n++;
	} else if (len >= 7 && memcmp(line, "{\"at\":\"", 7) == 0) {
		v = line + 7;
		while (7 + n < len && line[7 + n] != '"' && line[7 + n] != '\\')
			n++;
	}
	if (buflen == 0)
		return buf;
	if (n > SYSLOG_MSGID_MAX)
		n = SYSLOG_MSGID_MAX;
	if (n + 1 > buflen)
		n = buflen - 1;
	if (v == NULL || n == 0) {
		snprintf(buf, buflen, "-");
		return buf;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		buf[i] = c >= 33 && c <= 126 ? (char)c : '_';
	}
	buf[n] = '\0';
	return buf;
}

/* ---- parsing ------------------------------------------------------------ */

/* Reads a header token of 1..max PRINTUSASCII bytes ending in a space. */
static int
token(const char **pp, const char *end, size_t max, const char **tok,
      size_t *tlen)
{
	const char *p = *pp, *s = p;
	while (p < end && *p != ' ') {
		if ((unsigned char)*p < 33 || (unsigned char)*p > 126)
			return -1;
		p++;
	}
	size_t n = (size_t)(p - s);
	if (p >= end || n == 0 || n > max)
		return -1;
	*tok = s;
	*tlen = n;
	*pp = p + 1;
	return 0;
}

long
syslog_frame_parse(const char *buf, size_t n, struct syslog_parsed *sp)
{
	size_t i = 0, m = 0;
	memset(sp, 0, sizeof(*sp));
	while (i < n && buf[i] >= '0' && buf[i] <= '9') {
		if (i == 0 && buf[i] == '0')
			return -1; /* no leading zeros, no empty frame */
		if (i >= 9)
			return -1;
		m = m * 10 + (size_t)(buf[i] - '0');
		i++;
	}
	if (i == n)
		return 0;
	if (i == 0 || buf[i] != ' ')
		return -1;
	i++;
	if (n - i < m)
		return 0;
	const char *p = buf + i, *end = buf + i + m;
	if (p >= end || *p++ != '<')
		return -1;
	int pri = 0, nd = 0;
	while (p < end && *p >= '0' && *p <= '9' && nd < 4) {
		pri = pri * 10 + (*p++ - '0');
		nd++;
	}
	if (nd == 0 || nd > 3 || pri > 191 || (nd > 1 && p[-nd] == '0'))
		return -1;
	if (end - p < 3 || memcmp(p, ">1 ", 3) != 0)
		return -1;
	p += 3;
	sp->pri = pri;
	if (token(&p, end, SYSLOG_TIMESTAMP_LEN + 8, &sp->timestamp,
		  &sp->timestamp_len) != 0 ||
	    token(&p, end, SYSLOG_HOSTNAME_MAX, &sp->hostname,
		  &sp->hostname_len) != 0 ||
	    token(&p, end, SYSLOG_APP_NAME_MAX, &sp->app_name,
		  &sp->app_name_len) != 0 ||
	    token(&p, end, SYSLOG_PROCID_MAX, &sp->procid, &sp->procid_len) !=
		    0 ||
	    token(&p, end, SYSLOG_MSGID_MAX, &sp->msgid, &sp->msgid_len) != 0)
		return -1;
	/* Only NILVALUE structured data is written, and read. */
	if (p >= end || *p != '-')
		return -1;
	sp->sd = p;
	sp->sd_len = 1;
	p++;
	if (p < end) {
		if (*p != ' ')
			return -1;
		p++;
	}
	sp->msg = p;
	sp->msg_len = (size_t)(end - p);
	return (long)(i + m);
}
