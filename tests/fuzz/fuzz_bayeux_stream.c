/*
 * Fuzz harness for the streaming Bayeux decoder (bayeux_stream.h).
 *
 * Input: a response body, any bytes. It is decoded four times:
 *   A  fed whole, max_msg_bytes 1 MiB
 *   B  fed in chunks, max_msg_bytes 1 MiB
 *   C  fed whole, a small max_msg_bytes taken from the first byte
 *   D  fed in chunks, the same small max_msg_bytes
 * Chunk sizes come from a generator seeded with the input's first bytes.
 * Promises checked, any broken one aborts (libFuzzer reports a crash);
 * the checks are those of tests/split_check.h, shared with the unit test:
 *   - A and B, and C and D, agree exactly: same success, same messages
 *     (every field, payload bytes included), same error text;
 *   - every run: the error text matches the result, a refusal is sticky,
 *     the count is the number of messages, the buffers stay bounded;
 *   - C's messages are a prefix of A's (a smaller limit only stops
 *     earlier), and C fails with a max_msg_bytes error when A succeeds
 *     but C does not;
 *   - every message: non-empty channel, kind META exactly for /meta/,
 *     ev.src the stream, ev.channel == channel, ev.position "" or decimal
 *     text, payload strict JSON (an independent checker, not the
 *     decoder's) that format_event() takes;
 *   - against bayeux_decode(): a body the stream accepts is strict JSON
 *     and bayeux_decode accepts it too, with the same messages (payloads
 *     equal as JSON values). When bayeux_decode accepts a strict body the
 *     stream accepts it too. The one difference bayeux_stream.h documents
 *     for such bodies is let through, detected explicitly: a replayId
 *     integer beyond int64/uint64, which json-c clamps.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "../split_check.h"
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

/* The formatter takes every event payload the stream hands on. */
static const char *
format_hook(void *arg, const struct bayeux_msg *m)
{
	struct evbuffer *line = arg;

	if (m->kind != BAYEUX_MSG_EVENT)
		return NULL;
	if (format_event(FORMAT_LOGFMT, &m->ev, line) != 0)
		return "format_event() does not take the payload";
	(void)evbuffer_drain(line, evbuffer_get_length(line));
	return NULL;
}

/* Chunk sizes from a generator seeded with the input's first bytes. */
static size_t
next_chunk(void *arg, size_t off, size_t left)
{
	uint64_t *st = arg, x = *st;
	size_t n;

	(void)off;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*st = x;
	n = 1 + (size_t)(x % 97);
	return n > left ? left : n;
}

static void
stream_run(const char *body, size_t len, size_t max_msg, int chunked,
           struct split_run *r, struct evbuffer *line)
{
	uint64_t st = 0x9e3779b97f4a7c15u;
	const char *why;
	size_t i;

	for (i = 0; i < len && i < 8; i++)
		st = st * 131 + (unsigned char)body[i];
	if (st == 0)
		st = 1;
	r->hook = format_hook;
	r->hook_arg = line;
	why = split_run_decode(r, body, len, max_msg,
	                       chunked ? next_chunk : NULL, &st);
	if (why != NULL)
		broken(why);
}

static void
expect_identical(const struct split_run *a, const struct split_run *b,
                 const char *what)
{
	size_t at;

	if (split_run_diff(a, b, &at) != NULL)
		broken(what);
}

static void
compare_with_reference(const char *body, size_t len, const struct split_run *a)
{
	struct split_run ref = {0};
	int strict = split_json_strict(body, len, 64);
	size_t at;

	if (a->rc == 0 && !strict)
		broken("the stream accepts a body that is not strict JSON");
	split_run_reference(&ref, body, len);
	/* A body bayeux_decode takes that is not strict went through
	 * json-c's leniency (a raw control byte in a string, for one): the
	 * stream refused it, as it must, and there is nothing to compare. */
	if (ref.rc != 0) {
		if (a->rc == 0)
			broken("the stream accepts a body bayeux_decode "
			       "refuses");
	} else if (strict) {
		if (a->rc != 0)
			broken("bayeux_decode accepts a strict body the "
			       "stream refuses");
		if (split_ref_diff(&ref, a, SPLIT_CLAMP_OK, &at) != NULL)
			broken("the messages differ from bayeux_decode");
	}
	split_run_clear(&ref);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct split_run a = {0}, b = {0}, c = {0}, d = {0};
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
		if (split_msg_diff(&a.v[i], &c.v[i],
		                   SPLIT_POSITION | SPLIT_PAYLOAD_BYTES) !=
		    NULL)
			broken("a smaller max_msg_bytes changed a message");
	if (a.rc == 0 && c.rc != 0 && strstr(c.err, "max_msg_bytes") == NULL)
		broken("a smaller max_msg_bytes failed for another reason");
	if (a.rc != 0 && c.rc == 0)
		broken("a smaller max_msg_bytes let a bad body through");

	compare_with_reference(body, size, &a);

	split_run_clear(&a);
	split_run_clear(&b);
	split_run_clear(&c);
	split_run_clear(&d);
	evbuffer_free(line);
	return 0;
}
