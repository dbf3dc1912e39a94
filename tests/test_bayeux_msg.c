#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "harness.h"
#include "sfrelay/bayeux_msg.h"

#define DATA_DIR "tests/data/bayeux/"
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---------------------------------------------------------- */

/* Parses text that must be exactly one JSON document. Owned, or NULL. */
static json_object *
parse_exact(const char *text, size_t len)
{
	struct json_tokener *tok =
	    json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
	json_object *o;

	assert_non_null(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, text, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* The buffer's bytes as an owned NUL-terminated string. */
static char *
buf_text(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);
	char *s = malloc(len + 1);

	assert_non_null(s);
	assert_int_equal(evbuffer_copyout(b, s, len), (ev_ssize_t)len);
	s[len] = '\0';
	return s;
}

static const char *
show(const char *s)
{
	return s == NULL ? "(null)" : s;
}

static json_object *
get_path(json_object *o, const char *a, const char *b, const char *c)
{
	const char *keys[3] = {a, b, c};
	size_t i;

	for (i = 0; i < 3 && keys[i] != NULL; i++) {
		if (!json_object_object_get_ex(o, keys[i], &o))
			return NULL;
	}
	return o;
}

static const char *
get_string(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* ---- decoding data files ---------------------------------------------- */

struct exp_msg {
	enum bayeux_kind kind;
	const char *channel;
	int successful;
	const char *client_id;
	const char *error;
	const char *subscription;
	const char *failure_reason;
	int has_advice;
	enum bayeux_reconnect reconnect;
	long interval_ms;
	long timeout_ms;
	int multiple_clients;
	int replay_supported;
	const char *position;
	const char *event_type;
	const char *created;
};

struct decode_case {
	const char *file;
	size_t count;
	struct exp_msg msgs[9];
};

#define CLIENT "4l1t6d8mk1hf6h1jyfezmqhbymtz"
#define CONNECT_OK                                                             \
	{                                                                      \
		.kind = BAYEUX_MSG_META, .channel = "/meta/connect",           \
		.successful = 1, .client_id = CLIENT, .has_advice = 1,         \
		.reconnect = BAYEUX_RECONNECT_RETRY, .interval_ms = 0,         \
		.timeout_ms = 110000,                                          \
	}

static const struct decode_case decode_cases[] = {
    {"handshake_ok.json",
     1,
     {{.kind = BAYEUX_MSG_META,
       .channel = "/meta/handshake",
       .successful = 1,
       .client_id = CLIENT,
       .replay_supported = 1}}},
    {"handshake_ok_advice.json",
     1,
     {{.kind = BAYEUX_MSG_META,
       .channel = "/meta/handshake",
       .successful = 1,
       .client_id = "2n1e9ub3sqkh1lm1mzqcowdtxrdj",
       .replay_supported = 1,
       .has_advice = 1,
       .reconnect = BAYEUX_RECONNECT_RETRY,
       .interval_ms = 0,
       .timeout_ms = 110000}}},
    {"handshake_no_replay.json",
     1,
     {{.kind = BAYEUX_MSG_META,
       .channel = "/meta/handshake",
       .successful = 1,
       .client_id = "1xq7h4p7n3bzx0e9wq2j6yv8fjty"}}},
    {"handshake_denied.json",
     1,
     {{.kind = BAYEUX_MSG_META,
       .channel = "/meta/handshake",
       .error = "403::Handshake denied",
       .failure_reason = "401::Authentication invalid",
       .replay_supported = 1,
       .has_advice = 1,
       .reconnect = BAYEUX_RECONNECT_NONE,
       .interval_ms = -1,
       .timeout_ms = -1}}},
    {"subscribe_ok.json",
     2,
     {{.kind = BAYEUX_MSG_META,
       .channel = "/meta/subscribe",
       .successful = 1,
       .client_id = CLIENT,
       .subscription = "/topic/AccountWatch"},
      {.kind = BAYEUX_MSG_META,
       .channel = "/meta/subscribe",
       .successful = 1,
       .client_id = CLIENT,
       .subscription = "/data/AccountChangeEvent"}}},
    {"subscribe_bad_replay.json",
     1,
     {{.kind = BAYEUX_MSG_META,
       .channel = "/meta/subscribe",
       .client_id = CLIENT,
       .subscription = "/topic/AccountWatch",
       .error = "400::The replayId {7} you provided was invalid.  Please "
                "provide a valid ID, -2 to replay all events, or -1 to "
                "replay only new events."}}},
    {"subscribe_unknown_client.json",
     1,
     {{.kind = BAYEUX_MSG_META,
       .channel = "/meta/subscribe",
       .subscription = "/topic/AccountWatch",
       .error = "403::Unknown client",
       .has_advice = 1,
       .reconnect = BAYEUX_RECONNECT_HANDSHAKE,
       .interval_ms = 0,
       .timeout_ms = -1}}},
    {"connect_ok.json", 1, {CONNECT_OK}},
    {"connect_auth_invalid.json",
     1,
     {{.kind = BAYEUX_MSG_META,
       .channel = "/meta/connect",
       .error = "401::Authentication invalid",
       .has_advice = 1,
       .reconnect = BAYEUX_RECONNECT_NONE,
       .interval_ms = -1,
       .timeout_ms = -1}}},
    {"connect_unknown_client.json",
     1,
     {{.kind = BAYEUX_MSG_META,
       .channel = "/meta/connect",
       .error = "403::Unknown client",
       .has_advice = 1,
       .reconnect = BAYEUX_RECONNECT_HANDSHAKE,
       .interval_ms = 0,
       .timeout_ms = -1}}},
    {"connect_multiple_clients.json",
     1,
     {{.kind = BAYEUX_MSG_META,
       .channel = "/meta/connect",
       .successful = 1,
       .client_id = "3c8k1b0g2f6hp1pnm5o3mk4hwz1f",
       .has_advice = 1,
       .reconnect = BAYEUX_RECONNECT_RETRY,
       .interval_ms = 2000,
       .timeout_ms = 110000,
       .multiple_clients = 1}}},
    {"disconnect_ok.json",
     1,
     {{.kind = BAYEUX_MSG_META,
       .channel = "/meta/disconnect",
       .successful = 1,
       .client_id = CLIENT}}},
    {"event_pushtopic.json",
     1,
     {{.kind = BAYEUX_MSG_EVENT,
       .channel = "/topic/AccountWatch",
       .position = "1234",
       .event_type = "updated",
       .created = "2025-11-26T19:27:53.000Z"}}},
    {"event_generic.json",
     1,
     {{.kind = BAYEUX_MSG_EVENT,
       .channel = "/u/Notifications",
       .position = "7",
       .created = "2025-11-26T19:30:02.117Z"}}},
    {"event_platform.json",
     1,
     {{.kind = BAYEUX_MSG_EVENT,
       .channel = "/event/Low_Ink__e",
       .position = "90211",
       .created = "2025-11-26T19:31:44.512Z"}}},
    /* commitTimestamp 1764185273000: `date -u -d @1764185273` prints
     * Wed Nov 26 19:27:53 UTC 2025. */
    {"event_cdc.json",
     1,
     {{.kind = BAYEUX_MSG_EVENT,
       .channel = "/data/AccountChangeEvent",
       .position = "14467",
       .event_type = "UPDATE",
       .created = "2025-11-26T19:27:53.000Z"}}},
    {"batch_connect_first.json",
     4,
     {CONNECT_OK,
      {.kind = BAYEUX_MSG_EVENT,
       .channel = "/topic/AccountWatch",
       .position = "1235",
       .event_type = "created",
       .created = "2025-11-26T19:40:00.000Z"},
      {.kind = BAYEUX_MSG_EVENT,
       .channel = "/event/LoginEventStream",
       .position = "4418",
       .created = "2025-11-26T19:40:01.250Z"},
      /* 1764186000250: `date -u -d @1764186000` is 19:40:00 */
      {.kind = BAYEUX_MSG_EVENT,
       .channel = "/data/AccountChangeEvent",
       .position = "14468",
       .event_type = "CREATE",
       .created = "2025-11-26T19:40:00.250Z"}}},
    {"batch_events_first.json",
     3,
     {{.kind = BAYEUX_MSG_EVENT,
       .channel = "/u/Notifications",
       .position = "8",
       .created = "2025-11-26T19:45:10.000Z"},
      {.kind = BAYEUX_MSG_EVENT,
       .channel = "/topic/AccountWatch",
       .position = "1236",
       .event_type = "deleted",
       .created = "2025-11-26T19:45:11.000Z"},
      CONNECT_OK}},
    {"meta_odd_shapes.json",
     5,
     {{.kind = BAYEUX_MSG_META,
       .channel = "/meta/handshake",
       .has_advice = 1,
       .reconnect = BAYEUX_RECONNECT_UNSET,
       .interval_ms = -1,
       .timeout_ms = -1},
      {.kind = BAYEUX_MSG_META, .channel = "/meta/connect"},
      {.kind = BAYEUX_MSG_META,
       .channel = "/meta/connect",
       .successful = 1,
       .has_advice = 1,
       .reconnect = BAYEUX_RECONNECT_HANDSHAKE,
       .interval_ms = -1,
       .timeout_ms = 110000},
      /* ext.replay counts only on a handshake reply */
      {.kind = BAYEUX_MSG_META,
       .channel = "/meta/unsubscribe",
       .successful = 1,
       .client_id = CLIENT,
       .subscription = "/topic/AccountWatch"},
      {.kind = BAYEUX_MSG_META,
       .channel = "/meta/subscribe",
       .error = "403::Organization concurrent user limit exceeded",
       .has_advice = 1,
       .interval_ms = -1,
       .timeout_ms = -1}}},
    {"events_hostile.json",
     9,
     {{.kind = BAYEUX_MSG_EVENT,
       .channel = "/topic/AccountWatch",
       .position = ""},
      {.kind = BAYEUX_MSG_EVENT,
       .channel = "/topic/AccountWatch",
       .position = ""},
      {.kind = BAYEUX_MSG_EVENT,
       .channel = "/topic/AccountWatch",
       .position = ""},
      {.kind = BAYEUX_MSG_EVENT, .channel = "/u/Notifications", .position = ""},
      {.kind = BAYEUX_MSG_EVENT,
       .channel = "/event/Low_Ink__e",
       .position = ""},
      {.kind = BAYEUX_MSG_EVENT,
       .channel = "/data/AccountChangeEvent",
       .position = "14467"},
      {.kind = BAYEUX_MSG_EVENT,
       .channel = "/topic/AccountWatch",
       .position = "55"},
      /* 253402300800000 ms is year 10000: no four-digit form */
      {.kind = BAYEUX_MSG_EVENT,
       .channel = "/data/ChangeEvents",
       .position = "-1",
       .event_type = "DELETE"},
      /* a channel of no known shape: position only */
      {.kind = BAYEUX_MSG_EVENT, .channel = "/chat/room", .position = "3"}}},
};

/* The payload slice must be exactly the JSON text of the element's
 * "data" (or "{}" when there is none), checked against an independent
 * parse of the whole file. */
static void
check_payload(const char *ctx, const struct bayeux_msg *m, json_object *elem)
{
	json_object *data = NULL, *parsed;

	assert_non_null(m->ev.payload);
	if (!json_object_object_get_ex(elem, "data", &data) || data == NULL) {
		if (m->ev.payload_len != 2 ||
		    memcmp(m->ev.payload, "{}", 2) != 0)
			fail_msg("%s: payload without data: got %.*s", ctx,
			         (int)m->ev.payload_len, m->ev.payload);
		return;
	}
	parsed = parse_exact(m->ev.payload, m->ev.payload_len);
	if (parsed == NULL)
		fail_msg("%s: payload is not one JSON value: %.*s", ctx,
		         (int)m->ev.payload_len, m->ev.payload);
	if (!json_object_equal(parsed, data))
		fail_msg("%s: payload differs from data: %.*s", ctx,
		         (int)m->ev.payload_len, m->ev.payload);
	json_object_put(parsed);
}

static void
check_msg(const char *ctx, const struct exp_msg *e, const struct bayeux_msg *m,
          json_object *elem)
{
	expect_long(ctx, "kind", e->kind, m->kind);
	expect_str(ctx, "channel", e->channel, m->channel);
	expect_long(ctx, "successful", e->successful, m->successful);
	expect_str(ctx, "client_id", e->client_id, m->client_id);
	expect_str(ctx, "error", e->error, m->error);
	expect_str(ctx, "subscription", e->subscription, m->subscription);
	expect_str(ctx, "failure_reason", e->failure_reason, m->failure_reason);
	expect_long(ctx, "replay_supported", e->replay_supported,
	            m->replay_supported);
	expect_long(ctx, "has_advice", e->has_advice, m->has_advice);
	if (e->has_advice) {
		expect_long(ctx, "reconnect", e->reconnect,
		            m->advice.reconnect);
		expect_long(ctx, "interval", e->interval_ms,
		            m->advice.interval_ms);
		expect_long(ctx, "timeout", e->timeout_ms,
		            m->advice.timeout_ms);
		expect_long(ctx, "multiple_clients", e->multiple_clients,
		            m->advice.multiple_clients);
	} else {
		expect_long(ctx, "reconnect", BAYEUX_RECONNECT_UNSET,
		            m->advice.reconnect);
		expect_long(ctx, "interval", -1, m->advice.interval_ms);
		expect_long(ctx, "timeout", -1, m->advice.timeout_ms);
		expect_long(ctx, "multiple_clients", 0,
		            m->advice.multiple_clients);
	}

	/* The event view is complete on every message. */
	expect_long(ctx, "ev.src", EVENT_SRC_STREAM, m->ev.src);
	expect_str(ctx, "ev.channel", e->channel, m->ev.channel);
	expect_str(ctx, "position", e->position == NULL ? "" : e->position,
	           m->ev.position);
	expect_str(ctx, "event_type", e->event_type, m->ev.event_type);
	expect_str(ctx, "created", e->created, m->ev.created);
	if (m->kind == BAYEUX_MSG_EVENT)
		check_payload(ctx, m, elem);
}

static void
test_decode_files(void **state)
{
	char err[256], ctx[128];
	size_t i, j, len;

	(void)state;
	for (i = 0; i < ARRAY_LEN(decode_cases); i++) {
		const struct decode_case *c = &decode_cases[i];
		char *body = load_test_file(DATA_DIR, c->file, &len);
		json_object *ref = json_tokener_parse(body);
		struct bayeux_batch *b;

		assert_non_null(ref);
		b = bayeux_decode(body, len, err, sizeof(err));
		if (b == NULL)
			fail_msg("%s: decode failed: %s", c->file, err);
		assert_string_equal(err, "");
		expect_long(c->file, "count", (long)c->count,
		            (long)bayeux_batch_count(b));
		for (j = 0; j < c->count; j++) {
			snprintf(ctx, sizeof(ctx), "%s[%zu]", c->file, j);
			check_msg(ctx, &c->msgs[j], bayeux_batch_msg(b, j),
			          json_object_array_get_idx(ref, j));
		}
		assert_null(bayeux_batch_msg(b, c->count));
		bayeux_batch_free(b);
		json_object_put(ref);
		free(body);
	}
}

/* Everything a message points at belongs to the batch, not to the body. */
static void
test_batch_outlives_body(void **state)
{
	char err[128];
	size_t len;
	char *body = load_test_file(DATA_DIR, "batch_connect_first.json", &len);
	struct bayeux_batch *b = bayeux_decode(body, len, err, sizeof(err));
	const struct bayeux_msg *m;

	(void)state;
	assert_non_null(b);
	memset(body, 'x', len);
	free(body);
	assert_int_equal(bayeux_batch_count(b), 4);
	m = bayeux_batch_msg(b, 0);
	assert_string_equal(m->client_id, CLIENT);
	m = bayeux_batch_msg(b, 3);
	assert_string_equal(m->channel, "/data/AccountChangeEvent");
	assert_string_equal(m->ev.position, "14468");
	assert_string_equal(m->ev.created, "2025-11-26T19:40:00.250Z");
	assert_true(m->ev.payload_len > 100);
	assert_memory_equal(m->ev.payload, "{\"schema\":", 10);
	bayeux_batch_free(b);
}

/* ---- payload round trips, field by field ------------------------------ */

static json_object *
decode_single_payload(const char *file, struct bayeux_batch **bp)
{
	char err[128];
	size_t len;
	char *body = load_test_file(DATA_DIR, file, &len);
	const struct bayeux_msg *m;
	json_object *p;

	*bp = bayeux_decode(body, len, err, sizeof(err));
	free(body);
	if (*bp == NULL)
		fail_msg("%s: %s", file, err);
	m = bayeux_batch_msg(*bp, 0);
	assert_non_null(m);
	assert_int_equal(m->kind, BAYEUX_MSG_EVENT);
	p = parse_exact(m->ev.payload, m->ev.payload_len);
	assert_non_null(p);
	return p;
}

static void
test_payload_pushtopic(void **state)
{
	struct bayeux_batch *b;
	json_object *p = decode_single_payload("event_pushtopic.json", &b);
	json_object *so = get_path(p, "sobject", NULL, NULL), *v;

	(void)state;
	assert_non_null(so);
	assert_string_equal(get_string(so, "Id"), "001xx000003DGb2AAG");
	assert_string_equal(get_string(so, "Name"), "Acme Corp");
	assert_string_equal(get_string(so, "Website"),
	                    "https://acme.example.com/about");
	assert_true(json_object_object_get_ex(so, "AnnualRevenue", &v));
	assert_true(json_object_is_type(v, json_type_double));
	assert_true(json_object_get_double(v) == 1250000.5);
	assert_true(json_object_object_get_ex(so, "IsDeleted", &v));
	assert_true(json_object_is_type(v, json_type_boolean));
	assert_false(json_object_get_boolean(v));
	assert_true(json_object_object_get_ex(so, "ParentId", &v));
	assert_null(v);
	v = get_path(p, "event", "replayId", NULL);
	assert_int_equal(json_object_get_int64(v), 1234);
	assert_string_equal(
	    get_string(get_path(p, "event", NULL, NULL), "type"), "updated");
	json_object_put(p);
	bayeux_batch_free(b);
}

static void
test_payload_generic(void **state)
{
	struct bayeux_batch *b;
	json_object *p = decode_single_payload("event_generic.json", &b);

	(void)state;
	assert_string_equal(get_string(p, "payload"),
	                    "Broadcast: maintenance window starts at 22:00 "
	                    "UTC \"sharp\"");
	assert_string_equal(
	    get_string(get_path(p, "event", NULL, NULL), "createdDate"),
	    "2025-11-26T19:30:02.117Z");
	json_object_put(p);
	bayeux_batch_free(b);
}

static void
test_payload_platform(void **state)
{
	struct bayeux_batch *b;
	json_object *p = decode_single_payload("event_platform.json", &b);
	json_object *pl = get_path(p, "payload", NULL, NULL), *v;

	(void)state;
	assert_string_equal(get_string(p, "schema"), "dffQ2QLzDNHqwB8_sHMxdA");
	assert_string_equal(get_string(pl, "CreatedById"),
	                    "005xx000001X8UzAAK");
	assert_string_equal(get_string(pl, "Printer_Model__c"), "XZO-5");
	assert_true(json_object_object_get_ex(pl, "Ink_Percentage__c", &v));
	assert_true(json_object_get_double(v) == 0.2);
	assert_string_equal(
	    get_string(get_path(p, "event", NULL, NULL), "EventUuid"),
	    "b4e8f3d2-6c1a-4b7e-9f0d-2a5c8e1b3d47");
	json_object_put(p);
	bayeux_batch_free(b);
}

static void
test_payload_cdc(void **state)
{
	struct bayeux_batch *b;
	json_object *p = decode_single_payload("event_cdc.json", &b);
	json_object *h = get_path(p, "payload", "ChangeEventHeader", NULL);
	json_object *v;

	(void)state;
	assert_non_null(h);
	assert_string_equal(get_string(h, "entityName"), "Account");
	assert_string_equal(get_string(h, "changeType"), "UPDATE");
	assert_string_equal(get_string(h, "commitUser"), "005xx000001X8UzAAK");
	assert_string_equal(get_string(h, "transactionKey"),
	                    "0002343d-9d90-e395-ed20-cf416ba652ad");
	assert_string_equal(get_string(h, "changeOrigin"),
	                    "com/salesforce/api/soap/62.0;client="
	                    "SfdcInternalAPI/");
	assert_true(json_object_object_get_ex(h, "recordIds", &v));
	assert_int_equal(json_object_array_length(v), 1);
	assert_string_equal(
	    json_object_get_string(json_object_array_get_idx(v, 0)),
	    "001xx000003DGb2AAG");
	assert_true(json_object_object_get_ex(h, "changedFields", &v));
	assert_int_equal(json_object_array_length(v), 2);
	assert_string_equal(
	    json_object_get_string(json_object_array_get_idx(v, 1)),
	    "LastModifiedDate");
	assert_true(json_object_object_get_ex(h, "commitTimestamp", &v));
	assert_true(json_object_get_int64(v) == INT64_C(1764185273000));
	assert_true(json_object_object_get_ex(h, "commitNumber", &v));
	assert_true(json_object_get_int64(v) == INT64_C(10704285426));
	assert_true(json_object_object_get_ex(h, "sequenceNumber", &v));
	assert_int_equal(json_object_get_int(v), 1);
	json_object_put(p);
	bayeux_batch_free(b);
}

/* ---- replayId shapes -------------------------------------------------- */

struct replay_case {
	const char *json; /* the replayId value as JSON text */
	const char *want; /* the decoded position */
};

static const struct replay_case replay_cases[] = {
    {"1234", "1234"},
    {"0", "0"},
    {"-1", "-1"},
    {"9223372036854775807", "9223372036854775807"},
    {"-9223372036854775808", "-9223372036854775808"},
    {"18446744073709551615", "18446744073709551615"},
    {"\"1234\"", "1234"},
    {"\"-5\"", "-5"},
    {"\"007\"", "007"},
    {"\"\"", ""},
    {"\"-\"", ""},
    {"\"--5\"", ""},
    {"\"12a\"", ""},
    {"\"+5\"", ""},
    {"\" 5\"", ""},
    {"\"5 \"", ""},
    {"\"1\\u00002\"", ""},
    {"\"\\u0661\\u0662\"", ""},
    {"1.5", ""},
    {"1e3", ""},
    {"-0.0", ""},
    {"true", ""},
    {"false", ""},
    {"null", ""},
    {"{}", ""},
    {"{\"value\":5}", ""},
    {"[1]", ""},
};

static void
test_replay_id_shapes(void **state)
{
	char body[512], err[128];
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(replay_cases); i++) {
		const struct replay_case *c = &replay_cases[i];
		struct bayeux_batch *b;
		const struct bayeux_msg *m;
		json_object *ref;

		snprintf(body, sizeof(body),
		         "[{\"channel\":\"/topic/AccountWatch\",\"data\":{"
		         "\"event\":{\"createdDate\":\"2025-11-26T19:27:53."
		         "000Z\",\"replayId\":%s,\"type\":\"updated\"},"
		         "\"sobject\":{\"Id\":\"001xx000003DGb2AAG\"}}}]",
		         c->json);
		b = bayeux_decode(body, strlen(body), err, sizeof(err));
		if (b == NULL)
			fail_msg("replayId %s: decode failed: %s", c->json,
			         err);
		assert_int_equal(bayeux_batch_count(b), 1);
		m = bayeux_batch_msg(b, 0);
		expect_str(c->json, "position", c->want, m->ev.position);
		/* The rest of the event is unaffected by a bad replayId. */
		expect_str(c->json, "created", "2025-11-26T19:27:53.000Z",
		           m->ev.created);
		expect_str(c->json, "event_type", "updated", m->ev.event_type);
		ref = json_tokener_parse(body);
		assert_non_null(ref);
		check_payload(c->json, m, json_object_array_get_idx(ref, 0));
		json_object_put(ref);
		bayeux_batch_free(b);
	}
}

/* ---- CDC commitTimestamp -> ISO-8601 ---------------------------------- */

/* Decodes one CDC event with the given commitTimestamp text and returns
 * its created text (copied into out) or NULL. */
static const char *
cdc_created(const char *ts_json, char *out, size_t outlen)
{
	char body[512], err[128];
	struct bayeux_batch *b;
	const struct bayeux_msg *m;
	const char *r = NULL;

	snprintf(body, sizeof(body),
	         "[{\"channel\":\"/data/AccountChangeEvent\",\"data\":{"
	         "\"payload\":{\"ChangeEventHeader\":{\"entityName\":"
	         "\"Account\",\"changeType\":\"UPDATE\",\"commitTimestamp\":"
	         "%s}},\"event\":{\"replayId\":1}}}]",
	         ts_json);
	b = bayeux_decode(body, strlen(body), err, sizeof(err));
	if (b == NULL)
		fail_msg("commitTimestamp %s: %s", ts_json, err);
	m = bayeux_batch_msg(b, 0);
	assert_non_null(m);
	assert_string_equal(m->ev.event_type, "UPDATE");
	if (m->ev.created != NULL) {
		snprintf(out, outlen, "%s", m->ev.created);
		r = out;
	}
	bayeux_batch_free(b);
	return r;
}

struct ts_case {
	const char *ms;
	const char *want;
};

/* Each seconds value checked with `date -u -d @<ms/1000>`. */
static const struct ts_case ts_cases[] = {
    {"1764185273000", "2025-11-26T19:27:53.000Z"},
    {"1764186000250", "2025-11-26T19:40:00.250Z"},
    {"0", "1970-01-01T00:00:00.000Z"},
    {"-1", "1969-12-31T23:59:59.999Z"},
    {"999", "1970-01-01T00:00:00.999Z"},
    {"-1000", "1969-12-31T23:59:59.000Z"},
    {"-1001", "1969-12-31T23:59:58.999Z"},
    {"951782400123", "2000-02-29T00:00:00.123Z"},
    {"1583020799500", "2020-02-29T23:59:59.500Z"},
    {"1709251199999", "2024-02-29T23:59:59.999Z"},
    {"4102444799999", "2099-12-31T23:59:59.999Z"},
    {"4107542400000", "2100-03-01T00:00:00.000Z"},
    {"-2208988800000", "1900-01-01T00:00:00.000Z"},
    {"-62167219200000", "0000-01-01T00:00:00.000Z"},
    {"253402300799999", "9999-12-31T23:59:59.999Z"},
    {"-62167219200001", NULL},
    {"253402300800000", NULL},
    {"9223372036854775807", NULL},
    {"-9223372036854775808", NULL},
    {"18446744073709551615", NULL},
    {"1764185273000.0", NULL},
    {"\"1764185273000\"", NULL},
    {"null", NULL},
    {"true", NULL},
};

static void
test_cdc_created_known(void **state)
{
	char out[64];
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(ts_cases); i++) {
		expect_str(ts_cases[i].ms, "created", ts_cases[i].want,
		           cdc_created(ts_cases[i].ms, out, sizeof(out)));
	}
}

static int
is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* An independent oracle: walks whole years and months from 1970. Slow
 * but obviously right. */
static void
oracle_iso(int64_t ms, char *out, size_t outlen)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30,
	                              31, 31, 30, 31, 30, 31};
	int64_t days = 0, rem_ms = ms, y = 1970, len;
	int m = 0, sod;

	while (rem_ms < 0) {
		rem_ms += INT64_C(86400000);
		days--;
	}
	days += rem_ms / 86400000;
	rem_ms %= 86400000;
	for (;;) {
		if (days < 0) {
			y--;
			days += is_leap(y) ? 366 : 365;
			continue;
		}
		len = is_leap(y) ? 366 : 365;
		if (days < len)
			break;
		days -= len;
		y++;
	}
	for (;;) {
		len = mdays[m] + (m == 1 && is_leap(y) ? 1 : 0);
		if (days < len)
			break;
		days -= len;
		m++;
	}
	sod = (int)(rem_ms / 1000);
	snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)y,
	         m + 1, (int)days + 1, sod / 3600, sod / 60 % 60, sod % 60,
	         (int)(rem_ms % 1000));
}

static void
test_cdc_created_sweep(void **state)
{
	/* 1600-01-01 .. 2500-01-01, stepping a little over 97 days so the
	 * time of day and the milliseconds vary too. */
	const int64_t from = INT64_C(-11676096000000);
	const int64_t to = INT64_C(16725225600000);
	const int64_t step = INT64_C(97) * 86400000 + 3723001;
	char ts[32], got[64], want[64], ctx[48];
	int64_t ms;
	int n = 0;

	(void)state;
	for (ms = from; ms <= to; ms += step) {
		snprintf(ts, sizeof(ts), "%" PRId64, ms);
		oracle_iso(ms, want, sizeof(want));
		snprintf(ctx, sizeof(ctx), "commitTimestamp %s", ts);
		expect_str(ctx, "created", want,
		           cdc_created(ts, got, sizeof(got)));
		n++;
	}
	assert_true(n > 3000);
}

/* ---- malformed bodies ------------------------------------------------- */

/* The malformed table shared with test_bayeux_stream.c (harness.c). */
static void
test_decode_malformed(void **state)
{
	char err[256];
	size_t i, len;

	(void)state;
	for (i = 0; i < harness_bad_bodies_count; i++) {
		const struct harness_bad_body *c = &harness_bad_bodies[i];

		len = c->len ? c->len : strlen(c->body);
		err[0] = '\0';
		if (bayeux_decode(c->body, len, err, sizeof(err)) != NULL)
			fail_msg("%s: decoded", c->name);
		if (c->decode_has != NULL && strstr(err, c->decode_has) == NULL)
			fail_msg("%s: error \"%s\" lacks \"%s\"", c->name, err,
			         c->decode_has);
	}
}

static void
test_decode_degenerate_args(void **state)
{
	char err[64];

	(void)state;
	assert_null(bayeux_decode(NULL, 3, err, sizeof(err)));
	assert_string_equal(err, "no body");
	assert_null(bayeux_decode("[]", 0, err, sizeof(err)));
	assert_string_equal(err, "empty body");
	/* The length is checked before any byte is read. */
	assert_null(bayeux_decode("[]", (size_t)INT_MAX + 1, err, sizeof(err)));
	assert_non_null(strstr(err, "too large"));
	/* No error buffer, a one-byte one, a short one. */
	assert_null(bayeux_decode("nope", 4, NULL, 0));
	assert_null(bayeux_decode("nope", 4, err, 0));
	err[0] = 'z';
	assert_null(bayeux_decode("nope", 4, err, 1));
	assert_int_equal(err[0], '\0');
	assert_null(bayeux_decode("[5]", 3, err, 8));
	assert_int_equal(strlen(err), 7);
	/* NULL batches are harmless. */
	assert_int_equal(bayeux_batch_count(NULL), 0);
	assert_null(bayeux_batch_msg(NULL, 0));
	bayeux_batch_free(NULL);
}

static void
test_decode_truncated_file(void **state)
{
	char err[256];
	size_t len, k, end;
	char *body = load_test_file(DATA_DIR, "truncated_connect.json", &len);
	struct bayeux_batch *b;

	(void)state;
	assert_null(bayeux_decode(body, len, err, sizeof(err)));
	assert_non_null(strstr(err, "truncated"));
	free(body);

	/* Every cut of a body with events fails; the body itself and the
	 * body up to its closing bracket decode. */
	body = load_test_file(DATA_DIR, "batch_connect_first.json", &len);
	end = (size_t)(strrchr(body, ']') - body) + 1;
	for (k = 0; k < end; k++) {
		err[0] = '\0';
		b = bayeux_decode(body, k, err, sizeof(err));
		if (b != NULL)
			fail_msg("prefix of %zu bytes decoded", k);
		assert_true(err[0] != '\0');
	}
	for (k = end; k <= len; k++) {
		b = bayeux_decode(body, k, err, sizeof(err));
		if (b == NULL)
			fail_msg("%zu bytes: %s", k, err);
		assert_int_equal(bayeux_batch_count(b), 4);
		bayeux_batch_free(b);
	}
	free(body);
}

static void
test_decode_empty_batch(void **state)
{
	static const char *bodies[] = {"[]", " [ ] \n", "\r\n[\n]\r\n"};
	char err[64];
	struct bayeux_batch *b;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(bodies); i++) {
		b = bayeux_decode(bodies[i], strlen(bodies[i]), err,
		                  sizeof(err));
		assert_non_null(b);
		assert_int_equal(bayeux_batch_count(b), 0);
		assert_null(bayeux_batch_msg(b, 0));
		bayeux_batch_free(b);
	}
}

/* An event whose data nests `levels` arrays; the body's depth is that
 * plus two (the outer array and the message object). */
static char *
deep_body(size_t levels)
{
	static const char head[] = "[{\"channel\":\"/topic/Deep\",\"data\":";
	static const char tail[] = "}]";
	size_t hl = sizeof(head) - 1, tl = sizeof(tail) - 1;
	char *s = malloc(hl + 2 * levels + tl + 1);

	assert_non_null(s);
	memcpy(s, head, hl);
	memset(s + hl, '[', levels);
	memset(s + hl + levels, ']', levels);
	memcpy(s + hl + 2 * levels, tail, tl + 1);
	return s;
}

static void
test_decode_nesting_limit(void **state)
{
	char err[128];
	struct bayeux_batch *b;
	char *s;

	(void)state;
	s = deep_body(62); /* 64 levels: the limit */
	b = bayeux_decode(s, strlen(s), err, sizeof(err));
	if (b == NULL)
		fail_msg("64 levels: %s", err);
	assert_int_equal(bayeux_batch_msg(b, 0)->ev.payload_len, 124);
	bayeux_batch_free(b);
	free(s);

	s = deep_body(63);
	assert_null(bayeux_decode(s, strlen(s), err, sizeof(err)));
	assert_non_null(strstr(err, "too deep"));
	free(s);

	s = deep_body(100000);
	assert_null(bayeux_decode(s, strlen(s), err, sizeof(err)));
	assert_non_null(strstr(err, "too deep"));
	free(s);
}

/* ---- bayeux_error_code ------------------------------------------------ */

static void
test_error_code(void **state)
{
	static const struct {
		const char *text;
		int want;
	} cases[] = {
	    {"403::Unknown client", 403},
	    {"401::Authentication invalid", 401},
	    {"403::Handshake denied", 403},
	    {"400::The replayId {5} you provided was invalid.  Please "
	     "provide a valid ID, -2 to replay all events, or -1 to replay "
	     "only new events.",
	     400},
	    {"403::Organization total events daily limit exceeded", 403},
	    {"403::", 403},
	    {"999::x", 999},
	    {"Unknown client", 0},
	    {"", 0},
	    {"403", 0},
	    {"403:Unknown client", 0},
	    {"::Unknown client", 0},
	    {" 403::Unknown client", 0},
	    {"-403::x", 0},
	    {"40a::x", 0},
	    {"12345::x", 0},
	    {"99999999999999999999::x", 0},
	    {NULL, 0},
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++)
		expect_long(show(cases[i].text), "code", cases[i].want,
		            bayeux_error_code(cases[i].text));
}

/* ---- builders --------------------------------------------------------- */

/* Parses the buffer's whole content as one JSON array of `n` objects. */
static json_object *
parse_request(struct evbuffer *out, size_t n)
{
	char *text = buf_text(out);
	json_object *o = parse_exact(text, strlen(text));
	size_t i;

	if (o == NULL)
		fail_msg("not one JSON document: %s", text);
	for (i = 0; text[i] != '\0'; i++) {
		if ((unsigned char)text[i] < 0x20)
			fail_msg("raw control byte at %zu: %s", i, text);
	}
	free(text);
	assert_true(json_object_is_type(o, json_type_array));
	assert_int_equal(json_object_array_length(o), n);
	for (i = 0; i < n; i++)
		assert_true(json_object_is_type(json_object_array_get_idx(o, i),
		                                json_type_object));
	return o;
}

static void
test_build_handshake(void **state)
{
	static const char want[] =
	    "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
	    "\"minimumVersion\":\"1.0\",\"supportedConnectionTypes\":["
	    "\"long-polling\"],\"ext\":{\"replay\":true}}]";
	struct evbuffer *out = evbuffer_new();
	json_object *req, *m, *v;
	char *text;

	(void)state;
	assert_int_equal(bayeux_build_handshake(out), 0);
	text = buf_text(out);
	assert_string_equal(text, want);
	free(text);

	req = parse_request(out, 1);
	m = json_object_array_get_idx(req, 0);
	assert_int_equal(json_object_object_length(m), 5);
	assert_string_equal(get_string(m, "channel"), "/meta/handshake");
	assert_string_equal(get_string(m, "version"), "1.0");
	assert_string_equal(get_string(m, "minimumVersion"), "1.0");
	assert_true(
	    json_object_object_get_ex(m, "supportedConnectionTypes", &v));
	assert_int_equal(json_object_array_length(v), 1);
	assert_string_equal(
	    json_object_get_string(json_object_array_get_idx(v, 0)),
	    "long-polling");
	v = get_path(m, "ext", NULL, NULL);
	assert_int_equal(json_object_object_length(v), 1);
	v = get_path(m, "ext", "replay", NULL);
	assert_true(json_object_is_type(v, json_type_boolean));
	assert_true(json_object_get_boolean(v));
	json_object_put(req);

	/* Appends: what was in the buffer stays in front. */
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add(out, "X", 1);
	assert_int_equal(bayeux_build_handshake(out), 0);
	assert_int_equal(evbuffer_get_length(out), sizeof(want));
	assert_int_equal(*(char *)evbuffer_pullup(out, 1), 'X');
	evbuffer_free(out);

	assert_int_equal(bayeux_build_handshake(NULL), -1);
}

static const char *const odd_client_ids[] = {
    CLIENT,
    "a\"b",
    "back\\slash\\",
    "line\nfeed\ttab\rreturn",
    "\x01\x1f\x7f\b\f",
    "/meta/connect",
    "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
    "</script>\"},{\"channel\":\"/meta/disconnect",
    "\\u0041",
};

static void
check_simple(json_object *m, const char *channel, const char *client_id,
             const char *conn_type)
{
	json_object *v;

	assert_int_equal(json_object_object_length(m),
	                 conn_type != NULL ? 3 : 2);
	assert_string_equal(get_string(m, "channel"), channel);
	assert_true(json_object_object_get_ex(m, "clientId", &v));
	assert_true(json_object_is_type(v, json_type_string));
	assert_int_equal(json_object_get_string_len(v), strlen(client_id));
	assert_string_equal(json_object_get_string(v), client_id);
	if (conn_type != NULL)
		assert_string_equal(get_string(m, "connectionType"), conn_type);
}

static void
test_build_connect_disconnect(void **state)
{
	struct evbuffer *out;
	json_object *req;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(odd_client_ids); i++) {
		out = evbuffer_new();
		assert_int_equal(bayeux_build_connect(out, odd_client_ids[i]),
		                 0);
		req = parse_request(out, 1);
		check_simple(json_object_array_get_idx(req, 0), "/meta/connect",
		             odd_client_ids[i], "long-polling");
		json_object_put(req);
		evbuffer_drain(out, evbuffer_get_length(out));

		assert_int_equal(
		    bayeux_build_disconnect(out, odd_client_ids[i]), 0);
		req = parse_request(out, 1);
		check_simple(json_object_array_get_idx(req, 0),
		             "/meta/disconnect", odd_client_ids[i], NULL);
		json_object_put(req);
		evbuffer_free(out);
	}
}

static void
test_build_connect_disconnect_errors(void **state)
{
	struct evbuffer *out = evbuffer_new();

	(void)state;
	assert_int_equal(bayeux_build_connect(out, NULL), -1);
	assert_int_equal(bayeux_build_connect(out, ""), -1);
	assert_int_equal(bayeux_build_connect(NULL, CLIENT), -1);
	assert_int_equal(bayeux_build_disconnect(out, NULL), -1);
	assert_int_equal(bayeux_build_disconnect(out, ""), -1);
	assert_int_equal(bayeux_build_disconnect(NULL, CLIENT), -1);
	assert_int_equal(evbuffer_get_length(out), 0);
	evbuffer_free(out);
}

struct sub_case {
	const char *name;
	const char *client_id;
	size_t n;
	const char *channels[5];
	const char *ids[5];
	size_t nkeys;
	const char *keys[5];   /* expected replay map, in any order */
	const char *values[5]; /* as the JSON integer text */
};

static const struct sub_case sub_cases[] = {
    {"one new-only",
     CLIENT,
     1,
     {"/topic/AccountWatch"},
     {"-1"},
     1,
     {"/topic/AccountWatch"},
     {"-1"}},
    {"every shape, filter stripped",
     CLIENT,
     4,
     {"/topic/AccountWatch?Name=Acme%20Corp", "/event/Low_Ink__e",
      "/data/AccountChangeEvent", "/u/Notifications"},
     {"-2", "1234", "-1", "0"},
     4,
     {"/topic/AccountWatch", "/event/Low_Ink__e", "/data/AccountChangeEvent",
      "/u/Notifications"},
     {"-2", "1234", "-1", "0"}},
    {"two filters, one channel",
     "a\"b\\c\n",
     2,
     {"/topic/AccountWatch?Name=A", "/topic/AccountWatch?Name=\"B\""},
     {"-2", "-2"},
     1,
     {"/topic/AccountWatch"},
     {"-2"}},
    {"big ids",
     CLIENT,
     3,
     {"/event/Big__e", "/event/LoginEventStream", "/data/ChangeEvents"},
     {"99999999999999999999", "9223372036854775807", "18446744073709551616"},
     3,
     {"/event/Big__e", "/event/LoginEventStream", "/data/ChangeEvents"},
     {"99999999999999999999", "9223372036854775807", "18446744073709551616"}},
};

static void
check_subscribe(const struct sub_case *c, struct evbuffer *out)
{
	char *text = buf_text(out), pair[128];
	json_object *req = parse_request(out, c->n), *m, *map, *v;
	const char *p;
	size_t i, k, found;

	for (i = 0; i < c->n; i++) {
		m = json_object_array_get_idx(req, i);
		assert_int_equal(json_object_object_length(m), 4);
		expect_str(c->name, "channel", "/meta/subscribe",
		           get_string(m, "channel"));
		expect_str(c->name, "clientId", c->client_id,
		           get_string(m, "clientId"));
		expect_str(c->name, "subscription", c->channels[i],
		           get_string(m, "subscription"));
		assert_int_equal(
		    json_object_object_length(get_path(m, "ext", NULL, NULL)),
		    1);
		map = get_path(m, "ext", "replay", NULL);
		assert_non_null(map);
		assert_true(json_object_is_type(map, json_type_object));
		expect_long(c->name, "map size", (long)c->nkeys,
		            json_object_object_length(map));
		for (k = 0; k < c->nkeys; k++) {
			if (!json_object_object_get_ex(map, c->keys[k], &v))
				fail_msg("%s: no key %s", c->name, c->keys[k]);
			if (!json_object_is_type(v, json_type_int))
				fail_msg("%s: %s is not an integer", c->name,
				         c->keys[k]);
			if (strlen(c->values[k]) < 19)
				assert_true(json_object_get_int64(v) ==
				            strtoll(c->values[k], NULL, 10));
		}
	}
	/* Beyond int64 json-c clamps on parsing, so look at the text: the
	 * digits must be there verbatim, as a number, and each key once per
	 * message (json-c would hide a duplicate key by keeping the last). */
	for (k = 0; k < c->nkeys; k++) {
		snprintf(pair, sizeof(pair), "\"%s\":%s", c->keys[k],
		         c->values[k]);
		found = 0;
		for (p = strstr(text, pair); p != NULL; p = strstr(p + 1, pair))
			found++;
		if (found != c->n)
			fail_msg("%s: %s found %zu times in %s", c->name, pair,
			         found, text);
	}
	json_object_put(req);
	free(text);
}

static void
test_build_subscribe(void **state)
{
	struct evbuffer *out;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(sub_cases); i++) {
		const struct sub_case *c = &sub_cases[i];

		out = evbuffer_new();
		if (bayeux_build_subscribe(out, c->client_id, c->channels,
		                           c->ids, c->n) != 0)
			fail_msg("%s: build failed", c->name);
		check_subscribe(c, out);
		evbuffer_free(out);
	}
}

struct sub_bad_case {
	const char *name;
	const char *client_id;
	size_t n;
	const char *channels[3];
	const char *ids[3];
};

static const struct sub_bad_case sub_bad_cases[] = {
    {"word id", CLIENT, 1, {"/topic/X"}, {"abc"}},
    {"empty id", CLIENT, 1, {"/topic/X"}, {""}},
    {"minus three", CLIENT, 1, {"/topic/X"}, {"-3"}},
    {"minus zero", CLIENT, 1, {"/topic/X"}, {"-0"}},
    {"minus alone", CLIENT, 1, {"/topic/X"}, {"-"}},
    {"leading zero", CLIENT, 1, {"/topic/X"}, {"007"}},
    {"digits then junk", CLIENT, 1, {"/topic/X"}, {"12a"}},
    {"plus sign", CLIENT, 1, {"/topic/X"}, {"+1"}},
    {"space", CLIENT, 1, {"/topic/X"}, {" 1"}},
    {"json injection", CLIENT, 1, {"/topic/X"}, {"1},\"x\":{"}},
    {"decimal", CLIENT, 1, {"/topic/X"}, {"1.0"}},
    {"bad id after good ones",
     CLIENT,
     3,
     {"/topic/X", "/topic/Y", "/topic/Z"},
     {"-1", "-2", "x"}},
    {"null id", CLIENT, 2, {"/topic/X", "/topic/Y"}, {"-1", NULL}},
    {"null channel", CLIENT, 2, {"/topic/X", NULL}, {"-1", "-1"}},
    {"empty channel", CLIENT, 1, {""}, {"-1"}},
    {"no slash", CLIENT, 1, {"topic/X"}, {"-1"}},
    {"filter only", CLIENT, 1, {"/?Name=A"}, {"-1"}},
    {"conflicting filters",
     CLIENT,
     2,
     {"/topic/X?Name=A", "/topic/X?Name=B"},
     {"-1", "-2"}},
    {"no channels", CLIENT, 0, {NULL}, {NULL}},
    {"null client", NULL, 1, {"/topic/X"}, {"-1"}},
    {"empty client", "", 1, {"/topic/X"}, {"-1"}},
};

static void
test_build_subscribe_errors(void **state)
{
	struct evbuffer *out = evbuffer_new();
	const char *const ch[] = {"/topic/X"};
	const char *const id[] = {"-1"};
	size_t i;

	(void)state;
	evbuffer_add(out, "keep", 4);
	for (i = 0; i < ARRAY_LEN(sub_bad_cases); i++) {
		const struct sub_bad_case *c = &sub_bad_cases[i];

		if (bayeux_build_subscribe(out, c->client_id, c->channels,
		                           c->ids, c->n) != -1)
			fail_msg("%s: accepted", c->name);
		/* Nothing is appended on failure. */
		expect_long(c->name, "length", 4,
		            (long)evbuffer_get_length(out));
	}
	assert_int_equal(bayeux_build_subscribe(out, CLIENT, NULL, id, 1), -1);
	assert_int_equal(bayeux_build_subscribe(out, CLIENT, ch, NULL, 1), -1);
	assert_int_equal(bayeux_build_subscribe(NULL, CLIENT, ch, id, 1), -1);
	assert_int_equal(evbuffer_get_length(out), 4);
	assert_memory_equal(evbuffer_pullup(out, 4), "keep", 4);
	evbuffer_free(out);
}

/* The builders' output goes back through the decoder's JSON reading the
 * way a server would see it: odd client ids survive a full round trip. */
static void
test_build_subscribe_odd_clients(void **state)
{
	const char *const ch[] = {"/topic/AccountWatch?Name=\"Acme\\Corp\"",
	                          "/event/Low_Ink__e"};
	const char *const id[] = {"-2", "90211"};
	struct sub_case c = {
	    .name = "odd client",
	    .n = 2,
	    .channels = {ch[0], ch[1]},
	    .ids = {"-2", "90211"},
	    .nkeys = 2,
	    .keys = {"/topic/AccountWatch", "/event/Low_Ink__e"},
	    .values = {"-2", "90211"},
	};
	struct evbuffer *out;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(odd_client_ids); i++) {
		out = evbuffer_new();
		c.client_id = odd_client_ids[i];
		assert_int_equal(
		    bayeux_build_subscribe(out, odd_client_ids[i], ch, id, 2),
		    0);
		check_subscribe(&c, out);
		evbuffer_free(out);
	}
}

/* ---- the first and last message of a body, read from its ends ------------ */

#define EDGE_CONNECT                                                             \
	"{\"clientId\":\"c1\",\"channel\":\"/meta/connect\",\"successful\":true}"
#define EVENT_TRICKY                                                           \
	"{\"data\":{\"s\":\"} ] { [ \\\" \\\\\",\"t\":\"\\\\\\\\\"}," \
	"\"channel\":\"/topic/T\"}"

struct edge_case {
	const char *body;
	const char *first; /* channel of the first message, or NULL */
	const char *last;  /* channel of the last message, or NULL */
};

static const struct edge_case edge_cases[] = {
    {"[" EDGE_CONNECT "," EVENT_TRICKY "]", "/meta/connect", "/topic/T"},
    {"[" EVENT_TRICKY "," EDGE_CONNECT "]", "/topic/T", "/meta/connect"},
    {" \n[ " EDGE_CONNECT " ]\r\n", "/meta/connect", "/meta/connect"},
    {"[" EVENT_TRICKY "]", "/topic/T", "/topic/T"},
    /* Not the end of an array of objects. */
    {"[]", NULL, NULL},
    {"[" EDGE_CONNECT, "/meta/connect", NULL},
    {"[" EDGE_CONNECT ",", "/meta/connect", NULL},
    {"{\"channel\":\"/meta/connect\"}", NULL, NULL},
    {"[1,2]", NULL, NULL},
    /* Malformed messages at the ends are not taken. */
    {"[{'channel':\"/meta/connect\"}," EDGE_CONNECT "]", NULL,
     "/meta/connect"},
    {"[" EDGE_CONNECT ",{\"channel\":\"/meta/connect\",}]", "/meta/connect",
     NULL},
    {"[{\"channel\":\"/meta/connect\"\"x\":1}]", NULL, NULL},
    /* An unbalanced bracket inside the last message. */
    {"[" EDGE_CONNECT ",{\"channel\":\"/u/X\",\"data\":[}]", "/meta/connect",
     NULL},
    /* A message without a channel is no message. */
    {"[{\"a\":1}]", NULL, NULL},
};

static const char *
edge_channel(struct bayeux_batch *b)
{
	const struct bayeux_msg *m = bayeux_batch_msg(b, 0);
	return m != NULL ? m->channel : NULL;
}

static void
expect_edge(const char *ctx, const char *body, const char *want,
            struct bayeux_batch *b)
{
	const char *got = edge_channel(b);
	if ((want == NULL) != (got == NULL) ||
	    (want != NULL && strcmp(want, got) != 0))
		fail_msg("%s of %s: got %s, want %s", ctx, body,
		         got ? got : "none", want ? want : "none");
	if (b != NULL)
		assert_int_equal(bayeux_batch_count(b), 1);
	bayeux_batch_free(b);
}

static void
test_decode_first_and_last(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(edge_cases) / sizeof(edge_cases[0]);
	     i++) {
		const struct edge_case *c = &edge_cases[i];
		size_t n = strlen(c->body);
		expect_edge("first", c->body, c->first,
		            bayeux_decode_first(c->body, n));
		expect_edge("last", c->body, c->last,
		            bayeux_decode_last(c->body, n));
	}
	/* The decoded message is whole: the connect reply's fields. */
	const char *body = "[" EVENT_TRICKY "," EDGE_CONNECT "]";
	struct bayeux_batch *b = bayeux_decode_last(body, strlen(body));
	const struct bayeux_msg *m = bayeux_batch_msg(b, 0);
	assert_non_null(m);
	assert_int_equal(m->kind, BAYEUX_MSG_META);
	assert_true(m->successful);
	assert_string_equal(m->client_id, "c1");
	bayeux_batch_free(b);
	assert_null(bayeux_decode_first(NULL, 0));
	assert_null(bayeux_decode_last(NULL, 0));
	assert_null(bayeux_decode_last("", 0));
}

/* A suffix of the body is enough for the last message, as long as it
 * holds all of it; a message over 4 KiB is not looked for. */
static void
test_decode_edges_bounded(void **state)
{
	(void)state;
	const char *body = "[" EVENT_TRICKY "," EDGE_CONNECT "]";
	size_t n = strlen(body), tail = strlen(EDGE_CONNECT "]");
	expect_edge("last of suffix", body, "/meta/connect",
	            bayeux_decode_last(body + n - tail, tail));
	expect_edge("last of short suffix", body, NULL,
	            bayeux_decode_last(body + n - tail + 1, tail - 1));

	size_t big = 5000;
	char *p = malloc(big + 128);
	assert_non_null(p);
	int k = sprintf(p, "[{\"channel\":\"/u/X\",\"data\":\"");
	memset(p + k, 'a', big);
	strcpy(p + k + big, "\"}]");
	expect_edge("first over 4 KiB", p, NULL,
	            bayeux_decode_first(p, strlen(p)));
	expect_edge("last over 4 KiB", p, NULL,
	            bayeux_decode_last(p, strlen(p)));
	/* Under the bound both are found. */
	strcpy(p + k + 3000, "\"}]");
	expect_edge("first under 4 KiB", p, "/u/X",
	            bayeux_decode_first(p, strlen(p)));
	expect_edge("last under 4 KiB", p, "/u/X",
	            bayeux_decode_last(p, strlen(p)));
	free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decode_files),
	    cmocka_unit_test(test_batch_outlives_body),
	    cmocka_unit_test(test_payload_pushtopic),
	    cmocka_unit_test(test_payload_generic),
	    cmocka_unit_test(test_payload_platform),
	    cmocka_unit_test(test_payload_cdc),
	    cmocka_unit_test(test_replay_id_shapes),
	    cmocka_unit_test(test_cdc_created_known),
	    cmocka_unit_test(test_cdc_created_sweep),
	    cmocka_unit_test(test_decode_malformed),
	    cmocka_unit_test(test_decode_degenerate_args),
	    cmocka_unit_test(test_decode_truncated_file),
	    cmocka_unit_test(test_decode_empty_batch),
	    cmocka_unit_test(test_decode_nesting_limit),
	    cmocka_unit_test(test_error_code),
	    cmocka_unit_test(test_build_handshake),
	    cmocka_unit_test(test_build_connect_disconnect),
	    cmocka_unit_test(test_build_connect_disconnect_errors),
	    cmocka_unit_test(test_build_subscribe),
	    cmocka_unit_test(test_build_subscribe_errors),
	    cmocka_unit_test(test_build_subscribe_odd_clients),
	    cmocka_unit_test(test_decode_first_and_last),
	    cmocka_unit_test(test_decode_edges_bounded),
	};

	return cmocka_run_group_tests_name("bayeux_msg", tests, NULL, NULL);
}
