#ifndef SFRELAY_QUEUE_H
#define SFRELAY_QUEUE_H

#include <stddef.h>
#include <stdint.h>

/*
 * The bounded, ordered queue between sources and the sink. Each entry is
 * one formatted line with its sequence number, the channel (or polled
 * object) it came from and its position there. Entries move through
 * three stages: queued -> sent (handed to the sink) -> acknowledged
 * (removed). Acknowledgement is cumulative, in sequence order, so the
 * position reported for a channel is always one whose line, and every
 * earlier line of that channel, the sink has accepted.
 *
 * Pure data structure: no I/O, no clock.
 */

struct queue;

/* Told, during queue_ack(), of the newest acknowledged position of each
 * channel that advanced, with that event's creation time ("" when
 * unknown). Strings are borrowed for the call. */
typedef void queue_position_fn(void *arg, const char *channel,
			       const char *position, const char *created);

/* Limits: lines and bytes. Returns NULL on allocation failure. */
struct queue *queue_new(size_t max_lines, size_t max_bytes);
void queue_free(struct queue *q);

/*
 * Appends a line (copied) with its channel, position and creation time
 * (copied; created may be NULL), assigns it the next sequence number (from 1)
 * and returns it. The queue accepts a line even past its limits (a
 * source that already holds events must not drop them); sources consult
 * queue_full() before asking for more.
 */
uint64_t queue_push(struct queue *q, const char *channel, const char *position,
		    const char *created, const char *line, size_t len);

/*
 * Appending without a copy: queue_reserve() records channel, position and
 * created (copied; created may be NULL) and returns room for a line of up
 * to max bytes, which the caller fills and then appends with
 * queue_commit(q, len) (len <= max), as queue_push() would. Nothing else
 * may be called on q in between, and a reservation that is not committed
 * is simply forgotten by the next one. Never NULL (out of memory aborts).
 */
char *queue_reserve(struct queue *q, const char *channel, const char *position,
		    const char *created, size_t max);
uint64_t queue_commit(struct queue *q, size_t len);

/* The oldest entry not yet sent, or 0 when none. line borrowed until it
 * is acknowledged: its bytes neither move nor change until then. */
uint64_t queue_next_unsent(struct queue *q, const char **line, size_t *len);
/* Marks everything up to seq as sent. */
void queue_mark_sent(struct queue *q, uint64_t seq);

/* Removes every entry with seq <= upto and reports advanced positions. */
void queue_ack(struct queue *q, uint64_t upto, queue_position_fn *fn,
	       void *arg);

size_t queue_lines(const struct queue *q);
size_t queue_bytes(const struct queue *q);
/* 1 when at or above either limit: sources should hold back. */
int queue_full(const struct queue *q);
/* 1 while lines and bytes are both under a quarter of their limits. */
int queue_low(const struct queue *q);

#endif /* SFRELAY_QUEUE_H */
