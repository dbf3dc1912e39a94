/*
 * sfrelay --check: configuration, login, handshake, one subscription per
 * channel, one query per polled object, each reported on its own line.
 * It shares the relay's modules (config, http, auth, the Bayeux wire
 * format, SOQL) so that what passes here is what the relay will do, but
 * not its state machines: a check reports a failure instead of
 * recovering from it.
 */
#include "sfrelay/check.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "sfrelay/auth.h"
#include "sfrelay/bayeux_msg.h"
#include "sfrelay/config.h"
#include "sfrelay/http.h"
#include "sfrelay/log.h"
#include "sfrelay/loop.h"
#include "sfrelay/pg.h"
#include "sfrelay/soql.h"

#define CHECK_LINE_MAX 1024
/* A poll query looks this far back: any window will do, the check is
 * whether Salesforce accepts the query. */
#define CHECK_POLL_LOOKBACK_MS (24LL * 3600 * 1000)

struct check {
	struct config cfg;
	FILE *out;
	struct event_base *base;
	struct http *http;
	struct auth *auth;
	struct event *watchdog;
	struct http_request *inflight;
	char *client_id; /* the Bayeux session, once handshaken */
	struct soql_spec *polls; /* SFRELAY_POLL, parsed */
	size_t npolls;
	size_t next_poll;
	const char *stage; /* the check under way (watchdog), or NULL */
	char stage_buf[160];
	int failed;
	int curl_ready;
};

/* Replaces every occurrence of secret in s (NUL-terminated, in a buffer
 * of CHECK_LINE_MAX bytes) with "[redacted]". */
static void
redact(char *s, const char *secret)
{
	static const char mark[] = "[redacted]";
	size_t k = secret != NULL ? strlen(secret) : 0;
	char *p = s;

	if (k < 4)
		return;
	while ((p = strstr(p, secret)) != NULL) {
		char rest[CHECK_LINE_MAX];
		size_t room = CHECK_LINE_MAX - (size_t)(p - s);

		snprintf(rest, sizeof(rest), "%s", p + k);
		snprintf(p, room, "%s%s", mark, rest);
		/* Go on after the mark, which may not fit either. */
		if (room <= sizeof(mark))
			break;
		p += sizeof(mark) - 1;
	}
}

/* Prints one check's line: its text made one printable line, with no
 * configured secret and no token in it. */
static void check_line(struct check *c, int ok, const char *what,
		       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
check_line(struct check *c, int ok, const char *what, const char *fmt, ...)
{
	char detail[CHECK_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	for (char *p = detail; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	const struct config *cfg = &c->cfg;
	const char *secrets[] = {cfg->client_secret, cfg->password,
				 cfg->security_token, cfg->jwt_key,
				 cfg->refresh_token, cfg->access_token,
				 cfg->database_url,
				 c->auth != NULL ? auth_access_token(c->auth)
						 : NULL};
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		redact(detail, secrets[i]);
	if (!ok)
		c->failed = 1;
	fprintf(c->out, "%s %s: %s\n", ok ? "ok  " : "FAIL", what, detail);
	fflush(c->out);
}

/* Ends the run once the current callback returns. */
static void
finish(struct check *c)
{
	event_base_loopexit(c->base, NULL);
}

static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct check *c = arg;
	if (c->stage != NULL)
		check_line(c, 0, c->stage, "no answer in time");
	if (c->inflight != NULL) {
		http_cancel(c->http, c->inflight);
		c->inflight = NULL;
	}
	auth_cancel(c->auth, c);
	finish(c);
}

/* POSTs a Bayeux body to the streaming endpoint. Returns 0 or -1. */
static int
send_bayeux(struct check *c, struct evbuffer *body, http_done_fn *cb)
{
	char url[2048], bearer[4096];
	const char *token = auth_access_token(c->auth);
	const char *instance = auth_instance_url(c->auth);

	if (token == NULL || instance == NULL)
		return -1;
	snprintf(url, sizeof(url), "%s/cometd/%s", instance,
		 c->cfg.api_version);
	struct http_request *req = http_request_new("POST", url);
	if (req == NULL)
		return -1;
	snprintf(bearer, sizeof(bearer), "Bearer %s", token);
	int rc = http_request_body(req, evbuffer_pullup(body, -1),
				   evbuffer_get_length(body));
	rc |= http_request_header(req, "Content-Type", "application/json");
	rc |= http_request_header(req, "Authorization", bearer);
	memset(bearer, 0, sizeof(bearer));
	if (rc != 0) {
		http_request_free(req);
		return -1;
	}
	c->inflight = req;
	if (http_submit(c->http, req, cb, c) != 0) {
		c->inflight = NULL;
		return -1;
	}
	return 0;
}

/* Decodes a CometD reply, or says why it could not (into why). A reply
 * with an error status is still decoded when it holds Bayeux messages:
 * their error text says more than the status. */
static struct bayeux_batch *
decode(const struct http_response *resp, char *why, size_t len)
{
	char err[256] = "";

	if (!resp->transport_ok) {
		snprintf(why, len, "request failed: %s", resp->error);
		return NULL;
	}
	struct bayeux_batch *b =
		bayeux_decode(resp->body, resp->body_len, err, sizeof(err));
	if (b == NULL && resp->status != 200)
		snprintf(why, len, "HTTP %ld", resp->status);
	else if (b == NULL)
		snprintf(why, len, "malformed reply: %s", err);
	return b;
}

/* "403::Handshake denied (401::Authentication invalid)" and what it
 * usually means. */
static void
describe_failure(const struct bayeux_msg *m, long status, char *buf,
		 size_t len)
{
	const char *error = m->error != NULL ? m->error : "unsuccessful";
	int code = bayeux_error_code(m->error);
	int reason = bayeux_error_code(m->failure_reason);

	char http[32] = "";

	if (status != 200)
		snprintf(http, sizeof(http), " (HTTP %ld)", status);
	snprintf(buf, len, "%s%s%s%s%s%s", error,
		 m->failure_reason != NULL ? " (" : "",
		 m->failure_reason != NULL ? m->failure_reason : "",
		 m->failure_reason != NULL ? ")" : "", http,
		 code == 401 || reason == 401
			 ? ": the access token was refused"
			 : "");
}

static const struct bayeux_msg *
find_meta(const struct bayeux_batch *b, const char *channel)
{
	for (size_t i = 0; i < bayeux_batch_count(b); i++) {
		const struct bayeux_msg *m = bayeux_batch_msg(b, i);
		if (m->kind == BAYEUX_MSG_META && strcmp(m->channel, channel) == 0)
			return m;
	}
	return NULL;
}

static void polls_start(struct check *c);

static void
on_disconnect(void *arg, const struct http_response *resp)
{
	(void)resp;
	struct check *c = arg;
	c->inflight = NULL;
	polls_start(c);
}

/* Leaves the Bayeux session (best effort: no line of its own), then the
 * poll queries. */
static void
disconnect(struct check *c)
{
	struct evbuffer *body = evbuffer_new();

	c->stage = NULL; /* leaving is not a check */
	if (c->client_id == NULL || body == NULL ||
	    bayeux_build_disconnect(body, c->client_id) != 0 ||
	    send_bayeux(c, body, on_disconnect) != 0)
		polls_start(c);
	if (body != NULL)
		evbuffer_free(body);
}

static void
on_subscribe(void *arg, const struct http_response *resp)
{
	struct check *c = arg;
	char why[512], what[300];
	c->inflight = NULL;
	struct bayeux_batch *b = decode(resp, why, sizeof(why));

	for (size_t i = 0; i < c->cfg.nchannels; i++) {
		const char *ch = c->cfg.channels[i];
		const struct bayeux_msg *m = NULL;

		snprintf(what, sizeof(what), "subscribe %s", ch);
		for (size_t j = 0; b != NULL && j < bayeux_batch_count(b); j++) {
			const struct bayeux_msg *r = bayeux_batch_msg(b, j);
			if (r->kind == BAYEUX_MSG_META &&
			    strcmp(r->channel, "/meta/subscribe") == 0 &&
			    r->subscription != NULL &&
			    strcmp(r->subscription, ch) == 0)
				m = r;
		}
		if (b == NULL) {
			check_line(c, 0, what, "%s", why);
		} else if (m == NULL) {
			check_line(c, 0, what, "no reply for this channel");
		} else if (!m->successful) {
			describe_failure(m, resp->status, why, sizeof(why));
			check_line(c, 0, what, "%s", why);
		} else {
			check_line(c, 1, what, "subscribed");
		}
	}
	bayeux_batch_free(b);
	disconnect(c);
}

static void
subscribe(struct check *c)
{
	size_t n = c->cfg.nchannels;
	const char **ids = calloc(n + 1, sizeof(*ids));
	struct evbuffer *body = evbuffer_new();
	int rc = -1;

	c->stage = "subscribe";
	for (size_t i = 0; ids != NULL && i < n; i++)
		ids[i] = "-1"; /* new events only: nothing is replayed */
	if (ids != NULL && body != NULL &&
	    bayeux_build_subscribe(body, c->client_id,
				   (const char *const *)c->cfg.channels, ids,
				   n) == 0)
		rc = send_bayeux(c, body, on_subscribe);
	if (body != NULL)
		evbuffer_free(body);
	free(ids);
	if (rc != 0) {
		check_line(c, 0, "subscribe", "cannot send the request");
		disconnect(c);
	}
}

static void
on_handshake(void *arg, const struct http_response *resp)
{
	struct check *c = arg;
	const char *what = "streaming handshake";
	char why[512];
	c->inflight = NULL;
	struct bayeux_batch *b = decode(resp, why, sizeof(why));
	const struct bayeux_msg *m =
		b != NULL ? find_meta(b, "/meta/handshake") : NULL;

	if (b == NULL) {
		check_line(c, 0, what, "%s", why);
	} else if (m == NULL) {
		check_line(c, 0, what, "the reply has no /meta/handshake");
	} else if (!m->successful || m->client_id == NULL) {
		describe_failure(m, resp->status, why, sizeof(why));
		check_line(c, 0, what, "%s", why);
	} else {
		c->client_id = strdup(m->client_id);
		check_line(c, 1, what, "%s/cometd/%s%s",
			   auth_instance_url(c->auth), c->cfg.api_version,
			   m->replay_supported
				   ? ""
				   : " (the server did not confirm replay)");
	}
	bayeux_batch_free(b);
	if (c->client_id != NULL)
		subscribe(c);
	else
		polls_start(c);
}

static void
handshake(struct check *c)
{
	struct evbuffer *body = evbuffer_new();
	int rc = -1;

	c->stage = "streaming handshake";
	if (body != NULL && bayeux_build_handshake(body) == 0)
		rc = send_bayeux(c, body, on_handshake);
	if (body != NULL)
		evbuffer_free(body);
	if (rc != 0) {
		check_line(c, 0, c->stage, "cannot send the request");
		polls_start(c);
	}
}

/* --- poll queries ---------------------------------------------------- */

static void poll_next(struct check *c);

static void
on_poll(void *arg, const struct http_response *resp)
{
	struct check *c = arg;
	const struct soql_spec *spec = &c->polls[c->next_poll];
	char what[300], err[256], code[64], msg[512];
	struct soql_page page;

	c->inflight = NULL;
	snprintf(what, sizeof(what), "poll %s", spec->object);
	if (!resp->transport_ok) {
		check_line(c, 0, what, "request failed: %s", resp->error);
	} else if (resp->status == 200) {
		if (soql_page_decode(resp->body, resp->body_len, &page, err,
				     sizeof(err)) == 0)
			check_line(c, 1, what, "query accepted");
		else
			check_line(c, 0, what, "malformed reply: %s", err);
		soql_page_clear(&page);
	} else if (soql_error_parse(resp->body, resp->body_len, code,
				    sizeof(code), msg, sizeof(msg)) == 0) {
		check_line(c, 0, what, "%s: %s (HTTP %ld)%s", code, msg,
			   resp->status,
			   resp->status == 401 ? ": the access token was refused"
					       : "");
	} else {
		check_line(c, 0, what, "HTTP %ld", resp->status);
	}
	c->next_poll++;
	poll_next(c);
}

/* Runs the next object's query with LIMIT 1, or ends the run. */
static void
poll_next(struct check *c)
{
	char url[4096], bearer[4096];
	const char *token = auth_access_token(c->auth);
	const char *instance = auth_instance_url(c->auth);

	while (c->next_poll < c->npolls) {
		const struct soql_spec *spec = &c->polls[c->next_poll];
		struct evbuffer *q = evbuffer_new(), *u = evbuffer_new();
		struct http_request *req = NULL;
		long long since = (long long)time(NULL) * 1000 -
				  CHECK_POLL_LOOKBACK_MS;
		int rc = q != NULL && u != NULL && token != NULL &&
				 instance != NULL
			 ? soql_build_since(q, spec, since)
			 : -1;

		snprintf(c->stage_buf, sizeof(c->stage_buf), "poll %s",
			 spec->object);
		c->stage = c->stage_buf;
		if (rc == 0)
			rc = evbuffer_add(q, " LIMIT 1", 8);
		if (rc == 0)
			rc = soql_url_escape(u, (const char *)evbuffer_pullup(q, -1),
					     evbuffer_get_length(q));
		if (rc == 0 && evbuffer_add(u, "", 1) == 0) {
			snprintf(url, sizeof(url), "%s/services/data/v%s/query?q=%s",
				 instance, c->cfg.api_version,
				 (const char *)evbuffer_pullup(u, -1));
			req = http_request_new("GET", url);
		}
		if (q != NULL)
			evbuffer_free(q);
		if (u != NULL)
			evbuffer_free(u);
		if (req != NULL) {
			snprintf(bearer, sizeof(bearer), "Bearer %s", token);
			rc = http_request_header(req, "Authorization", bearer);
			rc |= http_request_header(req, "Accept",
						  "application/json");
			memset(bearer, 0, sizeof(bearer));
			if (rc == 0) {
				c->inflight = req;
				if (http_submit(c->http, req, on_poll, c) == 0)
					return;
				c->inflight = NULL;
			} else {
				http_request_free(req);
			}
		}
		check_line(c, 0, c->stage, "cannot send the query");
		c->next_poll++;
	}
	finish(c);
}

/* After the streaming checks (whatever they found): the poll queries. */
static void
polls_start(struct check *c)
{
	c->next_poll = 0;
	poll_next(c);
}

static void
on_auth(void *arg, enum auth_status status, const char *err)
{
	struct check *c = arg;
	const struct config *cfg = &c->cfg;
	const char *who = cfg->auth == CONFIG_AUTH_JWT ||
					  cfg->auth == CONFIG_AUTH_PASSWORD
				  ? cfg->username
				  : cfg->auth == CONFIG_AUTH_TOKEN
					    ? "SFDC_ACCESS_TOKEN (the handshake "
					      "tests it)"
					    : "the connected app's user";

	if (status != AUTH_OK) {
		check_line(c, 0, "authentication", "%s%s", err,
			   status == AUTH_TEMPORARY
				   ? " (temporary: network or server)"
				   : "");
		finish(c);
		return;
	}
	check_line(c, 1, "authentication", "%s flow as %s; instance %s",
		   config_auth_name(cfg->auth), who,
		   auth_instance_url(c->auth));
	if (cfg->nchannels > 0)
		handshake(c);
	else
		polls_start(c);
}

struct db_check {
	int done;
	char line[CHECK_LINE_MAX / 2];
	int ok;
};

static void
on_db_state(void *arg, int up, const char *err)
{
	(void)arg;
	(void)up;
	(void)err;
}

static void
on_db_version(void *arg, const struct pg_result *res, const char *err)
{
	struct db_check *d = arg;
	d->done = 1;
	if (err != NULL) {
		snprintf(d->line, sizeof(d->line), "%s", err);
		return;
	}
	const char *v = pg_value(res, 0, 0);
	const char *tls = pg_value(res, 0, 1);
	d->ok = 1;
	snprintf(d->line, sizeof(d->line), "PostgreSQL %s, TLS %s",
		 v != NULL ? v : "?",
		 tls != NULL && strcmp(tls, "t") == 0 ? "on" : "off");
}

/* With the postgres store: one connection and one query (the server
 * version and whether TLS is on). The relay's own diagnostics are not
 * needed: the line says it all. */
static void
check_database(struct check *c)
{
	const struct config *cfg = &c->cfg;
	if (cfg->checkpoint != CONFIG_CHECKPOINT_POSTGRES)
		return;
	char err[512];
	struct db_check d = {0};
	struct event_base *base = loop_base_new();
	struct pg_opts o = {.url = cfg->database_url,
			    .connect_timeout_ms = cfg->connect_timeout_ms,
			    .query_timeout_ms = cfg->connect_timeout_ms};
	struct pg *pg = base != NULL ? pg_new(base, &o, on_db_state, &d, err,
					      sizeof(err))
				     : NULL;
	if (pg == NULL) {
		check_line(c, 0, "database", "%s",
			   base != NULL ? err : "out of memory");
	} else {
		pg_start(pg);
		if (pg_wait(pg, cfg->connect_timeout_ms, err, sizeof(err)) !=
			0 ||
		    pg_query(pg,
			     "SELECT current_setting('server_version'),"
			     " coalesce((SELECT ssl FROM pg_stat_ssl"
			     " WHERE pid = pg_backend_pid()), false)",
			     0, NULL, on_db_version, &d) != 0 ||
		    pg_wait(pg, cfg->connect_timeout_ms, err, sizeof(err)) !=
			0) {
			if (!d.done)
				check_line(c, 0, "database", "%s", err);
		}
		if (d.done)
			check_line(c, d.ok, "database", "%s", d.line);
	}
	pg_free(pg);
	if (base != NULL)
		event_base_free(base);
}

/* Reports each configuration problem ("NAME: reason") on its own line. */
static void
report_config(struct check *c, char *err)
{
	for (char *line = strtok(err, "\n"); line != NULL;
	     line = strtok(NULL, "\n"))
		check_line(c, 0, "configuration", "%s", line);
}

/* Everything after a valid configuration. */
static void
run_online(struct check *c)
{
	char err[512];
	const struct config *cfg = &c->cfg;
	struct http_opts hopts = {.ca_file = cfg->ca_file,
				  .timeout_ms = cfg->connect_timeout_ms};

	c->base = loop_base_new();
	c->http = c->base != NULL ? http_new(c->base, &hopts, err, sizeof(err))
				  : NULL;
	if (c->http == NULL) {
		check_line(c, 0, "authentication", "cannot start HTTP: %s",
			   c->base != NULL ? err : "out of memory");
		return;
	}
	c->auth = auth_new(c->base, c->http, cfg, err, sizeof(err));
	if (c->auth == NULL) {
		check_line(c, 0, "authentication", "%s", err);
		return;
	}
	/* Each request has its own time limit; this only bounds the whole
	 * run should something hang beyond them. */
	long ms = 4 * cfg->connect_timeout_ms + 5000;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	c->watchdog = evtimer_new(c->base, on_watchdog, c);
	if (c->watchdog == NULL || evtimer_add(c->watchdog, &tv) != 0) {
		check_line(c, 0, "authentication", "out of memory");
		return;
	}
	c->stage = "authentication";
	if (auth_get(c->auth, on_auth, c) != 0) {
		check_line(c, 0, "authentication",
			   "cannot build the token request");
		return;
	}
	event_base_dispatch(c->base);
}

int
check_run(const char *const *env, FILE *out)
{
	struct check c;
	char err[8192];
	enum log_level level;

	memset(&c, 0, sizeof(c));
	c.out = out;
	if (config_load(&c.cfg, env, err, sizeof(err)) != 0) {
		report_config(&c, err);
		log_shutdown();
		return 1;
	}
	level = c.cfg.log_level == LOG_DEBUG ? LOG_DEBUG
		: c.cfg.log_level == LOG_ERROR ? LOG_ERROR
					       : LOG_WARN;
	log_set_level(level);
	/* config_load() validated it: this only builds the specs. */
	if (c.cfg.poll != NULL &&
	    soql_poll_parse(c.cfg.poll, &c.polls, &c.npolls, NULL, NULL) != 0)
		c.npolls = 0;
	check_line(&c, 1, "configuration",
		   "%s flow (%s), %zu channel%s, %zu polled object%s",
		   config_auth_name(c.cfg.auth),
		   c.cfg.auth_inferred ? "inferred from the variables set"
				       : "SFDC_AUTH",
		   c.cfg.nchannels, c.cfg.nchannels == 1 ? "" : "s", c.npolls,
		   c.npolls == 1 ? "" : "s");
	check_database(&c);
	c.curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == 0;
	if (!c.curl_ready)
		check_line(&c, 0, "authentication", "cannot start libcurl");
	else
		run_online(&c);

	/* Same order as the relay's shutdown: clients, the multi handle
	 * while the base lives, the base, the libraries. */
	if (c.inflight != NULL)
		http_cancel(c.http, c.inflight);
	auth_free(c.auth);
	http_free(c.http);
	if (c.watchdog != NULL)
		event_free(c.watchdog);
	if (c.base != NULL)
		event_base_free(c.base);
	libevent_global_shutdown();
	if (c.curl_ready)
		curl_global_cleanup();
	free(c.client_id);
	soql_specs_free(c.polls, c.npolls);
	config_clear(&c.cfg);
	log_shutdown();
	return c.failed ? 1 : 0;
}
