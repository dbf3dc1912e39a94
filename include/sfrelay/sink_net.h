#ifndef SFRELAY_SINK_NET_H
#define SFRELAY_SINK_NET_H

#include <stddef.h>

#include "sfrelay/sink.h"
#include "sfrelay/syslog_frame.h"

struct event_base;

/*
 * What the network sinks (Logplex HTTP, syslog TCP/TLS) share about a
 * destination that can be down: the count of consecutive failed tries,
 * the back-off timer that schedules the next try, whether the
 * destination is down, the reconnect count a connection-based sink
 * reports, and the "told the relay it is full" flag behind
 * sink_writable(). Each sink keeps its own transport (the POST, the
 * bufferevent) and its own log lines; this keeps the bookkeeping in one
 * place so both follow one policy:
 *
 *   - a failed try (sink_net_failed) counts, and the retry timer is armed
 *     after backoff_delay() for that many consecutive failures (doubling
 *     ceiling, full jitter; backoff.h);
 *   - a try that reached the destination (sink_net_succeeded) ends the
 *     run of failures: the next failure waits the shortest delay again;
 *   - a connection that ends after living SINK_NET_LIVED_MS counts as a
 *     success and is retried at once; one that dies younger is a failure
 *     like a refused connect, so a receiver that accepts and drops at
 *     once is not hammered (sink_net_lost).
 *
 * Both sinks also stamp the same RFC 5424 header fields on every line:
 * struct sink_net_ident, below, embedded in the sink.
 *
 * Ownership: a sink implementation owns its sink_net (made in its
 * constructor, freed by its ops->free); the sink_net borrows the event
 * base, the struct sink it reports to and the retry callback's argument,
 * all of which outlive it. The retry callback runs from the event loop
 * (the timer), never from inside a sink_net call, and may call any
 * sink_net function but sink_net_free. The only call into the relay is
 * sink_net_wake's sink_writable(); sink_net_connected only counts
 * (sink_reconnected()).
 */

/* A connection that ended after at least this long was a good one. */
#define SINK_NET_LIVED_MS 1000

struct sink_net;

/* Time to try again (POST the batch, connect). */
typedef void sink_net_retry_fn(void *arg);

/*
 * Returns an owned sink_net, or NULL when out of memory. base is
 * borrowed and must outlive it; backoff is copied, a min_ms <= 0 read as
 * 1000 and a max_ms below min_ms as min_ms, and its seed starts the
 * jitter's generator. retry(arg) runs when a scheduled retry is due; arg
 * is borrowed (normally the sink implementation owning this).
 */
struct sink_net *sink_net_new(struct event_base *base,
			      const struct sink_backoff *backoff,
			      sink_net_retry_fn *retry, void *arg);
/* Cancels a pending retry (its callback will not run) and frees. NULL is
 * a no-op. Must not be called from the retry callback. */
void sink_net_free(struct sink_net *net);
/* The sink to report to (borrowed; set once sink_new() made it, before
 * sink_net_wake or sink_net_connected). */
void sink_net_set_sink(struct sink_net *net, struct sink *sink);

/* ---- tries and back-off --------------------------------------------- */

/* A try failed: counts it, marks the destination down and arms the retry
 * timer (replacing a pending one). Returns the delay in ms. */
long sink_net_failed(struct sink_net *net);
/* The destination answered (accepted or refused for good): the run of
 * failures ends. Returns 1 when there was one (the destination had been
 * down and takes again: worth a log line), else 0. */
int sink_net_succeeded(struct sink_net *net);
/* Consecutive failed tries so far; 0 while the destination is up. */
unsigned sink_net_failures(const struct sink_net *net);
/* Arms the retry timer for ms without counting a failure. */
void sink_net_retry_in(struct sink_net *net, long ms);
/* 1 while a retry is scheduled. */
int sink_net_retry_pending(const struct sink_net *net);

/* ---- connections (syslog) ------------------------------------------- */

/* A connection is up. Every one after the first is reported with
 * sink_reconnected() (the reconnects counter of the stats line). */
void sink_net_connected(struct sink_net *net);
/*
 * A connection ended, or a connect failed, and the sink wants another:
 * schedules it. After a connection up for SINK_NET_LIVED_MS or more the
 * failures are forgotten and the retry comes at once (returns 0);
 * otherwise it is sink_net_failed() (returns its delay).
 */
long sink_net_lost(struct sink_net *net);

/* ---- flow control --------------------------------------------------- */

/* ops->ready's answer passes through here: a 0 is remembered, so that a
 * later sink_net_wake knows the relay is waiting. Returns ready. */
int sink_net_ready(struct sink_net *net, int ready);
/* Calls sink_writable() once when ready is 1 and the relay was told 0
 * since the last wake-up. The relay may write from inside. */
void sink_net_wake(struct sink_net *net, int ready);

/* Milliseconds of the monotonic clock connections are timed with. */
long long sink_net_now_ms(void);

/* ---- the RFC 5424 header -------------------------------------------- */

/*
 * The header fields both network sinks put on every message, embedded
 * in the sink. hdr points into the owned copies below (its msgid is
 * NULL: each line has its own). sink_net_ident_clear frees them; it
 * also takes a zeroed or half-initialised struct.
 */
struct sink_net_ident {
	struct syslog_header hdr;
	char *hostname, *app_name, *procid;
};

/* Copies the names (NULL: "-", "sfrelay", "-"; all borrowed for the
 * call). Returns 0, or -1 when out of memory (clear it all the same). */
int sink_net_ident_init(struct sink_net_ident *id, const char *hostname,
			const char *app_name, const char *procid,
			int facility, int severity);
void sink_net_ident_clear(struct sink_net_ident *id);
/*
 * The header of the message for line[0..len) sent now: the fields, the
 * line's MSGID (syslog_msgid_of_line) written into msgid, which holds
 * SYSLOG_MSGID_MAX + 1 bytes, and the current UTC time into stamp, which
 * holds SYSLOG_TIMESTAMP_LEN + 1. The result points into id and msgid
 * (borrowed: valid while both are).
 */
struct syslog_header sink_net_ident_header(const struct sink_net_ident *id,
					   const char *line, size_t len,
					   char *stamp, char *msgid);
/* Length of the frame syslog_frame() makes (counted or not) of an empty
 * message with the longest MSGID: the part of any frame that is not the
 * line, but for the space before MSG and, counted, the extra digits of
 * a longer length prefix. */
size_t sink_net_ident_overhead(const struct sink_net_ident *id, int counted);

#endif /* SFRELAY_SINK_NET_H */
