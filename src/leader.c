/*
 * The leader lock (leader.h).
 *
 * A small state machine over one pg connection:
 *   up -> SET the session's keepalives -> schema -> try the lock
 *   lock free  -> bump the epoch -> LEADING (the session that holds the
 *                 lock is never silently replaced: a new one would not
 *                 hold it)
 *   lock taken -> STANDBY, try again every poll_ms
 * Any error while not leading resets the connection (which also drops a
 * lock we might hold without knowing it) and starts over after back-off.
 * Losing the lock (the session broke, or leader_resign()) is reported
 * and then the machine starts over as a standby, on a new session,
 * exactly as at start: it has to win the lock, and a new epoch, again.
 */
#include "sfrelay/leader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "sfrelay/checkpoint_pg.h"
#include "sfrelay/log.h"
#include "sfrelay/pg.h"

/* pg_try_advisory_lock key: "sfrly" and 1 in the low bytes. */
#define LEADER_LOCK_KEY "8315459572198277121"

enum leader_state {
	LEADER_IDLE,    /* connecting or setting up */
	LEADER_TRYING,  /* a lock attempt is in flight */
	LEADER_STANDBY, /* waiting for the poll timer */
	LEADER_LEADING,
};

struct leader {
	struct event_base *base;
	struct pg *pg;
	struct leader_timing t;
	char *holder;
	leader_fn *fn;
	void *arg;
	enum leader_state st;
	long long epoch;
	int said_waiting;
	int resigning; /* leader_resign() is dropping the session */
	struct event *poll;
	int in_cb, freeing;
};

static void try_lock(struct leader *l);

void
leader_timing(long failover_ms, struct leader_timing *t)
{
	long f = failover_ms > 0 ? failover_ms : 15000;
	long budget_s = f * 2 / 3 / 1000;
	if (budget_s < 2)
		budget_s = 2;
	t->poll_ms = f / 3;
	t->liveness_ms = f / 6;
	t->query_timeout_ms = f / 6 > 500 ? f / 6 : 500;
	t->connect_timeout_ms = f / 3 > 5000 ? f / 3 : 5000;
	t->keepalive_idle_s = budget_s / 2;
	t->keepalive_interval_s = budget_s / 6 > 1 ? budget_s / 6 : 1;
	t->keepalive_count =
	    (budget_s - t->keepalive_idle_s) / t->keepalive_interval_s;
	if (t->keepalive_count < 1)
		t->keepalive_count = 1;
	t->user_timeout_ms = budget_s * 1000;
}

static void
destroy(struct leader *l)
{
	pg_free(l->pg);
	if (l->poll != NULL)
		event_free(l->poll);
	free(l->holder);
	free(l);
}

/* Calls the user's callback; returns 1 when it freed l. */
static int
notify(struct leader *l, enum leader_event ev, const char *why)
{
	l->in_cb++;
	l->fn(l->arg, ev, l->epoch, why);
	if (--l->in_cb == 0 && l->freeing) {
		destroy(l);
		return 1;
	}
	return 0;
}

/*
 * No longer leading: say so, and that this relay stands by again (once
 * per standby period, as at start, so the line is not repeated by the
 * first refused attempt), then tell the user. The caller has set up the
 * reconnection: the machine goes on by itself from the next session.
 */
static void
lost(struct leader *l, const char *why)
{
	char ep[24];
	l->st = LEADER_IDLE;
	event_del(l->poll);
	log_error("leader lock lost", "epoch",
	          log_fmt(ep, sizeof(ep), "%lld", l->epoch), "error", why,
	          NULL);
	l->said_waiting = 1;
	log_info("waiting for the leader lock", "holder", "unknown", NULL);
	notify(l, LEADER_LOST, why);
}

/* Something went wrong before leading: start over on a new session. */
static void
restart(struct leader *l, const char *what, const char *err)
{
	log_warn("leader lock: database error; reconnecting", "step", what,
	         "error", err, NULL);
	l->st = LEADER_IDLE;
	pg_reset(l->pg, "leader lock: starting over");
}

static void
on_bumped(void *arg, const struct pg_result *res, const char *err)
{
	struct leader *l = arg;
	const char *v = err == NULL ? pg_value(res, 0, 0) : NULL;
	if (v == NULL) {
		restart(l, "epoch", err != NULL ? err : "no leader row");
		return;
	}
	l->epoch = strtoll(v, NULL, 10);
	l->st = LEADER_LEADING;
	pg_set_reconnect(l->pg, 0);
	char ep[24];
	log_info("leader lock acquired", "epoch",
	         log_fmt(ep, sizeof(ep), "%lld", l->epoch), "holder", l->holder,
	         NULL);
	notify(l, LEADER_ACQUIRED, NULL);
}

static void
on_tried(void *arg, const struct pg_result *res, const char *err)
{
	struct leader *l = arg;
	if (err != NULL) {
		restart(l, "lock", err);
		return;
	}
	const char *got = pg_value(res, 0, 0);
	if (got != NULL && strcmp(got, "t") == 0) {
		const char *params[] = {l->holder};
		if (pg_query(l->pg,
		             "UPDATE sfrelay_leader SET epoch = epoch + 1,"
		             " holder = $1, since = now() WHERE id = 1"
		             " RETURNING epoch",
		             1, params, on_bumped, l) != 0)
			restart(l, "epoch", "not connected");
		return;
	}
	l->st = LEADER_STANDBY;
	if (!l->said_waiting) {
		const char *holder = pg_value(res, 0, 1);
		l->said_waiting = 1;
		log_info("waiting for the leader lock", "holder",
		         holder != NULL ? holder : "unknown", NULL);
	}
	struct timeval tv = {.tv_sec = l->t.poll_ms / 1000,
	                     .tv_usec = (l->t.poll_ms % 1000) * 1000};
	event_add(l->poll, &tv);
}

static void
try_lock(struct leader *l)
{
	if (!pg_connected(l->pg))
		return;
	l->st = LEADER_TRYING;
	if (pg_query(l->pg,
	             "SELECT pg_try_advisory_lock(" LEADER_LOCK_KEY "),"
	             " (SELECT holder FROM sfrelay_leader WHERE id = 1)",
	             0, NULL, on_tried, l) != 0)
		l->st = LEADER_IDLE;
}

static void
on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct leader *l = arg;
	(void)fd;
	(void)what;
	if (l->st == LEADER_STANDBY)
		try_lock(l);
}

static void
on_schema(void *arg, const struct pg_result *res, const char *err)
{
	struct leader *l = arg;
	(void)res;
	if (err != NULL) {
		restart(l, "schema", err);
		return;
	}
	try_lock(l);
}

static void
on_session(void *arg, const struct pg_result *res, const char *err)
{
	struct leader *l = arg;
	if (err != NULL) {
		restart(l, "session settings", err);
		return;
	}
	const char *n = pg_value(res, 0, 0);
	log_debug("leader session keepalives set", "settings",
	          n != NULL ? n : "0", NULL);
	if (pg_query(l->pg, checkpoint_pg_schema, 0, NULL, on_schema, l) != 0)
		l->st = LEADER_IDLE;
}

static void
on_state(void *arg, int up, const char *err)
{
	struct leader *l = arg;
	if (!up) {
		event_del(l->poll);
		if (l->resigning)
			return; /* leader_resign() reports it */
		if (l->st == LEADER_LEADING) {
			/* pg reconnects once this returns: a new session, as
			 * a standby. */
			pg_set_reconnect(l->pg, 1);
			lost(l, err != NULL ? err : "connection lost");
			return;
		}
		l->st = LEADER_IDLE;
		/* Each attempt is spaced by the back-off: one line each. */
		log_warn("leader lock: database unavailable; retrying", "error",
		         err != NULL ? err : "connection lost", NULL);
		return;
	}
	/* The server ends this session, and frees the lock, when the
	 * leader's host or link dies: keepalives on the server side. */
	char idle[24], intvl[24], count[24], user[24];
	const char *params[] = {
	    log_fmt(idle, sizeof(idle), "%ld", l->t.keepalive_idle_s),
	    log_fmt(intvl, sizeof(intvl), "%ld", l->t.keepalive_interval_s),
	    log_fmt(count, sizeof(count), "%ld", l->t.keepalive_count),
	    log_fmt(user, sizeof(user), "%ld", l->t.user_timeout_ms),
	};
	if (pg_query(l->pg,
	             /* tcp_user_timeout is new in PostgreSQL 12: settings
	              * the server does not know are skipped. */
	             "SELECT count(set_config(v.name, v.value, false))"
	             "  FROM (VALUES ('tcp_keepalives_idle', $1),"
	             "   ('tcp_keepalives_interval', $2),"
	             "   ('tcp_keepalives_count', $3),"
	             "   ('tcp_user_timeout', $4)) AS v(name, value)"
	             " WHERE v.name IN (SELECT name FROM pg_settings)",
	             4, params, on_session, l) != 0)
		l->st = LEADER_IDLE;
}

struct leader *
leader_new(struct event_base *base, const struct leader_opts *opts,
           leader_fn *fn, void *arg, char *err, size_t errlen)
{
	struct leader *l = calloc(1, sizeof(*l));
	if (l == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->base = base;
	l->fn = fn;
	l->arg = arg;
	leader_timing(opts->failover_ms, &l->t);
	l->holder = strdup(opts->holder != NULL ? opts->holder : "sfrelay");
	l->poll = evtimer_new(base, on_poll, l);
	struct pg_opts po = {
	    .url = opts->url,
	    .connect_timeout_ms = l->t.connect_timeout_ms,
	    .query_timeout_ms = l->t.query_timeout_ms,
	    .liveness_ms = l->t.liveness_ms,
	    .keepalive_idle_s = l->t.keepalive_idle_s,
	    .keepalive_interval_s = l->t.keepalive_interval_s,
	    .keepalive_count = l->t.keepalive_count,
	    .backoff_min_ms = opts->backoff_min_ms,
	    .backoff_max_ms = opts->backoff_max_ms,
	    .reconnect = 1,
	    .seed = opts->seed,
	};
	if (l->holder == NULL || l->poll == NULL ||
	    (l->pg = pg_new(base, &po, on_state, l, err, errlen)) == NULL) {
		if (l->holder == NULL || l->poll == NULL)
			snprintf(err, errlen, "out of memory");
		destroy(l);
		return NULL;
	}
	return l;
}

void
leader_free(struct leader *l)
{
	if (l == NULL)
		return;
	if (l->in_cb > 0) {
		l->freeing = 1;
		return;
	}
	destroy(l);
}

void
leader_start(struct leader *l)
{
	pg_start(l->pg);
}

long long
leader_epoch(const struct leader *l)
{
	return l->st == LEADER_LEADING ? l->epoch : 0;
}

int
leader_is_leader(const struct leader *l)
{
	return l->st == LEADER_LEADING;
}

void
leader_resign(struct leader *l, const char *why)
{
	if (l->st != LEADER_LEADING)
		return;
	/* Closing the session releases the lock now; the next one (after
	 * the back-off) starts over as a standby. */
	l->st = LEADER_IDLE;
	l->resigning = 1;
	pg_set_reconnect(l->pg, 1);
	pg_reset(l->pg, why);
	l->resigning = 0;
	lost(l, why);
}
