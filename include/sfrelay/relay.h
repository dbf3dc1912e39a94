#ifndef SFRELAY_RELAY_H
#define SFRELAY_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "sfrelay/event.h"
#include "sfrelay/format.h"

struct sink;

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
};

/* Takes ownership of sink. Returns NULL on allocation failure. */
struct relay *relay_new(const struct relay_opts *opts, struct sink *sink);
void relay_free(struct relay *relay);
void relay_set_callbacks(struct relay *relay, relay_fatal_fn *fatal,
			 relay_position_fn *position, void *arg);

/* Formats, queues and sends ev (borrowed for the call). Returns 0, or -1
 * when the sink has failed. */
int relay_submit(struct relay *relay, const struct event *ev);
/* 1 when the queue is over its high-water mark: sources hold back. */
int relay_full(const struct relay *relay);
/* Lines queued or in flight, not yet acknowledged. */
size_t relay_pending(const struct relay *relay);
/* Pushes everything queued through the sink now (shutdown). Returns 0 or
 * -1. */
int relay_flush(struct relay *relay);
/* Lines the sink has acknowledged since start. */
uint64_t relay_acked(const struct relay *relay);

#endif /* SFRELAY_RELAY_H */
