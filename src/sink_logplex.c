/*
 * Logplex HTTP input sink. Lines become RFC 5424 frames in a batch;
 * a batch is POSTed as one application/logplex-1 body when it is full
 * (lines or bytes) or old enough (the defaults of log-shuttle: 500 lines,
 * 250 ms). One POST is in flight at a time and the next batch fills
 * meanwhile; when both are full, or while a POST is being retried, the
 * sink says it is not ready and the relay holds the sources.
 *
 * A 2xx acknowledges the batch. 429, 5xx and transport failures keep it
 * and retry with back-off (full jitter; sink_net.h), for as long as it
 * takes: the lines are not lost, and the stream waits at Salesforce. A
 * reply body over 64 KiB is a transport failure too, whatever the
 * status: the input never says that much, so something else answered.
 * Any other status is the input refusing these lines for good (a
 * malformed frame, a bad token): the lines are counted as dropped, the
 * response is logged, and the batch is acknowledged so the stream goes
 * on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sfrelay/http.h"
#include "sfrelay/log.h"
#include "sfrelay/sink.h"
#include "sfrelay/sink_net.h"
#include "sfrelay/syslog_frame.h"
#include "sfrelay/text.h"

#define LOGPLEX_MAX_LINES 500
#define LOGPLEX_MAX_BYTES (1024u * 1024u)
#define LOGPLEX_MAX_AGE_MS 250L
#define LOGPLEX_TIMEOUT_MS 30000L
#define LOGPLEX_FRAME_MAX 10240u
#define LOGPLEX_LINE_MAX 10000u
#define LOGPLEX_RESPONSE_LOG 512
/* A Logplex reply is a status line and a short text; anything bigger is
 * not the input talking, and is not buffered further. */
#define LOGPLEX_REPLY_MAX (64u * 1024u)

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
	struct sink_net_ident id;
	size_t max_lines, max_bytes;
	long max_age_ms, timeout_ms;
	struct sink_net *net;   /* failed tries of `sending`, its retry */

	struct batch filling;   /* lines being gathered */
	struct batch sending;   /* the POST in flight or waiting to retry */
	struct http_request *req;
	struct event *age_timer;
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


/* Decodes %XX in place (user info may be percent-encoded). */
static int
pct_decode(char *s)
{
	char *o = s;
	for (char *p = s; *p != '\0'; p++) {
		if (*p == '%') {
			int h = text_hex_digit(p[1]);
			int l = h < 0 ? -1 : text_hex_digit(p[2]);
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

static void
arm_age(struct sink_logplex *s)
{
	struct timeval tv = {s->max_age_ms / 1000,
			     (s->max_age_ms % 1000) * 1000};
	evtimer_add(s->age_timer, &tv);
}

static int
batch_full(const struct sink_logplex *s, const struct batch *b)
{
	return b->lines >= s->max_lines ||
	       evbuffer_get_length(b->body) >= s->max_bytes;
}

/* ---- the POST ----------------------------------------------------------- */

static void send_batch(struct sink_logplex *s);

/* Not while a POST is being retried, nor with both batches full. */
static int
can_take(const struct sink_logplex *s)
{
	int busy = s->sending.lines > 0;
	return !(busy && sink_net_failures(s->net) > 0) &&
	       !(busy && batch_full(s, &s->filling));
}

static int
logplex_ready(void *impl)
{
	struct sink_logplex *s = impl;
	return sink_net_ready(s->net, can_take(s));
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
	send_batch(s);
}

static void
batch_done(struct sink_logplex *s)
{
	uint64_t upto = s->sending.last_seq;
	evbuffer_drain(s->sending.body, evbuffer_get_length(s->sending.body));
	s->sending.lines = 0;
	/* State is consistent before the relay hears of it: the ack may
	 * write more lines from inside. */
	sink_acked(s->sink, upto);
	if (s->filling.lines > 0) {
		if (s->flushing || batch_full(s, &s->filling))
			maybe_send(s, 1);
		else if (!evtimer_pending(s->age_timer, NULL))
			maybe_send(s, 1); /* its age already passed */
	}
	sink_net_wake(s->net, can_take(s));
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
		if (sink_net_succeeded(s->net))
			log_info("logplex input accepts lines again", NULL);
		batch_done(s);
		return;
	}
	if (!resp->transport_ok || st == 429 || st >= 500 || st < 200) {
		long delay = sink_net_failed(s->net);
		char d[24];
		log_response("logplex post failed; retrying", LOG_WARN, resp,
			     s->sending.lines, sink_net_failures(s->net));
		log_debug("logplex retry scheduled", "delay_ms",
			  log_fmt(d, sizeof(d), "%ld", delay), NULL);
		return;
	}
	/* Refused for good: say so loudly, count, and move on. */
	log_response("logplex input refused a batch; its lines are dropped",
		     LOG_WARN, resp, s->sending.lines,
		     sink_net_failures(s->net) + 1);
	sink_dropped(s->sink, s->sending.lines);
	sink_net_succeeded(s->net); /* the input is up: it answered */
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
	http_request_max_body(req, LOGPLEX_REPLY_MAX);
	if (http_submit(s->http, req, on_response, s) != 0)
		goto retry;
	s->req = req;
	return;
retry:
	/* Out of memory or curl refused: try again later, keep the lines. */
	sink_net_failed(s->net);
	log_warn("logplex post could not be started; retrying", NULL);
}

static void
on_retry(void *arg)
{
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
	char stamp[SYSLOG_TIMESTAMP_LEN + 1], msgid[SYSLOG_MSGID_MAX + 1];
	struct syslog_header h =
		sink_net_ident_header(&s->id, line, len, stamp, msgid);
	if (syslog_frame(s->filling.body, &h, stamp, line, len, 1) < 0)
		return -1;
	s->filling.lines++;
	s->filling.last_seq = seq;
	if (s->filling.lines == 1 && !batch_full(s, &s->filling))
		arm_age(s);
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
	sink_net_free(s->net);
	if (s->filling.body != NULL)
		evbuffer_free(s->filling.body);
	if (s->sending.body != NULL)
		evbuffer_free(s->sending.body);
	if (s->auth != NULL) {
		memset(s->auth, 0, strlen(s->auth));
		free(s->auth);
	}
	free(s->url);
	sink_net_ident_clear(&s->id);
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
	int named = sink_net_ident_init(&s->id, o->hostname, o->app_name,
					o->procid, o->facility,
					o->severity) == 0;
	s->max_lines = o->max_lines > 0 ? o->max_lines : LOGPLEX_MAX_LINES;
	s->max_bytes = o->max_bytes > 0 ? o->max_bytes : LOGPLEX_MAX_BYTES;
	s->max_age_ms = o->max_age_ms > 0 ? o->max_age_ms : LOGPLEX_MAX_AGE_MS;
	s->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : LOGPLEX_TIMEOUT_MS;
	s->filling.body = evbuffer_new();
	s->sending.body = evbuffer_new();
	s->age_timer = evtimer_new(base, on_age, s);
	s->net = sink_net_new(base, &o->backoff, on_retry, s);
	if (!named || s->filling.body == NULL || s->sending.body == NULL ||
	    s->age_timer == NULL || s->net == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->sink = sink_new(&logplex_ops, s);
	if (s->sink == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	sink_net_set_sink(s->net, s->sink);
	/* The frame must stay within Logplex's 10,240 bytes whatever the
	 * MSGID, and the message within its 10,000. */
	size_t overhead = sink_net_ident_overhead(&s->id, 1) + 2;
	size_t max = o->max_line > 0 ? o->max_line : LOGPLEX_LINE_MAX;
	if (overhead < LOGPLEX_FRAME_MAX && max > LOGPLEX_FRAME_MAX - overhead)
		max = LOGPLEX_FRAME_MAX - overhead;
	sink_set_max_line(s->sink, max);
	return s->sink;
fail:
	logplex_free(s);
	return NULL;
}
