#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <json-c/json.h>

#include "sfrelay/log.h"

#include "cometd.h"
#include "fault.h"
#include "org.h"
#include "util.h"

#define FAULT_MAX_RULES 1024
#define FAULT_MAX_NUM 1000000000LL
#define FAULT_MAX_MS 600000LL
#define FAULT_SPEC_MAX 1024
#define FAULT_MAX_BYTES (4LL * 1024 * 1024 * 1024)
/* Headers are built in memory (a body is generated as it goes out). */
#define FAULT_MAX_HEADER_BYTES (64LL * 1024 * 1024)
#define FAULT_DEFAULT_BYTES (100LL * 1024 * 1024)
#define FAULT_DEFAULT_HEADER_BYTES (1024LL * 1024)
#define FAULT_DEFAULT_DEPTH 100000
#define FAULT_MAX_DEPTH 100000000LL

/* When an action takes effect (see fault.h). */
enum group {
	GROUP_PRE,    /* instead of processing the request */
	GROUP_DELAY,  /* hold, then go on */
	GROUP_EFFECT, /* side effect, then process */
	GROUP_REPLY,  /* the CometD endpoint carries it out */
};

static const struct action_info {
	const char *name;
	enum fault_action action;
	enum group group;
	unsigned needs; /* match bits it needs; 0: any */
} actions[] = {
    {"drop", FAULT_DROP, GROUP_PRE, 0},
    {"http_500", FAULT_HTTP_500, GROUP_PRE, 0},
    {"http_503", FAULT_HTTP_503, GROUP_PRE, 0},
    {"delay", FAULT_DELAY, GROUP_DELAY, 0},
    {"expire_tokens", FAULT_EXPIRE_TOKENS, GROUP_EFFECT, 0},
    {"forget_clients", FAULT_FORGET_CLIENTS, GROUP_EFFECT, 0},
    {"trim_retention", FAULT_TRIM_RETENTION, GROUP_EFFECT, 0},
    {"http_401", FAULT_HTTP_401, GROUP_REPLY, FAULT_M_COMETD},
    {"auth_invalid", FAULT_AUTH_INVALID, GROUP_REPLY, FAULT_M_COMETD},
    {"handshake_denied", FAULT_HANDSHAKE_DENIED, GROUP_REPLY,
     FAULT_M_HANDSHAKE},
    {"unknown_client", FAULT_UNKNOWN_CLIENT, GROUP_REPLY,
     FAULT_M_COMETD & ~FAULT_M_HANDSHAKE},
    {"concurrent_limit", FAULT_CONCURRENT_LIMIT, GROUP_REPLY,
     FAULT_M_HANDSHAKE},
    {"malformed", FAULT_MALFORMED, GROUP_REPLY, FAULT_M_COMETD},
    {"truncated", FAULT_TRUNCATED, GROUP_REPLY, FAULT_M_COMETD},
    {"drop_after", FAULT_DROP_AFTER, GROUP_REPLY, FAULT_M_COMETD},
    {"advice_retry", FAULT_ADVICE_RETRY, GROUP_REPLY, FAULT_M_CONNECT},
    {"advice_handshake", FAULT_ADVICE_HANDSHAKE, GROUP_REPLY, FAULT_M_CONNECT},
    {"advice_none", FAULT_ADVICE_NONE, GROUP_REPLY, FAULT_M_CONNECT},
    {"hang", FAULT_HANG, GROUP_PRE, 0},
    {"huge_body", FAULT_HUGE_BODY, GROUP_REPLY, FAULT_M_COMETD | FAULT_M_TOKEN},
    {"huge_padding", FAULT_HUGE_PADDING, GROUP_REPLY, FAULT_M_COMETD},
    {"deep_nesting", FAULT_DEEP_NESTING, GROUP_REPLY, FAULT_M_COMETD},
    {"trickle", FAULT_TRICKLE, GROUP_REPLY, FAULT_M_COMETD},
    {"huge_headers", FAULT_HUGE_HEADERS, GROUP_REPLY, FAULT_M_COMETD},
    {"replay_id_string", FAULT_REPLAY_ID_STRING, GROUP_REPLY, FAULT_M_CONNECT},
    {"event_no_data", FAULT_EVENT_NO_DATA, GROUP_REPLY, FAULT_M_CONNECT},
    {"no_instance_url", FAULT_NO_INSTANCE_URL, GROUP_REPLY, FAULT_M_TOKEN},
};

static const struct match_info {
	const char *name;
	unsigned bits;
} matches[] = {
    {"cometd", FAULT_M_COMETD},
    {"/meta/handshake", FAULT_M_HANDSHAKE},
    {"/meta/subscribe", FAULT_M_SUBSCRIBE},
    {"/meta/unsubscribe", FAULT_M_UNSUBSCRIBE},
    {"/meta/connect", FAULT_M_CONNECT},
    {"/meta/disconnect", FAULT_M_DISCONNECT},
    {"token", FAULT_M_TOKEN},
    {"rest", FAULT_M_REST},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

struct rule {
	int id;
	const struct action_info *action;
	const struct match_info *match;
	int64_t nth;
	int64_t count; /* 0: unlimited */
	int count_set;
	int64_t after_ms;
	int64_t for_ms;   /* -1: no end */
	int64_t ms;       /* delay */
	int64_t interval; /* advice_retry */
	int64_t keep;     /* trim_retention */
	int64_t bytes;    /* huge_body, huge_padding, huge_headers */
	int bytes_set;
	int64_t depth; /* deep_nesting */
	char channel[208];
	int64_t added_ms; /* monotonic */
	uint64_t seen;
	uint64_t fired;
};

/* What the rules that fired decided for one request. */
struct verdict {
	int64_t delay_ms;
	enum fault_action pre;
	struct fault_hit hit;
};

/* A request held by a delay or waiting to be dropped. */
struct held {
	struct held *next;
	struct fault_plan *plan;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	struct event *timer;
	int drop; /* close the connection, nothing else */
	struct verdict v;
	fault_route_fn *route;
	void *route_arg;
};

struct fault_plan {
	struct event_base *base;
	struct org *org;
	struct cometd *cd;
	struct rule *rules;
	size_t nrules;
	size_t cap;
	int next_id;
	uint64_t fired;
	struct held *held;
	/* The request being routed with a verdict (or after one). */
	const struct evhttp_request *resuming;
	struct fault_hit current;
	int has_current;
};

const char *
fault_action_name(enum fault_action a)
{
	size_t i;

	for (i = 0; i < NELEM(actions); i++)
		if (actions[i].action == a)
			return actions[i].name;
	return "none";
}

struct fault_plan *
fault_plan_new(struct event_base *base, struct org *org, struct cometd *cd)
{
	struct fault_plan *plan = calloc(1, sizeof(*plan));

	if (plan == NULL)
		return NULL;
	plan->base = base;
	plan->org = org;
	plan->cd = cd;
	plan->next_id = 1;
	return plan;
}

static void
held_free(struct held *h)
{
	struct held **pp;

	for (pp = &h->plan->held; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	}
	if (h->evcon != NULL)
		evhttp_connection_set_closecb(h->evcon, NULL, NULL);
	event_free(h->timer);
	free(h);
}

void
fault_plan_free(struct fault_plan *plan)
{
	if (plan == NULL)
		return;
	while (plan->held != NULL)
		held_free(plan->held);
	free(plan->rules);
	free(plan);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void
rule_defaults(struct rule *r)
{
	memset(r, 0, sizeof(*r));
	r->nth = 1;
	r->count = 1;
	r->for_ms = -1;
	r->ms = 1000;
	r->interval = 1000;
	r->depth = FAULT_DEFAULT_DEPTH;
	r->match = &matches[0];
}

static int
num_field(const char *key, const char *val, int64_t min, int64_t max,
          int64_t *out, char *err, size_t errlen)
{
	if (util_parse_i64(val, min, max, out) != 0) {
		set_err(err, errlen, "%s: want a whole number in %lld..%lld",
		        key, (long long)min, (long long)max);
		return -1;
	}
	return 0;
}

/* Sets one field of r from its text value. Returns 0 or -1 + err. */
static int
rule_set(struct rule *r, const char *key, const char *val, char *err,
         size_t errlen)
{
	size_t i;

	if (strcmp(key, "action") == 0) {
		for (i = 0; i < NELEM(actions); i++) {
			if (strcmp(val, actions[i].name) == 0) {
				r->action = &actions[i];
				return 0;
			}
		}
		set_err(err, errlen, "action: unknown action '%.64s'", val);
		return -1;
	}
	if (strcmp(key, "match") == 0) {
		for (i = 0; i < NELEM(matches); i++) {
			if (strcmp(val, matches[i].name) == 0) {
				r->match = &matches[i];
				return 0;
			}
		}
		set_err(err, errlen,
		        "match: want cometd, /meta/handshake, "
		        "/meta/subscribe, /meta/unsubscribe, /meta/connect, "
		        "/meta/disconnect, token or rest, not '%.64s'",
		        val);
		return -1;
	}
	if (strcmp(key, "nth") == 0)
		return num_field(key, val, 1, FAULT_MAX_NUM, &r->nth, err,
		                 errlen);
	if (strcmp(key, "count") == 0) {
		r->count_set = 1;
		return num_field(key, val, 0, FAULT_MAX_NUM, &r->count, err,
		                 errlen);
	}
	if (strcmp(key, "after_ms") == 0)
		return num_field(key, val, 0, FAULT_MAX_NUM, &r->after_ms, err,
		                 errlen);
	if (strcmp(key, "for_ms") == 0)
		return num_field(key, val, 1, FAULT_MAX_NUM, &r->for_ms, err,
		                 errlen);
	if (strcmp(key, "ms") == 0)
		return num_field(key, val, 0, FAULT_MAX_MS, &r->ms, err,
		                 errlen);
	if (strcmp(key, "interval") == 0)
		return num_field(key, val, 0, FAULT_MAX_MS, &r->interval, err,
		                 errlen);
	if (strcmp(key, "keep") == 0)
		return num_field(key, val, 0, FAULT_MAX_NUM, &r->keep, err,
		                 errlen);
	if (strcmp(key, "bytes") == 0) {
		r->bytes_set = 1;
		return num_field(key, val, 1, FAULT_MAX_BYTES, &r->bytes, err,
		                 errlen);
	}
	if (strcmp(key, "depth") == 0)
		return num_field(key, val, 1, FAULT_MAX_DEPTH, &r->depth, err,
		                 errlen);
	if (strcmp(key, "channel") == 0) {
		enum org_kind kind;

		if (org_kind_of(val, &kind) != 0) {
			set_err(err, errlen,
			        "channel: want /topic/X, /event/X, /data/X or "
			        "/u/X");
			return -1;
		}
		snprintf(r->channel, sizeof(r->channel), "%s", val);
		return 0;
	}
	set_err(err, errlen, "unknown field '%.64s'", key);
	return -1;
}

/* Checks that the fields make sense together. Returns 0 or -1 + err. */
static int
rule_finish(struct rule *r, char *err, size_t errlen)
{
	if (r->action == NULL) {
		set_err(err, errlen, "action: missing");
		return -1;
	}
	if (r->action->needs != 0 && (r->match->bits & r->action->needs) == 0) {
		set_err(err, errlen, "action %s cannot apply to match %s",
		        r->action->name, r->match->name);
		return -1;
	}
	if (r->channel[0] != '\0' &&
	    r->action->action != FAULT_TRIM_RETENTION) {
		set_err(err, errlen, "channel: only for trim_retention");
		return -1;
	}
	if (r->action->action == FAULT_HUGE_HEADERS) {
		if (!r->bytes_set)
			r->bytes = FAULT_DEFAULT_HEADER_BYTES;
		if (r->bytes > FAULT_MAX_HEADER_BYTES) {
			set_err(err, errlen,
			        "bytes: huge_headers takes at most %lld",
			        FAULT_MAX_HEADER_BYTES);
			return -1;
		}
	} else if (!r->bytes_set) {
		r->bytes = FAULT_DEFAULT_BYTES;
	}
	if (r->action->action == FAULT_TRICKLE && r->ms == 0) {
		set_err(err, errlen, "ms: trickle needs at least 1");
		return -1;
	}
	/* A window hits every request in it unless a count says less. */
	if (r->for_ms >= 0 && !r->count_set)
		r->count = 0;
	return 0;
}

static int
parse_text(struct rule *r, const char *spec, char *err, size_t errlen)
{
	char buf[FAULT_SPEC_MAX];
	char *p, *save = NULL;

	rule_defaults(r);
	if (strlen(spec) >= sizeof(buf)) {
		set_err(err, errlen, "fault spec too long");
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", spec);
	for (p = strtok_r(buf, ",", &save); p != NULL;
	     p = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(p, '=');

		if (eq == NULL || eq == p) {
			set_err(err, errlen, "'%.64s': want key=value", p);
			return -1;
		}
		*eq = '\0';
		if (rule_set(r, p, eq + 1, err, errlen) != 0)
			return -1;
	}
	return rule_finish(r, err, errlen);
}

static int
parse_json(struct rule *r, const char *json, size_t len, char *err,
           size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *o;
	int rc = 0;

	rule_defaults(r);
	if (json == NULL || len == 0) {
		set_err(err, errlen, "body: want one JSON object");
		return -1;
	}
	if (len > FAULT_SPEC_MAX * 4) {
		set_err(err, errlen, "body too long");
		return -1;
	}
	tok = json_tokener_new();
	if (tok == NULL) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	o = json_tokener_parse_ex(tok, json, (int)len);
	if (o == NULL || json_tokener_get_parse_end(tok) != len ||
	    !json_object_is_type(o, json_type_object)) {
		set_err(err, errlen, "body: want one JSON object");
		rc = -1;
		goto out;
	}
	json_object_object_foreach(o, key, val)
	{
		char num[32];
		const char *text;

		if (json_object_is_type(val, json_type_string)) {
			text = json_object_get_string(val);
		} else if (json_object_is_type(val, json_type_int)) {
			snprintf(num, sizeof(num), "%lld",
			         (long long)json_object_get_int64(val));
			text = num;
		} else {
			set_err(err, errlen,
			        "%.64s: want a string or a whole number", key);
			rc = -1;
			goto out;
		}
		if (rule_set(r, key, text, err, errlen) != 0) {
			rc = -1;
			goto out;
		}
	}
	rc = rule_finish(r, err, errlen);
out:
	json_object_put(o);
	json_tokener_free(tok);
	return rc;
}

static int
rule_add(struct fault_plan *plan, struct rule *r, char *err, size_t errlen)
{
	char id[16];

	if (plan->nrules == FAULT_MAX_RULES) {
		set_err(err, errlen, "too many rules (at most %d)",
		        FAULT_MAX_RULES);
		return -1;
	}
	if (plan->nrules == plan->cap) {
		size_t cap = plan->cap ? plan->cap * 2 : 8;
		struct rule *p = realloc(plan->rules, cap * sizeof(*p));

		if (p == NULL) {
			set_err(err, errlen, "out of memory");
			return -1;
		}
		plan->rules = p;
		plan->cap = cap;
	}
	r->id = plan->next_id++;
	r->added_ms = util_mono_ms();
	plan->rules[plan->nrules++] = *r;
	snprintf(id, sizeof(id), "%d", r->id);
	log_info("fault added", "rule", id, "action", r->action->name, "match",
	         r->match->name, NULL);
	return r->id;
}

int
fault_plan_add_text(struct fault_plan *plan, const char *spec, char *err,
                    size_t errlen)
{
	struct rule r;

	if (parse_text(&r, spec, err, errlen) != 0)
		return -1;
	return rule_add(plan, &r, err, errlen);
}

int
fault_plan_add_json(struct fault_plan *plan, const char *json, size_t len,
                    char *err, size_t errlen)
{
	struct rule r;

	if (parse_json(&r, json, len, err, errlen) != 0)
		return -1;
	return rule_add(plan, &r, err, errlen);
}

int
fault_spec_check(const char *spec, char *err, size_t errlen)
{
	struct rule r;

	return parse_text(&r, spec, err, errlen);
}

size_t
fault_plan_clear(struct fault_plan *plan)
{
	size_t n = plan->nrules;

	plan->nrules = 0;
	return n;
}

uint64_t
fault_plan_fired(const struct fault_plan *plan)
{
	return plan->fired;
}

/* "pending" until its window opens and its nth request came, "active"
 * while it may fire, "done" after. */
static const char *
rule_state(const struct rule *r, int64_t now)
{
	int64_t start = r->added_ms + r->after_ms;

	if ((r->count > 0 && r->fired >= (uint64_t)r->count) ||
	    (r->for_ms >= 0 && now >= start + r->for_ms))
		return "done";
	if (now < start || r->seen + 1 < (uint64_t)r->nth)
		return "pending";
	return "active";
}

int
fault_plan_list(const struct fault_plan *plan, struct evbuffer *out)
{
	int64_t now = util_mono_ms();
	size_t i;
	int rc = 0;

	rc |= evbuffer_add(out, "[", 1);
	for (i = 0; i < plan->nrules; i++) {
		const struct rule *r = &plan->rules[i];

		rc |= evbuffer_add_printf(
		          out,
		          "%s{\"id\":%d,\"action\":\"%s\",\"match\":\"%s\","
		          "\"nth\":%lld,\"count\":%lld,\"after_ms\":%lld,",
		          i > 0 ? "," : "", r->id, r->action->name,
		          r->match->name, (long long)r->nth,
		          (long long)r->count, (long long)r->after_ms) < 0;
		if (r->for_ms >= 0)
			rc |= evbuffer_add_printf(out, "\"for_ms\":%lld,",
			                          (long long)r->for_ms) < 0;
		switch (r->action->action) {
		case FAULT_DELAY:
		case FAULT_TRICKLE:
			rc |= evbuffer_add_printf(out, "\"ms\":%lld,",
			                          (long long)r->ms) < 0;
			break;
		case FAULT_HUGE_BODY:
		case FAULT_HUGE_PADDING:
		case FAULT_HUGE_HEADERS:
			rc |= evbuffer_add_printf(out, "\"bytes\":%lld,",
			                          (long long)r->bytes) < 0;
			break;
		case FAULT_DEEP_NESTING:
			rc |= evbuffer_add_printf(out, "\"depth\":%lld,",
			                          (long long)r->depth) < 0;
			break;
		case FAULT_ADVICE_RETRY:
			rc |= evbuffer_add_printf(out, "\"interval\":%lld,",
			                          (long long)r->interval) < 0;
			break;
		case FAULT_TRIM_RETENTION:
			rc |= evbuffer_add_printf(out, "\"keep\":%lld,",
			                          (long long)r->keep) < 0;
			if (r->channel[0] != '\0')
				rc |= evbuffer_add_printf(out,
				                          "\"channel\":\"%s\",",
				                          r->channel) < 0;
			break;
		default:
			break;
		}
		rc |= evbuffer_add_printf(
		          out, "\"seen\":%llu,\"fired\":%llu,\"state\":\"%s\"}",
		          (unsigned long long)r->seen,
		          (unsigned long long)r->fired, rule_state(r, now)) < 0;
	}
	rc |= evbuffer_add(out, "]", 1);
	return rc == 0 ? 0 : -1;
}

static unsigned
channel_bit(const char *channel)
{
	size_t i;

	if (channel == NULL)
		return FAULT_M_OTHER;
	for (i = 1; i < NELEM(matches); i++)
		if (matches[i].name[0] == '/' &&
		    strcmp(channel, matches[i].name) == 0)
			return matches[i].bits;
	return FAULT_M_OTHER;
}

/* The meta channels of a CometD request's messages, as FAULT_M_* bits
 * (FAULT_M_OTHER when the body is not a JSON array or object). */
static unsigned
request_bits(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in), i;
	struct json_tokener *tok;
	struct json_object *v, *ch;
	unsigned bits = 0;

	if (n == 0 || n > INT32_MAX)
		return FAULT_M_OTHER;
	tok = json_tokener_new();
	if (tok == NULL)
		return FAULT_M_OTHER;
	v = json_tokener_parse_ex(tok, (const char *)evbuffer_pullup(in, -1),
	                          (int)n);
	if (json_object_is_type(v, json_type_array)) {
		for (i = 0; i < json_object_array_length(v); i++) {
			struct json_object *m = json_object_array_get_idx(v, i);

			bits |= channel_bit(
			    json_object_object_get_ex(m, "channel", &ch)
			        ? json_object_get_string(ch)
			        : NULL);
		}
	} else if (json_object_is_type(v, json_type_object)) {
		bits = channel_bit(json_object_object_get_ex(v, "channel", &ch)
		                       ? json_object_get_string(ch)
		                       : NULL);
	}
	json_object_put(v);
	json_tokener_free(tok);
	return bits != 0 ? bits : FAULT_M_OTHER;
}

/* The name of the first channel in bits, for the traffic log. */
static const char *
bits_name(unsigned bits)
{
	size_t i;

	for (i = 1; i < NELEM(matches); i++)
		if (bits & matches[i].bits)
			return matches[i].name;
	return "cometd";
}

static void
apply_effect(struct fault_plan *plan, const struct rule *r)
{
	size_t i, n = org_channel_count(plan->org);

	switch (r->action->action) {
	case FAULT_EXPIRE_TOKENS:
		org_tokens_revoke(plan->org);
		cometd_sessions_revoked(plan->cd);
		break;
	case FAULT_FORGET_CLIENTS:
		cometd_drop_clients(plan->cd);
		break;
	case FAULT_TRIM_RETENTION:
		for (i = 0; i < n; i++) {
			struct org_channel *ch = org_channel_at(plan->org, i);

			if (r->channel[0] != '\0' &&
			    strcmp(r->channel, org_channel_name(ch)) != 0)
				continue;
			org_channel_trim(plan->org, ch,
			                 org_channel_latest(ch) - r->keep + 1);
		}
		break;
	default:
		break;
	}
}

/* Counts req against every rule and merges what fired into v. Returns
 * how many rules fired. */
static int
evaluate(struct fault_plan *plan, unsigned bits, struct verdict *v)
{
	int64_t now = util_mono_ms();
	size_t i;
	int fired = 0;

	memset(v, 0, sizeof(*v));
	for (i = 0; i < plan->nrules; i++) {
		struct rule *r = &plan->rules[i];
		int64_t start = r->added_ms + r->after_ms;
		char id[16];

		if ((r->match->bits & bits) == 0 || now < start ||
		    (r->for_ms >= 0 && now >= start + r->for_ms) ||
		    (r->count > 0 && r->fired >= (uint64_t)r->count))
			continue;
		if (++r->seen < (uint64_t)r->nth)
			continue;
		r->fired++;
		plan->fired++;
		fired++;
		snprintf(id, sizeof(id), "%d", r->id);
		log_info("fault fired", "rule", id, "action", r->action->name,
		         "channel", bits_name(r->match->bits & bits), NULL);
		cometd_note_fault(plan->cd, bits_name(r->match->bits & bits),
		                  r->action->name, r->id);
		switch (r->action->group) {
		case GROUP_PRE:
			if (v->pre == FAULT_NONE)
				v->pre = r->action->action;
			break;
		case GROUP_DELAY:
			if (r->ms > v->delay_ms)
				v->delay_ms = r->ms;
			break;
		case GROUP_EFFECT:
			apply_effect(plan, r);
			break;
		case GROUP_REPLY:
			if (v->hit.action == FAULT_NONE) {
				v->hit.action = r->action->action;
				v->hit.match = r->match->bits & bits;
				v->hit.interval_ms = r->interval;
				v->hit.bytes = r->bytes;
				v->hit.depth = r->depth;
				v->hit.ms = r->ms;
				v->hit.rule = r->id;
			}
			break;
		}
	}
	return fired;
}

static void
held_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct held *h = arg;
	struct evhttp_request *req = h->req;

	(void)evcon;
	/* evhttp frees a request still attached to the failing connection;
	 * one it detached (unanswered, peer gone) is left to us. */
	h->evcon = NULL;
	held_free(h);
	if (evhttp_request_get_connection(req) == NULL)
		evhttp_request_free(req);
}

static void held_timer_cb(evutil_socket_t fd, short what, void *arg);

/* Holds req for ms, then drops it (drop) or carries out v. */
static void
hold(struct fault_plan *plan, struct evhttp_request *req, int64_t ms, int drop,
     const struct verdict *v, fault_route_fn *route, void *arg)
{
	struct held *h = calloc(1, sizeof(*h));
	struct timeval tv;

	if (h != NULL)
		h->timer = evtimer_new(plan->base, held_timer_cb, h);
	if (h == NULL || h->timer == NULL) {
		free(h);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	h->plan = plan;
	h->req = req;
	h->evcon = evhttp_request_get_connection(req);
	h->drop = drop;
	if (v != NULL)
		h->v = *v;
	h->route = route;
	h->route_arg = arg;
	h->next = plan->held;
	plan->held = h;
	if (h->evcon != NULL)
		evhttp_connection_set_closecb(h->evcon, held_closed_cb, h);
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	/* Timers count from the loop's cached time, taken before this
	 * request was parsed: hold at least ms from now. */
	event_base_update_cache_time(plan->base);
	evtimer_add(h->timer, &tv);
}

void
fault_drop_later(struct fault_plan *plan, struct evhttp_request *req)
{
	hold(plan, req, 0, 1, NULL, NULL, NULL);
}

/* Carries out a verdict whose delay is over (or was none). */
static void
carry_out(struct fault_plan *plan, struct evhttp_request *req,
          const struct verdict *v, fault_route_fn *route, void *arg)
{
	switch (v->pre) {
	case FAULT_DROP:
		fault_drop_later(plan, req);
		return;
	case FAULT_HANG:
		/* Never answered: held as long as a rule may hold anything,
		 * then closed, which no test waits for. */
		hold(plan, req, FAULT_MAX_MS, 1, NULL, NULL, NULL);
		return;
	case FAULT_HTTP_500:
		util_reply_text(req, 500,
		                "[{\"errorCode\":\"UNKNOWN_EXCEPTION\","
		                "\"message\":\"An unexpected error occurred. "
		                "Please include this ErrorId if you contact "
		                "support: 0000000000-00000 (sfmock)\"}]",
		                "fault http_500");
		return;
	case FAULT_HTTP_503: {
		static const char page[] =
		    "<html><head><title>Service Unavailable</title></head>"
		    "<body>The server is temporarily unable to service your "
		    "request.</body></html>";
		struct evbuffer *body = evbuffer_new();

		if (body == NULL ||
		    evbuffer_add(body, page, sizeof(page) - 1) != 0) {
			if (body != NULL)
				evbuffer_free(body);
			evhttp_send_error(req, 503, NULL);
			return;
		}
		util_reply(req, 503, "text/html", body, "fault http_503");
		evbuffer_free(body);
		return;
	}
	default:
		break;
	}
	plan->resuming = req;
	plan->current = v->hit;
	plan->has_current = v->hit.action != FAULT_NONE;
	route(req, arg);
	plan->resuming = NULL;
	plan->has_current = 0;
}

static void
held_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct held *h = arg;
	struct fault_plan *plan = h->plan;
	struct evhttp_request *req = h->req;
	struct evhttp_connection *evcon = h->evcon;
	struct verdict v = h->v;
	fault_route_fn *route = h->route;
	void *route_arg = h->route_arg;
	int drop = h->drop;

	(void)fd;
	(void)what;
	held_free(h);
	if (drop) {
		if (evcon != NULL)
			evhttp_connection_free(evcon);
		return;
	}
	carry_out(plan, req, &v, route, route_arg);
}

int
fault_intercept(struct fault_plan *plan, struct evhttp_request *req,
                fault_route_fn *route, void *arg)
{
	const struct evhttp_uri *uri;
	const char *path;
	struct verdict v;
	unsigned bits, want = 0;
	size_t i;

	if (plan == NULL || plan->nrules == 0 || req == plan->resuming)
		return 0;
	uri = evhttp_request_get_evhttp_uri(req);
	path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL)
		return 0;
	if (strncmp(path, "/cometd", 7) == 0 &&
	    (path[7] == '\0' || path[7] == '/'))
		bits = FAULT_M_COMETD;
	else if (strcmp(path, "/services/oauth2/token") == 0)
		bits = FAULT_M_TOKEN;
	else if (strncmp(path, "/services/data/", 15) == 0)
		bits = FAULT_M_REST;
	else
		return 0;
	for (i = 0; i < plan->nrules; i++)
		want |= plan->rules[i].match->bits;
	if ((want & bits) == 0)
		return 0;
	/* Only a rule on one meta channel needs the body's channels. */
	if (bits == FAULT_M_COMETD) {
		for (i = 0; i < plan->nrules; i++)
			if ((plan->rules[i].match->bits & FAULT_M_COMETD) !=
			        0 &&
			    plan->rules[i].match->bits != FAULT_M_COMETD)
				break;
		if (i < plan->nrules)
			bits = request_bits(req);
	}
	if (evaluate(plan, bits, &v) == 0)
		return 0;
	if (v.delay_ms > 0)
		hold(plan, req, v.delay_ms, 0, &v, route, arg);
	else
		carry_out(plan, req, &v, route, arg);
	return 1;
}

const struct fault_hit *
fault_current(const struct fault_plan *plan, const struct evhttp_request *req)
{
	if (plan == NULL || !plan->has_current || plan->resuming != req)
		return NULL;
	return &plan->current;
}
