#ifndef SFRELAY_SINK_H
#define SFRELAY_SINK_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

/*
 * Where lines go: one small interface (an ops table) in front of stdout,
 * and later the Logplex HTTP input and syslog. The core never knows which
 * one it talks to.
 *
 * Delivery contract: sink_write() hands over one complete line (ending in
 * '\n') with its sequence number; sequence numbers increase. The sink
 * reports, through the ack callback, the highest sequence number up to
 * which every line has been accepted by its destination (written to the
 * fd, answered 2xx, ...). Only acknowledged lines may be checkpointed.
 */

struct sink;

/* Every line with seq <= upto is accepted. Called from the event loop. */
typedef void sink_ack_fn(void *arg, uint64_t upto);
/* The sink cannot go on (e.g. stdout closed). msg is borrowed. */
typedef void sink_error_fn(void *arg, const char *msg);

struct sink_ops {
	const char *name;
	/* Takes a copy of line[0..len) or buffers it; returns 0, or -1 when
	 * the sink has failed for good. */
	int (*write)(void *impl, uint64_t seq, const char *line, size_t len);
	/* Pushes buffered lines out now (shutdown). Returns 0 or -1. */
	int (*flush)(void *impl);
	void (*free)(void *impl);
};

/*
 * Wraps an implementation. ops is borrowed (static), impl owned by the
 * sink from here on (released with ops->free). The implementation calls
 * sink_acked()/sink_failed() to report.
 */
struct sink *sink_new(const struct sink_ops *ops, void *impl);
void sink_free(struct sink *sink);
void sink_set_callbacks(struct sink *sink, sink_ack_fn *ack,
			sink_error_fn *error, void *arg);
int sink_write(struct sink *sink, uint64_t seq, const char *line, size_t len);
int sink_flush(struct sink *sink);
const char *sink_name(const struct sink *sink);

/* For implementations: report progress and failure. */
void sink_acked(struct sink *sink, uint64_t upto);
void sink_failed(struct sink *sink, const char *msg);

/*
 * The stdout sink (the default: on a Heroku dyno stdout is Logplex).
 * Lines are gathered and written with few write(2) calls once per event
 * loop turn, so every line leaves within the turn that produced it and
 * no line is ever split between writes of other producers. fd is
 * borrowed (normally STDOUT_FILENO). A closed pipe (EPIPE) or other
 * write error fails the sink.
 */
struct sink *sink_stdout_new(struct event_base *base, int fd);

#endif /* SFRELAY_SINK_H */
