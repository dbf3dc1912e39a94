#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "sfrelay/log.h"

#include "cometd.h"
#include "fault.h"
#include "hostile.h"
#include "org.h"
#include "util.h"

#define COMETD_MIN_MAJOR 37
#define COMETD_ID_ALPHA "0123456789abcdefghijklmnopqrstuvwxyz"
#define COMETD_COOKIE_ALPHA                                                    \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#define COMETD_JSON_FLAGS                                                      \
	(JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

#define ERR_NO_AUTH "401::Request requires authentication"
#define ERR_AUTH "401::Authentication invalid"
#define ERR_DENIED "403::Handshake denied"
#define ERR_UNKNOWN_CLIENT "403::Unknown client"
#define ERR_CONCURRENT "403::Organization concurrent user limit exceeded"
/* Entries kept by the traffic log (GET /_mock/messages). */
#define COMETD_NOTES 4096

struct sub {
	struct org_channel *ch;
	char *subscription; /* as the client sent it, "?filter" included */
	int64_t cursor;     /* last replayId delivered */
};

struct client {
	struct client *next;
	struct cometd *cd;
	char id[32];
	char cookie[32];
	int connected;   /* its first connect was answered */
	int events_last; /* next response with events puts the reply last */
	int64_t last_ms; /* monotonic time of its last response */
	struct sub *subs;
	size_t nsubs;
	size_t subs_cap;

	/* The held /meta/connect, if any: the request, the replies to the
	 * other messages of that request, the message's "id" as JSON text. */
	struct evhttp_request *held;
	struct evbuffer *held_prefix;
	size_t held_items;
	char *held_msgid;
	struct event *held_timer;
	struct event *held_watch;  /* notices the peer closing */
	struct fault_hit held_hit; /* the fault verdict on that request */
};

/* One line of the traffic log: a message received, a fault rule that
 * fired, or a reply a fault altered. */
enum note_kind {
	NOTE_IN,
	NOTE_FAULT,
	NOTE_REPLY,
};

struct note {
	int64_t t; /* ms since start */
	enum note_kind kind;
	int rule;
	char channel[24];
	char client[32];
	char subscription[112];
	char replay[24];
	char action[24];
};

struct cometd {
	struct event_base *base;
	struct org *org;
	struct client *clients;
	struct event *wake;
	struct event *sweep;
	struct fault_plan *faults;
	struct hostile_set *hostile; /* streamed hostile replies */
	int64_t start_ms;
	struct note *notes; /* ring of COMETD_NOTES */
	size_t notes_head;
	size_t notes_count;
};

/* The replies of one request, comma separated, brackets added at the
 * end; plus the connect that may be held once every message is done. */
struct batch {
	struct evbuffer *out;
	size_t n;
	int hold;
	char hold_client[32];
	char *hold_msgid;
	const struct fault_hit *hit; /* the fault verdict, or NULL */
};

enum answer {
	ANSWER_EVENTS,  /* deliver pending events (timeout, wake-up) */
	ANSWER_EMPTY,   /* superseded or disconnected: no events */
	ANSWER_REVOKED, /* 401::Authentication invalid */
	ANSWER_DROPPED, /* 403::Unknown client */
};

static void answer_held(struct cometd *cd, struct client *c, enum answer how);

static int
batch_add(struct batch *b, const char *text, size_t len)
{
	if (b->n++ > 0 && evbuffer_add(b->out, ",", 1) != 0)
		return -1;
	return evbuffer_add(b->out, text, len);
}

/* Moves every item of from to the end of b. */
static void
batch_move(struct batch *b, struct batch *from)
{
	if (from->n == 0)
		return;
	if (b->n > 0)
		evbuffer_add(b->out, ",", 1);
	evbuffer_add_buffer(b->out, from->out);
	b->n += from->n;
	from->n = 0;
}

/* Adds r to the batch and releases it. */
static void
batch_json(struct batch *b, struct json_object *r)
{
	size_t len;
	const char *s =
	    json_object_to_json_string_length(r, COMETD_JSON_FLAGS, &len);

	if (s != NULL)
		batch_add(b, s, len);
	json_object_put(r);
}

/* A new entry of the traffic log (the oldest is overwritten). */
static struct note *
note_new(struct cometd *cd, enum note_kind kind, const char *channel)
{
	struct note *n;

	if (cd->notes == NULL)
		return NULL;
	if (cd->notes_count < COMETD_NOTES) {
		n = &cd->notes[(cd->notes_head + cd->notes_count++) %
		               COMETD_NOTES];
	} else {
		n = &cd->notes[cd->notes_head];
		cd->notes_head = (cd->notes_head + 1) % COMETD_NOTES;
	}
	memset(n, 0, sizeof(*n));
	n->t = util_mono_ms() - cd->start_ms;
	n->kind = kind;
	snprintf(n->channel, sizeof(n->channel), "%s",
	         channel != NULL ? channel : "");
	return n;
}

void
cometd_note_fault(struct cometd *cd, const char *channel, const char *action,
                  int rule)
{
	struct note *n = note_new(cd, NOTE_FAULT, channel);

	if (n == NULL)
		return;
	snprintf(n->action, sizeof(n->action), "%s", action);
	n->rule = rule;
}

/* Notes a reply that a fault altered. */
static void
note_reply(struct cometd *cd, const struct fault_hit *hit, const char *client)
{
	struct note *n = note_new(cd, NOTE_REPLY, "/meta/connect");

	if (n == NULL)
		return;
	snprintf(n->action, sizeof(n->action), "%s",
	         fault_action_name(hit->action));
	snprintf(n->client, sizeof(n->client), "%s",
	         client != NULL ? client : "");
	n->rule = hit->rule;
}

int
cometd_traffic_json(const struct cometd *cd, struct evbuffer *out)
{
	static const char *const kinds[] = {"in", "fault", "reply"};
	size_t i;
	int rc = 0;

	rc |= evbuffer_add(out, "[", 1);
	for (i = 0; i < cd->notes_count; i++) {
		const struct note *n =
		    &cd->notes[(cd->notes_head + i) % COMETD_NOTES];

		rc |= evbuffer_add_printf(out,
		                          "%s{\"t\":%lld,\"kind\":\"%s\","
		                          "\"channel\":",
		                          i > 0 ? "," : "", (long long)n->t,
		                          kinds[n->kind]) < 0;
		rc |= util_json_str(out, n->channel);
		if (n->client[0] != '\0') {
			rc |= evbuffer_add(out, ",\"client\":", 10);
			rc |= util_json_str(out, n->client);
		}
		if (n->kind == NOTE_IN && n->subscription[0] != '\0') {
			rc |= evbuffer_add(out, ",\"subscription\":", 16);
			rc |= util_json_str(out, n->subscription);
			rc |= evbuffer_add(out, ",\"replay\":", 10);
			rc |= util_json_str(out, n->replay);
		}
		if (n->kind != NOTE_IN) {
			rc |= evbuffer_add(out, ",\"action\":", 10);
			rc |= util_json_str(out, n->action);
			rc |= evbuffer_add_printf(out, ",\"rule\":%d",
			                          n->rule) < 0;
		}
		rc |= evbuffer_add(out, "}", 1);
	}
	rc |= evbuffer_add(out, "]", 1);
	return rc == 0 ? 0 : -1;
}

static const char *
get_str(struct json_object *msg, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(msg, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* A reply on channel that echoes the message's clientId and id. */
static struct json_object *
reply_new(const char *channel, struct json_object *msg)
{
	struct json_object *r = json_object_new_object(), *id;
	const char *cid = msg != NULL ? get_str(msg, "clientId") : NULL;

	if (r == NULL)
		return NULL;
	if (cid != NULL)
		json_object_object_add(r, "clientId",
		                       json_object_new_string(cid));
	if (channel != NULL)
		json_object_object_add(r, "channel",
		                       json_object_new_string(channel));
	if (msg != NULL && json_object_object_get_ex(msg, "id", &id))
		json_object_object_add(r, "id", json_object_get(id));
	return r;
}

static struct json_object *
advice_new(const char *reconnect, int with_interval)
{
	struct json_object *a = json_object_new_object();

	json_object_object_add(a, "reconnect",
	                       json_object_new_string(reconnect));
	if (with_interval)
		json_object_object_add(a, "interval", json_object_new_int(0));
	return a;
}

/*
 * Adds a failed reply. reconnect is the advice ("handshake" comes with
 * interval 0, as Salesforce sends it) or NULL for none; the subscription
 * is echoed for /meta/subscribe and /meta/unsubscribe.
 */
static void
reply_error(struct batch *b, const char *channel, struct json_object *msg,
            const char *error, const char *reconnect)
{
	struct json_object *r = reply_new(channel, msg);
	const char *sub = msg != NULL ? get_str(msg, "subscription") : NULL;

	if (r == NULL)
		return;
	if (sub != NULL && channel != NULL &&
	    (strcmp(channel, "/meta/subscribe") == 0 ||
	     strcmp(channel, "/meta/unsubscribe") == 0))
		json_object_object_add(r, "subscription",
		                       json_object_new_string(sub));
	json_object_object_add(r, "error", json_object_new_string(error));
	if (reconnect != NULL)
		json_object_object_add(
		    r, "advice",
		    advice_new(reconnect, strcmp(reconnect, "handshake") == 0));
	json_object_object_add(r, "successful", json_object_new_boolean(0));
	log_warn("bayeux error", "channel", channel != NULL ? channel : "",
	         "error", error, NULL);
	batch_json(b, r);
}

static struct client *
client_find(struct cometd *cd, const char *id)
{
	struct client *c;

	for (c = cd->clients; c != NULL; c = c->next)
		if (strcmp(c->id, id) == 0)
			return c;
	return NULL;
}

/* 1 when one of the request's Cookie headers has name=value. */
static int
cookie_has(struct evhttp_request *req, const char *name, const char *value)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	struct evkeyval *kv;
	size_t nlen = strlen(name), vlen = strlen(value);

	for (kv = h->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
		const char *p = kv->value;

		if (strcasecmp(kv->key, "Cookie") != 0)
			continue;
		while (*p != '\0') {
			size_t n;

			while (*p == ' ' || *p == ';')
				p++;
			n = strcspn(p, ";");
			if (n == nlen + 1 + vlen &&
			    strncmp(p, name, nlen) == 0 && p[nlen] == '=' &&
			    strncmp(p + nlen + 1, value, vlen) == 0)
				return 1;
			p += n;
		}
	}
	return 0;
}

/* The client a message belongs to: its clientId must be known and the
 * request must carry the BAYEUX_BROWSER cookie set at its handshake. */
static struct client *
client_for(struct cometd *cd, struct evhttp_request *req,
           struct json_object *msg)
{
	const char *id = get_str(msg, "clientId");
	struct client *c = id != NULL ? client_find(cd, id) : NULL;

	if (c == NULL || !cookie_has(req, "BAYEUX_BROWSER", c->cookie))
		return NULL;
	return c;
}

static void
held_clear(struct client *c)
{
	if (c->held != NULL) {
		struct evhttp_connection *evcon =
		    evhttp_request_get_connection(c->held);

		if (evcon != NULL)
			evhttp_connection_set_closecb(evcon, NULL, NULL);
	}
	c->held = NULL;
	evtimer_del(c->held_timer);
	if (c->held_watch != NULL)
		event_free(c->held_watch);
	c->held_watch = NULL;
	if (c->held_prefix != NULL)
		evbuffer_free(c->held_prefix);
	c->held_prefix = NULL;
	c->held_items = 0;
	free(c->held_msgid);
	c->held_msgid = NULL;
	memset(&c->held_hit, 0, sizeof(c->held_hit));
}

static void
client_free(struct client *c)
{
	size_t i;

	if (c == NULL)
		return;
	held_clear(c);
	if (c->held_timer != NULL)
		event_free(c->held_timer);
	for (i = 0; i < c->nsubs; i++)
		free(c->subs[i].subscription);
	free(c->subs);
	free(c);
}

/* Unlinks and frees c; its held connect must have been answered. */
static void
client_forget(struct cometd *cd, struct client *c)
{
	struct client **pp;

	for (pp = &cd->clients; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	org_stats(cd->org)->clients--;
	log_debug("client forgotten", "client", c->id, NULL);
	client_free(c);
}

static void
held_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	(void)fd;
	(void)what;
	answer_held(c->cd, c, ANSWER_EVENTS);
}

static struct client *
client_new(struct cometd *cd)
{
	struct util_rng *rng = org_rng(cd->org);
	struct client *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->cd = cd;
	c->held_timer = evtimer_new(cd->base, held_timeout_cb, c);
	if (c->held_timer == NULL) {
		free(c);
		return NULL;
	}
	do {
		util_rng_text(rng, c->id, 27, COMETD_ID_ALPHA);
	} while (client_find(cd, c->id) != NULL);
	util_rng_text(rng, c->cookie, 26, COMETD_COOKIE_ALPHA);
	c->last_ms = util_mono_ms();
	c->next = cd->clients;
	cd->clients = c;
	org_stats(cd->org)->clients++;
	return c;
}

static struct sub *
sub_find(struct client *c, const struct org_channel *ch)
{
	size_t i;

	for (i = 0; i < c->nsubs; i++)
		if (c->subs[i].ch == ch)
			return &c->subs[i];
	return NULL;
}

/* Moves cursors that fell behind the retention ring up to its start:
 * those events are gone, as they would be on Salesforce. */
static void
skip_lost(struct client *c)
{
	size_t i;

	for (i = 0; i < c->nsubs; i++) {
		int64_t first = org_channel_oldest(c->subs[i].ch);

		if (c->subs[i].cursor < first - 1)
			c->subs[i].cursor = first - 1;
	}
}

static int
has_pending(struct client *c)
{
	size_t i;

	skip_lost(c);
	for (i = 0; i < c->nsubs; i++)
		if (c->subs[i].cursor < org_channel_latest(c->subs[i].ch))
			return 1;
	return 0;
}

/*
 * Adds an event's text to b, damaged as a fault asks: event_no_data
 * sends only the channel; replay_id_string turns every "replayId":N
 * into a string that is not a number.
 */
static int
add_event(struct batch *b, const struct org_channel *ch, const char *text,
          size_t len, enum fault_action damage)
{
	static const char key[] = "\"replayId\":";
	struct evbuffer *out;
	const char *p, *end = text + len;
	int rc;

	if (damage == FAULT_EVENT_NO_DATA) {
		out = evbuffer_new();
		if (out == NULL)
			return -1;
		rc = evbuffer_add(out, "{\"channel\":", 11);
		rc |= util_json_str(out, org_channel_name(ch));
		rc |= evbuffer_add(out, "}", 1);
		if (rc == 0)
			rc =
			    batch_add(b, (const char *)evbuffer_pullup(out, -1),
			              evbuffer_get_length(out));
		evbuffer_free(out);
		return rc;
	}
	if (damage != FAULT_REPLAY_ID_STRING)
		return batch_add(b, text, len);
	out = evbuffer_new();
	if (out == NULL)
		return -1;
	rc = 0;
	for (p = text; p < end && rc == 0;) {
		const char *k = NULL, *q;

		for (q = p; (size_t)(end - q) >= sizeof(key) - 1; q++) {
			if (memcmp(q, key, sizeof(key) - 1) == 0) {
				k = q;
				break;
			}
		}
		if (k == NULL) {
			rc = evbuffer_add(out, p, (size_t)(end - p));
			break;
		}
		k += sizeof(key) - 1;
		rc = evbuffer_add(out, p, (size_t)(k - p));
		for (q = k; q < end && *q >= '0' && *q <= '9'; q++)
			;
		rc |= evbuffer_add_printf(out, "\"sfmock-%.*s\"", (int)(q - k),
		                          k) < 0;
		p = q;
	}
	if (rc == 0)
		rc = batch_add(b, (const char *)evbuffer_pullup(out, -1),
		               evbuffer_get_length(out));
	evbuffer_free(out);
	return rc;
}

/* Adds up to max_batch pending events to b, oldest first across the
 * client's channels, and advances the cursors; damage: see add_event.
 * Returns how many. */
static size_t
collect_events(struct cometd *cd, struct client *c, struct batch *b,
               enum fault_action damage)
{
	size_t max = org_config(cd->org)->max_batch, n = 0, i;

	skip_lost(c);
	while (n < max) {
		struct sub *best = NULL;
		const char *best_text = NULL;
		size_t best_len = 0;
		uint64_t best_seq = 0;

		for (i = 0; i < c->nsubs; i++) {
			struct sub *s = &c->subs[i];
			const char *t;
			size_t len;
			uint64_t seq;

			if (s->cursor >= org_channel_latest(s->ch))
				continue;
			t = org_channel_event(s->ch, s->cursor + 1, &len, &seq);
			if (t != NULL && (best == NULL || seq < best_seq)) {
				best = s;
				best_text = t;
				best_len = len;
				best_seq = seq;
			}
		}
		if (best == NULL)
			break;
		if (add_event(b, best->ch, best_text, best_len, damage) != 0)
			break;
		best->cursor++;
		n++;
	}
	return n;
}

/* Appends the advice of a successful connect reply: the one a fault
 * asks for, else the first connect's, else none. */
static void
connect_advice(struct cometd *cd, struct client *c, struct evbuffer *reply,
               int first, const struct fault_hit *hit)
{
	long long timeout = (long long)org_config(cd->org)->connect_timeout_ms;
	enum fault_action a = hit != NULL && (hit->match & FAULT_M_CONNECT)
	                          ? hit->action
	                          : FAULT_NONE;

	switch (a) {
	case FAULT_ADVICE_RETRY:
		evbuffer_add_printf(
		    reply,
		    ",\"advice\":{\"timeout\":%lld,"
		    "\"interval\":%lld,\"reconnect\":\"retry\"}",
		    timeout, (long long)hit->interval_ms);
		break;
	case FAULT_ADVICE_HANDSHAKE:
		evbuffer_add_printf(reply, ",\"advice\":{\"interval\":0,"
		                           "\"reconnect\":\"handshake\"}");
		break;
	case FAULT_ADVICE_NONE:
		evbuffer_add_printf(reply, ",\"advice\":{\"interval\":0,"
		                           "\"reconnect\":\"none\"}");
		break;
	default:
		if (first)
			evbuffer_add_printf(reply,
			                    ",\"advice\":{\"timeout\":%lld,"
			                    "\"interval\":0,"
			                    "\"reconnect\":\"retry\"}",
			                    timeout);
		return;
	}
	note_reply(cd, hit, c->id);
}

/* Adds the connect reply for c, with its pending events, to b. */
static void
connect_answer(struct cometd *cd, struct client *c, struct batch *b,
               const char *msgid, int first, const struct fault_hit *hit)
{
	struct batch events = {.out = evbuffer_new()};
	struct evbuffer *reply = evbuffer_new();
	enum fault_action damage = FAULT_NONE;
	size_t nev;

	if (hit != NULL && (hit->match & FAULT_M_CONNECT) &&
	    (hit->action == FAULT_REPLAY_ID_STRING ||
	     hit->action == FAULT_EVENT_NO_DATA))
		damage = hit->action;
	if (events.out == NULL || reply == NULL)
		goto out;
	evbuffer_add_printf(
	    reply, "{\"clientId\":\"%s\",\"channel\":\"/meta/connect\"", c->id);
	if (msgid != NULL)
		evbuffer_add_printf(reply, ",\"id\":%s", msgid);
	connect_advice(cd, c, reply, first, hit);
	evbuffer_add_printf(reply, ",\"successful\":true}");

	nev = collect_events(cd, c, &events, damage);
	if (nev > 0 && damage != FAULT_NONE)
		note_reply(cd, hit, c->id);
	/* Alternating where the reply sits makes every client cope with
	 * both orders, as it must with Salesforce. */
	if (c->events_last)
		batch_move(b, &events);
	batch_add(b, (const char *)evbuffer_pullup(reply, -1),
	          evbuffer_get_length(reply));
	batch_move(b, &events);
	if (nev > 0)
		c->events_last = !c->events_last;
	c->connected = 1;
	c->last_ms = util_mono_ms();
out:
	if (events.out != NULL)
		evbuffer_free(events.out);
	if (reply != NULL)
		evbuffer_free(reply);
}

/* The channel of the hostile messages that sfmock makes up. */
#define HOSTILE_CHANNEL "/topic/SfmockHostile"

/*
 * Sends the replies in b inside a streamed hostile body (see
 * docs/sfmock.md): one huge message first, a sea of whitespace first,
 * a message nested depth levels deep first, or "[" and then one space
 * every ms forever (the replies themselves are lost).
 */
static void
send_hostile(struct cometd *cd, struct evhttp_request *req, int code,
             struct batch *b, const struct fault_hit *hit)
{
	static const char huge_head[] =
	    "[{\"channel\":\"" HOSTILE_CHANNEL "\",\"data\":{\"event\":"
	    "{\"replayId\":1},\"pad\":\"";
	static const char deep_head[] =
	    "[{\"channel\":\"" HOSTILE_CHANNEL "\",\"data\":";
	struct hostile_body *body = hostile_body_new();
	uint64_t n = (uint64_t)(hit->action == FAULT_DEEP_NESTING ? hit->depth
	                                                          : hit->bytes);
	int64_t interval = 0;
	int rc = body == NULL ? -1 : 0;
	char count[32];

	switch (hit->action) {
	case FAULT_HUGE_BODY:
		rc |= hostile_body_text(body, huge_head, sizeof(huge_head) - 1);
		rc |= hostile_body_fill(body, 'x', n);
		rc |= hostile_body_text(body, "\"}}", 3);
		break;
	case FAULT_HUGE_PADDING:
		rc |= hostile_body_text(body, "[", 1);
		rc |= hostile_body_fill(body, ' ', n);
		break;
	case FAULT_DEEP_NESTING:
		rc |= hostile_body_text(body, deep_head, sizeof(deep_head) - 1);
		rc |= hostile_body_fill(body, '[', n);
		rc |= hostile_body_fill(body, ']', n);
		rc |= hostile_body_text(body, "}", 1);
		break;
	default: /* FAULT_TRICKLE */
		rc |= hostile_body_text(body, "[", 1);
		interval = hit->ms;
		break;
	}
	if (hit->action != FAULT_TRICKLE && rc == 0) {
		if (hit->action != FAULT_HUGE_PADDING && b->n > 0)
			rc |= hostile_body_text(body, ",", 1);
		rc |= hostile_body_buffer(body, b->out);
		rc |= hostile_body_text(body, "]", 1);
	}
	if (rc != 0) {
		hostile_body_free(body);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	snprintf(count, sizeof(count), "%llu", (unsigned long long)n);
	log_info("hostile reply", "action", fault_action_name(hit->action),
	         hit->action == FAULT_DEEP_NESTING ? "depth" : "bytes",
	         hit->action == FAULT_TRICKLE ? "forever" : count, NULL);
	hostile_send(cd->hostile, req, code, UTIL_JSON_UTF8, body, interval);
}

/* Pads the reply's headers with X-Sfmock-Pad-N lines of 8000 bytes
 * until they hold about bytes. */
static void
add_huge_headers(struct evhttp_request *req, int64_t bytes)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char name[32], *value = malloc(8001);
	int64_t done = 0;
	unsigned i;

	if (value == NULL)
		return;
	memset(value, 'h', 8000);
	value[8000] = '\0';
	for (i = 0; done < bytes; i++) {
		int64_t left = bytes - done;
		size_t n = left < 8000 ? (size_t)left : 8000;

		snprintf(name, sizeof(name), "X-Sfmock-Pad-%u", i);
		value[n] = '\0';
		if (evhttp_add_header(h, name, value) != 0)
			break;
		value[n] = 'h';
		done += (int64_t)(n + strlen(name) + 4);
	}
	free(value);
}

/*
 * Sends the replies in b as one JSON array, unless the fault verdict hit
 * says to lose them (the connection is closed instead) or to damage
 * them: malformed turns the first quote into an apostrophe, so the body
 * is not JSON from its third byte; truncated sends the first half; the
 * hostile actions are send_hostile's, plus huge headers.
 */
static void
send_batch(struct cometd *cd, struct evhttp_request *req, int code,
           struct batch *b, const struct fault_hit *hit, const char *client)
{
	enum fault_action a = hit != NULL ? hit->action : FAULT_NONE;
	struct evbuffer *body;
	unsigned char *p;
	size_t n, i;

	if (a == FAULT_DROP_AFTER && cd->faults != NULL) {
		note_reply(cd, hit, client);
		fault_drop_later(cd->faults, req);
		return;
	}
	if (a == FAULT_HUGE_BODY || a == FAULT_HUGE_PADDING ||
	    a == FAULT_DEEP_NESTING || a == FAULT_TRICKLE) {
		note_reply(cd, hit, client);
		send_hostile(cd, req, code, b, hit);
		return;
	}
	if (a == FAULT_HUGE_HEADERS) {
		note_reply(cd, hit, client);
		add_huge_headers(req, hit->bytes);
	}
	body = evbuffer_new();
	if (body == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add(body, "[", 1);
	evbuffer_add_buffer(body, b->out);
	evbuffer_add(body, "]", 1);
	if (a == FAULT_MALFORMED || a == FAULT_TRUNCATED) {
		n = evbuffer_get_length(body);
		p = evbuffer_pullup(body, -1);
		if (a == FAULT_MALFORMED) {
			for (i = 0; i < n && p[i] != '"'; i++)
				;
			if (i < n)
				p[i] = '\'';
		} else {
			struct evbuffer *half = evbuffer_new();

			if (half != NULL && evbuffer_add(half, p, n / 2) == 0) {
				evbuffer_free(body);
				body = half;
			} else if (half != NULL) {
				evbuffer_free(half);
			}
		}
		note_reply(cd, hit, client);
	}
	util_reply(req, code, UTIL_JSON_UTF8, body, NULL);
	evbuffer_free(body);
}

static void
answer_held(struct cometd *cd, struct client *c, enum answer how)
{
	struct evhttp_request *req = c->held;
	struct evhttp_connection *evcon;
	struct batch b = {.out = c->held_prefix, .n = c->held_items};
	struct json_object *r;

	if (req == NULL)
		return;
	switch (how) {
	case ANSWER_EVENTS:
		connect_answer(cd, c, &b, c->held_msgid, 0, &c->held_hit);
		break;
	case ANSWER_EMPTY:
		/* No events: they stay pending for the next connect. */
		evbuffer_add_printf(b.out,
		                    "%s{\"clientId\":\"%s\",\"channel\":"
		                    "\"/meta/connect\"%s%s",
		                    b.n > 0 ? "," : "", c->id,
		                    c->held_msgid != NULL ? ",\"id\":" : "",
		                    c->held_msgid != NULL ? c->held_msgid : "");
		connect_advice(cd, c, b.out, 0, &c->held_hit);
		evbuffer_add_printf(b.out, ",\"successful\":true}");
		c->last_ms = util_mono_ms();
		break;
	case ANSWER_REVOKED:
	case ANSWER_DROPPED:
		r = json_object_new_object();
		json_object_object_add(r, "clientId",
		                       json_object_new_string(c->id));
		json_object_object_add(r, "channel",
		                       json_object_new_string("/meta/connect"));
		if (c->held_msgid != NULL)
			json_object_object_add(
			    r, "id", json_tokener_parse(c->held_msgid));
		json_object_object_add(
		    r, "error",
		    json_object_new_string(
		        how == ANSWER_REVOKED ? ERR_AUTH : ERR_UNKNOWN_CLIENT));
		json_object_object_add(r, "advice",
		                       how == ANSWER_REVOKED
		                           ? advice_new("none", 0)
		                           : advice_new("handshake", 1));
		json_object_object_add(r, "successful",
		                       json_object_new_boolean(0));
		batch_json(&b, r);
		break;
	}
	/* Detached first: a fault may give the connection its own close
	 * callback, which held_clear must not reset. */
	evcon = evhttp_request_get_connection(req);
	if (evcon != NULL)
		evhttp_connection_set_closecb(evcon, NULL, NULL);
	c->held = NULL;
	send_batch(cd, req, 200, &b, &c->held_hit, c->id);
	/* The prefix buffer was lent to the batch; held_clear frees it. */
	held_clear(c);
}

static void
held_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct client *c = arg;
	struct evhttp_request *req = c->held;

	(void)evcon;
	/* evhttp detaches a request it has not answered from a connection
	 * that fails, and leaves it to us; if it is still attached, evhttp
	 * frees it with the connection. */
	if (req != NULL && evhttp_request_get_connection(req) == NULL) {
		c->held = NULL;
		evhttp_request_free(req);
	}
	c->held = NULL;
	held_clear(c);
	c->last_ms = util_mono_ms();
	log_debug("held connect dropped: connection closed", "client", c->id,
	          NULL);
}

/*
 * evhttp (2.1) stops reading a connection once a request is in, so it
 * would notice a client that gave up on a held connect only when the
 * answer fails to write. Peeking at the socket finds the EOF at once;
 * freeing the connection then runs held_closed_cb.
 */
static void
held_watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	struct evhttp_connection *evcon;
	char byte;
	ssize_t n;

	(void)what;
	n = recv(fd, &byte, 1, MSG_PEEK);
	if (n < 0 &&
	    (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n > 0) {
		/* Pipelined bytes: not a close. Stop watching rather than
		 * spin on a readable socket. */
		event_del(c->held_watch);
		return;
	}
	evcon = c->held != NULL ? evhttp_request_get_connection(c->held) : NULL;
	if (evcon != NULL)
		evhttp_connection_free(evcon);
}

static void
held_watch_start(struct cometd *cd, struct client *c)
{
	struct evhttp_connection *evcon =
	    evhttp_request_get_connection(c->held);
	struct bufferevent *bev =
	    evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
	evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;

	if (evcon == NULL)
		return;
	evhttp_connection_set_closecb(evcon, held_closed_cb, c);
	if (fd < 0)
		return;
	c->held_watch =
	    event_new(cd->base, fd, EV_READ | EV_PERSIST, held_watch_cb, c);
	if (c->held_watch != NULL)
		event_add(c->held_watch, NULL);
}

static void
do_handshake(struct cometd *cd, struct evhttp_request *req,
             struct json_object *msg, struct batch *b)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct json_object *r, *ext, *types;
	struct client *c;
	char cookie[128], stream[64];

	c = client_new(cd);
	if (c == NULL) {
		reply_error(b, "/meta/handshake", msg, "500::Out of memory",
		            NULL);
		return;
	}
	snprintf(cookie, sizeof(cookie), "BAYEUX_BROWSER=%s; Path=/; HttpOnly",
	         c->cookie);
	evhttp_add_header(out, "Set-Cookie", cookie);
	util_rng_text(org_rng(cd->org), stream, 40, COMETD_COOKIE_ALPHA);
	snprintf(cookie, sizeof(cookie), "sfdc-stream=!%s; Path=/", stream);
	evhttp_add_header(out, "Set-Cookie", cookie);

	r = json_object_new_object();
	ext = json_object_new_object();
	json_object_object_add(ext, "replay", json_object_new_boolean(1));
	json_object_object_add(ext, "payload.format",
	                       json_object_new_boolean(1));
	json_object_object_add(r, "ext", ext);
	json_object_object_add(r, "minimumVersion",
	                       json_object_new_string("1.0"));
	json_object_object_add(r, "clientId", json_object_new_string(c->id));
	types = json_object_new_array();
	json_object_array_add(types, json_object_new_string("long-polling"));
	json_object_object_add(r, "supportedConnectionTypes", types);
	json_object_object_add(r, "channel",
	                       json_object_new_string("/meta/handshake"));
	if (json_object_object_get_ex(msg, "id", &ext))
		json_object_object_add(r, "id", json_object_get(ext));
	json_object_object_add(r, "version", json_object_new_string("1.0"));
	json_object_object_add(r, "successful", json_object_new_boolean(1));
	batch_json(b, r);
	log_debug("handshake", "client", c->id, NULL);
}

/* The handshake refusal, with reason as ext.sfdc.failureReason. */
static void
handshake_denied(struct batch *b, struct json_object *msg, const char *reason)
{
	struct json_object *r = json_object_new_object(), *ext, *sfdc, *id;

	ext = json_object_new_object();
	sfdc = json_object_new_object();
	json_object_object_add(sfdc, "failureReason",
	                       json_object_new_string(reason));
	json_object_object_add(ext, "sfdc", sfdc);
	json_object_object_add(ext, "replay", json_object_new_boolean(1));
	json_object_object_add(r, "ext", ext);
	json_object_object_add(r, "advice", advice_new("none", 0));
	json_object_object_add(r, "channel",
	                       json_object_new_string("/meta/handshake"));
	if (json_object_object_get_ex(msg, "id", &id))
		json_object_object_add(r, "id", json_object_get(id));
	json_object_object_add(r, "error", json_object_new_string(ERR_DENIED));
	json_object_object_add(r, "successful", json_object_new_boolean(0));
	log_warn("bayeux error", "channel", "/meta/handshake", "error",
	         ERR_DENIED, "reason", reason, NULL);
	batch_json(b, r);
}

/*
 * The replay position a subscribe asks for: ext.replay[<channel>] as a
 * number or a string of digits; -1 when absent. Returns 0, or -1 with
 * the offending value's text in bad.
 */
static int
replay_from(struct json_object *msg, const char *name, size_t len,
            int64_t *from, char *bad, size_t badlen)
{
	struct json_object *ext, *replay, *v = NULL;
	char key[256];

	*from = -1;
	if (!json_object_object_get_ex(msg, "ext", &ext) ||
	    !json_object_object_get_ex(ext, "replay", &replay) ||
	    !json_object_is_type(replay, json_type_object))
		return 0;
	snprintf(key, sizeof(key), "%.*s", (int)len, name);
	if (!json_object_object_get_ex(replay, key, &v))
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		*from = json_object_get_int64(v);
		return 0;
	}
	if (json_object_is_type(v, json_type_string) &&
	    util_parse_i64(json_object_get_string(v), INT64_MIN, INT64_MAX,
	                   from) == 0)
		return 0;
	snprintf(bad, badlen, "%s",
	         json_object_is_type(v, json_type_string)
	             ? json_object_get_string(v)
	             : json_object_to_json_string_ext(v, COMETD_JSON_FLAGS));
	return -1;
}

static void
do_subscribe(struct cometd *cd, struct evhttp_request *req,
             struct json_object *msg, struct batch *b)
{
	struct client *c = client_for(cd, req, msg);
	const char *subscription = get_str(msg, "subscription");
	struct org_channel *ch;
	struct sub *s;
	struct json_object *r;
	char bad[128], err[512];
	int64_t from, cursor, latest, oldest;
	size_t len;

	org_stats(cd->org)->subscribes++;
	if (c == NULL) {
		reply_error(b, "/meta/subscribe", msg, ERR_UNKNOWN_CLIENT,
		            "handshake");
		return;
	}
	if (subscription == NULL || *subscription == '\0') {
		reply_error(b, "/meta/subscribe", msg,
		            "400::Channel name not specified", NULL);
		return;
	}
	if (*subscription != '/') {
		reply_error(b, "/meta/subscribe", msg,
		            "400::Channel subscriptions must start with a "
		            "leading '/'",
		            NULL);
		return;
	}
	len = strcspn(subscription, "?");
	ch = org_channel_find(cd->org, subscription, len);
	if (ch == NULL) {
		snprintf(err, sizeof(err),
		         "400::The channel you requested to subscribe to does "
		         "not exist {%.*s}",
		         (int)(len > 300 ? 300 : len), subscription);
		reply_error(b, "/meta/subscribe", msg, err, NULL);
		return;
	}
	latest = org_channel_latest(ch);
	oldest = org_channel_oldest(ch);
	if (replay_from(msg, subscription, len, &from, bad, sizeof(bad)) == 0) {
		if (from == -1)
			cursor = latest;
		else if (from == -2)
			cursor = oldest - 1;
		else if (from >= 0 && from >= oldest - 1 && from <= latest)
			cursor = from;
		else
			cursor = -1;
		if (cursor < 0)
			snprintf(bad, sizeof(bad), "%lld", (long long)from);
	} else {
		cursor = -1;
	}
	if (cursor < 0) {
		snprintf(err, sizeof(err),
		         "400::The replayId {%s} you provided was invalid.  "
		         "Please provide a valid ID, -2 to replay all events, "
		         "or -1 to replay only new events.",
		         bad);
		reply_error(b, "/meta/subscribe", msg, err, NULL);
		return;
	}

	s = sub_find(c, ch);
	if (s == NULL) {
		if (c->nsubs == c->subs_cap) {
			size_t cap = c->subs_cap ? c->subs_cap * 2 : 4;
			struct sub *p = realloc(c->subs, cap * sizeof(*p));

			if (p == NULL) {
				reply_error(b, "/meta/subscribe", msg,
				            "500::Out of memory", NULL);
				return;
			}
			c->subs = p;
			c->subs_cap = cap;
		}
		s = &c->subs[c->nsubs];
		s->ch = ch;
		s->subscription = NULL;
		c->nsubs++;
	}
	free(s->subscription);
	s->subscription = strdup(subscription);
	s->cursor = cursor;

	r = reply_new("/meta/subscribe", msg);
	json_object_object_add(r, "subscription",
	                       json_object_new_string(subscription));
	json_object_object_add(r, "successful", json_object_new_boolean(1));
	batch_json(b, r);
	log_debug("subscribed", "client", c->id, "channel",
	          org_channel_name(ch), NULL);
}

static void
do_unsubscribe(struct cometd *cd, struct evhttp_request *req,
               struct json_object *msg, struct batch *b)
{
	struct client *c = client_for(cd, req, msg);
	const char *subscription = get_str(msg, "subscription");
	struct json_object *r;
	size_t i;

	if (c == NULL) {
		reply_error(b, "/meta/unsubscribe", msg, ERR_UNKNOWN_CLIENT,
		            "handshake");
		return;
	}
	if (subscription == NULL) {
		reply_error(b, "/meta/unsubscribe", msg,
		            "400::Channel name not specified", NULL);
		return;
	}
	for (i = 0; i < c->nsubs; i++) {
		const char *name = org_channel_name(c->subs[i].ch);

		if (strncmp(name, subscription, strcspn(subscription, "?")) ==
		        0 &&
		    name[strcspn(subscription, "?")] == '\0') {
			free(c->subs[i].subscription);
			c->subs[i] = c->subs[--c->nsubs];
			break;
		}
	}
	r = reply_new("/meta/unsubscribe", msg);
	json_object_object_add(r, "subscription",
	                       json_object_new_string(subscription));
	json_object_object_add(r, "successful", json_object_new_boolean(1));
	batch_json(b, r);
}

static char *
msgid_text(struct json_object *msg)
{
	struct json_object *id;

	if (!json_object_object_get_ex(msg, "id", &id))
		return NULL;
	return strdup(json_object_to_json_string_ext(id, COMETD_JSON_FLAGS));
}

static void
do_connect(struct cometd *cd, struct evhttp_request *req,
           struct json_object *msg, struct batch *b)
{
	struct client *c = client_for(cd, req, msg);
	const char *type = get_str(msg, "connectionType");
	char *msgid;

	org_stats(cd->org)->connects++;
	if (c == NULL) {
		reply_error(b, "/meta/connect", msg, ERR_UNKNOWN_CLIENT,
		            "handshake");
		return;
	}
	if (type != NULL && strcmp(type, "long-polling") != 0) {
		char err[256];

		snprintf(err, sizeof(err),
		         "400::Invalid connection type {%.100s}", type);
		reply_error(b, "/meta/connect", msg, err, NULL);
		return;
	}
	/* A newer connect supersedes the held one, which is answered first
	 * (empty) so the client never has two outstanding. */
	if (c->held != NULL)
		answer_held(cd, c, ANSWER_EMPTY);

	msgid = msgid_text(msg);
	if (!c->connected || b->hold || has_pending(c)) {
		connect_answer(cd, c, b, msgid, !c->connected, b->hit);
		free(msgid);
		return;
	}
	b->hold = 1;
	snprintf(b->hold_client, sizeof(b->hold_client), "%s", c->id);
	b->hold_msgid = msgid;
}

static void
do_disconnect(struct cometd *cd, struct evhttp_request *req,
              struct json_object *msg, struct batch *b)
{
	struct client *c = client_for(cd, req, msg);
	struct json_object *r;

	if (c == NULL) {
		reply_error(b, "/meta/disconnect", msg, ERR_UNKNOWN_CLIENT,
		            "handshake");
		return;
	}
	answer_held(cd, c, ANSWER_EMPTY);
	r = reply_new("/meta/disconnect", msg);
	json_object_object_add(r, "successful", json_object_new_boolean(1));
	batch_json(b, r);
	log_debug("disconnect", "client", c->id, NULL);
	client_forget(cd, c);
}

/* Notes a received message in the traffic log; for a subscribe, with
 * the replay id it asks for ("" when none). */
static void
note_in(struct cometd *cd, struct json_object *msg, const char *channel)
{
	struct note *n = note_new(cd, NOTE_IN, channel);
	const char *cid = get_str(msg, "clientId");
	const char *sub = get_str(msg, "subscription");
	struct json_object *ext, *replay, *v;
	char key[256];

	if (n == NULL)
		return;
	snprintf(n->client, sizeof(n->client), "%s", cid != NULL ? cid : "");
	if (sub == NULL || strcmp(channel, "/meta/subscribe") != 0)
		return;
	snprintf(n->subscription, sizeof(n->subscription), "%s", sub);
	snprintf(key, sizeof(key), "%.*s", (int)strcspn(sub, "?"), sub);
	if (!json_object_object_get_ex(msg, "ext", &ext) ||
	    !json_object_object_get_ex(ext, "replay", &replay) ||
	    !json_object_object_get_ex(replay, key, &v))
		return;
	if (json_object_is_type(v, json_type_string))
		snprintf(n->replay, sizeof(n->replay), "%s",
		         json_object_get_string(v));
	else
		snprintf(n->replay, sizeof(n->replay), "%s",
		         json_object_to_json_string_ext(v, COMETD_JSON_FLAGS));
}

static unsigned
meta_bit(const char *channel)
{
	if (strcmp(channel, "/meta/handshake") == 0)
		return FAULT_M_HANDSHAKE;
	if (strcmp(channel, "/meta/subscribe") == 0)
		return FAULT_M_SUBSCRIBE;
	if (strcmp(channel, "/meta/unsubscribe") == 0)
		return FAULT_M_UNSUBSCRIBE;
	if (strcmp(channel, "/meta/connect") == 0)
		return FAULT_M_CONNECT;
	if (strcmp(channel, "/meta/disconnect") == 0)
		return FAULT_M_DISCONNECT;
	return FAULT_M_OTHER;
}

/* Answers msg with the error the fault verdict asks for, in place of
 * processing it. Returns 1 when it did, 0 when the verdict does not
 * concern this message. */
static int
fault_message(struct cometd *cd, struct evhttp_request *req,
              struct json_object *msg, const char *channel, struct batch *b)
{
	int handshake = strcmp(channel, "/meta/handshake") == 0;
	struct client *c;

	if (b->hit == NULL || (b->hit->match & meta_bit(channel)) == 0)
		return 0;
	switch (b->hit->action) {
	case FAULT_AUTH_INVALID:
		if (handshake)
			handshake_denied(b, msg, ERR_AUTH);
		else
			reply_error(b, channel, msg, ERR_AUTH, "none");
		break;
	case FAULT_HANDSHAKE_DENIED:
	case FAULT_CONCURRENT_LIMIT:
		if (!handshake)
			return 0;
		handshake_denied(b, msg,
		                 b->hit->action == FAULT_CONCURRENT_LIMIT
		                     ? ERR_CONCURRENT
		                     : ERR_AUTH);
		break;
	case FAULT_UNKNOWN_CLIENT:
		if (handshake)
			return 0;
		/* The server says so when it lost the client: lose it. */
		c = client_for(cd, req, msg);
		if (c != NULL) {
			answer_held(cd, c, ANSWER_DROPPED);
			client_forget(cd, c);
		}
		reply_error(b, channel, msg, ERR_UNKNOWN_CLIENT, "handshake");
		break;
	default:
		return 0;
	}
	if (handshake)
		org_stats(cd->org)->handshakes++;
	else if (strcmp(channel, "/meta/connect") == 0)
		org_stats(cd->org)->connects++;
	else if (strcmp(channel, "/meta/subscribe") == 0)
		org_stats(cd->org)->subscribes++;
	return 1;
}

/* authed: 1 valid token, 0 a token this org never issued (or revoked). */
static void
handle_message(struct cometd *cd, struct evhttp_request *req,
               struct json_object *msg, int authed, struct batch *b)
{
	const char *channel;

	if (!json_object_is_type(msg, json_type_object)) {
		reply_error(b, NULL, NULL, "400::Invalid message", NULL);
		return;
	}
	channel = get_str(msg, "channel");
	if (channel == NULL) {
		reply_error(b, NULL, msg, "400::Channel name not specified",
		            NULL);
		return;
	}
	note_in(cd, msg, channel);
	if (fault_message(cd, req, msg, channel, b))
		return;
	if (strcmp(channel, "/meta/handshake") == 0) {
		org_stats(cd->org)->handshakes++;
		if (authed)
			do_handshake(cd, req, msg, b);
		else
			handshake_denied(b, msg, ERR_AUTH);
		return;
	}
	if (!authed) {
		if (strcmp(channel, "/meta/connect") == 0)
			org_stats(cd->org)->connects++;
		reply_error(b, channel, msg, ERR_AUTH, "none");
		return;
	}
	if (strcmp(channel, "/meta/subscribe") == 0)
		do_subscribe(cd, req, msg, b);
	else if (strcmp(channel, "/meta/connect") == 0)
		do_connect(cd, req, msg, b);
	else if (strcmp(channel, "/meta/unsubscribe") == 0)
		do_unsubscribe(cd, req, msg, b);
	else if (strcmp(channel, "/meta/disconnect") == 0)
		do_disconnect(cd, req, msg, b);
	else if (strncmp(channel, "/meta/", 6) == 0)
		reply_error(b, channel, msg, "400::Unknown meta channel", NULL);
	else
		reply_error(b, channel, msg, "403::Publish denied", NULL);
}

/* Replies to every message with error and the HTTP status code. */
static void
reject_all(struct cometd *cd, struct evhttp_request *req,
           struct json_object *msgs, int code, const char *error,
           const char *reconnect)
{
	struct batch b = {.out = evbuffer_new()};
	size_t i, n;

	if (b.out == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	if (json_object_is_type(msgs, json_type_array)) {
		n = json_object_array_length(msgs);
		for (i = 0; i < n; i++) {
			struct json_object *m =
			    json_object_array_get_idx(msgs, i);
			int obj = json_object_is_type(m, json_type_object);

			reply_error(&b, obj ? get_str(m, "channel") : NULL,
			            obj ? m : NULL, error, reconnect);
		}
	} else {
		reply_error(&b, get_str(msgs, "channel"), msgs, error,
		            reconnect);
	}
	send_batch(cd, req, code, &b, NULL, NULL);
	evbuffer_free(b.out);
}

/* Parses "/cometd/<major>[.<minor>][/...]". Returns the major version,
 * 0 when none is given, -1 when it is not a version. */
static int
path_version(const char *path)
{
	const char *p = path + strlen("/cometd");
	int major = 0, digits = 0;

	if (*p == '\0' || (p[0] == '/' && p[1] == '\0'))
		return 0;
	if (*p++ != '/')
		return -1;
	for (; *p >= '0' && *p <= '9' && major < 10000; p++, digits++)
		major = major * 10 + (*p - '0');
	if (digits == 0)
		return -1;
	if (*p == '.') {
		p++;
		if (!(*p >= '0' && *p <= '9'))
			return -1;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	/* CometD clients may append the message type ("/connect"). */
	return (*p == '\0' || *p == '/') ? major : -1;
}

static struct json_object *
parse_body(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	const char *p;
	struct json_tokener *tok;
	struct json_object *v;

	if (n == 0 || n > INT32_MAX)
		return NULL;
	p = (const char *)evbuffer_pullup(in, -1);
	tok = json_tokener_new();
	if (tok == NULL)
		return NULL;
	v = json_tokener_parse_ex(tok, p, (int)n);
	if (v != NULL) {
		size_t end = json_tokener_get_parse_end(tok);

		while (end < n && (p[end] == ' ' || p[end] == '\n' ||
		                   p[end] == '\r' || p[end] == '\t'))
			end++;
		if (end != n || !(json_object_is_type(v, json_type_array) ||
		                  json_object_is_type(v, json_type_object))) {
			json_object_put(v);
			v = NULL;
		}
	}
	json_tokener_free(tok);
	return v;
}

void
cometd_handle(struct cometd *cd, struct evhttp_request *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	/* In force while this call runs; a held connect keeps a copy. */
	const struct fault_hit *hit = fault_current(cd->faults, req);
	struct batch b = {0};
	struct json_object *msgs;
	struct client *c;
	const char *token;
	int version;
	size_t i;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "Allow", "POST");
		util_reply_text(req, 405,
		                "[{\"successful\":false,\"error\":\"405::"
		                "Method not allowed\"}]",
		                "cometd needs POST");
		return;
	}
	msgs = parse_body(req);
	if (msgs == NULL) {
		util_reply_text(req, 400,
		                "[{\"successful\":false,\"error\":\"400::"
		                "Malformed JSON\"}]",
		                "malformed Bayeux body");
		return;
	}
	version = path != NULL ? path_version(path) : -1;
	if (version == 0) {
		reject_all(cd, req, msgs, 400,
		           "400::API version in the URI is mandatory. URI "
		           "format: '/cometd/61.0'",
		           NULL);
		goto done;
	}
	if (version < COMETD_MIN_MAJOR) {
		reject_all(cd, req, msgs, 400,
		           "400::Unsupported API version. Only API versions "
		           "'37.0' and above are supported. URI format: "
		           "'/cometd/61.0'",
		           NULL);
		goto done;
	}
	token = util_bearer(req);
	if (token == NULL || (hit != NULL && hit->action == FAULT_HTTP_401)) {
		reject_all(cd, req, msgs, 401, ERR_NO_AUTH, "none");
		goto done;
	}
	b.hit = hit;

	b.out = evbuffer_new();
	if (b.out == NULL) {
		evhttp_send_error(req, 500, NULL);
		goto done;
	}
	if (json_object_is_type(msgs, json_type_array)) {
		size_t n = json_object_array_length(msgs);

		for (i = 0; i < n; i++)
			handle_message(cd, req,
			               json_object_array_get_idx(msgs, i),
			               org_token_valid(cd->org, token), &b);
	} else {
		handle_message(cd, req, msgs, org_token_valid(cd->org, token),
		               &b);
	}

	c = b.hold ? client_find(cd, b.hold_client) : NULL;
	if (b.hold && c == NULL) {
		/* Disconnected by a later message of the same request. */
		evbuffer_add_printf(
		    b.out,
		    "%s{\"clientId\":\"%s\",\"channel\":"
		    "\"/meta/connect\"%s%s,\"successful\":true}",
		    b.n++ > 0 ? "," : "", b.hold_client,
		    b.hold_msgid != NULL ? ",\"id\":" : "",
		    b.hold_msgid != NULL ? b.hold_msgid : "");
	} else if (c != NULL && has_pending(c)) {
		/* A later subscribe of the same request replayed events. */
		connect_answer(cd, c, &b, b.hold_msgid, 0, b.hit);
		c = NULL;
	}
	if (c != NULL) {
		struct timeval tv;
		int64_t ms = org_config(cd->org)->connect_timeout_ms;

		c->held = req;
		c->held_prefix = b.out;
		c->held_items = b.n;
		c->held_msgid = b.hold_msgid;
		if (hit != NULL)
			c->held_hit = *hit;
		b.out = NULL;
		b.hold_msgid = NULL;
		tv.tv_sec = (time_t)(ms / 1000);
		tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
		evtimer_add(c->held_timer, &tv);
		held_watch_start(cd, c);
	} else {
		send_batch(cd, req, 200, &b, hit,
		           b.hold ? b.hold_client : NULL);
	}
	if (b.out != NULL)
		evbuffer_free(b.out);
	free(b.hold_msgid);
done:
	json_object_put(msgs);
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cometd *cd = arg;
	struct client *c;

	(void)fd;
	(void)what;
	for (c = cd->clients; c != NULL; c = c->next)
		if (c->held != NULL && has_pending(c))
			answer_held(cd, c, ANSWER_EVENTS);
}

static void
publish_hook(void *arg, struct org_channel *ch)
{
	struct cometd *cd = arg;

	(void)ch;
	/* Deferred: a burst of publishes in one callback goes out as one
	 * response instead of one event per response. */
	event_active(cd->wake, EV_TIMEOUT, 0);
}

static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cometd *cd = arg;
	struct client *c = cd->clients, *next;
	int64_t now = util_mono_ms();
	int64_t expiry = org_config(cd->org)->client_expiry_ms;

	(void)fd;
	(void)what;
	for (; c != NULL; c = next) {
		next = c->next;
		if (c->held == NULL && now - c->last_ms > expiry) {
			log_info("client expired", "client", c->id, NULL);
			client_forget(cd, c);
		}
	}
}

struct cometd *
cometd_new(struct event_base *base, struct org *org)
{
	struct cometd *cd = calloc(1, sizeof(*cd));
	int64_t every;
	struct timeval tv;

	if (cd == NULL)
		return NULL;
	cd->base = base;
	cd->org = org;
	cd->start_ms = util_mono_ms();
	cd->notes = calloc(COMETD_NOTES, sizeof(*cd->notes));
	cd->wake = event_new(base, -1, 0, wake_cb, cd);
	cd->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, cd);
	cd->hostile = hostile_set_new(base);
	if (cd->wake == NULL || cd->sweep == NULL || cd->notes == NULL ||
	    cd->hostile == NULL) {
		cometd_free(cd);
		return NULL;
	}
	/* Sweep often enough that expiry is accurate to about a quarter. */
	every = org_config(org)->client_expiry_ms / 4;
	if (every < 10)
		every = 10;
	if (every > 1000)
		every = 1000;
	tv.tv_sec = (time_t)(every / 1000);
	tv.tv_usec = (suseconds_t)((every % 1000) * 1000);
	event_add(cd->sweep, &tv);
	org_set_publish_hook(org, publish_hook, cd);
	return cd;
}

void
cometd_free(struct cometd *cd)
{
	struct client *c, *next;

	if (cd == NULL)
		return;
	org_set_publish_hook(cd->org, NULL, NULL);
	for (c = cd->clients; c != NULL; c = next) {
		next = c->next;
		client_free(c);
	}
	if (cd->wake != NULL)
		event_free(cd->wake);
	if (cd->sweep != NULL)
		event_free(cd->sweep);
	hostile_set_free(cd->hostile);
	free(cd->notes);
	free(cd);
}

void
cometd_set_faults(struct cometd *cd, struct fault_plan *plan)
{
	cd->faults = plan;
}

struct fault_plan *
cometd_faults(struct cometd *cd)
{
	return cd->faults;
}

void
cometd_send_hostile(struct cometd *cd, struct evhttp_request *req,
                    const struct fault_hit *hit)
{
	struct batch b = {.out = evbuffer_new()};

	if (b.out == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	send_hostile(cd, req, 200, &b, hit);
	evbuffer_free(b.out);
}

unsigned
cometd_drop_clients(struct cometd *cd)
{
	unsigned n = 0;

	while (cd->clients != NULL) {
		answer_held(cd, cd->clients, ANSWER_DROPPED);
		client_forget(cd, cd->clients);
		n++;
	}
	return n;
}

void
cometd_sessions_revoked(struct cometd *cd)
{
	struct client *c;

	for (c = cd->clients; c != NULL; c = c->next)
		answer_held(cd, c, ANSWER_REVOKED);
}
