#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "sfrelay/log.h"

#include "cometd.h"
#include "fault.h"
#include "oauth.h"
#include "org.h"
#include "query.h"
#include "rest.h"
#include "shapes.h"
#include "util.h"

#define REST_JSON_FLAGS                                                        \
	(JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define REST_MAX_COUNT 1000000
#define REST_API_LIMIT 15000

#define NOT_FOUND                                                              \
	"[{\"errorCode\":\"NOT_FOUND\",\"message\":\"The requested resource "  \
	"does not exist\"}]"
#define INVALID_SESSION                                                        \
	"[{\"message\":\"Session expired or invalid\",\"errorCode\":"          \
	"\"INVALID_SESSION_ID\"}]"

struct rest {
	struct org *org;
	struct cometd *cd;
	uint64_t record_ids; /* ids of published platform events */
	int64_t commits;     /* CDC commitNumber */
	struct fault_plan *faults;
	struct query *query; /* SOQL query, composite (query.c) */
};

/* What one /_mock/publish call puts in each event. */
struct mock_pub {
	struct rest *rest;
	struct evbuffer *members;
	const char *extra; /* the body's members, no braces, or "" */
	size_t extra_len;
	struct json_object *body; /* NULL when the request had none */
	const char *text;         /* /u: the body's "payload" string or NULL */
	char *changed;            /* /data: changedFields JSON text */
};

/* One REST publish of a platform event. */
struct sobject_pub {
	struct rest *rest;
	const char *members;
	size_t members_len;
};

struct rest *
rest_new(struct org *org, struct cometd *cd)
{
	struct rest *rest = calloc(1, sizeof(*rest));

	if (rest == NULL)
		return NULL;
	rest->org = org;
	rest->cd = cd;
	rest->commits = 10000000000LL;
	if ((rest->query = query_new(org)) == NULL) {
		free(rest);
		return NULL;
	}
	return rest;
}

void
rest_free(struct rest *rest)
{
	if (rest != NULL)
		query_free(rest->query);
	free(rest);
}

/* Replies with o serialized (json-c escapes every string) and frees it. */
static void
reply_obj(struct evhttp_request *req, int code, struct json_object *o,
          const char *why)
{
	util_reply_text(
	    req, code, json_object_to_json_string_ext(o, REST_JSON_FLAGS), why);
	json_object_put(o);
}

/* Parses the request body as a JSON object. Returns it (owned), or NULL
 * with a Jackson-style message in err when it is not one. */
static struct json_object *
body_object(struct evhttp_request *req, char *err, size_t errlen)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in), end;
	const char *p = (const char *)evbuffer_pullup(in, -1);
	struct json_tokener *tok;
	struct json_object *v;

	if (n > INT32_MAX) {
		snprintf(err, errlen, "Request body too large");
		return NULL;
	}
	tok = json_tokener_new();
	if (tok == NULL) {
		snprintf(err, errlen, "Out of memory");
		return NULL;
	}
	v = json_tokener_parse_ex(tok, p != NULL ? p : "", (int)n);
	end = v != NULL ? json_tokener_get_parse_end(tok) : 0;
	while (v != NULL && end < n &&
	       (p[end] == ' ' || p[end] == '\n' || p[end] == '\r' ||
	        p[end] == '\t'))
		end++;
	if (v == NULL || end != n) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		snprintf(err, errlen, "Unexpected %s at [line:1, column:%zu]",
		         n == 0 || e == json_tokener_continue
		             ? "end-of-input"
		             : json_tokener_error_desc(e),
		         (v != NULL ? end : json_tokener_get_parse_end(tok)) +
		             1);
		json_object_put(v);
		v = NULL;
	} else if (!json_object_is_type(v, json_type_object)) {
		snprintf(err, errlen,
		         "Can not deserialize SObject out of %s token at "
		         "[line:1, column:1]",
		         json_object_is_type(v, json_type_array) ? "START_ARRAY"
		                                                 : "VALUE");
		json_object_put(v);
		v = NULL;
	}
	json_tokener_free(tok);
	return v;
}

/* The members of obj without its braces: "{...}" -> "...". */
static const char *
members_of(struct json_object *obj, size_t *len)
{
	size_t n;
	const char *s =
	    json_object_to_json_string_length(obj, REST_JSON_FLAGS, &n);

	*len = n >= 2 ? n - 2 : 0;
	return s + 1;
}

static int
build_sobject(void *arg, struct evbuffer *out, const struct org_channel *ch,
              int64_t replay_id, uint64_t seq, int64_t now_ms)
{
	struct sobject_pub *p = arg;
	struct shape s = {0};
	char uuid[37];

	(void)seq;
	util_rng_uuid(org_rng(p->rest->org), uuid);
	s.members = p->members;
	s.members_len = p->members_len;
	s.uuid = uuid;
	return shape_event(out, ch, replay_id, now_ms, &s);
}

static void
do_sobject(struct rest *rest, struct evhttp_request *req, const char *name)
{
	struct org_stats *st = org_stats(rest->org);
	struct sobject_pub pub = {.rest = rest};
	struct org_channel *ch;
	struct json_object *body;
	char chan[256], err[256], limit[64], reply[160];
	int64_t id;

	snprintf(limit, sizeof(limit), "api-usage=%llu/%d",
	         (unsigned long long)++st->api_calls, REST_API_LIMIT);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Sforce-Limit-Info", limit);
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "Allow", "HEAD,POST");
		snprintf(reply, sizeof(reply),
		         "[{\"errorCode\":\"METHOD_NOT_ALLOWED\",\"message\":"
		         "\"HTTP Method '%s' not allowed. Allowed are "
		         "HEAD,POST\"}]",
		         util_method(req));
		util_reply_text(req, 405, reply, "method not allowed");
		return;
	}
	snprintf(chan, sizeof(chan), "/event/%s", name);
	ch = strlen(name) > 3 && strcmp(name + strlen(name) - 3, "__e") == 0
	         ? org_channel_find(rest->org, chan, strlen(chan))
	         : NULL;
	if (ch == NULL) {
		util_reply_text(req, 404, NOT_FOUND, "no such event");
		return;
	}
	body = body_object(req, err, sizeof(err));
	if (body == NULL) {
		struct json_object *e = json_object_new_array();
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "message",
		                       json_object_new_string(err));
		json_object_object_add(
		    o, "errorCode",
		    json_object_new_string("JSON_PARSER_ERROR"));
		json_object_array_add(e, o);
		reply_obj(req, 400, e, "body is not a JSON object");
		return;
	}
	/* System fields are the org's to set. */
	json_object_object_del(body, "CreatedDate");
	json_object_object_del(body, "CreatedById");
	pub.members = members_of(body, &pub.members_len);
	id = org_publish(rest->org, ch, build_sobject, &pub);
	json_object_put(body);
	if (id < 0) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	/* Durable (with --state) before the publisher hears of it. */
	org_commit(rest->org);
	snprintf(reply, sizeof(reply),
	         "{\"id\":\"e00xx%010lluAAA\",\"success\":true,\"errors\":[]}",
	         (unsigned long long)++rest->record_ids % 10000000000ULL);
	util_reply_text(req, 201, reply, NULL);
}

/* /services/data/vNN.N/... : auth first (as Salesforce does), then the
 * one resource sfmock serves. */
static void
do_data(struct rest *rest, struct evhttp_request *req, const char *path)
{
	const char *p = path + strlen("/services/data/v");
	const char *token = util_bearer(req);
	static const char sobjects[] = "/sobjects/";

	if (token == NULL || !org_token_valid(rest->org, token)) {
		util_reply_text(req, 401, INVALID_SESSION, "invalid session");
		return;
	}
	if (!(*p >= '0' && *p <= '9'))
		goto notfound;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p++ != '.' || !(*p >= '0' && *p <= '9'))
		goto notfound;
	while (*p >= '0' && *p <= '9')
		p++;
	if (strncmp(p, sobjects, sizeof(sobjects) - 1) != 0)
		goto notfound;
	p += sizeof(sobjects) - 1;
	if (*p == '\0' || strchr(p, '/') != NULL || strlen(p) > 200)
		goto notfound;
	do_sobject(rest, req, p);
	return;
notfound:
	util_reply_text(req, 404, NOT_FOUND, "not found");
}

/* Appends one object member to m, with a comma unless it is the first. */
static void member(struct evbuffer *m, int *first, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
member(struct evbuffer *m, int *first, const char *fmt, ...)
{
	va_list ap;

	if (!*first)
		evbuffer_add(m, ",", 1);
	*first = 0;
	va_start(ap, fmt);
	evbuffer_add_vprintf(m, fmt, ap);
	va_end(ap);
}

/* Default fields yield to the request body's fields of the same name. */
static int
overridden(const struct mock_pub *p, const char *key)
{
	return p->body != NULL && json_object_object_get_ex(p->body, key, NULL);
}

static int
build_mock(void *arg, struct evbuffer *out, const struct org_channel *ch,
           int64_t replay_id, uint64_t seq, int64_t now_ms)
{
	struct mock_pub *p = arg;
	struct evbuffer *m = p->members;
	struct shape s = {0};
	char uuid[37], rid[32], text[64];
	unsigned long long k = (unsigned long long)seq;
	enum org_kind kind = org_channel_kind(ch);
	int first = 1;

	evbuffer_drain(m, evbuffer_get_length(m));
	snprintf(rid, sizeof(rid), "001xx%010lluAAA", k % 10000000000ULL);
	switch (kind) {
	case ORG_TOPIC:
		s.type = "created";
		if (!overridden(p, "Id"))
			member(m, &first, "\"Id\":\"%s\"", rid);
		if (!overridden(p, "Name"))
			member(m, &first, "\"Name\":\"Account %llu\"", k);
		break;
	case ORG_EVENT:
		if (!overridden(p, "Message"))
			member(m, &first, "\"Message\":\"event %llu\"", k);
		break;
	case ORG_DATA:
		s.record_id = rid;
		s.change_type = "UPDATE";
		s.changed_fields = p->changed;
		s.commit_number = p->rest->commits++;
		break;
	case ORG_GENERIC:
		snprintf(text, sizeof(text), "event %llu", k);
		s.text = p->text != NULL ? p->text : text;
		break;
	}
	if (kind != ORG_GENERIC) {
		if (!overridden(p, "Seq"))
			member(m, &first, "\"Seq\":%llu", k);
		if (p->extra_len > 0)
			member(m, &first, "%.*s", (int)p->extra_len, p->extra);
	}
	if (kind == ORG_EVENT || kind == ORG_DATA) {
		util_rng_uuid(org_rng(p->rest->org), uuid);
		s.uuid = uuid;
	}
	s.members = (const char *)evbuffer_pullup(m, -1);
	s.members_len = evbuffer_get_length(m);
	return shape_event(out, ch, replay_id, now_ms, &s);
}

/* changedFields for /data test events: "Seq" and the body's keys. */
static char *
changed_fields(struct json_object *body)
{
	struct json_object *a = json_object_new_array();
	char *s;

	json_object_array_add(a, json_object_new_string("Seq"));
	if (body != NULL) {
		json_object_object_foreach(body, key, val)
		{
			(void)val;
			if (strcmp(key, "Seq") != 0)
				json_object_array_add(
				    a, json_object_new_string(key));
		}
	}
	s = strdup(json_object_to_json_string_ext(a, REST_JSON_FLAGS));
	json_object_put(a);
	return s;
}

static void
mock_error(struct evhttp_request *req, int code, const char *error,
           const char *channel)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "error", json_object_new_string(error));
	if (channel != NULL)
		json_object_object_add(o, "channel",
		                       json_object_new_string(channel));
	reply_obj(req, code, o, error);
}

static void
do_mock_publish(struct rest *rest, struct evhttp_request *req)
{
	const char *query =
	    evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq q;
	struct mock_pub pub = {.rest = rest};
	struct org_channel *ch;
	const char *name, *count_s;
	int64_t count = 1, i, first = 0, last = 0;
	char err[256], reply[160];
	size_t body_len =
	    evbuffer_get_length(evhttp_request_get_input_buffer(req));

	q.tqh_first = NULL;
	q.tqh_last = &q.tqh_first;
	if (query != NULL && util_form_parse(query, strlen(query), &q) != 0) {
		mock_error(req, 400, "malformed query", NULL);
		goto done;
	}
	name = evhttp_find_header(&q, "channel");
	count_s = evhttp_find_header(&q, "count");
	if (name == NULL) {
		mock_error(req, 400, "missing channel", NULL);
		goto done;
	}
	if (count_s != NULL &&
	    util_parse_i64(count_s, 1, REST_MAX_COUNT, &count) != 0) {
		mock_error(req, 400, "count must be 1..1000000", NULL);
		goto done;
	}
	ch = org_channel_find(rest->org, name, strlen(name));
	if (ch == NULL) {
		mock_error(req, 404, "unknown channel", name);
		goto done;
	}
	if (body_len > 0) {
		pub.body = body_object(req, err, sizeof(err));
		if (pub.body == NULL) {
			mock_error(req, 400, err, NULL);
			goto done;
		}
		json_object_object_del(pub.body, "CreatedDate");
		json_object_object_del(pub.body, "CreatedById");
		if (org_channel_kind(ch) == ORG_GENERIC) {
			struct json_object *t;

			if (json_object_object_get_ex(pub.body, "payload",
			                              &t) &&
			    json_object_is_type(t, json_type_string))
				pub.text = json_object_get_string(t);
		}
		pub.extra = members_of(pub.body, &pub.extra_len);
	}
	pub.members = evbuffer_new();
	pub.changed = changed_fields(pub.body);
	if (pub.members == NULL || pub.changed == NULL) {
		evhttp_send_error(req, 500, NULL);
		goto done;
	}
	for (i = 0; i < count; i++) {
		int64_t id = org_publish(rest->org, ch, build_mock, &pub);

		if (id < 0)
			break;
		if (i == 0)
			first = id;
		last = id;
	}
	if (i == 0) {
		evhttp_send_error(req, 500, NULL);
		goto done;
	}
	org_commit(rest->org);
	snprintf(reply, sizeof(reply),
	         "{\"published\":%lld,\"first_replay_id\":%lld,"
	         "\"last_replay_id\":%lld}",
	         (long long)i, (long long)first, (long long)last);
	util_reply_text(req, 200, reply, NULL);
done:
	if (pub.members != NULL)
		evbuffer_free(pub.members);
	free(pub.changed);
	json_object_put(pub.body);
	evhttp_clear_headers(&q);
}

static void
do_stats(struct rest *rest, struct evhttp_request *req)
{
	const struct org_stats *st = org_stats(rest->org);
	struct evbuffer *out = evbuffer_new();
	size_t i, n = org_channel_count(rest->org);

	if (out == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add_printf(
	    out,
	    "{\"handshakes\":%llu,\"connects\":%llu,"
	    "\"subscribes\":%llu,\"clients\":%llu,"
	    "\"tokens_issued\":%llu,\"api_calls\":%llu,"
	    "\"faults_fired\":%llu,\"channels\":{",
	    (unsigned long long)st->handshakes,
	    (unsigned long long)st->connects,
	    (unsigned long long)st->subscribes, (unsigned long long)st->clients,
	    (unsigned long long)st->tokens_issued,
	    (unsigned long long)st->api_calls,
	    (unsigned long long)(rest->faults != NULL
	                             ? fault_plan_fired(rest->faults)
	                             : 0));
	for (i = 0; i < n; i++) {
		const struct org_channel *ch = org_channel_at(rest->org, i);
		int64_t latest = org_channel_latest(ch);

		/* Channel names are restricted to JSON-safe characters. */
		evbuffer_add_printf(
		    out,
		    "%s\"%s\":{\"published\":%llu,"
		    "\"latest_replay_id\":%lld,"
		    "\"oldest_replay_id\":%lld,\"retained\":%lld}",
		    i > 0 ? "," : "", org_channel_name(ch),
		    (unsigned long long)org_channel_published(ch),
		    (long long)latest, (long long)org_channel_oldest(ch),
		    (long long)(latest - org_channel_oldest(ch) + 1));
	}
	evbuffer_add(out, "}}", 2);
	util_reply(req, 200, UTIL_JSON_UTF8, out, NULL);
	evbuffer_free(out);
}

/* Replies with a JSON body built in out (freed here). */
static void
reply_buf(struct evhttp_request *req, int code, struct evbuffer *out)
{
	if (out == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	util_reply(req, code, UTIL_JSON_UTF8, out, NULL);
	evbuffer_free(out);
}

static void
method_not_allowed(struct evhttp_request *req, const char *allow)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
	                  allow);
	util_reply_text(req, 405,
	                "[{\"errorCode\":\"METHOD_NOT_ALLOWED\",\"message\":"
	                "\"Method not allowed\"}]",
	                "method not allowed");
}

/* POST /_mock/declare?channel=C: a channel that appears at run time. */
static void
do_declare(struct rest *rest, struct evhttp_request *req)
{
	const char *query =
	    evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq q;
	const char *name;
	struct evbuffer *out;

	q.tqh_first = NULL;
	q.tqh_last = &q.tqh_first;
	if (query == NULL || util_form_parse(query, strlen(query), &q) != 0 ||
	    (name = evhttp_find_header(&q, "channel")) == NULL) {
		mock_error(req, 400, "want ?channel=NAME", NULL);
		goto done;
	}
	if (org_channel_declare(rest->org, name) == NULL) {
		mock_error(req, 400,
		           "channel: want /topic/X, /event/X, /data/X or /u/X",
		           NULL);
		goto done;
	}
	log_info("channel declared", "channel", name, NULL);
	out = evbuffer_new();
	if (out != NULL) {
		evbuffer_add(out, "{\"declared\":", 12);
		util_json_str(out, name);
		evbuffer_add(out, "}", 1);
	}
	reply_buf(req, 200, out);
done:
	evhttp_clear_headers(&q);
}

/*
 * The fault plan and traffic endpoints:
 *   POST   /_mock/fault     add a rule (JSON object body) -> {"id":N}
 *   GET    /_mock/faults    the rules, with counters and states
 *   DELETE /_mock/faults    remove every rule -> {"cleared":N}
 *   GET    /_mock/messages  the CometD traffic log
 *   POST   /_mock/declare   declare a channel
 * Returns 1 when path was one of them (req answered), 0 otherwise.
 */
static int
do_mock_faults(struct rest *rest, struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct evbuffer *out;
	char err[256];
	int id;

	if (strcmp(path, "/_mock/fault") == 0) {
		if (cmd != EVHTTP_REQ_POST) {
			method_not_allowed(req, "POST");
			return 1;
		}
		id = rest->faults == NULL
		         ? -1
		         : fault_plan_add_json(
		               rest->faults,
		               (const char *)evbuffer_pullup(in, -1),
		               evbuffer_get_length(in), err, sizeof(err));
		if (id < 0) {
			mock_error(req, 400,
			           rest->faults == NULL ? "no fault plan" : err,
			           NULL);
			return 1;
		}
		snprintf(err, sizeof(err), "{\"id\":%d}", id);
		util_reply_text(req, 200, err, NULL);
	} else if (strcmp(path, "/_mock/faults") == 0) {
		if (rest->faults == NULL) {
			mock_error(req, 400, "no fault plan", NULL);
		} else if (cmd == EVHTTP_REQ_GET) {
			out = evbuffer_new();
			if (out != NULL &&
			    fault_plan_list(rest->faults, out) != 0) {
				evbuffer_free(out);
				out = NULL;
			}
			reply_buf(req, 200, out);
		} else if (cmd == EVHTTP_REQ_DELETE) {
			snprintf(err, sizeof(err), "{\"cleared\":%zu}",
			         fault_plan_clear(rest->faults));
			log_info("faults cleared", NULL);
			util_reply_text(req, 200, err, NULL);
		} else {
			method_not_allowed(req, "GET, DELETE");
		}
	} else if (strcmp(path, "/_mock/messages") == 0) {
		if (cmd != EVHTTP_REQ_GET) {
			method_not_allowed(req, "GET");
			return 1;
		}
		out = evbuffer_new();
		if (out != NULL && cometd_traffic_json(rest->cd, out) != 0) {
			evbuffer_free(out);
			out = NULL;
		}
		reply_buf(req, 200, out);
	} else if (strcmp(path, "/_mock/declare") == 0) {
		if (cmd != EVHTTP_REQ_POST)
			method_not_allowed(req, "POST");
		else
			do_declare(rest, req);
	} else {
		return 0;
	}
	return 1;
}

static int
method_is(struct evhttp_request *req, enum evhttp_cmd_type cmd)
{
	if (evhttp_request_get_command(req) == cmd)
		return 1;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
	                  cmd == EVHTTP_REQ_GET ? "GET" : "POST");
	util_reply_text(req, 405,
	                "[{\"errorCode\":\"METHOD_NOT_ALLOWED\",\"message\":"
	                "\"Method not allowed\"}]",
	                "method not allowed");
	return 0;
}

void
rest_handle(struct rest *rest, struct evhttp_request *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	char reply[64];

	if (path == NULL) {
		util_reply_text(req, 404, NOT_FOUND, "no path");
	} else if (strcmp(path, "/services/oauth2/token") == 0) {
		if (method_is(req, EVHTTP_REQ_POST)) {
			const struct fault_hit *hit =
			    fault_current(cometd_faults(rest->cd), req);

			if (hit != NULL && hit->action == FAULT_HUGE_BODY)
				cometd_send_hostile(rest->cd, req, hit);
			else
				oauth_token(rest->org, req,
				            hit != NULL &&
				                hit->action ==
				                    FAULT_NO_INSTANCE_URL);
		}
	} else if (query_handle(rest->query, req, path)) {
		/* served by query.c */
	} else if (strncmp(path, "/services/data/v", 16) == 0) {
		do_data(rest, req, path);
	} else if (strcmp(path, "/_mock/publish") == 0) {
		if (method_is(req, EVHTTP_REQ_POST))
			do_mock_publish(rest, req);
	} else if (strcmp(path, "/_mock/stats") == 0) {
		if (method_is(req, EVHTTP_REQ_GET))
			do_stats(rest, req);
	} else if (strcmp(path, "/_mock/revoke-tokens") == 0) {
		if (method_is(req, EVHTTP_REQ_POST)) {
			org_tokens_revoke(rest->org);
			cometd_sessions_revoked(rest->cd);
			log_info("tokens revoked", NULL);
			util_reply_text(req, 200, "{\"revoked\":true}", NULL);
		}
	} else if (strcmp(path, "/_mock/drop-clients") == 0) {
		if (method_is(req, EVHTTP_REQ_POST)) {
			snprintf(reply, sizeof(reply), "{\"dropped\":%u}",
			         cometd_drop_clients(rest->cd));
			log_info("clients dropped", NULL);
			util_reply_text(req, 200, reply, NULL);
		}
	} else if (!do_mock_faults(rest, req, path)) {
		util_reply_text(req, 404, NOT_FOUND, "not found");
	}
}

void
rest_set_faults(struct rest *rest, struct fault_plan *plan)
{
	rest->faults = plan;
}
