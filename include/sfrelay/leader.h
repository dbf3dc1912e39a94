#ifndef SFRELAY_LEADER_H
#define SFRELAY_LEADER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

/*
 * The leader lock (docs/postgres.md): of all relays sharing a database,
 * one relays and the others wait. The lock is a session advisory lock
 * held on a connection of its own (pg.h), so it lives exactly as long as
 * that session: when the leader dies or its link does, the server ends
 * the session (TCP keepalives set per session, within the failover time)
 * and the lock is free again.
 *
 * On acquiring the lock the new leader increments the fencing epoch in
 * sfrelay_leader; checkpoint writes carry it (checkpoint_pg.h), so a
 * deposed leader's late writes change nothing.
 *
 * Losing the lock is not the end: after LEADER_LOST the module goes back
 * to being a standby by itself (a new session, polling the lock again),
 * and a later LEADER_ACQUIRED comes with a new epoch. A relay may thus
 * lead several times in one process.
 *
 * Log lines: msg="waiting for the leader lock" (once each time it becomes
 * a standby: at start when the lock is taken, and on losing it),
 * msg="leader lock acquired" epoch=N, msg="leader lock lost".
 */

enum leader_event {
	LEADER_ACQUIRED, /* this relay leads now, with epoch */
	LEADER_LOST,     /* it no longer does: stop relaying at once; the
	                  * module stands by again, for a later ACQUIRED */
};

/* why is NULL for LEADER_ACQUIRED; borrowed for the call. epoch is the
 * one acquired, or for LEADER_LOST the one that was held. The callback
 * may call leader_free() and, for LEADER_ACQUIRED, leader_resign(). */
typedef void leader_fn(void *arg, enum leader_event ev, long long epoch,
                       const char *why);

struct leader_opts {
	const char *url;     /* DATABASE_URL; copied */
	long failover_ms;    /* SFRELAY_FAILOVER */
	const char *holder;  /* who we are, for sfrelay_leader.holder; copied */
	long backoff_min_ms; /* reconnection delays while a standby */
	long backoff_max_ms;
	uint64_t seed;
};

/*
 * The timing derived from the failover time F, so that the server frees
 * a dead leader's lock within 2F/3 (its keepalives on the session), a
 * standby polls every F/3, and a leader notices a dead link (a query
 * unanswered) within F/3, before the server gives its lock away.
 */
struct leader_timing {
	long poll_ms;          /* standby: pg_try_advisory_lock interval */
	long liveness_ms;      /* idle time before a liveness query */
	long query_timeout_ms; /* an unanswered query means a dead link */
	long connect_timeout_ms;
	long keepalive_idle_s; /* server and client TCP keepalives */
	long keepalive_interval_s;
	long keepalive_count;
	long user_timeout_ms; /* server tcp_user_timeout */
};
void leader_timing(long failover_ms, struct leader_timing *t);

struct leader;

/* base and fn/arg borrowed. Does not connect yet. Returns NULL with err
 * when the URL does not parse. */
struct leader *leader_new(struct event_base *base,
                          const struct leader_opts *opts, leader_fn *fn,
                          void *arg, char *err, size_t errlen);
/* Closes the session (which releases the lock). No callback. NULL ok. */
void leader_free(struct leader *l);

/* Connects, creates the schema if missing and tries the lock; keeps
 * trying (polling as a standby, reconnecting with back-off) until it is
 * acquired, and again each time it is lost, until leader_free(). */
void leader_start(struct leader *l);

/* The fencing epoch while leading, else 0. */
long long leader_epoch(const struct leader *l);
/* 1 while leading. */
int leader_is_leader(const struct leader *l);

/*
 * Gives the lock up because leading is no longer safe (a checkpoint
 * write was refused as deposed, or the checkpoints could not be loaded):
 * closes the session (which releases the lock at once), logs "leader
 * lock lost" and calls back with LEADER_LOST before returning. The
 * module then stands by again, on a new session after the back-off.
 * No-op unless leading.
 */
void leader_resign(struct leader *l, const char *why);

#endif /* SFRELAY_LEADER_H */
