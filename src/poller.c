/*
 * The SOQL poller and the backfill runner (see poller.h).
 *
 * One request is in flight at a time, carrying up to five "steps" (a
 * poll object's query or next page, a backfill query or next page): one
 * step goes as a plain GET, several as one composite request, which
 * Salesforce counts as a single API call. When a request ends, the next
 * one is planned at once if a run has more pages or something else is
 * due; otherwise a timer waits for the next due time.
 *
 * Acknowledgement tracking: the relay reports only the newest
 * acknowledged (position, created) per key, so each key keeps a FIFO of
 * the lines it handed over (record id, time). An acknowledgement pops
 * the FIFO up to the matching entry; popped poll entries advance the
 * object's acknowledged mark (they were emitted in (time, id) order),
 * popped backfill entries count down their job.
 */
#include "sfrelay/poller.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sfrelay/auth.h"
#include "sfrelay/backfill.h"
#include "sfrelay/backoff.h"
#include "sfrelay/checkpoint.h"
#include "sfrelay/format.h"
#include "sfrelay/http.h"
#include "sfrelay/log.h"
#include "sfrelay/replay.h"
#include "sfrelay/soql.h"

/* Salesforce: at most five query operations in one composite request. */
#define POLL_MAX_STEPS 5
#define POLL_HOLD_MS 100L
#define POLL_LOCATOR_RETRIES 2
#define BACKFILL_MAX_FAILURES 5
#define ID_MAX 128

enum poller_state {
	POLLER_IDLE,
	POLLER_RUNNING,
	POLLER_STOPPING,
	POLLER_STOPPED,
};

struct job;

/* A line handed to the core and not yet acknowledged. */
struct pending {
	char *id;
	char *created;
	long long t;
	struct job *job; /* NULL: a poll record */
};

/* Everything sent under one key (an object name). */
struct track {
	char *key;
	struct pobj *obj; /* the polled object with this name, or NULL */
	struct pending *q;
	size_t head, n, cap; /* entries q[head..n) */
};

struct pobj {
	struct soql_spec *spec;    /* borrowed from the poller's specs */
	struct soql_mark *emitted; /* handed to the core */
	struct soql_mark *acked;   /* acknowledged by the sink */
	struct track *track;
	long long next_due; /* monotonic ms */
	long long run_due;  /* when the current or last run was due; 0: none */
	int active;         /* a run is in progress */
	char *next_url;     /* its next page, or NULL: query afresh */
	unsigned locator_retries;
	uint64_t records, skipped;
};

/* The recovery of one replay gap. */
struct job {
	struct job *next;
	char *key, *after_position, *detected; /* the gap, as recorded */
	struct backfill_plan plan;
	/* Ordered objects: a mark, so a retried query resumes; big objects
	 * (no order): the identifiers seen, as ids held at one instant. */
	struct soql_mark *seen;
	struct track *track;
	char *first; /* "\"backfill_for\":\"<channel>\"" */
	int active, query_done, given_up;
	char *next_url;
	size_t unacked;
	uint64_t lines;
	unsigned failures;
	long long retry_at;
};

struct step {
	struct pobj *obj;
	struct job *job;
	char *url; /* "/services/data/..." */
};

struct poller {
	struct event_base *base;
	struct http *http;
	struct auth *auth;
	struct checkpoint *cp;
	struct poller_opts opts;
	char *api_version;
	struct poller_callbacks cbs;

	struct soql_spec *specs;
	size_t nspecs;
	struct backfill_map *maps;
	size_t nmaps;
	struct pobj *objs;
	struct track **tracks;
	size_t ntracks;
	struct job *jobs;
	char **noted; /* gaps reported as unrecoverable */
	size_t nnoted;

	enum poller_state state;
	struct event *timer;
	struct http_request *inflight;
	struct step steps[POLL_MAX_STEPS];
	size_t nsteps;
	char *token_used;
	int authing;
	unsigned attempt;
	uint64_t rng;
	long long last_scan;
	struct evbuffer *scratch;

	long long api_used, api_max;
	double stretch;
	int over_budget;
	uint64_t requests, queries, records, skipped, errors, recovered;

	poller_stopped_fn *stopped;
	void *stopped_arg;
};

static void plan(struct poller *p);

static long long
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long
wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
arm(struct poller *p, long long ms)
{
	if (ms < 0)
		ms = 0;
	struct timeval tv = {(time_t)(ms / 1000),
	                     (suseconds_t)((ms % 1000) * 1000)};
	evtimer_add(p->timer, &tv);
}

/* Tracks ----------------------------------------------------------------- */

static struct track *
track_find(const struct poller *p, const char *key)
{
	for (size_t i = 0; i < p->ntracks; i++)
		if (strcmp(p->tracks[i]->key, key) == 0)
			return p->tracks[i];
	return NULL;
}

static struct track *
track_get(struct poller *p, const char *key)
{
	struct track *t = track_find(p, key);
	if (t != NULL)
		return t;
	void *g = realloc(p->tracks, (p->ntracks + 1) * sizeof(*p->tracks));
	if (g == NULL)
		return NULL;
	p->tracks = g;
	t = calloc(1, sizeof(*t));
	if (t == NULL || (t->key = strdup(key)) == NULL) {
		free(t);
		return NULL;
	}
	p->tracks[p->ntracks++] = t;
	return t;
}

static void
pending_clear(struct pending *e)
{
	free(e->id);
	free(e->created);
}

static void
track_free(struct track *t)
{
	if (t == NULL)
		return;
	for (size_t i = t->head; i < t->n; i++)
		pending_clear(&t->q[i]);
	free(t->q);
	free(t->key);
	free(t);
}

static int
track_push(struct track *t, const char *id, const char *created, long long ms,
           struct job *job)
{
	if (t->head > 0 && t->head == t->n)
		t->head = t->n = 0;
	if (t->n == t->cap) {
		if (t->head > 0) {
			/* Reuse the acknowledged front. */
			memmove(t->q, t->q + t->head,
			        (t->n - t->head) * sizeof(*t->q));
			t->n -= t->head;
			t->head = 0;
		} else {
			size_t ncap = t->cap ? t->cap * 2 : 64;
			void *g = realloc(t->q, ncap * sizeof(*t->q));
			if (g == NULL)
				return -1;
			t->q = g;
			t->cap = ncap;
		}
	}
	struct pending *e = &t->q[t->n];
	e->id = strdup(id);
	e->created = strdup(created);
	e->t = ms;
	e->job = job;
	if (e->id == NULL || e->created == NULL) {
		pending_clear(e);
		return -1;
	}
	t->n++;
	return 0;
}

/* Jobs ----------------------------------------------------------------- */

static void
job_free(struct job *j)
{
	if (j == NULL)
		return;
	free(j->key);
	free(j->after_position);
	free(j->detected);
	backfill_plan_clear(&j->plan);
	soql_mark_free(j->seen);
	free(j->first);
	free(j->next_url);
	free(j);
}

static int
same_gap(const struct job *j, const struct checkpoint_gap *g)
{
	return strcmp(j->key, g->key) == 0 &&
	       strcmp(j->after_position, g->after_position) == 0 &&
	       strcmp(j->detected, g->detected) == 0;
}

/* "key|after|detected": the identity of a gap in the noted list. */
static char *
gap_identity(const struct checkpoint_gap *g)
{
	size_t n = strlen(g->key) + strlen(g->after_position) +
	           strlen(g->detected) + 3;
	char *s = malloc(n);
	if (s != NULL)
		snprintf(s, n, "%s|%s|%s", g->key, g->after_position,
		         g->detected);
	return s;
}

static void
job_unlink(struct poller *p, struct job *j)
{
	for (struct job **pp = &p->jobs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			return;
		}
	}
}

/* Removes the gap of a finished job from the checkpoint, once every line
 * of its query has been acknowledged. */
static void
job_maybe_finish(struct poller *p, struct job *j)
{
	if (!j->query_done || j->unacked > 0)
		return;
	const struct checkpoint_gap *gaps;
	size_t n = checkpoint_gaps(p->cp, &gaps);
	for (size_t i = 0; i < n; i++) {
		if (same_gap(j, &gaps[i])) {
			checkpoint_remove_gap(p->cp, i);
			break;
		}
	}
	char err[256], lines[32];
	if (checkpoint_flush(p->cp, err, sizeof(err)) != 0)
		log_warn("checkpoint write failed; it will be retried", "error",
		         err, NULL);
	log_info(
	    "replay gap recovered", "channel", j->key, "object",
	    j->plan.spec.object, "lines",
	    log_fmt(lines, sizeof(lines), "%llu", (unsigned long long)j->lines),
	    NULL);
	p->recovered++;
	job_unlink(p, j);
	job_free(j);
}

static int
noted(const struct poller *p, const char *identity)
{
	for (size_t i = 0; i < p->nnoted; i++)
		if (strcmp(p->noted[i], identity) == 0)
			return 1;
	return 0;
}

static void
scan_gap(struct poller *p, const struct checkpoint_gap *g)
{
	for (struct job *j = p->jobs; j != NULL; j = j->next)
		if (same_gap(j, g))
			return;
	char *id = gap_identity(g);
	if (id == NULL || noted(p, id)) {
		free(id);
		return;
	}
	char why[512];
	struct job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		free(id);
		return;
	}
	enum backfill_verdict v =
	    backfill_plan(g, p->maps, p->nmaps, p->specs, p->nspecs, &j->plan,
	                  why, sizeof(why));
	if (v != BACKFILL_PLANNED) {
		if (v != BACKFILL_NOMEM) {
			log_warn("replay gap cannot be backfilled; it stays "
			         "recorded in the checkpoint",
			         "channel", g->key, "after_replay_id",
			         g->after_position, "after_created",
			         g->after_created != NULL ? g->after_created
			                                  : "unknown",
			         "reason", why, NULL);
			void *grown =
			    realloc(p->noted, (p->nnoted + 1) * sizeof(char *));
			if (grown != NULL) {
				p->noted = grown;
				p->noted[p->nnoted++] = id;
				id = NULL;
			}
		}
		free(id);
		job_free(j);
		return;
	}
	free(id);
	struct evbuffer *b = evbuffer_new();
	j->key = strdup(g->key);
	j->after_position = strdup(g->after_position);
	j->detected = strdup(g->detected);
	j->seen = soql_mark_new();
	j->track = track_get(p, j->plan.spec.object);
	if (b != NULL && evbuffer_add_printf(b, "\"backfill_for\":") > 0 &&
	    format_json_string(b, g->key, strlen(g->key)) == 0) {
		size_t n = evbuffer_get_length(b);
		if ((j->first = malloc(n + 1)) != NULL) {
			evbuffer_remove(b, j->first, n);
			j->first[n] = '\0';
		}
	}
	if (b != NULL)
		evbuffer_free(b);
	if (j->key == NULL || j->after_position == NULL ||
	    j->detected == NULL || j->seen == NULL || j->track == NULL ||
	    j->first == NULL) {
		job_free(j);
		return;
	}
	char from[64], to[64];
	replay_ms_to_iso(j->plan.from_ms, from, sizeof(from));
	replay_ms_to_iso(j->plan.to_ms, to, sizeof(to));
	log_info("backfilling replay gap", "channel", g->key, "object",
	         j->plan.spec.object, "from", from, "to", to, NULL);
	j->next = p->jobs;
	p->jobs = j;
}

static void
scan_gaps(struct poller *p, long long now)
{
	const struct checkpoint_gap *gaps;
	p->last_scan = now;
	size_t n = checkpoint_gaps(p->cp, &gaps);
	for (size_t i = 0; i < n; i++) {
		/* scan_gap does not change the checkpoint, so gaps stays
		 * valid through the loop. */
		scan_gap(p, &gaps[i]);
	}
}

/* Life cycle -------------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *arg);

struct poller *
poller_new(struct event_base *base, struct http *http, struct auth *auth,
           struct checkpoint *cp, const struct poller_opts *opts,
           const struct poller_callbacks *cbs, char *err, size_t errlen)
{
	struct poller *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->base = base;
	p->http = http;
	p->auth = auth;
	p->cp = cp;
	p->opts = *opts;
	p->cbs = *cbs;
	if (p->opts.budget_pct <= 0 || p->opts.budget_pct > 100)
		p->opts.budget_pct = 50;
	if (p->opts.request_timeout_ms <= 0)
		p->opts.request_timeout_ms = 30000;
	if (p->opts.backoff_min_ms <= 0)
		p->opts.backoff_min_ms = 1000;
	if (p->opts.backoff_max_ms <= 0)
		p->opts.backoff_max_ms = 60000;
	if (p->opts.gap_scan_ms <= 0)
		p->opts.gap_scan_ms = 5000;
	p->opts.poll = NULL;
	p->opts.backfill = NULL;
	p->opts.api_version = NULL;
	p->rng = opts->seed != 0 ? opts->seed : 0x2545f4914f6cdd1dULL;
	p->api_used = p->api_max = -1;
	p->stretch = 1.0;
	p->api_version =
	    strdup(opts->api_version != NULL ? opts->api_version : "61.0");
	p->timer = evtimer_new(base, on_timer, p);
	p->scratch = evbuffer_new();
	if (p->api_version == NULL || p->timer == NULL || p->scratch == NULL)
		goto nomem;
	if (opts->poll != NULL && opts->poll[0] != '\0' &&
	    soql_poll_parse(opts->poll, &p->specs, &p->nspecs, NULL, NULL) !=
	        0) {
		snprintf(err, errlen, "SFRELAY_POLL does not parse");
		poller_free(p);
		return NULL;
	}
	if (opts->backfill != NULL && opts->backfill[0] != '\0' &&
	    backfill_parse(opts->backfill, &p->maps, &p->nmaps, NULL, NULL) !=
	        0) {
		snprintf(err, errlen, "SFRELAY_BACKFILL does not parse");
		poller_free(p);
		return NULL;
	}
	p->objs = calloc(p->nspecs + 1, sizeof(*p->objs));
	if (p->objs == NULL)
		goto nomem;
	for (size_t i = 0; i < p->nspecs; i++) {
		struct pobj *o = &p->objs[i];
		o->spec = &p->specs[i];
		o->emitted = soql_mark_new();
		o->acked = soql_mark_new();
		o->track = track_get(p, o->spec->object);
		if (o->emitted == NULL || o->acked == NULL || o->track == NULL)
			goto nomem;
		o->track->obj = o;
	}
	return p;
nomem:
	snprintf(err, errlen, "out of memory");
	poller_free(p);
	return NULL;
}

static void
steps_clear(struct poller *p)
{
	for (size_t i = 0; i < p->nsteps; i++)
		free(p->steps[i].url);
	p->nsteps = 0;
}

void
poller_free(struct poller *p)
{
	if (p == NULL)
		return;
	if (p->inflight != NULL)
		http_cancel(p->http, p->inflight);
	if (p->auth != NULL)
		auth_cancel(p->auth, p);
	steps_clear(p);
	if (p->timer != NULL)
		event_free(p->timer);
	if (p->scratch != NULL)
		evbuffer_free(p->scratch);
	for (size_t i = 0; p->objs != NULL && i < p->nspecs; i++) {
		soql_mark_free(p->objs[i].emitted);
		soql_mark_free(p->objs[i].acked);
		free(p->objs[i].next_url);
	}
	free(p->objs);
	while (p->jobs != NULL) {
		struct job *j = p->jobs;
		p->jobs = j->next;
		job_free(j);
	}
	for (size_t i = 0; i < p->ntracks; i++)
		track_free(p->tracks[i]);
	free(p->tracks);
	for (size_t i = 0; i < p->nnoted; i++)
		free(p->noted[i]);
	free(p->noted);
	soql_specs_free(p->specs, p->nspecs);
	backfill_maps_free(p->maps, p->nmaps);
	free(p->api_version);
	free(p->token_used);
	free(p);
}

int
poller_start(struct poller *p, char *err, size_t errlen)
{
	if (p->state != POLLER_IDLE) {
		snprintf(err, errlen, "already started");
		return -1;
	}
	long long start = wall_ms() - (long long)p->opts.lookback_s * 1000;
	long long now = mono_ms();
	int fresh = 0;
	for (size_t i = 0; i < p->nspecs; i++) {
		struct pobj *o = &p->objs[i];
		const char *pos = checkpoint_get(p->cp, o->spec->object);
		if (pos != NULL) {
			if (soql_mark_parse(o->acked, pos) != 0) {
				snprintf(err, errlen,
				         "the checkpoint of %s (\"%.60s\") is "
				         "not a poll position "
				         "(time|id,id...)",
				         o->spec->object, pos);
				return -1;
			}
		} else {
			/* Stored at once: a crash before the first
			 * acknowledgement must not move "now" forward. */
			struct evbuffer *b = p->scratch;
			char iso[64];
			soql_mark_reset(o->acked, start);
			replay_ms_to_iso(start, iso, sizeof(iso));
			if (soql_mark_format(o->acked, b) != 0 ||
			    evbuffer_add(b, "", 1) != 0) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			checkpoint_set(p->cp, o->spec->object,
			               (const char *)evbuffer_pullup(b, -1),
			               iso);
			evbuffer_drain(b, evbuffer_get_length(b));
			fresh = 1;
		}
		if (soql_mark_copy(o->emitted, o->acked) != 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		o->next_due = now;
		char since[64], ivl[32];
		replay_ms_to_iso(soql_mark_time(o->acked), since,
		                 sizeof(since));
		log_info("polling", "object", o->spec->object, "time_field",
		         o->spec->time_field, "since", since, "interval_ms",
		         log_fmt(ivl, sizeof(ivl), "%ld", o->spec->interval_ms),
		         NULL);
	}
	if (fresh) {
		char cerr[256];
		if (checkpoint_flush(p->cp, cerr, sizeof(cerr)) != 0)
			log_warn("checkpoint write failed; it will be retried",
			         "error", cerr, NULL);
	}
	p->state = POLLER_RUNNING;
	arm(p, 0);
	return 0;
}

static void
finish_stop(struct poller *p)
{
	p->state = POLLER_STOPPED;
	if (p->stopped != NULL)
		p->stopped(p->stopped_arg);
}

void
poller_stop(struct poller *p, poller_stopped_fn *done, void *arg)
{
	p->stopped = done;
	p->stopped_arg = arg;
	p->cbs.event = NULL;
	if (p->inflight != NULL) {
		http_cancel(p->http, p->inflight);
		p->inflight = NULL;
	}
	auth_cancel(p->auth, p);
	p->authing = 0;
	steps_clear(p);
	evtimer_del(p->timer);
	p->state = POLLER_STOPPING;
	arm(p, 0);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct poller *p = arg;
	if (p->state == POLLER_STOPPING) {
		finish_stop(p);
		return;
	}
	plan(p);
}

/* Budget ------------------------------------------------------------------ */

static long long
effective_interval(const struct poller *p, const struct pobj *o)
{
	return (long long)((double)o->spec->interval_ms * p->stretch);
}

static void
note_limits(struct poller *p, const char *header)
{
	long long used, max;
	if (soql_limit_info(header, &used, &max) != 0)
		return;
	p->api_used = used;
	p->api_max = max;
	double pct = (double)used * 100.0 / (double)max;
	double budget = (double)p->opts.budget_pct;
	double factor = 1.0;
	if (pct > budget) {
		factor = budget >= 100.0
		             ? 10.0
		             : 2.0 + 8.0 * (pct - budget) / (100.0 - budget);
		if (factor > 10.0)
			factor = 10.0;
	}
	if (factor != p->stretch) {
		/* The new interval applies from the last run on, not only
		 * after the next one. */
		p->stretch = factor;
		for (size_t i = 0; i < p->nspecs; i++) {
			struct pobj *o = &p->objs[i];
			if (o->run_due != 0)
				o->next_due =
				    o->run_due + effective_interval(p, o);
		}
	}
	char usage[64], b[16], f[16];
	log_fmt(usage, sizeof(usage), "%lld/%lld", used, max);
	log_fmt(b, sizeof(b), "%ld", p->opts.budget_pct);
	log_fmt(f, sizeof(f), "%.1f", factor);
	if (factor > 1.0 && !p->over_budget) {
		p->over_budget = 1;
		log_warn("API usage above budget; polling less often",
		         "api_usage", usage, "budget_pct", b, "stretch", f,
		         NULL);
	} else if (factor <= 1.0 && p->over_budget) {
		p->over_budget = 0;
		log_info("API usage back under budget; polling at the "
		         "configured intervals",
		         "api_usage", usage, "budget_pct", b, NULL);
	}
}

/* Planning ---------------------------------------------------------------- */

/* Full jitter: uniform in [min, min(max, min * 2^(failures - 1))]. */
static void
back_off(struct poller *p, const char *why)
{
	p->attempt++;
	long ms =
	    backoff_delay_from_min(p->opts.backoff_min_ms,
	                           p->opts.backoff_max_ms, p->attempt, &p->rng);
	char delay[32];
	log_warn("poll retrying after back-off", "reason", why, "delay_ms",
	         log_fmt(delay, sizeof(delay), "%ld", ms), NULL);
	arm(p, ms);
}

static void
start_run(struct poller *p, struct pobj *o, long long now)
{
	long long ivl = effective_interval(p, o);
	o->active = 1;
	o->locator_retries = 0;
	/* Keep the phase, so objects with related intervals stay due
	 * together (and share a request); a run late by a whole interval
	 * starts a new phase. */
	o->run_due = o->next_due + ivl <= now ? now : o->next_due;
	o->next_due = o->run_due + ivl;
}

/* The query path of a fresh query from `since`. */
static char *
query_url(struct poller *p, const struct soql_spec *spec, int window,
          long long from, long long to)
{
	struct evbuffer *q = evbuffer_new(), *u = evbuffer_new();
	char *url = NULL;
	if (q == NULL || u == NULL)
		goto out;
	int rc = window ? soql_build_window(q, spec, from, to)
	                : soql_build_since(q, spec, from);
	if (rc == 0 &&
	    evbuffer_add_printf(
	        u, "/services/data/v%s/query?q=", p->api_version) > 0 &&
	    soql_url_escape(u, (const char *)evbuffer_pullup(q, -1),
	                    evbuffer_get_length(q)) == 0) {
		size_t n = evbuffer_get_length(u);
		if ((url = malloc(n + 1)) != NULL) {
			evbuffer_remove(u, url, n);
			url[n] = '\0';
		}
	}
	log_debug("query", "object", spec->object, "soql",
	          q != NULL && evbuffer_get_length(q) > 0
	              ? (const char *)evbuffer_pullup(q, -1)
	              : "",
	          NULL);
out:
	if (q != NULL)
		evbuffer_free(q);
	if (u != NULL)
		evbuffer_free(u);
	return url;
}

static int
add_obj_step(struct poller *p, struct pobj *o)
{
	struct step *s = &p->steps[p->nsteps];
	s->obj = o;
	s->job = NULL;
	s->url = o->next_url != NULL
	             ? strdup(o->next_url)
	             : query_url(p, o->spec, 0, soql_mark_time(o->emitted), 0);
	if (s->url == NULL)
		return -1;
	p->nsteps++;
	return 0;
}

static int
add_job_step(struct poller *p, struct job *j)
{
	struct step *s = &p->steps[p->nsteps];
	s->obj = NULL;
	s->job = j;
	if (j->next_url != NULL) {
		s->url = strdup(j->next_url);
	} else {
		/* A retry resumes after what the failed attempt handed over
		 * (ordered objects only). */
		long long from = j->plan.from_ms;
		if (!j->plan.spec.big && soql_mark_is_set(j->seen) &&
		    soql_mark_time(j->seen) > from)
			from = soql_mark_time(j->seen);
		s->url = query_url(p, &j->plan.spec, 1, from, j->plan.to_ms);
	}
	if (s->url == NULL)
		return -1;
	p->nsteps++;
	return 0;
}

/* When to look again, nothing being due now. */
static void
arm_idle(struct poller *p, long long now, int held)
{
	long long wake = now + p->opts.gap_scan_ms;
	for (size_t i = 0; i < p->nspecs; i++) {
		const struct pobj *o = &p->objs[i];
		if (o->active)
			wake = now + POLL_HOLD_MS;
		else if (o->next_due < wake)
			wake = o->next_due;
	}
	for (struct job *j = p->jobs; j != NULL; j = j->next) {
		if (j->given_up || j->query_done)
			continue;
		if (j->active)
			wake = now + POLL_HOLD_MS;
		else if (j->retry_at < wake)
			wake = j->retry_at;
	}
	if (held && wake < now + POLL_HOLD_MS)
		wake = now + POLL_HOLD_MS;
	arm(p, wake - now);
}

static void send_round(struct poller *p);

static void
on_auth(void *arg, enum auth_status status, const char *err)
{
	struct poller *p = arg;
	p->authing = 0;
	if (p->state != POLLER_RUNNING)
		return;
	if (status == AUTH_OK) {
		plan(p);
	} else if (status == AUTH_PERMANENT) {
		log_error("authentication refused", "error", err, NULL);
		p->state = POLLER_STOPPED;
		if (p->cbs.fatal != NULL)
			p->cbs.fatal(p->cbs.arg, 77, err);
	} else {
		back_off(p, err);
	}
}

static void
begin_auth(struct poller *p)
{
	p->authing = 1;
	if (auth_get(p->auth, on_auth, p) != 0) {
		p->authing = 0;
		back_off(p, "cannot request a token");
	}
}

static void
plan(struct poller *p)
{
	if (p->state != POLLER_RUNNING || p->inflight != NULL || p->authing)
		return;
	evtimer_del(p->timer);
	long long now = mono_ms();
	if (p->last_scan == 0 || now - p->last_scan >= p->opts.gap_scan_ms)
		scan_gaps(p, now);
	int ready = p->cbs.ready == NULL || p->cbs.ready(p->cbs.arg);
	steps_clear(p);
	if (!ready) {
		/* Back-pressure: a due object skips this tick; runs in
		 * progress wait for the queue to drain. */
		for (size_t i = 0; i < p->nspecs; i++) {
			struct pobj *o = &p->objs[i];
			if (!o->active && o->next_due <= now) {
				start_run(p, o, now);
				o->active = 0;
				log_debug("queue full; poll tick skipped",
				          "object", o->spec->object, NULL);
			}
		}
		arm_idle(p, now, 1);
		return;
	}
	int failed = 0;
	/* Runs in progress first: their cursors are waiting. */
	for (size_t i = 0; i < p->nspecs && p->nsteps < POLL_MAX_STEPS; i++)
		if (p->objs[i].active)
			failed |= add_obj_step(p, &p->objs[i]);
	for (struct job *j = p->jobs; j != NULL && p->nsteps < POLL_MAX_STEPS;
	     j = j->next)
		if (j->active)
			failed |= add_job_step(p, j);
	for (size_t i = 0; i < p->nspecs && p->nsteps < POLL_MAX_STEPS; i++) {
		struct pobj *o = &p->objs[i];
		if (!o->active && o->next_due <= now) {
			start_run(p, o, now);
			failed |= add_obj_step(p, o);
		}
	}
	for (struct job *j = p->jobs; j != NULL && p->nsteps < POLL_MAX_STEPS;
	     j = j->next) {
		if (!j->active && !j->query_done && !j->given_up &&
		    j->retry_at <= now) {
			j->active = 1;
			failed |= add_job_step(p, j);
		}
	}
	/* Room left in a request that goes out anyway: objects due within
	 * a quarter of their interval come along for free. */
	for (size_t i = 0;
	     p->nsteps > 0 && i < p->nspecs && p->nsteps < POLL_MAX_STEPS;
	     i++) {
		struct pobj *o = &p->objs[i];
		if (!o->active &&
		    o->next_due - now <= effective_interval(p, o) / 4) {
			start_run(p, o, now);
			failed |= add_obj_step(p, o);
		}
	}
	if (failed) {
		steps_clear(p);
		back_off(p, "out of memory");
		return;
	}
	if (p->nsteps == 0) {
		arm_idle(p, now, 0);
		return;
	}
	if (auth_access_token(p->auth) == NULL ||
	    auth_instance_url(p->auth) == NULL) {
		steps_clear(p);
		begin_auth(p);
		return;
	}
	send_round(p);
}

/* Records ----------------------------------------------------------------- */

/* Hands one record to the core. Returns 0, or -1 when out of memory. */
static int
emit(struct poller *p, struct track *t, struct job *j,
     const struct soql_spec *spec, const struct soql_record *rec,
     const char *id, long long ms)
{
	char created[64];
	const char *drop[] = {spec->id_field, spec->time_field};
	replay_ms_to_iso(ms, created, sizeof(created));
	evbuffer_drain(p->scratch, evbuffer_get_length(p->scratch));
	const char *payload = rec->text;
	size_t len = rec->len;
	if (soql_record_payload(rec, drop, 2, j != NULL ? j->first : NULL,
	                        p->scratch) == 0) {
		len = evbuffer_get_length(p->scratch);
		payload = (const char *)evbuffer_pullup(p->scratch, -1);
	}
	/* Pushed before the event: an acknowledgement may come back from
	 * inside the callback. */
	if (track_push(t, id, created, ms, j) != 0)
		return -1;
	if (j != NULL) {
		j->unacked++;
		j->lines++;
	}
	p->records++;
	struct event ev = {
	    .src = j != NULL ? EVENT_SRC_BACKFILL : EVENT_SRC_POLL,
	    .channel = t->key,
	    .position = id,
	    .event_type = NULL,
	    .created = created,
	    .payload = payload,
	    .payload_len = len,
	};
	if (p->cbs.event != NULL)
		p->cbs.event(p->cbs.arg, &ev);
	evbuffer_drain(p->scratch, evbuffer_get_length(p->scratch));
	return 0;
}

/* The id and time of a record. Returns 0, or -1 (logged) when either is
 * missing or unusable. */
static int
record_keys(const struct soql_spec *spec, const struct soql_record *rec,
            char *id, size_t idlen, long long *ms)
{
	char tbuf[64];
	if (soql_record_string(rec, spec->id_field, id, idlen) != 0) {
		log_warn("record without a usable id skipped", "object",
		         spec->object, "field", spec->id_field, NULL);
		return -1;
	}
	if (soql_record_string(rec, spec->time_field, tbuf, sizeof(tbuf)) !=
	        0 ||
	    replay_iso_to_ms(tbuf, ms) != 0) {
		log_warn("record without a usable time skipped", "object",
		         spec->object, "id", id, "field", spec->time_field,
		         NULL);
		return -1;
	}
	return 0;
}

static int
obj_records(struct poller *p, struct pobj *o, const struct soql_page *page,
            uint64_t *emitted)
{
	char id[ID_MAX];
	long long ms;
	for (size_t i = 0; i < page->nrecords; i++) {
		const struct soql_record *rec = &page->records[i];
		if (record_keys(o->spec, rec, id, sizeof(id), &ms) != 0)
			continue;
		switch (soql_mark_offer(o->emitted, ms, id)) {
		case SOQL_NEW:
			if (emit(p, o->track, NULL, o->spec, rec, id, ms) != 0)
				return -1;
			o->records++;
			(*emitted)++;
			break;
		case SOQL_SEEN:
		case SOQL_OLDER:
			o->skipped++;
			p->skipped++;
			break;
		case SOQL_BAD:
			log_warn("record id cannot be checkpointed; skipped",
			         "object", o->spec->object, "id", id, NULL);
			break;
		case SOQL_NOMEM:
			return -1;
		}
	}
	return 0;
}

static int
job_records(struct poller *p, struct job *j, const struct soql_page *page)
{
	char id[ID_MAX];
	long long ms;
	const struct soql_spec *spec = &j->plan.spec;
	for (size_t i = 0; i < page->nrecords; i++) {
		const struct soql_record *rec = &page->records[i];
		if (record_keys(spec, rec, id, sizeof(id), &ms) != 0)
			continue;
		/* Big objects come in no particular order: every identifier
		 * is kept (a mark held at one instant is a set of ids). */
		enum soql_verdict v =
		    soql_mark_offer(j->seen, spec->big ? 0 : ms, id);
		if (v == SOQL_NOMEM)
			return -1;
		if (v != SOQL_NEW) {
			p->skipped++;
			continue;
		}
		if (emit(p, j->track, j, spec, rec, id, ms) != 0)
			return -1;
	}
	return 0;
}

/* Replies ----------------------------------------------------------------- */

static const char *
step_name(const struct step *s)
{
	return s->obj != NULL ? s->obj->spec->object : s->job->plan.spec.object;
}

/* A step's query failed: the run ends (a poll object re-runs from its
 * emitted mark when next due; a job retries after a delay). */
static void
step_failed(struct poller *p, struct step *s, long status, const char *body,
            size_t len, const char *why)
{
	char code[64] = "", msg[512] = "", st[16];
	if (why == NULL && soql_error_parse(body, len, code, sizeof(code), msg,
	                                    sizeof(msg)) != 0)
		snprintf(msg, sizeof(msg), "HTTP %ld", status);
	p->errors++;
	if (s->obj != NULL) {
		struct pobj *o = s->obj;
		free(o->next_url);
		o->next_url = NULL;
		if (strcmp(code, "INVALID_QUERY_LOCATOR") == 0 &&
		    o->locator_retries++ < POLL_LOCATOR_RETRIES) {
			/* The cursor expired: query again from the mark,
			 * which skips what was already handed over. */
			log_warn("query cursor expired; querying again",
			         "object", o->spec->object, NULL);
			return;
		}
		o->active = 0;
	} else {
		struct job *j = s->job;
		free(j->next_url);
		j->next_url = NULL;
		j->active = 0;
		if (++j->failures >= BACKFILL_MAX_FAILURES) {
			j->given_up = 1;
			log_error("backfill query failed too often; the gap "
			          "stays recorded (a restart tries again)",
			          "channel", j->key, "object",
			          j->plan.spec.object, NULL);
		} else {
			j->retry_at =
			    mono_ms() + backoff_ceiling(p->opts.backoff_min_ms,
			                                p->opts.backoff_max_ms,
			                                j->failures);
		}
	}
	log_error("query failed", "object", step_name(s), "status",
	          log_fmt(st, sizeof(st), "%ld", status), "code",
	          code[0] != '\0' ? code : "none", "error",
	          why != NULL ? why : msg, NULL);
}

static void
step_done(struct poller *p, struct step *s, long status, const char *body,
          size_t len)
{
	char err[128];
	struct soql_page page;
	if (status != 200) {
		step_failed(p, s, status, body, len, NULL);
		return;
	}
	if (soql_page_decode(body, len, &page, err, sizeof(err)) != 0) {
		char why[192];
		snprintf(why, sizeof(why), "query reply malformed: %s", err);
		step_failed(p, s, status, body, len, why);
		return;
	}
	uint64_t got = 0;
	int rc;
	if (s->obj != NULL) {
		struct pobj *o = s->obj;
		rc = obj_records(p, o, &page, &got);
		free(o->next_url);
		o->next_url = NULL;
		if (rc == 0 && page.next_url != NULL) {
			o->next_url = page.next_url;
			page.next_url = NULL;
		} else {
			o->active = 0;
		}
		char n[32], m[64];
		log_debug(
		    "poll page", "object", o->spec->object, "records",
		    log_fmt(n, sizeof(n), "%zu", page.nrecords), "new",
		    log_fmt(m, sizeof(m), "%llu", (unsigned long long)got),
		    "more", o->active ? "yes" : "no", NULL);
	} else {
		struct job *j = s->job;
		rc = job_records(p, j, &page);
		free(j->next_url);
		j->next_url = NULL;
		if (rc == 0 && page.next_url != NULL) {
			j->next_url = page.next_url;
			page.next_url = NULL;
		} else if (rc == 0) {
			j->active = 0;
			j->query_done = 1;
		} else {
			j->active = 0;
		}
	}
	if (rc != 0)
		log_error("out of memory while handing records over; the run "
		          "ends and resumes from its mark",
		          "object", step_name(s), NULL);
	soql_page_clear(&page);
	if (s->job != NULL && s->job->query_done)
		job_maybe_finish(p, s->job);
}

static void
reauthenticate(struct poller *p, const char *why)
{
	log_warn("REST session refused; renewing the token", "reason", why,
	         NULL);
	auth_invalidate(p->auth, p->token_used);
	if (p->attempt == 0) {
		p->attempt++;
		begin_auth(p);
	} else {
		back_off(p, why);
	}
}

static void
composite_done(struct poller *p, const struct http_response *resp)
{
	struct soql_sub *subs = NULL;
	size_t n = 0;
	char err[128];
	int session_lost = 0;
	if (soql_composite_decode(resp->body, resp->body_len, &subs, &n, err,
	                          sizeof(err)) != 0) {
		char why[192];
		snprintf(why, sizeof(why), "composite reply malformed: %s",
		         err);
		for (size_t i = 0; i < p->nsteps; i++)
			step_failed(p, &p->steps[i], resp->status, NULL, 0,
			            why);
		return;
	}
	for (size_t i = 0; i < p->nsteps; i++) {
		char ref[24];
		const struct soql_sub *sub = NULL;
		snprintf(ref, sizeof(ref), "r%zu", i);
		for (size_t k = 0; k < n && sub == NULL; k++)
			if (strcmp(subs[k].ref, ref) == 0)
				sub = &subs[k];
		if (sub == NULL) {
			step_failed(p, &p->steps[i], resp->status, NULL, 0,
			            "missing from the composite reply");
		} else if (sub->status == 401) {
			session_lost = 1; /* the step stays as it was */
		} else {
			step_done(p, &p->steps[i], sub->status, sub->body,
			          sub->len);
		}
	}
	free(subs);
	if (session_lost)
		auth_invalidate(p->auth, p->token_used);
}

static void
on_reply(void *arg, const struct http_response *resp)
{
	struct poller *p = arg;
	char why[512];
	p->inflight = NULL;
	if (resp->limit_info != NULL) {
		note_limits(p, resp->limit_info);
		if (p->cbs.limit_info != NULL)
			p->cbs.limit_info(p->cbs.arg, resp->limit_info);
	}
	if (!resp->transport_ok) {
		snprintf(why, sizeof(why), "query request failed: %s",
		         resp->error != NULL ? resp->error : "?");
		p->errors++;
		steps_clear(p);
		back_off(p, why);
		return;
	}
	if (resp->status == 401) {
		snprintf(why, sizeof(why), "query answered HTTP 401");
		steps_clear(p);
		reauthenticate(p, why);
		return;
	}
	if (resp->status >= 500 || resp->status == 0 || resp->status == 403) {
		/* 5xx: Salesforce trouble; 403: REQUEST_LIMIT_EXCEEDED and
		 * its kin, which waiting cures. */
		char code[64] = "", msg[256] = "";
		soql_error_parse(resp->body, resp->body_len, code, sizeof(code),
		                 msg, sizeof(msg));
		snprintf(why, sizeof(why), "query answered HTTP %ld%s%s%s%s",
		         resp->status, code[0] ? " " : "", code,
		         msg[0] ? ": " : "", msg);
		p->errors++;
		steps_clear(p);
		back_off(p, why);
		return;
	}
	p->attempt = 0;
	if (p->nsteps == 1)
		step_done(p, &p->steps[0], resp->status, resp->body,
		          resp->body_len);
	else if (resp->status == 200)
		composite_done(p, resp);
	else
		for (size_t i = 0; i < p->nsteps; i++)
			step_done(p, &p->steps[i], resp->status, resp->body,
			          resp->body_len);
	steps_clear(p);
	plan(p);
}

static void
send_round(struct poller *p)
{
	const char *token = auth_access_token(p->auth);
	const char *base = auth_instance_url(p->auth);
	struct evbuffer *body = NULL;
	char *url = NULL;
	struct http_request *req = NULL;
	size_t n;
	int rc = -1;

	if (p->nsteps == 1) {
		n = strlen(base) + strlen(p->steps[0].url) + 1;
		if ((url = malloc(n)) != NULL)
			snprintf(url, n, "%s%s", base, p->steps[0].url);
		req = url != NULL ? http_request_new("GET", url) : NULL;
	} else {
		const char *urls[POLL_MAX_STEPS];
		for (size_t i = 0; i < p->nsteps; i++)
			urls[i] = p->steps[i].url;
		n = strlen(base) + strlen(p->api_version) + 64;
		if ((url = malloc(n)) != NULL)
			snprintf(url, n, "%s/services/data/v%s/composite", base,
			         p->api_version);
		body = evbuffer_new();
		if (url != NULL && body != NULL &&
		    soql_build_composite(body, urls, p->nsteps) == 0 &&
		    (req = http_request_new("POST", url)) != NULL &&
		    (http_request_body(req, evbuffer_pullup(body, -1),
		                       evbuffer_get_length(body)) != 0 ||
		     http_request_header(req, "Content-Type",
		                         "application/json") != 0)) {
			http_request_free(req);
			req = NULL;
		}
	}
	if (req != NULL) {
		char auth_value[4096];
		snprintf(auth_value, sizeof(auth_value), "Bearer %s", token);
		rc = http_request_header(req, "Authorization", auth_value);
		rc |= http_request_header(req, "Accept", "application/json");
		memset(auth_value, 0, sizeof(auth_value));
		http_request_timeout(req, p->opts.request_timeout_ms);
		free(p->token_used);
		p->token_used = strdup(token);
		if (rc != 0 || p->token_used == NULL) {
			http_request_free(req);
			rc = -1;
		} else {
			p->inflight = req;
			rc = http_submit(p->http, req, on_reply, p);
			if (rc != 0)
				p->inflight = NULL;
		}
	}
	free(url);
	if (body != NULL)
		evbuffer_free(body);
	if (rc != 0) {
		steps_clear(p);
		back_off(p, "cannot send the query request");
		return;
	}
	p->requests++;
	p->queries += p->nsteps;
	char k[16], used[64];
	log_debug("poll request", "queries",
	          log_fmt(k, sizeof(k), "%zu", p->nsteps), "first",
	          step_name(&p->steps[0]), "api_usage",
	          p->api_max > 0 ? log_fmt(used, sizeof(used), "%lld/%lld",
	                                   p->api_used, p->api_max)
	                         : "unknown",
	          NULL);
}

/* Acknowledgements -------------------------------------------------------- */

int
poller_acked(struct poller *p, const char *key, const char *position,
             const char *created)
{
	struct track *t = track_find(p, key);
	if (t == NULL)
		return 0;
	size_t i;
	for (i = t->head; i < t->n; i++)
		if (strcmp(t->q[i].id, position) == 0 &&
		    strcmp(t->q[i].created, created) == 0)
			break;
	if (i == t->n) {
		log_debug("acknowledged position not pending", "object", key,
		          "id", position, NULL);
		return 1;
	}
	int advanced = 0, jobs = 0;
	for (size_t k = t->head; k <= i; k++) {
		struct pending *e = &t->q[k];
		if (e->job == NULL && t->obj != NULL) {
			/* Emitted in (time, id) order: offering them in turn
			 * rebuilds exactly the mark of what is acknowledged. */
			soql_mark_offer(t->obj->acked, e->t, e->id);
			advanced = 1;
		} else if (e->job != NULL) {
			e->job->unacked--;
			jobs = 1;
		}
		pending_clear(e);
	}
	t->head = i + 1;
	if (t->head == t->n)
		t->head = t->n = 0;
	if (advanced) {
		struct evbuffer *b = evbuffer_new();
		char iso[64];
		replay_ms_to_iso(soql_mark_time(t->obj->acked), iso,
		                 sizeof(iso));
		if (b != NULL && soql_mark_format(t->obj->acked, b) == 0 &&
		    evbuffer_add(b, "", 1) == 0)
			checkpoint_set(p->cp, key,
			               (const char *)evbuffer_pullup(b, -1),
			               iso);
		if (b != NULL)
			evbuffer_free(b);
	}
	for (struct job *j = p->jobs, *next; jobs && j != NULL; j = next) {
		next = j->next; /* j may be freed */
		job_maybe_finish(p, j);
	}
	return 1;
}

void
poller_gaps_changed(struct poller *p)
{
	p->last_scan = 0;
	/* From the loop: the caller may be inside a poller callback. */
	if (p->state == POLLER_RUNNING && p->inflight == NULL && !p->authing)
		arm(p, 0);
}

void
poller_get_stats(const struct poller *p, struct poller_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->requests = p->requests;
	out->queries = p->queries;
	out->records = p->records;
	out->skipped = p->skipped;
	out->errors = p->errors;
	out->api_used = p->api_used;
	out->api_max = p->api_max;
	out->stretch = p->stretch;
	out->objects = p->nspecs;
	for (const struct job *j = p->jobs; j != NULL; j = j->next)
		out->gaps_pending++;
	out->gaps_kept = p->nnoted;
	out->gaps_recovered = p->recovered;
}
