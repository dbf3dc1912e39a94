/*
 * The Postgres checkpoint backend (checkpoint_pg.h).
 *
 * One save is one statement: the whole state goes as text arrays, and
 * data-modifying CTEs upsert the positions and replace the gaps, all
 * guarded by a row of sfrelay_leader locked FOR SHARE with the epoch we
 * were given. A new leader bumps that row (UPDATE) before it loads, so
 * its bump waits for any save of ours already holding the share lock, and
 * any save of ours that comes later finds another epoch and writes
 * nothing: after a takeover the old leader cannot overwrite the new
 * leader's positions, even if it does not know yet that it was deposed.
 */
#include "sfrelay/checkpoint_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "sfrelay/log.h"
#include "sfrelay/pg.h"

const char checkpoint_pg_schema[] =
    "SELECT pg_advisory_xact_lock(8315459572198277122);"
    "CREATE TABLE IF NOT EXISTS sfrelay_checkpoints ("
    " key text PRIMARY KEY,"
    " position text NOT NULL,"
    " created text,"
    " epoch bigint NOT NULL,"
    " updated_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE IF NOT EXISTS sfrelay_gaps ("
    " key text,"
    " after_position text,"
    " after_created text,"
    " detected text,"
    " epoch bigint);"
    "CREATE TABLE IF NOT EXISTS sfrelay_leader ("
    " id int PRIMARY KEY CHECK (id = 1),"
    " epoch bigint NOT NULL,"
    " holder text,"
    " since timestamptz);"
    "INSERT INTO sfrelay_leader (id, epoch) VALUES (1, 0)"
    " ON CONFLICT (id) DO NOTHING;";

#define ISO_UTC                                                                \
	"'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$" \
	"'"

static const char save_sql[] =
    "WITH lead AS ("
    "  SELECT epoch FROM sfrelay_leader"
    "   WHERE id = 1 AND epoch = $1::bigint FOR SHARE),"
    " cp AS ("
    "  INSERT INTO sfrelay_checkpoints AS c (key, position, created, epoch)"
    "  SELECT t.k, t.p, t.c, $1::bigint"
    "    FROM unnest($2::text[], $3::text[], $4::text[]) AS t(k, p, c)"
    "   WHERE EXISTS (SELECT 1 FROM lead)"
    "  ON CONFLICT (key) DO UPDATE"
    "     SET position = excluded.position, created = excluded.created,"
    "         epoch = excluded.epoch, updated_at = now()"
    "   WHERE NOT ("
    "     (c.position ~ '^[0-9]{1,40}$' AND excluded.position ~ '^[0-9]{1,40}$'"
    "      AND excluded.position::numeric < c.position::numeric)"
    "     OR (c.position !~ '^-|^[0-9]+$'"
    "      AND excluded.position !~ '^-|^[0-9]+$'"
    "      AND c.created ~ " ISO_UTC " AND excluded.created ~ " ISO_UTC
    "      AND excluded.created < c.created))"
    "  RETURNING 1),"
    " dg AS ("
    "  DELETE FROM sfrelay_gaps WHERE EXISTS (SELECT 1 FROM lead)"
    "  RETURNING 1),"
    " ig AS ("
    "  INSERT INTO sfrelay_gaps"
    "   (key, after_position, after_created, detected, epoch)"
    "  SELECT g.k, g.p, g.c, g.d, $1::bigint"
    "    FROM unnest($5::text[], $6::text[], $7::text[], $8::text[])"
    "      AS g(k, p, c, d)"
    "   WHERE EXISTS (SELECT 1 FROM lead)"
    "  RETURNING 1)"
    " SELECT (SELECT count(*) FROM lead),"
    "        (SELECT count(*) FROM cp)";

/* Positions first, then gaps in the order they were detected. */
static const char load_sql[] =
    "SELECT 0, key, position, created, NULL FROM sfrelay_checkpoints"
    " UNION ALL"
    " SELECT 1, key, after_position, after_created, detected"
    "   FROM sfrelay_gaps"
    " ORDER BY 1, 5, 2";

struct cppg {
	struct pg *pg;
	char epoch[24];
	long timeout_ms;
	checkpoint_saved_fn *done;
	void *done_arg;
	int inflight;
	int was_up; /* for logging connection changes once */
};

static void
on_state(void *arg, int up, const char *err)
{
	struct cppg *c = arg;
	if (up && !c->was_up)
		log_debug("checkpoint database connected", NULL);
	else if (!up && c->was_up)
		log_warn("checkpoint database connection lost", "error", err,
		         NULL);
	c->was_up = up;
}

void *
checkpoint_pg_open(struct event_base *base,
                   const struct checkpoint_pg_opts *opts, char *err,
                   size_t errlen)
{
	struct cppg *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(c->epoch, sizeof(c->epoch), "%lld", opts->epoch);
	c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 10000;
	struct pg_opts po = {
	    .url = opts->url,
	    .connect_timeout_ms = c->timeout_ms,
	    .query_timeout_ms = c->timeout_ms,
	    .liveness_ms = 0, /* a failed save is retried anyway */
	    .keepalive_idle_s = 10,
	    .keepalive_interval_s = 5,
	    .keepalive_count = 3,
	    .backoff_min_ms = opts->backoff_min_ms,
	    .backoff_max_ms = opts->backoff_max_ms,
	    .reconnect = 1,
	    .seed = opts->seed,
	};
	c->pg = pg_new(base, &po, on_state, c, err, errlen);
	if (c->pg == NULL) {
		free(c);
		return NULL;
	}
	pg_start(c->pg);
	return c;
}

static void
cppg_free(void *impl)
{
	struct cppg *c = impl;
	if (c == NULL)
		return;
	pg_free(c->pg);
	free(c);
}

/* Appends one element of a Postgres array literal: quoted, with '"' and
 * '\' escaped; NULL unquoted. */
static void
array_add(struct evbuffer *b, const char *s, int first)
{
	if (!first)
		evbuffer_add(b, ",", 1);
	if (s == NULL) {
		evbuffer_add(b, "NULL", 4);
		return;
	}
	evbuffer_add(b, "\"", 1);
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			evbuffer_add(b, "\\", 1);
		evbuffer_add(b, p, 1);
	}
	evbuffer_add(b, "\"", 1);
}

/* Ends the literal in b and returns it as a malloc'd string. */
static char *
array_take(struct evbuffer *b)
{
	evbuffer_add(b, "}", 2); /* with the terminating NUL */
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n);
	if (s == NULL)
		abort();
	evbuffer_remove(b, s, n);
	return s;
}

static void
on_saved(void *arg, const struct pg_result *res, const char *err)
{
	struct cppg *c = arg;
	checkpoint_saved_fn *done = c->done;
	void *done_arg = c->done_arg;
	c->inflight = 0;
	c->done = NULL;
	if (err != NULL) {
		char msg[320];
		snprintf(msg, sizeof(msg), "postgres: %s", err);
		done(done_arg, CHECKPOINT_FAILED, msg);
		return;
	}
	const char *lead = pg_value(res, 0, 0);
	if (lead == NULL || strcmp(lead, "1") != 0) {
		done(done_arg, CHECKPOINT_DEPOSED,
		     "postgres: the leader epoch has moved on; another relay "
		     "leads");
		return;
	}
	done(done_arg, CHECKPOINT_SAVED, NULL);
}

static int
cppg_save_start(void *impl, const struct checkpoint_state *st,
                checkpoint_saved_fn *done, void *arg, char *err, size_t errlen)
{
	struct cppg *c = impl;
	if (c->inflight) {
		snprintf(err, errlen, "postgres: a save is already running");
		return -1;
	}
	if (!pg_connected(c->pg)) {
		snprintf(err, errlen, "postgres: not connected");
		return -1;
	}
	struct evbuffer *b[7];
	for (int i = 0; i < 7; i++) {
		b[i] = evbuffer_new();
		if (b[i] == NULL)
			abort();
		evbuffer_add(b[i], "{", 1);
	}
	for (size_t i = 0; i < st->nentries; i++) {
		const struct checkpoint_entry *e = &st->entries[i];
		array_add(b[0], e->key, i == 0);
		array_add(b[1], e->position, i == 0);
		array_add(b[2], e->created, i == 0);
	}
	for (size_t i = 0; i < st->ngaps; i++) {
		const struct checkpoint_gap *g = &st->gaps[i];
		array_add(b[3], g->key, i == 0);
		array_add(b[4], g->after_position, i == 0);
		array_add(b[5], g->after_created, i == 0);
		array_add(b[6], g->detected, i == 0);
	}
	char *params[8];
	params[0] = c->epoch;
	for (int i = 0; i < 7; i++) {
		params[i + 1] = array_take(b[i]);
		evbuffer_free(b[i]);
	}
	c->done = done;
	c->done_arg = arg;
	int rc = pg_query(c->pg, save_sql, 8, (const char *const *)params,
	                  on_saved, c);
	for (int i = 1; i < 8; i++)
		free(params[i]);
	if (rc != 0) {
		c->done = NULL;
		snprintf(err, errlen, "postgres: not connected");
		return -1;
	}
	c->inflight = 1;
	return 0;
}

static int
cppg_wait(void *impl, long timeout_ms, char *err, size_t errlen)
{
	struct cppg *c = impl;
	if (!c->inflight)
		return 0;
	if (pg_wait(c->pg, timeout_ms, err, errlen) != 0 && c->inflight)
		return -1;
	return 0;
}

struct sync_save {
	int status;
	char err[320];
};

static void
sync_done(void *arg, int status, const char *err)
{
	struct sync_save *s = arg;
	s->status = status;
	snprintf(s->err, sizeof(s->err), "%s", err != NULL ? err : "");
}

static int
cppg_save(void *impl, const struct checkpoint_state *st, char *err,
          size_t errlen)
{
	struct cppg *c = impl;
	if (!pg_connected(c->pg) &&
	    pg_wait(c->pg, c->timeout_ms, err, errlen) != 0)
		return -1;
	struct sync_save s = {.status = 1};
	if (cppg_save_start(impl, st, sync_done, &s, err, errlen) != 0)
		return -1;
	if (pg_wait(c->pg, c->timeout_ms, err, errlen) != 0 && s.status == 1) {
		/* The callback still points at s: drop it with the link. */
		pg_reset(c->pg, "save abandoned");
		return -1;
	}
	if (s.status != CHECKPOINT_SAVED) {
		snprintf(err, errlen, "%s", s.err);
		return -1;
	}
	return 0;
}

struct load_run {
	checkpoint_load_fn *fn;
	void *arg;
	int done, rc;
	char err[320];
};

static void
on_schema(void *arg, const struct pg_result *res, const char *err)
{
	struct load_run *l = arg;
	(void)res;
	if (err != NULL) {
		l->rc = -1;
		snprintf(l->err, sizeof(l->err),
		         "postgres: creating the tables failed: %s", err);
	}
}

static void
on_loaded(void *arg, const struct pg_result *res, const char *err)
{
	struct load_run *l = arg;
	l->done = 1;
	if (err != NULL) {
		l->rc = -1;
		snprintf(l->err, sizeof(l->err),
		         "postgres: reading the checkpoints failed: %s", err);
		return;
	}
	int n = pg_rows(res);
	struct checkpoint_entry *e = calloc((size_t)n + 1, sizeof(*e));
	struct checkpoint_gap *g = calloc((size_t)n + 1, sizeof(*g));
	if (e == NULL || g == NULL)
		abort();
	size_t ne = 0, ng = 0;
	for (int r = 0; r < n; r++) {
		const char *kind = pg_value(res, r, 0);
		if (kind != NULL && strcmp(kind, "0") == 0)
			e[ne++] = (struct checkpoint_entry){
			    pg_value(res, r, 1), pg_value(res, r, 2),
			    pg_value(res, r, 3)};
		else
			g[ng++] = (struct checkpoint_gap){
			    pg_value(res, r, 1), pg_value(res, r, 2),
			    pg_value(res, r, 3), pg_value(res, r, 4)};
	}
	struct checkpoint_state st = {e, ne, g, ng};
	if (l->fn(l->arg, &st) != 0) {
		l->rc = -1;
		snprintf(l->err, sizeof(l->err),
		         "postgres: sfrelay_checkpoints or sfrelay_gaps holds "
		         "a row with a NULL key, position or detected time");
	}
	free(e);
	free(g);
}

static int
cppg_load(void *impl, checkpoint_load_fn *fn, void *arg, char *err,
          size_t errlen)
{
	struct cppg *c = impl;
	struct load_run l = {.fn = fn, .arg = arg};
	if (pg_wait(c->pg, c->timeout_ms, err, errlen) != 0)
		return -1;
	if (pg_query(c->pg, checkpoint_pg_schema, 0, NULL, on_schema, &l) !=
	        0 ||
	    pg_query(c->pg, load_sql, 0, NULL, on_loaded, &l) != 0) {
		snprintf(err, errlen, "postgres: not connected");
		return -1;
	}
	if (pg_wait(c->pg, c->timeout_ms, err, errlen) != 0 && !l.done) {
		/* The callbacks still point at l: drop them with the link. */
		pg_reset(c->pg, "load abandoned");
		return -1;
	}
	if (l.rc != 0) {
		snprintf(err, errlen, "%s", l.err);
		return -1;
	}
	return 0;
}

const struct checkpoint_ops checkpoint_pg_ops = {
    .name = "postgres",
    .load = cppg_load,
    .save = cppg_save,
    .free = cppg_free,
};

const struct checkpoint_async_ops checkpoint_pg_async_ops = {
    .save_start = cppg_save_start,
    .wait = cppg_wait,
};
