#ifndef SFRELAY_SINK_H
#define SFRELAY_SINK_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

/*
 * Where lines go: one small interface (an ops table) in front of stdout,
 * the Logplex HTTP input and syslog. The core never knows which one it
 * talks to, and a sink never sees a source.
 *
 * Delivery contract: sink_write() hands over one complete line (ending in
 * '\n') with its sequence number; sequence numbers increase. The sink
 * reports, through the ack callback, the highest sequence number up to
 * which every line has been accepted by its destination (written to the
 * fd, answered 2xx, written to the socket). Acknowledgements are
 * cumulative and never run ahead of acceptance. Only acknowledged lines
 * may be checkpointed.
 *
 * A line the destination refused for good (a Logplex 4xx other than 429)
 * is not retried: the sink reports it with sink_dropped() (counted, and
 * logged as a warning by the sink) and then acknowledges past it, so the
 * stream goes on. Nothing is dropped silently.
 *
 * Flow control: a sink with a bounded window (lines taken but not yet
 * accepted) or a receiver that is down says so through ops->ready. While
 * it returns 0 the relay hands it no more lines and holds the sources
 * (relay_full()); the sink calls sink_writable() when it can take lines
 * again.
 */

struct sink;

/* Every line with seq <= upto is accepted. Called from the event loop. */
typedef void sink_ack_fn(void *arg, uint64_t upto);
/* The sink cannot go on (e.g. stdout closed). msg is borrowed. */
typedef void sink_error_fn(void *arg, const char *msg);
/* The sink takes lines again after ops->ready said 0. */
typedef void sink_writable_fn(void *arg);

struct sink_ops {
	const char *name;
	/* Takes line[0..len), which stays valid and unchanged until the
	 * sink acknowledges seq or is freed (the relay's queue holds it), so
	 * a sink may keep the pointer instead of a copy; returns 0, or -1
	 * when the sink has failed for good. Called only while ready (below)
	 * says 1. Must not call back into the relay synchronously: acks are
	 * reported from the event loop. */
	int (*write)(void *impl, uint64_t seq, const char *line, size_t len);
	/* Sends what is buffered now instead of waiting for a batch to fill
	 * (shutdown). Synchronous sinks finish the job here; asynchronous
	 * ones start it and acknowledge later. Returns 0 or -1. */
	int (*flush)(void *impl);
	void (*free)(void *impl);
	/* Optional (NULL: always 1). 1 while the sink takes more lines. */
	int (*ready)(void *impl);
};

/*
 * Wraps an implementation. ops is borrowed (static), impl owned by the
 * sink from here on (released with ops->free). The implementation calls
 * sink_acked()/sink_failed()/sink_dropped()/sink_writable() to report.
 */
struct sink *sink_new(const struct sink_ops *ops, void *impl);
void sink_free(struct sink *sink);
void sink_set_callbacks(struct sink *sink, sink_ack_fn *ack,
			sink_error_fn *error, void *arg);
/* The relay's wake-up when the sink is ready again (arg as above). */
void sink_set_writable_callback(struct sink *sink, sink_writable_fn *fn);
int sink_write(struct sink *sink, uint64_t seq, const char *line, size_t len);
int sink_flush(struct sink *sink);
/* 1 when the sink takes more lines now (ops->ready, or 1). */
int sink_ready(struct sink *sink);
const char *sink_name(const struct sink *sink);

/* Longest line (bytes, without its '\n') the sink's destination takes
 * whole; longer lines are split by the relay (see lines.h). 0: no
 * limit. Set by the implementation (or the configuration). */
size_t sink_max_line(const struct sink *sink);
void sink_set_max_line(struct sink *sink, size_t max);

/* Counters since start, for stats. */
uint64_t sink_dropped_lines(const struct sink *sink);
uint64_t sink_reconnects(const struct sink *sink);

/* For implementations: report progress and failure. */
void sink_acked(struct sink *sink, uint64_t upto);
void sink_failed(struct sink *sink, const char *msg);
/* n lines were refused for good (the sink has logged why). Counted;
 * the sink still acknowledges past them. */
void sink_dropped(struct sink *sink, uint64_t n);
/* The sink re-established its connection to the destination. */
void sink_reconnected(struct sink *sink);
/* ready went from 0 to 1. Calls the relay back, which may write. */
void sink_writable(struct sink *sink);

/*
 * The stdout sink (the default: on a Heroku dyno stdout is Logplex).
 * Lines are gathered (by reference, see ops->write) and written with few
 * writev(2) calls once per event
 * loop turn, so every line leaves within the turn that produced it and
 * no line is ever split between writes of other producers. fd is
 * borrowed (normally STDOUT_FILENO). A closed pipe (EPIPE) or other
 * write error fails the sink.
 */
struct sink *sink_stdout_new(struct event_base *base, int fd);

/* Retry delays of the network sinks (doubling, full jitter). */
struct sink_backoff {
	long min_ms;
	long max_ms;
	uint64_t seed;
};

struct http;

/*
 * The Logplex HTTP input sink: batches lines into POSTs of
 * application/logplex-1 bodies (octet-counted RFC 5424 frames) to url,
 * https://user:token@host/logs (the credentials become basic auth and
 * are never logged). A batch is sent when it holds max_lines lines or
 * max_bytes bytes of body, or when its oldest line is max_age_ms old.
 * One batch is in flight at a time; 2xx acknowledges it; 429, 5xx and
 * transport errors are retried with back-off while ready() says 0; any
 * other status drops the batch (counted and logged with the response).
 */
struct sink_logplex_opts {
	const char *url;      /* borrowed for the call */
	const char *hostname; /* RFC 5424 HOSTNAME */
	const char *app_name; /* APP-NAME */
	const char *procid;   /* PROCID */
	int facility;         /* 0..23 */
	int severity;         /* 0..7 (6 = info) */
	size_t max_lines;     /* 0: 500 */
	size_t max_bytes;     /* 0: 1 MiB */
	long max_age_ms;      /* 0: 250 */
	long timeout_ms;      /* whole POST; 0: 30000 */
	size_t max_line;      /* 0: 10000 */
	struct sink_backoff backoff;
};

/* base and http are borrowed and must outlive the sink. Returns NULL with
 * a message in err (never holding the token). */
struct sink *sink_logplex_new(struct event_base *base, struct http *http,
			      const struct sink_logplex_opts *opts, char *err,
			      size_t errlen);

/*
 * The syslog sink: RFC 5424 messages, RFC 6587 octet counting, over TCP or
 * TLS (certificate and host name verified against ca_file or the system
 * store) to url, syslog://host:port or syslog+tls://host:port. A line is
 * acknowledged once the socket took it; the connection is re-made with
 * back-off when it drops, and lines that were queued for the old one are
 * sent again (at-least-once). TLS connections are closed with
 * close_notify.
 */
struct sink_syslog_opts {
	const char *url;      /* borrowed for the call */
	const char *ca_file;  /* NULL: system store */
	const char *hostname;
	const char *app_name;
	const char *procid;
	int facility;         /* 0..23 */
	int severity;         /* 0..7 (6 = info) */
	size_t window_bytes;  /* bytes written but not yet taken; 0: 1 MiB */
	long connect_timeout_ms; /* 0: 10000 */
	size_t max_message;   /* whole syslog message; 0: 8192 */
	struct sink_backoff backoff;
};

struct sink *sink_syslog_new(struct event_base *base,
			     const struct sink_syslog_opts *opts, char *err,
			     size_t errlen);

#endif /* SFRELAY_SINK_H */
