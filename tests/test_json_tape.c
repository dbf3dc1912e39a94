/*
 * The payload tape: the stream decoder records each event payload's
 * tokens (json_tape.h) and the formatter writes the line from them
 * instead of scanning the text again. The line must be the same byte for
 * byte as the one formatted from the text, for every payload: these tests
 * check that over fixed cases and a few thousand generated payloads, in
 * one chunk and split, in both formats, and that a tape that does not
 * fit the payload is never trusted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "sfrelay/bayeux_stream.h"
#include "sfrelay/format.h"
#include "sfrelay/json_tape.h"

/* What the decoder's callback saw of the last event. */
struct seen {
	int events;
	int taped;      /* events that came with a tape */
	int mismatch;   /* lines that differed */
	int every_room; /* also format into every smaller buffer */
	char first_diff[512];
};

/* The line for ev, formatted as given; NUL-terminated, caller frees. */
static char *
line_of(enum format_kind kind, const struct event *ev)
{
	struct evbuffer *out = evbuffer_new();
	size_t n;
	char *s;

	assert_non_null(out);
	assert_true(format_event(kind, ev, out) >= 0);
	n = evbuffer_get_length(out);
	s = malloc(n + 1);
	assert_non_null(s);
	evbuffer_remove(out, s, n);
	s[n] = '\0';
	evbuffer_free(out);
	return s;
}

/*
 * The line from the tape into buffers of every size up to the line's
 * own: one byte short is no room, never a cut line, and the exact size
 * holds the line the text gives (want). The writers that reserve room for
 * a whole leaf or header at once fall back to the checked path here; the
 * guard bytes after cap show that none of them stores past it.
 */
#define GUARD 32

static void
compare_every_room(struct seen *sn, enum format_kind kind,
                   const struct event *ev, const char *want)
{
	size_t n = strlen(want), cap, len, i;
	char *mem = malloc(n + GUARD);
	int rc, ok;

	assert_non_null(mem);
	for (cap = 0; cap <= n; cap++) {
		memset(mem, 0x5a, n + GUARD);
		rc = format_event_mem(kind, ev, mem, cap, &len);
		ok = cap < n ? rc == FORMAT_NO_ROOM
		             : rc >= 0 && len == n && memcmp(mem, want, n) == 0;
		for (i = cap; i < cap + GUARD; i++)
			ok = ok && mem[i] == 0x5a;
		if (!ok && sn->mismatch++ == 0)
			snprintf(sn->first_diff, sizeof(sn->first_diff),
			         "cap %zu of %zu: rc %d, len %zu, or a store "
			         "past cap",
			         cap, n, rc, len);
	}
	free(mem);
}

/* Formats ev with its tape and without, in both formats, into the
 * caller's memory too (the relay's path), and notes any difference. */
static void
compare_lines(struct seen *sn, const struct event *ev)
{
	static const enum format_kind kinds[] = {FORMAT_LOGFMT, FORMAT_JSON};
	struct event plain = *ev;
	char mem[8192];
	size_t len;
	int rc;

	plain.tape = NULL;
	for (size_t i = 0; i < 2; i++) {
		char *a = line_of(kinds[i], ev);
		char *b = line_of(kinds[i], &plain);
		if (strcmp(a, b) != 0 && sn->mismatch++ == 0)
			snprintf(sn->first_diff, sizeof(sn->first_diff),
			         "tape: %.240s\ntext: %.240s", a, b);
		rc = format_event_mem(kinds[i], ev, mem, sizeof(mem), &len);
		if (rc != FORMAT_NO_ROOM &&
		    (len != strlen(b) || memcmp(mem, b, len) != 0) &&
		    sn->mismatch++ == 0)
			snprintf(sn->first_diff, sizeof(sn->first_diff),
			         "mem: %.*s\ntext: %.240s", (int)(len % 240),
			         mem, b);
		if (sn->every_room)
			compare_every_room(sn, kinds[i], ev, b);
		free(a);
		free(b);
	}
}

static int
on_msg(void *arg, const struct bayeux_msg *m)
{
	struct seen *sn = arg;

	if (m->kind != BAYEUX_MSG_EVENT)
		return 0;
	sn->events++;
	if (m->ev.tape != NULL)
		sn->taped++;
	compare_lines(sn, &m->ev);
	return 0;
}

/* Decodes [{"data":payload,"channel":...}] fed in pieces of at most
 * chunk bytes (0: one piece). */
static void
run_body(const char *payload, size_t chunk, struct seen *sn)
{
	struct bayeux_stream *s = bayeux_stream_new(1 << 24, on_msg, sn);
	size_t plen = strlen(payload), n, off;
	char *body = malloc(plen + 64);

	assert_non_null(s);
	assert_non_null(body);
	n = (size_t)snprintf(body, plen + 64,
	                     "[{\"data\":%s,\"channel\":\"/topic/T\"}]",
	                     payload);
	for (off = 0; off < n; off += chunk) {
		size_t k = chunk == 0 || n - off < chunk ? n - off : chunk;
		assert_int_equal(bayeux_stream_feed(s, body + off, k), 0);
		if (chunk == 0)
			break;
	}
	assert_int_equal(bayeux_stream_finish(s), 0);
	bayeux_stream_free(s);
	free(body);
}

static void
check_same(const char *payload, int want_tape)
{
	static const size_t chunks[] = {0, 1, 7, 64};
	struct seen sn;

	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		memset(&sn, 0, sizeof(sn));
		/* Once is enough for the room (the tape is the same), and
		 * only for lines short enough to try every size of. */
		sn.every_room = i == 0 && strlen(payload) < 2048;
		run_body(payload, chunks[i], &sn);
		assert_int_equal(sn.events, 1);
		assert_int_equal(sn.taped, want_tape);
		if (sn.mismatch != 0)
			fail_msg("payload %s (chunk %zu):\n%s", payload,
			         chunks[i], sn.first_diff);
	}
}

/* ---- fixed cases -------------------------------------------------------- */

static const char *const object_payloads[] = {
    "{}",
    "{\"a\":1}",
    "{\"event\":{\"createdDate\":\"2026-11-26T19:27:53.000Z\","
    "\"replayId\":42,\"type\":\"created\"},\"sobject\":{\"Id\":\"001\","
    "\"Name\":\"Acme Corp\",\"Amount\":-1.5e3,\"Active\":true,"
    "\"Closed\":false,\"Parent\":null}}",
    /* The shape of a PushTopic event, as the benchmark sends it. */
    "{\"event\":{\"createdDate\":\"2026-11-27T04:57:42.000Z\","
    "\"replayId\":12345,\"type\":\"created\"},\"sobject\":{"
    "\"Id\":\"001xx000003DGb2AAG\",\"Name\":\"Acme Widgets 00012345\","
    "\"Industry\":\"Technology\",\"Type\":\"Customer - Direct\","
    "\"BillingCity\":\"San Francisco\",\"Phone\":\"(415) 555-0100\","
    "\"Website\":\"https://www.example.com\",\"AnnualRevenue\":125000000,"
    "\"OwnerId\":\"005xx000001X8UzAAK\",\"Description\":\"Key account, "
    "renewal due in Q3; contact Pat Lee (VP Ops) before pricing changes. "
    "\"}}",
    /* Header members as containers, skipped whole. */
    "{\"event\":{\"replayId\":{\"a\":[1,{\"b\":2}]},\"type\":[1,2],"
    "\"createdDate\":{}},\"x\":1}",
    /* "event" below the top is an ordinary object. */
    "{\"a\":{\"event\":{\"replayId\":1,\"type\":\"t\"}}}",
    /* Escaped keys, including one that decodes to "event". */
    "{\"ev\\u0065nt\":{\"replayId\":5,\"k\\\"q\":1},\"a b\":\"c=d\","
    "\"x=y\":\"\",\"\":\"empty key\"}",
    /* Escapes and non-ASCII in values. */
    "{\"t\":\"line\\nbreak\\ttab \\\"q\\\" \\\\ \\/\",\"u\":\"caf\xc3\xa9\","
    "\"e\":\"\\u00e9\\ud83d\\ude00\\ud800x\",\"d\":\"del\x7f\","
    "\"c1\":\"\xc2\x85\",\"bad\":\"\xff\xfe\"}",
    /* Containers empty and nested, arrays of everything. */
    "{\"a\":[],\"b\":{},\"c\":[[],{},[1,[2,[3]]],{\"d\":[{}]}],"
    "\"n\":[null,true,false,0,-0.0,1E+2,\"s\",\"s p\"]}",
    /* Repeated keys are all written, in order. */
    "{\"k\":1,\"k\":2,\"k\":{\"k\":3}}",
    /* Whitespace everywhere the grammar allows it. */
    "{ \"a\" : [ 1 , 2 ] ,\n\t\"b\" : { } , \"c\" :\r\n\"d\" }",
    /* Long strings: the 16-byte steps and their tails. */
    "{\"long\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaa b\",\"q\":\"0123456789abcdef=\","
    "\"h\":\"0123456789abcdef\xc3\xa9\",\"p\":\"0123456789abcde\"}",
};

static void
test_fixed_object_payloads(void **state)
{
	(void)state;
	for (size_t i = 0;
	     i < sizeof(object_payloads) / sizeof(object_payloads[0]); i++)
		check_same(object_payloads[i], 1);
}

/*
 * Leaves of every size: keys of 1 to 40 bytes with string values of 0 to
 * 40 bytes, bare and quoted, and numbers of 1 to 40 digits, so that every
 * short copy (below 4, 4-7, 8-16, 17-32, longer) meets every other.
 */
static void
test_leaf_lengths(void **state)
{
	char *p = malloc(16384), k[48], v[48];
	size_t len = 0, i;

	(void)state;
	assert_non_null(p);
	len += (size_t)sprintf(p, "{\"event\":{\"replayId\":7,\"type\":"
	                          "\"created\"},\"sobject\":{");
	for (i = 0; i <= 40; i++) {
		memset(k, 'K', i + 1);
		k[i + 1] = '\0';
		memset(v, 'v', i);
		v[i] = '\0';
		len += (size_t)sprintf(p + len, "%s\"%s\":\"%s\"", i ? "," : "",
		                       k, v);
		if (i > 0)
			v[i / 2] = ' ';
		memset(k, 'q', i + 1);
		len += (size_t)sprintf(p + len, ",\"%s\":\"%s\"", k, v);
		memset(v, '9', i + 1);
		v[i + 1] = '\0';
		memset(k, 'n', i + 1);
		len += (size_t)sprintf(p + len, ",\"%s\":%s", k, v);
	}
	strcpy(p + len, "}}");
	check_same(p, 1);
	free(p);
}

/*
 * Object paths around the length up to which a leaf's prefix is built
 * once per object (longer ones take the general path): the same leaves
 * below paths of 50 to 80 bytes, one of them escaped.
 */
static void
test_long_key_paths(void **state)
{
	char p[512], seg[96];
	size_t n;

	(void)state;
	for (n = 50; n <= 80; n++) {
		memset(seg, 's', n);
		seg[n] = '\0';
		snprintf(p, sizeof(p),
		         "{\"%s\":{\"a\":1,\"b\":\"x y\",\"c\":true,\"d\":null,"
		         "\"e\":false,\"f\":\"l\\nf\",\"g\":{\"h\":\"\"}}}",
		         seg);
		check_same(p, 1);
		/* The same depth reached in two segments. */
		seg[n / 2] = '\0';
		snprintf(p, sizeof(p),
		         "{\"%s\":{\"%s\":{\"a\":-0.5,\"b\":\"=\"}}}", seg,
		         seg + n / 2 + 1);
		check_same(p, 1);
	}
}

/* Non-object payloads carry no tape; their lines are the text's. */
static void
test_non_object_payloads_have_no_tape(void **state)
{
	static const char *const p[] = {"\"hello\"", "[1,2]", "7", "true",
	                                "[]"};

	(void)state;
	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
		check_same(p[i], 0);
}

/* The last of repeated "data" members is the payload, tape included. */
static void
test_repeated_data_takes_the_last(void **state)
{
	static const char *const bodies[] = {
	    "[{\"data\":{\"a\":1},\"data\":{\"b\":2},\"channel\":\"/u/X\"}]",
	    "[{\"data\":{\"a\":1},\"data\":\"s\",\"channel\":\"/u/X\"}]",
	    "[{\"data\":\"s\",\"data\":{\"c\":[3]},\"channel\":\"/u/X\"}]",
	};
	static const int taped[] = {1, 0, 1};
	struct seen sn;

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct bayeux_stream *s =
		    bayeux_stream_new(1 << 20, on_msg, &sn);
		memset(&sn, 0, sizeof(sn));
		assert_non_null(s);
		assert_int_equal(
		    bayeux_stream_feed(s, bodies[i], strlen(bodies[i])), 0);
		assert_int_equal(bayeux_stream_finish(s), 0);
		bayeux_stream_free(s);
		assert_int_equal(sn.events, 1);
		assert_int_equal(sn.taped, taped[i]);
		assert_int_equal(sn.mismatch, 0);
	}
}

/* More tokens than the tape holds: no tape, the same line. */
static void
test_oversized_payload_has_no_tape(void **state)
{
	size_t n = 20000, i, len = 0;
	char *p = malloc(n * 4 + 16);

	(void)state;
	assert_non_null(p);
	len += (size_t)sprintf(p, "{\"a\":[");
	for (i = 0; i < n; i++)
		len += (size_t)sprintf(p + len, i ? ",%zu" : "%zu", i % 10);
	strcpy(p + len, "]}");
	check_same(p, 0);
	free(p);
}

/* ---- a tape that does not fit is not trusted ------------------------------ */

static char *
fmt_line(const char *payload, const struct json_tape *tape)
{
	struct event ev = {.src = EVENT_SRC_STREAM,
	                   .channel = "/topic/T",
	                   .position = "9",
	                   .payload = payload,
	                   .payload_len = strlen(payload),
	                   .tape = tape};

	return line_of(FORMAT_LOGFMT, &ev);
}

static void
test_bad_tape_falls_back_to_text(void **state)
{
	const char *payload = "{\"a\":\"xy\",\"b\":[1]}";
	/* The right tape, then variations on it. */
	const struct json_tok good[] = {
	    {0, 1, JSON_TOK_OBJ, 0},  {2, 1, JSON_TOK_KEY, 0},
	    {6, 2, JSON_TOK_STR, 0},  {11, 1, JSON_TOK_KEY, 0},
	    {14, 1, JSON_TOK_ARR, 0}, {15, 1, JSON_TOK_NUM, 0},
	    {16, 1, JSON_TOK_END, 0}, {17, 1, JSON_TOK_END, 0},
	};
	struct json_tok bad[8];
	struct json_tape tape = {good, 8};
	char *want = fmt_line(payload, NULL), *got;

	(void)state;
	assert_string_equal(want, "at=event src=stream channel=/topic/T "
	                          "id=/topic/T:9 replay_id=9 a=xy b.0=1\n");
	got = fmt_line(payload, &tape);
	assert_string_equal(got, want);
	free(got);

	/* Each corruption: out of bounds, wrong type, truncated, trailing
	 * tokens, a value where a key must be. */
	for (int c = 0; c < 6; c++) {
		memcpy(bad, good, sizeof(good));
		tape.tok = bad;
		tape.n = 8;
		switch (c) {
		case 0:
			bad[2].off = 1000;
			break;
		case 1:
			bad[2].len = 100;
			break;
		case 2:
			bad[3].type = JSON_TOK_STR;
			break;
		case 3:
			tape.n = 6;
			break;
		case 4:
			bad[7].type = JSON_TOK_NUM;
			break;
		case 5:
			bad[0].type = JSON_TOK_ARR;
			break;
		}
		got = fmt_line(payload, &tape);
		assert_string_equal(got, want);
		free(got);
	}
	/* An empty tape too. */
	tape.n = 0;
	got = fmt_line(payload, &tape);
	assert_string_equal(got, want);
	free(got);
	free(want);
}

/* ---- generated payloads ------------------------------------------------ */

struct gen {
	uint64_t state;
	char *p;
	size_t len;
	size_t cap;
};

static unsigned
gen_rand(struct gen *g, unsigned n)
{
	g->state = g->state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)((g->state >> 33) % n);
}

static void
gen_put(struct gen *g, const char *s)
{
	size_t n = strlen(s);

	if (g->len + n + 1 > g->cap) {
		g->cap = (g->len + n + 1) * 2;
		g->p = realloc(g->p, g->cap);
		assert_non_null(g->p);
	}
	memcpy(g->p + g->len, s, n + 1);
	g->len += n;
}

/* A string's body: plain text, space and '=', escapes, UTF-8, DEL, C1,
 * invalid bytes, and lengths around the 16-byte step. */
static void
gen_string(struct gen *g)
{
	static const char *const bits[] = {
	    "a",      "Acme",   " ",      "=",      "\\n",      "\\\"",
	    "\\\\",   "\\/",    "\\u00e9", "\\ud83d\\ude00", "\\ud800",
	    "\xc3\xa9", "\x7f", "\xc2\x85", "\xff", "0123456789abcdef",
	    "event",  "replayId", "type", ".",     "_",        "\\t",
	};
	unsigned n = gen_rand(g, 6);

	gen_put(g, "\"");
	while (n-- > 0)
		gen_put(g, bits[gen_rand(g, sizeof(bits) / sizeof(bits[0]))]);
	gen_put(g, "\"");
}

static void
gen_value(struct gen *g, int depth)
{
	static const char *const scalars[] = {"0",     "-1",   "3.25",
	                                      "1e-7",  "true", "false",
	                                      "null",  "12345678901234567890"};
	static const char *const keys[] = {"\"event\"", "\"replayId\"",
	                                   "\"type\"", "\"createdDate\""};
	unsigned k = gen_rand(g, depth > 5 ? 3 : 6), i, n;

	switch (k) {
	case 0:
	case 1:
		gen_string(g);
		return;
	case 2:
		gen_put(g, scalars[gen_rand(g, 8)]);
		return;
	case 3:
	case 4:
		n = gen_rand(g, 5);
		gen_put(g, "{");
		for (i = 0; i < n; i++) {
			if (i > 0)
				gen_put(g, gen_rand(g, 4) ? "," : " , ");
			if (gen_rand(g, 3) == 0)
				gen_put(g, keys[gen_rand(g, 4)]);
			else
				gen_string(g);
			gen_put(g, ":");
			gen_value(g, depth + 1);
		}
		gen_put(g, "}");
		return;
	default:
		n = gen_rand(g, 4);
		gen_put(g, "[");
		for (i = 0; i < n; i++) {
			if (i > 0)
				gen_put(g, ",");
			gen_value(g, depth + 1);
		}
		gen_put(g, "]");
	}
}

static void
test_generated_payloads(void **state)
{
	struct gen g = {.state = 20261127};
	struct seen sn;
	int taped = 0;

	(void)state;
	for (int i = 0; i < 3000; i++) {
		g.len = 0;
		gen_put(&g, "{");
		/* Mostly the shapes Salesforce sends: an "event" member
		 * first or last, then anything. */
		if (gen_rand(&g, 2) == 0) {
			gen_put(&g, "\"event\":");
			gen_value(&g, 1);
			gen_put(&g, ",");
		}
		gen_put(&g, "\"x\":");
		gen_value(&g, 1);
		gen_put(&g, "}");
		memset(&sn, 0, sizeof(sn));
		run_body(g.p, i % 3 == 0 ? 0 : 1 + (size_t)gen_rand(&g, 40),
		         &sn);
		assert_int_equal(sn.events, 1);
		taped += sn.taped;
		if (sn.mismatch != 0)
			fail_msg("payload %s:\n%s", g.p, sn.first_diff);
	}
	/* Every one of them was an object: all went by the tape. */
	assert_int_equal(taped, 3000);
	free(g.p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fixed_object_payloads),
	    cmocka_unit_test(test_leaf_lengths),
	    cmocka_unit_test(test_long_key_paths),
	    cmocka_unit_test(test_non_object_payloads_have_no_tape),
	    cmocka_unit_test(test_repeated_data_takes_the_last),
	    cmocka_unit_test(test_oversized_payload_has_no_tape),
	    cmocka_unit_test(test_bad_tape_falls_back_to_text),
	    cmocka_unit_test(test_generated_payloads),
	};

	return cmocka_run_group_tests_name("json_tape", tests, NULL, NULL);
}
