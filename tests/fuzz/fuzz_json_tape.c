/*
 * Fuzz harness for the payload tape (json_tape.h): the stream decoder
 * records an event payload's tokens while it validates the message, and
 * the formatter writes the line from them instead of the text.
 *
 * Input layout:
 *   byte 0: where the body is split for the decoder (the body is fed in
 *           two pieces, the first of byte0 * 4 bytes, or in one piece when
 *           that is past the end), so elements straddle chunks too;
 *   the rest: the payload, placed as the message's "data" member:
 *           [{"data":<payload>,"channel":"/topic/F"}]
 *
 * Invariants, each an abort() (after a message) when broken:
 *   - every event that comes with a tape formats to the same line, byte
 *     for byte, as the same event without it, in logfmt and in JSON, and
 *     with format_event_mem() as with format_event();
 *   - a payload that is an object and that the decoder accepts comes with
 *     a tape unless it has more tokens than a tape holds (checked loosely:
 *     a payload of fewer than 4096 bytes cannot have that many). Only
 *     payloads from the body count: for "data":null the decoder hands on
 *     a constant "{}", which has no tape.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "sfrelay/bayeux_stream.h"
#include "sfrelay/format.h"
#include "sfrelay/json_tape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct body {
	const char *p;
	size_t n;
	size_t payload_len;
};

static void
broken(const char *what)
{
	fprintf(stderr, "json_tape: invariant broken: %s\n", what);
	abort();
}

/* The line of ev; *n its length. Caller frees. */
static char *
line_of(enum format_kind kind, const struct event *ev, size_t *n)
{
	struct evbuffer *out = evbuffer_new();
	char *s;

	if (out == NULL || format_event(kind, ev, out) < 0)
		abort();
	*n = evbuffer_get_length(out);
	s = malloc(*n + 1);
	if (s == NULL)
		abort();
	evbuffer_remove(out, s, *n);
	evbuffer_free(out);
	return s;
}

static int
on_msg(void *arg, const struct bayeux_msg *m)
{
	static const enum format_kind kinds[] = {FORMAT_LOGFMT, FORMAT_JSON};
	const struct body *body = arg;
	struct event plain;
	size_t na, nb, nm;
	char *a, *b, *mem;
	int rc;

	if (m->kind != BAYEUX_MSG_EVENT)
		return 0;
	if (m->ev.tape == NULL) {
		if (m->ev.payload_len > 0 && m->ev.payload[0] == '{' &&
		    body->payload_len < 4096 && m->ev.payload >= body->p &&
		    m->ev.payload < body->p + body->n)
			broken("an object payload came without a tape");
		return 0;
	}
	plain = m->ev;
	plain.tape = NULL;
	for (size_t i = 0; i < 2; i++) {
		a = line_of(kinds[i], &m->ev, &na);
		b = line_of(kinds[i], &plain, &nb);
		if (na != nb || memcmp(a, b, na) != 0) {
			fprintf(stderr, "tape: %.*s\ntext: %.*s\n", (int)na, a,
			        (int)nb, b);
			broken("the tape's line differs from the text's");
		}
		mem = malloc(nb);
		if (mem == NULL)
			abort();
		rc = format_event_mem(kinds[i], &m->ev, mem, nb, &nm);
		if (rc < 0 || nm != nb || memcmp(mem, b, nb) != 0)
			broken("format_event_mem() with the tape differs");
		free(mem);
		free(a);
		free(b);
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char head[] = "[{\"data\":";
	static const char tail[] = ",\"channel\":\"/topic/F\"}]";
	struct bayeux_stream *s;
	struct body b;
	size_t payload_len, n, split;
	char *body;

	if (size < 1)
		return 0;
	payload_len = size - 1;
	n = sizeof(head) - 1 + payload_len + sizeof(tail) - 1;
	body = malloc(n);
	if (body == NULL)
		return 0;
	memcpy(body, head, sizeof(head) - 1);
	memcpy(body + sizeof(head) - 1, data + 1, payload_len);
	memcpy(body + sizeof(head) - 1 + payload_len, tail, sizeof(tail) - 1);
	split = (size_t)data[0] * 4;
	b.p = body;
	b.n = n;
	b.payload_len = payload_len;
	s = bayeux_stream_new(1 << 20, on_msg, &b);
	if (s == NULL)
		abort();
	if (split > 0 && split < n) {
		if (bayeux_stream_feed(s, body, split) == 0)
			(void)bayeux_stream_feed(s, body + split, n - split);
	} else {
		(void)bayeux_stream_feed(s, body, n);
	}
	(void)bayeux_stream_finish(s);
	bayeux_stream_free(s);
	free(body);
	return 0;
}
