/*
 * Tests for the formatter: the value escapers, the event line in both
 * formats, the error line, the limits, and golden files.
 *
 * Besides exact expected outputs, every line produced here is checked for
 * the invariants of format.h (one trailing '\n', no other control byte,
 * valid UTF-8), parsed back (JSON with json-c, logfmt with a small reader
 * below), and for valid payloads compared with an independent flattening
 * of the payload built from a json-c tree.
 *
 * Golden files: every tests/data/format/NAME.json (path relative to the
 * repository root, the working directory of `make test`) is formatted and
 * compared byte for byte with NAME.expected. The header is fixed:
 *   src=stream channel=/topic/Golden position=42, event_type and created
 *   NULL, logfmt.
 * Words of NAME separated by '-' change that:
 *   poll    src=poll channel=SetupAuditTrail position=0Ymxx0000000001
 *   typed   event_type="updated"
 *   dated   created="2026-11-26T19:27:53.000Z"
 *   asjson  FORMAT_JSON instead of logfmt
 * e.g. cdc-typed-dated-asjson.json. Names starting with "error-" must
 * produce the error line (format_event returns 1); all others return 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "sfrelay/format.h"
#include "sfrelay/json_tape.h"

#define GOLDEN_DIR "tests/data/format"
#define FFFD "\xef\xbf\xbd"

/* ---- helpers ---------------------------------------------------------- */

/* Copies the whole evbuffer into a NUL-terminated heap string. */
static char *
buf_string(struct evbuffer *b, size_t *n)
{
	size_t len = evbuffer_get_length(b);
	char *s = malloc(len + 1);

	assert_non_null(s);
	if (len > 0)
		assert_int_equal(evbuffer_copyout(b, s, len), (ev_ssize_t)len);
	s[len] = '\0';
	if (n != NULL)
		*n = len;
	return s;
}

static void
assert_bytes(const char *want, size_t wn, const char *got, size_t gn)
{
	size_t i = 0;

	if (wn == gn && memcmp(want, got, wn) == 0)
		return;
	while (i < wn && i < gn && want[i] == got[i])
		i++;
	print_error("first difference at byte %zu\nwant (%zu): %.*s\n"
	            "got  (%zu): %.*s\n",
	            i, wn, (int)wn, want, gn, (int)gn, got);
	fail();
}

/* Formats ev; returns the line (owned) and format_event's result. */
static char *
format_line(enum format_kind kind, const struct event *ev, int *rc, size_t *n)
{
	struct evbuffer *out = evbuffer_new();
	char *s;

	assert_non_null(out);
	*rc = format_event(kind, ev, out);
	s = buf_string(out, n);
	evbuffer_free(out);
	return s;
}

/* An independent UTF-8 check: decode, then reject overlong forms,
 * surrogates and anything above U+10FFFF. */
static int
utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0, k, len;
	unsigned long cp, min;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if ((s[i] & 0xe0) == 0xc0) {
			len = 2, cp = s[i] & 0x1fu, min = 0x80;
		} else if ((s[i] & 0xf0) == 0xe0) {
			len = 3, cp = s[i] & 0x0fu, min = 0x800;
		} else if ((s[i] & 0xf8) == 0xf0) {
			len = 4, cp = s[i] & 0x07u, min = 0x10000;
		} else {
			return 0;
		}
		if (n - i < len)
			return 0;
		for (k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3fu);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

/* Escaped text holds no control byte at all, and is valid UTF-8. */
static void
check_text_bytes(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f) {
			print_error("control byte 0x%02x at %zu in: %.*s\n", c,
			            i, (int)n, s);
			fail();
		}
	}
	assert_true(utf8_valid((const unsigned char *)s, n));
}

/* The line invariants of format.h: exactly one '\n', at the end. */
static void
check_line_bytes(const char *line, size_t n)
{
	assert_true(n >= 2);
	assert_int_equal(line[n - 1], '\n');
	check_text_bytes(line, n - 1);
}

/* Parses JSON text that must be consumed entirely. NULL when invalid.
 * json-c needs the terminating NUL to know where a bare number ends. */
static json_object *
json_parse_all(const char *s, size_t n)
{
	struct json_tokener *tok = json_tokener_new_ex(256);
	char *z = malloc(n + 1);
	json_object *o;

	assert_true(tok != NULL && z != NULL);
	memcpy(z, s, n);
	z[n] = '\0';
	o = json_tokener_parse_ex(tok, z, (int)n + 1);
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	                  json_tokener_get_parse_end(tok) < n)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	free(z);
	return o;
}

/* ---- a small logfmt reader -------------------------------------------- */

struct pair {
	char *key;
	char *val;
	size_t vlen;
	int quoted;
};

struct pairs {
	struct pair v[512];
	size_t n;
};

static void
pairs_free(struct pairs *p)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		free(p->v[i].key);
		free(p->v[i].val);
	}
	p->n = 0;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Reads a quoted value starting after the opening quote; the value is
 * unescaped into v. Returns the index after the closing quote or 0. */
static size_t
read_quoted(const char *l, size_t n, size_t i, char *v, size_t *vn)
{
	int h1, h2;

	*vn = 0;
	while (i < n && l[i] != '"') {
		if (l[i] != '\\') {
			v[(*vn)++] = l[i++];
			continue;
		}
		if (++i >= n)
			return 0;
		switch (l[i]) {
		case '"':
		case '\\':
			v[(*vn)++] = l[i++];
			break;
		case 'n':
			v[(*vn)++] = '\n', i++;
			break;
		case 'r':
			v[(*vn)++] = '\r', i++;
			break;
		case 't':
			v[(*vn)++] = '\t', i++;
			break;
		case 'u':
			if (n - i < 5 || l[i + 1] != '0' || l[i + 2] != '0')
				return 0;
			h1 = hexval(l[i + 3]), h2 = hexval(l[i + 4]);
			if (h1 < 0 || h2 < 0)
				return 0;
			if (h1 * 16 + h2 < 0x80) {
				v[(*vn)++] = (char)(h1 * 16 + h2);
			} else {
				v[(*vn)++] =
				    (char)(0xc0 | ((h1 * 16 + h2) >> 6));
				v[(*vn)++] =
				    (char)(0x80 | ((h1 * 16 + h2) & 0x3f));
			}
			i += 5;
			break;
		default:
			return 0;
		}
	}
	return i < n ? i + 1 : 0;
}

/* Splits a logfmt line (without its '\n') into pairs. 0 or -1. */
static int
logfmt_read(const char *l, size_t n, struct pairs *out)
{
	size_t i = 0, k0, v0;
	struct pair *p;

	out->n = 0;
	while (i < n) {
		assert_true(out->n < 512);
		k0 = i;
		while (i < n && l[i] != '=' && l[i] != ' ' && l[i] != '"')
			i++;
		if (i >= n || l[i] != '=' || i == k0)
			return -1;
		p = &out->v[out->n++];
		p->key = strndup(l + k0, i - k0);
		p->val = malloc(n + 1);
		assert_true(p->key != NULL && p->val != NULL);
		p->quoted = 0;
		i++;
		if (i < n && l[i] == '"') {
			p->quoted = 1;
			i = read_quoted(l, n, i + 1, p->val, &p->vlen);
			if (i == 0)
				return -1;
		} else {
			for (v0 = i; i < n && l[i] != ' '; i++)
				if (l[i] == '"' || l[i] == '=' || l[i] == '\\')
					return -1;
			memcpy(p->val, l + v0, i - v0);
			p->vlen = i - v0;
		}
		p->val[p->vlen] = '\0';
		if (i < n && (l[i] != ' ' || ++i >= n))
			return -1;
	}
	return 0;
}

/* Whether a logfmt value must be quoted (format.h's rule, restated). */
static int
needs_quotes(const char *v, size_t n)
{
	const unsigned char *s = (const unsigned char *)v;
	size_t i;

	if (n == 0)
		return 1;
	for (i = 0; i < n; i++) {
		if (s[i] <= ' ' || s[i] == '=' || s[i] == '"' || s[i] == '\\' ||
		    s[i] == 0x7f)
			return 1;
		if (s[i] == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 &&
		    s[i + 1] <= 0x9f)
			return 1;
	}
	return 0;
}

static char *
logfmt_key_of(const char *jkey)
{
	char *k = strdup(jkey);
	char *p;

	assert_non_null(k);
	for (p = k; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c >= 0x7f || c == '=' || c == '"')
			*p = '_';
	}
	return k;
}

/* ---- checks on whole lines -------------------------------------------- */

/* Full checks of one line in its format; returns the parsed JSON object
 * (owned) for JSON lines, NULL for logfmt ones. */
static json_object *
check_line(enum format_kind kind, const char *line, size_t n)
{
	struct pairs p;
	json_object *o;

	check_line_bytes(line, n);
	if (kind == FORMAT_JSON) {
		o = json_parse_all(line, n - 1);
		if (o == NULL || !json_object_is_type(o, json_type_object)) {
			print_error("not a JSON object: %.*s\n", (int)n, line);
			fail();
		}
		return o;
	}
	if (logfmt_read(line, n - 1, &p) != 0) {
		print_error("not logfmt: %.*s\n", (int)n, line);
		fail();
	}
	pairs_free(&p);
	return NULL;
}

/*
 * The logfmt and JSON lines of one event must say the same thing: the same
 * keys (logfmt's made safe) in the same order, equal values, and quotes in
 * logfmt exactly where needed.
 */
static void
check_formats_agree(const struct event *ev)
{
	char *jl, *ll, *k;
	size_t jn, ln, i = 0;
	int jrc, lrc;
	json_object *jo, *w;
	struct pairs p;
	struct pair *q;

	jl = format_line(FORMAT_JSON, ev, &jrc, &jn);
	ll = format_line(FORMAT_LOGFMT, ev, &lrc, &ln);
	assert_int_equal(jrc, lrc);
	jo = check_line(FORMAT_JSON, jl, jn);
	check_line_bytes(ll, ln);
	assert_int_equal(logfmt_read(ll, ln - 1, &p), 0);
	assert_int_equal(p.n, json_object_object_length(jo));
	json_object_object_foreach(jo, key, val)
	{
		q = &p.v[i++];
		/* A repaired key (U+FFFD in JSON) was one '_' per bad byte in
		 * logfmt: not comparable byte for byte. */
		if (strstr(key, FFFD) == NULL) {
			k = logfmt_key_of(key);
			assert_string_equal(q->key, k);
			free(k);
		}
		if (json_object_is_type(val, json_type_string)) {
			assert_int_equal(q->vlen,
			                 json_object_get_string_len(val));
			assert_memory_equal(q->val, json_object_get_string(val),
			                    q->vlen);
			assert_int_equal(q->quoted,
			                 needs_quotes(q->val, q->vlen));
		} else if (json_object_is_type(val, json_type_null)) {
			assert_int_equal(q->vlen, 0);
			assert_false(q->quoted);
		} else {
			assert_false(q->quoted);
			w = json_parse_all(q->val, q->vlen);
			assert_non_null(w);
			if (!json_object_equal(val, w)) {
				print_error("%s: %s vs %s\n", key, q->val,
				            json_object_to_json_string(val));
				fail();
			}
			json_object_put(w);
		}
	}
	pairs_free(&p);
	json_object_put(jo);
	free(jl);
	free(ll);
}

/* ---- an oracle: the flattening rules applied to a json-c tree ---------- */

struct flat {
	char *key[512];
	json_object *val[512]; /* borrowed from the tree */
	size_t n;
};

static void
flat_add(struct flat *f, const char *key, json_object *v)
{
	assert_true(f->n < 512);
	f->key[f->n] = strdup(key);
	assert_non_null(f->key[f->n]);
	f->val[f->n++] = v;
}

static void
flat_free(struct flat *f)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		free(f->key[i]);
	f->n = 0;
}

static int
oracle_skips(const struct event *ev, const char *k)
{
	if (strcmp(k, "replayId") == 0)
		return ev->src == EVENT_SRC_STREAM && ev->position[0] != '\0';
	if (strcmp(k, "type") == 0)
		return ev->event_type != NULL;
	if (strcmp(k, "createdDate") == 0)
		return ev->created != NULL;
	return 0;
}

/* where: 0 anywhere, 1 the top-level object, 2 its "event" member. */
static void
oracle_walk(struct flat *f, const struct event *ev, json_object *v,
            const char *path, int where)
{
	char *sub;
	size_t i, n, plen = strlen(path);

	if (json_object_is_type(v, json_type_object)) {
		if (json_object_object_length(v) == 0 && where != 1)
			flat_add(f, path, v);
		json_object_object_foreach(v, key, val)
		{
			if (where == 2 && oracle_skips(ev, key))
				continue;
			sub = malloc(plen + strlen(key) + 3);
			assert_non_null(sub);
			sprintf(sub, "%s%s%s", path, plen ? "." : "",
			        key[0] ? key : "_");
			oracle_walk(
			    f, ev, val, sub,
			    where == 1 && strcmp(key, "event") == 0 ? 2 : 0);
			free(sub);
		}
	} else if (json_object_is_type(v, json_type_array)) {
		n = json_object_array_length(v);
		if (n == 0)
			flat_add(f, path, v);
		for (i = 0; i < n; i++) {
			sub = malloc(plen + 24);
			assert_non_null(sub);
			sprintf(sub, "%s.%zu", path, i);
			oracle_walk(f, ev, json_object_array_get_idx(v, i), sub,
			            0);
			free(sub);
		}
	} else {
		flat_add(f, path, v);
	}
}

/* The header keys format.h promises, in order, with their values. */
static size_t
oracle_header(const struct event *ev, const char *k[8], char *v[8])
{
	size_t n = 0;
	int stream = ev->src == EVENT_SRC_STREAM;

	k[n] = "at", v[n++] = strdup("event");
	k[n] = "src", v[n++] = strdup(stream ? "stream" : "poll");
	k[n] = stream ? "channel" : "object", v[n++] = strdup(ev->channel);
	if (ev->position[0] != '\0') {
		k[n] = "id";
		v[n] = malloc(strlen(ev->channel) + strlen(ev->position) + 2);
		sprintf(v[n++], "%s:%s", ev->channel, ev->position);
		if (stream)
			k[n] = "replay_id", v[n++] = strdup(ev->position);
	}
	if (ev->event_type != NULL)
		k[n] = "event_type", v[n++] = strdup(ev->event_type);
	if (ev->created != NULL)
		k[n] = "created", v[n++] = strdup(ev->created);
	return n;
}

/*
 * For a valid payload (valid UTF-8, no lone surrogates, no duplicate or
 * NUL-bearing keys, so json-c sees the same text): the JSON line must be
 * the header then exactly the oracle's flattening of the payload.
 */
static void
check_against_oracle(const struct event *ev)
{
	json_object *in, *jo;
	struct flat f = {.n = 0};
	const char *hk[8];
	char *hv[8], *line;
	size_t hn, i = 0, n;
	int rc;

	in = json_parse_all(ev->payload, ev->payload_len);
	if (in == NULL) {
		print_error("json-c rejects %.*s\n", (int)ev->payload_len,
		            ev->payload);
		fail();
	}
	if (json_object_is_type(in, json_type_object))
		oracle_walk(&f, ev, in, "", 1);
	else
		oracle_walk(&f, ev, in, "data", 0);
	hn = oracle_header(ev, hk, hv);

	line = format_line(FORMAT_JSON, ev, &rc, &n);
	assert_int_equal(rc, 0);
	jo = check_line(FORMAT_JSON, line, n);
	assert_int_equal(json_object_object_length(jo), hn + f.n);
	json_object_object_foreach(jo, key, val)
	{
		if (i < hn) {
			assert_string_equal(key, hk[i]);
			assert_string_equal(json_object_get_string(val), hv[i]);
		} else {
			assert_string_equal(key, f.key[i - hn]);
			if (!json_object_equal(val, f.val[i - hn])) {
				print_error("value of %s differs: %s\n", key,
				            line);
				fail();
			}
		}
		i++;
	}
	for (i = 0; i < hn; i++)
		free(hv[i]);
	flat_free(&f);
	json_object_put(jo);
	json_object_put(in);
	free(line);
}

/* ---- format_kind_parse ------------------------------------------------ */

static void
test_kind_parse(void **state)
{
	enum format_kind k = FORMAT_JSON;

	(void)state;
	assert_int_equal(format_kind_parse("logfmt", &k), 0);
	assert_int_equal(k, FORMAT_LOGFMT);
	assert_int_equal(format_kind_parse("json", &k), 0);
	assert_int_equal(k, FORMAT_JSON);

	k = FORMAT_JSON;
	assert_int_equal(format_kind_parse("JSON", &k), -1);
	assert_int_equal(format_kind_parse("Logfmt", &k), -1);
	assert_int_equal(format_kind_parse("", &k), -1);
	assert_int_equal(format_kind_parse("json ", &k), -1);
	assert_int_equal(format_kind_parse("jsonl", &k), -1);
	assert_int_equal(format_kind_parse(NULL, &k), -1);
	assert_int_equal(format_kind_parse("json", NULL), -1);
	assert_int_equal(k, FORMAT_JSON); /* untouched on error */
}

/* ---- the value escapers ----------------------------------------------- */

struct value_case {
	const char *in;
	size_t len; /* 0: strlen(in) */
	const char *logfmt;
	const char *json;
};

static const struct value_case value_cases[] = {
    {"abc", 0, "abc", "\"abc\""},
    {"", 0, "\"\"", "\"\""},
    {"a b", 0, "\"a b\"", "\"a b\""},
    {"a=b", 0, "\"a=b\"", "\"a=b\""},
    {"a\"b", 0, "\"a\\\"b\"", "\"a\\\"b\""},
    {"a\\b", 0, "\"a\\\\b\"", "\"a\\\\b\""},
    {"a\nb", 0, "\"a\\nb\"", "\"a\\nb\""},
    {"a\rb", 0, "\"a\\rb\"", "\"a\\rb\""},
    {"a\tb", 0, "\"a\\tb\"", "\"a\\tb\""},
    {"\x01", 0, "\"\\u0001\"", "\"\\u0001\""},
    {"\x1f", 0, "\"\\u001f\"", "\"\\u001f\""},
    {"\x08\x0c", 0, "\"\\u0008\\u000c\"", "\"\\u0008\\u000c\""},
    {"\x7f", 0, "\"\\u007f\"", "\"\\u007f\""},
    {"a\0b", 3, "\"a\\u0000b\"", "\"a\\u0000b\""},
    {"/path/x", 0, "/path/x", "\"/path/x\""},
    {"-1.5e+3", 0, "-1.5e+3", "\"-1.5e+3\""},
    {"{}[],:", 0, "{}[],:", "\"{}[],:\""},
    {"caf\xc3\xa9", 0, "caf\xc3\xa9", "\"caf\xc3\xa9\""},
    {"\xe4\xb8\xad", 0, "\xe4\xb8\xad", "\"\xe4\xb8\xad\""},
    {"\xf0\x9f\x98\x80", 0, "\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\""},
    {"\xef\xbf\xbf", 0, "\xef\xbf\xbf", "\"\xef\xbf\xbf\""}, /* U+FFFF */
    {"\xf4\x8f\xbf\xbf", 0, "\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\""},
    {"\xc2\xa0", 0, "\xc2\xa0", "\"\xc2\xa0\""}, /* NBSP: not a control */
    /* C1 controls: NEL breaks lines for some readers */
    {"\xc2\x85", 0, "\"\\u0085\"", "\"\\u0085\""},
    {"a\xc2\x80"
     "b\xc2\x9f",
     0, "\"a\\u0080b\\u009f\"", "\"a\\u0080b\\u009f\""},
    /* invalid UTF-8: one U+FFFD per byte */
    {"\xff", 0, FFFD, "\"" FFFD "\""},
    {"a\xc3", 0, "a" FFFD, "\"a" FFFD "\""},
    {"\xc3(", 0, FFFD "(", "\"" FFFD "(\""},
    {"\x80\xbf", 0, FFFD FFFD, "\"" FFFD FFFD "\""},
    {"\xc0\xaf", 0, FFFD FFFD, "\"" FFFD FFFD "\""}, /* overlong / */
    {"\xc1\xbf", 0, FFFD FFFD, "\"" FFFD FFFD "\""}, /* overlong */
    {"\xe0\x80\xaf", 0, FFFD FFFD FFFD, "\"" FFFD FFFD FFFD "\""},
    {"\xf0\x80\x80\xaf", 0, FFFD FFFD FFFD FFFD, "\"" FFFD FFFD FFFD FFFD "\""},
    {"\xed\xa0\x80", 0, FFFD FFFD FFFD, "\"" FFFD FFFD FFFD "\""},
    {"\xf4\x90\x80\x80", 0, FFFD FFFD FFFD FFFD, "\"" FFFD FFFD FFFD FFFD "\""},
    {"\xf8\x88\x80\x80\x80", 0, FFFD FFFD FFFD FFFD FFFD,
     "\"" FFFD FFFD FFFD FFFD FFFD "\""},
    {"\xe4\xb8", 0, FFFD FFFD, "\"" FFFD FFFD "\""}, /* cut short */
    {"\xe4\xb8z", 0, FFFD FFFD "z", "\"" FFFD FFFD "z\""},
    {"\xf0\x9f\x98", 0, FFFD FFFD FFFD, "\"" FFFD FFFD FFFD "\""},
    {"a b\xff", 0, "\"a b" FFFD "\"", "\"a b" FFFD "\""},
    {"\xff\n", 0, "\"" FFFD "\\n\"", "\"" FFFD "\\n\""},
    {"x=\"1\" y", 0, "\"x=\\\"1\\\" y\"", "\"x=\\\"1\\\" y\""},
};

static void
test_value_escapers(void **state)
{
	size_t i, n, len;
	struct evbuffer *b;
	char *s;

	(void)state;
	for (i = 0; i < sizeof(value_cases) / sizeof(value_cases[0]); i++) {
		const struct value_case *c = &value_cases[i];

		len = c->len ? c->len : strlen(c->in);
		b = evbuffer_new();
		assert_int_equal(format_logfmt_value(b, c->in, len), 0);
		s = buf_string(b, &n);
		assert_bytes(c->logfmt, strlen(c->logfmt), s, n);
		free(s);
		evbuffer_drain(b, evbuffer_get_length(b));
		assert_int_equal(format_json_string(b, c->in, len), 0);
		s = buf_string(b, &n);
		assert_bytes(c->json, strlen(c->json), s, n);
		free(s);
		evbuffer_free(b);
	}
}

/* Every single byte, against the rule stated in format.h. */
static void
test_value_every_byte(void **state)
{
	char in, want[16], *s;
	struct evbuffer *b = evbuffer_new();
	size_t n;
	int c;

	(void)state;
	for (c = 0; c < 256; c++) {
		in = (char)c;
		if (c >= 0x80)
			strcpy(want, FFFD); /* never valid alone */
		else if (c == '"' || c == '\\')
			sprintf(want, "\"\\%c\"", c);
		else if (c == '\n')
			strcpy(want, "\"\\n\"");
		else if (c == '\r')
			strcpy(want, "\"\\r\"");
		else if (c == '\t')
			strcpy(want, "\"\\t\"");
		else if (c < 0x20 || c == 0x7f)
			sprintf(want, "\"\\u%04x\"", (unsigned)c);
		else if (c == ' ' || c == '=')
			sprintf(want, "\"%c\"", c);
		else
			sprintf(want, "%c", c);
		assert_int_equal(format_logfmt_value(b, &in, 1), 0);
		s = buf_string(b, &n);
		assert_bytes(want, strlen(want), s, n);
		free(s);
		evbuffer_drain(b, n);
	}
	evbuffer_free(b);
}

/* JSON strings parse back to the input when it is valid UTF-8. */
static void
test_json_string_round_trip(void **state)
{
	static const char *const in[] = {
	    "",
	    "plain",
	    "a\"b\\c/d",
	    "\n\r\t\x01\x1f\x7f",
	    "caf\xc3\xa9",
	    "\xf0\x9f\x98\x80 \xe4\xb8\xad",
	    "\xc2\x85\xc2\x9f",
	    "\xe2\x80\xa8",
	};
	struct evbuffer *b = evbuffer_new();
	json_object *o;
	size_t i, n;
	char *s;

	(void)state;
	for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		assert_int_equal(format_json_string(b, in[i], strlen(in[i])),
		                 0);
		s = buf_string(b, &n);
		check_text_bytes(s, n);
		o = json_parse_all(s, n);
		assert_non_null(o);
		assert_string_equal(json_object_get_string(o), in[i]);
		json_object_put(o);
		free(s);
		evbuffer_drain(b, n);
	}
	evbuffer_free(b);
}

static void
test_value_long_and_null(void **state)
{
	struct evbuffer *b = evbuffer_new();
	size_t n, i, len = 50000;
	char *in = malloc(len), *want = malloc(2 * len + 3), *s;

	(void)state;
	assert_true(in != NULL && want != NULL);
	/* Longer than any staging buffer, escapes everywhere. */
	want[0] = '"';
	for (i = 0; i < len; i++) {
		in[i] = i % 3 == 0 ? '"' : 'x';
		if (i % 3 == 0)
			memcpy(want + 1 + i + i / 3, "\\\"", 2);
		else
			want[1 + i + (i + 2) / 3] = 'x';
	}
	n = 1 + len + (len + 2) / 3;
	want[n++] = '"';
	assert_int_equal(format_logfmt_value(b, in, len), 0);
	s = buf_string(b, &i);
	assert_bytes(want, n, s, i);
	free(s);
	evbuffer_drain(b, i);

	assert_int_equal(format_logfmt_value(b, NULL, 0), 0);
	assert_int_equal(format_json_string(b, NULL, 0), 0);
	s = buf_string(b, &i);
	assert_string_equal(s, "\"\"\"\"");
	free(s);
	assert_int_equal(format_logfmt_value(NULL, "x", 1), -1);
	assert_int_equal(format_json_string(NULL, "x", 1), -1);
	free(in);
	free(want);
	evbuffer_free(b);
}

/* ---- format_event: table ---------------------------------------------- */

#define HDR "at=event src=stream channel=/topic/T id=/topic/T:7 replay_id=7"
#define JHDR                                                                   \
	"{\"at\":\"event\",\"src\":\"stream\",\"channel\":\"/topic/T\","       \
	"\"id\":\"/topic/T:7\",\"replay_id\":\"7\""

struct event_case {
	enum format_kind kind;
	const char *payload;
	size_t len; /* 0: strlen(payload) */
	int rc;
	const char *tail; /* between the header and the line's end */
	int checks;       /* extra checks, below */
};

/* Compare with the json-c flattening (valid, json-c-clean input only). */
#define ORACLE 1
/* Skip the logfmt/JSON agreement check: json-c cuts keys at NUL. */
#define NO_AGREE 2

#define L FORMAT_LOGFMT
#define J FORMAT_JSON

static const struct event_case event_cases[] = {
    /* shapes */
    {L, "{\"a\":\"x\"}", 0, 0, " a=x", ORACLE},
    {J, "{\"a\":\"x\"}", 0, 0, ",\"a\":\"x\"", ORACLE},
    {L, "{}", 0, 0, "", ORACLE},
    {J, "{}", 0, 0, "", ORACLE},
    {L, " \t\r\n{ \"a\" : 1 , \"b\" :[ ] }\n ", 0, 0, " a=1 b=[]", ORACLE},
    {L,
     "{\"i\":0,\"n\":-12,\"d\":3.25,\"e\":1e10,\"E\":-2.5E-3,"
     "\"p\":1e+2,\"z\":-0}",
     0, 0, " i=0 n=-12 d=3.25 e=1e10 E=-2.5E-3 p=1e+2 z=-0", ORACLE},
    {J,
     "{\"i\":0,\"n\":-12,\"d\":3.25,\"e\":1e10,\"E\":-2.5E-3,"
     "\"p\":1e+2,\"z\":-0}",
     0, 0,
     ",\"i\":0,\"n\":-12,\"d\":3.25,\"e\":1e10,\"E\":-2.5E-3,"
     "\"p\":1e+2,\"z\":-0",
     ORACLE},
    {L, "{\"t\":true,\"f\":false,\"z\":null}", 0, 0,
     " t=true f=false z=", ORACLE},
    {J, "{\"t\":true,\"f\":false,\"z\":null}", 0, 0,
     ",\"t\":true,\"f\":false,\"z\":null", ORACLE},
    {L, "{\"s\":\"\",\"o\":{},\"a\":[]}", 0, 0, " s=\"\" o={} a=[]", ORACLE},
    {J, "{\"s\":\"\",\"o\":{},\"a\":[]}", 0, 0, ",\"s\":\"\",\"o\":{},\"a\":[]",
     ORACLE},
    {L, "{\"a\":{\"b\":{\"c\":\"d\"}},\"e\":\"f\"}", 0, 0, " a.b.c=d e=f",
     ORACLE},
    {L, "{\"a\":[1,\"two\",[3,[]],{\"x\":null},{}]}", 0, 0,
     " a.0=1 a.1=two a.2.0=3 a.2.1=[] a.3.x= a.4={}", ORACLE},
    {J, "{\"a\":[1,\"two\",[3,[]],{\"x\":null},{}]}", 0, 0,
     ",\"a.0\":1,\"a.1\":\"two\",\"a.2.0\":3,\"a.2.1\":[],"
     "\"a.3.x\":null,\"a.4\":{}",
     ORACLE},
    {L, "{\"r\":[{\"Id\":\"1\"},{\"Id\":\"2\",\"T\":[\"x\",\"y\"]}]}", 0, 0,
     " r.0.Id=1 r.1.Id=2 r.1.T.0=x r.1.T.1=y", ORACLE},
    /* keys */
    {L,
     "{\"a b\":1,\"c=d\":2,\"e\\\"f\":3,\"\":4,\"g\\\\h\":5,"
     "\"i.j\":6,\"k\\u007fl\":7,\"m\\n\":8}",
     0, 0, " a_b=1 c_d=2 e_f=3 _=4 g\\h=5 i.j=6 k_l=7 m_=8", ORACLE},
    {J,
     "{\"a b\":1,\"c=d\":2,\"e\\\"f\":3,\"\":4,\"g\\\\h\":5,"
     "\"i.j\":6,\"k\\u007fl\":7,\"m\\n\":8}",
     0, 0,
     ",\"a b\":1,\"c=d\":2,\"e\\\"f\":3,\"_\":4,\"g\\\\h\":5,"
     "\"i.j\":6,\"k\\u007fl\":7,\"m\\n\":8",
     ORACLE},
    {L,
     "{\"\\u00e9t\\u00e9\":1,\"tab\\there\":2,\"\\u0000\":3,"
     "\"\xc3\xa9\":4}",
     0, 0, " __t__=1 tab_here=2 _=3 __=4", NO_AGREE},
    {J,
     "{\"\\u00e9t\\u00e9\":1,\"tab\\there\":2,\"\\u0000\":3,"
     "\"\xc3\xa9\":4}",
     0, 0,
     ",\"\xc3\xa9t\xc3\xa9\":1,\"tab\\there\":2,\"\\u0000\":3,"
     "\"\xc3\xa9\":4",
     NO_AGREE},
    {L, "{\"a\":{\"\":{\"\":1}}}", 0, 0, " a._._=1", ORACLE},
    {L, "{\"k\xff\":1}", 0, 0, " k_=1", 0},
    {J, "{\"k\xff\":1}", 0, 0, ",\"k" FFFD "\":1", 0},
    /* string values */
    {L, "{\"s\":\"q\\\"b\\\\s\\/n\\nr\\rt\\tb\\bf\\f\"}", 0, 0,
     " s=\"q\\\"b\\\\s/n\\nr\\rt\\tb\\u0008f\\u000c\"", ORACLE},
    {J, "{\"s\":\"q\\\"b\\\\s\\/n\\nr\\rt\\tb\\bf\\f\"}", 0, 0,
     ",\"s\":\"q\\\"b\\\\s/n\\nr\\rt\\tb\\u0008f\\u000c\"", ORACLE},
    {L, "{\"q\":\"a=b c\",\"u\":\"\\u0022\\u005c\",\"n\":\"\\u0000\"}", 0, 0,
     " q=\"a=b c\" u=\"\\\"\\\\\" n=\"\\u0000\"", ORACLE},
    {L,
     "{\"e\":\"\\u00e9\",\"z\":\"\\u4E2D\",\"s\":\"\\ud83d\\ude00\","
     "\"S\":\"\\uD83D\\uDE00\",\"raw\":\"\xc3\xa9\xe4\xb8\xad"
     "\xf0\x9f\x98\x80\"}",
     0, 0,
     " e=\xc3\xa9 z=\xe4\xb8\xad s=\xf0\x9f\x98\x80 S=\xf0\x9f\x98\x80"
     " raw=\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80",
     ORACLE},
    {J,
     "{\"e\":\"\\u00e9\",\"z\":\"\\u4E2D\",\"s\":\"\\ud83d\\ude00\","
     "\"S\":\"\\uD83D\\uDE00\",\"raw\":\"\xc3\xa9\xe4\xb8\xad"
     "\xf0\x9f\x98\x80\"}",
     0, 0,
     ",\"e\":\"\xc3\xa9\",\"z\":\"\xe4\xb8\xad\",\"s\":\"\xf0\x9f\x98\x80\""
     ",\"S\":\"\xf0\x9f\x98\x80\",\"raw\":\"\xc3\xa9\xe4\xb8\xad"
     "\xf0\x9f\x98\x80\"",
     ORACLE},
    /* lone and broken surrogates */
    {L,
     "{\"h\":\"\\ud800\",\"l\":\"\\udc00x\",\"hh\":\"\\ud800\\ud83d"
     "\\ude00\",\"hz\":\"\\ud800\\u0041\",\"e\":\"\\ud83d\","
     "\"hs\":\"\\ud83d \\ude00\"}",
     0, 0,
     " h=" FFFD " l=" FFFD "x hh=" FFFD "\xf0\x9f\x98\x80 hz=" FFFD "A e=" FFFD
     " hs=\"" FFFD " " FFFD "\"",
     0},
    {J, "{\"h\":\"\\ud800\",\"l\":\"\\udc00x\"}", 0, 0,
     ",\"h\":\"" FFFD "\",\"l\":\"" FFFD "x\"", 0},
    /* raw invalid UTF-8 */
    {L,
     "{\"b\":\"a\xff"
     "b\",\"o\":\"\xc0\xaf\",\"t\":\"\xe4\xb8\","
     "\"s\":\"\xed\xa0\x80\",\"big\":\"\xf4\x90\x80\x80\"}",
     0, 0,
     " b=a" FFFD "b o=" FFFD FFFD " t=" FFFD FFFD " s=" FFFD FFFD FFFD
     " big=" FFFD FFFD FFFD FFFD,
     0},
    {J,
     "{\"b\":\"a\xff"
     "b\",\"o\":\"\xc0\xaf\"}",
     0, 0, ",\"b\":\"a" FFFD "b\",\"o\":\"" FFFD FFFD "\"", 0},
    /* a raw lead byte next to an escape does not merge with it */
    {L, "{\"m\":\"\xc3\\u00a9\"}", 0, 0, " m=" FFFD "\xc2\xa9", 0},
    /* controls */
    {L,
     "{\"c\":\"\\u0001\\u001f\\u007f\",\"n\":\"\\u0085\","
     "\"raw\":\"a\x01"
     "b\x7f\",\"nel\":\"\xc2\x85\","
     "\"nbsp\":\"\xc2\xa0\"}",
     0, 0,
     " c=\"\\u0001\\u001f\\u007f\" n=\"\\u0085\" raw=\"a\\u0001b\\u007f\""
     " nel=\"\\u0085\" nbsp=\xc2\xa0",
     0},
    {J,
     "{\"c\":\"\\u0001\\u001f\\u007f\",\"raw\":\"a\x01"
     "b\tc\"}",
     0, 0, ",\"c\":\"\\u0001\\u001f\\u007f\",\"raw\":\"a\\u0001b\\tc\"", 0},
    /* top level other than an object */
    {L, "\"hello world\"", 0, 0, " data=\"hello world\"", ORACLE},
    {J, "\"hello world\"", 0, 0, ",\"data\":\"hello world\"", ORACLE},
    {L, " \"x\" ", 0, 0, " data=x", ORACLE},
    {L, "42", 0, 0, " data=42", ORACLE},
    {L, "-0.5e-7", 0, 0, " data=-0.5e-7", ORACLE},
    {L, "true", 0, 0, " data=true", ORACLE},
    {L, "null", 0, 0, " data=", 0}, /* json-c reads null as NULL */
    {J, "null", 0, 0, ",\"data\":null", 0},
    {L, "[]", 0, 0, " data=[]", ORACLE},
    {J, "[]", 0, 0, ",\"data\":[]", ORACLE},
    {L, "[1,{\"a\":2},[]]", 0, 0, " data.0=1 data.1.a=2 data.2=[]", ORACLE},
    {J, "[1,{\"a\":2}]", 0, 0, ",\"data.0\":1,\"data.1.a\":2", ORACLE},

    /* invalid payloads: the error line, result 1 */
    {L, "{\"a\":1", 0, 1,
     " payload_error=\"unexpected end of input at byte 6\""
     " raw=\"{\\\"a\\\":1\"",
     0},
    {J, "{\"a\":1", 0, 1,
     ",\"payload_error\":\"unexpected end of input at byte 6\","
     "\"raw\":\"{\\\"a\\\":1\"",
     0},
    {L, "{\"a\":1}x", 0, 1,
     " payload_error=\"trailing data after the payload at byte 7\""
     " raw=\"{\\\"a\\\":1}x\"",
     0},
    {L, "{\"a\":1} {}", 0, 1,
     " payload_error=\"trailing data after the payload at byte 8\""
     " raw=\"{\\\"a\\\":1} {}\"",
     0},
    {L, "{\"a\":1}}", 0, 1,
     " payload_error=\"trailing data after the payload at byte 7\""
     " raw=\"{\\\"a\\\":1}}\"",
     0},
    {L, "{\"a\":\"\\x\"}", 0, 1,
     " payload_error=\"invalid escape at byte 7\""
     " raw=\"{\\\"a\\\":\\\"\\\\x\\\"}\"",
     0},
    {L, "{\"a\":\"\\u12\"}", 0, 1,
     " payload_error=\"invalid unicode escape at byte 7\""
     " raw=\"{\\\"a\\\":\\\"\\\\u12\\\"}\"",
     0},
    {L, "{\"a\":\"\\", 0, 1,
     " payload_error=\"unexpected end of input at byte 7\""
     " raw=\"{\\\"a\\\":\\\"\\\\\"",
     0},
    {L, "{\"a\":01}", 0, 1,
     " payload_error=\"expected ',' or '}' at byte 6\""
     " raw=\"{\\\"a\\\":01}\"",
     0},
    {L, "{\"a\":-}", 0, 1,
     " payload_error=\"invalid number at byte 6\" raw=\"{\\\"a\\\":-}\"", 0},
    {L, "{\"a\":1.}", 0, 1,
     " payload_error=\"invalid number at byte 7\" raw=\"{\\\"a\\\":1.}\"", 0},
    {L, "{\"a\":1e}", 0, 1,
     " payload_error=\"invalid number at byte 7\" raw=\"{\\\"a\\\":1e}\"", 0},
    {L, "{\"a\":1e5.3}", 0, 1,
     " payload_error=\"expected ',' or '}' at byte 8\""
     " raw=\"{\\\"a\\\":1e5.3}\"",
     0},
    {L, "{\"a\":.5}", 0, 1,
     " payload_error=\"unexpected character at byte 5\""
     " raw=\"{\\\"a\\\":.5}\"",
     0},
    {L, "{\"a\":+1}", 0, 1,
     " payload_error=\"unexpected character at byte 5\""
     " raw=\"{\\\"a\\\":+1}\"",
     0},
    {L, "{\"a\":tru}", 0, 1,
     " payload_error=\"invalid literal at byte 5\""
     " raw=\"{\\\"a\\\":tru}\"",
     0},
    {L, "{\"a\":true1}", 0, 1,
     " payload_error=\"expected ',' or '}' at byte 9\""
     " raw=\"{\\\"a\\\":true1}\"",
     0},
    {L, "nul", 0, 1, " payload_error=\"invalid literal at byte 0\" raw=\"nul\"",
     0},
    {L, "{\"a\" 1}", 0, 1,
     " payload_error=\"expected ':' at byte 5\" raw=\"{\\\"a\\\" 1}\"", 0},
    {L, "{\"a\":1 \"b\":2}", 0, 1,
     " payload_error=\"expected ',' or '}' at byte 7\""
     " raw=\"{\\\"a\\\":1 \\\"b\\\":2}\"",
     0},
    {L, "{a:1}", 0, 1,
     " payload_error=\"expected a string key at byte 1\" raw=\"{a:1}\"", 0},
    {L, "{\"a\":1,}", 0, 1,
     " payload_error=\"expected a string key at byte 7\""
     " raw=\"{\\\"a\\\":1,}\"",
     0},
    {L, "{\"a\":1,\0}", 9, 1,
     " payload_error=\"expected a string key at byte 7\""
     " raw=\"{\\\"a\\\":1,\\u0000}\"",
     0},
    {L, "{\"a\":1,\"a\"", 0, 1,
     " payload_error=\"unexpected end of input at byte 10\""
     " raw=\"{\\\"a\\\":1,\\\"a\\\"\"",
     0},
    {L, "{\"a\":\"b\"", 0, 1,
     " payload_error=\"unexpected end of input at byte 8\""
     " raw=\"{\\\"a\\\":\\\"b\\\"\"",
     0},
    {L, "{\"a\":\"x\"y}", 0, 1,
     " payload_error=\"expected ',' or '}' at byte 8\""
     " raw=\"{\\\"a\\\":\\\"x\\\"y}\"",
     0},
    {L, "[1,]", 0, 1,
     " payload_error=\"unexpected character at byte 3\" raw=\"[1,]\"", 0},
    {L, "{\"a\":[}", 0, 1,
     " payload_error=\"unexpected character at byte 6\""
     " raw=\"{\\\"a\\\":[}\"",
     0},
    {L, "{\"a\":[1,2}", 0, 1,
     " payload_error=\"expected ',' or ']' at byte 9\""
     " raw=\"{\\\"a\\\":[1,2}\"",
     0},
    {L, "{\"a\":\"abc", 0, 1,
     " payload_error=\"unterminated string at byte 9\""
     " raw=\"{\\\"a\\\":\\\"abc\"",
     0},
    {L, "{\"a\":\"x\ny\xff", 0, 1,
     " payload_error=\"unterminated string at byte 10\""
     " raw=\"{\\\"a\\\":\\\"x\\ny" FFFD "\"",
     0},
    {J, "{\"a\":\"x\ny\xff", 0, 1,
     ",\"payload_error\":\"unterminated string at byte 10\","
     "\"raw\":\"{\\\"a\\\":\\\"x\\ny" FFFD "\"",
     0},
    {L, "", 0, 1, " payload_error=\"empty payload at byte 0\" raw=\"\"", 0},
    {J, "", 0, 1, ",\"payload_error\":\"empty payload at byte 0\",\"raw\":\"\"",
     0},
    {L, " \n ", 0, 1,
     " payload_error=\"empty payload at byte 3\" raw=\" \\n \"", 0},
};

static void
run_event_case(const struct event_case *c)
{
	struct event ev = {EVENT_SRC_STREAM, "/topic/T", "7", NULL, NULL,
	                   c->payload,       0, NULL};
	char *want, *line;
	size_t n, wn;
	int rc;
	json_object *o;

	ev.payload_len = c->len ? c->len : strlen(c->payload);
	wn = strlen(JHDR) + strlen(c->tail) + 3;
	want = malloc(wn);
	assert_non_null(want);
	snprintf(want, wn, "%s%s%s", c->kind == FORMAT_JSON ? JHDR : HDR,
	         c->tail, c->kind == FORMAT_JSON ? "}\n" : "\n");
	line = format_line(c->kind, &ev, &rc, &n);
	if (rc != c->rc)
		print_error("payload: %s\n", c->payload);
	assert_int_equal(rc, c->rc);
	assert_bytes(want, strlen(want), line, n);
	o = check_line(c->kind, line, n);
	json_object_put(o);
	if (c->rc == 0 && !(c->checks & NO_AGREE))
		check_formats_agree(&ev);
	if (c->checks & ORACLE)
		check_against_oracle(&ev);
	free(want);
	free(line);
}

static void
test_event_cases(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(event_cases) / sizeof(event_cases[0]); i++)
		run_event_case(&event_cases[i]);
}

/* ---- header ----------------------------------------------------------- */

struct header_case {
	enum format_kind kind;
	struct event ev;
	const char *line;
};

static const struct header_case header_cases[] = {
    {L,
     {EVENT_SRC_STREAM, "/topic/AccountWatch", "1234", "updated",
      "2026-11-26T19:27:53.000Z",
      "{\"event\":{\"type\":\"updated\",\"createdDate\":"
      "\"2026-11-26T19:27:53.000Z\",\"replayId\":1234},\"sobject\":"
      "{\"Id\":\"001xx000003DGb2AAG\",\"Name\":\"Acme Corp\"}}",
      0, NULL},
     "at=event src=stream channel=/topic/AccountWatch"
     " id=/topic/AccountWatch:1234 replay_id=1234 event_type=updated"
     " created=2026-11-26T19:27:53.000Z sobject.Id=001xx000003DGb2AAG"
     " sobject.Name=\"Acme Corp\"\n"},
    {L,
     {EVENT_SRC_POLL, "SetupAuditTrail", "0Ymxx0000000001", NULL,
      "2026-11-26T19:20:01.000Z",
      "{\"Action\":\"changedPassword\",\"Section\":\"Manage Users\","
      "\"CreatedBy\":{\"Username\":\"admin@example.com\"},\"Display\":"
      "\"Changed password for user jdoe@example.com\"}",
      0, NULL},
     "at=event src=poll object=SetupAuditTrail"
     " id=SetupAuditTrail:0Ymxx0000000001 created=2026-11-26T19:20:01.000Z"
     " Action=changedPassword Section=\"Manage Users\""
     " CreatedBy.Username=admin@example.com"
     " Display=\"Changed password for user jdoe@example.com\"\n"},
    {J,
     {EVENT_SRC_POLL, "SetupAuditTrail", "0Ymxx0000000001", NULL,
      "2026-11-26T19:20:01.000Z", "{\"Action\":\"changedPassword\"}", 0, NULL},
     "{\"at\":\"event\",\"src\":\"poll\",\"object\":\"SetupAuditTrail\","
     "\"id\":\"SetupAuditTrail:0Ymxx0000000001\","
     "\"created\":\"2026-11-26T19:20:01.000Z\","
     "\"Action\":\"changedPassword\"}\n"},
    /* a poll may carry an event type too; never a replay_id */
    {L,
     {EVENT_SRC_POLL, "X", "1", "deleted", NULL, "{}", 0, NULL},
     "at=event src=poll object=X id=X:1 event_type=deleted\n"},
    /* no position: no id, no replay_id */
    {L,
     {EVENT_SRC_STREAM, "/u/Notes", "", NULL, NULL, "{\"a\":1}", 0, NULL},
     "at=event src=stream channel=/u/Notes a=1\n"},
    {J,
     {EVENT_SRC_STREAM, "/u/Notes", "", NULL, NULL, "{\"a\":1}", 0, NULL},
     "{\"at\":\"event\",\"src\":\"stream\",\"channel\":\"/u/Notes\","
     "\"a\":1}\n"},
    /* header values are escaped like any other */
    {L,
     {EVENT_SRC_STREAM, "/topic/a b\"c\n", "7 8", "t=\xff", "", "{}", 0, NULL},
     "at=event src=stream channel=\"/topic/a b\\\"c\\n\""
     " id=\"/topic/a b\\\"c\\n:7 8\" replay_id=\"7 8\" event_type=\"t=" FFFD
     "\" created=\"\"\n"},
    {J,
     {EVENT_SRC_STREAM, "/topic/a b\"c\n", "7 8", "t=\xff", "", "{}", 0, NULL},
     "{\"at\":\"event\",\"src\":\"stream\",\"channel\":\"/topic/a b\\\"c\\n\","
     "\"id\":\"/topic/a b\\\"c\\n:7 8\",\"replay_id\":\"7 8\","
     "\"event_type\":\"t=" FFFD "\",\"created\":\"\"}\n"},
};

static void
test_header(void **state)
{
	size_t i, n;
	struct event ev;
	char *line;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(header_cases) / sizeof(header_cases[0]); i++) {
		ev = header_cases[i].ev;
		ev.payload_len = strlen(ev.payload);
		line = format_line(header_cases[i].kind, &ev, &rc, &n);
		assert_int_equal(rc, 0);
		assert_bytes(header_cases[i].line, strlen(header_cases[i].line),
		             line, n);
		json_object_put(check_line(header_cases[i].kind, line, n));
		check_formats_agree(&ev);
		free(line);
	}
}

/* ---- the event.* skip rule -------------------------------------------- */

static void
expect_line(enum format_kind kind, const struct event *ev, int want_rc,
            const char *want)
{
	size_t n;
	int rc;
	char *line = format_line(kind, ev, &rc, &n);

	assert_int_equal(rc, want_rc);
	assert_bytes(want, strlen(want), line, n);
	json_object_put(check_line(kind, line, n));
	free(line);
}

#define SKIP_PAYLOAD                                                           \
	"{\"event\":{\"replayId\":7,\"type\":\"updated\",\"createdDate\":"     \
	"\"2026-01-01T00:00:00.000Z\",\"EventUuid\":\"u-1\"},"                 \
	"\"x\":{\"event\":{\"type\":\"t\"}}}"

static void
test_skip_rule(void **state)
{
	struct event ev = {EVENT_SRC_STREAM,
	                   "/topic/T",
	                   "7",
	                   "updated",
	                   "2026-01-01T00:00:00.000Z",
	                   SKIP_PAYLOAD,
	                   strlen(SKIP_PAYLOAD), NULL};

	(void)state;
	/* all three in the header: only the rest of event.* remains;
	 * an "event" deeper down is ordinary data */
	expect_line(FORMAT_LOGFMT, &ev, 0,
	            HDR " event_type=updated created=2026-01-01T00:00:00.000Z"
	                " event.EventUuid=u-1 x.event.type=t\n");
	expect_line(FORMAT_JSON, &ev, 0,
	            JHDR
	            ",\"event_type\":\"updated\","
	            "\"created\":\"2026-01-01T00:00:00.000Z\","
	            "\"event.EventUuid\":\"u-1\",\"x.event.type\":\"t\"}\n");
	check_against_oracle(&ev);

	/* what the header lacks stays in the payload */
	ev.event_type = NULL;
	ev.created = NULL;
	expect_line(FORMAT_LOGFMT, &ev, 0,
	            HDR " event.type=updated"
	                " event.createdDate=2026-01-01T00:00:00.000Z"
	                " event.EventUuid=u-1 x.event.type=t\n");
	check_against_oracle(&ev);

	/* polls have no replay_id, so event.replayId is kept */
	ev.src = EVENT_SRC_POLL;
	ev.event_type = "updated";
	ev.created = "c";
	expect_line(FORMAT_LOGFMT, &ev, 0,
	            "at=event src=poll object=/topic/T id=/topic/T:7"
	            " event_type=updated created=c event.replayId=7"
	            " event.EventUuid=u-1 x.event.type=t\n");
	check_against_oracle(&ev);

	/* a stream without a position has no replay_id either */
	ev.src = EVENT_SRC_STREAM;
	ev.position = "";
	expect_line(FORMAT_LOGFMT, &ev, 0,
	            "at=event src=stream channel=/topic/T event_type=updated"
	            " created=c event.replayId=7 event.EventUuid=u-1"
	            " x.event.type=t\n");
	check_against_oracle(&ev);
}

static void
test_skip_rule_values(void **state)
{
	struct event ev = {
	    EVENT_SRC_STREAM, "/topic/T", "7", "u", NULL, NULL, 0, NULL};

	(void)state;
	/* a skipped member may hold anything; it is still validated */
	ev.payload = "{\"event\":{\"type\":{\"a\":[1,{\"b\":\"\\u00e9\"}]},"
	             "\"k\":1},\"z\":2}";
	ev.payload_len = strlen(ev.payload);
	expect_line(FORMAT_LOGFMT, &ev, 0, HDR " event_type=u event.k=1 z=2\n");
	check_against_oracle(&ev);

	ev.payload = "{\"event\":{\"type\":[1,}}";
	ev.payload_len = strlen(ev.payload);
	expect_line(FORMAT_LOGFMT, &ev, 1,
	            HDR
	            " event_type=u payload_error=\"unexpected character at"
	            " byte 20\" raw=\"{\\\"event\\\":{\\\"type\\\":[1,}}\"\n");

	/* "event" that is not an object, or not at the top, is data */
	ev.payload = "{\"event\":\"x\",\"type\":\"y\"}";
	ev.payload_len = strlen(ev.payload);
	expect_line(FORMAT_LOGFMT, &ev, 0,
	            HDR " event_type=u event=x type=y\n");
	ev.payload = "[{\"event\":{\"type\":\"x\"}}]";
	ev.payload_len = strlen(ev.payload);
	expect_line(FORMAT_LOGFMT, &ev, 0,
	            HDR " event_type=u data.0.event.type=x\n");
	check_against_oracle(&ev);

	/* an escaped spelling of the names is the same key */
	ev.payload = "{\"ev\\u0065nt\":{\"typ\\u0065\":\"x\",\"n\":1}}";
	ev.payload_len = strlen(ev.payload);
	expect_line(FORMAT_LOGFMT, &ev, 0, HDR " event_type=u event.n=1\n");
	check_against_oracle(&ev);

	/* an empty event object left empty by the skip writes nothing */
	ev.payload = "{\"event\":{\"type\":\"x\"}}";
	ev.payload_len = strlen(ev.payload);
	expect_line(FORMAT_LOGFMT, &ev, 0, HDR " event_type=u\n");
	ev.payload = "{\"event\":{}}";
	ev.payload_len = strlen(ev.payload);
	expect_line(FORMAT_LOGFMT, &ev, 0, HDR " event_type=u event={}\n");
}

/* ---- limits ----------------------------------------------------------- */

/* depth nested objects {"k":{"k":...1...}} in logfmt; returns the result. */
static int
format_nested(int depth, int arrays, enum format_kind kind, char **linep,
              size_t *np)
{
	size_t cap = (size_t)depth * 8 + 16, n = 0;
	char *p = malloc(cap);
	struct event ev = {
	    EVENT_SRC_STREAM, "/topic/T", "7", NULL, NULL, NULL, 0, NULL};
	int i, rc;

	assert_non_null(p);
	for (i = 0; i < depth; i++)
		n += (size_t)sprintf(p + n, "%s", arrays ? "[" : "{\"k\":");
	p[n++] = '1';
	for (i = 0; i < depth; i++)
		p[n++] = arrays ? ']' : '}';
	ev.payload = p;
	ev.payload_len = n;
	*linep = format_line(kind, &ev, &rc, np);
	json_object_put(check_line(kind, *linep, *np));
	free(p);
	return rc;
}

static void
test_depth_limit(void **state)
{
	char *line, want[1024];
	size_t n, w;
	int i;

	(void)state;
	/* FORMAT_MAX_DEPTH objects: fine, the key has that many parts */
	assert_int_equal(
	    format_nested(FORMAT_MAX_DEPTH, 0, FORMAT_LOGFMT, &line, &n), 0);
	w = (size_t)sprintf(want, "%s k", HDR);
	for (i = 1; i < FORMAT_MAX_DEPTH; i++)
		w += (size_t)sprintf(want + w, ".k");
	sprintf(want + w, "=1\n");
	assert_bytes(want, strlen(want), line, n);
	free(line);

	/* one more: the error line, pointing at the bracket too deep */
	assert_int_equal(
	    format_nested(FORMAT_MAX_DEPTH + 1, 0, FORMAT_LOGFMT, &line, &n),
	    1);
	sprintf(want, "payload_error=\"nesting too deep at byte %d\"",
	        FORMAT_MAX_DEPTH * 5);
	assert_non_null(strstr(line, want));
	free(line);

	/* arrays count the same; the "data" wrapper does not */
	assert_int_equal(
	    format_nested(FORMAT_MAX_DEPTH, 1, FORMAT_JSON, &line, &n), 0);
	w = (size_t)sprintf(want, "%s,\"data", JHDR);
	for (i = 0; i < FORMAT_MAX_DEPTH; i++)
		w += (size_t)sprintf(want + w, ".0");
	sprintf(want + w, "\":1}\n");
	assert_bytes(want, strlen(want), line, n);
	free(line);
	assert_int_equal(
	    format_nested(FORMAT_MAX_DEPTH + 1, 1, FORMAT_JSON, &line, &n), 1);
	sprintf(want, "\"payload_error\":\"nesting too deep at byte %d\"",
	        FORMAT_MAX_DEPTH);
	assert_non_null(strstr(line, want));
	free(line);

	/* far deeper input stops at the limit, no deeper recursion */
	assert_int_equal(format_nested(100000, 1, FORMAT_LOGFMT, &line, &n), 1);
	free(line);
}

/* Long keys and strings push every scratch buffer past its stack part. */
static void
test_long_keys_and_values(void **state)
{
	struct event ev = {
	    EVENT_SRC_STREAM, "/topic/T", "7", NULL, NULL, NULL, 0, NULL};
	char *p, *want, *line, seg[40];
	size_t pn = 0, wn = 0, n, i, depth = 50, slen = 20000;
	int rc;

	(void)state;
	p = malloc(depth * 64 + slen * 2 + 64);
	want = malloc(depth * 64 + slen * 2 + 256);
	assert_true(p != NULL && want != NULL);
	wn = (size_t)sprintf(want, "%s ", HDR);
	for (i = 0; i < depth; i++) {
		sprintf(seg, "segment_number_%02zu_of_many", i);
		pn += (size_t)sprintf(p + pn, "{\"%s\":", seg);
		wn += (size_t)sprintf(want + wn, "%s%s", i ? "." : "", seg);
	}
	/* the value: escapes (decoded into scratch), then quotes on output */
	p[pn++] = '"';
	want[wn++] = '=';
	want[wn++] = '"';
	for (i = 0; i < slen; i++) {
		memcpy(p + pn, i % 2 ? "\\t" : "a", i % 2 ? 2 : 1);
		pn += i % 2 ? 2 : 1;
		memcpy(want + wn, i % 2 ? "\\t" : "a", i % 2 ? 2 : 1);
		wn += i % 2 ? 2 : 1;
	}
	p[pn++] = '"';
	want[wn++] = '"';
	want[wn++] = '\n';
	for (i = 0; i < depth; i++)
		p[pn++] = '}';
	ev.payload = p;
	ev.payload_len = pn;
	line = format_line(FORMAT_LOGFMT, &ev, &rc, &n);
	assert_int_equal(rc, 0);
	assert_bytes(want, wn, line, n);
	json_object_put(check_line(FORMAT_LOGFMT, line, n));
	free(line);
	check_formats_agree(&ev);
	check_against_oracle(&ev);
	free(p);
	free(want);
}

/*
 * A bad payload longer than the line's stack part: what was written of it
 * before the error must go, and what out held before must stay.
 */
static void
test_error_after_long_prefix(void **state)
{
	static const char before[] = "previous line\n";
	struct event ev = {
	    EVENT_SRC_STREAM, "/topic/T", "7", NULL, NULL, NULL, 0, NULL};
	struct evbuffer *out = evbuffer_new();
	size_t pn = 0, wn, n, i, count = 2000;
	char *p = malloc(count * 16 + 16), *want, *got;
	enum format_kind kind;

	(void)state;
	assert_true(out != NULL && p != NULL);
	p[pn++] = '{';
	for (i = 0; i < count; i++)
		pn += (size_t)sprintf(p + pn, "%s\"k%zu\":%zu", i ? "," : "", i,
		                      i);
	p[pn++] = ','; /* then the input stops */
	ev.payload = p;
	ev.payload_len = pn;
	want = malloc(pn * 2 + 512);
	assert_non_null(want);
	for (kind = FORMAT_LOGFMT; kind <= FORMAT_JSON; kind++) {
		assert_int_equal(evbuffer_add(out, before, strlen(before)), 0);
		assert_int_equal(format_event(kind, &ev, out), 1);
		wn = (size_t)sprintf(
		    want,
		    kind == FORMAT_JSON
		        ? "%s" JHDR ",\"payload_error\":\"unexpected end of "
		          "input at byte %zu\",\"raw\":\""
		        : "%s" HDR
		          " payload_error=\"unexpected end of input at "
		          "byte %zu\" raw=\"",
		    before, pn);
		for (i = 0; i < pn; i++) {
			if (p[i] == '"')
				want[wn++] = '\\';
			want[wn++] = p[i];
		}
		wn += (size_t)sprintf(want + wn, "%s",
		                      kind == FORMAT_JSON ? "\"}\n" : "\"\n");
		got = buf_string(out, &n);
		assert_bytes(want, wn, got, n);
		free(got);
		evbuffer_drain(out, n);
	}
	free(want);
	free(p);
	evbuffer_free(out);
}

/* Lines are appended: what out held before is never touched. */
static void
test_appends(void **state)
{
	struct event ev = {EVENT_SRC_STREAM, "/topic/T", "7", NULL, NULL,
	                   "{\"a\":1}",      7, NULL};
	struct evbuffer *out = evbuffer_new();
	char *got;
	size_t n;

	(void)state;
	assert_int_equal(format_event(FORMAT_LOGFMT, &ev, out), 0);
	assert_int_equal(format_event(FORMAT_JSON, &ev, out), 0);
	ev.payload_len = 6;
	assert_int_equal(format_event(FORMAT_LOGFMT, &ev, out), 1);
	got = buf_string(out, &n);
	assert_string_equal(
	    got, HDR " a=1\n" JHDR ",\"a\":1}\n" HDR
	             " payload_error=\"unexpected end of input at byte 6\""
	             " raw=\"{\\\"a\\\":1\"\n");
	free(got);
	evbuffer_free(out);
}

/* -1 only when out cannot grow; out is then left as it was. */
static void
test_out_cannot_grow(void **state)
{
	struct event ev = {EVENT_SRC_STREAM, "/topic/T", "7", NULL, NULL,
	                   "{\"a\":1}",      7, NULL};
	struct evbuffer *out = evbuffer_new();
	size_t i, big = 30000;
	char *p = malloc(big + 16);

	(void)state;
	assert_true(out != NULL && p != NULL);
	assert_int_equal(evbuffer_add(out, "kept", 4), 0);
	assert_int_equal(evbuffer_freeze(out, 0), 0);
	assert_int_equal(format_event(FORMAT_LOGFMT, &ev, out), -1);
	assert_int_equal(format_event(FORMAT_JSON, &ev, out), -1);
	ev.payload_len = 3; /* the error line cannot be written either */
	assert_int_equal(format_event(FORMAT_LOGFMT, &ev, out), -1);

	/* a line longer than the stack part, valid then invalid */
	memcpy(p, "{\"s\":\"", 6);
	for (i = 0; i < big; i++)
		p[6 + i] = 'x';
	memcpy(p + 6 + big, "\"}", 2);
	ev.payload = p;
	ev.payload_len = big + 8;
	assert_int_equal(format_event(FORMAT_LOGFMT, &ev, out), -1);
	ev.payload_len = big + 7;
	assert_int_equal(format_event(FORMAT_JSON, &ev, out), -1);

	assert_int_equal(format_logfmt_value(out, "x", 1), -1);
	assert_int_equal(format_json_string(out, "x", 1), -1);
	assert_int_equal(format_logfmt_value(out, p, big), -1);
	assert_int_equal(evbuffer_get_length(out), 4);

	/* thawed, the same calls work */
	assert_int_equal(evbuffer_unfreeze(out, 0), 0);
	ev.payload_len = big + 8;
	assert_int_equal(format_event(FORMAT_LOGFMT, &ev, out), 0);
	assert_int_equal(evbuffer_get_length(out),
	                 4 + strlen(HDR) + 3 + big + 1);
	free(p);
	evbuffer_free(out);
}

static void
test_bad_arguments(void **state)
{
	struct event ev = {EVENT_SRC_STREAM,
	                   "/topic/T",
	                   "7",
	                   NULL,
	                   NULL,
	                   NULL,
	                   5, NULL}; /* NULL payload: treated as empty */
	struct evbuffer *out = evbuffer_new();

	(void)state;
	assert_int_equal(format_event(FORMAT_LOGFMT, NULL, out), -1);
	assert_int_equal(format_event(FORMAT_LOGFMT, &ev, NULL), -1);
	assert_int_equal(evbuffer_get_length(out), 0);
	evbuffer_free(out);
	expect_line(FORMAT_LOGFMT, &ev, 1,
	            HDR
	            " payload_error=\"empty payload at byte 0\" raw=\"\"\n");
}

/* ---- agreement on realistic and random input --------------------------- */

static const char *const corpus[] = {
    /* PushTopic */
    ("{\"event\":{\"type\":\"updated\",\"createdDate\":\"2026-11-26T19:27:"
     "53.000Z\",\"replayId\":1234},\"sobject\":{\"Id\":\"001\",\"Name\":"
     "\"Acme \\\"Corp\\\"\",\"Revenue\":1.5e6,\"Active__c\":true,"
     "\"Parent\":null,\"Tags\":[\"a\",\"b c\"],\"Empty\":{}}}"),
    /* platform event */
    ("{\"schema\":\"dffQ2QLzDNHqwB8_sHMxdA\",\"payload\":{\"CreatedDate\":"
     "\"2026-11-26T19:27:53.000Z\",\"Message__c\":\"line1\\nline2\\t\\u00e9"
     "\",\"Count__c\":-3},\"event\":{\"replayId\":5,\"EventUuid\":\"e-1\"}}"),
    /* change data capture */
    ("{\"payload\":{\"ChangeEventHeader\":{\"entityName\":\"Account\","
     "\"recordIds\":[\"001a\",\"001b\"],\"changeType\":\"UPDATE\","
     "\"changedFields\":[],\"commitTimestamp\":1764185273000,"
     "\"sequenceNumber\":1},\"Name\":\"x=y\"},\"event\":{\"replayId\":9}}"),
    /* generic streaming */
    ("{\"event\":{\"createdDate\":\"2026-11-26T19:27:53.000Z\","
     "\"replayId\":3},\"payload\":\"a generic \\\"message\\\"\"}"),
    "[[1,2],[[]],{\"a\":{\"b\":[{\"c\":\"\\ud83d\\ude00\"}]}}]",
    "\"just a string\"",
};

static void
test_formats_agree(void **state)
{
	struct event ev = {
	    EVENT_SRC_STREAM,           "/topic/T", "7", "updated",
	    "2026-11-26T19:27:53.000Z", NULL,       0, NULL};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
		ev.payload = corpus[i];
		ev.payload_len = strlen(corpus[i]);
		check_formats_agree(&ev);
		check_against_oracle(&ev);
		ev.src = ev.src == EVENT_SRC_STREAM ? EVENT_SRC_POLL
		                                    : EVENT_SRC_STREAM;
		check_formats_agree(&ev);
		check_against_oracle(&ev);
	}
}

/* xorshift64: a fixed sequence, so every run mutates the same way */
static uint64_t
next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static size_t
mutate(char *p, size_t n, size_t cap, uint64_t *rs)
{
	static const char pick[] = "{}[]\",:\\ 0-.eEtfnu\xff\xc3\xa9\x01\n";
	size_t at = n ? (size_t)(next_rand(rs) % n) : 0;
	char c = pick[next_rand(rs) % (sizeof(pick) - 1)];

	switch (next_rand(rs) % 4) {
	case 0: /* replace */
		if (n > 0)
			p[at] = c;
		return n;
	case 1: /* insert */
		if (n + 1 >= cap)
			return n;
		memmove(p + at + 1, p + at, n - at);
		p[at] = c;
		return n + 1;
	case 2: /* delete */
		if (n == 0)
			return 0;
		memmove(p + at, p + at + 1, n - at - 1);
		return n - 1;
	default: /* cut */
		return at;
	}
}

/* Whatever the bytes, a line obeys the invariants, and a valid payload
 * gives two lines that agree. */
static void
test_mutations(void **state)
{
	struct event ev = {
	    EVENT_SRC_STREAM, "/topic/T", "7", "t", NULL, NULL, 0, NULL};
	uint64_t rs = 0x9e3779b97f4a7c15u;
	char buf[1024], *line;
	size_t i, k, n, len;
	int rc[2], ok = 0, bad = 0;
	enum format_kind kind;

	(void)state;
	for (i = 0; i < 3000; i++) {
		const char *base =
		    corpus[i % (sizeof(corpus) / sizeof(corpus[0]))];

		len = strlen(base);
		memcpy(buf, base, len);
		for (k = 0; k < 1 + next_rand(&rs) % 3; k++)
			len = mutate(buf, len, sizeof(buf), &rs);
		ev.payload = buf;
		ev.payload_len = len;
		for (kind = FORMAT_LOGFMT; kind <= FORMAT_JSON; kind++) {
			line = format_line(kind, &ev, &rc[kind], &n);
			assert_true(rc[kind] == 0 || rc[kind] == 1);
			json_object_put(check_line(kind, line, n));
			if (rc[kind] == 1)
				assert_non_null(strstr(line, "payload_error"));
			free(line);
		}
		assert_int_equal(rc[0], rc[1]);
		if (rc[0] == 0) {
			check_formats_agree(&ev);
			ok++;
		} else {
			bad++;
		}
	}
	/* both paths were exercised */
	assert_true(ok > 100 && bad > 100);
}

/* ---- golden files ----------------------------------------------------- */

static char *
read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	char *s = NULL;
	size_t cap = 0, len = 0, got;

	if (f == NULL)
		return NULL;
	do {
		if (cap - len < 4096) {
			cap = cap * 2 + 4096;
			s = realloc(s, cap);
			assert_non_null(s);
		}
		got = fread(s + len, 1, cap - len, f);
		len += got;
	} while (got > 0);
	fclose(f);
	*n = len;
	return s;
}

static int
has_word(const char *name, const char *word)
{
	size_t wl = strlen(word);
	const char *p = name;

	for (;;) {
		if (strncmp(p, word, wl) == 0 &&
		    (p[wl] == '-' || p[wl] == '.' || p[wl] == '\0'))
			return 1;
		p = strchr(p, '-');
		if (p == NULL)
			return 0;
		p++;
	}
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
run_golden(const char *name)
{
	struct event ev = {
	    EVENT_SRC_STREAM, "/topic/Golden", "42", NULL, NULL, NULL, 0, NULL};
	enum format_kind kind = FORMAT_LOGFMT;
	char path[512], *in, *want, *line;
	size_t in_n, want_n, n;
	int rc;

	if (has_word(name, "poll")) {
		ev.src = EVENT_SRC_POLL;
		ev.channel = "SetupAuditTrail";
		ev.position = "0Ymxx0000000001";
	}
	if (has_word(name, "typed"))
		ev.event_type = "updated";
	if (has_word(name, "dated"))
		ev.created = "2026-11-26T19:27:53.000Z";
	if (has_word(name, "asjson"))
		kind = FORMAT_JSON;

	snprintf(path, sizeof(path), "%s/%s", GOLDEN_DIR, name);
	in = read_file(path, &in_n);
	assert_non_null(in);
	snprintf(path + strlen(path) - strlen(".json"), 16, ".expected");
	want = read_file(path, &want_n);
	if (want == NULL) {
		print_error("missing %s\n", path);
		fail();
	}
	ev.payload = in;
	ev.payload_len = in_n;
	line = format_line(kind, &ev, &rc, &n);
	if (rc != (strncmp(name, "error-", 6) == 0 ? 1 : 0) || n != want_n ||
	    memcmp(want, line, n) != 0)
		print_error("golden file %s:\n", name);
	assert_int_equal(rc, strncmp(name, "error-", 6) == 0 ? 1 : 0);
	assert_bytes(want, want_n, line, n);
	json_object_put(check_line(kind, line, n));
	if (rc == 0)
		check_formats_agree(&ev);
	free(line);
	free(want);
	free(in);
}

static void
test_golden(void **state)
{
	DIR *d = opendir(GOLDEN_DIR);
	struct dirent *e;
	char *names[256];
	size_t count = 0, len, i;

	(void)state;
	if (d == NULL) {
		print_error("cannot open %s (run from the repository root)\n",
		            GOLDEN_DIR);
		fail();
	}
	while ((e = readdir(d)) != NULL) {
		len = strlen(e->d_name);
		if (len > 5 && strcmp(e->d_name + len - 5, ".json") == 0) {
			assert_true(count < 256);
			names[count] = strdup(e->d_name);
			assert_non_null(names[count++]);
		}
	}
	closedir(d);
	qsort(names, count, sizeof(names[0]), cmp_names);
	assert_true(count >= 10); /* the set cannot silently vanish */
	for (i = 0; i < count; i++) {
		run_golden(names[i]);
		free(names[i]);
	}
}

/* Backfilled records say so in src, and name their object like polls. */
static void
test_backfill_header(void **state)
{
	(void)state;
	const char *payload = "{\"Id\":\"001xx\"}";
	struct event ev = {.src = EVENT_SRC_BACKFILL,
	                   .channel = "Account",
	                   .position = "001xx",
	                   .payload = payload,
	                   .payload_len = strlen(payload)};
	struct evbuffer *out = evbuffer_new();
	assert_int_equal(format_event(FORMAT_LOGFMT, &ev, out), 0);
	assert_int_equal(format_event(FORMAT_JSON, &ev, out), 0);
	size_t n = evbuffer_get_length(out);
	char *s = (char *)evbuffer_pullup(out, -1);
	const char *want = "at=event src=backfill object=Account "
	                   "id=Account:001xx Id=001xx\n"
	                   "{\"at\":\"event\",\"src\":\"backfill\","
	                   "\"object\":\"Account\",\"id\":\"Account:001xx\","
	                   "\"Id\":\"001xx\"}\n";
	assert_int_equal(n, strlen(want));
	assert_memory_equal(s, want, n);
	evbuffer_free(out);
}

/* ---- word-at-a-time scanning -------------------------------------------- */

/*
 * The scanner classifies strings 8 or 16 bytes at a time; what it decides
 * must not depend on where a byte falls in a word. One special byte is
 * put at every offset of a value (and of a key), with runs of plain text
 * around it that end at every offset too, and the line is compared with
 * one built byte by byte here.
 */
struct special {
	const char *json; /* as it appears inside the JSON string */
	const char *out;  /* what logfmt writes for it */
	int quotes;       /* 1 when the value must then be quoted */
	const char *key;  /* what a key segment writes for it; NULL: skip */
};

static const struct special specials[] = {
    {"\\\"", "\\\"", 1, NULL},
    {"\\\\", "\\\\", 1, NULL},
    {" ", " ", 1, "_"},
    {"=", "=", 1, "_"},
    {"\t", "\\t", 1, "_"},
    {"\x01", "\\u0001", 1, "_"},
    {"\x7f", "\\u007f", 1, "_"},
    {"\xc3\xa9", "\xc3\xa9", 0, "__"},
    {"\xff", FFFD, 0, "_"},
    {"\xc2\x85", "\\u0085", 1, "__"},
    {"\\u00e9", "\xc3\xa9", 0, NULL},
    {"~", "~", 0, "~"},
};

static void
fill(char *p, char c, size_t n)
{
	memset(p, c, n);
	p[n] = '\0';
}

static void
test_scan_every_offset(void **state)
{
	static const size_t suffixes[] = {0, 1, 7, 8, 9, 15, 16, 17, 33};
	const char *head = "at=event src=stream channel=/t id=/t:1 "
	                   "replay_id=1";
	char pre[64], suf[64], payload[256], want[512];
	struct event ev = {
	    .src = EVENT_SRC_STREAM, .channel = "/t", .position = "1"};
	size_t i, k, p, n;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(specials) / sizeof(specials[0]); i++) {
		const struct special *sp = &specials[i];
		for (p = 0; p < 41; p++) {
			for (k = 0; k < sizeof(suffixes) / sizeof(suffixes[0]);
			     k++) {
				fill(pre, 'a', p);
				fill(suf, 'b', suffixes[k]);
				/* In a value. */
				snprintf(payload, sizeof(payload),
				         "{\"k\":\"%s%s%s\",\"z\":1}", pre,
				         sp->json, suf);
				snprintf(want, sizeof(want),
				         "%s k=%s%s%s%s%s z=1\n", head,
				         sp->quotes ? "\"" : "", pre, sp->out,
				         suf, sp->quotes ? "\"" : "");
				ev.payload = payload;
				ev.payload_len = strlen(payload);
				char *got =
				    format_line(FORMAT_LOGFMT, &ev, &rc, &n);
				assert_int_equal(rc, 0);
				assert_bytes(want, strlen(want), got, n);
				free(got);
				if (sp->key == NULL)
					continue;
				/* In a key. */
				snprintf(payload, sizeof(payload),
				         "{\"%s%s%s\":1}", pre, sp->json, suf);
				snprintf(want, sizeof(want), "%s %s%s%s=1\n",
				         head, pre, sp->key, suf);
				ev.payload_len = strlen(payload);
				got = format_line(FORMAT_LOGFMT, &ev, &rc, &n);
				assert_int_equal(rc, 0);
				assert_bytes(want, strlen(want), got, n);
				free(got);
			}
		}
	}
}

/* Header values take the same fast path: a channel with a space at each
 * offset is still quoted, and the id after it too. */
static void
test_header_every_offset(void **state)
{
	char channel[64], want[256];
	struct event ev = {.src = EVENT_SRC_POLL,
	                   .position = "",
	                   .payload = "{}",
	                   .payload_len = 2};
	size_t p, n;
	int rc;

	(void)state;
	for (p = 0; p < 39; p++) {
		fill(channel, 'c', 39);
		channel[p] = ' ';
		ev.channel = channel;
		snprintf(want, sizeof(want),
		         "at=event src=poll object=\"%s\"\n", channel);
		char *got = format_line(FORMAT_LOGFMT, &ev, &rc, &n);
		assert_int_equal(rc, 0);
		assert_bytes(want, strlen(want), got, n);
		free(got);
		channel[p] = 'c';
		snprintf(want, sizeof(want), "at=event src=poll object=%s\n",
		         channel);
		got = format_line(FORMAT_LOGFMT, &ev, &rc, &n);
		assert_bytes(want, strlen(want), got, n);
		free(got);
	}
}

/* ---- header values of every class ----------------------------------- */

/*
 * The header is written in one run when its values need no escaping and
 * by the general path otherwise; which one is chosen depends on a 16-byte
 * test of each value. Every header value gets one byte of each class at
 * every offset, at lengths around 4, 8 and 16, and the line is compared
 * with one assembled here from format_logfmt_value() and
 * format_json_string(), which share none of the header's code.
 */
static const char *const header_bytes[] = {
    " ",    "=",    "\"",       "\\",       "\x01", "\t", "\x7f",
    "\x80", "\xff", "\xc3\xa9", "\xc2\x85", "!",    "~",  "a",
};

/* Appends name and the value v (absent when NULL) as the header does. */
static void
want_field(struct evbuffer *b, enum format_kind kind, const char *name,
           const char *v)
{
	if (v == NULL)
		return;
	if (kind == FORMAT_JSON) {
		evbuffer_add_printf(b, ",\"%s\":", name);
		assert_int_equal(format_json_string(b, v, strlen(v)), 0);
	} else {
		evbuffer_add_printf(b, " %s=", name);
		assert_int_equal(format_logfmt_value(b, v, strlen(v)), 0);
	}
}

static char *
want_header_line(enum format_kind kind, const struct event *ev, size_t *n)
{
	static const char *const src[] = {"stream", "poll", "backfill"};
	struct evbuffer *b = evbuffer_new();
	char id[256];
	char *s;

	assert_non_null(b);
	if (kind == FORMAT_JSON)
		evbuffer_add_printf(b, "{\"at\":\"event\",\"src\":\"%s\"",
		                    src[ev->src]);
	else
		evbuffer_add_printf(b, "at=event src=%s", src[ev->src]);
	want_field(b, kind, ev->src == EVENT_SRC_STREAM ? "channel" : "object",
	           ev->channel);
	if (ev->position[0] != '\0') {
		snprintf(id, sizeof(id), "%s:%s", ev->channel, ev->position);
		want_field(b, kind, "id", id);
		if (ev->src == EVENT_SRC_STREAM)
			want_field(b, kind, "replay_id", ev->position);
	}
	want_field(b, kind, "event_type", ev->event_type);
	want_field(b, kind, "created", ev->created);
	evbuffer_add_printf(b, kind == FORMAT_JSON ? "}\n" : "\n");
	s = buf_string(b, n);
	evbuffer_free(b);
	return s;
}

static void
expect_header(const struct event *ev)
{
	static const enum format_kind kinds[] = {FORMAT_LOGFMT, FORMAT_JSON};
	char mem[1024];
	size_t wn, gn, len;
	int rc;

	for (size_t k = 0; k < 2; k++) {
		char *want = want_header_line(kinds[k], ev, &wn);
		char *got = format_line(kinds[k], ev, &rc, &gn);
		assert_int_equal(rc, 0);
		assert_bytes(want, wn, got, gn);
		assert_int_equal(
		    format_event_mem(kinds[k], ev, mem, sizeof(mem), &len), 0);
		assert_bytes(want, wn, mem, len);
		free(want);
		free(got);
	}
}

static void
test_header_value_classes(void **state)
{
	static const size_t lens[] = {0, 1,  3,  4,  5,  7, 8,
	                              9, 15, 16, 17, 31, 33};
	char v[64];
	struct event ev = {.payload = "{}", .payload_len = 2};
	const char **field[] = {&ev.channel, &ev.position, &ev.event_type,
	                        &ev.created};
	size_t f, b, l, p, bl;

	(void)state;
	for (f = 0; f < 4; f++) {
		for (b = 0; b < sizeof(header_bytes) / sizeof(header_bytes[0]);
		     b++) {
			bl = strlen(header_bytes[b]);
			for (l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
				for (p = 0; p + bl <= lens[l]; p++) {
					fill(v, 'x', lens[l]);
					memcpy(v + p, header_bytes[b], bl);
					ev.channel = "/topic/Header";
					ev.position = "12345";
					ev.event_type = "updated";
					ev.created = "2026-11-27T04:57:42.000Z";
					*field[f] = v;
					ev.src = (enum event_source)(p % 3);
					expect_header(&ev);
				}
			}
		}
	}
	/* Absent optional fields, and an empty position (no id=). */
	ev.channel = "c";
	ev.position = "";
	ev.event_type = NULL;
	ev.created = NULL;
	for (int src = 0; src < 3; src++) {
		ev.src = (enum event_source)src;
		expect_header(&ev);
	}
}

#define E8 "\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\","

/* format_event_mem() writes what format_event() appends, and reports a
 * buffer one byte too short instead of cutting the line. */
static void
test_event_mem(void **state)
{
	static const char *payloads[] = {
	    "{\"sobject\":{\"Id\":\"001\",\"Name\":\"Acme \\\"A\\\"\"}}",
	    "{\"a\":[1,2,{\"b\":null}],\"c\":true}",
	    "{\"broken\":", /* the error line */
	    "\"just a string\"",
	    /* Invalid after many fields whose escaped key repeats: the part
	     * flattened before the error is longer than the error line,
	     * which must still fit a buffer of its own length (the fuzzer
	     * found it did not). */
	    "{\"\x01\x01\x01\x01\x01\x01\x01\x01k\":[" E8 E8 E8 E8,
	};
	enum format_kind kinds[] = {FORMAT_LOGFMT, FORMAT_JSON};
	struct event ev = {.src = EVENT_SRC_STREAM,
	                   .channel = "/topic/T",
	                   .position = "42",
	                   .event_type = "created",
	                   .created = "2026-11-26T19:27:53.000Z"};
	char buf[1024];
	size_t i, k, n, len, cap;
	int rc, want_rc;

	(void)state;
	for (k = 0; k < 2; k++) {
		for (i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
			ev.payload = payloads[i];
			ev.payload_len = strlen(payloads[i]);
			char *want = format_line(kinds[k], &ev, &want_rc, &n);
			rc = format_event_mem(kinds[k], &ev, buf, sizeof(buf),
			                      &len);
			assert_int_equal(rc, want_rc);
			assert_bytes(want, n, buf, len);
			for (cap = 0; cap < n; cap++)
				assert_int_equal(format_event_mem(kinds[k], &ev,
				                                  buf, cap,
				                                  &len),
				                 FORMAT_NO_ROOM);
			assert_int_equal(
			    format_event_mem(kinds[k], &ev, buf, n, &len),
			    want_rc);
			assert_int_equal(len, n);
			free(want);
		}
	}
	assert_int_equal(format_event_mem(FORMAT_LOGFMT, NULL, buf, 1, &len),
	                 -1);
	assert_int_equal(format_event_mem(FORMAT_LOGFMT, &ev, NULL, 1, &len),
	                 -1);
}

/* ---- the payload tape's fast paths -------------------------------------- */

/*
 * The tokens of a simple JSON text, as the stream decoder records them
 * (json_tape.h): enough for the payloads below, which hold no escapes
 * except where a test puts one on purpose. Returns the count.
 */
static size_t
tape_of(const char *p, size_t n, struct json_tok *tok, size_t max)
{
	size_t i = 0, t = 0, j;
	unsigned f;

	while (i < n) {
		unsigned char c = (unsigned char)p[i];
		assert_true(t < max);
		if (c == ' ' || c == ',' || c == ':') {
			i++;
			continue;
		}
		tok[t].off = (uint32_t)i;
		tok[t].len = 1;
		tok[t].flags = 0;
		if (c == '{' || c == '[' || c == '}' || c == ']') {
			tok[t].type = c == '{'   ? JSON_TOK_OBJ
			              : c == '[' ? JSON_TOK_ARR
			                         : JSON_TOK_END;
			i++;
		} else if (c == '"') {
			f = 0;
			for (j = i + 1; p[j] != '"'; j++) {
				unsigned char b = (unsigned char)p[j];
				if (b == '\\') {
					f |= JSON_STR_ESCAPED;
					j++;
				} else if (b == ' ' || b == '=') {
					f |= JSON_STR_SPACE;
				} else if (b >= 0x7f) {
					f |= JSON_STR_ODD;
				}
			}
			tok[t].off = (uint32_t)(i + 1);
			tok[t].len = (uint32_t)(j - i - 1);
			tok[t].flags = (uint8_t)f;
			i = j + 1;
			while (i < n && p[i] == ' ')
				i++;
			tok[t].type =
			    i < n && p[i] == ':' ? JSON_TOK_KEY : JSON_TOK_STR;
		} else if (c == 't' || c == 'f' || c == 'n') {
			tok[t].type = c == 't'   ? JSON_TOK_TRUE
			              : c == 'f' ? JSON_TOK_FALSE
			                         : JSON_TOK_NULL;
			tok[t].len = c == 'f' ? 5 : 4;
			i += tok[t].len;
		} else {
			for (j = i; j < n && strchr("-+.eE0123456789", p[j]) &&
			            p[j] != '\0';
			     j++)
				;
			assert_true(j > i);
			tok[t].type = JSON_TOK_NUM;
			tok[t].len = (uint32_t)(j - i);
			i = j;
		}
		t++;
	}
	return t;
}

#define TAPE_MAX 512
#define ROOM_GUARD 40

/* The line for ev, which must be a valid one (format_event() 0). */
static char *
tape_line(enum format_kind kind, const struct event *ev)
{
	int rc;
	char *s = format_line(kind, ev, &rc, NULL);

	assert_int_equal(rc, 0);
	return s;
}

/*
 * text (a NUL-terminated JSON object) formatted from its tape must give
 * the line the text gives, in both formats, through format_event() and
 * format_event_mem(). The payload is copied into a heap block of its
 * exact size, so a read past its end is caught by the sanitizers and
 * valgrind; format_event_mem() is tried at the smallest caps and at
 * every cap from 48 bytes short of the line's length to the length,
 * where a run of leaves meets the end of the room, with guard bytes
 * after cap that must stay untouched (a leaf written in one run stores
 * up to 16 bytes ahead of itself). Returns the logfmt line (heap).
 */
static char *
check_tape(struct event *ev, const char *text)
{
	static const enum format_kind kinds[] = {FORMAT_LOGFMT, FORMAT_JSON};
	size_t n = strlen(text), len, cap, i, k;
	char *payload = malloc(n), *first = NULL;
	struct json_tok *tok = malloc(TAPE_MAX * sizeof(*tok));
	struct json_tape tape;
	int rc;

	assert_non_null(payload);
	assert_non_null(tok);
	memcpy(payload, text, n);
	tape.tok = tok;
	tape.n = tape_of(payload, n, tok, TAPE_MAX);
	ev->payload = payload;
	ev->payload_len = n;
	for (k = 0; k < 2; k++) {
		char *want, *got, *mem;
		size_t wn;

		ev->tape = NULL;
		want = tape_line(kinds[k], ev);
		ev->tape = &tape;
		got = tape_line(kinds[k], ev);
		if (strcmp(want, got) != 0)
			fail_msg("payload %s\ntape: %s\ntext: %s", text, got,
			         want);
		wn = strlen(want);
		mem = malloc(wn + ROOM_GUARD);
		assert_non_null(mem);
		for (cap = 0; cap <= wn; cap++) {
			if (cap == 8 && wn > 56)
				cap = wn - 48;
			memset(mem, 0x5a, wn + ROOM_GUARD);
			rc = format_event_mem(kinds[k], ev, mem, cap, &len);
			if (cap < wn) {
				assert_int_equal(rc, FORMAT_NO_ROOM);
			} else {
				assert_int_equal(rc, 0);
				assert_int_equal(len, wn);
				assert_memory_equal(mem, want, wn);
			}
			for (i = cap; i < cap + ROOM_GUARD; i++)
				if (mem[i] != 0x5a)
					fail_msg("%s: a store at %zu, past cap "
					         "%zu",
					         text, i, cap);
		}
		free(mem);
		free(got);
		if (k == 0)
			first = want;
		else
			free(want);
	}
	/* The line really came from the tape: without the ':' after each
	 * key the text is no JSON (the text path writes the error line),
	 * but the tape does not look at separators. */
	for (i = 0; i < tape.n; i++)
		if (tok[i].type == JSON_TOK_KEY &&
		    payload[tok[i].off + tok[i].len + 1] == ':')
			payload[tok[i].off + tok[i].len + 1] = ' ';
	ev->tape = &tape;
	{
		char *got = tape_line(FORMAT_LOGFMT, ev);
		assert_string_equal(got, first);
		free(got);
	}
	ev->tape = NULL;
	{
		char *text_line = format_line(FORMAT_LOGFMT, ev, &rc, NULL);
		assert_int_equal(rc, 1);
		free(text_line);
	}
	ev->payload = NULL;
	ev->payload_len = 0;
	free(tok);
	free(payload);
	return first;
}

static struct event
tape_event(void)
{
	struct event ev = {
	    .src = EVENT_SRC_STREAM,
	    .channel = "/topic/T",
	    .position = "77",
	    .event_type = "created",
	    .created = "2026-11-26T19:27:53.000Z",
	};
	return ev;
}

/*
 * Leaves of every length from 0 to 40, for keys and values, placed last
 * in the payload (where fewer than 16 bytes follow them) and first: the
 * one-move copies must take the checked copy near the end of the text.
 * Every scalar kind, below object paths short and long.
 */
static void
test_tape_leaf_lengths(void **state)
{
	static const size_t depths[] = {1, 14, 15, 40};
	char text[1024], key[64], val[64], v[96], seg[64];
	struct event ev = tape_event();
	size_t n, s, d;
	char *line;

	(void)state;
	for (n = 0; n <= 40; n++) {
		memset(key, 'k', n + 1);
		key[n + 1] = '\0';
		memset(val, '7', n);
		val[n] = '\0';
		for (s = 0; s < 6; s++) {
			switch (s) {
			case 0:
				snprintf(v, sizeof(v), "\"%s\"", val);
				break;
			case 1:
				snprintf(v, sizeof(v), "\"%s x\"", val);
				break;
			case 2:
				snprintf(v, sizeof(v), "1%s", val);
				break;
			default:
				snprintf(v, sizeof(v), "%s",
				         s == 3   ? "true"
				         : s == 4 ? "false"
				                  : "null");
				break;
			}
			/* Leads of 3 to 42 bytes: either side of 16. */
			for (d = 0; d < sizeof(depths) / sizeof(depths[0]);
			     d++) {
				memset(seg, 'p', depths[d]);
				seg[depths[d]] = '\0';
				snprintf(text, sizeof(text),
				         "{\"%s\":{\"a\":1,\"%s\":%s}}", seg,
				         key, v);
				free(check_tape(&ev, text));
				snprintf(text, sizeof(text),
				         "{\"%s\":{\"%s\":%s,\"b\":2}}", seg,
				         key, v);
				free(check_tape(&ev, text));
			}
			snprintf(text, sizeof(text), "{\"%s\":%s}", key, v);
			free(check_tape(&ev, text));
		}
	}
	/* One exact line, so the comparison above is not between two
	 * equally wrong writers. */
	line = check_tape(&ev, "{\"o\":{\"k\":\"\",\"t\":true,\"f\":false,"
	                       "\"n\":null,\"x\":-1.5e3,\"s\":\"a b\"}}");
	assert_string_equal(line,
	                    "at=event src=stream channel=/topic/T "
	                    "id=/topic/T:77 replay_id=77 event_type=created "
	                    "created=2026-11-26T19:27:53.000Z o.k=\"\" "
	                    "o.t=true o.f=false o.n= o.x=-1.5e3 o.s=\"a b\"\n");
	free(line);
}

/*
 * A run of leaves broken by members the run does not take (an escaped
 * key or value, a non-ASCII value, an object, an array, an empty key),
 * after which it must go on where the general path left off.
 */
static void
test_tape_run_breaks(void **state)
{
	static const char *const texts[] = {
	    "{\"a\":1,\"b\\\"q\":2,\"c\":3}",
	    "{\"a\":1,\"b\":\"x\\ny\",\"c\":3}",
	    "{\"a\":1,\"b\":\"caf\xc3\xa9\",\"c\":3}",
	    "{\"a\":1,\"b\":{\"x\":1},\"c\":3}",
	    "{\"a\":1,\"b\":{},\"c\":[],\"d\":[1,{\"e\":2}],\"f\":3}",
	    "{\"a\":1,\"\":2,\"c\":3}",
	    "{\"a\":1,\"b c\":2,\"c=d\":3}",
	    "{\"s\":{\"a\":1,\"b\":{\"c\":{\"d\":true}},\"e\":null}}",
	};
	struct event ev = tape_event();
	char *line;

	(void)state;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		free(check_tape(&ev, texts[i]));
	line = check_tape(&ev, texts[4]);
	assert_non_null(strstr(line, " a=1 b={} c=[] d.0=1 d.1.e=2 f=3\n"));
	free(line);
}

/*
 * The members of the top-level "event" object the header carries are
 * passed over without a walk; the others, and all of them when the
 * header lacks the field, are written under "event.".
 */
static void
test_tape_event_members(void **state)
{
	const char *text = "{\"event\":{\"replayId\":77,\"type\":\"created\","
	                   "\"createdDate\":\"2026-11-26T19:27:53.000Z\","
	                   "\"extra\":true},\"s\":{\"Id\":\"001\"}}";
	const char *tail;
	struct event ev = tape_event();
	char *line;

	(void)state;
	line = check_tape(&ev, text);
	tail = strstr(line, " event.");
	assert_non_null(tail);
	assert_string_equal(tail, " event.extra=true s.Id=001\n");
	free(line);

	/* No position, type or time in the header: all three stay. */
	ev.position = "";
	ev.event_type = NULL;
	ev.created = NULL;
	line = check_tape(&ev, text);
	tail = strstr(line, " event.");
	assert_non_null(tail);
	assert_string_equal(tail, " event.replayId=77 event.type=created "
	                          "event.createdDate=2026-11-26T19:27:53.000Z "
	                          "event.extra=true s.Id=001\n");
	free(line);

	/* A carried member whose value is not a scalar, an escaped key,
	 * and "event" below the top level, which is not the event. */
	ev = tape_event();
	free(check_tape(&ev, "{\"event\":{\"type\":{\"a\":[1]},\"replayId\":"
	                     "[],\"x\":1}}"));
	free(check_tape(&ev, "{\"event\":{\"typ\\u0065\":\"c\",\"x\":1}}"));
	line = check_tape(&ev, "{\"a\":{\"event\":{\"type\":\"c\"}}}");
	assert_non_null(strstr(line, " a.event.type=c\n"));
	free(line);
	line = check_tape(&ev, "{\"event\":{\"type\":\"c\"}}");
	assert_null(strstr(line, "event."));
	free(line);
}

/*
 * A tape whose tokens lie outside the payload inside a run of leaves, or
 * in a member the header carries, is not trusted: the line is the
 * text's.
 */
static void
test_tape_out_of_bounds(void **state)
{
	const char *text = "{\"event\":{\"type\":\"c\"},\"s\":{\"a\":\"xy\","
	                   "\"b\":2}}";
	/* The type's key and value, a leaf's key and value, the last
	 * leaf's value. */
	static const size_t victims[] = {3, 4, 8, 9, 11};
	struct json_tok tok[16], bad[16];
	struct json_tape tape = {bad, 0};
	struct event ev = tape_event();
	size_t n = strlen(text), t;
	char *payload = malloc(n), *want, *got;

	(void)state;
	assert_non_null(payload);
	memcpy(payload, text, n);
	t = tape_of(payload, n, tok, 16);
	assert_int_equal(t, 14);
	ev.payload = payload;
	ev.payload_len = n;
	want = tape_line(FORMAT_LOGFMT, &ev);
	assert_string_equal(want, "at=event src=stream channel=/topic/T "
	                          "id=/topic/T:77 replay_id=77 "
	                          "event_type=created "
	                          "created=2026-11-26T19:27:53.000Z s.a=xy "
	                          "s.b=2\n");
	for (size_t v = 0; v < sizeof(victims) / sizeof(victims[0]); v++) {
		for (int how = 0; how < 2; how++) {
			memcpy(bad, tok, sizeof(tok));
			if (how == 0)
				bad[victims[v]].off = (uint32_t)n;
			else
				bad[victims[v]].len = (uint32_t)n;
			tape.n = t;
			ev.tape = &tape;
			got = tape_line(FORMAT_LOGFMT, &ev);
			assert_string_equal(got, want);
			free(got);
		}
	}
	free(want);
	free(payload);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backfill_header),
	    cmocka_unit_test(test_kind_parse),
	    cmocka_unit_test(test_value_escapers),
	    cmocka_unit_test(test_value_every_byte),
	    cmocka_unit_test(test_json_string_round_trip),
	    cmocka_unit_test(test_value_long_and_null),
	    cmocka_unit_test(test_event_cases),
	    cmocka_unit_test(test_header),
	    cmocka_unit_test(test_skip_rule),
	    cmocka_unit_test(test_skip_rule_values),
	    cmocka_unit_test(test_depth_limit),
	    cmocka_unit_test(test_long_keys_and_values),
	    cmocka_unit_test(test_error_after_long_prefix),
	    cmocka_unit_test(test_appends),
	    cmocka_unit_test(test_out_cannot_grow),
	    cmocka_unit_test(test_bad_arguments),
	    cmocka_unit_test(test_formats_agree),
	    cmocka_unit_test(test_mutations),
	    cmocka_unit_test(test_golden),
	    cmocka_unit_test(test_scan_every_offset),
	    cmocka_unit_test(test_header_every_offset),
	    cmocka_unit_test(test_header_value_classes),
	    cmocka_unit_test(test_event_mem),
	    cmocka_unit_test(test_tape_leaf_lengths),
	    cmocka_unit_test(test_tape_run_breaks),
	    cmocka_unit_test(test_tape_event_members),
	    cmocka_unit_test(test_tape_out_of_bounds),
	};

	return cmocka_run_group_tests_name("format", tests, NULL, NULL);
}
