/*
 * The Bayeux client state machine. One request is in flight at a time
 * (Salesforce's streaming endpoint is a single long poll per client); a
 * timer covers waits (advice interval, back-off, back-pressure).
 */
#include "sfrelay/bayeux.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sfrelay/auth.h"
#include "sfrelay/backoff.h"
#include "sfrelay/bayeux_msg.h"
#include "sfrelay/bayeux_stream.h"
#include "sfrelay/http.h"
#include "sfrelay/log.h"

#define BAYEUX_DEFAULT_TIMEOUT_MS 110000L
/* The long poll may legitimately take the server's whole timeout; the
 * margin on top covers the network and the transfer of a big reply:
 * half the advised timeout, within these bounds (30 s for Salesforce's
 * 110 s). A server that holds a connect past it, or trickles a reply
 * that never ends, is given up on there. */
#define BAYEUX_POLL_MARGIN_MIN_MS 5000L
#define BAYEUX_POLL_MARGIN_MAX_MS 30000L
/* Meta replies (handshake, subscribe, disconnect) are a few hundred
 * bytes: one far bigger is refused before it is buffered. */
#define BAYEUX_META_MAX_BODY (1024u * 1024u)
#define BAYEUX_HOLD_CHECK_MS 50L
/* Largest single message in a long-poll reply (a platform event is at
 * most 1 MB); the reply itself may be any size. */
#define BAYEUX_MAX_MSG_BYTES (2u * 1024u * 1024u)
/* How much of a non-200 long-poll reply is kept for the log. */
#define BAYEUX_ERROR_BODY_MAX 4096u

/* The /meta/connect reply of the running long poll, copied out of the
 * stream (its strings are only borrowed during the stream callback). */
struct poll_reply {
	int seen;
	char *refused; /* why on_poll_msg stopped the body, or NULL */
	int successful;
	char *error;
	char *failure_reason;
	int has_advice;
	struct bayeux_advice advice;
};

/* What to do once the current wait ends. */
enum bayeux_next {
	NEXT_AUTH,      /* get a token, then handshake */
	NEXT_HANDSHAKE, /* handshake with the held token */
	NEXT_CONNECT,
};

/* Per-channel subscription state. */
struct chan {
	char *override;     /* replay id to use instead (after an invalid id) */
	int subscribed;
	int failed;         /* refused; retried beside the long poll */
	unsigned attempts;  /* consecutive refusals, for its back-off */
};

struct bayeux {
	struct event_base *base;
	struct http *http;
	struct auth *auth;
	struct bayeux_opts opts;
	struct bayeux_callbacks cbs;

	enum bayeux_state state;
	enum bayeux_next next;
	char *client_id;
	char *token_used; /* the token of the in-flight request (for 401s) */
	struct http_request *inflight;
	/* The next connect, sent while the last reply is still being
	 * decoded (on_poll_complete), or NULL. */
	struct http_request *ahead;
	unsigned long connects_ahead; /* of those, how many were kept */
	size_t poll_fed; /* bytes of the current long-poll reply decoded */
	unsigned session_polls; /* long-poll replies handled in this session */
	struct event *timer;
	long advice_timeout_ms;
	long advice_interval_ms;
	unsigned attempt; /* consecutive failures, for back-off */
	uint64_t rng;
	unsigned long handshakes;
	struct chan *chans; /* one per opts.channels entry */
	struct http_request *side; /* a resubscribe beside the long poll */
	struct bayeux_stream *stream; /* decodes long-poll replies as they come */
	struct poll_reply reply;
	struct evbuffer *error_body; /* start of a non-200 long-poll reply */
	/* An event without a usable replayId refused a reply; the replay
	 * that follows brings it again: if still bad, it is dropped, so one
	 * damaged event cannot stop the stream for good. Cleared by the
	 * next good event. */
	int bad_event_retried;
	struct event *resub_timer;
	long long last_handshake_ms;

	bayeux_stopped_fn *stopped;
	void *stopped_arg;
};

static void handshake(struct bayeux *b);
static void connect_now(struct bayeux *b);
static void begin_auth(struct bayeux *b);
static void on_resub_timer(evutil_socket_t fd, short what, void *arg);
static int on_poll_msg(void *arg, const struct bayeux_msg *m);
static void on_poll_complete(void *arg, const char *rest, size_t len);
static long deadline_for(long timeout_ms);

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct bayeux *b = arg;
	if (b->state == BAYEUX_STOPPING) {
		b->state = BAYEUX_STOPPED;
		if (b->stopped != NULL)
			b->stopped(b->stopped_arg);
		return;
	}
	switch (b->next) {
	case NEXT_AUTH:
		begin_auth(b);
		break;
	case NEXT_HANDSHAKE:
		handshake(b);
		break;
	case NEXT_CONNECT:
		connect_now(b);
		break;
	}
}

struct bayeux *
bayeux_new(struct event_base *base, struct http *http, struct auth *auth,
	   const struct bayeux_opts *opts, const struct bayeux_callbacks *cbs)
{
	struct bayeux *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	b->base = base;
	b->http = http;
	b->auth = auth;
	b->opts = *opts;
	b->cbs = *cbs;
	if (b->opts.backoff_min_ms <= 0)
		b->opts.backoff_min_ms = 1000;
	if (b->opts.backoff_max_ms <= 0)
		b->opts.backoff_max_ms = 60000;
	if (b->opts.request_timeout_ms <= 0)
		b->opts.request_timeout_ms = 30000;
	b->rng = opts->seed != 0 ? opts->seed : 0x9e3779b97f4a7c15ULL;
	b->advice_timeout_ms = BAYEUX_DEFAULT_TIMEOUT_MS;
	b->timer = evtimer_new(base, on_timer, b);
	b->resub_timer = evtimer_new(base, on_resub_timer, b);
	b->stream = bayeux_stream_new(BAYEUX_MAX_MSG_BYTES, on_poll_msg, b);
	b->error_body = evbuffer_new();
	b->chans = calloc(opts->nchannels + 1, sizeof(*b->chans));
	if (b->timer == NULL || b->resub_timer == NULL || b->chans == NULL ||
	    b->stream == NULL || b->error_body == NULL) {
		bayeux_free(b);
		return NULL;
	}
	return b;
}

/* A new session: no channel is subscribed, no override applies. */
static void
reset_channels(struct bayeux *b)
{
	for (size_t i = 0; i < b->opts.nchannels; i++) {
		free(b->chans[i].override);
		b->chans[i].override = NULL;
		b->chans[i].subscribed = 0;
		b->chans[i].failed = 0;
	}
}

void
bayeux_free(struct bayeux *b)
{
	if (b == NULL)
		return;
	if (b->inflight != NULL)
		http_cancel(b->http, b->inflight);
	if (b->ahead != NULL)
		http_cancel(b->http, b->ahead);
	if (b->side != NULL)
		http_cancel(b->http, b->side);
	if (b->auth != NULL)
		auth_cancel(b->auth, b);
	if (b->timer != NULL)
		event_free(b->timer);
	if (b->resub_timer != NULL)
		event_free(b->resub_timer);
	if (b->chans != NULL)
		reset_channels(b);
	free(b->chans);
	bayeux_stream_free(b->stream);
	if (b->error_body != NULL)
		evbuffer_free(b->error_body);
	free(b->reply.error);
	free(b->reply.failure_reason);
	free(b->reply.refused);
	free(b->client_id);
	free(b->token_used);
	free(b);
}

static void
wait_then(struct bayeux *b, long ms, enum bayeux_next next)
{
	b->next = next;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(b->timer, &tv);
}

/* Full jitter: uniform in [min, min(max, min * 2^(failures - 1))]. */
static void
back_off(struct bayeux *b, enum bayeux_next next, const char *why)
{
	b->attempt++;
	long ms =
	    backoff_delay_from_min(b->opts.backoff_min_ms,
	                           b->opts.backoff_max_ms, b->attempt, &b->rng);
	b->state = BAYEUX_BACKOFF;
	char delay[32];
	log_warn("stream retrying after back-off", "reason", why, "delay_ms",
		 log_fmt(delay, sizeof(delay), "%ld", ms), NULL);
	wait_then(b, ms, next);
}

static void
set_client_id(struct bayeux *b, const char *id)
{
	free(b->client_id);
	b->client_id = id != NULL ? strdup(id) : NULL;
	b->session_polls = 0;
}

/* A refused token: forget it (once for all its users) and start over. */
static void
reauthenticate(struct bayeux *b, const char *why)
{
	log_warn("stream authentication refused; renewing the token",
		 "reason", why, NULL);
	auth_invalidate(b->auth, b->token_used);
	set_client_id(b, NULL);
	if (b->attempt == 0) {
		b->attempt++;
		begin_auth(b);
	} else {
		back_off(b, NEXT_AUTH, why);
	}
}

static void
rehandshake(struct bayeux *b, const char *why)
{
	log_warn("stream session lost; handshaking again", "reason", why,
		 NULL);
	set_client_id(b, NULL);
	if (b->attempt == 0) {
		b->attempt++;
		handshake(b);
	} else {
		back_off(b, NEXT_HANDSHAKE, why);
	}
}

/* Sends body to the CometD endpoint; the request handle goes to *slot
 * (the main request or the side one). */
static int
send_on(struct bayeux *b, struct http_request **slot, struct evbuffer *body,
	long timeout_ms, http_done_fn *cb, http_data_fn *data)
{
	const char *token = auth_access_token(b->auth);
	const char *base_url = auth_instance_url(b->auth);
	if (token == NULL || base_url == NULL)
		return -1;
	char url[2048];
	snprintf(url, sizeof(url), "%s/cometd/%s", base_url,
		 b->opts.api_version);
	struct http_request *req = http_request_new("POST", url);
	if (req == NULL)
		return -1;
	size_t n = evbuffer_get_length(body);
	char auth_value[4096];
	snprintf(auth_value, sizeof(auth_value), "Bearer %s", token);
	int rc = http_request_body(req, evbuffer_pullup(body, -1), n);
	rc |= http_request_header(req, "Content-Type", "application/json");
	rc |= http_request_header(req, "Authorization", auth_value);
	memset(auth_value, 0, sizeof(auth_value));
	if (rc != 0) {
		http_request_free(req);
		return -1;
	}
	http_request_timeout(req, timeout_ms);
	if (data != NULL) {
		http_request_on_data(req, data, b);
		http_request_on_complete(req, on_poll_complete);
		http_request_no_resend(req);
	} else {
		http_request_max_body(req, BAYEUX_META_MAX_BODY);
	}
	free(b->token_used);
	b->token_used = strdup(token);
	*slot = req;
	if (http_submit(b->http, req, cb, b) != 0) {
		*slot = NULL;
		return -1;
	}
	return 0;
}

static int
send_request(struct bayeux *b, struct evbuffer *body, long timeout_ms,
	     http_done_fn *cb)
{
	return send_on(b, &b->inflight, body, timeout_ms, cb, NULL);
}

/*
 * Backs off before `next`. A failed long poll may have carried events we
 * never saw, which the server counts as delivered: only a new session,
 * subscribed from the acknowledged checkpoints, gets them back, so a
 * retry that starts with a handshake drops the session first.
 */
static void
new_session_after(struct bayeux *b, enum bayeux_next next, const char *why)
{
	if (next == NEXT_HANDSHAKE)
		set_client_id(b, NULL);
	back_off(b, next, why);
}

/*
 * Common checks on a reply: transport, HTTP status, JSON. Returns the
 * decoded batch, or NULL after arranging the recovery.
 */
static struct bayeux_batch *
decode_reply(struct bayeux *b, const struct http_response *resp,
	     enum bayeux_next retry, const char *what)
{
	char why[512];
	b->inflight = NULL;
	if (!resp->transport_ok) {
		snprintf(why, sizeof(why), "%s failed: %s", what, resp->error);
		new_session_after(b, retry, why);
		return NULL;
	}
	if (resp->status == 401) {
		snprintf(why, sizeof(why), "%s answered HTTP 401", what);
		reauthenticate(b, why);
		return NULL;
	}
	char err[256] = "";
	struct bayeux_batch *batch =
		resp->status == 200
			? bayeux_decode(resp->body, resp->body_len, err,
					sizeof(err))
			: NULL;
	if (batch == NULL) {
		if (resp->status != 200)
			snprintf(why, sizeof(why), "%s answered HTTP %ld", what,
				 resp->status);
		else
			snprintf(why, sizeof(why), "%s reply malformed: %s",
				 what, err);
		new_session_after(b, retry, why);
	}
	return batch;
}

/* Classifies a failed meta reply and starts the matching recovery. */
static void
recover_from(struct bayeux *b, const struct bayeux_msg *m,
	     enum bayeux_next retry)
{
	char why[512];
	const char *error = m->error != NULL ? m->error : "unsuccessful";
	snprintf(why, sizeof(why), "%s: %s%s%s", m->channel, error,
		 m->failure_reason != NULL ? " / " : "",
		 m->failure_reason != NULL ? m->failure_reason : "");
	if (bayeux_error_code(m->error) == 401 ||
	    bayeux_error_code(m->failure_reason) == 401) {
		reauthenticate(b, why);
	} else if (bayeux_error_code(m->error) == 403 &&
		   strstr(error, "Unknown client") != NULL) {
		rehandshake(b, why);
	} else if (m->has_advice &&
		   m->advice.reconnect == BAYEUX_RECONNECT_HANDSHAKE) {
		rehandshake(b, why);
	} else if (m->has_advice &&
		   m->advice.reconnect == BAYEUX_RECONNECT_NONE) {
		/* "Do not retry this session": a relay must not give up, so
		 * it drops the session and starts a new one after back-off. */
		set_client_id(b, NULL);
		back_off(b, NEXT_HANDSHAKE, why);
	} else {
		back_off(b, retry, why);
	}
}

static const struct bayeux_msg *
find_meta(const struct bayeux_batch *batch, const char *channel)
{
	for (size_t i = 0; i < bayeux_batch_count(batch); i++) {
		const struct bayeux_msg *m = bayeux_batch_msg(batch, i);
		if (m->kind == BAYEUX_MSG_META && strcmp(m->channel, channel) == 0)
			return m;
	}
	return NULL;
}

static void
on_auth(void *arg, enum auth_status status, const char *err)
{
	struct bayeux *b = arg;
	if (b->state == BAYEUX_STOPPING || b->state == BAYEUX_STOPPED)
		return;
	if (status == AUTH_OK) {
		handshake(b);
	} else if (status == AUTH_PERMANENT) {
		log_error("authentication refused", "error", err, NULL);
		b->state = BAYEUX_STOPPED;
		if (b->cbs.fatal != NULL)
			b->cbs.fatal(b->cbs.arg, 77, err);
	} else {
		back_off(b, NEXT_AUTH, err);
	}
}

static void
begin_auth(struct bayeux *b)
{
	b->state = BAYEUX_AUTHENTICATING;
	if (auth_get(b->auth, on_auth, b) != 0)
		back_off(b, NEXT_AUTH, "out of memory");
}

static void subscribe(struct bayeux *b);

static void
on_handshake(void *arg, const struct http_response *resp)
{
	struct bayeux *b = arg;
	struct bayeux_batch *batch =
		decode_reply(b, resp, NEXT_HANDSHAKE, "handshake");
	if (batch == NULL)
		return;
	const struct bayeux_msg *m = find_meta(batch, "/meta/handshake");
	if (m == NULL) {
		back_off(b, NEXT_HANDSHAKE, "handshake reply missing");
	} else if (!m->successful || m->client_id == NULL) {
		recover_from(b, m, NEXT_HANDSHAKE);
	} else {
		set_client_id(b, m->client_id);
		b->handshakes++;
		if (!m->replay_supported)
			log_warn("server did not confirm the replay extension",
				 NULL);
		if (m->has_advice && m->advice.timeout_ms > 0)
			b->advice_timeout_ms = m->advice.timeout_ms;
		log_info("stream handshake done", NULL);
		reset_channels(b);
		subscribe(b);
	}
	bayeux_batch_free(batch);
}

static long long
monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
handshake(struct bayeux *b)
{
	if (auth_access_token(b->auth) == NULL) {
		begin_auth(b);
		return;
	}
	/* Each handshake takes one of the org's concurrent streaming
	 * clients for a while: never more than one per back-off minimum,
	 * however fast a flapping network fails. */
	long long now = monotonic_ms();
	long long since = now - b->last_handshake_ms;
	if (b->last_handshake_ms != 0 && since < b->opts.backoff_min_ms) {
		b->state = BAYEUX_BACKOFF;
		wait_then(b, (long)(b->opts.backoff_min_ms - since),
			  NEXT_HANDSHAKE);
		return;
	}
	b->last_handshake_ms = now;
	b->state = BAYEUX_HANDSHAKING;
	struct evbuffer *body = evbuffer_new();
	int rc = body != NULL ? bayeux_build_handshake(body) : -1;
	if (rc == 0)
		rc = send_request(b, body, b->opts.request_timeout_ms,
				  on_handshake);
	if (body != NULL)
		evbuffer_free(body);
	if (rc != 0)
		back_off(b, NEXT_AUTH, "cannot send handshake");
}

static const char *
replay_for(struct bayeux *b, size_t i)
{
	if (b->chans[i].override != NULL)
		return b->chans[i].override;
	const char *r = b->cbs.replay != NULL
				? b->cbs.replay(b->cbs.arg, b->opts.channels[i])
				: NULL;
	return r != NULL ? r : "-1";
}

static size_t
channel_index(struct bayeux *b, const char *subscription)
{
	for (size_t i = 0; i < b->opts.nchannels; i++)
		if (subscription != NULL &&
		    strcmp(b->opts.channels[i], subscription) == 0)
			return i;
	return b->opts.nchannels;
}

/*
 * Handles one channel's failed subscribe. Returns 1 when the channel
 * should be subscribed again at once (invalid replay id), 0 when the
 * failure is only reported, -1 when the whole session must recover.
 */
static int
subscribe_failed(struct bayeux *b, const struct bayeux_msg *m)
{
	const char *error = m->error != NULL ? m->error : "unsuccessful";
	size_t i = channel_index(b, m->subscription);
	int code = bayeux_error_code(m->error);
	if (code == 401 || (code == 403 && strstr(error, "Unknown client")))
		return -1;
	if (code == 400 && strstr(error, "replayId") != NULL &&
	    i < b->opts.nchannels && b->chans[i].override == NULL) {
		const char *from = b->opts.replay_invalid != NULL
					   ? b->opts.replay_invalid
					   : "-2";
		if (b->cbs.gap != NULL)
			b->cbs.gap(b->cbs.arg, b->opts.channels[i],
				   replay_for(b, i), error);
		b->chans[i].override = strdup(from);
		return b->chans[i].override != NULL ? 1 : 0;
	}
	log_error("subscribe failed; retrying it beside the other channels",
		  "channel", m->subscription != NULL ? m->subscription : "?",
		  "error", error, NULL);
	if (i < b->opts.nchannels)
		b->chans[i].failed = 1;
	return 0;
}

static void subscribe_some(struct bayeux *b, const int *which);

static void
tell_subscribed(struct bayeux *b, size_t ci)
{
	if (b->cbs.subscribed != NULL)
		b->cbs.subscribed(b->cbs.arg, b->opts.channels[ci],
				  replay_for(b, ci));
}

/* Back-off for refused channels: grows with the most-refused one. */
static void
arm_resubscribe(struct bayeux *b)
{
	unsigned worst = 0;
	int any = 0;
	for (size_t i = 0; i < b->opts.nchannels; i++) {
		if (!b->chans[i].failed)
			continue;
		any = 1;
		if (b->chans[i].attempts > worst)
			worst = b->chans[i].attempts;
	}
	if (!any || evtimer_pending(b->resub_timer, NULL))
		return;
	/* No jitter: one timer per client, not a crowd to spread out. */
	long ms = backoff_ceiling(b->opts.backoff_min_ms,
	                          b->opts.backoff_max_ms, worst + 1);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(b->resub_timer, &tv);
}

static void
on_resubscribe(void *arg, const struct http_response *resp)
{
	struct bayeux *b = arg;
	b->side = NULL;
	char err[256] = "";
	struct bayeux_batch *batch =
		resp->transport_ok && resp->status == 200
			? bayeux_decode(resp->body, resp->body_len, err,
					sizeof(err))
			: NULL;
	for (size_t i = 0; batch != NULL && i < bayeux_batch_count(batch);
	     i++) {
		const struct bayeux_msg *m = bayeux_batch_msg(batch, i);
		size_t ci = channel_index(b, m->subscription);
		if (strcmp(m->channel, "/meta/subscribe") != 0 ||
		    ci == b->opts.nchannels || !b->chans[ci].failed)
			continue;
		if (m->successful) {
			b->chans[ci].failed = 0;
			b->chans[ci].attempts = 0;
			b->chans[ci].subscribed = 1;
			log_info("subscribed", "channel", m->subscription,
				 "replay_from", replay_for(b, ci), NULL);
			tell_subscribed(b, ci);
		} else {
			b->chans[ci].attempts++;
			log_warn("subscribe refused again", "channel",
				 m->subscription, "error",
				 m->error != NULL ? m->error : "unsuccessful",
				 NULL);
		}
	}
	/* Session-level trouble shows up on the long poll, which recovers
	 * (and resubscribes everything); here only the retry is re-armed. */
	for (size_t i = 0; batch == NULL && i < b->opts.nchannels; i++)
		if (b->chans[i].failed)
			b->chans[i].attempts++;
	bayeux_batch_free(batch);
	arm_resubscribe(b);
}

static void
on_resub_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct bayeux *b = arg;
	if (b->state != BAYEUX_CONNECTED || b->client_id == NULL ||
	    b->side != NULL) {
		arm_resubscribe(b);
		return;
	}
	size_t n = b->opts.nchannels, k = 0;
	const char **chans = calloc(n + 1, sizeof(char *));
	const char **ids = calloc(n + 1, sizeof(char *));
	struct evbuffer *body = evbuffer_new();
	int rc = -1;
	for (size_t i = 0; chans != NULL && ids != NULL && i < n; i++)
		if (b->chans[i].failed) {
			chans[k] = b->opts.channels[i];
			ids[k++] = replay_for(b, i);
		}
	if (body != NULL && k > 0 &&
	    bayeux_build_subscribe(body, b->client_id, chans, ids, k) == 0)
		rc = send_on(b, &b->side, body, b->opts.request_timeout_ms,
			     on_resubscribe, NULL);
	if (body != NULL)
		evbuffer_free(body);
	free(chans);
	free(ids);
	if (rc != 0)
		arm_resubscribe(b);
}

static void
on_subscribe(void *arg, const struct http_response *resp)
{
	struct bayeux *b = arg;
	struct bayeux_batch *batch =
		decode_reply(b, resp, NEXT_HANDSHAKE, "subscribe");
	if (batch == NULL)
		return;
	int *again = calloc(b->opts.nchannels + 1, sizeof(int));
	int retry = 0, lost = 0;
	const struct bayeux_msg *lost_msg = NULL;
	for (size_t i = 0; again != NULL && i < bayeux_batch_count(batch);
	     i++) {
		const struct bayeux_msg *m = bayeux_batch_msg(batch, i);
		if (m->kind != BAYEUX_MSG_META ||
		    strcmp(m->channel, "/meta/subscribe") != 0)
			continue;
		if (m->successful) {
			size_t ci = channel_index(b, m->subscription);
			if (ci < b->opts.nchannels) {
				b->chans[ci].subscribed = 1;
				b->chans[ci].failed = 0;
				b->chans[ci].attempts = 0;
			}
			log_info("subscribed", "channel",
				 m->subscription != NULL ? m->subscription : "?",
				 "replay_from",
				 ci < b->opts.nchannels ? replay_for(b, ci) : "?",
				 NULL);
			if (ci < b->opts.nchannels)
				tell_subscribed(b, ci);
			continue;
		}
		int r = subscribe_failed(b, m);
		if (r < 0 && lost_msg == NULL)
			lost = 1, lost_msg = m;
		if (r > 0) {
			size_t ci = channel_index(b, m->subscription);
			again[ci] = 1;
			retry = 1;
		}
	}
	if (again == NULL)
		back_off(b, NEXT_HANDSHAKE, "out of memory");
	else if (lost)
		recover_from(b, lost_msg, NEXT_HANDSHAKE);
	else if (retry)
		subscribe_some(b, again);
	else {
		arm_resubscribe(b);
		connect_now(b);
	}
	free(again);
	bayeux_batch_free(batch);
}

/* Subscribes the channels flagged in which (NULL: all). */
static void
subscribe_some(struct bayeux *b, const int *which)
{
	size_t n = b->opts.nchannels, k = 0;
	const char **chans = calloc(n + 1, sizeof(char *));
	const char **ids = calloc(n + 1, sizeof(char *));
	struct evbuffer *body = evbuffer_new();
	int rc = -1;
	if (chans == NULL || ids == NULL || body == NULL)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (which == NULL || which[i]) {
			chans[k] = b->opts.channels[i];
			ids[k++] = replay_for(b, i);
		}
	}
	b->state = BAYEUX_SUBSCRIBING;
	rc = bayeux_build_subscribe(body, b->client_id, chans, ids, k);
	if (rc == 0)
		rc = send_request(b, body, b->opts.request_timeout_ms,
				  on_subscribe);
out:
	if (body != NULL)
		evbuffer_free(body);
	free(chans);
	free(ids);
	if (rc != 0)
		back_off(b, NEXT_HANDSHAKE, "cannot send subscribe");
}

static void
subscribe(struct bayeux *b)
{
	subscribe_some(b, NULL);
}

static void
reset_poll(struct bayeux *b)
{
	free(b->reply.error);
	free(b->reply.failure_reason);
	free(b->reply.refused);
	memset(&b->reply, 0, sizeof(b->reply));
	bayeux_stream_reset(b->stream);
	b->poll_fed = 0;
	evbuffer_drain(b->error_body, evbuffer_get_length(b->error_body));
}

/*
 * An event without a usable replayId cannot be placed in the stream: its
 * line would carry no id and its acknowledgement would checkpoint an
 * empty position. The first time, the whole reply is refused (the new
 * session replays from the checkpoint, so a reply damaged on the way is
 * fetched again); if the replay brings a bad event again, it is dropped
 * and reported. Returns what on_poll_msg returns.
 */
static int
bad_event(struct bayeux *b, const struct bayeux_msg *m)
{
	const char *problem =
		m->ev.payload_len == 2 && memcmp(m->ev.payload, "{}", 2) == 0
			? "event has no data"
			: "replayId missing or not a number";
	if (b->bad_event_retried) {
		log_error("event dropped: no usable replayId after a replay",
			  "channel", m->channel, "problem", problem, NULL);
		return 0;
	}
	char why[512];
	snprintf(why, sizeof(why),
		 "connect reply refused: event on %s without a usable "
		 "replayId (%s)",
		 m->channel, problem);
	log_error("event without a usable replayId; refusing the reply and "
		  "replaying from the checkpoint",
		  "channel", m->channel, "problem", problem, NULL);
	free(b->reply.refused);
	b->reply.refused = strdup(why);
	b->bad_event_retried = 1;
	return -1;
}

/*
 * One message of the long-poll reply, as soon as its bytes arrived:
 * events go straight on (nothing of a large reply is held), the connect
 * reply is kept for the end of the body.
 */
static int
on_poll_msg(void *arg, const struct bayeux_msg *m)
{
	struct bayeux *b = arg;
	if (m->kind == BAYEUX_MSG_EVENT) {
		if (m->ev.position[0] == '\0')
			return bad_event(b, m);
		b->bad_event_retried = 0;
		if (b->cbs.event != NULL)
			b->cbs.event(b->cbs.arg, &m->ev);
		return 0;
	}
	if (strcmp(m->channel, "/meta/connect") != 0 || b->reply.seen)
		return 0;
	b->reply.seen = 1;
	b->reply.successful = m->successful;
	b->reply.error = m->error != NULL ? strdup(m->error) : NULL;
	b->reply.failure_reason =
		m->failure_reason != NULL ? strdup(m->failure_reason) : NULL;
	b->reply.has_advice = m->has_advice;
	b->reply.advice = m->advice;
	return 0;
}

static int
on_poll_data(void *arg, long status, const char *data, size_t len)
{
	struct bayeux *b = arg;
	if (status != 200) {
		size_t have = evbuffer_get_length(b->error_body);
		if (have < BAYEUX_ERROR_BODY_MAX)
			evbuffer_add(b->error_body, data,
				     len < BAYEUX_ERROR_BODY_MAX - have
					     ? len
					     : BAYEUX_ERROR_BODY_MAX - have);
		return 0;
	}
	b->poll_fed += len;
	return bayeux_stream_feed(b->stream, data, len);
}

/* The connect sent ahead becomes the long poll in flight: its reply is
 * the next one decoded. */
static void
take_ahead(struct bayeux *b, struct http_request *ahead)
{
	b->state = BAYEUX_CONNECTED;
	reset_poll(b);
	b->inflight = ahead;
	b->connects_ahead++;
}

/* *ahead: the connect sent ahead of this reply, or NULL; taken (and set
 * to NULL) when the next connect would go out at once anyway. */
static void
poll_succeeded(struct bayeux *b, struct http_request **ahead)
{
	if (b->reply.has_advice &&
	    b->reply.advice.reconnect == BAYEUX_RECONNECT_NONE) {
		/* "Do not connect again on this session": start a new one. */
		new_session_after(b, NEXT_HANDSHAKE,
				  "server advised reconnect=none");
		return;
	}
	b->attempt = 0;
	b->session_polls++;
	if (b->reply.has_advice) {
		if (b->reply.advice.timeout_ms > 0)
			b->advice_timeout_ms = b->reply.advice.timeout_ms;
		if (b->reply.advice.interval_ms >= 0)
			b->advice_interval_ms = b->reply.advice.interval_ms;
	}
	if (b->reply.has_advice &&
	    b->reply.advice.reconnect == BAYEUX_RECONNECT_HANDSHAKE) {
		rehandshake(b, "server advised handshake");
	} else if (b->advice_interval_ms > 0) {
		wait_then(b, b->advice_interval_ms, NEXT_CONNECT);
	} else if (*ahead != NULL) {
		take_ahead(b, *ahead);
		*ahead = NULL;
	} else {
		connect_now(b);
	}
}

static void
on_connect(void *arg, const struct http_response *resp)
{
	struct bayeux *b = arg;
	char why[768];
	/* The connect sent ahead of this reply's decoding: kept when the
	 * reply says to connect again at once, cancelled otherwise (below). */
	struct http_request *ahead = b->ahead;
	b->ahead = NULL;
	b->inflight = NULL;
	if (b->reply.refused != NULL) {
		new_session_after(b, NEXT_HANDSHAKE, b->reply.refused);
	} else if (resp->status == 401) {
		reauthenticate(b, "connect answered HTTP 401");
	} else if (resp->transport_ok && resp->status != 200) {
		snprintf(why, sizeof(why), "connect answered HTTP %ld",
			 resp->status);
		new_session_after(b, NEXT_HANDSHAKE, why);
	} else if (!resp->transport_ok &&
		   strcmp(resp->error, "aborted by the receiver") != 0) {
		/* Events already delivered stay delivered; the new session
		 * replays from the acknowledged checkpoints anyway. */
		if (resp->timed_out)
			snprintf(why, sizeof(why),
				 "connect failed: %s; the server advised "
				 "holding a connect at most %ld ms",
				 resp->error, b->advice_timeout_ms);
		else
			snprintf(why, sizeof(why), "connect failed: %s",
				 resp->error);
		new_session_after(b, NEXT_HANDSHAKE, why);
	} else if (!resp->transport_ok ||
		   bayeux_stream_finish(b->stream) != 0) {
		snprintf(why, sizeof(why), "connect reply malformed: %s",
			 bayeux_stream_errstr(b->stream) != NULL
				 ? bayeux_stream_errstr(b->stream)
				 : "unknown");
		new_session_after(b, NEXT_HANDSHAKE, why);
	} else if (!b->reply.seen) {
		new_session_after(b, NEXT_HANDSHAKE, "connect reply missing");

	} else if (!b->reply.successful) {
		struct bayeux_msg m;
		memset(&m, 0, sizeof(m));
		m.kind = BAYEUX_MSG_META;
		m.channel = "/meta/connect";
		m.error = b->reply.error;
		m.failure_reason = b->reply.failure_reason;
		m.has_advice = b->reply.has_advice;
		m.advice = b->reply.advice;
		set_client_id(b, NULL);
		recover_from(b, &m, NEXT_HANDSHAKE);
	} else {
		poll_succeeded(b, &ahead);
	}
	if (ahead != NULL) {
		/* The server may have put events in its reply already and
		 * counts them as delivered: only a new session, subscribed
		 * from the acknowledged checkpoints, gets them back. */
		log_debug("connect sent ahead cancelled: the reply before it "
			  "turned out bad",
			  NULL);
		http_cancel(b->http, ahead);
		set_client_id(b, NULL);
	}
}

/* Whether a body starts as a JSON array of objects does: '[', '{', '"'
 * (with any whitespace between). */
static int
plausible_start(const char *p, size_t len)
{
	const char want[] = "[{\"";
	size_t i = 0;
	for (size_t k = 0; k < 3; k++) {
		while (i < len && (p[i] == ' ' || p[i] == '\n' ||
				   p[i] == '\r' || p[i] == '\t'))
			i++;
		if (i >= len || p[i] != want[k])
			return 0;
		i++;
	}
	return 1;
}

/* Whether a successful /meta/connect reply with this advice means
 * "connect again at once". */
static int
reconnect_at_once(const struct bayeux *b, int has_advice,
		  const struct bayeux_advice *advice)
{
	if (!has_advice)
		return b->advice_interval_ms <= 0;
	long interval = advice->interval_ms >= 0 ? advice->interval_ms
						 : b->advice_interval_ms;
	return (advice->reconnect == BAYEUX_RECONNECT_UNSET ||
		advice->reconnect == BAYEUX_RECONNECT_RETRY) &&
	       interval <= 0;
}

/* The /meta/connect message of a one-message batch, or NULL. */
static const struct bayeux_msg *
connect_msg(const struct bayeux_batch *batch)
{
	const struct bayeux_msg *m = bayeux_batch_msg(batch, 0);
	return m != NULL && strcmp(m->channel, "/meta/connect") == 0 ? m
								      : NULL;
}

/*
 * Whether the reply whose undecoded end is rest says "successful,
 * reconnect at once". Servers put the /meta/connect message first or
 * last (Salesforce does both): first, it was decoded already, or it
 * starts rest; last, it ends rest. Only those two places are looked at,
 * never the events between. A reply that passes can still turn out bad
 * further in; that only means a new session (see on_connect).
 */
static int
reply_says_reconnect(const struct bayeux *b, const char *rest, size_t len,
		     long *timeout_ms)
{
	*timeout_ms = b->advice_timeout_ms;
	if (b->reply.seen) {
		if (b->reply.has_advice && b->reply.advice.timeout_ms > 0)
			*timeout_ms = b->reply.advice.timeout_ms;
		return b->reply.successful &&
		       reconnect_at_once(b, b->reply.has_advice,
					 &b->reply.advice);
	}
	struct bayeux_batch *batch =
		b->poll_fed == 0 ? bayeux_decode_first(rest, len) : NULL;
	const struct bayeux_msg *m = connect_msg(batch);
	if (m == NULL) {
		/* Nothing decoded yet and the start is not even a message:
		 * the reply is bad, whatever its end says. */
		if (b->poll_fed == 0 && batch == NULL &&
		    !plausible_start(rest, len)) {
			return 0;
		}
		bayeux_batch_free(batch);
		batch = bayeux_decode_last(rest, len);
		m = connect_msg(batch);
	}
	int ok = m != NULL && m->successful &&
		 reconnect_at_once(b, m->has_advice, &m->advice);
	if (ok && m->has_advice && m->advice.timeout_ms > 0)
		*timeout_ms = m->advice.timeout_ms;
	bayeux_batch_free(batch);
	return ok;
}

/*
 * A long-poll reply has arrived in full (HTTP 200) and is about to be
 * decoded and formatted, which for a reply of a thousand events takes
 * about as long as the server takes to gather the next thousand. When
 * its /meta/connect message says to reconnect at once, the next connect
 * goes out now rather than after, so that both happen together. Its
 * bytes are decoded only after this reply's, so the order of events and
 * the checkpoint rule are untouched; on_connect() keeps it, or cancels
 * it when the reply turns out bad after all (and then starts a new
 * session, which replays whatever the server put in it). Only while the
 * core keeps up with its sink (cbs.keeping_up): when the sink is the
 * slowest part, fetching ahead would only lengthen the queue.
 */
static void
on_poll_complete(void *arg, const char *rest, size_t len)
{
	struct bayeux *b = arg;
	long timeout_ms;
	/* Not after a session's first reply: it sets the session's advice
	 * (and, after a failure, is the one most likely to be bad). */
	if (b->ahead != NULL || b->state != BAYEUX_CONNECTED ||
	    b->client_id == NULL || b->session_polls == 0 ||
	    b->reply.refused != NULL || b->cbs.event == NULL ||
	    !reply_says_reconnect(b, rest, len, &timeout_ms))
		return;
	bayeux_ready_fn *room =
		b->cbs.keeping_up != NULL ? b->cbs.keeping_up : b->cbs.ready;
	if (room != NULL && !room(b->cbs.arg))
		return;
	struct evbuffer *body = evbuffer_new();
	if (body == NULL)
		return;
	if (bayeux_build_connect(body, b->client_id) == 0)
		(void)send_on(b, &b->ahead, body, deadline_for(timeout_ms),
			      on_connect, on_poll_data);
	evbuffer_free(body);
}

/* The long poll's whole-request time limit (see the margin above). */
static long
deadline_for(long timeout_ms)
{
	long margin = timeout_ms / 2;
	if (margin < BAYEUX_POLL_MARGIN_MIN_MS)
		margin = BAYEUX_POLL_MARGIN_MIN_MS;
	if (margin > BAYEUX_POLL_MARGIN_MAX_MS)
		margin = BAYEUX_POLL_MARGIN_MAX_MS;
	return timeout_ms + margin;
}

static long
poll_deadline_ms(const struct bayeux *b)
{
	return deadline_for(b->advice_timeout_ms);
}

static void
connect_now(struct bayeux *b)
{
	b->state = BAYEUX_CONNECTED;
	if (b->cbs.ready != NULL && !b->cbs.ready(b->cbs.arg)) {
		/* Back-pressure: the events stay with Salesforce until the
		 * queue drains. */
		wait_then(b, BAYEUX_HOLD_CHECK_MS, NEXT_CONNECT);
		return;
	}
	if (b->client_id == NULL) {
		handshake(b);
		return;
	}
	struct evbuffer *body = evbuffer_new();
	int rc = body != NULL ? bayeux_build_connect(body, b->client_id) : -1;
	reset_poll(b);
	if (rc == 0)
		rc = send_on(b, &b->inflight, body, poll_deadline_ms(b),
			     on_connect, on_poll_data);
	if (body != NULL)
		evbuffer_free(body);
	if (rc != 0)
		back_off(b, NEXT_CONNECT, "cannot send connect");
}

int
bayeux_start(struct bayeux *b)
{
	if (b->state != BAYEUX_IDLE)
		return -1;
	begin_auth(b);
	return 0;
}

static void
on_disconnect(void *arg, const struct http_response *resp)
{
	(void)resp;
	struct bayeux *b = arg;
	b->inflight = NULL;
	b->state = BAYEUX_STOPPED;
	if (b->stopped != NULL)
		b->stopped(b->stopped_arg);
}

void
bayeux_stop(struct bayeux *b, bayeux_stopped_fn *done, void *arg)
{
	b->stopped = done;
	b->stopped_arg = arg;
	b->cbs.event = NULL;
	evtimer_del(b->timer);
	evtimer_del(b->resub_timer);
	if (b->side != NULL) {
		http_cancel(b->http, b->side);
		b->side = NULL;
	}
	auth_cancel(b->auth, b);
	if (b->inflight != NULL) {
		http_cancel(b->http, b->inflight);
		b->inflight = NULL;
	}
	if (b->ahead != NULL) {
		http_cancel(b->http, b->ahead);
		b->ahead = NULL;
	}
	b->state = BAYEUX_STOPPING;
	struct evbuffer *body = NULL;
	if (b->client_id != NULL && (body = evbuffer_new()) != NULL &&
	    bayeux_build_disconnect(body, b->client_id) == 0 &&
	    send_request(b, body, 5000, on_disconnect) == 0) {
		evbuffer_free(body);
		return;
	}
	if (body != NULL)
		evbuffer_free(body);
	/* Nothing to say to the server: finish on the next loop turn. */
	wait_then(b, 0, NEXT_CONNECT);
}

enum bayeux_state
bayeux_state(const struct bayeux *b)
{
	return b->state;
}

unsigned long
bayeux_handshakes(const struct bayeux *b)
{
	return b->handshakes;
}

unsigned long
bayeux_connects_ahead(const struct bayeux *b)
{
	return b->connects_ahead;
}
