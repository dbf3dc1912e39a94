/* Source -> format -> queue -> sink, and acknowledgements back. */
#include "sfrelay/relay.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "sfrelay/log.h"
#include "sfrelay/queue.h"
#include "sfrelay/sink.h"

struct relay {
	enum format_kind format;
	struct queue *queue;
	struct sink *sink;
	struct evbuffer *scratch; /* reused for every line */
	uint64_t acked_seq;
	uint64_t acked_lines;
	int failed;
	relay_fatal_fn *fatal;
	relay_position_fn *on_position;
	void *arg;
};

static void on_ack(void *arg, uint64_t upto);
static void on_sink_error(void *arg, const char *msg);

struct relay *
relay_new(const struct relay_opts *opts, struct sink *sink)
{
	struct relay *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->format = opts->format;
	r->sink = sink;
	r->queue = queue_new(opts->max_lines, opts->max_bytes);
	r->scratch = evbuffer_new();
	if (r->queue == NULL || r->scratch == NULL) {
		relay_free(r);
		return NULL;
	}
	sink_set_callbacks(sink, on_ack, on_sink_error, r);
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
	if (r->on_position != NULL)
		r->on_position(r->arg, channel, position, created);
}

static void
on_ack(void *arg, uint64_t upto)
{
	struct relay *r = arg;
	if (upto <= r->acked_seq)
		return;
	r->acked_lines += upto - r->acked_seq;
	r->acked_seq = upto;
	queue_ack(r->queue, upto, report_position, r);
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
}

/* Hands every unsent line to the sink. */
static int
pump(struct relay *r)
{
	const char *line;
	size_t len;
	uint64_t seq;
	while (!r->failed &&
	       (seq = queue_next_unsent(r->queue, &line, &len)) != 0) {
		if (sink_write(r->sink, seq, line, len) != 0) {
			on_sink_error(r, "sink refused a line");
			return -1;
		}
		queue_mark_sent(r->queue, seq);
	}
	return r->failed ? -1 : 0;
}

int
relay_submit(struct relay *r, const struct event *ev)
{
	if (r->failed)
		return -1;
	if (format_event(r->format, ev, r->scratch) < 0)
		abort(); /* only on allocation failure */
	size_t len = evbuffer_get_length(r->scratch);
	const char *line = (const char *)evbuffer_pullup(r->scratch, -1);
	queue_push(r->queue, ev->channel, ev->position, ev->created, line,
		   len);
	evbuffer_drain(r->scratch, len);
	return pump(r);
}

int
relay_full(const struct relay *r)
{
	return queue_full(r->queue);
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
