/* Source -> format -> (redact, split) -> queue -> sink, and
 * acknowledgements back. */
#include "sfrelay/relay.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "sfrelay/lines.h"
#include "sfrelay/log.h"
#include "sfrelay/queue.h"
#include "sfrelay/sink.h"

struct relay {
	enum format_kind format;
	size_t max_line;
	const struct lines_redact *redact;
	struct queue *queue;
	struct sink *sink;
	struct evbuffer *scratch; /* reused for every line */
	struct evbuffer *redacted;
	uint64_t acked_seq;
	uint64_t acked_lines;
	uint64_t events;
	uint64_t lines;
	uint64_t split;
	int failed;
	int pumping;
	relay_fatal_fn *fatal;
	relay_position_fn *on_position;
	void *arg;
	relay_drained_fn *drained;
	void *drained_arg;
};

static void on_ack(void *arg, uint64_t upto);
static void on_sink_error(void *arg, const char *msg);
static void on_writable(void *arg);

struct relay *
relay_new(const struct relay_opts *opts, struct sink *sink)
{
	struct relay *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->format = opts->format;
	r->max_line = opts->max_line;
	r->redact = opts->redact;
	r->sink = sink;
	r->queue = queue_new(opts->max_lines, opts->max_bytes);
	r->scratch = evbuffer_new();
	r->redacted = evbuffer_new();
	if (r->queue == NULL || r->scratch == NULL || r->redacted == NULL) {
		r->sink = NULL; /* the caller keeps it on failure */
		relay_free(r);
		return NULL;
	}
	sink_set_callbacks(sink, on_ack, on_sink_error, r);
	sink_set_writable_callback(sink, on_writable);
	return r;
}

void
relay_free(struct relay *r)
{
	if (r == NULL)
		return;
	sink_free(r->sink);
	queue_free(r->queue);
	if (r->scratch != NULL)
		evbuffer_free(r->scratch);
	if (r->redacted != NULL)
		evbuffer_free(r->redacted);
	free(r);
}

void
relay_set_callbacks(struct relay *r, relay_fatal_fn *fatal,
		    relay_position_fn *position, void *arg)
{
	r->fatal = fatal;
	r->on_position = position;
	r->arg = arg;
}

static void
report_position(void *arg, const char *channel, const char *position,
		const char *created)
{
	struct relay *r = arg;
	/* Stats lines and all but the last part of a split event carry no
	 * channel: they move no checkpoint. */
	if (channel[0] == '\0')
		return;
	if (r->on_position != NULL)
		r->on_position(r->arg, channel, position, created);
}

static void
check_drained(struct relay *r)
{
	if (r->drained == NULL || (!r->failed && queue_lines(r->queue) > 0))
		return;
	relay_drained_fn *fn = r->drained;
	r->drained = NULL;
	fn(r->drained_arg);
}

static int pump(struct relay *r);

static void
on_ack(void *arg, uint64_t upto)
{
	struct relay *r = arg;
	if (upto <= r->acked_seq)
		return;
	r->acked_lines += upto - r->acked_seq;
	r->acked_seq = upto;
	queue_ack(r->queue, upto, report_position, r);
	check_drained(r);
}

static void
on_sink_error(void *arg, const char *msg)
{
	struct relay *r = arg;
	if (r->failed)
		return;
	r->failed = 1;
	log_error("sink failed", "sink", sink_name(r->sink), "error", msg,
		  NULL);
	if (r->fatal != NULL)
		r->fatal(r->arg, 75, msg);
	check_drained(r);
}

static void
on_writable(void *arg)
{
	pump(arg);
}

/* Hands unsent lines to the sink while it takes them. Re-entry (a sink
 * that reports writable from inside write) is folded into the running
 * loop. */
static int
pump(struct relay *r)
{
	const char *line;
	size_t len;
	uint64_t seq;
	if (r->pumping)
		return r->failed ? -1 : 0;
	r->pumping = 1;
	while (!r->failed && sink_ready(r->sink) &&
	       (seq = queue_next_unsent(r->queue, &line, &len)) != 0) {
		if (sink_write(r->sink, seq, line, len) != 0) {
			r->pumping = 0;
			on_sink_error(r, "sink refused a line");
			return -1;
		}
		queue_mark_sent(r->queue, seq);
	}
	r->pumping = 0;
	return r->failed ? -1 : 0;
}

struct part_ctx {
	struct relay *r;
	const struct event *ev;
};

static int
push_part(void *arg, const char *part, size_t plen, unsigned k, unsigned n)
{
	struct part_ctx *c = arg;
	/* Only the last part may move the channel's checkpoint: a crash
	 * after part 1 must bring the whole event again. */
	int last = k == n;
	queue_push(c->r->queue, last ? c->ev->channel : "",
		   last ? c->ev->position : "", last ? c->ev->created : NULL,
		   part, plen);
	c->r->lines++;
	return 0;
}

static size_t
line_limit(const struct relay *r)
{
	return r->max_line > 0 ? r->max_line : sink_max_line(r->sink);
}

/* Room reserved in the queue for a line formatted in place: its payload
 * twice over (escapes grow it) plus the header. A line that needs more
 * takes the general path below. */
#define RESERVE_MIN 1024
#define RESERVE_MAX (32u * 1024u)

/*
 * The common case, one copy-free pass: the line is formatted straight
 * into the queue's memory, where the sink reads it. Returns 1 when the
 * line was queued, 0 when the event needs the general path (redaction
 * changed it, it must be split, or it did not fit the reservation).
 */
static int
submit_in_place(struct relay *r, const struct event *ev)
{
	size_t want = RESERVE_MIN, len, max = line_limit(r);
	if (ev->payload_len < (RESERVE_MAX - RESERVE_MIN) / 2)
		want += 2 * ev->payload_len;
	else
		want = RESERVE_MAX;
	char *p = queue_reserve(r->queue, ev->channel, ev->position,
				ev->created, want);
	int rc = format_event_mem(r->format, ev, p, want, &len);
	if (rc == FORMAT_NO_ROOM)
		return 0;
	if (rc < 0)
		abort(); /* only on allocation failure */
	if (max > 0 && len > max + 1)
		return 0;
	if (r->redact != NULL) {
		rc = lines_redact_line(r->redact, r->format, p, len,
				       r->redacted);
		if (rc < 0)
			abort(); /* only on allocation failure */
		evbuffer_drain(r->redacted, evbuffer_get_length(r->redacted));
		/* A redacted line may be split too: the general path does
		 * both, in that order (the reservation is forgotten). */
		if (rc > 0)
			return 0;
	}
	queue_commit(r->queue, len);
	r->lines++;
	r->events++;
	return 1;
}

int
relay_submit(struct relay *r, const struct event *ev)
{
	if (r->failed)
		return -1;
	if (submit_in_place(r, ev))
		return pump(r);
	if (format_event(r->format, ev, r->scratch) < 0)
		abort(); /* only on allocation failure */
	struct evbuffer *src = r->scratch;
	if (r->redact != NULL) {
		size_t n = evbuffer_get_length(r->scratch);
		const char *l = (const char *)evbuffer_pullup(r->scratch, -1);
		int rc = lines_redact_line(r->redact, r->format, l, n,
					   r->redacted);
		if (rc < 0)
			abort(); /* only on allocation failure */
		if (rc > 0) {
			evbuffer_drain(r->scratch, n);
			src = r->redacted;
		} else {
			evbuffer_drain(r->redacted,
				       evbuffer_get_length(r->redacted));
		}
	}
	size_t len = evbuffer_get_length(src);
	const char *line = (const char *)evbuffer_pullup(src, -1);
	size_t max = line_limit(r);
	r->events++;
	if (max > 0 && len > max + 1) {
		struct part_ctx c = {r, ev};
		if (lines_split(r->format, line, len, max, push_part, &c) > 0) {
			r->split++;
			evbuffer_drain(src, len);
			return pump(r);
		}
		log_warn("line over the sink's limit could not be split; "
			 "sent whole",
			 "channel", ev->channel, "replay_id", ev->position,
			 NULL);
	}
	queue_push(r->queue, ev->channel, ev->position, ev->created, line,
		   len);
	r->lines++;
	evbuffer_drain(src, len);
	return pump(r);
}

int
relay_submit_line(struct relay *r, const char *line, size_t len)
{
	if (r->failed)
		return -1;
	if (len > 0 && line[len - 1] == '\n')
		len--;
	char *p = queue_reserve(r->queue, "", "", NULL, len + 1);
	memcpy(p, line, len);
	p[len] = '\n';
	queue_commit(r->queue, len + 1);
	r->lines++;
	return pump(r);
}

int
relay_full(const struct relay *r)
{
	return queue_full(r->queue) || !sink_ready(r->sink);
}

int
relay_keeping_up(const struct relay *r)
{
	return queue_low(r->queue) && sink_ready(r->sink);
}

size_t
relay_pending(const struct relay *r)
{
	return queue_lines(r->queue);
}

int
relay_flush(struct relay *r)
{
	if (pump(r) != 0)
		return -1;
	return sink_flush(r->sink);
}

uint64_t
relay_acked(const struct relay *r)
{
	return r->acked_lines;
}

void
relay_get_stats(const struct relay *r, struct relay_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->events = r->events;
	out->lines = r->lines;
	out->acked = r->acked_lines;
	out->dropped = sink_dropped_lines(r->sink);
	out->split = r->split;
	out->reconnects = sink_reconnects(r->sink);
	out->queued = queue_lines(r->queue);
}

void
relay_drain(struct relay *r, relay_drained_fn *fn, void *arg)
{
	r->drained = fn;
	r->drained_arg = arg;
	if (fn != NULL)
		check_drained(r);
}
