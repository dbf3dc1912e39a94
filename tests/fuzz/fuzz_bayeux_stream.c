/*
 * Fuzz harness for the streaming Bayeux decoder (bayeux_stream.h).
 *
 * Input: a response body, any bytes. It is decoded four times:
 *   A  fed whole, max_msg_bytes 1 MiB
 *   B  fed in chunks, max_msg_bytes 1 MiB
 *   C  fed whole, a small max_msg_bytes taken from the first byte
 *   D  fed in chunks, the same small max_msg_bytes
 * Chunk sizes come from a generator seeded with the input's first bytes.
 * Promises checked, any broken one aborts (libFuzzer reports a crash):
 *   - A and B, and C and D, agree exactly: same success, same messages
 *     (every field, payload bytes included), same error text;
 *   - C's messages are a prefix of A's (a smaller limit only stops
 *     earlier), and C fails with a max_msg_bytes error when A succeeds
 *     but C does not;
 *   - every message: non-empty channel, kind META exactly for /meta/,
 *     ev.channel == channel, ev.position "" or decimal text, payload
 *     strict JSON (an independent checker below, not the decoder's) that
 *     format_event() takes;
 *   - against bayeux_decode(): a body the stream accepts is strict JSON
 *     and bayeux_decode accepts it too, with the same messages (payloads
 *     equal as JSON values). When bayeux_decode accepts a strict body the
 *     stream accepts it too. The one difference bayeux_stream.h documents
 *     for such bodies is let through, detected explicitly: a replayId
 *     integer beyond int64/uint64, which json-c clamps.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "sfrelay/bayeux_msg.h"
#include "sfrelay/bayeux_stream.h"
#include "sfrelay/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HARNESS "bayeux_stream"
#define BIG_MAX ((size_t)1 << 20)

static void broken(const char *what) __attribute__((noreturn));

static void
broken(const char *what)
{
	fprintf(stderr, "%s: invariant broken: %s\n", HARNESS, what);
	abort();
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n == 0 ? 1 : n);

	if (p == NULL)
		abort();
	return p;
}

static char *
xstrdup(const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = xmalloc(strlen(s) + 1);
	strcpy(d, s);
	return d;
}

/* ---- an independent strict JSON checker ---------------------------------- */

/* RFC 8259 as bayeux_stream.h reads it (bytes 0x80-0xff in strings not
 * checked, any \uXXXX taken); a value deeper than max_level (the top
 * value is level 1) is refused. Recursion is bounded by max_level. */
struct oracle {
	const unsigned char *s;
	size_t n;
	size_t i;
	int max_level;
};

static int
o_peek(const struct oracle *o)
{
	return o->i < o->n ? o->s[o->i] : -1;
}

static void
o_ws(struct oracle *o)
{
	int c;

	while ((c = o_peek(o)) == ' ' || c == '\t' || c == '\n' || c == '\r')
		o->i++;
}

static int
o_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int
o_string(struct oracle *o)
{
	int c, k;

	if (o_peek(o) != '"')
		return 0;
	o->i++;
	while ((c = o_peek(o)) >= 0) {
		o->i++;
		if (c == '"')
			return 1;
		if (c < 0x20)
			return 0;
		if (c != '\\')
			continue;
		c = o_peek(o);
		o->i++;
		if (c == 'u') {
			for (k = 0; k < 4; k++) {
				c = o_peek(o);
				o->i++;
				if (!o_digit(c) && !(c >= 'a' && c <= 'f') &&
				    !(c >= 'A' && c <= 'F'))
					return 0;
			}
		} else if (c <= 0 || strchr("\"\\/bfnrt", c) == NULL) {
			return 0;
		}
	}
	return 0;
}

static int
o_digits(struct oracle *o)
{
	size_t start = o->i;

	while (o_digit(o_peek(o)))
		o->i++;
	return o->i > start;
}

static int
o_number(struct oracle *o)
{
	if (o_peek(o) == '-')
		o->i++;
	if (o_peek(o) == '0')
		o->i++;
	else if (o_peek(o) >= '1' && o_peek(o) <= '9')
		o_digits(o);
	else
		return 0;
	if (o_peek(o) == '.') {
		o->i++;
		if (!o_digits(o))
			return 0;
	}
	if (o_peek(o) == 'e' || o_peek(o) == 'E') {
		o->i++;
		if (o_peek(o) == '+' || o_peek(o) == '-')
			o->i++;
		if (!o_digits(o))
			return 0;
	}
	return 1;
}

static int
o_word(struct oracle *o, const char *w)
{
	size_t n = strlen(w);

	if (o->n - o->i < n || memcmp(o->s + o->i, w, n) != 0)
		return 0;
	o->i += n;
	return 1;
}

static int
o_value(struct oracle *o, int level)
{
	int close;

	if (level > o->max_level)
		return 0;
	o_ws(o);
	switch (o_peek(o)) {
	case '{':
	case '[':
		close = o_peek(o) == '{' ? '}' : ']';
		o->i++;
		o_ws(o);
		if (o_peek(o) == close) {
			o->i++;
			return 1;
		}
		for (;;) {
			if (close == '}') {
				o_ws(o);
				if (!o_string(o))
					return 0;
				o_ws(o);
				if (o_peek(o) != ':')
					return 0;
				o->i++;
			}
			if (!o_value(o, level + 1))
				return 0;
			o_ws(o);
			if (o_peek(o) == ',') {
				o->i++;
				continue;
			}
			if (o_peek(o) != close)
				return 0;
			o->i++;
			return 1;
		}
	case '"':
		return o_string(o);
	case 't':
		return o_word(o, "true");
	case 'f':
		return o_word(o, "false");
	case 'n':
		return o_word(o, "null");
	default:
		return o_number(o);
	}
}

static int
strict_json(const char *s, size_t n, int max_level)
{
	struct oracle o = {(const unsigned char *)s, n, 0, max_level};

	if (!o_value(&o, 1))
		return 0;
	o_ws(&o);
	return o.i == n;
}

/* ---- recorded runs --------------------------------------------------------
 */

struct run {
	struct bayeux_msg *v;
	size_t n;
	size_t cap;
	int rc;
	char err[256];
};

static void
run_push(struct run *r, const struct bayeux_msg *m)
{
	struct bayeux_msg *d;
	char *payload;

	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 8;
		r->v = realloc(r->v, r->cap * sizeof(*r->v));
		if (r->v == NULL)
			abort();
	}
	d = &r->v[r->n++];
	*d = *m;
	payload = xmalloc(m->ev.payload_len);
	memcpy(payload, m->ev.payload, m->ev.payload_len);
	d->ev.payload = payload;
	d->channel = xstrdup(m->channel);
	d->client_id = xstrdup(m->client_id);
	d->error = xstrdup(m->error);
	d->subscription = xstrdup(m->subscription);
	d->failure_reason = xstrdup(m->failure_reason);
	d->ev.channel = xstrdup(m->ev.channel);
	d->ev.position = xstrdup(m->ev.position);
	d->ev.event_type = xstrdup(m->ev.event_type);
	d->ev.created = xstrdup(m->ev.created);
}

static void
run_free(struct run *r)
{
	size_t i;

	for (i = 0; i < r->n; i++) {
		struct bayeux_msg *m = &r->v[i];

		free((char *)(uintptr_t)m->channel);
		free((char *)(uintptr_t)m->client_id);
		free((char *)(uintptr_t)m->error);
		free((char *)(uintptr_t)m->subscription);
		free((char *)(uintptr_t)m->failure_reason);
		free((char *)(uintptr_t)m->ev.channel);
		free((char *)(uintptr_t)m->ev.position);
		free((char *)(uintptr_t)m->ev.event_type);
		free((char *)(uintptr_t)m->ev.created);
		free((char *)(uintptr_t)m->ev.payload);
	}
	free(r->v);
}

static int
is_decimal_text(const char *s)
{
	size_t i = s[0] == '-' ? 1 : 0;

	if (s[i] == '\0')
		return 0;
	for (; s[i] != '\0'; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

struct ctx {
	struct run *run;
	struct evbuffer *line;
};

static int
record_cb(void *arg, const struct bayeux_msg *m)
{
	struct ctx *c = arg;

	if (m == NULL || m->channel == NULL || m->channel[0] == '\0')
		broken("message without a non-empty channel");
	if ((m->kind == BAYEUX_MSG_META) !=
	    (strncmp(m->channel, "/meta/", 6) == 0))
		broken("kind disagrees with the /meta/ prefix");
	if (m->ev.channel == NULL || strcmp(m->ev.channel, m->channel) != 0)
		broken("ev.channel is not the channel");
	if (m->ev.position == NULL ||
	    (m->ev.position[0] != '\0' && !is_decimal_text(m->ev.position)))
		broken("position is neither empty nor decimal text");
	if (m->ev.payload == NULL)
		broken("payload is NULL");
	if (m->kind == BAYEUX_MSG_EVENT) {
		if (!strict_json(m->ev.payload, m->ev.payload_len, 64))
			broken("payload is not strict JSON");
		if (format_event(FORMAT_LOGFMT, &m->ev, c->line) != 0)
			broken("format_event() does not take the payload");
		(void)evbuffer_drain(c->line, evbuffer_get_length(c->line));
	}
	run_push(c->run, m);
	return 0;
}

/* Chunk sizes from a generator seeded with the input's first bytes. */
static size_t
next_chunk(uint64_t *st, size_t left)
{
	uint64_t x = *st;
	size_t n;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*st = x;
	n = 1 + (size_t)(x % 97);
	return n > left ? left : n;
}

static void
stream_run(const char *body, size_t len, size_t max_msg, int chunked,
           struct run *r, struct evbuffer *line)
{
	struct ctx c = {r, line};
	struct bayeux_stream *s = bayeux_stream_new(max_msg, record_cb, &c);
	uint64_t st = 0x9e3779b97f4a7c15u;
	size_t off = 0, n, i;
	int rc = 0;

	if (s == NULL)
		abort();
	for (i = 0; i < len && i < 8; i++)
		st = st * 131 + (unsigned char)body[i];
	if (st == 0)
		st = 1;
	while (off < len && rc == 0) {
		n = chunked ? next_chunk(&st, len - off) : len - off;
		rc = bayeux_stream_feed(s, body + off, n);
		off += n;
	}
	if (rc == 0)
		rc = bayeux_stream_finish(s);
	r->rc = rc;
	snprintf(r->err, sizeof(r->err), "%s", bayeux_stream_errstr(s));
	if ((rc != 0) != (r->err[0] != '\0'))
		broken("error text and result disagree");
	if (bayeux_stream_count(s) != r->n)
		broken("count is not the number of messages delivered");
	if (bayeux_stream_buffer_capacity(s) > 2 * max_msg + 512)
		broken("buffers exceed the bound");
	bayeux_stream_free(s);
}

static int
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	       (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Every field but the payload and the position. */
static int
same_fields(const struct bayeux_msg *a, const struct bayeux_msg *b)
{
	return a->kind == b->kind && same_str(a->channel, b->channel) &&
	       a->successful == b->successful &&
	       same_str(a->client_id, b->client_id) &&
	       same_str(a->error, b->error) &&
	       same_str(a->subscription, b->subscription) &&
	       same_str(a->failure_reason, b->failure_reason) &&
	       a->has_advice == b->has_advice &&
	       a->advice.reconnect == b->advice.reconnect &&
	       a->advice.interval_ms == b->advice.interval_ms &&
	       a->advice.timeout_ms == b->advice.timeout_ms &&
	       a->advice.multiple_clients == b->advice.multiple_clients &&
	       a->replay_supported == b->replay_supported &&
	       a->ev.src == b->ev.src &&
	       same_str(a->ev.channel, b->ev.channel) &&
	       same_str(a->ev.event_type, b->ev.event_type) &&
	       same_str(a->ev.created, b->ev.created);
}

static int
same_msg_bytes(const struct bayeux_msg *a, const struct bayeux_msg *b)
{
	return same_fields(a, b) && same_str(a->ev.position, b->ev.position) &&
	       a->ev.payload_len == b->ev.payload_len &&
	       memcmp(a->ev.payload, b->ev.payload, a->ev.payload_len) == 0;
}

static void
expect_identical(const struct run *a, const struct run *b, const char *what)
{
	size_t i;

	if (a->rc != b->rc || a->n != b->n || strcmp(a->err, b->err) != 0)
		broken(what);
	for (i = 0; i < a->n; i++)
		if (!same_msg_bytes(&a->v[i], &b->v[i]))
			broken(what);
}

/* ---- against bayeux_decode ------------------------------------------------
 */

static json_object *
parse_json(const char *s, size_t n)
{
	struct json_tokener *tok = json_tokener_new_ex(128);
	json_object *o;

	if (tok == NULL)
		abort();
	o = json_tokener_parse_ex(tok, s, (int)n);
	if (json_tokener_get_error(tok) == json_tokener_continue)
		o = json_tokener_parse_ex(tok, "", 1);
	if (json_tokener_get_error(tok) != json_tokener_success)
		broken("json-c cannot parse a payload");
	json_tokener_free(tok);
	return o;
}

static int
same_value(const struct bayeux_msg *a, const struct bayeux_msg *b)
{
	json_object *x = parse_json(a->ev.payload, a->ev.payload_len);
	json_object *y = parse_json(b->ev.payload, b->ev.payload_len);
	int eq = json_object_equal(x, y);

	json_object_put(x);
	json_object_put(y);
	return eq;
}

/* The documented replayId difference: the stream kept an integer json-c
 * can only hold clamped, and json-c's text is that clamp. */
static int
clamped_replay(const char *stream_pos, const char *ref_pos)
{
	char *end;

	if (!is_decimal_text(stream_pos))
		return 0;
	errno = 0;
	if (stream_pos[0] == '-') {
		(void)strtoll(stream_pos, &end, 10);
		return errno == ERANGE &&
		       strcmp(ref_pos, "-9223372036854775808") == 0;
	}
	(void)strtoull(stream_pos, &end, 10);
	return errno == ERANGE && strcmp(ref_pos, "18446744073709551615") == 0;
}

static void
compare_with_reference(const char *body, size_t len, const struct run *a)
{
	char err[256];
	struct bayeux_batch *b = bayeux_decode(body, len, err, sizeof(err));
	int strict = strict_json(body, len, 64);
	size_t i;
	const struct bayeux_msg *m;

	if (a->rc == 0 && !strict)
		broken("the stream accepts a body that is not strict JSON");
	if (b == NULL) {
		if (a->rc == 0)
			broken("the stream accepts a body bayeux_decode "
			       "refuses");
		return;
	}
	if (!strict) {
		/* Taken through json-c's leniency (a raw control byte in a
		 * string, for one): the stream refused it, as it must. */
		bayeux_batch_free(b);
		return;
	}
	if (a->rc != 0)
		broken(
		    "bayeux_decode accepts a strict body the stream refuses");
	if (bayeux_batch_count(b) != a->n)
		broken("message counts differ from bayeux_decode");
	for (i = 0; i < a->n; i++) {
		m = bayeux_batch_msg(b, i);
		if (!same_fields(m, &a->v[i]))
			broken("a field differs from bayeux_decode");
		if (strcmp(m->ev.position, a->v[i].ev.position) != 0 &&
		    !clamped_replay(a->v[i].ev.position, m->ev.position))
			broken("position differs from bayeux_decode");
		if (!same_value(m, &a->v[i]))
			broken("payload differs from bayeux_decode");
	}
	bayeux_batch_free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct run a = {0}, b = {0}, c = {0}, d = {0};
	struct evbuffer *line = evbuffer_new();
	size_t small = 16 + (size > 0 ? (size_t)data[0] * 8 : 0);
	size_t i;

	if (line == NULL)
		abort();
	stream_run(body, size, BIG_MAX, 0, &a, line);
	stream_run(body, size, BIG_MAX, 1, &b, line);
	expect_identical(&a, &b, "whole and chunked runs differ");
	stream_run(body, size, small, 0, &c, line);
	stream_run(body, size, small, 1, &d, line);
	expect_identical(&c, &d, "whole and chunked runs differ (small max)");

	/* A smaller limit only stops earlier. */
	if (c.n > a.n)
		broken("more messages with a smaller max_msg_bytes");
	for (i = 0; i < c.n; i++)
		if (!same_msg_bytes(&a.v[i], &c.v[i]))
			broken("a smaller max_msg_bytes changed a message");
	if (a.rc == 0 && c.rc != 0 && strstr(c.err, "max_msg_bytes") == NULL)
		broken("a smaller max_msg_bytes failed for another reason");
	if (a.rc != 0 && c.rc == 0)
		broken("a smaller max_msg_bytes let a bad body through");

	compare_with_reference(body, size, &a);

	run_free(&a);
	run_free(&b);
	run_free(&c);
	run_free(&d);
	evbuffer_free(line);
	return 0;
}
