/*
 * Fuzz harness for the line formatter (format.h): format_event(),
 * format_event_mem() and format_logfmt_value().
 *
 * Input layout:
 *   byte 0, flags:
 *     bit 0  FORMAT_JSON instead of FORMAT_LOGFMT
 *     bit 1  EVENT_SRC_POLL instead of EVENT_SRC_STREAM
 *     bit 2  event_type set
 *     bit 3  created set
 *     bit 4  header strings from the input (below) instead of fixed ones
 *     bit 5  test format_logfmt_value() on the rest instead
 *     bits 6-7  how format_event_mem()'s buffer size is chosen, from
 *               the line length n and the input's last byte b (read,
 *               not taken off the payload): 0: n - 2 + b % 4 (the edge),
 *               1: b, 2: n * b / 256 (too small), 3: n + b (room)
 *   with bit 4: channel, position, event_type, created as four
 *   NUL-terminated strings (missing ones are "");
 *   the rest: the payload (or the logfmt value).
 *
 * format_event() invariants, each an abort() (after a message) when broken:
 *   - it returns 0 or 1;
 *   - the line ends in exactly one '\n'; no other byte below 0x20, no DEL
 *     and no C1 control (U+0080-U+009F) anywhere: format.h promises one
 *     line, and format.c escapes all of these because readers differ on
 *     what breaks a line (U+0085 does for some);
 *   - the line is valid UTF-8 (RFC 3629);
 *   - FORMAT_JSON: the line without its '\n' is one JSON object for
 *     json-c in strict mode;
 *   - a return of 0 means the payload was valid JSON, so json-c (default
 *     flags) must accept it too. Only that direction is checked: json-c
 *     is lenient in places (trailing commas, "01", "1.", NaN, even with
 *     JSON_TOKENER_STRICT) where the formatter is strict on purpose, so
 *     "json-c accepts" proves nothing. The one documented leniency of the
 *     formatter, raw control bytes inside strings, json-c shares except
 *     for NUL (see fuzz_event()).
 *   - format_event_mem() into a buffer of exactly the chosen size (so
 *     ASan sees a write past it) returns FORMAT_NO_ROOM exactly when the
 *     line is longer than the buffer, and otherwise the same code,
 *     length and bytes as format_event().
 *
 * format_logfmt_value() invariants:
 *   - the output is one token: either bare (non-empty; no space, '=',
 *     '"', '\\' or control byte) and then equal to the input after UTF-8
 *     repair, or a quoted string that the small reader below unquotes
 *     back to the input after UTF-8 repair;
 *   - for valid UTF-8 input that is exactly the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "sfrelay/format.h"
#include "sfrelay/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HARNESS "format_event"

/* Reports which promise broke, then aborts: libFuzzer records the input. */
static void broken(const char *what) __attribute__((noreturn));

static void
broken(const char *what)
{
	fprintf(stderr, "%s: invariant broken: %s\n", HARNESS, what);
	abort();
}

#define F_JSON 0x01
#define F_POLL 0x02
#define F_TYPE 0x04
#define F_CREATED 0x08
#define F_HEADER 0x10
#define F_VALUE 0x20
#define F_CAP_SHIFT 6

/* A growable byte string for the reference computations. */
struct bytes {
	unsigned char *p;
	size_t len;
	size_t cap;
};

static void
bytes_put(struct bytes *b, const void *s, size_t n)
{
	if (b->cap - b->len < n) {
		size_t cap = b->cap == 0 ? 64 : b->cap;

		while (cap - b->len < n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (b->p == NULL)
			abort();
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

/*
 * Length of the well-formed UTF-8 sequence at s (1 for ASCII), or 0 when
 * s[0] does not start one. Written from the table in RFC 3629, section 4.
 */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

static int
utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0, len;

	while (i < n) {
		len = utf8_len(s + i, n - i);
		if (len == 0)
			return 0;
		i += len;
	}
	return 1;
}

/* The input with every byte that does not start a well-formed sequence
 * replaced by U+FFFD, one per byte, as format.h describes the repair. */
static void
utf8_repair(struct bytes *out, const unsigned char *s, size_t n)
{
	size_t i = 0, len;

	while (i < n) {
		len = utf8_len(s + i, n - i);
		if (len == 0) {
			bytes_put(out, "\xef\xbf\xbd", 3);
			i++;
		} else {
			bytes_put(out, s + i, len);
			i += len;
		}
	}
}

/* Code point of the well-formed sequence of len bytes at s. */
static unsigned long
utf8_decode(const unsigned char *s, size_t len)
{
	unsigned long cp;

	if (len == 1)
		return s[0];
	cp = s[0] & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
	for (size_t i = 1; i < len; i++)
		cp = (cp << 6) | (s[i] & 0x3f);
	return cp;
}

/* Every byte of the line but its last is printable: no C0, no DEL, no
 * C1, valid UTF-8; the last is the one '\n'. */
static void
check_line(const unsigned char *s, size_t n)
{
	size_t i = 0, len;

	if (n == 0 || s[n - 1] != '\n')
		broken("line does not end in '\\n'");
	n--;
	while (i < n) {
		if (s[i] < 0x20 || s[i] == 0x7f)
			broken("line holds a C0 control byte or DEL before its "
			       "end");
		len = utf8_len(s + i, n - i);
		if (len == 0)
			broken("line is not valid UTF-8");
		if (len == 2 && utf8_decode(s + i, len) <= 0x9f)
			broken("line holds a C1 control character");
		i += len;
	}
}

/* Whether json-c takes exactly s[0..n) (trailing JSON whitespace aside)
 * as one document, with the given flags and depth. */
static int
json_c_accepts(const char *s, size_t n, int depth, int flags, int want_obj)
{
	struct json_tokener *tok = json_tokener_new_ex(depth);
	json_object *o;
	enum json_tokener_error jerr;
	size_t end;
	int ok;

	if (tok == NULL)
		abort();
	json_tokener_set_flags(tok, flags);
	o = json_tokener_parse_ex(tok, s, (int)n);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue) {
		/* A bare top-level number needs an explicit end of input. */
		json_object_put(o);
		o = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		ok = jerr == json_tokener_success;
	} else {
		ok = jerr == json_tokener_success;
		end = json_tokener_get_parse_end(tok);
		for (; ok && end < n; end++)
			if (s[end] != ' ' && s[end] != '\t' && s[end] != '\n' &&
			    s[end] != '\r')
				ok = 0;
	}
	if (ok && want_obj && !json_object_is_type(o, json_type_object))
		ok = 0;
	json_object_put(o);
	json_tokener_free(tok);
	return ok;
}

/*
 * Cuts the next NUL-terminated string off the input; "" when it has run
 * out. The copy is owned by the caller.
 */
static char *
take_string(const uint8_t **data, size_t *size)
{
	const uint8_t *nul = memchr(*data, '\0', *size);
	size_t n = nul != NULL ? (size_t)(nul - *data) : *size;
	char *s = malloc(n + 1);

	if (s == NULL)
		abort();
	if (n > 0)
		memcpy(s, *data, n);
	s[n] = '\0';
	*data += nul != NULL ? n + 1 : n;
	*size -= nul != NULL ? n + 1 : n;
	return s;
}

/* The buffer size for format_event_mem(): see bits 6-7 above. */
static size_t
mem_cap(unsigned flags, size_t n, unsigned b)
{
	switch ((flags >> F_CAP_SHIFT) & 3) {
	case 0:
		return n + b % 4 < 2 ? 0 : n + b % 4 - 2;
	case 1:
		return b;
	case 2:
		return n * b / 256;
	default:
		return n + b;
	}
}

/* format_event_mem() against format_event()'s line (n bytes, code rc). */
static void
check_mem(enum format_kind kind, const struct event *ev, unsigned flags,
          unsigned b, const unsigned char *line, size_t n, int rc)
{
	size_t cap = mem_cap(flags, n, b);
	size_t len = 0;
	char *buf = malloc(cap > 0 ? cap : 1);
	int mrc;

	if (buf == NULL)
		abort();
	mrc = format_event_mem(kind, ev, buf, cap, &len);
	if (n > cap) {
		if (mrc != FORMAT_NO_ROOM)
			broken("format_event_mem() did not say FORMAT_NO_ROOM "
			       "for a line longer than its buffer");
	} else if (mrc == FORMAT_NO_ROOM) {
		broken("format_event_mem() said FORMAT_NO_ROOM for a line "
		       "that fits");
	} else if (mrc != rc) {
		broken("format_event_mem() and format_event() returned "
		       "different codes");
	} else if (len != n || memcmp(buf, line, n) != 0) {
		broken("format_event_mem() wrote another line than "
		       "format_event()");
	}
	free(buf);
}

static void
fuzz_event(unsigned flags, const uint8_t *data, size_t size)
{
	char *own[4] = {NULL, NULL, NULL, NULL};
	struct event ev;
	struct evbuffer *out;
	unsigned char *line;
	char *payload;
	size_t n;
	int rc;
	/* Read before the header strings are taken off the input. */
	unsigned last = size > 0 ? data[size - 1] : 0;

	memset(&ev, 0, sizeof(ev));
	ev.src = (flags & F_POLL) ? EVENT_SRC_POLL : EVENT_SRC_STREAM;
	if (flags & F_HEADER) {
		for (int i = 0; i < 4; i++)
			own[i] = take_string(&data, &size);
		ev.channel = own[0];
		ev.position = own[1];
		ev.event_type = own[2];
		ev.created = own[3];
	} else {
		ev.channel = (flags & F_POLL) ? "SetupAuditTrail"
		                              : "/topic/AccountWatch";
		ev.position = "1234";
		ev.event_type = "updated";
		ev.created = "2026-11-26T19:27:53.000Z";
	}
	if (!(flags & F_TYPE))
		ev.event_type = NULL;
	if (!(flags & F_CREATED))
		ev.created = NULL;

	/* A private copy, so ASan sees any read past payload_len. */
	payload = malloc(size > 0 ? size : 1);
	if (payload == NULL)
		abort();
	if (size > 0)
		memcpy(payload, data, size);
	ev.payload = payload;
	ev.payload_len = size;

	out = evbuffer_new();
	if (out == NULL)
		abort();
	rc = format_event((flags & F_JSON) ? FORMAT_JSON : FORMAT_LOGFMT, &ev,
	                  out);
	if (rc != 0 && rc != 1)
		broken("format_event() returned neither 0 nor 1");
	n = evbuffer_get_length(out);
	line = evbuffer_pullup(out, -1);
	if (n == 0 || line == NULL)
		broken("no line was written");
	check_line(line, n);
	check_mem((flags & F_JSON) ? FORMAT_JSON : FORMAT_LOGFMT, &ev, flags,
	          last, line, n, rc);
	if ((flags & F_JSON) && !json_c_accepts((const char *)line, n - 1, 8,
	                                        JSON_TOKENER_STRICT, 1))
		broken("JSON line is not a JSON object (json-c, strict)");
	/*
	 * json-c counts a scalar inside the innermost container as one more
	 * level, the formatter counts containers only: FORMAT_MAX_DEPTH
	 * containers around a scalar need FORMAT_MAX_DEPTH + 1 in json-c.
	 */
	if (rc == 0) {
		/* json-c stops at a raw NUL byte, even inside a string, where
		 * the formatter takes it like any raw control byte (format.c
		 * accepts those on purpose); give json-c another one there. */
		for (size_t i = 0; i < size; i++)
			if (payload[i] == '\0')
				payload[i] = '\x01';
		if (!json_c_accepts(payload, size, FORMAT_MAX_DEPTH + 1, 0, 0))
			broken("format_event() returned 0 for a payload json-c "
			       "rejects");
	}

	evbuffer_free(out);
	free(payload);
	for (int i = 0; i < 4; i++)
		free(own[i]);
}


static void
put_code_point(struct bytes *b, unsigned long cp)
{
	unsigned char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | (cp >> 6));
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else {
		/* \u00XX is all the escaper writes; more would be a bug. */
		broken("quoted logfmt value has a \\u escape above U+00FF");
	}
	bytes_put(b, u, n);
}

/*
 * Reads one quoted logfmt value spanning all of s[0..n): the escapes
 * format.h lists (\\ \" \n \r \t \u00XX) and nothing else; raw '"', '\\'
 * and control bytes are not allowed inside. Aborts on anything else.
 */
static void
logfmt_unquote(struct bytes *out, const unsigned char *s, size_t n)
{
	size_t i = 1;
	int h, l;

	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		broken("quoted logfmt value is not enclosed in quotes");
	n--;
	while (i < n) {
		unsigned char c = s[i];

		if (c == '"' || c < 0x20 || c == 0x7f)
			broken("quoted logfmt value holds a raw quote or "
			       "control byte");
		if (c != '\\') {
			bytes_put(out, &c, 1);
			i++;
			continue;
		}
		if (i + 1 >= n)
			broken("quoted logfmt value ends in a lone backslash");
		switch (s[i + 1]) {
		case '\\':
		case '"':
			bytes_put(out, s + i + 1, 1);
			i += 2;
			break;
		case 'n':
			bytes_put(out, "\n", 1);
			i += 2;
			break;
		case 'r':
			bytes_put(out, "\r", 1);
			i += 2;
			break;
		case 't':
			bytes_put(out, "\t", 1);
			i += 2;
			break;
		case 'u':
			if (n - i < 6 || s[i + 2] != '0' || s[i + 3] != '0')
				broken("quoted logfmt value has a \\u escape "
				       "other than \\u00XX");
			h = text_hex_digit(s[i + 4]);
			l = text_hex_digit(s[i + 5]);
			if (h < 0 || l < 0)
				broken("quoted logfmt value has a bad \\u00XX "
				       "escape");
			put_code_point(out, (unsigned long)(h * 16 + l));
			i += 6;
			break;
		default:
			broken("quoted logfmt value has an unknown escape");
		}
	}
}

static void
fuzz_value(const uint8_t *data, size_t size)
{
	struct bytes want = {NULL, 0, 0}, got = {NULL, 0, 0};
	struct evbuffer *out = evbuffer_new();
	const unsigned char *tok;
	char *copy;
	size_t n;

	if (out == NULL)
		abort();
	copy = malloc(size > 0 ? size : 1);
	if (copy == NULL)
		abort();
	if (size > 0)
		memcpy(copy, data, size);
	if (format_logfmt_value(out, copy, size) != 0)
		broken("format_logfmt_value() failed");
	n = evbuffer_get_length(out);
	tok = evbuffer_pullup(out, -1);
	if (n == 0 || tok == NULL)
		broken("format_logfmt_value() wrote nothing");
	utf8_repair(&want, data, size);
	if (!utf8_valid(tok, n))
		broken("logfmt value is not valid UTF-8");
	if (tok[0] == '"') {
		logfmt_unquote(&got, tok, n);
	} else {
		for (size_t i = 0; i < n; i++) {
			if (tok[i] <= 0x20 || tok[i] == 0x7f || tok[i] == '"' ||
			    tok[i] == '=' || tok[i] == '\\')
				broken("bare logfmt value holds a space, '=', "
				       "quote, backslash or control byte");
			if (tok[i] == 0xc2 && i + 1 < n && tok[i + 1] <= 0x9f)
				broken("bare logfmt value holds a C1 control "
				       "character"); /* a bare C1 control */
		}
		bytes_put(&got, tok, n);
	}
	if (got.len != want.len ||
	    (got.len > 0 && memcmp(got.p, want.p, got.len) != 0))
		broken("logfmt value does not read back as the repaired input");
	if (utf8_valid(data, size) &&
	    (got.len != size || (size > 0 && memcmp(got.p, data, size) != 0)))
		broken("logfmt value of valid UTF-8 does not read back as the "
		       "input");
	free(want.p);
	free(got.p);
	free(copy);
	evbuffer_free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned flags;

	if (size == 0)
		return 0;
	flags = data[0];
	if (flags & F_VALUE)
		fuzz_value(data + 1, size - 1);
	else
		fuzz_event(flags, data + 1, size - 1);
	return 0;
}
