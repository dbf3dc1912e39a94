/*
 * Fuzz harness for the Bayeux response decoder (bayeux_msg.h).
 *
 * Input: a response body, any bytes. When bayeux_decode() accepts it,
 * every message is walked and every string it exposes is read to its end
 * (ASan reports a pointer into freed or foreign memory), and the event
 * view is checked against the header's promises:
 *   - channel non-NULL and non-empty, kind META exactly for /meta/...;
 *   - ev.channel and ev.position never NULL; position "" or decimal text;
 *   - the payload slice is readable over payload_len bytes and is itself
 *     one JSON document (json-c, exactly payload_len bytes);
 *   - that payload, handed on to format_event() as the relay does, is
 *     never reported as invalid (return 1): the decoder's output is the
 *     formatter's input, and an event must not turn into a payload_error
 *     line on its way through.
 * When the decoder refuses the body, err must hold a reason.
 * bayeux_decode_first() and bayeux_decode_last() read any body safely,
 * and on a body the decoder accepts, a message either finds is the
 * body's first (last) message: same channel, same kind.
 * Any broken promise aborts, which libFuzzer reports as a crash.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "../split_check.h"
#include "sfrelay/bayeux_msg.h"
#include "sfrelay/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HARNESS "bayeux_decode"

/* Reports which promise broke, then aborts: libFuzzer records the input. */
static void broken(const char *what) __attribute__((noreturn));

static void
broken(const char *what)
{
	fprintf(stderr, "%s: invariant broken: %s\n", HARNESS, what);
	abort();
}

/* Where the byte sums go, so the reads that make them are not optimized
 * away: ASan checks only the loads that happen. */
static volatile size_t touched;

/* Reads s (may be NULL) to its terminator; returns a sum of its bytes. */
static size_t
touch(const char *s)
{
	size_t n, sum = 0;

	if (s == NULL)
		return 0;
	n = strlen(s);
	for (size_t i = 0; i < n; i++)
		sum += (unsigned char)s[i];
	return sum + n;
}

/*
 * Whether json-c parses exactly s[0..n) as one document. The decoder
 * allows 64 levels for the whole body, so a payload (two levels below the
 * outer array) always fits in 64.
 */
static int
json_parses(const char *s, size_t n)
{
	struct json_tokener *tok = json_tokener_new_ex(64);
	json_object *o;
	enum json_tokener_error jerr;
	int ok;

	if (tok == NULL)
		abort();
	o = json_tokener_parse_ex(tok, s, (int)n);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue) {
		/* A bare number ends only at an explicit end of input. */
		json_object_put(o);
		o = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		ok = jerr == json_tokener_success;
	} else {
		ok = jerr == json_tokener_success &&
		     json_tokener_get_parse_end(tok) == n;
	}
	json_object_put(o);
	json_tokener_free(tok);
	return ok;
}

static void
check_event_view(const struct bayeux_msg *m, struct evbuffer *line)
{
	const struct event *ev = &m->ev;
	size_t sum = 0;
	int rc;

	if (ev->channel == NULL || ev->position == NULL)
		broken("event view: channel or position is NULL");
	if (ev->position[0] != '\0' && !split_is_decimal(ev->position))
		broken(
		    "event view: position is neither empty nor decimal text");
	sum += touch(ev->channel) + touch(ev->position) +
	       touch(ev->event_type) + touch(ev->created);
	if (ev->payload == NULL)
		broken("event view: payload is NULL");
	for (size_t i = 0; i < ev->payload_len; i++)
		sum += (unsigned char)ev->payload[i];
	if (!json_parses(ev->payload, ev->payload_len))
		broken("event payload is not one JSON document (json-c)");
	rc = format_event(FORMAT_LOGFMT, ev, line);
	if (rc != 0)
		broken("format_event() does not take the decoded payload "
		       "(returned non-zero)");
	(void)evbuffer_drain(line, evbuffer_get_length(line));
	touched += sum;
}

/* A message found from one end of the body must be the one there. */
static void
check_edge(const struct bayeux_msg *want, struct bayeux_batch *got,
           const char *which)
{
	const struct bayeux_msg *m = bayeux_batch_msg(got, 0);

	if (m == NULL)
		return;
	if (bayeux_batch_count(got) != 1)
		broken("an end of the body decoded to more than one message");
	if (strcmp(m->channel, want->channel) != 0 || m->kind != want->kind) {
		fprintf(stderr, "%s: %s, body: %s\n", which, m->channel,
		        want->channel);
		broken("the message read from an end of the body is another");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct bayeux_batch *b;
	struct evbuffer *line;
	size_t count, sum = 0;

	struct bayeux_batch *first = bayeux_decode_first((const char *)data, size);
	struct bayeux_batch *last = bayeux_decode_last((const char *)data, size);

	memset(err, 'x', sizeof(err));
	b = bayeux_decode((const char *)data, size, err, sizeof(err));
	if (b != NULL && bayeux_batch_count(b) > 0) {
		check_edge(bayeux_batch_msg(b, 0), first, "first");
		check_edge(bayeux_batch_msg(b, bayeux_batch_count(b) - 1), last,
		           "last");
	}
	bayeux_batch_free(first);
	bayeux_batch_free(last);
	if (memchr(err, '\0', sizeof(err)) == NULL)
		broken("err is not terminated");
	if (b == NULL) {
		if (err[0] == '\0')
			broken("decode failed with an empty err");
		return 0;
	}

	line = evbuffer_new();
	if (line == NULL)
		abort();
	count = bayeux_batch_count(b);
	for (size_t i = 0; i < count; i++) {
		const struct bayeux_msg *m = bayeux_batch_msg(b, i);

		if (m == NULL || m->channel == NULL || m->channel[0] == '\0')
			broken("message without a non-empty channel");
		if ((m->kind == BAYEUX_MSG_META) !=
		    (strncmp(m->channel, "/meta/", 6) == 0))
			broken("kind disagrees with the /meta/ prefix of the "
			       "channel");
		sum += touch(m->channel) + touch(m->client_id) +
		       touch(m->error) + touch(m->subscription) +
		       touch(m->failure_reason);
		sum += (size_t)bayeux_error_code(m->error);
		if (m->kind == BAYEUX_MSG_EVENT)
			check_event_view(m, line);
	}
	if (bayeux_batch_msg(b, count) != NULL)
		broken("bayeux_batch_msg(count) is not NULL");
	evbuffer_free(line);
	bayeux_batch_free(b);
	touched += sum;
	return 0;
}
