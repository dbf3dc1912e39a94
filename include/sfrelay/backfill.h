#ifndef SFRELAY_BACKFILL_H
#define SFRELAY_BACKFILL_H

#include <stddef.h>

#include "sfrelay/soql.h"

struct checkpoint_gap;

/*
 * Backfill planning: which bounded SOQL query recovers a replay gap of
 * the stream (checkpoint.h: channel, after_position, after_created,
 * detected). Pure: no I/O, no clock. The poller runs the plans (poller.h)
 * and removes a gap from the checkpoint only once every line of its
 * query has been acknowledged.
 *
 * Which object answers for which channel:
 *  - an SFRELAY_BACKFILL mapping, "channel=Object[:TimeField][(fields)]
 *    [[condition]]" (the poll item syntax without @interval), wins;
 *  - /data/<X>ChangeEvent (Change Data Capture) -> the records of X
 *    modified in the window (Foo__ChangeEvent -> Foo__c), with the poll
 *    spec of X when X is polled, else its built-in or default spec
 *    (LastModifiedDate);
 *  - /event/LoginEventStream and the other Real-Time Event Monitoring
 *    streams -> their big objects (LoginEvent, ...), filtered only on
 *    EventDate, de-duplicated on EventIdentifier;
 *  - anything else (platform events, generic streaming, an unmapped
 *    PushTopic, /data/ChangeEvents) cannot be recovered by query: the
 *    gap is reported and kept.
 *
 * The window is [after_created - BACKFILL_MARGIN_MS, detected]: the
 * margin covers clock skew between Salesforce's event times and the
 * record times, at the price of a few duplicates (lines carry stable
 * ids).
 */

#define BACKFILL_MARGIN_MS (5LL * 60 * 1000)

/* One SFRELAY_BACKFILL entry. Owned by the array (backfill_maps_free). */
struct backfill_map {
	char *channel; /* "/topic/AccountWatch" */
	struct soql_spec spec;
};

/*
 * Parses SFRELAY_BACKFILL: comma-separated "channel=spec" items. Every
 * bad item (channel not /topic/, /event/, /data/ or /u/; bad spec; a
 * channel mapped twice) is reported through problem. Returns 0 with
 * *maps (owned) and *n, or -1.
 */
int backfill_parse(const char *text, struct backfill_map **maps, size_t *n,
                   soql_problem_fn *problem, void *arg);
void backfill_maps_free(struct backfill_map *maps, size_t n);

/* A planned recovery query. spec owned (backfill_plan_clear). */
struct backfill_plan {
	struct soql_spec spec;
	long long from_ms;
	long long to_ms;
};

enum backfill_verdict {
	BACKFILL_PLANNED = 0,
	BACKFILL_UNMAPPED, /* no object answers for this channel */
	BACKFILL_INVALID,  /* the gap lacks usable times */
	BACKFILL_NOMEM,
};

/*
 * Plans the query for gap. maps: SFRELAY_BACKFILL; polls: the poll specs
 * (a polled object's fields and condition are reused). On
 * BACKFILL_PLANNED fills plan; otherwise writes the reason into why (one
 * line, naming what to configure when a mapping would help).
 */
enum backfill_verdict backfill_plan(const struct checkpoint_gap *gap,
                                    const struct backfill_map *maps,
                                    size_t nmaps, const struct soql_spec *polls,
                                    size_t npolls, struct backfill_plan *plan,
                                    char *why, size_t whylen);
void backfill_plan_clear(struct backfill_plan *plan);

/* The object a CDC channel carries ("/data/AccountChangeEvent" ->
 * "Account", "/data/Foo__ChangeEvent" -> "Foo__c") into buf. Returns 0,
 * or -1 when channel is not a per-object change event channel. */
int backfill_cdc_object(const char *channel, char *buf, size_t len);

#endif /* SFRELAY_BACKFILL_H */
