/*
 * sfrelay: Salesforce streaming events -> log lines.
 *
 * main wires the modules together on one event loop and owns the process
 * life cycle: configuration, start, signals, orderly shutdown, exit code.
 *
 * Two lifetimes: the process (configuration, event loop, signals, the
 * leader lock) and a term of relaying (HTTP, auth, sink and relay,
 * stream, poller, stats, checkpoints). With the file store there is one
 * term. With Postgres a term starts each time the leader lock is
 * acquired and ends when it is lost; the process then stands by again.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <curl/curl.h>
#include <event2/event.h>

#include "sfrelay/auth.h"
#include "sfrelay/backoff.h"
#include "sfrelay/bayeux.h"
#include "sfrelay/check.h"
#include "sfrelay/checkpoint.h"
#include "sfrelay/checkpoint_pg.h"
#include "sfrelay/config.h"
#include "sfrelay/http.h"
#include "sfrelay/leader.h"
#include "sfrelay/lines.h"
#include "sfrelay/log.h"
#include "sfrelay/loop.h"
#include "sfrelay/poller.h"
#include "sfrelay/relay.h"
#include "sfrelay/replay.h"
#include "sfrelay/sink.h"
#include "sfrelay/sinks.h"
#include "sfrelay/stats.h"

#define SFRELAY_VERSION "0.1.0"
#define EXIT_USAGE 64
#define EXIT_CONFIG 78
#define EXIT_TEMPFAIL 75
/* Bytes of formatted lines held before back-pressure: bounds memory
 * whatever the lines' size, next to SFRELAY_QUEUE_LINES. */
#define QUEUE_MAX_BYTES (4u * 1024u * 1024u)

extern char **environ;

/* Everything the process runs on; lives on main's stack. */
struct app {
	struct config cfg;
	struct event_base *base;
	/* The term: built by start_relaying(), freed by stop_term(). */
	struct http *http;
	struct auth *auth;
	struct relay *relay;
	struct checkpoint *checkpoint;
	struct bayeux *bayeux; /* NULL without SFRELAY_CHANNELS */
	struct poller *poller; /* polls SFRELAY_POLL, backfills gaps */
	int sources;           /* sources not yet stopped (shutdown) */
	struct stats *stats;
	struct lines_redact *redact;
	int relaying; /* a term runs and has not lost the lock */
	/* The process. */
	/* SFRELAY_CHECKPOINT=postgres only; NULL while waiting to stand by
	 * again after a failed checkpoint load (load_retry). */
	struct leader *leader;
	/* What the last term held in memory (acknowledged, maybe not yet
	 * stored): a new term adopts the keys its database lacks. */
	struct carried {
		char *key, *position, *created;
	} * carry;
	size_t ncarry;
	struct event *sigint, *sigterm, *deadline;
	struct event *demote; /* ends a lost term from the loop */
	/* Checkpoint loads that failed in a row (reset by one that works),
	 * the jitter for their back-off, and the timer that ends it. */
	unsigned load_failures;
	uint64_t load_rng;
	struct event *load_retry;
	int curl_ready;
	int stopping;
	int exit_code;
};

static void
finish_loop(struct app *app)
{
	event_base_loopexit(app->base, NULL);
}

/* Writes pending checkpoints now. Returns 0 or -1 (logged). */
static int
save_checkpoints(struct app *app)
{
	char err[512];
	if (app->checkpoint == NULL ||
	    checkpoint_flush(app->checkpoint, err, sizeof(err)) == 0)
		return 0;
	log_error("checkpoint write failed", "error", err, NULL);
	return -1;
}

/* Every line the sink will take is acknowledged (or it failed). */
static void
on_drained(void *arg)
{
	struct app *app = arg;
	if (save_checkpoints(app) != 0 && app->exit_code == 0)
		app->exit_code = EXIT_TEMPFAIL;
	log_info("stopped", NULL);
	finish_loop(app);
}

static void
on_stopped(void *arg)
{
	struct app *app = arg;
	/* No more stats lines: the queue must be able to empty. */
	stats_free(app->stats);
	app->stats = NULL;
	/* Lines first: a checkpoint may only cover what the sink took.
	 * Network sinks acknowledge later; the deadline bounds the wait. */
	if (relay_flush(app->relay) != 0 && app->exit_code == 0)
		app->exit_code = EXIT_TEMPFAIL;
	relay_drain(app->relay, on_drained, app);
}

/* Each source (stream, poller) reports here once stopped; the last one
 * starts the drain. */
static void
on_source_stopped(void *arg)
{
	struct app *app = arg;
	if (--app->sources == 0)
		on_stopped(app);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct app *app = arg;
	log_warn("shutdown deadline passed; exiting", NULL);
	if (app->relay != NULL)
		relay_flush(app->relay);
	save_checkpoints(app);
	finish_loop(app);
}

static void
begin_shutdown(struct app *app, int code, const char *why)
{
	if (app->stopping) {
		/* A second signal: no more waiting, one save attempt. */
		log_warn("second signal; exiting now", "reason", why, NULL);
		save_checkpoints(app);
		finish_loop(app);
		return;
	}
	app->stopping = 1;
	if (code != 0)
		app->exit_code = code;
	log_info("shutting down", "reason", why, NULL);
	if (!app->relaying) {
		/* A standby (perhaps with a lost term not yet freed, whose
		 * lines are abandoned anyway): nothing to drain. */
		finish_loop(app);
		return;
	}
	long ms = app->cfg.shutdown_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(app->deadline, &tv);
	app->sources = 1 + (app->bayeux != NULL);
	if (app->bayeux != NULL) {
		char hs[24], ahead[24];
		snprintf(hs, sizeof(hs), "%lu",
			 bayeux_handshakes(app->bayeux));
		snprintf(ahead, sizeof(ahead), "%lu",
			 bayeux_connects_ahead(app->bayeux));
		log_info("stopping the stream", "handshakes", hs,
			 "connects_ahead", ahead, NULL);
		bayeux_stop(app->bayeux, on_source_stopped, app);
	}
	poller_stop(app->poller, on_source_stopped, app);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	begin_shutdown(arg, 0, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

static void
on_event(void *arg, const struct event *ev)
{
	struct app *app = arg;
	if (!app->relaying)
		return; /* the lock is lost: the next leader replays it */
	/* After a crash before a channel's first acknowledgement, the replay
	 * from the start marker brings older events the user never asked
	 * for: drop those (see replay.h). */
	if (replay_before_marker(checkpoint_get(app->checkpoint, ev->channel),
				 checkpoint_created(app->checkpoint, ev->channel),
				 ev->created)) {
		log_debug("event older than the subscription start skipped",
			  "channel", ev->channel, "replay_id", ev->position,
			  NULL);
		return;
	}
	relay_submit(app->relay, ev);
}

static const char *
on_replay(void *arg, const char *channel)
{
	struct app *app = arg;
	const char *pos = checkpoint_get(app->checkpoint, channel);
	return pos != NULL ? pos : app->cfg.replay_from == -2 ? "-2" : "-1";
}

static void
on_position(void *arg, const char *channel, const char *position,
	    const char *created)
{
	struct app *app = arg;
	/* Polled objects checkpoint a high-water mark, which the poller
	 * derives from the acknowledged record. */
	if (!poller_acked(app->poller, channel, position, created))
		checkpoint_set(app->checkpoint, channel, position,
			       created[0] != '\0' ? created : NULL);
	stats_note_ack(app->stats, created[0] != '\0' ? created : NULL);
}

static void
on_poll_event(void *arg, const struct event *ev)
{
	struct app *app = arg;
	if (!app->relaying)
		return;
	relay_submit(app->relay, ev);
}

static void
on_limit_info(void *arg, const char *value)
{
	struct app *app = arg;
	stats_note_limit_info(app->stats, value);
}

static void
on_stats_collect(void *arg, struct stats_totals *t)
{
	struct app *app = arg;
	struct relay_stats rs;
	relay_get_stats(app->relay, &rs);
	unsigned long hs = app->bayeux != NULL ? bayeux_handshakes(app->bayeux)
					       : 0;
	t->events = rs.events;
	t->dropped = rs.dropped;
	t->reconnects = rs.reconnects + (hs > 1 ? hs - 1 : 0);
	t->queue = rs.queued;
	const struct checkpoint_gap *gaps;
	t->gaps = checkpoint_gaps(app->checkpoint, &gaps);
}

/* The stats line goes through the sink like an event line. */
static void
on_stats_line(void *arg, const char *line, size_t len)
{
	struct app *app = arg;
	if (app->relaying)
		relay_submit_line(app->relay, line, len);
}

static void
utc_now(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int ms = (int)(ts.tv_nsec / 1000000L) % 1000;
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
		 tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
		 tm.tm_sec % 100, ms);
}

/* A channel that starts from "new events only" gets a marker with the
 * subscribe time, written at once: a crash before its first
 * acknowledgement must not skip what was published meanwhile. */
static void
on_subscribed(void *arg, const char *channel, const char *from)
{
	struct app *app = arg;
	if (strcmp(from, "-1") != 0)
		return;
	char now[64];
	utc_now(now, sizeof(now));
	checkpoint_set(app->checkpoint, channel, REPLAY_MARKER_POSITION, now);
	if (app->leader != NULL)
		checkpoint_write_soon(app->checkpoint); /* never blocks */
	else
		save_checkpoints(app);
}

/* The stream cannot give back what came after `rejected`: say so loudly
 * and keep the gap, so it can be recovered by query. */
static void
on_gap(void *arg, const char *channel, const char *rejected, const char *error)
{
	struct app *app = arg;
	const char *created = checkpoint_created(app->checkpoint, channel);
	char now[64];
	utc_now(now, sizeof(now));
	log_warn("replay gap: events after the last checkpoint are past "
		 "Salesforce's retention and may be missing",
		 "channel", channel, "last_replay_id", rejected,
		 "last_created", created != NULL ? created : "unknown",
		 "restart_from", app->cfg.replay_invalid == -1 ? "-1" : "-2",
		 "error", error, NULL);
	const struct checkpoint_gap *gaps;
	size_t n = checkpoint_gaps(app->checkpoint, &gaps);
	for (size_t i = 0; i < n; i++)
		if (strcmp(gaps[i].key, channel) == 0 &&
		    strcmp(gaps[i].after_position, rejected) == 0)
			return; /* already recorded */
	struct checkpoint_gap g = {.key = channel,
				   .after_position = rejected,
				   .after_created = created,
				   .detected = now};
	checkpoint_add_gap(app->checkpoint, &g);
	poller_gaps_changed(app->poller); /* backfill it (backfill.h) */
}

static int
on_ready(void *arg)
{
	struct app *app = arg;
	return !relay_full(app->relay);
}

static int
on_keeping_up(void *arg)
{
	struct app *app = arg;
	return relay_keeping_up(app->relay);
}

static void
on_fatal(void *arg, int code, const char *msg)
{
	struct app *app = arg;
	if (app->stopping) {
		if (app->exit_code == 0)
			app->exit_code = code;
		finish_loop(app);
		return;
	}
	app->stopping = 1;
	app->exit_code = code;
	log_error("cannot continue", "error", msg, NULL);
	save_checkpoints(app); /* what was acknowledged stays acknowledged */
	finish_loop(app);
}

static void
on_libevent_log(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_WARN)
		log_warn("libevent", "detail", msg, NULL);
}

static int
parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			config_print_help(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--help-markdown") == 0) {
			config_print_markdown(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--check") == 0)
			return check_run((const char *const *)environ, stdout);
		if (strcmp(argv[i], "--version") == 0) {
			printf("sfrelay %s\n", SFRELAY_VERSION);
			return 0;
		}
		fprintf(stderr,
			"sfrelay: unknown argument '%s' (try --help; settings "
			"come from environment variables)\n",
			argv[i]);
		return EXIT_USAGE;
	}
	return -1;
}

static int
load_config(struct app *app)
{
	char err[4096];
	if (config_load(&app->cfg, (const char *const *)environ, err,
			sizeof(err)) == 0)
		return 0;
	/* One line per problem, each naming its variable. */
	for (char *line = strtok(err, "\n"); line != NULL;
	     line = strtok(NULL, "\n"))
		fprintf(stderr, "sfrelay: configuration error: %s\n", line);
	return -1;
}

/* Opens and loads the checkpoint store; problems are configuration
 * errors (exit 78) that name the setting. */
static int
open_checkpoints(struct app *app)
{
	char err[512];
	void *impl = checkpoint_file_open(app->cfg.state_dir, err, sizeof(err));
	if (impl == NULL)
		goto fail;
	app->checkpoint = checkpoint_new(app->base, &checkpoint_file_ops, impl,
					 app->cfg.checkpoint_interval_ms);
	if (app->checkpoint == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if (checkpoint_load(app->checkpoint, err, sizeof(err)) != 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "sfrelay: configuration error: SFRELAY_STATE_DIR: %s\n",
		err);
	return -1;
}

static void on_demote(evutil_socket_t fd, short what, void *arg);

static void on_load_retry(evutil_socket_t fd, short what, void *arg);

/* SIGINT, SIGTERM, the shutdown deadline, the end of a lost term and
 * the wait after a failed checkpoint load: once for the process,
 * whatever the number of terms. */
static int
add_signals(struct app *app)
{
	if (app->sigint != NULL)
		return 0;
	app->sigint = evsignal_new(app->base, SIGINT, on_signal, app);
	app->sigterm = evsignal_new(app->base, SIGTERM, on_signal, app);
	app->deadline = evtimer_new(app->base, on_deadline, app);
	app->demote = evtimer_new(app->base, on_demote, app);
	app->load_retry = evtimer_new(app->base, on_load_retry, app);
	if (app->sigint == NULL || app->sigterm == NULL ||
	    app->deadline == NULL || app->demote == NULL ||
	    app->load_retry == NULL)
		return -1;
	event_add(app->sigint, NULL);
	event_add(app->sigterm, NULL);
	return 0;
}

static int
build(struct app *app)
{
	char err[256];
	const struct config *cfg = &app->cfg;
	struct http_opts hopts = {.ca_file = cfg->ca_file,
				  .timeout_ms = cfg->connect_timeout_ms};
	app->http = http_new(app->base, &hopts, err, sizeof(err));
	if (app->http == NULL) {
		log_error("cannot start HTTP", "error", err, NULL);
		return -1;
	}
	app->auth = auth_new(app->base, app->http, cfg, err, sizeof(err));
	if (app->auth == NULL) {
		log_error("cannot set up authentication", "error", err, NULL);
		return -1;
	}
	struct sink *sink = sink_open(app->base, app->http, cfg, err,
				      sizeof(err));
	if (sink == NULL) {
		log_error("cannot open the sink", "error", err, NULL);
		return -1;
	}
	if (cfg->nredact > 0 &&
	    (app->redact = lines_redact_new((const char *const *)cfg->redact,
					    cfg->nredact)) == NULL) {
		sink_free(sink);
		return -1;
	}
	struct relay_opts ropts = {.format = cfg->format,
				   .max_lines = (size_t)cfg->queue_lines,
				   .max_bytes = QUEUE_MAX_BYTES,
				   .redact = app->redact};
	app->relay = relay_new(&ropts, sink);
	if (app->auth == NULL || app->relay == NULL) {
		if (app->relay == NULL)
			sink_free(sink);
		return -1;
	}
	relay_set_callbacks(app->relay, on_fatal, on_position, app);
	struct bayeux_opts bopts = {
		.api_version = cfg->api_version,
		.channels = (const char *const *)cfg->channels,
		.nchannels = cfg->nchannels,
		.request_timeout_ms = cfg->connect_timeout_ms,
		.replay_invalid = cfg->replay_invalid == -1 ? "-1" : "-2",
		.backoff_min_ms = cfg->backoff_min_ms,
		.backoff_max_ms = cfg->backoff_max_ms,
		.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32),
	};
	struct bayeux_callbacks cbs = {.event = on_event,
				       .replay = on_replay,
				       .ready = on_ready,
				       .keeping_up = on_keeping_up,
				       .gap = on_gap,
				       .subscribed = on_subscribed,
				       .fatal = on_fatal,
				       .arg = app};
	if (cfg->nchannels > 0 &&
	    (app->bayeux = bayeux_new(app->base, app->http, app->auth, &bopts,
				      &cbs)) == NULL)
		return -1;
	struct poller_opts popts = {
		.api_version = cfg->api_version,
		.poll = cfg->poll,
		.backfill = cfg->backfill,
		.lookback_s = cfg->poll_lookback_s,
		.budget_pct = cfg->api_budget_pct,
		.request_timeout_ms = cfg->connect_timeout_ms,
		.backoff_min_ms = cfg->backoff_min_ms,
		.backoff_max_ms = cfg->backoff_max_ms,
		.seed = bopts.seed ^ 0x5bd1e995u,
	};
	struct poller_callbacks pcbs = {.event = on_poll_event,
					.ready = on_ready,
					.fatal = on_fatal,
					.limit_info = on_limit_info,
					.arg = app};
	app->poller = poller_new(app->base, app->http, app->auth,
				 app->checkpoint, &popts, &pcbs, err,
				 sizeof(err));
	if (app->poller == NULL) {
		log_error("cannot set up polling", "error", err, NULL);
		return -1;
	}
	if (cfg->stats_interval_ms > 0 &&
	    (app->stats = stats_new(app->base, cfg->stats_interval_ms,
				    on_stats_collect, on_stats_line, app)) ==
		    NULL)
		return -1;
	return 0;
}

/*
 * Frees the term's objects, in an order where each goes before what it
 * borrows: clients (stats, sources), then the relay and its sink, then
 * the checkpoint map, and the HTTP multi handle last. Writes nothing:
 * callers save first if they may. Never called from inside a callback
 * of one of these objects (http_free() forbids it; the others would be
 * freed under their own feet): on a lost lock it runs from on_demote.
 */
static void
carry_free(struct app *app)
{
	for (size_t i = 0; i < app->ncarry; i++) {
		free(app->carry[i].key);
		free(app->carry[i].position);
		free(app->carry[i].created);
	}
	free(app->carry);
	app->carry = NULL;
	app->ncarry = 0;
}

/* Keeps a copy of the term's positions before it ends. A start marker or
 * position that never reached the database (it went away first) would
 * otherwise be forgotten, and the next term would subscribe from "-1"
 * and miss what was published in between. */
static void
carry_keep(struct app *app)
{
	size_t n = checkpoint_count(app->checkpoint);
	/* Nothing held (the term's load failed): keep the older copy. */
	if (n == 0)
		return;
	carry_free(app);
	if ((app->carry = calloc(n, sizeof(*app->carry))) == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct checkpoint_entry *e =
		    checkpoint_entry_at(app->checkpoint, i);
		struct carried *c = &app->carry[app->ncarry];
		c->key = strdup(e->key);
		c->position = strdup(e->position);
		c->created = e->created != NULL ? strdup(e->created) : NULL;
		app->ncarry++;
		if (c->key == NULL || c->position == NULL ||
		    (e->created != NULL && c->created == NULL))
			break;
	}
}

/* The new term's database has no position for a key the last term
 * held: take the last term's (what the sink accepted stays true). */
static void
carry_adopt(struct app *app)
{
	for (size_t i = 0; i < app->ncarry; i++) {
		const struct carried *c = &app->carry[i];
		if (c->key == NULL || c->position == NULL ||
		    checkpoint_get(app->checkpoint, c->key) != NULL)
			continue;
		log_info("checkpoint kept from the previous term", "key",
			 c->key, "position", c->position, NULL);
		checkpoint_set(app->checkpoint, c->key, c->position,
			       c->created);
	}
	carry_free(app);
}

static void
stop_term(struct app *app)
{
	if (app->demote != NULL)
		evtimer_del(app->demote);
	if (app->deadline != NULL)
		evtimer_del(app->deadline);
	app->relaying = 0;
	stats_free(app->stats);
	app->stats = NULL;
	poller_free(app->poller);
	app->poller = NULL;
	bayeux_free(app->bayeux);
	app->bayeux = NULL;
	auth_free(app->auth);
	app->auth = NULL;
	relay_free(app->relay);
	app->relay = NULL;
	lines_redact_free(app->redact);
	app->redact = NULL;
	if (app->checkpoint != NULL && app->leader != NULL)
		carry_keep(app);
	checkpoint_free(app->checkpoint);
	app->checkpoint = NULL;
	http_free(app->http);
	app->http = NULL;
}

/* Shutdown order: the term, then the leader lock (after the last
 * checkpoint write: closing its session releases the lock for a
 * standby), then the base, then the libraries. */
static void
teardown(struct app *app)
{
	stop_term(app);
	carry_free(app);
	leader_free(app->leader);
	if (app->sigint != NULL)
		event_free(app->sigint);
	if (app->sigterm != NULL)
		event_free(app->sigterm);
	if (app->deadline != NULL)
		event_free(app->deadline);
	if (app->demote != NULL)
		event_free(app->demote);
	if (app->load_retry != NULL)
		event_free(app->load_retry);
	if (app->base != NULL)
		event_base_free(app->base);
	libevent_global_shutdown();
	if (app->curl_ready)
		curl_global_cleanup();
	config_clear(&app->cfg);
	log_shutdown();
}

/* Builds the term (the checkpoint map is already there) and starts its
 * sources. Returns 0 or an exit code (logged). */
static int
start_relaying(struct app *app)
{
	/* libcurl's global state is set up once per process, not per term
	 * (it is not safe to set up again while other handles live). */
	if (!app->curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
			log_error("start-up failed", "error",
				  "libcurl initialisation", NULL);
			return EXIT_TEMPFAIL;
		}
		app->curl_ready = 1;
	}
	if (build(app) != 0) {
		log_error("start-up failed", NULL);
		return EXIT_TEMPFAIL;
	}
	app->relaying = 1;
	char nch[16], nobj[16];
	struct poller_stats pst;
	poller_get_stats(app->poller, &pst);
	log_info("starting", "version", SFRELAY_VERSION, "channels",
		 log_fmt(nch, sizeof(nch), "%zu", app->cfg.nchannels),
		 "polled_objects", log_fmt(nobj, sizeof(nobj), "%zu", pst.objects),
		 "sink",
		 app->cfg.sink == CONFIG_SINK_LOGPLEX  ? "logplex"
		 : app->cfg.sink == CONFIG_SINK_SYSLOG ? "syslog"
						       : "stdout",
		 NULL);
	char perr[512];
	if (poller_start(app->poller, perr, sizeof(perr)) != 0) {
		fprintf(stderr,
			"sfrelay: configuration error: SFRELAY_STATE_DIR: %s\n",
			perr);
		return EXIT_CONFIG;
	}
	if (app->bayeux != NULL)
		bayeux_start(app->bayeux);
	return 0;
}

/* A checkpoint write was refused: another relay leads. */
static void
on_deposed(void *arg, const char *err)
{
	struct app *app = arg;
	leader_resign(app->leader, err);
}

/* start_leading() could not load the checkpoints: a database problem,
 * which the next term may not have. */
#define START_RETRY (-1)

/* Leader: load the checkpoints (synchronously: nothing is relayed yet)
 * and start relaying. Returns 0, START_RETRY, or an exit code. */
static int
start_leading(struct app *app, long long epoch)
{
	char err[512];
	struct checkpoint_pg_opts o = {
	    .url = app->cfg.database_url,
	    .epoch = epoch,
	    .timeout_ms = app->cfg.connect_timeout_ms,
	    .backoff_min_ms = app->cfg.backoff_min_ms,
	    .backoff_max_ms = app->cfg.backoff_max_ms,
	    .seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16),
	};
	void *impl = checkpoint_pg_open(app->base, &o, err, sizeof(err));
	if (impl == NULL) {
		log_error("cannot open the checkpoint store", "error", err,
			  NULL);
		return EXIT_TEMPFAIL;
	}
	app->checkpoint = checkpoint_new_async(
	    app->base, &checkpoint_pg_ops, &checkpoint_pg_async_ops, impl,
	    app->cfg.checkpoint_interval_ms);
	if (app->checkpoint == NULL)
		return EXIT_TEMPFAIL;
	checkpoint_on_deposed(app->checkpoint, on_deposed, app);
	if (checkpoint_load(app->checkpoint, err, sizeof(err)) != 0) {
		log_error("cannot load checkpoints", "error", err, NULL);
		return START_RETRY;
	}
	app->load_failures = 0;
	carry_adopt(app);
	return start_relaying(app);
}

/* The deferred end of a lost term: from the loop, so that no object is
 * freed inside one of its own callbacks (the lock is often lost from
 * the checkpoint store's or a pg connection's). */
static void
on_demote(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct app *app = arg;
	stop_term(app);
	log_info("relaying stopped; standing by", NULL);
}

/*
 * The checkpoints of a term just won would not load: give the lock up
 * (as if it were lost, for a standby that may fare better) and compete
 * for it again only after a back-off that grows with each failure in a
 * row. Resigning alone is not enough: the leader's new session finds
 * the lock free and wins it at once, so the load would be retried at
 * the shortest delay forever. Runs inside the leader's ACQUIRED
 * callback, which may free the leader.
 */
static void
stand_by_after_back_off(struct app *app)
{
	leader_resign(app->leader, "cannot load checkpoints");
	/* Before the leader goes: stop_term keeps the last term's
	 * positions only in Postgres mode, which app->leader marks. */
	stop_term(app);
	leader_free(app->leader);
	app->leader = NULL;
	app->load_failures++;
	long ms = backoff_delay_from_min(app->cfg.backoff_min_ms,
					 app->cfg.backoff_max_ms,
					 app->load_failures, &app->load_rng);
	char delay[32];
	log_warn("checkpoint load retrying after back-off", "reason",
		 "cannot load checkpoints", "delay_ms",
		 log_fmt(delay, sizeof(delay), "%ld", ms), NULL);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(app->load_retry, &tv);
}

static void
on_leader(void *arg, enum leader_event ev, long long epoch, const char *why)
{
	struct app *app = arg;
	(void)why; /* logged by the leader module */
	if (ev == LEADER_ACQUIRED) {
		if (app->stopping)
			return;
		/* The previous term may still await its deferred end; this
		 * is the leader's callback, not one of the term's objects,
		 * so it can end here. */
		stop_term(app);
		int rc = start_leading(app, epoch);
		if (rc == START_RETRY) {
			stand_by_after_back_off(app);
			return;
		}
		if (rc != 0) {
			/* Fatal: exit; closing the session at exit releases
			 * the lock for a standby. */
			app->exit_code = rc;
			app->relaying = 0;
			if (app->checkpoint != NULL)
				checkpoint_halt(app->checkpoint);
			app->stopping = 1;
			finish_loop(app);
		}
		return;
	}
	/* Another relay may lead already: not one more checkpoint, no more
	 * requests, no more lines. What is queued or in flight is abandoned:
	 * the next leader (perhaps this process) replays it from the stored
	 * checkpoint. Lines the sink already holds may still go out. */
	app->relaying = 0;
	if (app->checkpoint != NULL)
		checkpoint_halt(app->checkpoint);
	if (app->stopping) {
		/* A shutdown was draining: the last save cannot happen,
		 * which is what 75 says (as when it fails). */
		if (app->exit_code == 0)
			app->exit_code = EXIT_TEMPFAIL;
		finish_loop(app);
		return;
	}
	struct timeval now = {0, 0};
	evtimer_add(app->demote, &now);
}

/* The who of sfrelay_leader.holder: the dyno (or host) and pid. */
static void
holder_name(const struct app *app, char *buf, size_t len)
{
	char host[256] = "";
	if (app->cfg.dyno == NULL && gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	snprintf(buf, len, "%s pid=%ld",
		 app->cfg.dyno != NULL ? app->cfg.dyno : host, (long)getpid());
}

/* SFRELAY_CHECKPOINT=postgres: nothing starts until the leader lock is
 * ours (on_leader). Returns 0 or an exit code. */
static int
start_standby(struct app *app)
{
	char err[512], holder[300];
	holder_name(app, holder, sizeof(holder));
	struct leader_opts o = {
	    .url = app->cfg.database_url,
	    .failover_ms = app->cfg.failover_ms,
	    .holder = holder,
	    .backoff_min_ms = app->cfg.backoff_min_ms,
	    .backoff_max_ms = app->cfg.backoff_max_ms,
	    .seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32),
	};
	app->leader = leader_new(app->base, &o, on_leader, app, err,
				 sizeof(err));
	if (app->leader == NULL) {
		fprintf(stderr, "sfrelay: configuration error: %s\n", err);
		return EXIT_CONFIG;
	}
	leader_start(app->leader);
	return 0;
}

/* The back-off after a failed checkpoint load is over: stand by again,
 * on a new leader session, as at start. */
static void
on_load_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct app *app = arg;
	if (app->stopping || app->leader != NULL)
		return;
	int rc = start_standby(app);
	if (rc != 0) {
		app->exit_code = rc;
		app->stopping = 1;
		finish_loop(app);
	}
}

int
main(int argc, char **argv)
{
	struct app app;
	memset(&app, 0, sizeof(app));

#ifdef __GLIBC__
	/* Each /meta/connect response (~0.5 MB for a full batch) grows the
	 * heap and freeing it shrank the heap again, so every connect paid
	 * for brk/munmap and fresh page faults: measurable system time per
	 * batch. Keeping up to 4 MiB of free heap costs a little peak RSS
	 * and saves that churn. Advisory: a failure changes nothing else. */
	(void)mallopt(M_TRIM_THRESHOLD, 4 << 20);
#endif

	int rc = parse_args(argc, argv);
	if (rc >= 0)
		return rc;
	if (load_config(&app) != 0) {
		log_shutdown();
		return EXIT_CONFIG;
	}
	log_set_level(app.cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	event_set_log_callback(on_libevent_log);
	if ((app.base = loop_base_new()) == NULL || add_signals(&app) != 0) {
		teardown(&app);
		return EXIT_TEMPFAIL;
	}
	if (app.cfg.checkpoint == CONFIG_CHECKPOINT_POSTGRES) {
		app.load_rng =
		    (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 48);
		rc = start_standby(&app);
		if (rc != 0) {
			teardown(&app);
			return rc;
		}
		event_base_dispatch(app.base);
		rc = app.exit_code;
		teardown(&app);
		return rc;
	}
	if (open_checkpoints(&app) != 0) {
		teardown(&app);
		return EXIT_CONFIG;
	}
	rc = start_relaying(&app);
	if (rc != 0) {
		teardown(&app);
		return rc;
	}
	event_base_dispatch(app.base);
	rc = app.exit_code;
	teardown(&app);
	return rc;
}
