#ifndef SFRELAY_RELAY_H
#define SFRELAY_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "sfrelay/event.h"
#include "sfrelay/format.h"

struct sink;
struct lines_redact;

/*
 * The core: where sources meet sinks. A source hands an event to
 * relay_submit(); the relay formats it into a line, queues it, hands it
 * to the sink, and on the sink's acknowledgement reports each channel's
 * newest acknowledged position (to the checkpoint store). Sources never see the sink and the sink
 * never sees a source.
 */

struct relay;

/* The sink failed for good; the process should exit with `code`. */
typedef void relay_fatal_fn(void *arg, int code, const char *msg);
/* A channel's acknowledged position advanced (a checkpoint may follow);
 * created is that event's time or "". Strings borrowed for the call. */
typedef void relay_position_fn(void *arg, const char *channel,
			       const char *position, const char *created);

struct relay_opts {
	enum format_kind format;
	size_t max_lines; /* queue high-water mark, lines */
	size_t max_bytes; /* queue high-water mark, bytes */
	/* Longest line (without '\n') before it is split into parts
	 * (lines.h); 0: the sink's own limit (sink_max_line()). */
	size_t max_line;
	/* Fields whose values become [redacted]; borrowed, may be NULL, must
	 * outlive the relay. */
	const struct lines_redact *redact;
};

/* Counters since start (stats). */
struct relay_stats {
	uint64_t events;     /* events submitted */
	uint64_t lines;      /* lines queued (parts and stats lines too) */
	uint64_t acked;      /* lines the sink acknowledged */
	uint64_t dropped;    /* lines the sink refused for good */
	uint64_t split;      /* events that were split into parts */
	uint64_t reconnects; /* the sink's reconnections */
	size_t queued;       /* lines queued or in flight now */
};

/* Called once when nothing is pending any more (see relay_drain). */
typedef void relay_drained_fn(void *arg);

/* Takes ownership of sink. Returns NULL on allocation failure. */
struct relay *relay_new(const struct relay_opts *opts, struct sink *sink);
void relay_free(struct relay *relay);
void relay_set_callbacks(struct relay *relay, relay_fatal_fn *fatal,
			 relay_position_fn *position, void *arg);

/* Formats, queues and sends ev (borrowed for the call). Returns 0, or -1
 * when the sink has failed. */
int relay_submit(struct relay *relay, const struct event *ev);
/* Queues one line that belongs to no channel (the stats line): it is
 * delivered like an event line but advances no checkpoint. line need not
 * end in '\n' (one is added). Returns 0 or -1 (sink failed). */
int relay_submit_line(struct relay *relay, const char *line, size_t len);
/* 1 when sources must hold back: the queue is over its high-water mark,
 * or the sink takes no more lines now (window full, receiver down). */
int relay_full(const struct relay *relay);
/* 1 when the sink keeps up: it takes lines now and the queue is under a
 * quarter of its high-water mark. Sources may then fetch ahead. */
int relay_keeping_up(const struct relay *relay);
/* Lines queued or in flight, not yet acknowledged. */
size_t relay_pending(const struct relay *relay);
/* Pushes everything queued through the sink now (shutdown). Returns 0 or
 * -1. */
int relay_flush(struct relay *relay);
/* Lines the sink has acknowledged since start. */
uint64_t relay_acked(const struct relay *relay);
void relay_get_stats(const struct relay *relay, struct relay_stats *out);
/*
 * Calls fn once when no line is pending any more: before returning when
 * none is, else from the acknowledgement that empties the queue, or when
 * the sink fails. For shutdown:
 * relay_flush(), then relay_drain() before the last checkpoint save.
 * A later call replaces an earlier one; fn NULL cancels.
 */
void relay_drain(struct relay *relay, relay_drained_fn *fn, void *arg);

#endif /* SFRELAY_RELAY_H */
