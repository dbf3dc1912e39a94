#ifndef SFRELAY_STATS_H
#define SFRELAY_STATS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;

/*
 * The relay's own numbers as one l2met line every interval, written
 * through the same sink as the events (so a drain that sees the events
 * sees the stats too):
 *
 *   at=stats count#sfrelay.events=120 count#sfrelay.dropped=0
 *   sample#sfrelay.queue=0 sample#sfrelay.lag_ms=14
 *   count#sfrelay.reconnects=0 sample#sfrelay.api_usage_pct=1.2
 *   [sample#sfrelay.gaps=N: replay gaps not recovered yet, when any]
 *
 * count# values are what happened during the interval; sample# values are
 * the state at its end (queue), the largest delay from an event's
 * creation to its acknowledgement during the interval (lag_ms, left out
 * when no event was acknowledged), and the org's API usage from the last
 * Sforce-Limit-Info header seen (left out until one was).
 */

/* Cumulative totals since start, as the collector reports them. */
struct stats_totals {
	uint64_t events;     /* events submitted */
	uint64_t dropped;    /* lines the sink refused for good */
	uint64_t reconnects; /* re-handshakes and sink reconnections */
	size_t queue;        /* lines waiting for the sink now */
	size_t gaps;         /* replay gaps recorded and not yet recovered */
};

/* One line's values. lag_ms < 0 and api_usage_pct < 0 mean unknown. */
struct stats_sample {
	uint64_t events, dropped, reconnects;
	size_t queue;
	long lag_ms;
	double api_usage_pct;
	size_t gaps; /* written as sample#sfrelay.gaps only when > 0 */
};

/* Appends the l2met line for s (ending in '\n') to out. Pure. Returns
 * 0, or -1 when out cannot grow. */
int stats_format(struct evbuffer *out, const struct stats_sample *s);

/* Reads "api-usage=N/M" out of a Sforce-Limit-Info value (other fields
 * may come before or after) into *pct = 100 * N / M. Pure. Returns 0, or
 * -1 when there is no such usable field (M = 0, not numbers). */
int stats_parse_limit_info(const char *value, double *pct);

/* "2026-11-26T19:27:53.123Z" (fraction optional, 'Z' or +hh:mm offset)
 * -> ms since the epoch, as replay_iso_to_ms() reads it. Pure. Returns 0
 * or -1. */
int stats_parse_time(const char *iso, int64_t *ms);

struct stats;

/* Fills t with the current totals. */
typedef void stats_collect_fn(void *arg, struct stats_totals *t);
/* Delivers one stats line (len bytes, ending in '\n'; borrowed). */
typedef void stats_emit_fn(void *arg, const char *line, size_t len);

/* Emits a line every interval_ms (> 0) on base (borrowed). Returns NULL
 * on allocation failure. */
struct stats *stats_new(struct event_base *base, long interval_ms,
			stats_collect_fn *collect, stats_emit_fn *emit,
			void *arg);
void stats_free(struct stats *stats);
/* An event created at `created` (ISO-8601) was just acknowledged. */
void stats_note_ack(struct stats *stats, const char *created);
/* A Sforce-Limit-Info header value was seen (NULL is ignored). */
void stats_note_limit_info(struct stats *stats, const char *value);
/* Emits a line now (tests, shutdown). */
void stats_emit_now(struct stats *stats);

#endif /* SFRELAY_STATS_H */
