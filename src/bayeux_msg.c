#include "sfrelay/bayeux_msg.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

/*
 * This first decoder builds a json-c tree of the whole body and keeps it
 * alive for the life of the batch: every string a message exposes points
 * into that tree (json-c's own storage or the per-object serialization
 * cache), so decoding copies nothing but the few created timestamps it
 * has to compute. A streaming decoder can later replace this behind the
 * same header.
 */

/* json-c counts the outer array as one level: 64 allows the array, its
 * messages and 62 levels below them. */
#define BAYEUX_MAX_DEPTH 64

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" and its NUL. */
#define ISO_MS_LEN 25

/* Payloads are re-serialized; '/' need not be escaped and Salesforce
 * payloads are full of URLs and channel names. */
#define PAYLOAD_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

struct slot {
	struct bayeux_msg msg;
	char created[ISO_MS_LEN];
};

struct bayeux_batch {
	json_object *root;
	size_t count;
	struct slot *slots;
};

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

/* Member of an object, or NULL when o is not an object, the key is absent
 * or its value is JSON null. */
static json_object *
obj_get(json_object *o, const char *key)
{
	json_object *v;

	if (o == NULL || !json_object_is_type(o, json_type_object))
		return NULL;
	if (!json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

static const char *
obj_string(json_object *o, const char *key)
{
	json_object *v = obj_get(o, key);

	if (v == NULL || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* Bayeux booleans count only when they are the JSON literal true: a
 * hostile "true" string or 1 must not pass for success. */
static int
obj_true(json_object *o, const char *key)
{
	json_object *v = obj_get(o, key);

	if (v == NULL || !json_object_is_type(v, json_type_boolean))
		return 0;
	return json_object_get_boolean(v) ? 1 : 0;
}

/* A non-negative JSON integer, or -1 for anything else. */
static long
obj_millis(json_object *o, const char *key)
{
	json_object *v = obj_get(o, key);
	int64_t n;

	if (v == NULL || !json_object_is_type(v, json_type_int))
		return -1;
	n = json_object_get_int64(v);
	if (n < 0)
		return -1;
#if INT64_MAX > LONG_MAX
	if (n > LONG_MAX)
		n = LONG_MAX;
#endif
	return (long)n;
}

static enum bayeux_reconnect
parse_reconnect(const char *s)
{
	if (s == NULL)
		return BAYEUX_RECONNECT_UNSET;
	if (strcmp(s, "retry") == 0)
		return BAYEUX_RECONNECT_RETRY;
	if (strcmp(s, "handshake") == 0)
		return BAYEUX_RECONNECT_HANDSHAKE;
	if (strcmp(s, "none") == 0)
		return BAYEUX_RECONNECT_NONE;
	return BAYEUX_RECONNECT_UNSET;
}

static int
has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Optional '-' then one or more ASCII digits over the whole length, so a
 * string with an embedded NUL never passes. */
static int
is_signed_digits(const char *s, size_t len)
{
	size_t i = 0;

	if (len > 0 && s[0] == '-')
		i = 1;
	if (i == len)
		return 0;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
	}
	return 1;
}

/*
 * replayId as decimal text. Salesforce sends a JSON integer; a string of
 * digits is taken as is. Anything else gives "" and the caller reports
 * the event as having no position. NULL only when out of memory.
 */
static const char *
replay_text(json_object *v)
{
	const char *s;

	if (v == NULL)
		return "";
	switch (json_object_get_type(v)) {
	case json_type_int:
		return json_object_to_json_string_ext(v,
		                                      JSON_C_TO_STRING_PLAIN);
	case json_type_string:
		s = json_object_get_string(v);
		if (!is_signed_digits(s, (size_t)json_object_get_string_len(v)))
			return "";
		return s;
	default:
		return "";
	}
}

/* Proleptic Gregorian date of a day count relative to 1970-01-01, by the
 * era arithmetic of Hinnant's civil_from_days: pure, no libc time calls,
 * valid for any int64 day count this file can produce. */
static void
civil_from_days(int64_t days, int64_t *year, int *month, int *day)
{
	int64_t z = days + 719468; /* shift the epoch to 0000-03-01 */
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t m = mp < 10 ? mp + 3 : mp - 9;

	*day = (int)(doy - (153 * mp + 2) / 5 + 1);
	*month = (int)m;
	*year = yoe + era * 400 + (m <= 2 ? 1 : 0);
}

/* Epoch milliseconds to "YYYY-MM-DDTHH:MM:SS.mmmZ". Years outside
 * 0000..9999 have no four-digit form: -1. */
static int
format_epoch_ms(int64_t ms, char out[ISO_MS_LEN])
{
	int64_t secs = ms / 1000;
	int64_t milli = ms % 1000;
	int64_t days, rem, year;
	int month, day;

	/* C division truncates toward zero; times before 1970 need floor. */
	if (milli < 0) {
		milli += 1000;
		secs -= 1;
	}
	days = secs / 86400;
	rem = secs % 86400;
	if (rem < 0) {
		rem += 86400;
		days -= 1;
	}
	civil_from_days(days, &year, &month, &day);
	if (year < 0 || year > 9999)
		return -1;
	snprintf(out, ISO_MS_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	         (int)year, month, day, (int)(rem / 3600),
	         (int)(rem % 3600 / 60), (int)(rem % 60), (int)milli);
	return 0;
}

static void
decode_meta(struct bayeux_msg *m, json_object *o)
{
	json_object *ext = obj_get(o, "ext");
	json_object *advice = obj_get(o, "advice");

	m->successful = obj_true(o, "successful");
	m->client_id = obj_string(o, "clientId");
	m->error = obj_string(o, "error");
	m->subscription = obj_string(o, "subscription");
	m->failure_reason = obj_string(obj_get(ext, "sfdc"), "failureReason");
	if (strcmp(m->channel, "/meta/handshake") == 0)
		m->replay_supported = obj_true(ext, "replay");
	if (advice != NULL && json_object_is_type(advice, json_type_object)) {
		m->has_advice = 1;
		m->advice.reconnect =
		    parse_reconnect(obj_string(advice, "reconnect"));
		m->advice.interval_ms = obj_millis(advice, "interval");
		m->advice.timeout_ms = obj_millis(advice, "timeout");
		m->advice.multiple_clients =
		    obj_true(advice, "multiple-clients");
	}
}

/* Returns 0, or -1 when json-c could not allocate a serialization. */
static int
decode_event(struct slot *s, json_object *o)
{
	struct bayeux_msg *m = &s->msg;
	json_object *data = obj_get(o, "data");
	json_object *event = obj_get(data, "event");
	json_object *payload = obj_get(data, "payload");
	json_object *header, *ts;
	const char *text;
	size_t len;

	if (data != NULL) {
		text = json_object_to_json_string_length(data, PAYLOAD_FLAGS,
		                                         &len);
		if (text == NULL)
			return -1;
		m->ev.payload = text;
		m->ev.payload_len = len;
	}
	m->ev.position = replay_text(obj_get(event, "replayId"));
	if (m->ev.position == NULL)
		return -1;

	if (has_prefix(m->channel, "/topic/")) {
		m->ev.created = obj_string(event, "createdDate");
		m->ev.event_type = obj_string(event, "type");
	} else if (has_prefix(m->channel, "/u/")) {
		m->ev.created = obj_string(event, "createdDate");
	} else if (has_prefix(m->channel, "/event/")) {
		m->ev.created = obj_string(payload, "CreatedDate");
	} else if (has_prefix(m->channel, "/data/")) {
		header = obj_get(payload, "ChangeEventHeader");
		ts = obj_get(header, "commitTimestamp");
		if (ts != NULL && json_object_is_type(ts, json_type_int) &&
		    format_epoch_ms(json_object_get_int64(ts), s->created) == 0)
			m->ev.created = s->created;
		m->ev.event_type = obj_string(header, "changeType");
	}
	return 0;
}

/* Checks the element's shape; the reason names its index. */
static int
decode_one(struct slot *s, json_object *o, size_t i, char *err, size_t errlen)
{
	struct bayeux_msg *m = &s->msg;
	json_object *ch;

	if (!json_object_is_type(o, json_type_object)) {
		set_err(err, errlen, "element %zu is not a JSON object", i);
		return -1;
	}
	if (!json_object_object_get_ex(o, "channel", &ch) || ch == NULL) {
		set_err(err, errlen, "element %zu has no \"channel\"", i);
		return -1;
	}
	if (!json_object_is_type(ch, json_type_string)) {
		set_err(err, errlen, "element %zu: \"channel\" is not a string",
		        i);
		return -1;
	}
	if (json_object_get_string_len(ch) == 0) {
		set_err(err, errlen, "element %zu: \"channel\" is empty", i);
		return -1;
	}
	/* A NUL inside would silently shorten the channel we act on. */
	if (strlen(json_object_get_string(ch)) !=
	    (size_t)json_object_get_string_len(ch)) {
		set_err(err, errlen, "element %zu: \"channel\" holds a NUL", i);
		return -1;
	}

	m->channel = json_object_get_string(ch);
	m->advice.interval_ms = -1;
	m->advice.timeout_ms = -1;
	/* Every message carries a usable event view so no caller ever meets
	 * a NULL where event.h promises a string. */
	m->ev.src = EVENT_SRC_STREAM;
	m->ev.channel = m->channel;
	m->ev.position = "";
	m->ev.payload = "{}";
	m->ev.payload_len = 2;

	if (has_prefix(m->channel, "/meta/")) {
		m->kind = BAYEUX_MSG_META;
		decode_meta(m, o);
		return 0;
	}
	m->kind = BAYEUX_MSG_EVENT;
	if (decode_event(s, o) < 0) {
		set_err(err, errlen, "element %zu: out of memory", i);
		return -1;
	}
	return 0;
}

/* Length of an RFC 8259 number at p (at most n bytes), or 0. */
static size_t
number_len(const char *p, size_t n)
{
	size_t i = 0;
	if (i < n && p[i] == '-')
		i++;
	if (i < n && p[i] == '0')
		i++;
	else if (i < n && p[i] >= '1' && p[i] <= '9')
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
	else
		return 0;
	if (i < n && p[i] == '.') {
		size_t start = ++i;
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
		if (i == start)
			return 0;
	}
	if (i < n && (p[i] == 'e' || p[i] == 'E')) {
		i++;
		if (i < n && (p[i] == '+' || p[i] == '-'))
			i++;
		size_t start = i;
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
		if (i == start)
			return 0;
	}
	/* "01" would be read as 0 then 1: reject a digit right after. */
	if (i < n && ((p[i] >= '0' && p[i] <= '9') || p[i] == '.'))
		return 0;
	return i;
}

/*
 * json-c, even strict, accepts NaN, Infinity, 01, 1. and keeps their text
 * when it writes the payload back out, which would hand the formatter
 * something that is not JSON. Outside strings, only RFC 8259 numbers and
 * the three literals may appear. Returns the offset of the first bad
 * token, or len when all is well.
 */
static size_t
first_nonstandard_token(const char *body, size_t len)
{
	size_t i = 0;
	while (i < len) {
		char c = body[i];
		if (c == '"') {
			for (i++; i < len && body[i] != '"'; i++)
				if (body[i] == '\\')
					i++;
			i++;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t nl = number_len(body + i, len - i);
			if (nl == 0)
				return i;
			i += nl;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			static const char *const lits[] = {"true", "false",
							   "null"};
			size_t k, l = 0;
			for (k = 0; k < 3; k++) {
				l = strlen(lits[k]);
				if (len - i >= l && memcmp(body + i, lits[k], l) == 0)
					break;
			}
			if (k == 3)
				return i;
			i += l;
		} else {
			i++;
		}
	}
	return len;
}

static json_object *
parse_body(const char *body, size_t len, char *err, size_t errlen)
{
	struct json_tokener *tok;
	json_object *root = NULL;
	enum json_tokener_error jerr;
	size_t i;

	for (i = 0; i < len; i++) {
		if (body[i] != ' ' && body[i] != '\t' && body[i] != '\n' &&
		    body[i] != '\r')
			break;
	}
	if (i == len) {
		set_err(err, errlen, "empty body");
		return NULL;
	}
	if (len > INT_MAX) {
		set_err(err, errlen, "body too large (%zu bytes)", len);
		return NULL;
	}
	tok = json_tokener_new_ex(BAYEUX_MAX_DEPTH);
	if (tok == NULL) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	/* Strict: trailing bytes after the array are an error, not a second
	 * document silently ignored. */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, body, (int)len);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue) {
		/* A bare top-level number needs an explicit end of input; a
		 * cut-off array stays unfinished and fails below. */
		root = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		if (jerr != json_tokener_success) {
			set_err(err, errlen, "truncated JSON body (%zu bytes)",
			        len);
			goto out;
		}
	} else if (jerr != json_tokener_success) {
		set_err(err, errlen, "invalid JSON at byte %zu: %s",
		        json_tokener_get_parse_end(tok),
		        json_tokener_error_desc(jerr));
		goto out;
	} else if (json_tokener_get_parse_end(tok) < len) {
		set_err(err, errlen, "invalid JSON at byte %zu: trailing data",
		        json_tokener_get_parse_end(tok));
		json_object_put(root);
		root = NULL;
		goto out;
	}
	if (root == NULL || !json_object_is_type(root, json_type_array)) {
		set_err(err, errlen, "body is not a JSON array");
		json_object_put(root);
		root = NULL;
		goto out;
	}
	size_t bad = first_nonstandard_token(body, len);
	if (bad < len) {
		set_err(err, errlen,
		        "invalid JSON at byte %zu: not a standard JSON value", bad);
		json_object_put(root);
		root = NULL;
	}
out:
	json_tokener_free(tok);
	return root;
}

struct bayeux_batch *
bayeux_decode(const char *body, size_t len, char *err, size_t errlen)
{
	struct bayeux_batch *b = NULL;
	json_object *root;
	size_t i;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (body == NULL) {
		set_err(err, errlen, "no body");
		return NULL;
	}
	root = parse_body(body, len, err, errlen);
	if (root == NULL)
		return NULL;

	b = calloc(1, sizeof(*b));
	if (b == NULL) {
		set_err(err, errlen, "out of memory");
		goto fail;
	}
	b->root = root;
	root = NULL;
	b->count = json_object_array_length(b->root);
	if (b->count > 0) {
		b->slots = calloc(b->count, sizeof(*b->slots));
		if (b->slots == NULL) {
			set_err(err, errlen, "out of memory");
			goto fail;
		}
	}
	for (i = 0; i < b->count; i++) {
		if (decode_one(&b->slots[i],
		               json_object_array_get_idx(b->root, i), i, err,
		               errlen) < 0)
			goto fail;
	}
	return b;

fail:
	bayeux_batch_free(b);
	json_object_put(root);
	return NULL;
}

size_t
bayeux_batch_count(const struct bayeux_batch *b)
{
	return b == NULL ? 0 : b->count;
}

const struct bayeux_msg *
bayeux_batch_msg(const struct bayeux_batch *b, size_t i)
{
	if (b == NULL || i >= b->count)
		return NULL;
	return &b->slots[i].msg;
}

void
bayeux_batch_free(struct bayeux_batch *b)
{
	if (b == NULL)
		return;
	free(b->slots);
	json_object_put(b->root);
	free(b);
}

int
bayeux_error_code(const char *error)
{
	int code = 0;
	int digits = 0;

	if (error == NULL)
		return 0;
	/* Salesforce codes are HTTP-like; more than four digits is not a
	 * code, and bounding the count keeps the sum from overflowing. */
	while (error[digits] >= '0' && error[digits] <= '9') {
		if (digits == 4)
			return 0;
		code = code * 10 + (error[digits] - '0');
		digits++;
	}
	if (digits == 0 || error[digits] != ':' || error[digits + 1] != ':')
		return 0;
	return code;
}

/*
 * Request writing. Each builder writes into a scratch buffer and moves it
 * to the caller's buffer only when complete, so a failure appends nothing.
 */

struct writer {
	struct evbuffer *buf;
	int failed;
};

static void
put(struct writer *w, const char *s, size_t len)
{
	if (!w->failed && len > 0 && evbuffer_add(w->buf, s, len) != 0)
		w->failed = 1;
}

static void
put_str(struct writer *w, const char *s)
{
	put(w, s, strlen(s));
}

/* A JSON string literal of s[0..len). Bytes >= 0x80 pass through: the
 * text is expected to be UTF-8 already, and the server is the judge. */
static void
put_json_string(struct writer *w, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0, i;
	unsigned char c;
	char esc[6];

	put(w, "\"", 1);
	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(w, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"':
			put(w, "\\\"", 2);
			break;
		case '\\':
			put(w, "\\\\", 2);
			break;
		case '\n':
			put(w, "\\n", 2);
			break;
		case '\r':
			put(w, "\\r", 2);
			break;
		case '\t':
			put(w, "\\t", 2);
			break;
		case '\b':
			put(w, "\\b", 2);
			break;
		case '\f':
			put(w, "\\f", 2);
			break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0x0f];
			put(w, esc, sizeof(esc));
			break;
		}
	}
	put(w, s + run, len - run);
	put(w, "\"", 1);
}

static int
writer_begin(struct writer *w)
{
	w->failed = 0;
	w->buf = evbuffer_new();
	return w->buf == NULL ? -1 : 0;
}

static int
writer_finish(struct writer *w, struct evbuffer *out)
{
	int rc = -1;

	if (!w->failed && evbuffer_add_buffer(out, w->buf) == 0)
		rc = 0;
	evbuffer_free(w->buf);
	w->buf = NULL;
	return rc;
}

int
bayeux_build_handshake(struct evbuffer *out)
{
	static const char msg[] =
	    "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
	    "\"minimumVersion\":\"1.0\","
	    "\"supportedConnectionTypes\":[\"long-polling\"],"
	    "\"ext\":{\"replay\":true}}]";

	if (out == NULL)
		return -1;
	return evbuffer_add(out, msg, sizeof(msg) - 1) == 0 ? 0 : -1;
}

/* -1, -2, or a replayId written as a JSON integer: digits without a
 * leading zero (JSON forbids one), any length. */
static int
is_replay_id(const char *s)
{
	size_t i;

	if (strcmp(s, "-1") == 0 || strcmp(s, "-2") == 0)
		return 1;
	if (s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1] != '\0'))
		return 0;
	for (i = 1; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
	}
	return 1;
}

/* The replay map's key: the channel without its "?filter". */
static size_t
channel_key_len(const char *channel)
{
	return strcspn(channel, "?");
}

/* Index of an earlier channel with the same key, or i itself. */
static size_t
first_with_key(const char *const *channels, size_t i)
{
	size_t len = channel_key_len(channels[i]);
	size_t j;

	for (j = 0; j < i; j++) {
		if (channel_key_len(channels[j]) == len &&
		    memcmp(channels[j], channels[i], len) == 0)
			return j;
	}
	return i;
}

static int
check_subscribe(const char *client_id, const char *const *channels,
                const char *const *replay_ids, size_t n)
{
	size_t i, j;

	if (client_id == NULL || client_id[0] == '\0' || channels == NULL ||
	    replay_ids == NULL || n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (channels[i] == NULL || replay_ids[i] == NULL)
			return -1;
		if (channels[i][0] != '/' || channel_key_len(channels[i]) < 2)
			return -1;
		if (!is_replay_id(replay_ids[i]))
			return -1;
		/* Two filtered subscriptions to one channel share one map
		 * entry; they cannot ask for two different starting points. */
		j = first_with_key(channels, i);
		if (j != i && strcmp(replay_ids[j], replay_ids[i]) != 0)
			return -1;
	}
	return 0;
}

static void
put_replay_map(struct writer *w, const char *const *channels,
               const char *const *replay_ids, size_t n)
{
	int first = 1;
	size_t i;

	put(w, "{", 1);
	for (i = 0; i < n; i++) {
		if (first_with_key(channels, i) != i)
			continue;
		if (!first)
			put(w, ",", 1);
		first = 0;
		put_json_string(w, channels[i], channel_key_len(channels[i]));
		put(w, ":", 1);
		put_str(w, replay_ids[i]);
	}
	put(w, "}", 1);
}

int
bayeux_build_subscribe(struct evbuffer *out, const char *client_id,
                       const char *const *channels,
                       const char *const *replay_ids, size_t n)
{
	struct writer w;
	size_t i;

	if (out == NULL ||
	    check_subscribe(client_id, channels, replay_ids, n) < 0)
		return -1;
	if (writer_begin(&w) < 0)
		return -1;
	put(&w, "[", 1);
	for (i = 0; i < n; i++) {
		if (i > 0)
			put(&w, ",", 1);
		put_str(&w, "{\"channel\":\"/meta/subscribe\",\"clientId\":");
		put_json_string(&w, client_id, strlen(client_id));
		put_str(&w, ",\"subscription\":");
		put_json_string(&w, channels[i], strlen(channels[i]));
		put_str(&w, ",\"ext\":{\"replay\":");
		put_replay_map(&w, channels, replay_ids, n);
		put_str(&w, "}}");
	}
	put(&w, "]", 1);
	return writer_finish(&w, out);
}

static int
build_simple(struct evbuffer *out, const char *channel, const char *client_id,
             const char *tail)
{
	struct writer w;

	if (out == NULL || client_id == NULL || client_id[0] == '\0')
		return -1;
	if (writer_begin(&w) < 0)
		return -1;
	put_str(&w, "[{\"channel\":");
	put_json_string(&w, channel, strlen(channel));
	put_str(&w, ",\"clientId\":");
	put_json_string(&w, client_id, strlen(client_id));
	put_str(&w, tail);
	put_str(&w, "}]");
	return writer_finish(&w, out);
}

int
bayeux_build_connect(struct evbuffer *out, const char *client_id)
{
	return build_simple(out, "/meta/connect", client_id,
	                    ",\"connectionType\":\"long-polling\"");
}

int
bayeux_build_disconnect(struct evbuffer *out, const char *client_id)
{
	return build_simple(out, "/meta/disconnect", client_id, "");
}

/* How far back bayeux_decode_last() looks for the last message's start. */
#define LAST_MSG_MAX 4096

static int
is_json_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * From the closing quote at p, the opening quote of the same string: the
 * nearest '"' before it that is not escaped, that is, not preceded by an
 * odd number of backslashes. NULL when there is none after lo.
 */
static const char *
string_start(const char *lo, const char *p)
{
	for (const char *q = p - 1; q >= lo; q--) {
		if (*q != '"')
			continue;
		size_t bs = 0;
		while (q - 1 - bs >= lo && q[-1 - (ptrdiff_t)bs] == '\\')
			bs++;
		if (bs % 2 == 0)
			return q;
	}
	return NULL;
}

/* [p, end) decoded alone as a one-message body, or NULL. */
static struct bayeux_batch *
decode_alone(const char *p, const char *end)
{
	size_t n = (size_t)(end - p);
	char *one = malloc(n + 2);
	struct bayeux_batch *b;

	if (one == NULL)
		return NULL;
	one[0] = '[';
	memcpy(one + 1, p, n);
	one[n + 1] = ']';
	b = bayeux_decode(one, n + 2, NULL, 0);
	free(one);
	if (b != NULL && bayeux_batch_count(b) != 1) {
		bayeux_batch_free(b);
		b = NULL;
	}
	return b;
}

struct bayeux_batch *
bayeux_decode_first(const char *body, size_t len)
{
	const char *p, *end, *lim;
	size_t depth = 0;
	int in_str = 0;

	if (body == NULL)
		return NULL;
	p = body;
	end = body + len;
	while (p < end && is_json_ws(*p))
		p++;
	if (p == end || *p++ != '[')
		return NULL;
	while (p < end && is_json_ws(*p))
		p++;
	if (p == end || *p != '{')
		return NULL;
	lim = (size_t)(end - p) > LAST_MSG_MAX ? p + LAST_MSG_MAX : end;
	for (const char *q = p; q < lim; q++) {
		if (in_str) {
			if (*q == '\\')
				q++;
			else if (*q == '"')
				in_str = 0;
			continue;
		}
		if (*q == '"') {
			in_str = 1;
		} else if (*q == '{' || *q == '[') {
			depth++;
		} else if (*q == '}' || *q == ']') {
			if (depth == 0)
				return NULL;
			if (--depth == 0)
				return decode_alone(p, q + 1);
		}
	}
	return NULL;
}

struct bayeux_batch *
bayeux_decode_last(const char *tail, size_t len)
{
	const char *end, *p, *lo, *q;
	size_t depth = 0;

	if (tail == NULL || len == 0)
		return NULL;
	end = tail + len;
	while (end > tail && is_json_ws(end[-1]))
		end--;
	if (end == tail || end[-1] != ']')
		return NULL;
	end--;
	while (end > tail && is_json_ws(end[-1]))
		end--;
	if (end == tail || end[-1] != '}')
		return NULL;
	lo = (size_t)(end - tail) > LAST_MSG_MAX ? end - LAST_MSG_MAX : tail;
	for (p = end - 1; p >= lo; p--) {
		switch (*p) {
		case '"':
			q = string_start(lo, p);
			if (q == NULL)
				return NULL;
			p = q;
			break;
		case '}':
		case ']':
			depth++;
			break;
		case '{':
		case '[':
			if (depth == 0)
				return NULL;
			if (--depth == 0)
				return decode_alone(p, end);
			break;
		default:
			break;
		}
	}
	return NULL;
}
