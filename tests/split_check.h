#ifndef SFRELAY_TEST_SPLIT_CHECK_H
#define SFRELAY_TEST_SPLIT_CHECK_H

/*
 * The checks that tests/test_bayeux_stream.c and the libFuzzer harness
 * tests/fuzz/fuzz_bayeux_stream.c both make on the streaming Bayeux
 * decoder (bayeux_stream.h):
 *
 *   - every delivered message keeps the promises of bayeux_msg.h and
 *     bayeux_stream.h, its payload checked by an independent strict JSON
 *     checker (json-c is lenient, so it cannot be the judge);
 *   - a body gives the very same result (messages byte for byte, success,
 *     error text) however it is cut into chunks;
 *   - the stream and bayeux_decode() agree on a strict body, payloads
 *     compared as JSON values.
 *
 * Header-only, every function static inline: the fuzz harness links
 * only the src/ modules, not the test harness. A check returns NULL when
 * the promise holds, else a constant text naming the broken one; the
 * caller fails in its own way (cmocka's fail_msg, or abort for the
 * fuzzer). Memory exhaustion aborts.
 */

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "sfrelay/bayeux_msg.h"
#include "sfrelay/bayeux_stream.h"

/* ---- an independent strict JSON checker ---------------------------------- */

/*
 * RFC 8259 as bayeux_stream.h reads it: whitespace is space, tab, LF, CR;
 * strings refuse raw bytes below 0x20 and take any \uXXXX (bytes
 * 0x80-0xff are not checked as UTF-8); numbers follow the grammar
 * exactly. A value deeper than max_level (the top value is level 1, as
 * json-c counts) is refused, which also bounds the recursion.
 */
struct split_json {
	const unsigned char *s;
	size_t n;
	size_t i;
	int max_level;
};

static inline int
split_json_peek(const struct split_json *o)
{
	return o->i < o->n ? o->s[o->i] : -1;
}

static inline void
split_json_ws(struct split_json *o)
{
	int c;

	while ((c = split_json_peek(o)) == ' ' || c == '\t' || c == '\n' ||
	       c == '\r')
		o->i++;
}

static inline int
split_json_is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static inline int
split_json_string(struct split_json *o)
{
	int c, k;

	if (split_json_peek(o) != '"')
		return 0;
	o->i++;
	while ((c = split_json_peek(o)) >= 0) {
		o->i++;
		if (c == '"')
			return 1;
		if (c < 0x20)
			return 0;
		if (c != '\\')
			continue;
		c = split_json_peek(o);
		o->i++;
		if (c == 'u') {
			for (k = 0; k < 4; k++) {
				c = split_json_peek(o);
				o->i++;
				if (!split_json_is_digit(c) &&
				    !(c >= 'a' && c <= 'f') &&
				    !(c >= 'A' && c <= 'F'))
					return 0;
			}
		} else if (c <= 0 || strchr("\"\\/bfnrt", c) == NULL) {
			return 0;
		}
	}
	return 0;
}

static inline int
split_json_digits(struct split_json *o)
{
	size_t start = o->i;

	while (split_json_is_digit(split_json_peek(o)))
		o->i++;
	return o->i > start;
}

static inline int
split_json_number(struct split_json *o)
{
	if (split_json_peek(o) == '-')
		o->i++;
	if (split_json_peek(o) == '0')
		o->i++;
	else if (split_json_peek(o) >= '1' && split_json_peek(o) <= '9')
		split_json_digits(o);
	else
		return 0;
	if (split_json_peek(o) == '.') {
		o->i++;
		if (!split_json_digits(o))
			return 0;
	}
	if (split_json_peek(o) == 'e' || split_json_peek(o) == 'E') {
		o->i++;
		if (split_json_peek(o) == '+' || split_json_peek(o) == '-')
			o->i++;
		if (!split_json_digits(o))
			return 0;
	}
	return 1;
}

static inline int
split_json_word(struct split_json *o, const char *w)
{
	size_t n = strlen(w);

	if (o->n - o->i < n || memcmp(o->s + o->i, w, n) != 0)
		return 0;
	o->i += n;
	return 1;
}

static inline int
split_json_value(struct split_json *o, int level)
{
	int close;

	if (level > o->max_level)
		return 0;
	split_json_ws(o);
	switch (split_json_peek(o)) {
	case '{':
	case '[':
		close = split_json_peek(o) == '{' ? '}' : ']';
		o->i++;
		split_json_ws(o);
		if (split_json_peek(o) == close) {
			o->i++;
			return 1;
		}
		for (;;) {
			if (close == '}') {
				split_json_ws(o);
				if (!split_json_string(o))
					return 0;
				split_json_ws(o);
				if (split_json_peek(o) != ':')
					return 0;
				o->i++;
			}
			if (!split_json_value(o, level + 1))
				return 0;
			split_json_ws(o);
			if (split_json_peek(o) == ',') {
				o->i++;
				continue;
			}
			if (split_json_peek(o) != close)
				return 0;
			o->i++;
			return 1;
		}
	case '"':
		return split_json_string(o);
	case 't':
		return split_json_word(o, "true");
	case 'f':
		return split_json_word(o, "false");
	case 'n':
		return split_json_word(o, "null");
	default:
		return split_json_number(o);
	}
}

/* 1 when the n bytes at s are one strict JSON value (whitespace around
 * it allowed) no deeper than max_level, else 0. */
static inline int
split_json_strict(const char *s, size_t n, int max_level)
{
	struct split_json o = {(const unsigned char *)s, n, 0, max_level};

	if (!split_json_value(&o, 1))
		return 0;
	split_json_ws(&o);
	return o.i == n;
}

/* 1 when s is an optional '-' and one or more decimal digits. */
static inline int
split_is_decimal(const char *s)
{
	size_t i = s[0] == '-' ? 1 : 0;

	if (s[i] == '\0')
		return 0;
	for (; s[i] != '\0'; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* ---- recorded messages ----------------------------------------------------
 */

static inline void *
split_xmalloc(size_t n)
{
	void *p = malloc(n == 0 ? 1 : n);

	if (p == NULL)
		abort();
	return p;
}

static inline char *
split_xstrdup(const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = split_xmalloc(strlen(s) + 1);
	strcpy(d, s);
	return d;
}

/* A message copied out of a callback or a batch: the strings and the
 * payload below are owned by d (release with split_msg_release). */
static inline void
split_msg_copy(struct bayeux_msg *d, const struct bayeux_msg *m)
{
	char *payload = split_xmalloc(m->ev.payload_len);

	*d = *m;
	memcpy(payload, m->ev.payload, m->ev.payload_len);
	d->channel = split_xstrdup(m->channel);
	d->client_id = split_xstrdup(m->client_id);
	d->error = split_xstrdup(m->error);
	d->subscription = split_xstrdup(m->subscription);
	d->failure_reason = split_xstrdup(m->failure_reason);
	d->ev.channel = split_xstrdup(m->ev.channel);
	d->ev.position = split_xstrdup(m->ev.position);
	d->ev.event_type = split_xstrdup(m->ev.event_type);
	d->ev.created = split_xstrdup(m->ev.created);
	d->ev.payload = payload;
}

static inline void
split_msg_release(struct bayeux_msg *m)
{
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

/* Promises every message the stream delivers keeps, whatever the body. */
static inline const char *
split_msg_promise(const struct bayeux_msg *m)
{
	if (m == NULL || m->channel == NULL || m->channel[0] == '\0')
		return "message without a non-empty channel";
	if ((m->kind == BAYEUX_MSG_META) !=
	    (strncmp(m->channel, "/meta/", 6) == 0))
		return "kind disagrees with the /meta/ prefix";
	if (m->ev.src != EVENT_SRC_STREAM)
		return "ev.src is not EVENT_SRC_STREAM";
	if (m->ev.channel == NULL || strcmp(m->ev.channel, m->channel) != 0)
		return "ev.channel is not the channel";
	if (m->ev.position == NULL ||
	    (m->ev.position[0] != '\0' && !split_is_decimal(m->ev.position)))
		return "position is neither empty nor decimal text";
	if (m->ev.payload == NULL)
		return "payload is NULL";
	if (m->kind == BAYEUX_MSG_EVENT &&
	    !split_json_strict(m->ev.payload, m->ev.payload_len, 64))
		return "payload is not strict JSON";
	return NULL;
}

/* More checks on each delivered message: NULL, or what is broken. */
typedef const char *split_hook_fn(void *arg, const struct bayeux_msg *m);

/* One decoding of one body: what came out, and how it ended. Start from
 * all zeros (set hook and stop_at before decoding); split_run_clear()
 * releases it and zeroes it again. */
struct split_run {
	struct bayeux_msg *v; /* copies (split_msg_copy), owned */
	size_t n;
	size_t cap;
	int rc;         /* 0, or -1 when the body was refused */
	char err[256];  /* the decoder's error text, "" with rc 0 */
	size_t fed;     /* bytes fed, up to and including a refused chunk */
	size_t max_cap; /* the largest buffer capacity seen */
	size_t stop_at; /* the callback returns -1 at this count (0: never) */
	const char *broken;  /* the first broken promise, or NULL */
	split_hook_fn *hook; /* NULL, or more checks per message */
	void *hook_arg;
	struct bayeux_stream *s; /* sampled for its capacity when not NULL */
};

static inline void
split_run_push(struct split_run *r, const struct bayeux_msg *m)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->v = realloc(r->v, r->cap * sizeof(*r->v));
		if (r->v == NULL)
			abort();
	}
	split_msg_copy(&r->v[r->n++], m);
}

static inline void
split_run_clear(struct split_run *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		split_msg_release(&r->v[i]);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

static inline void
split_run_sample(struct split_run *r)
{
	size_t cap;

	if (r->s == NULL)
		return;
	cap = bayeux_stream_buffer_capacity(r->s);
	if (cap > r->max_cap)
		r->max_cap = cap;
}

/*
 * A bayeux_stream_fn with a struct split_run as arg: checks the
 * promises (and the hook), records a copy, samples the capacity. A broken
 * promise is kept in r->broken and stops the stream.
 */
static inline int
split_run_cb(void *arg, const struct bayeux_msg *m)
{
	struct split_run *r = arg;
	const char *why = split_msg_promise(m);

	if (why == NULL && r->hook != NULL)
		why = r->hook(r->hook_arg, m);
	if (why != NULL) {
		if (r->broken == NULL)
			r->broken = why;
		return -1;
	}
	split_run_push(r, m);
	split_run_sample(r);
	return r->stop_at != 0 && r->n == r->stop_at ? -1 : 0;
}

/* How a body is cut: the size of the chunk at offset off, left bytes
 * remaining (a result outside 1..left is taken as left). */
typedef size_t split_next_fn(void *arg, size_t off, size_t left);

/*
 * Feeds body to a fresh stream with max_msg_bytes max_msg, in chunks as
 * next says (NULL: whole), then finishes it; the outcome goes to r.
 * Beyond the per-message promises it checks that the error text matches
 * the result, that a refusal is sticky, that the count is the number of
 * messages delivered and that the buffers stay within 2 x max_msg + 512.
 * Returns NULL, or the first broken promise.
 */
static inline const char *
split_run_decode(struct split_run *r, const char *body, size_t len,
                 size_t max_msg, split_next_fn *next, void *next_arg)
{
	struct bayeux_stream *s = bayeux_stream_new(max_msg, split_run_cb, r);
	const char *why = NULL;
	size_t off = 0, n;
	int rc = 0;

	if (s == NULL)
		return "bayeux_stream_new() failed";
	r->s = s;
	while (off < len && rc == 0) {
		n = next != NULL ? next(next_arg, off, len - off) : len - off;
		if (n == 0 || n > len - off)
			n = len - off;
		rc = bayeux_stream_feed(s, body + off, n);
		off += n;
		split_run_sample(r);
	}
	if (rc == 0)
		rc = bayeux_stream_finish(s);
	r->rc = rc;
	r->fed = off;
	snprintf(r->err, sizeof(r->err), "%s", bayeux_stream_errstr(s));
	if ((rc != 0) != (r->err[0] != '\0'))
		why = "error text and result disagree";
	else if (rc != 0 && (bayeux_stream_feed(s, "[", 1) != -1 ||
	                     bayeux_stream_finish(s) != -1))
		why = "the stream went on after refusing the body";
	else if (bayeux_stream_count(s) != r->n)
		why = "count is not the number of messages delivered";
	else if (r->max_cap > 2 * max_msg + 512)
		why = "buffers exceed the bound";
	r->s = NULL;
	bayeux_stream_free(s);
	return r->broken != NULL ? r->broken : why;
}

/* bayeux_decode() of body into r (rc, err and the messages). */
static inline void
split_run_reference(struct split_run *r, const char *body, size_t len)
{
	struct bayeux_batch *b;
	size_t i;

	r->err[0] = '\0';
	b = bayeux_decode(body, len, r->err, sizeof(r->err));
	r->rc = b == NULL ? -1 : 0;
	for (i = 0; b != NULL && i < bayeux_batch_count(b); i++)
		split_run_push(r, bayeux_batch_msg(b, i));
	bayeux_batch_free(b);
}

/* ---- comparing ---------------------------------------------------------- */

static inline int
split_same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	       (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* What split_msg_diff compares beyond the decoded fields. */
#define SPLIT_POSITION 1u      /* ev.position, as text */
#define SPLIT_PAYLOAD_BYTES 2u /* the payload, byte for byte */

/* The name of the first field in which a and b differ, or NULL. */
static inline const char *
split_msg_diff(const struct bayeux_msg *a, const struct bayeux_msg *b,
               unsigned what)
{
	if (a->kind != b->kind)
		return "kind";
	if (!split_same_str(a->channel, b->channel))
		return "channel";
	if (a->successful != b->successful)
		return "successful";
	if (!split_same_str(a->client_id, b->client_id))
		return "client_id";
	if (!split_same_str(a->error, b->error))
		return "error";
	if (!split_same_str(a->subscription, b->subscription))
		return "subscription";
	if (!split_same_str(a->failure_reason, b->failure_reason))
		return "failure_reason";
	if (a->has_advice != b->has_advice)
		return "has_advice";
	if (a->advice.reconnect != b->advice.reconnect)
		return "advice.reconnect";
	if (a->advice.interval_ms != b->advice.interval_ms)
		return "advice.interval_ms";
	if (a->advice.timeout_ms != b->advice.timeout_ms)
		return "advice.timeout_ms";
	if (a->advice.multiple_clients != b->advice.multiple_clients)
		return "advice.multiple_clients";
	if (a->replay_supported != b->replay_supported)
		return "replay_supported";
	if (a->ev.src != b->ev.src)
		return "ev.src";
	if (!split_same_str(a->ev.channel, b->ev.channel))
		return "ev.channel";
	if (!split_same_str(a->ev.event_type, b->ev.event_type))
		return "ev.event_type";
	if (!split_same_str(a->ev.created, b->ev.created))
		return "ev.created";
	if ((what & SPLIT_POSITION) &&
	    !split_same_str(a->ev.position, b->ev.position))
		return "ev.position";
	if ((what & SPLIT_PAYLOAD_BYTES) &&
	    (a->ev.payload_len != b->ev.payload_len ||
	     memcmp(a->ev.payload, b->ev.payload, a->ev.payload_len) != 0))
		return "payload bytes";
	return NULL;
}

/*
 * Two decodings of the same body (whole and cut, say): the same result,
 * the same error text and the very same messages, byte for byte. NULL,
 * or what differs; *at gets the index of the first differing message
 * (the common count when the counts differ).
 */
static inline const char *
split_run_diff(const struct split_run *a, const struct split_run *b, size_t *at)
{
	const char *why;
	size_t i;

	*at = a->n < b->n ? a->n : b->n;
	if (a->rc != b->rc)
		return "result";
	if (strcmp(a->err, b->err) != 0)
		return "error text";
	for (i = 0; i < *at; i++) {
		why = split_msg_diff(&a->v[i], &b->v[i],
		                     SPLIT_POSITION | SPLIT_PAYLOAD_BYTES);
		if (why != NULL) {
			*at = i;
			return why;
		}
	}
	return a->n != b->n ? "message count" : NULL;
}

/* json-c's value of n bytes at s (owned), or NULL. */
static inline json_object *
split_parse_json(const char *s, size_t n)
{
	struct json_tokener *tok = json_tokener_new_ex(128);
	json_object *o;

	if (tok == NULL)
		abort();
	o = json_tokener_parse_ex(tok, s, (int)n);
	if (json_tokener_get_error(tok) == json_tokener_continue)
		o = json_tokener_parse_ex(tok, "", 1);
	if (json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* The one replayId difference bayeux_stream.h documents: the stream
 * kept an integer beyond int64/uint64 that json-c could only clamp, and
 * ref_pos is that clamp. */
static inline int
split_clamped_replay(const char *stream_pos, const char *ref_pos)
{
	char *end;

	if (!split_is_decimal(stream_pos))
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

/* Whether split_ref_diff lets a clamped replayId through. */
#define SPLIT_CLAMP_OK 1

/*
 * ref from bayeux_decode(), got from the stream, both of the same body
 * and both successful: the same count, every field the same, every
 * payload of got strict JSON and the same JSON value as ref's (the
 * stream hands on the original text, bayeux_decode json-c's
 * re-serialization). With SPLIT_CLAMP_OK a position may differ as
 * split_clamped_replay() allows. NULL, or what differs, *at as in
 * split_run_diff.
 */
static inline const char *
split_ref_diff(const struct split_run *ref, const struct split_run *got,
               int flags, size_t *at)
{
	const struct bayeux_msg *w, *g;
	const char *why = NULL;
	json_object *a, *b;
	size_t i;

	*at = ref->n < got->n ? ref->n : got->n;
	if (ref->n != got->n)
		return "message count";
	for (i = 0; i < ref->n && why == NULL; i++) {
		w = &ref->v[i];
		g = &got->v[i];
		*at = i;
		why = split_msg_diff(w, g, 0);
		if (why == NULL &&
		    strcmp(w->ev.position, g->ev.position) != 0 &&
		    !((flags & SPLIT_CLAMP_OK) &&
		      split_clamped_replay(g->ev.position, w->ev.position)))
			why = "ev.position";
		if (why != NULL)
			break;
		if (!split_json_strict(g->ev.payload, g->ev.payload_len, 64))
			return "payload is not strict JSON";
		a = split_parse_json(w->ev.payload, w->ev.payload_len);
		b = split_parse_json(g->ev.payload, g->ev.payload_len);
		if (a == NULL || b == NULL)
			why = "json-c cannot parse a payload";
		else if (!json_object_equal(a, b))
			why = "payload value";
		json_object_put(a);
		json_object_put(b);
	}
	return why;
}

#endif /* SFRELAY_TEST_SPLIT_CHECK_H */
