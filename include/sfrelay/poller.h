#ifndef SFRELAY_POLLER_H
#define SFRELAY_POLLER_H

#include <stddef.h>
#include <stdint.h>

#include "sfrelay/event.h"

struct auth;
struct checkpoint;
struct event_base;
struct http;

/*
 * The SOQL poller: what has no stream (SetupAuditTrail, LoginHistory, any
 * object) polled on a timer per object, and the backfill of the stream's
 * replay gaps (backfill.h), on the event loop through struct http.
 *
 * Per polled object it keeps two high-water marks (soql.h): the one of
 * the records handed to the core, from which the next query starts
 * ("time >= mark ORDER BY time, Id", ids already seen at the mark's time
 * skipped), and the one of the records the sink has acknowledged, which
 * is what the checkpoint stores under the object's name. A restart
 * resumes from the acknowledged mark: after a clean stop nothing repeats,
 * after a crash only what was in flight.
 *
 * API economy: every object due in the same tick, each query's next page
 * and each backfill query go out together, up to 5 per request, in one
 * composite request (one API call); a single query is a plain GET. Every
 * Sforce-Limit-Info header is read; above budget_pct of the daily limit
 * every poll interval is stretched (2x at the budget, growing to 10x at
 * 100%) and a warning says so.
 *
 * Lines: each record becomes one event with src EVENT_SRC_POLL, channel =
 * object name, position = the record's id (Id; EventIdentifier for event
 * monitoring objects), created = its time field (normalized to
 * "YYYY-MM-DDThh:mm:ss.mmmZ"), payload = the record's JSON without
 * "attributes", the id and the time field. Backfill lines also carry
 * "backfill_for": the channel whose gap they fill.
 *
 * Acknowledgements: the relay reports, per key, the newest acknowledged
 * (position, created); the owner passes them to poller_acked(), which
 * advances the acknowledged mark, writes it to the checkpoint and, once
 * every line of a backfill query is acknowledged, removes its gap from
 * the checkpoint.
 */

struct poller;

/* One record; ev and its strings are borrowed for the call. */
typedef void poller_event_fn(void *arg, const struct event *ev);
/* 0 while the core cannot take more events: due objects skip their tick,
 * a run in progress waits. */
typedef int poller_ready_fn(void *arg);
/* Unrecoverable (credentials refused): exit with code (77). */
typedef void poller_fatal_fn(void *arg, int code, const char *msg);
/* poller_stop() has finished. */
typedef void poller_stopped_fn(void *arg);
/* A Sforce-Limit-Info header value arrived (for the stats line). value
 * borrowed for the call. */
typedef void poller_limit_info_fn(void *arg, const char *value);

struct poller_callbacks {
	poller_event_fn *event;
	poller_ready_fn *ready; /* NULL: always ready */
	poller_fatal_fn *fatal;
	poller_limit_info_fn *limit_info; /* may be NULL */
	void *arg;
};

struct poller_opts {
	const char *api_version; /* "61.0"; copied */
	const char *poll;        /* SFRELAY_POLL text or NULL; parsed here */
	const char *backfill;    /* SFRELAY_BACKFILL text or NULL */
	long lookback_s;         /* a first run starts this long ago */
	long budget_pct;         /* 1..100; 0: 50 */
	long request_timeout_ms; /* 0: 30000 */
	long backoff_min_ms;     /* 0: 1000 */
	long backoff_max_ms;     /* 0: 60000 */
	long gap_scan_ms; /* how often new gaps are looked for; 0: 5000 */
	uint64_t seed;    /* back-off jitter */
};

/* Counters since start (stats). */
struct poller_stats {
	uint64_t requests;  /* REST requests sent: each is one API call */
	uint64_t queries;   /* queries and next pages they carried */
	uint64_t records;   /* lines handed to the core */
	uint64_t skipped;   /* records already delivered (boundary) */
	uint64_t errors;    /* failed requests and queries */
	long long api_used; /* last Sforce-Limit-Info api-usage, -1 unknown */
	long long api_max;
	double stretch;      /* current interval multiplier (1 = none) */
	size_t objects;      /* polled objects */
	size_t gaps_pending; /* gaps being backfilled */
	size_t gaps_kept;    /* gaps that cannot be backfilled (reported) */
	uint64_t gaps_recovered;
};

/*
 * base, http, auth and cp are borrowed and must outlive the poller; opts
 * and cbs are copied. Returns NULL with the reason in err when the
 * SFRELAY_POLL or SFRELAY_BACKFILL text does not parse (config_load()
 * validates both first) or memory ran out.
 */
struct poller *poller_new(struct event_base *base, struct http *http,
                          struct auth *auth, struct checkpoint *cp,
                          const struct poller_opts *opts,
                          const struct poller_callbacks *cbs, char *err,
                          size_t errlen);
/* Cancels everything without callbacks. NULL is a no-op. */
void poller_free(struct poller *p);

/*
 * Reads each object's checkpoint (a first run writes "now less the
 * lookback" at once, so a crash before the first acknowledgement loses
 * nothing), then starts polling and watching for replay gaps. Returns 0,
 * or -1 with err when a stored position is not a poll position (a
 * corrupt checkpoint is never silently replaced by "now").
 */
int poller_start(struct poller *p, char *err, size_t errlen);

/*
 * Stops: cancels the running request and timers, then calls done from the
 * loop. No event callback runs after this call; poller_acked() keeps
 * working (lines still in flight are acknowledged during shutdown).
 */
void poller_stop(struct poller *p, poller_stopped_fn *done, void *arg);

/*
 * The relay acknowledged, for key, every line up to the one with this
 * position and created time (strings borrowed). Returns 1 when key is the
 * poller's (the checkpoint has been updated), 0 when it is not (a stream
 * channel: the caller checkpoints it).
 */
int poller_acked(struct poller *p, const char *key, const char *position,
                 const char *created);

/* A replay gap was just recorded in the checkpoint: look at it now
 * rather than at the next periodic scan. */
void poller_gaps_changed(struct poller *p);

void poller_get_stats(const struct poller *p, struct poller_stats *out);

#endif /* SFRELAY_POLLER_H */
