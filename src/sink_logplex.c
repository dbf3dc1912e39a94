/*
 * Logplex HTTP input sink. Lines become RFC 5424 frames in a batch;
 * a batch is POSTed as one application/logplex-1 body when it is full
 * (lines or bytes) or old enough (the defaults of log-shuttle: 500 lines,
 * 250 ms). One POST is in flight at a time and the next batch fills
 * meanwhile; when both are full, or while a POST is being retried, the
 * sink says it is not ready and the relay holds the sources.
 *
 * A 2xx acknowledges the batch. 429, 5xx and transport failures keep it
 * and retry with back-off (full jitter), for as long as it takes: the
 * lines are not lost, and the stream waits at Salesforce. Any other
 * status is the input refusing these lines for good (a malformed frame,
 * a bad token): the lines are counted as dropped, the response is logged,
 * and the batch is acknowledged so the stream goes on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sfrelay/http.h"
#include "sfrelay/log.h"
#include "sfrelay/backoff.h"
#include "sfrelay/sink.h"
#include "sfrelay/syslog_frame.h"

#define LOGPLEX_MAX_LINES 500
#define LOGPLEX_MAX_BYTES (1024u * 1024u)
#define LOGPLEX_MAX_AGE_MS 250L
#define LOGPLEX_TIMEOUT_MS 30000L
#define LOGPLEX_FRAME_MAX 10240u
#define LOGPLEX_LINE_MAX 10000u
#define LOGPLEX_RESPONSE_LOG 512

struct batch {
	struct evbuffer *body;
	size_t lines;
	uint64_t last_seq;
};

struct sink_logplex {
	struct sink *sink;
	struct event_base *base;
	struct http *http;
	char *url;  /* without credentials */
	char *auth; /* "Basic <base64>", or NULL */
	struct syslog_header hdr;
	char *hostname, *app_name, *procid;
	size_t max_lines, max_bytes;
	long max_age_ms, timeout_ms;
	struct sink_backoff backoff;
	uint64_t rng;

	struct batch filling;   /* lines being gathered */
	struct batch sending;   /* the POST in flight or waiting to retry */
	struct http_request *req;
	struct event *age_timer;
	struct event *retry_timer;
	unsigned attempts;      /* failed tries of `sending` */
	int was_full;           /* ready() said 0 since the last wake-up */
	int flushing;           /* send a partial batch at once */
};

/* ---- helpers ------------------------------------------------------------ */

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *
base64(const unsigned char *p, size_t n)
{
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = b64[(v >> 18) & 63];
		*o++ = b64[(v >> 12) & 63];
		*o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? b64[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes %XX in place (user info may be percent-encoded). */
static int
pct_decode(char *s)
{
	char *o = s;
	for (char *p = s; *p != '\0'; p++) {
		if (*p == '%') {
			int h = hexval(p[1]), l = h < 0 ? -1 : hexval(p[2]);
			if (l < 0 || (h == 0 && l == 0))
				return -1;
			*o++ = (char)(h * 16 + l);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return 0;
}

/*
 * Splits https://user:pass@host/path into the URL without user info and
 * the basic-auth header value. Returns 0, or -1 with a message that
 * never quotes the URL (it holds the token).
 */
static int
parse_url(struct sink_logplex *s, const char *url, char *err, size_t errlen)
{
	const char *rest;
	if (strncmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		rest = url + 7;
	else {
		snprintf(err, errlen, "must start with https:// or http://");
		return -1;
	}
	size_t alen = strcspn(rest, "/?#");
	const char *at = memchr(rest, '@', alen);
	if (at == NULL) {
		snprintf(err, errlen,
			 "has no credentials (https://token:t.xxx@host/logs)");
		return -1;
	}
	if (at + 1 == rest + alen) {
		snprintf(err, errlen, "has no host");
		return -1;
	}
	char *userinfo = strndup(rest, (size_t)(at - rest));
	size_t scheme = (size_t)(rest - url);
	size_t ulen = strlen(url) - (size_t)(at + 1 - url) + scheme;
	s->url = malloc(ulen + 1);
	if (userinfo == NULL || s->url == NULL) {
		free(userinfo);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(s->url, url, scheme);
	strcpy(s->url + scheme, at + 1);
	if (strchr(s->url + scheme, '/') == NULL) {
		/* A bare host means the input's usual path. */
		char *u = realloc(s->url, strlen(s->url) + 6);
		if (u == NULL)
			goto oom;
		s->url = u;
		strcat(s->url, "/logs");
	}
	if (pct_decode(userinfo) != 0 || strchr(userinfo, ':') == NULL) {
		memset(userinfo, 0, strlen(userinfo));
		free(userinfo);
		snprintf(err, errlen,
			 "credentials must be user:token (percent-encoded)");
		return -1;
	}
	const char *colon = strchr(userinfo, ':');
	if (strlen(colon + 1) >= 4)
		log_add_secret(colon + 1);
	char *enc = base64((const unsigned char *)userinfo, strlen(userinfo));
	memset(userinfo, 0, strlen(userinfo));
	free(userinfo);
	if (enc == NULL)
		goto oom;
	s->auth = malloc(strlen(enc) + 7);
	if (s->auth == NULL) {
		free(enc);
		goto oom;
	}
	sprintf(s->auth, "Basic %s", enc);
	log_add_secret(enc);
	memset(enc, 0, strlen(enc));
	free(enc);
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	return -1;
}

static long
backoff_after_failure(struct sink_logplex *s)
{
	return backoff_delay(s->backoff.min_ms, s->backoff.max_ms, s->attempts,
			     &s->rng);
}

static void
arm(struct event *ev, long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

static int
batch_full(const struct sink_logplex *s, const struct batch *b)
{
	return b->lines >= s->max_lines ||
	       evbuffer_get_length(b->body) >= s->max_bytes;
}

/* ---- the POST ----------------------------------------------------------- */

static void send_batch(struct sink_logplex *s);

static int
logplex_ready(void *impl)
{
	struct sink_logplex *s = impl;
	int busy = s->sending.lines > 0;
	int ready = !(busy && s->attempts > 0) &&
		    !(busy && batch_full(s, &s->filling));
	if (!ready)
		s->was_full = 1;
	return ready;
}

static void
wake(struct sink_logplex *s)
{
	if (s->was_full && logplex_ready(s)) {
		s->was_full = 0;
		sink_writable(s->sink);
	}
}

/* Moves the filling batch to sending and POSTs it, when nothing is in
 * flight. */
static void
maybe_send(struct sink_logplex *s, int force)
{
	if (s->sending.lines > 0 || s->filling.lines == 0)
		return;
	if (!force && !s->flushing && !batch_full(s, &s->filling))
		return;
	struct batch t = s->sending;
	s->sending = s->filling;
	s->filling = t;
	s->filling.lines = 0;
	s->filling.last_seq = 0;
	evtimer_del(s->age_timer);
	s->attempts = 0;
	send_batch(s);
}

static void
batch_done(struct sink_logplex *s)
{
	uint64_t upto = s->sending.last_seq;
	evbuffer_drain(s->sending.body, evbuffer_get_length(s->sending.body));
	s->sending.lines = 0;
	s->attempts = 0;
	/* State is consistent before the relay hears of it: the ack may
	 * write more lines from inside. */
	sink_acked(s->sink, upto);
	if (s->filling.lines > 0) {
		if (s->flushing || batch_full(s, &s->filling))
			maybe_send(s, 1);
		else if (!evtimer_pending(s->age_timer, NULL))
			maybe_send(s, 1); /* its age already passed */
	}
	wake(s);
}

static void
log_response(const char *msg, enum log_level lvl,
	     const struct http_response *resp, size_t lines, unsigned attempt)
{
	char st[16], n[24], at[16];
	size_t blen = resp->body_len < LOGPLEX_RESPONSE_LOG
			      ? resp->body_len
			      : LOGPLEX_RESPONSE_LOG;
	char *body = strndup(resp->body != NULL ? resp->body : "", blen);
	log_msg(lvl, msg, "status", log_fmt(st, sizeof(st), "%ld", resp->status),
		"lines", log_fmt(n, sizeof(n), "%zu", lines), "attempt",
		log_fmt(at, sizeof(at), "%u", attempt), "error",
		resp->transport_ok ? "" : resp->error, "response",
		body != NULL ? body : "", NULL);
	free(body);
}

static void
on_response(void *arg, const struct http_response *resp)
{
	struct sink_logplex *s = arg;
	s->req = NULL;
	long st = resp->status;
	if (resp->transport_ok && st >= 200 && st < 300) {
		if (s->attempts > 0)
			log_info("logplex input accepts lines again", NULL);
		batch_done(s);
		return;
	}
	if (!resp->transport_ok || st == 429 || st >= 500 || st < 200) {
		s->attempts++;
		long delay = backoff_after_failure(s);
		char d[24];
		log_response("logplex post failed; retrying", LOG_WARN, resp,
			     s->sending.lines, s->attempts);
		log_debug("logplex retry scheduled", "delay_ms",
			  log_fmt(d, sizeof(d), "%ld", delay), NULL);
		arm(s->retry_timer, delay);
		return;
	}
	/* Refused for good: say so loudly, count, and move on. */
	log_response("logplex input refused a batch; its lines are dropped",
		     LOG_WARN, resp, s->sending.lines, s->attempts + 1);
	sink_dropped(s->sink, s->sending.lines);
	batch_done(s);
}

static void
send_batch(struct sink_logplex *s)
{
	char count[24];
	struct http_request *req = http_request_new("POST", s->url);
	size_t len = evbuffer_get_length(s->sending.body);
	const void *body = evbuffer_pullup(s->sending.body, -1);
	snprintf(count, sizeof(count), "%zu", s->sending.lines);
	if (req == NULL ||
	    http_request_header(req, "Content-Type", "application/logplex-1") ||
	    http_request_header(req, "Logplex-Msg-Count", count) ||
	    (s->auth != NULL &&
	     http_request_header(req, "Authorization", s->auth)) ||
	    http_request_body(req, body, len) != 0) {
		http_request_free(req);
		goto retry;
	}
	http_request_timeout(req, s->timeout_ms);
	if (http_submit(s->http, req, on_response, s) != 0)
		goto retry;
	s->req = req;
	return;
retry:
	/* Out of memory or curl refused: try again later, keep the lines. */
	s->attempts++;
	log_warn("logplex post could not be started; retrying", NULL);
	arm(s->retry_timer, backoff_after_failure(s));
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	send_batch(arg);
}

static void
on_age(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	maybe_send(arg, 1);
}

/* ---- ops ---------------------------------------------------------------- */

static int
logplex_write(void *impl, uint64_t seq, const char *line, size_t len)
{
	struct sink_logplex *s = impl;
	struct timespec ts;
	char stamp[SYSLOG_TIMESTAMP_LEN + 1], msgid[SYSLOG_MSGID_MAX + 1];
	clock_gettime(CLOCK_REALTIME, &ts);
	syslog_timestamp(stamp, sizeof(stamp), (int64_t)ts.tv_sec,
			 ts.tv_nsec / 1000);
	struct syslog_header h = s->hdr;
	h.msgid = syslog_msgid_of_line(line, len, msgid, sizeof(msgid));
	if (syslog_frame(s->filling.body, &h, stamp, line, len, 1) < 0)
		return -1;
	s->filling.lines++;
	s->filling.last_seq = seq;
	if (s->filling.lines == 1 && !batch_full(s, &s->filling))
		arm(s->age_timer, s->max_age_ms);
	maybe_send(s, 0);
	return 0;
}

static int
logplex_flush(void *impl)
{
	struct sink_logplex *s = impl;
	s->flushing = 1;
	maybe_send(s, 1);
	return 0;
}

static void
logplex_free(void *impl)
{
	struct sink_logplex *s = impl;
	if (s == NULL)
		return;
	if (s->req != NULL)
		http_cancel(s->http, s->req);
	if (s->age_timer != NULL)
		event_free(s->age_timer);
	if (s->retry_timer != NULL)
		event_free(s->retry_timer);
	if (s->filling.body != NULL)
		evbuffer_free(s->filling.body);
	if (s->sending.body != NULL)
		evbuffer_free(s->sending.body);
	if (s->auth != NULL) {
		memset(s->auth, 0, strlen(s->auth));
		free(s->auth);
	}
	free(s->url);
	free(s->hostname);
	free(s->app_name);
	free(s->procid);
	free(s);
}

static const struct sink_ops logplex_ops = {
	.name = "logplex",
	.write = logplex_write,
	.flush = logplex_flush,
	.free = logplex_free,
	.ready = logplex_ready,
};

struct sink *
sink_logplex_new(struct event_base *base, struct http *http,
		 const struct sink_logplex_opts *o, char *err, size_t errlen)
{
	char why[160];
	struct sink_logplex *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->base = base;
	s->http = http;
	if (parse_url(s, o->url, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "LOGPLEX_URL: %s", why);
		goto fail;
	}
	s->hostname = strdup(o->hostname != NULL ? o->hostname : "-");
	s->app_name = strdup(o->app_name != NULL ? o->app_name : "sfrelay");
	s->procid = strdup(o->procid != NULL ? o->procid : "-");
	s->hdr = (struct syslog_header){o->facility, o->severity,
					s->hostname, s->app_name, s->procid,
					NULL};
	s->max_lines = o->max_lines > 0 ? o->max_lines : LOGPLEX_MAX_LINES;
	s->max_bytes = o->max_bytes > 0 ? o->max_bytes : LOGPLEX_MAX_BYTES;
	s->max_age_ms = o->max_age_ms > 0 ? o->max_age_ms : LOGPLEX_MAX_AGE_MS;
	s->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : LOGPLEX_TIMEOUT_MS;
	s->backoff = o->backoff;
	if (s->backoff.min_ms <= 0)
		s->backoff.min_ms = 1000;
	if (s->backoff.max_ms < s->backoff.min_ms)
		s->backoff.max_ms = s->backoff.min_ms;
	s->rng = o->backoff.seed;
	s->filling.body = evbuffer_new();
	s->sending.body = evbuffer_new();
	s->age_timer = evtimer_new(base, on_age, s);
	s->retry_timer = evtimer_new(base, on_retry, s);
	if (s->hostname == NULL || s->app_name == NULL || s->procid == NULL ||
	    s->filling.body == NULL || s->sending.body == NULL ||
	    s->age_timer == NULL || s->retry_timer == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->sink = sink_new(&logplex_ops, s);
	if (s->sink == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* The frame must stay within Logplex's 10,240 bytes whatever the
	 * MSGID, and the message within its 10,000. */
	struct syslog_header h = s->hdr;
	char longest[SYSLOG_MSGID_MAX + 1];
	memset(longest, 'x', SYSLOG_MSGID_MAX);
	longest[SYSLOG_MSGID_MAX] = '\0';
	h.msgid = longest;
	size_t overhead = syslog_frame_len(&h, "2026-01-01T00:00:00.000000Z",
					   "", 0, 1) + 2;
	size_t max = o->max_line > 0 ? o->max_line : LOGPLEX_LINE_MAX;
	if (overhead < LOGPLEX_FRAME_MAX && max > LOGPLEX_FRAME_MAX - overhead)
		max = LOGPLEX_FRAME_MAX - overhead;
	sink_set_max_line(s->sink, max);
	return s->sink;
fail:
	logplex_free(s);
	return NULL;
}
