#ifndef SFRELAY_CHECKPOINT_PG_H
#define SFRELAY_CHECKPOINT_PG_H

#include <stddef.h>
#include <stdint.h>

#include "sfrelay/checkpoint.h"

struct event_base;

/*
 * The Postgres checkpoint backend (docs/postgres.md): the saved state
 * lives in the tables sfrelay_checkpoints and sfrelay_gaps, on its own
 * connection (pg.h), and every write is fenced by the leader epoch it was
 * opened with: a write made when sfrelay_leader holds another epoch
 * changes nothing and reports CHECKPOINT_DEPOSED.
 *
 * In SQL, a stored position never moves backwards: when both the stored
 * and the new position are decimal numbers (replay ids), the smaller new
 * one is ignored; when neither is a number nor starts with '-' (polled
 * record ids) and both created times are UTC timestamps of the form
 * 2026-11-26T19:27:53.000Z, an older created time is ignored.
 *
 * Load is synchronous (start-up, before any intake); saves are
 * asynchronous (checkpoint_pg_async_ops), the synchronous save waits for
 * one with the configured time limit.
 */

struct checkpoint_pg_opts {
	const char *url;     /* DATABASE_URL; borrowed for the call */
	long long epoch;     /* the fencing token (leader.h) */
	long timeout_ms;     /* connection attempt and each query */
	long backoff_min_ms; /* reconnection delays */
	long backoff_max_ms;
	uint64_t seed;
};

/*
 * Opens the backend and starts connecting on base (borrowed; it must
 * outlive the backend). Returns an impl for checkpoint_new_async() with
 * checkpoint_pg_ops and checkpoint_pg_async_ops, or NULL with err.
 */
void *checkpoint_pg_open(struct event_base *base,
                         const struct checkpoint_pg_opts *opts, char *err,
                         size_t errlen);
extern const struct checkpoint_ops checkpoint_pg_ops;
extern const struct checkpoint_async_ops checkpoint_pg_async_ops;

/*
 * The schema, as one multi-statement text run in one transaction:
 * CREATE TABLE IF NOT EXISTS for the three tables and the leader row
 * (epoch 0), serialized by a transaction advisory lock so that relays
 * starting together do not trip over each other. Safe to re-run.
 */
extern const char checkpoint_pg_schema[];

#endif /* SFRELAY_CHECKPOINT_PG_H */
