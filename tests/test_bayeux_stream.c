/*
 * Tests for the streaming Bayeux decoder (bayeux_stream.h).
 *
 * The reference is bayeux_decode() (bayeux_msg.h): for any body both
 * accept, the two must give the same messages, field by field; payloads
 * are compared as JSON values (the stream hands on the original text,
 * bayeux_decode json-c's re-serialization), and every payload the stream
 * gives must be strict JSON by an independent checker (split_check.h,
 * shared with the fuzz harness), since json-c is lenient. Where the two
 * decoders are documented to differ (bayeux_stream.h) the test detects
 * that case explicitly and asserts the documented behaviour instead.
 *
 * The stream must also give the same result however the body is cut: at
 * every single split point, in 1-byte chunks, in pseudo-random chunks;
 * and it must keep its memory bounded by max_msg_bytes however long the
 * body is. Data files are read from tests/data/bayeux/ relative to the
 * repository root, the working directory of `make test`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "harness.h"
#include "sfrelay/bayeux_msg.h"
#include "sfrelay/bayeux_stream.h"
#include "sfrelay/format.h"
#include "split_check.h"

#define DATA_DIR "tests/data/bayeux/"
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define BIG_MAX ((size_t)1 << 20)

/* ---- small helpers ---------------------------------------------------- */

/* xorshift64*: deterministic, so every failure replays. */
static uint64_t
rnd(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * UINT64_C(2685821657736338717);
}

static size_t
rnd_range(uint64_t *state, size_t lo, size_t hi)
{
	return lo + (size_t)(rnd(state) % (uint64_t)(hi - lo + 1));
}

/* A whole body as the decoders see it: strict JSON within 64 levels. */
static int
body_strict(const char *s, size_t n)
{
	return split_json_strict(s, n, 64);
}

/* ---- recorded messages -------------------------------------------------- */

/* split_run_cb() for a stream a test drives itself: a broken promise
 * fails the test at once. */
static int
record_cb(void *arg, const struct bayeux_msg *m)
{
	struct split_run *r = arg;
	int rc = split_run_cb(r, m);

	if (r->broken != NULL)
		fail_msg("%s", r->broken);
	return rc;
}

/* bayeux_decode() into r. Returns 0 or -1 (reason in err). */
static int
ref_decode(const char *body, size_t len, struct split_run *r, char *err,
           size_t errlen)
{
	split_run_reference(r, body, len);
	snprintf(err, errlen, "%s", r->err);
	return r->rc;
}

/* How a body is cut into chunks. */
enum plan_kind {
	PLAN_WHOLE,
	PLAN_SPLIT,  /* two chunks, cut at arg */
	PLAN_FIXED,  /* chunks of arg bytes */
	PLAN_RANDOM, /* chunks of 1..arg bytes, from seed */
};

struct plan {
	enum plan_kind kind;
	size_t arg;
	uint64_t seed;
};

/* The plans most tests use: the body whole, and whole and in 1-byte
 * chunks. */
static const struct plan plan_whole = {PLAN_WHOLE, 0, 0};
static const struct plan plan_bytes = {PLAN_FIXED, 1, 0};
static const struct plan plan_whole_bytes[] = {{PLAN_WHOLE, 0, 0},
                                               {PLAN_FIXED, 1, 0}};

/* A plan being carried out: a split_next_fn argument. */
struct cutter {
	const struct plan *pl;
	uint64_t rng;
};

static size_t
plan_next(void *arg, size_t off, size_t left)
{
	struct cutter *c = arg;
	size_t n = left;

	switch (c->pl->kind) {
	case PLAN_WHOLE:
		break;
	case PLAN_SPLIT:
		n = off < c->pl->arg ? c->pl->arg - off : left;
		break;
	case PLAN_FIXED:
		n = c->pl->arg;
		break;
	case PLAN_RANDOM:
		n = rnd_range(&c->rng, 1, c->pl->arg);
		break;
	}
	return n > left ? left : n;
}

/*
 * Feeds body to a fresh stream as the plan says, then finishes it, with
 * every check of split_run_decode(). Returns 0 or -1 (error text in err).
 * *fed gets the bytes fed up to and including the failing chunk.
 */
static int
stream_decode(const char *body, size_t len, size_t max_msg,
              const struct plan *pl, struct split_run *r, char *err,
              size_t errlen, size_t *fed)
{
	struct cutter c = {pl, pl->seed ? pl->seed : 1};
	const char *why =
	    split_run_decode(r, body, len, max_msg, plan_next, &c);

	if (why != NULL)
		fail_msg("%s (after %zu bytes; error \"%s\")", why, r->fed,
		         r->err);
	snprintf(err, errlen, "%s", r->err);
	if (fed != NULL)
		*fed = r->fed;
	return r->rc;
}

/* ---- comparing messages ------------------------------------------------- */

/* Fails naming the difference split_run_diff() or split_ref_diff()
 * found, with both messages' channel, position and payload. */
static void
fail_diff(const char *ctx, const char *why, size_t at,
          const struct split_run *want, const struct split_run *got)
{
	const struct bayeux_msg *w = at < want->n ? &want->v[at] : NULL;
	const struct bayeux_msg *g = at < got->n ? &got->v[at] : NULL;

	fail_msg("%s[%zu]: %s differs (%zu messages, %zu wanted)\n"
	         "  want %s %s %.*s\n  got  %s %s %.*s",
	         ctx, at, why, got->n, want->n, w ? w->channel : "-",
	         w ? w->ev.position : "-", w ? (int)w->ev.payload_len : 0,
	         w ? w->ev.payload : "", g ? g->channel : "-",
	         g ? g->ev.position : "-", g ? (int)g->ev.payload_len : 0,
	         g ? g->ev.payload : "");
}

/* want from bayeux_decode, got from the stream: the same messages, the
 * payloads the same JSON values. */
static void
expect_like_reference(const char *ctx, const struct split_run *want,
                      const struct split_run *got)
{
	size_t at;
	const char *why = split_ref_diff(want, got, 0, &at);

	if (why != NULL)
		fail_diff(ctx, why, at, want, got);
}

/* Two stream runs over the same body: the same result and error, the
 * very same bytes. */
static void
expect_identical(const char *ctx, const struct split_run *a,
                 const struct split_run *b)
{
	size_t at;
	const char *why = split_run_diff(a, b, &at);

	if (why != NULL)
		fail_diff(ctx, why, at, a, b);
}

/* The body cut as pl says gives what base (the body whole, same
 * max_msg) gave: result, error text and messages. */
static void
expect_cut_alike(const char *ctx, const char *body, size_t len, size_t max_msg,
                 const struct plan *pl, const struct split_run *base)
{
	struct split_run r = {0};
	char err[256];

	(void)stream_decode(body, len, max_msg, pl, &r, err, sizeof(err), NULL);
	expect_identical(ctx, base, &r);
	split_run_clear(&r);
}

/*
 * The differential check: the body through bayeux_decode and through the
 * stream (cut as pl says) gives the same success and the same messages.
 */
static void
expect_same_as_reference(const char *ctx, const char *body, size_t len,
                         const struct plan *pl)
{
	struct split_run want = {0}, got = {0};
	char err1[256], err2[256];
	int rc1, rc2;

	rc1 = ref_decode(body, len, &want, err1, sizeof(err1));
	rc2 = stream_decode(body, len, BIG_MAX, pl, &got, err2, sizeof(err2),
	                    NULL);
	if (rc1 != rc2)
		fail_msg("%s: bayeux_decode %s (%s), stream %s (%s)", ctx,
		         rc1 == 0 ? "accepts" : "refuses", rc1 ? err1 : "",
		         rc2 == 0 ? "accepts" : "refuses", rc2 ? err2 : "");
	if (rc1 == 0)
		expect_like_reference(ctx, &want, &got);
	split_run_clear(&want);
	split_run_clear(&got);
}

/* ---- data files --------------------------------------------------------- */

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *.json under DATA_DIR, sorted; owned array of owned names. */
static char **
list_data_files(size_t *count)
{
	DIR *d = opendir(DATA_DIR);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, len;

	if (d == NULL)
		fail_msg("cannot open " DATA_DIR " (run from the repository "
		         "root)");
	while ((e = readdir(d)) != NULL) {
		len = strlen(e->d_name);
		if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
			continue;
		names = realloc(names, (n + 1) * sizeof(*names));
		assert_non_null(names);
		names[n++] = split_xstrdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_names);
	*count = n;
	return names;
}

static void
free_names(char **names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static void
test_data_files_whole(void **state)
{
	size_t n, i, len, ok = 0;
	char **names = list_data_files(&n);
	char err[256];
	struct split_run r = {0};

	(void)state;
	/* The decoder's own suite ships 21 files; none may go unnoticed. */
	assert_true(n >= 21);
	for (i = 0; i < n; i++) {
		char *body = load_test_file(DATA_DIR, names[i], &len);

		expect_same_as_reference(names[i], body, len, &plan_whole);
		if (ref_decode(body, len, &r, err, sizeof(err)) == 0)
			ok++;
		split_run_clear(&r);
		free(body);
	}
	/* All but truncated_connect.json decode. */
	assert_int_equal(ok, n - 1);
	free_names(names, n);
}

/* Every cut of every file, and 1-byte chunks: the very same messages as
 * the whole body, byte for byte (checked against bayeux_decode above). */
static void
test_data_files_every_split(void **state)
{
	size_t n, i, k, len;
	char **names = list_data_files(&n);
	char ctx[256], err0[256];

	(void)state;
	for (i = 0; i < n; i++) {
		char *body = load_test_file(DATA_DIR, names[i], &len);
		struct split_run base = {0};

		(void)stream_decode(body, len, BIG_MAX, &plan_whole, &base,
		                    err0, sizeof(err0), NULL);
		for (k = 0; k <= len; k++) {
			const struct plan split = {PLAN_SPLIT, k, 0};

			snprintf(ctx, sizeof(ctx), "%s cut at %zu", names[i],
			         k);
			expect_cut_alike(ctx, body, len, BIG_MAX, &split,
			                 &base);
		}
		snprintf(ctx, sizeof(ctx), "%s in 1-byte chunks", names[i]);
		expect_cut_alike(ctx, body, len, BIG_MAX, &plan_bytes, &base);
		split_run_clear(&base);
		free(body);
	}
	free_names(names, n);
}

/* ---- generated bodies --------------------------------------------------- */

static const char *const texts[] = {
    "plain text",
    "quote \\\" and backslash \\\\ and slash \\/",
    "tab\\tnew\\nline\\r\\b\\f",
    "caf\\u00e9 \\u4e2d\\u6587 \\ud83d\\ude00",
    "lone \\ud800 high, lone \\udc00 low",
    "raw UTF-8 caf\xc3\xa9 \xe6\x97\xa5",
    "",
    "https://acme.example.com/a?b=c&d=e",
};

/* One event (or, for kind 9, a meta reply) with id as its replayId, or
 * with replay_text (JSON) when that is not NULL. */
static size_t
gen_event(char *out, size_t cap, size_t id, const char *replay_text,
          uint64_t *rng)
{
	unsigned kind = (unsigned)(rnd(rng) % 10);
	const char *t1 = texts[rnd(rng) % ARRAY_LEN(texts)];
	const char *t2 = texts[rnd(rng) % ARRAY_LEN(texts)];
	char replay[32];
	int n = 0;

	if (replay_text != NULL)
		snprintf(replay, sizeof(replay), "%s", replay_text);
	else if (rnd(rng) % 4 == 0)
		snprintf(replay, sizeof(replay), "\"%zu\"", id);
	else
		snprintf(replay, sizeof(replay), "%zu", id);
	switch (kind) {
	case 0:
	case 1:
	case 2:
		n = snprintf(
		    out, cap,
		    "{\"channel\":\"/topic/AccountWatch\",\"data\":{\"event\":{"
		    "\"createdDate\":\"2025-11-26T19:%02u:%02u.000Z\","
		    "\"replayId\":%s,\"type\":\"%s\"},\"sobject\":{\"Id\":"
		    "\"001xx000003DGb%04zuAAG\",\"Name\":\"Acme %s\","
		    "\"AnnualRevenue\":%zu.5,\"IsDeleted\":false,\"ParentId\":"
		    "null,\"Tags\":[1,-2.5e3,true,{\"k\":\"%s\"}],"
		    "\"Description\":\"%s\"}}}",
		    (unsigned)(id % 60), (unsigned)(id * 7 % 60), replay,
		    kind == 0 ? "created" : "updated", id % 10000, t1, id * 3,
		    t2, t1);
		break;
	case 3:
	case 4:
		n = snprintf(
		    out, cap,
		    "{\"data\":{\"schema\":\"IeRuaY6cbI_HsV8Rv1Mc5g\","
		    "\"payload\":{\"ChangeEventHeader\":{\"entityName\":"
		    "\"Account\",\"recordIds\":[\"001xx000003DGb2AAG\"],"
		    "\"changeType\":\"%s\",\"commitTimestamp\":%" PRId64 ","
		    "\"commitNumber\":10704285426,\"changedFields\":[\"Name\"]}"
		    ","
		    "\"Name\":\"%s\"},\"event\":{\"replayId\":%s}},\"channel\":"
		    "\"/data/AccountChangeEvent\"}",
		    kind == 3 ? "UPDATE" : "DELETE",
		    INT64_C(1764185273000) + (int64_t)(id * 997), t1, replay);
		break;
	case 5:
	case 6:
		n = snprintf(
		    out, cap,
		    "{\"channel\":\"/event/LoginEventStream\",\"data\":{"
		    "\"schema\":\"Y9Sw8sA1cTgg2kbA8r9kYQ\",\"payload\":{"
		    "\"CreatedDate\":\"2025-11-26T19:40:%02u.250Z\","
		    "\"Username\":\"%s\",\"SourceIp\":\"203.0.113.7\"},"
		    "\"event\":{\"replayId\":%s,\"EventUuid\":\"b4e8f3d2\"}}}",
		    (unsigned)(id % 60), t1, replay);
		break;
	case 7:
	case 8:
		n = snprintf(out, cap,
		             "{\"channel\":\"/u/Notifications\",\"data\":{"
		             "\"event\":{\"createdDate\":\"2025-11-26T19:30:"
		             "02.117Z\",\"replayId\":%s},\"payload\":\"%s\"}}",
		             replay, t1);
		break;
	default:
		n = snprintf(out, cap,
		             "{\"clientId\":\"4l1t6d8mk1hf6h1jyfezmqhbymtz\","
		             "\"advice\":{\"interval\":0,\"timeout\":110000,"
		             "\"reconnect\":\"retry\"},\"channel\":"
		             "\"/meta/connect\",\"successful\":true}");
		break;
	}
	assert_true(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

/* Copies ev to out with random whitespace after structural bytes. */
static size_t
spread_ws(char *out, const char *ev, size_t len, uint64_t *rng)
{
	static const char *const ws[] = {" ", "\n  ", "\t", "\r\n", "  "};
	size_t i, o = 0;
	int in_str = 0, esc = 0;
	const char *w;

	for (i = 0; i < len; i++) {
		char c = ev[i];

		out[o++] = c;
		if (in_str) {
			if (esc)
				esc = 0;
			else if (c == '\\')
				esc = 1;
			else if (c == '"')
				in_str = 0;
			continue;
		}
		if (c == '"') {
			in_str = 1;
			continue;
		}
		if (strchr("{[:,", c) != NULL && rnd(rng) % 2 == 0) {
			w = ws[rnd(rng) % ARRAY_LEN(ws)];
			memcpy(out + o, w, strlen(w));
			o += strlen(w);
		}
	}
	return o;
}

/* A body of n messages; *events gets how many are events. Owned. */
static char *
gen_body(size_t n, uint64_t seed, size_t *len, size_t *events)
{
	size_t cap = n * 4096 + 16, o = 0, i, elen, id = 0;
	char *body = split_xmalloc(cap), ev[2048];
	uint64_t rng = seed;

	body[o++] = '[';
	*events = 0;
	for (i = 0; i < n; i++) {
		if (i > 0)
			body[o++] = ',';
		elen = gen_event(ev, sizeof(ev), id + 1, NULL, &rng);
		if (strstr(ev, "/meta/") == NULL)
			id++;
		if (rnd(&rng) % 8 == 0) {
			o += spread_ws(body + o, ev, elen, &rng);
		} else {
			memcpy(body + o, ev, elen);
			o += elen;
		}
	}
	body[o++] = ']';
	*len = o;
	*events = id;
	return body;
}

static void
test_random_chunks_5000(void **state)
{
	const struct plan plans[] = {
	    {PLAN_RANDOM, 16, 7},
	    {PLAN_RANDOM, 700, 11},
	    {PLAN_RANDOM, 8192, 13},
	    {PLAN_RANDOM, 100000, 17},
	};
	size_t len, events, i, j, pos;
	char *body = gen_body(5000, 42, &len, &events);
	struct split_run want = {0}, base = {0};
	char err[256], ctx[64];

	(void)state;
	assert_true(body_strict(body, len));
	assert_int_equal(ref_decode(body, len, &want, err, sizeof(err)), 0);
	assert_int_equal(want.n, 5000);
	/* The whole body against bayeux_decode, as JSON values... */
	if (stream_decode(body, len, BIG_MAX, &plan_whole, &base, err,
	                  sizeof(err), NULL) != 0)
		fail_msg("whole: %s", err);
	expect_like_reference("whole", &want, &base);
	/* ...in body order: the events carry replayIds 1, 2, 3, ... */
	for (j = 0, pos = 0; j < base.n; j++) {
		if (base.v[j].kind != BAYEUX_MSG_EVENT)
			continue;
		pos++;
		expect_long("order", "replayId", (long)pos,
		            strtol(base.v[j].ev.position, NULL, 10));
	}
	assert_int_equal(pos, events);
	/* ...and every chunking gives the very same bytes. */
	for (i = 0; i < ARRAY_LEN(plans); i++) {
		snprintf(ctx, sizeof(ctx), "plan %zu", i);
		expect_cut_alike(ctx, body, len, BIG_MAX, &plans[i], &base);
	}
	split_run_clear(&want);
	split_run_clear(&base);
	free(body);
}

/* ---- bounded memory ------------------------------------------------------ */

/*
 * A body produced piece by piece, never held whole: '[', then events
 * separated by ',' until about target bytes, then ']'. Events are copies
 * of a few dozen varied templates whose replayId is a 10-digit string,
 * patched with a running id (cheap enough for 100 MB under valgrind).
 * Every 7919th event carries a ~40 KiB description, so the buffer does
 * grow now and then.
 */
#define TEMPLATES 48
#define ID_SLOT "##########"

struct bodygen {
	uint64_t rng;
	size_t target;
	size_t produced;
	size_t ids;
	int phase; /* 0 '[', 1 events, 2 ']', 3 done */
	char tpl[TEMPLATES][2048];
	size_t tpl_len[TEMPLATES];
	size_t tpl_slot[TEMPLATES];
	char piece[48 * 1024];
	size_t len;
	size_t off;
};

static void
gen_init(struct bodygen *g, uint64_t seed, size_t target)
{
	size_t i;
	char *slot;

	g->rng = seed;
	g->target = target;
	for (i = 0; i < TEMPLATES; i++) {
		do {
			g->tpl_len[i] =
			    gen_event(g->tpl[i], sizeof(g->tpl[i]), 0,
			              "\"" ID_SLOT "\"", &g->rng);
			slot = strstr(g->tpl[i], ID_SLOT);
		} while (slot == NULL); /* a meta reply has no replayId */
		g->tpl_slot[i] = (size_t)(slot - g->tpl[i]);
	}
}

static void
gen_next_piece(struct bodygen *g)
{
	size_t n = 0, t, k, v;

	g->off = 0;
	switch (g->phase) {
	case 0:
		g->piece[n++] = '[';
		g->phase = 1;
		break;
	case 1:
		if (g->produced >= g->target) {
			g->piece[n++] = ']';
			g->phase = 2;
			break;
		}
		if (g->ids > 0)
			g->piece[n++] = ',';
		g->ids++;
		if (g->ids % 7919 == 0) {
			n += (size_t)snprintf(
			    g->piece + n, sizeof(g->piece) - n,
			    "{\"channel\":\"/topic/Big\",\"data\":{\"event\":{"
			    "\"replayId\":%zu},\"sobject\":{\"Description\":\"",
			    g->ids);
			memset(g->piece + n, 'a' + (int)(g->ids % 26), 40000);
			n += 40000;
			memcpy(g->piece + n, "\"}}}", 4);
			n += 4;
			break;
		}
		t = (size_t)(rnd(&g->rng) % TEMPLATES);
		memcpy(g->piece + n, g->tpl[t], g->tpl_len[t]);
		for (k = 10, v = g->ids; k-- > 0; v /= 10)
			g->piece[n + g->tpl_slot[t] + k] = (char)('0' + v % 10);
		n += g->tpl_len[t];
		break;
	default:
		g->phase = 3;
		break;
	}
	g->len = n;
}

/* Up to want bytes of the body into out; 0 once it is all out. */
static size_t
gen_fill(struct bodygen *g, char *out, size_t want)
{
	size_t got = 0, k;

	while (got < want) {
		if (g->off == g->len) {
			if (g->phase == 3)
				break;
			gen_next_piece(g);
			if (g->len == 0)
				break;
		}
		k = g->len - g->off;
		if (k > want - got)
			k = want - got;
		memcpy(out + got, g->piece + g->off, k);
		g->off += k;
		g->produced += k;
		got += k;
	}
	return got;
}

struct counter {
	struct bayeux_stream *s;
	size_t n;
	size_t max_cap;
	int out_of_order;
};

static int
count_cb(void *arg, const struct bayeux_msg *m)
{
	struct counter *c = arg;
	size_t cap = bayeux_stream_buffer_capacity(c->s);

	c->n++;
	if (strtoull(m->ev.position, NULL, 10) != c->n)
		c->out_of_order = 1;
	if (cap > c->max_cap)
		c->max_cap = cap;
	return 0;
}

static void
test_memory_bound_100mb(void **state)
{
	const size_t max_msg = 64 * 1024;
	struct bodygen *g = calloc(1, sizeof(*g));
	struct counter c = {0};
	struct bayeux_stream *s;
	char *chunk = split_xmalloc(65536);
	size_t n, cap, total = 0;

	(void)state;
	assert_non_null(g);
	gen_init(g, 99, (size_t)100 * 1024 * 1024);
	s = bayeux_stream_new(max_msg, count_cb, &c);
	assert_non_null(s);
	c.s = s;
	while ((n = gen_fill(g, chunk, rnd_range(&g->rng, 1, 65536))) > 0) {
		if (bayeux_stream_feed(s, chunk, n) != 0)
			fail_msg("after %zu bytes: %s", total,
			         bayeux_stream_errstr(s));
		total += n;
		cap = bayeux_stream_buffer_capacity(s);
		if (cap > c.max_cap)
			c.max_cap = cap;
	}
	assert_int_equal(bayeux_stream_finish(s), 0);
	assert_true(total > (size_t)100 * 1024 * 1024);
	assert_int_equal(c.n, g->ids);
	assert_int_equal(bayeux_stream_count(s), g->ids);
	assert_false(c.out_of_order);
	/* The 40 KiB events did need the buffer, and it stayed bounded. */
	assert_true(c.max_cap >= 40000);
	if (c.max_cap > 2 * max_msg + 512)
		fail_msg("buffers reached %zu bytes for max_msg_bytes %zu",
		         c.max_cap, max_msg);
	bayeux_stream_free(s);
	free(chunk);
	free(g);
}

/* A 20 MB element against max_msg_bytes 1 MiB: refused once the limit is
 * passed, long before the element ends, without holding it. */
static void
test_oversized_element(void **state)
{
	static const char head[] = "[{\"channel\":\"/u/Big\",\"data\":\"";
	const size_t max_msg = (size_t)1 << 20, big = (size_t)20 << 20;
	const size_t step = 64 * 1024;
	struct split_run r = {0};
	struct bayeux_stream *s;
	size_t fed, n;
	char *chunk = split_xmalloc(step), *whole;
	int rc = 0;

	(void)state;
	/* Chunk by chunk. */
	s = bayeux_stream_new(max_msg, record_cb, &r);
	assert_non_null(s);
	assert_int_equal(bayeux_stream_feed(s, head, sizeof(head) - 1), 0);
	fed = sizeof(head) - 1;
	memset(chunk, 'x', step);
	while (fed < big && rc == 0) {
		rc = bayeux_stream_feed(s, chunk, step);
		fed += step;
		assert_true(bayeux_stream_buffer_capacity(s) <=
		            2 * max_msg + 512);
	}
	assert_int_equal(rc, -1);
	assert_true(fed <= max_msg + 2 * step);
	assert_non_null(strstr(bayeux_stream_errstr(s), "max_msg_bytes"));
	assert_non_null(strstr(bayeux_stream_errstr(s), "element 0 at byte 1"));
	assert_int_equal(bayeux_stream_feed(s, chunk, step), -1);
	assert_int_equal(bayeux_stream_finish(s), -1);
	bayeux_stream_free(s);

	/* In one 20 MB chunk: refused without buffering a byte. */
	whole = split_xmalloc(big);
	memcpy(whole, head, sizeof(head) - 1);
	memset(whole + sizeof(head) - 1, 'x', big - sizeof(head) - 3);
	memcpy(whole + big - 3, "\"}]", 3);
	s = bayeux_stream_new(max_msg, record_cb, &r);
	assert_non_null(s);
	assert_int_equal(bayeux_stream_feed(s, whole, big), -1);
	assert_non_null(strstr(bayeux_stream_errstr(s), "max_msg_bytes"));
	assert_int_equal(bayeux_stream_buffer_capacity(s), 0);
	bayeux_stream_free(s);

	/* A run of '[' is refused at the nesting limit, not buffered. */
	s = bayeux_stream_new(max_msg, record_cb, &r);
	assert_non_null(s);
	assert_int_equal(
	    bayeux_stream_feed(s, "[{\"channel\":\"/u/D\",\"d\":", 23), 0);
	memset(chunk, '[', step);
	for (n = 0, rc = 0; rc == 0 && n < 100; n++)
		rc = bayeux_stream_feed(s, chunk + n, 1);
	assert_int_equal(rc, -1);
	assert_true(n < 64);
	assert_non_null(strstr(bayeux_stream_errstr(s), "too deep"));
	bayeux_stream_free(s);

	assert_int_equal(r.n, 0);
	free(whole);
	free(chunk);
}

/*
 * The worst case for the bound: an element of exactly max_msg_bytes that
 * straddles chunks (so it is buffered) and is nearly all one string the
 * decoder must decode and keep (createdDate of a /topic/ event).
 */
static void
test_memory_worst_case(void **state)
{
	static const char head[] =
	    "[{\"channel\":\"/topic/"
	    "W\",\"data\":{\"event\":{\"createdDate\":\"";
	static const char tail[] = "\"}}}]";
	const size_t max_msg = 100000;
	const size_t body_len = 1 + max_msg + 1;
	char *body = split_xmalloc(body_len);
	const struct plan plans[] = {
	    {PLAN_FIXED, 4096, 0}, {PLAN_FIXED, 1, 0}, {PLAN_WHOLE, 0, 0}};
	size_t i, fill = body_len - (sizeof(head) - 1) - (sizeof(tail) - 1);
	char err[256];

	(void)state;
	memcpy(body, head, sizeof(head) - 1);
	memset(body + sizeof(head) - 1, 'd', fill);
	memcpy(body + body_len - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
	for (i = 0; i < ARRAY_LEN(plans); i++) {
		struct split_run r = {0};

		assert_int_equal(stream_decode(body, body_len, max_msg,
		                               &plans[i], &r, err, sizeof(err),
		                               NULL),
		                 0);
		assert_int_equal(r.n, 1);
		assert_int_equal(strlen(r.v[0].ev.created), fill);
		if (r.max_cap > 2 * max_msg + 512)
			fail_msg("plan %zu: buffers reached %zu bytes for "
			         "max_msg_bytes %zu",
			         i, r.max_cap, max_msg);
		split_run_clear(&r);
	}
	free(body);
}

/* An element of exactly max_msg_bytes passes; one byte more does not,
 * however it is cut. */
static void
test_max_msg_exact(void **state)
{
	static const char body[] =
	    "[ {\"channel\":\"/topic/X\",\"data\":{\"a\":[1,2,\"}\"]}} ]";
	const size_t elem = sizeof(body) - 1 - 4; /* without "[ " and " ]" */
	const struct plan plans[] = {
	    {PLAN_WHOLE, 0, 0}, {PLAN_FIXED, 1, 0}, {PLAN_FIXED, 7, 0}};
	size_t i, k;
	char err[256];

	(void)state;
	for (i = 0; i < ARRAY_LEN(plans); i++) {
		struct split_run r = {0};

		assert_int_equal(stream_decode(body, sizeof(body) - 1, elem,
		                               &plans[i], &r, err, sizeof(err),
		                               NULL),
		                 0);
		assert_int_equal(r.n, 1);
		split_run_clear(&r);
		assert_int_equal(stream_decode(body, sizeof(body) - 1, elem - 1,
		                               &plans[i], &r, err, sizeof(err),
		                               NULL),
		                 -1);
		assert_non_null(strstr(err, "max_msg_bytes"));
		assert_non_null(strstr(err, "at byte 2"));
		assert_int_equal(r.n, 0);
		split_run_clear(&r);
	}
	for (k = 0; k <= sizeof(body) - 1; k++) {
		const struct plan split = {PLAN_SPLIT, k, 0};
		struct split_run r = {0};

		assert_int_equal(stream_decode(body, sizeof(body) - 1, elem,
		                               &split, &r, err, sizeof(err),
		                               NULL),
		                 0);
		split_run_clear(&r);
		assert_int_equal(stream_decode(body, sizeof(body) - 1, elem - 1,
		                               &split, &r, err, sizeof(err),
		                               NULL),
		                 -1);
		split_run_clear(&r);
	}
}

/* ---- malformed bodies --------------------------------------------------- */

/* The malformed table shared with test_bayeux_msg.c (harness.c): both
 * decoders refuse every body, the stream with its own words. */
static void
test_malformed(void **state)
{
	char err[256], ref_err[256];
	size_t i, j, len;

	(void)state;
	for (i = 0; i < harness_bad_bodies_count; i++) {
		const struct harness_bad_body *c = &harness_bad_bodies[i];
		struct split_run r = {0};

		len = c->len ? c->len : strlen(c->body);
		/* Both decoders refuse. */
		if (ref_decode(c->body, len, &r, ref_err, sizeof(ref_err)) == 0)
			fail_msg("%s: bayeux_decode accepts it", c->name);
		split_run_clear(&r);
		for (j = 0; j < ARRAY_LEN(plan_whole_bytes); j++) {
			if (stream_decode(c->body, len, BIG_MAX,
			                  &plan_whole_bytes[j], &r, err,
			                  sizeof(err), NULL) == 0)
				fail_msg("%s: decoded", c->name);
			if (strstr(err, c->stream_has) == NULL)
				fail_msg("%s: error \"%s\" lacks \"%s\"",
				         c->name, err, c->stream_has);
			split_run_clear(&r);
		}
	}
}

/* Every cut of a good body before its closing bracket is truncated (what
 * was delivered is a prefix of the whole); from the bracket on it is
 * whole. */
static void
test_truncated_prefixes(void **state)
{
	size_t len, k, end, i;
	char *body = load_test_file(DATA_DIR, "batch_connect_first.json", &len);
	struct split_run full = {0};
	char err[256];

	(void)state;
	assert_int_equal(stream_decode(body, len, BIG_MAX, &plan_whole, &full,
	                               err, sizeof(err), NULL),
	                 0);
	assert_int_equal(full.n, 4);
	end = (size_t)(strrchr(body, ']') - body) + 1;
	for (k = 0; k < end; k++) {
		struct split_run r = {0};

		assert_int_equal(stream_decode(body, k, BIG_MAX, &plan_whole,
		                               &r, err, sizeof(err), NULL),
		                 -1);
		if (strstr(err, k == 0 ? "empty body" : "truncated") == NULL)
			fail_msg("cut at %zu: %s", k, err);
		assert_true(r.n <= full.n);
		for (i = 0; i < r.n; i++)
			expect_str("prefix", "channel", full.v[i].channel,
			           r.v[i].channel);
		split_run_clear(&r);
	}
	for (k = end; k <= len; k++) {
		struct split_run r = {0};

		assert_int_equal(stream_decode(body, k, BIG_MAX, &plan_whole,
		                               &r, err, sizeof(err), NULL),
		                 0);
		expect_identical("whole", &full, &r);
		split_run_clear(&r);
	}
	split_run_clear(&full);
	free(body);
}

/* ---- strictness ---------------------------------------------------------- */

/* Bodies json-c takes even with JSON_TOKENER_STRICT, RFC 8259 does not:
 * the stream refuses them. Each is checked to really be such a body
 * (whatever bayeux_decode, which screens some of them, makes of it). */
static const char *const jsonc_lenient[] = {
    "[{\"channel\":\"/u/A\",\"data\":NaN}]",
    "[{\"channel\":\"/u/A\",\"data\":Infinity}]",
    "[{\"channel\":\"/u/A\",\"data\":{\"x\":-Infinity}}]",
    "[{\"channel\":\"/u/A\",\"data\":00}]",
    "[{\"channel\":\"/u/A\",\"data\":-01}]",
    "[{\"channel\":\"/u/A\",\"data\":-00}]",
    "[{\"channel\":\"/u/A\",\"data\":{\"n\":0625000.5}}]",
    "[{\"channel\":\"/u/A\",\"data\":{\"n\":1.}}]",
    "[{\"channel\":\"/u/A\",\"data\":{\"n\":1.e5}}]",
    "[{\"channel\":\"/u/A\",\"data\":{\"n\":-.5}}]",
    "[{\"channel\":\"/u/A\",\"data\":{\"event\":{\"replayId\":-01}}}]",
    "[{\"channel\":\"/u/A\",\"data\":\"tab\there\"}]",
    "[{\"channel\":\"/u/A\",\"data\":\"new\nline\"}]",
    "[{\"channel\":\"/u/A\",\"data\":\"\x01\x1f\"}]",
    "[{\"channel\":\"/u/\x7f\x01\"}]",
    "[{\"chan\x02nel\":\"/u/A\",\"channel\":\"/u/B\"}]",
    "[{'channel':\"/u/A\"}]",
    "[{\"channel\":\"/u/A\",\"data\":{'k':1}}]",
    "[{\"channel\":\"/meta/connect\",\"advice\":{\"timeout\":-0.}}]",
};

/* Bodies both decoders refuse. */
static const char *const both_refuse[] = {
    "[{\"channel\":\"/u/A\",\"data\":01}]",
    "[{\"channel\":\"/u/A\",\"data\":{\"a\":1,}}]",
    "[{\"channel\":\"/u/A\",\"data\":[1,]}]",
    "[{\"channel\":\"/u/A\",\"data\":[,1]}]",
    "[{\"channel\":\"/u/A\",\"data\":\"\\x41\"}]",
    "[{\"channel\":\"/u/A\",\"data\":\"\\u12G4\"}]",
    "[{\"channel\":\"/u/A\",\"data\":\"\\u12\"}]",
    "[{\"channel\":\"/u/A\",\"data\":\"\\\"}]",
    "[{\"channel\":\"/u/A\",\"data\":+1}]",
    "[{\"channel\":\"/u/A\",\"data\":.5}]",
    "[{\"channel\":\"/u/A\",\"data\":0x10}]",
    "[{\"channel\":\"/u/A\",\"data\":1e}]",
    "[{\"channel\":\"/u/A\",\"data\":1e+}]",
    "[{\"channel\":\"/u/A\",\"data\":-}]",
    "[{\"channel\":\"/u/A\",\"data\":1.5.5}]",
    "[{\"channel\":\"/u/A\",\"data\":True}]",
    "[{\"channel\":\"/u/A\",\"data\":nul}]",
    "[{\"channel\":\"/u/A\",\"data\":nulls}]",
    "[{\"channel\":\"/u/A\",\"data\":/**/1}]",
    "[{\"channel\":\"/u/A\",\"data\":'x'}]",
    "[{\"channel\":\"/u/A\",\"data\":\f1}]",
    "[{\"channel\":\"/u/A\",\"data\":\v1}]",
    "[{channel:\"/u/A\"}]",
    "[{\"channel\" \"/u/A\"}]",
    "[{\"channel\":\"/u/A\" \"data\":1}]",
    "[{\"channel\":\"/u/A\",\"data\":[1 2]}]",
    "\xef\xbb\xbf[]",
};

/* Whether json-c, in the strict mode and with the depth bayeux_decode
 * uses, takes the whole of s as one document. */
static int
jsonc_takes(const char *s, size_t n)
{
	struct json_tokener *tok = json_tokener_new_ex(64);
	json_object *o;
	int ok;

	assert_non_null(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, s, (int)n);
	ok = json_tokener_get_error(tok) == json_tokener_success &&
	     json_tokener_get_parse_end(tok) == n;
	json_object_put(o);
	json_tokener_free(tok);
	return ok;
}

static void
test_strict_json(void **state)
{
	char err[256];
	size_t i, len;
	struct split_run r = {0};
	size_t j;

	(void)state;
	for (i = 0; i < ARRAY_LEN(jsonc_lenient); i++) {
		const char *b = jsonc_lenient[i];

		len = strlen(b);
		/* Explicitly one of the cases the header lists. */
		if (body_strict(b, len))
			fail_msg("%s: is strict JSON", b);
		if (!jsonc_takes(b, len))
			fail_msg("%s: json-c refuses it", b);
		for (j = 0; j < ARRAY_LEN(plan_whole_bytes); j++) {
			if (stream_decode(b, len, BIG_MAX, &plan_whole_bytes[j],
			                  &r, err, sizeof(err), NULL) == 0)
				fail_msg("%s: the stream accepts it", b);
			if (strstr(err, "invalid JSON") == NULL)
				fail_msg("%s: %s", b, err);
			assert_int_equal(r.n, 0);
			split_run_clear(&r);
		}
	}
	for (i = 0; i < ARRAY_LEN(both_refuse); i++) {
		const char *b = both_refuse[i];

		len = strlen(b);
		assert_false(body_strict(b, len));
		assert_false(jsonc_takes(b, len));
		if (ref_decode(b, len, &r, err, sizeof(err)) == 0)
			fail_msg("%s: bayeux_decode accepts it", b);
		split_run_clear(&r);
		for (j = 0; j < ARRAY_LEN(plan_whole_bytes); j++) {
			if (stream_decode(b, len, BIG_MAX, &plan_whole_bytes[j],
			                  &r, err, sizeof(err), NULL) == 0)
				fail_msg("%s: the stream accepts it", b);
			split_run_clear(&r);
		}
	}
}

/* Bad bodies whose elements cannot be delimited by bracket counting: an
 * open string, brackets that never close, a syntax error before a run of
 * brackets. */
static const char *const undelimited[] = {
    "[\n  {\n    \"ext\": {\"replay\": true},\n   replayIdId\": \"2n1e\",\n"
    "    \"channel\": \"/meta/handshake\"\n  }\n]\n",
    "[{\"channel\":\"/u/A\",\"data\":\"open string}]",
    "[{\"channel\":\"/u/A\",\"data\":[[[{\"a\":1}]]}]",
    "[{\"channel\":\"/u/A\",\"data\":x[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "[{\"channel\":\"/u/A\",\"data\":[1,2,,\"]}]\"",
    "[{\"channel\":\"/u/A\",\"da\\u00zz\":1}]",
};

/* However a bad body is cut, the same error, byte offset included. */
static void
test_same_error_however_cut(void **state)
{
	char err0[256], ctx[96];
	const size_t total = harness_bad_bodies_count +
	                     ARRAY_LEN(jsonc_lenient) + ARRAY_LEN(both_refuse) +
	                     ARRAY_LEN(undelimited);
	const char **list = split_xmalloc(total * sizeof(*list));
	size_t *lens = split_xmalloc(total * sizeof(*lens));
	size_t n = 0, i, k, max;

	(void)state;
	for (i = 0; i < harness_bad_bodies_count; i++) {
		const struct harness_bad_body *c = &harness_bad_bodies[i];

		list[n] = c->body;
		lens[n++] = c->len ? c->len : strlen(c->body);
	}
	for (i = 0; i < ARRAY_LEN(jsonc_lenient); i++, n++)
		lens[n] = strlen(list[n] = jsonc_lenient[i]);
	for (i = 0; i < ARRAY_LEN(both_refuse); i++, n++)
		lens[n] = strlen(list[n] = both_refuse[i]);
	for (i = 0; i < ARRAY_LEN(undelimited); i++, n++)
		lens[n] = strlen(list[n] = undelimited[i]);
	for (i = 0; i < n; i++) {
		/* With a roomy limit, and with one the element just passes. */
		for (max = BIG_MAX; max != 0; max = max == BIG_MAX ? 40 : 0) {
			struct split_run r0 = {0};

			assert_int_equal(stream_decode(list[i], lens[i], max,
			                               &plan_whole, &r0, err0,
			                               sizeof(err0), NULL),
			                 -1);
			for (k = 0; k <= lens[i]; k++) {
				const struct plan split = {PLAN_SPLIT, k, 0};

				snprintf(ctx, sizeof(ctx),
				         "case %zu max %zu cut %zu", i, max, k);
				expect_cut_alike(ctx, list[i], lens[i], max,
				                 &split, &r0);
			}
			split_run_clear(&r0);
		}
	}
	free(list);
	free(lens);
}

/* Strict bodies at the edges, where both must agree exactly. */
static const char *const agree[] = {
    /* surrogates: pairs decode, any other becomes U+FFFD, as in json-c */
    "[{\"channel\":\"/u/\\ud83d\\ude00\",\"data\":{\"event\":{"
    "\"createdDate\":\"\\ud800\",\"replayId\":1}}}]",
    "[{\"channel\":\"/topic/\\udc00x\\ud800\\ud800\\udc00\\ud800\\u0041\","
    "\"data\":{\"event\":{\"type\":\"\\ud800\\n\",\"createdDate\":"
    "\"\\ud800\\\\u\",\"replayId\":2}}}]",
    "[{\"channel\":\"/topic/\\uD83D\\uDE00\\uDBFF\\uDFFF\",\"data\":{"
    "\"event\":{\"type\":\"\\ud800\\\"\",\"replayId\":3}}}]",
    /* raw bytes >= 0x80 are not checked as UTF-8 */
    "[{\"channel\":\"/u/\xff\xfe\xc3\",\"data\":{\"event\":{\"createdDate\":"
    "\"\x80\",\"replayId\":4}}}]",
    /* escaped NUL inside extracted strings (not the channel) */
    "[{\"channel\":\"/topic/T\",\"data\":{\"event\":{\"createdDate\":"
    "\"2025\\u0000x\",\"type\":\"\\u0000\",\"replayId\":\"5\\u0000\"}}}]",
    /* every escape, in keys too */
    "[{\"\\u0063hannel\":\"\\/topic\\/T\",\"d\\u0061ta\":{\"\\u0065vent\":{"
    "\"replay\\u0049d\":6,\"typ\\u0065\":\"\\b\\f\\n\\r\\t\\\"\\\\\\/\"}}}]",
    /* json-c cuts keys at U+0000 */
    "[{\"channel\":\"/u/A\",\"channel\\u0000x\":\"/u/B\",\"data\\u0000\":{"
    "\"event\\u0000zz\":{\"replayId\\u0000\":7}}}]",
    "[{\"chan\\u0000nel\":\"/u/A\",\"channel\":\"/u/C\",\"data\":{\"ev"
    "\\u0000ent\":{\"replayId\":8}}}]",
    /* repeated keys: the last one counts, wholly */
    "[{\"channel\":\"/u/A\",\"channel\":\"/topic/B\",\"data\":{\"event\":{"
    "\"replayId\":9,\"type\":\"x\"},\"event\":{\"createdDate\":\"c\"}}}]",
    "[{\"channel\":\"/topic/A\",\"data\":{\"event\":{\"replayId\":10}},"
    "\"data\":null}]",
    "[{\"channel\":\"/topic/A\",\"data\":null,\"data\":[1]}]",
    "[{\"channel\":\"/topic/A\",\"data\":{\"event\":{\"replayId\":11,"
    "\"replayId\":\"x\",\"type\":\"a\",\"type\":7}}}]",
    "[{\"channel\":\"/data/X\",\"data\":{\"payload\":{\"ChangeEventHeader\":"
    "{\"commitTimestamp\":0,\"changeType\":\"A\"},\"ChangeEventHeader\":5},"
    "\"event\":{\"replayId\":12}}}]",
    "[{\"channel\":\"/data/X\",\"data\":{\"payload\":{\"ChangeEventHeader\":"
    "{\"commitTimestamp\":1,\"commitTimestamp\":-0}},\"payload\":{"
    "\"ChangeEventHeader\":{\"commitTimestamp\":86400000}},\"event\":{"
    "\"replayId\":13}}}]",
    /* the wanted members only at their own place */
    "[{\"channel\":\"/topic/A\",\"replayId\":1,\"event\":{\"replayId\":2},"
    "\"data\":{\"x\":{\"event\":{\"replayId\":3}},\"sobject\":{\"channel\":"
    "\"/u/Z\"}}}]",
    "[{\"channel\":\"/event/E\",\"data\":{\"payload\":[{\"CreatedDate\":"
    "\"x\"}],\"event\":[{\"replayId\":1}]}}]",
    "[{\"channel\":\"/event/E\",\"data\":\"{\\\"event\\\":{\\\"replayId\\\":1}}"
    "\"}]",
    /* numbers: big, tiny, exponents, -0 */
    "[{\"channel\":\"/topic/A\",\"data\":{\"event\":{\"replayId\":-0},\"n\":"
    "[1e999,-1e-999,1E+2,0.0,-0.0,123456789012345678901234567890.5]}}]",
    "[{\"channel\":\"/topic/A\",\"data\":{\"event\":{\"replayId\":"
    "9223372036854775807},\"m\":-9223372036854775808}}]",
    "[{\"channel\":\"/topic/A\",\"data\":{\"event\":{\"replayId\":"
    "18446744073709551615}}}]",
    "[{\"channel\":\"/data/A\",\"data\":{\"payload\":{\"ChangeEventHeader\":"
    "{\"commitTimestamp\":9223372036854775808}}}}]",
    "[{\"channel\":\"/data/A\",\"data\":{\"payload\":{\"ChangeEventHeader\":"
    "{\"commitTimestamp\":-9223372036854775809}}}}]",
    "[{\"channel\":\"/data/A\",\"data\":{\"payload\":{\"ChangeEventHeader\":"
    "{\"commitTimestamp\":99999999999999999999999}}}}]",
    "[{\"channel\":\"/data/A\",\"data\":{\"payload\":{\"ChangeEventHeader\":"
    "{\"commitTimestamp\":1e3,\"changeType\":null}}}}]",
    /* whitespace wherever RFC 8259 allows it */
    " \r\n\t[ \n{ \"channel\" :\t\"/u/A\" ,\r\n \"data\" : { \"event\" : "
    "{ \"replayId\" : 14 } , \"k\" : [ ] , \"o\" : { } } } , { \"channel\""
    ":\"/meta/connect\" , \"successful\" : true } \n] \r\n\t",
    /* data of every type */
    "[{\"channel\":\"/u/A\",\"data\":\"s\"},{\"channel\":\"/u/A\",\"data\":"
    "1.5},{\"channel\":\"/u/A\",\"data\":true},{\"channel\":\"/u/A\","
    "\"data\":[]},{\"channel\":\"/u/A\",\"data\":{}},{\"channel\":\"/u/A\","
    "\"data\":false}]",
    /* meta replies among events, odd shapes */
    "[{\"channel\":\"/meta/handshake\",\"successful\":true,\"clientId\":"
    "\"c\\u0041\",\"ext\":{\"replay\":true},\"advice\":{\"reconnect\":"
    "\"none\",\"interval\":5,\"timeout\":9223372036854775807}},{\"channel\":"
    "\"/topic/A\",\"data\":{\"event\":{\"replayId\":15}}},{\"channel\":"
    "\"/meta/subscribe\",\"error\":\"403::x\",\"subscription\":\"/u/A\","
    "\"ext\":{\"sfdc\":{\"failureReason\":\"401::y\"}}}]",
    "[{\"channel\":\"/meta/\"},{\"channel\":\"/meta\"},{\"channel\":\"/\"},"
    "{\"channel\":\"x\"}]",
};

static void
test_agree_on_edges(void **state)
{
	const struct plan plans[] = {
	    {PLAN_WHOLE, 0, 0}, {PLAN_FIXED, 1, 0}, {PLAN_FIXED, 3, 0}};
	char ctx[64];
	size_t i, j;

	(void)state;
	for (i = 0; i < ARRAY_LEN(agree); i++) {
		assert_true(body_strict(agree[i], strlen(agree[i])));
		for (j = 0; j < ARRAY_LEN(plans); j++) {
			snprintf(ctx, sizeof(ctx), "agree[%zu] plan %zu", i, j);
			expect_same_as_reference(ctx, agree[i],
			                         strlen(agree[i]), &plans[j]);
		}
	}
}

/* Where the header says the two differ, on strict bodies. */
static void
test_documented_differences(void **state)
{
	static const char big_id[] =
	    "[{\"channel\":\"/topic/A\",\"data\":{\"event\":{\"replayId\":"
	    "99999999999999999999}}},{\"channel\":\"/topic/A\",\"data\":{"
	    "\"event\":{\"replayId\":-99999999999999999999}}}]";
	static const char *const nul_channels[] = {
	    "[{\"channel\":\"\\u0000/topic/T\"}]",
	    "[{\"channel\":\"/topic/T\\u0000x\",\"data\":{}}]",
	    "[{\"channel\":\"/meta/connect\\u0000\"}]",
	};
	struct split_run want = {0}, got = {0};
	char err[256];
	size_t i;

	(void)state;
	/* A replayId beyond int64/uint64: json-c clamps, the stream keeps
	 * the digits. */
	assert_true(body_strict(big_id, strlen(big_id)));
	assert_int_equal(
	    ref_decode(big_id, strlen(big_id), &want, err, sizeof(err)), 0);
	assert_int_equal(stream_decode(big_id, strlen(big_id), BIG_MAX,
	                               &plan_whole, &got, err, sizeof(err),
	                               NULL),
	                 0);
	assert_string_equal(want.v[0].ev.position, "18446744073709551615");
	assert_string_equal(got.v[0].ev.position, "99999999999999999999");
	assert_string_equal(want.v[1].ev.position, "-9223372036854775808");
	assert_string_equal(got.v[1].ev.position, "-99999999999999999999");
	/* Apart from the position the messages agree. */
	for (i = 0; i < 2; i++) {
		free((char *)(uintptr_t)want.v[i].ev.position);
		want.v[i].ev.position = split_xstrdup(got.v[i].ev.position);
	}
	expect_like_reference("big replayId", &want, &got);
	split_run_clear(&want);
	split_run_clear(&got);

	/* What came before a bad element has been delivered. */
	{
		static const char partly[] =
		    "[{\"channel\":\"/u/A\",\"data\":{\"event\":{\"replayId\":"
		    "1}}},{\"channel\":\"/meta/connect\",\"successful\":true},"
		    "{\"channel\":\"/u/A\",\"data\":[1,,2]}]";

		assert_int_equal(
		    ref_decode(partly, strlen(partly), &want, err, sizeof(err)),
		    -1);
		assert_int_equal(want.n, 0);
		assert_int_equal(stream_decode(partly, strlen(partly), BIG_MAX,
		                               &plan_whole, &got, err,
		                               sizeof(err), NULL),
		                 -1);
		assert_int_equal(got.n, 2);
		assert_string_equal(got.v[0].ev.position, "1");
		assert_int_equal(got.v[1].kind, BAYEUX_MSG_META);
		split_run_clear(&got);
	}

	/* As in bayeux_decode: a channel holding U+0000 fails the body. */
	for (i = 0; i < ARRAY_LEN(nul_channels); i++) {
		const char *b = nul_channels[i];

		assert_true(body_strict(b, strlen(b)));
		assert_int_equal(
		    ref_decode(b, strlen(b), &want, err, sizeof(err)), -1);
		assert_non_null(
		    strstr(err, "element 0: \"channel\" holds a NUL"));
		assert_int_equal(stream_decode(b, strlen(b), BIG_MAX,
		                               &plan_whole, &got, err,
		                               sizeof(err), NULL),
		                 -1);
		assert_non_null(
		    strstr(err, "element 0: \"channel\" holds a NUL"));
		assert_int_equal(got.n, 0);
	}
}

/* ---- replayId and created ------------------------------------------------ */

/* The replayId shapes of test_bayeux_msg.c, through both decoders. */
static const char *const replay_ids[] = {
    "1234",
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "\"1234\"",
    "\"-5\"",
    "\"007\"",
    "\"\"",
    "\"-\"",
    "\"--5\"",
    "\"12a\"",
    "\"+5\"",
    "\" 5\"",
    "\"5 \"",
    "\"1\\u00002\"",
    "\"\\u0661\\u0662\"",
    "\"\\u0031\\u0032\"",
    "1.5",
    "1e3",
    "-0.0",
    "true",
    "false",
    "null",
    "{}",
    "{\"value\":5}",
    "[1]",
    "-0",
};

static void
test_replay_id_shapes(void **state)
{
	char body[512];
	size_t i, j;

	(void)state;
	for (i = 0; i < ARRAY_LEN(replay_ids); i++) {
		snprintf(body, sizeof(body),
		         "[{\"channel\":\"/topic/AccountWatch\",\"data\":{"
		         "\"event\":{\"createdDate\":\"2025-11-26T19:27:53."
		         "000Z\",\"replayId\":%s,\"type\":\"updated\"},"
		         "\"sobject\":{\"Id\":\"001xx000003DGb2AAG\"}}}]",
		         replay_ids[i]);
		for (j = 0; j < ARRAY_LEN(plan_whole_bytes); j++)
			expect_same_as_reference(replay_ids[i], body,
			                         strlen(body),
			                         &plan_whole_bytes[j]);
	}
}

/* created for CDC, from commitTimestamp, against bayeux_decode: the edge
 * values of test_bayeux_msg.c and a sweep over 1600..2500. */
static void
test_cdc_created(void **state)
{
	static const char *const edges[] = {
	    "1764185273000",
	    "0",
	    "-1",
	    "999",
	    "-1000",
	    "-1001",
	    "951782400123",
	    "1583020799500",
	    "4102444799999",
	    "4107542400000",
	    "-2208988800000",
	    "-62167219200000",
	    "253402300799999",
	    "-62167219200001",
	    "253402300800000",
	    "9223372036854775807",
	    "-9223372036854775808",
	    "18446744073709551615",
	    "1764185273000.0",
	    "\"1764185273000\"",
	    "null",
	    "true",
	};
	const int64_t from = INT64_C(-11676096000000);
	const int64_t to = INT64_C(16725225600000);
	const int64_t step = INT64_C(97) * 86400000 + 3723001;
	char body[512], ts[32];
	int64_t ms;
	size_t i;
	int n = 0;

	(void)state;
	for (i = 0; i < ARRAY_LEN(edges); i++) {
		snprintf(body, sizeof(body),
		         "[{\"channel\":\"/data/AccountChangeEvent\",\"data\":{"
		         "\"payload\":{\"ChangeEventHeader\":{\"changeType\":"
		         "\"UPDATE\",\"commitTimestamp\":%s}},\"event\":{"
		         "\"replayId\":1}}}]",
		         edges[i]);
		expect_same_as_reference(edges[i], body, strlen(body),
		                         &plan_whole);
	}
	for (ms = from; ms <= to; ms += step) {
		snprintf(ts, sizeof(ts), "%" PRId64, ms);
		snprintf(body, sizeof(body),
		         "[{\"channel\":\"/data/X\",\"data\":{\"payload\":{"
		         "\"ChangeEventHeader\":{\"commitTimestamp\":%s}}}}]",
		         ts);
		expect_same_as_reference(ts, body, strlen(body), &plan_whole);
		n++;
	}
	assert_true(n > 3000);
}

/* ---- the payload is the original text ------------------------------------ */

static void
test_payload_is_raw_slice(void **state)
{
	static const char *const datas[] = {
	    "{ \"a\" : \"x\\u00e9\\/\" , \"b\":[1, 2.50 ,-0] }",
	    "\"just a string\"",
	    "[]",
	    "12.5e-3",
	    "{\"event\":{\"replayId\":\"7\"},\"k\":\"\\ud800\"}",
	    "false",
	};
	char body[512], err[256];
	size_t i, j;

	(void)state;
	for (i = 0; i < ARRAY_LEN(datas); i++) {
		snprintf(body, sizeof(body),
		         "[{\"channel\":\"/topic/T\",\"data\" : %s }]",
		         datas[i]);
		for (j = 0; j < ARRAY_LEN(plan_whole_bytes); j++) {
			struct split_run r = {0};

			assert_int_equal(stream_decode(body, strlen(body),
			                               BIG_MAX,
			                               &plan_whole_bytes[j], &r,
			                               err, sizeof(err), NULL),
			                 0);
			assert_int_equal(r.n, 1);
			assert_int_equal(r.v[0].ev.payload_len,
			                 strlen(datas[i]));
			assert_memory_equal(r.v[0].ev.payload, datas[i],
			                    strlen(datas[i]));
			split_run_clear(&r);
		}
	}
	/* No data, or null data: "{}". */
	for (i = 0; i < 2; i++) {
		const char *b = i == 0 ? "[{\"channel\":\"/topic/T\"}]"
		                       : "[{\"channel\":\"/topic/T\",\"data\":"
		                         "null}]";
		struct split_run r = {0};

		assert_int_equal(stream_decode(b, strlen(b), BIG_MAX,
		                               &plan_whole_bytes[0], &r, err,
		                               sizeof(err), NULL),
		                 0);
		assert_int_equal(r.v[0].ev.payload_len, 2);
		assert_memory_equal(r.v[0].ev.payload, "{}", 2);
		split_run_clear(&r);
	}
}

/* ---- nesting ------------------------------------------------------------ */

/* An event whose data nests `levels` arrays around `inner`; the body's
 * depth is levels + 2 (+1 when inner is a value). */
static char *
deep_body(size_t levels, const char *inner, size_t *len)
{
	static const char head[] = "[{\"channel\":\"/topic/Deep\",\"data\":";
	static const char tail[] = "}]";
	size_t hl = sizeof(head) - 1, tl = sizeof(tail) - 1;
	size_t il = strlen(inner);
	char *s = split_xmalloc(hl + 2 * levels + il + tl + 1);

	memcpy(s, head, hl);
	memset(s + hl, '[', levels);
	memcpy(s + hl + levels, inner, il);
	memset(s + hl + levels + il, ']', levels);
	memcpy(s + hl + 2 * levels + il, tail, tl + 1);
	*len = hl + 2 * levels + il + tl;
	return s;
}

static void
test_nesting_limit(void **state)
{
	static const struct {
		size_t levels;
		const char *inner;
		int ok;
	} cases[] = {
	    {62, "", 1},  /* 64 levels */
	    {61, "1", 1}, /* 63 containers and a scalar: 64 */
	    {63, "", 0},  /* 65 */
	    {62, "1", 0}, /* a scalar at level 65 */
	    {62, "\"s\"", 0}, {61, "{}", 1}, {62, "{}", 0},
	};
	char err[256], ctx[64];
	size_t i, j, len;
	char *s;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		s = deep_body(cases[i].levels, cases[i].inner, &len);
		for (j = 0; j < ARRAY_LEN(plan_whole_bytes); j++) {
			struct split_run r = {0};

			snprintf(ctx, sizeof(ctx), "%zu levels + \"%s\"",
			         cases[i].levels, cases[i].inner);
			expect_same_as_reference(ctx, s, len,
			                         &plan_whole_bytes[j]);
			expect_long(ctx, "rc", cases[i].ok ? 0 : -1,
			            stream_decode(s, len, BIG_MAX,
			                          &plan_whole_bytes[j], &r, err,
			                          sizeof(err), NULL));
			if (!cases[i].ok && strstr(err, "too deep") == NULL)
				fail_msg("%s: %s", ctx, err);
			split_run_clear(&r);
		}
		free(s);
	}
	/* 100,000 levels: refused at level 65, whole or cut. */
	s = deep_body(100000, "", &len);
	for (j = 0; j < ARRAY_LEN(plan_whole_bytes); j++) {
		struct split_run r = {0};
		size_t fed;

		assert_int_equal(stream_decode(s, len, BIG_MAX,
		                               &plan_whole_bytes[j], &r, err,
		                               sizeof(err), &fed),
		                 -1);
		assert_non_null(strstr(err, "too deep"));
		/* data's '[' number k is byte 32 + k, at level k + 2 */
		assert_non_null(strstr(err, "at byte 95"));
		if (plan_whole_bytes[j].kind == PLAN_FIXED)
			assert_int_equal(fed, 96);
		split_run_clear(&r);
	}
	free(s);
}

/* ---- callbacks and lifecycle -------------------------------------------- */

static void
test_callback_stop(void **state)
{
	size_t len, k;
	char *body = load_test_file(DATA_DIR, "batch_connect_first.json", &len);
	struct split_run r = {0};
	struct bayeux_stream *s;

	(void)state;
	for (k = 0; k <= len; k++) {
		s = bayeux_stream_new(BIG_MAX, record_cb, &r);
		assert_non_null(s);
		r.stop_at = 2;
		/* Cut anywhere: the stop comes with the second message. */
		if (bayeux_stream_feed(s, body, k) == 0)
			assert_int_equal(
			    bayeux_stream_feed(s, body + k, len - k), -1);
		assert_string_equal(bayeux_stream_errstr(s),
		                    "stopped by callback");
		assert_int_equal(bayeux_stream_count(s), 2);
		assert_int_equal(r.n, 2);
		assert_int_equal(bayeux_stream_feed(s, "]", 1), -1);
		assert_int_equal(bayeux_stream_finish(s), -1);
		assert_string_equal(bayeux_stream_errstr(s),
		                    "stopped by callback");

		/* A reset makes it whole again. */
		split_run_clear(&r);
		bayeux_stream_reset(s);
		assert_int_equal(bayeux_stream_count(s), 0);
		assert_string_equal(bayeux_stream_errstr(s), "");
		assert_int_equal(bayeux_stream_feed(s, body, len), 0);
		assert_int_equal(bayeux_stream_finish(s), 0);
		assert_int_equal(bayeux_stream_count(s), 4);
		assert_int_equal(r.n, 4);
		split_run_clear(&r);
		bayeux_stream_free(s);
	}
	/* Stopping on a meta reply, the first message. */
	s = bayeux_stream_new(BIG_MAX, record_cb, &r);
	r.stop_at = 1;
	assert_int_equal(bayeux_stream_feed(s, body, len), -1);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.v[0].kind, BAYEUX_MSG_META);
	split_run_clear(&r);
	bayeux_stream_free(s);
	free(body);
}

enum misdeed {
	MIS_FREE,
	MIS_FEED,
	MIS_FINISH,
	MIS_RESET,
};

struct misbehave {
	struct bayeux_stream *s;
	enum misdeed what;
	size_t calls;
	int inner_rc;
};

static int
misbehave_cb(void *arg, const struct bayeux_msg *m)
{
	struct misbehave *mb = arg;

	(void)m;
	mb->calls++;
	switch (mb->what) {
	case MIS_FREE:
		bayeux_stream_free(mb->s);
		break;
	case MIS_FEED:
		mb->inner_rc = bayeux_stream_feed(mb->s, "]", 1);
		break;
	case MIS_FINISH:
		mb->inner_rc = bayeux_stream_finish(mb->s);
		break;
	case MIS_RESET:
		bayeux_stream_reset(mb->s);
		mb->inner_rc = bayeux_stream_count(mb->s) == mb->calls ? 0 : 1;
		break;
	}
	return 0;
}

static void
test_callback_reentry(void **state)
{
	static const char body[] =
	    "[{\"channel\":\"/u/A\"},{\"channel\":\"/meta/connect\"},"
	    "{\"channel\":\"/u/B\"}]";
	struct misbehave mb;
	size_t k;

	(void)state;
	/* Freed from the callback, on an event and on a meta reply, whole
	 * or cut: feed returns -1 and nothing leaks (ASan, valgrind). */
	for (k = 0; k < 3; k++) {
		memset(&mb, 0, sizeof(mb));
		mb.what = MIS_FREE;
		mb.s = bayeux_stream_new(BIG_MAX, misbehave_cb, &mb);
		assert_non_null(mb.s);
		if (k == 0) {
			assert_int_equal(
			    bayeux_stream_feed(mb.s, body, sizeof(body) - 1),
			    -1);
		} else {
			/* k == 1: cut inside the 1st element; k == 2: the 2nd
			 */
			size_t cut = k == 1 ? 10 : 30;

			assert_int_equal(bayeux_stream_feed(mb.s, body, cut),
			                 k == 1 ? 0 : -1);
			if (k == 1)
				assert_int_equal(
				    bayeux_stream_feed(mb.s, body + cut,
				                       sizeof(body) - 1 - cut),
				    -1);
		}
		assert_int_equal(mb.calls, 1);
	}
	/* feed, finish and reset from inside are refused or ignored. */
	for (k = MIS_FEED; k <= MIS_RESET; k++) {
		memset(&mb, 0, sizeof(mb));
		mb.what = (enum misdeed)k;
		mb.s = bayeux_stream_new(BIG_MAX, misbehave_cb, &mb);
		assert_int_equal(
		    bayeux_stream_feed(mb.s, body, sizeof(body) - 1), 0);
		assert_int_equal(bayeux_stream_finish(mb.s), 0);
		assert_int_equal(mb.calls, 3);
		assert_int_equal(bayeux_stream_count(mb.s), 3);
		if (k == MIS_RESET)
			assert_int_equal(mb.inner_rc, 0);
		else
			assert_int_equal(mb.inner_rc, -1);
		bayeux_stream_free(mb.s);
	}
}

static void
test_reset_reuse(void **state)
{
	static const char body[] =
	    "[{\"channel\":\"/u/A\",\"data\":{\"k\":1}}]";
	static const char head[] = "[{\"channel\":\"/u/A\",\"data\":\"";
	struct split_run r = {0};
	struct bayeux_stream *s = bayeux_stream_new(BIG_MAX, record_cb, &r);
	size_t cap, i, big_len;
	char *big;

	(void)state;
	assert_non_null(s);
	assert_int_equal(bayeux_stream_buffer_capacity(s), 0);
	/* Cut, so the buffer is used. */
	assert_int_equal(bayeux_stream_feed(s, body, 10), 0);
	assert_int_equal(bayeux_stream_feed(s, body + 10, sizeof(body) - 11),
	                 0);
	assert_int_equal(bayeux_stream_finish(s), 0);
	cap = bayeux_stream_buffer_capacity(s);
	assert_true(cap > 0 && cap <= 64 * 1024);
	/* A reset mid-body drops the partial element; the buffers stay. */
	for (i = 0; i < 3; i++) {
		bayeux_stream_reset(s);
		assert_int_equal(bayeux_stream_count(s), 0);
		assert_int_equal(bayeux_stream_feed(s, body, 20), 0);
		bayeux_stream_reset(s);
		assert_int_equal(bayeux_stream_feed(s, body, sizeof(body) - 1),
		                 0);
		assert_int_equal(bayeux_stream_finish(s), 0);
		assert_int_equal(bayeux_stream_count(s), 1);
		assert_int_equal(bayeux_stream_buffer_capacity(s), cap);
	}
	/* After a 200 KiB element the reset lets the big buffer go. */
	big_len = 200 * 1024;
	big = split_xmalloc(big_len);
	memcpy(big, head, sizeof(head) - 1);
	memset(big + sizeof(head) - 1, 'z', big_len - sizeof(head) + 1 - 3);
	memcpy(big + big_len - 3, "\"}]", 3);
	bayeux_stream_reset(s);
	assert_int_equal(bayeux_stream_feed(s, big, 100), 0);
	assert_int_equal(bayeux_stream_feed(s, big + 100, big_len - 100), 0);
	assert_int_equal(bayeux_stream_finish(s), 0);
	assert_true(bayeux_stream_buffer_capacity(s) > 200 * 1024);
	bayeux_stream_reset(s);
	assert_true(bayeux_stream_buffer_capacity(s) <= 64 * 1024);
	/* And it still works. */
	assert_int_equal(bayeux_stream_feed(s, big, big_len), 0);
	assert_int_equal(bayeux_stream_finish(s), 0);
	assert_int_equal(r.n, 1 + 3 + 2);
	split_run_clear(&r);
	bayeux_stream_free(s);
	free(big);
}

static int
never_cb(void *arg, const struct bayeux_msg *m)
{
	(void)arg;
	(void)m;
	fail_msg("callback called");
	return -1;
}

static void
test_degenerate_args(void **state)
{
	struct bayeux_stream *s;

	(void)state;
	assert_null(bayeux_stream_new(0, never_cb, NULL));
	assert_null(bayeux_stream_new(100, NULL, NULL));
	assert_null(bayeux_stream_new(SIZE_MAX, never_cb, NULL));
	bayeux_stream_free(NULL);
	bayeux_stream_reset(NULL);
	assert_int_equal(bayeux_stream_feed(NULL, "[]", 2), -1);
	assert_int_equal(bayeux_stream_finish(NULL), -1);
	assert_int_equal(bayeux_stream_count(NULL), 0);
	assert_int_equal(bayeux_stream_buffer_capacity(NULL), 0);
	assert_non_null(bayeux_stream_errstr(NULL));

	s = bayeux_stream_new(1, never_cb, NULL);
	assert_non_null(s);
	/* Empty chunks are fine, anywhere. */
	assert_int_equal(bayeux_stream_feed(s, NULL, 0), 0);
	assert_int_equal(bayeux_stream_feed(s, " [", 2), 0);
	assert_int_equal(bayeux_stream_feed(s, "", 0), 0);
	assert_int_equal(bayeux_stream_feed(s, " ] \n", 4), 0);
	assert_int_equal(bayeux_stream_finish(s), 0);
	/* finish is a check: asking twice is fine. */
	assert_int_equal(bayeux_stream_finish(s), 0);
	assert_int_equal(bayeux_stream_feed(s, "\t", 1), 0);
	assert_int_equal(bayeux_stream_finish(s), 0);
	/* NULL data with a length. */
	assert_int_equal(bayeux_stream_feed(s, NULL, 3), -1);
	assert_string_equal(bayeux_stream_errstr(s), "no data");
	/* max_msg_bytes 1: no element fits. */
	bayeux_stream_reset(s);
	assert_int_equal(bayeux_stream_feed(s, "[{}]", 4), -1);
	assert_non_null(strstr(bayeux_stream_errstr(s), "max_msg_bytes (1)"));
	bayeux_stream_free(s);
}

static void
test_empty_bodies(void **state)
{
	static const char *const bodies[] = {"[]", " [ ] \n", "\r\n[\n]\r\n"};
	char err[64];
	size_t i, j;

	(void)state;
	for (i = 0; i < ARRAY_LEN(bodies); i++) {
		for (j = 0; j < ARRAY_LEN(plan_whole_bytes); j++) {
			struct split_run r = {0};

			assert_int_equal(stream_decode(bodies[i],
			                               strlen(bodies[i]), 1,
			                               &plan_whole_bytes[j], &r,
			                               err, sizeof(err), NULL),
			                 0);
			assert_int_equal(r.n, 0);
		}
	}
}

/* Error texts name the byte, counted across chunks. */
static void
test_error_offsets(void **state)
{
	static const struct {
		const char *body;
		const char *want;
	} cases[] = {
	    {"[{\"channel\":\"/u/A\"},{\"channel\":\"/u/B\",\"data\":[1,,2]}]",
	     "invalid JSON at byte 48: unexpected character"},
	    {"[{\"channel\":\"/u/A\",\"data\":\"a\tb\"}]",
	     "invalid JSON at byte 28: unescaped control character in string"},
	    {"  x", "invalid JSON at byte 2: unexpected character"},
	    {"[{\"channel\":\"/u/A\"}] ,", "invalid JSON at byte 21: trailing "
	                                   "data"},
	    {"[{\"channel\":\"/u/A\",\"data\":01}]",
	     "invalid JSON at byte 27: invalid number"},
	    {"[{\"channel\":\"/u/A\",\"data\":NaN}]",
	     "invalid JSON at byte 26: NaN and Infinity are not JSON"},
	    {"[{\"channel\":\"/u/A\",\"data\":{'k':1}}]",
	     "invalid JSON at byte 27: object key is not a double-quoted "
	     "string"},
	    {"[{\"channel\":\"/u/A\",\"data\":{\"k\":1,}}]",
	     "invalid JSON at byte 33: trailing comma in object"},
	    {"[{\"channel\":\"/u/A\"},]",
	     "invalid JSON at byte 20: trailing comma in array"},
	    {"[ 7 ]", "element 0 is not a JSON object (byte 2)"},
	};
	const struct plan plans[] = {
	    {PLAN_WHOLE, 0, 0}, {PLAN_FIXED, 1, 0}, {PLAN_FIXED, 5, 0}};
	char err[256];
	size_t i, j;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		for (j = 0; j < ARRAY_LEN(plans); j++) {
			struct split_run r = {0};

			assert_int_equal(stream_decode(cases[i].body,
			                               strlen(cases[i].body),
			                               BIG_MAX, &plans[j], &r,
			                               err, sizeof(err), NULL),
			                 -1);
			expect_str(cases[i].body, "error", cases[i].want, err);
			split_run_clear(&r);
		}
	}
}

/* ---- the string scan at every offset ------------------------------------- */

/*
 * The decoder looks for the end of a string 16 or 8 bytes a step, then
 * byte by byte for the rest. A stop byte ('"', '\\', a control byte)
 * must be found wherever it falls against those steps, and bytes the
 * step tests sit next to (0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80 and
 * up) must never stop it. Each case puts one such byte at offset 0..40
 * of a string with 0..33 plain bytes after it, both in a field the
 * decoder extracts (PushTopic "type") and in a payload string.
 */

/* Plain bytes, the neighbours of the stop bytes among them. */
static const char scan_filler[] = "ab !#[]~{}Z09-xy";

struct scan_special {
	const char *text;    /* as it stands in the JSON text */
	const char *decoded; /* what the extracted field must hold */
};

static size_t
scan_fill(char *out, size_t from, size_t n)
{
	size_t k;

	for (k = 0; k < n; k++)
		out[k] = scan_filler[(from + k) % (sizeof(scan_filler) - 1)];
	return n;
}

/* "prefix <special> tail" in text and in decoded form; returns the text
 * length. */
static size_t
scan_value(char *text, char *decoded, size_t off, size_t tail,
           const struct scan_special *sp)
{
	size_t t = 0, d = 0;

	t += scan_fill(text + t, 0, off);
	d += scan_fill(decoded + d, 0, off);
	memcpy(text + t, sp->text, strlen(sp->text));
	t += strlen(sp->text);
	memcpy(decoded + d, sp->decoded, strlen(sp->decoded));
	d += strlen(sp->decoded);
	t += scan_fill(text + t, off + 1, tail);
	d += scan_fill(decoded + d, off + 1, tail);
	text[t] = '\0';
	decoded[d] = '\0';
	return t;
}

#define SCAN_PREFIX "[{\"channel\":\"/topic/T\",\"data\":"
#define SCAN_EVENT                                                             \
	"{\"event\":{\"createdDate\":\"2025-11-26T19:00:00.000Z\","          \
	"\"replayId\":7,\"type\":\""
#define SCAN_MID "\"},\"sobject\":{\"Description\":\""
#define SCAN_END "\",\"N\":1}}}]"

static size_t
scan_put(char *body, size_t at, const char *s, size_t n)
{
	assert_true(at + n < 512);
	memcpy(body + at, s, n);
	return at + n;
}

/* The body (512 bytes) around the value (which may hold a NUL);
 * *data_off / *data_len locate "data", *val_off the first copy of the
 * value. Returns the body's length. */
static size_t
scan_body(char *body, const char *value, size_t vlen, size_t *data_off,
          size_t *data_len, size_t *val_off)
{
	size_t n = 0;

	n = scan_put(body, n, SCAN_PREFIX, strlen(SCAN_PREFIX));
	*data_off = n;
	n = scan_put(body, n, SCAN_EVENT, strlen(SCAN_EVENT));
	*val_off = n;
	n = scan_put(body, n, value, vlen);
	n = scan_put(body, n, SCAN_MID, strlen(SCAN_MID));
	n = scan_put(body, n, value, vlen);
	n = scan_put(body, n, SCAN_END, strlen(SCAN_END));
	*data_len = n - *data_off - 2; /* without "}]" */
	body[n] = '\0';
	return n;
}

static void
test_string_scan_every_offset(void **state)
{
	static const struct scan_special ok[] = {
	    {"\\\"", "\""},   {"\\\\", "\\"},         {"\\n", "\n"},
	    {"\\u001f", "\x1f"}, {"\\/", "/"},        {" ", " "},
	    {"\x7f", "\x7f"}, {"\x80", "\x80"},       {"\xff", "\xff"},
	    {"\xc3\xa9", "\xc3\xa9"}, {"\xe2\x82\xac", "\xe2\x82\xac"},
	};
	static const char raw_ctl[] = {0x00, 0x01, 0x09, 0x0a, 0x1f};
	static const size_t tails[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 24, 33};
	char text[128], decoded[128], body[512], err[256], want[256];
	char ctx[96];
	size_t i, k, off, t, len, data_off, data_len, val_off;

	(void)state;
	for (i = 0; i < ARRAY_LEN(ok); i++) {
		for (off = 0; off <= 40; off++) {
			for (t = 0; t < ARRAY_LEN(tails); t++) {
				struct split_run r = {0};

				len = scan_value(text, decoded, off, tails[t],
				                 &ok[i]);
				len = scan_body(body, text, len, &data_off,
				                &data_len, &val_off);
				snprintf(ctx, sizeof(ctx),
				         "special %zu at %zu, tail %zu", i, off,
				         tails[t]);
				if (stream_decode(body, len, BIG_MAX,
				                  &plan_whole, &r, err,
				                  sizeof(err), NULL) != 0)
					fail_msg("%s: refused: %s", ctx, err);
				expect_long(ctx, "count", 1, (long)r.n);
				expect_str(ctx, "event_type", decoded,
				           r.v[0].ev.event_type);
				expect_str(ctx, "position", "7",
				           r.v[0].ev.position);
				if (r.v[0].ev.payload_len != data_len ||
				    memcmp(r.v[0].ev.payload, body + data_off,
				           data_len) != 0)
					fail_msg("%s: payload is not the data "
					         "text",
					         ctx);
				expect_same_as_reference(ctx, body, len,
				                         &plan_whole);
				/* Cut one byte before, at and after the
				 * special byte, and byte by byte. */
				for (k = 0; k < 4; k++) {
					const struct plan cut[] = {
					    {PLAN_SPLIT, val_off + off, 0},
					    {PLAN_SPLIT, val_off + off + 1, 0},
					    {PLAN_SPLIT, val_off + off + 2, 0},
					    {PLAN_FIXED, 1, 0},
					};

					expect_cut_alike(ctx, body, len,
					                 BIG_MAX, &cut[k], &r);
				}
				split_run_clear(&r);
			}
		}
	}
	/* A raw control byte is refused exactly where it stands. */
	for (i = 0; i < ARRAY_LEN(raw_ctl); i++) {
		const struct scan_special sp = {"?", "?"};

		for (off = 0; off <= 40; off++) {
			for (t = 0; t < ARRAY_LEN(tails); t++) {

				len = scan_value(text, decoded, off, tails[t],
				                 &sp);
				text[off] = raw_ctl[i]; /* may be a NUL */
				len = scan_body(body, text, len, &data_off,
				                &data_len, &val_off);
				snprintf(want, sizeof(want),
				         "invalid JSON at byte %zu: unescaped "
				         "control character in string",
				         val_off + off);
				snprintf(ctx, sizeof(ctx),
				         "raw 0x%02x at %zu, tail %zu",
				         (unsigned)raw_ctl[i], off, tails[t]);
				for (k = 0; k < ARRAY_LEN(plan_whole_bytes);
				     k++) {
					struct split_run r = {0};

					if (stream_decode(body, len, BIG_MAX,
					                  &plan_whole_bytes[k],
					                  &r, err, sizeof(err),
					                  NULL) == 0)
						fail_msg("%s: accepted", ctx);
					expect_str(ctx, "error", want, err);
					expect_long(ctx, "count", 0,
					            (long)r.n);
					split_run_clear(&r);
				}
			}
		}
	}
}

/* ---- the fast element scan --------------------------------------------- */

/*
 * Each element is first offered to a fast scan that searches strings 16
 * bytes a step from each string's first byte (byte by byte in the last
 * 15 bytes of the chunk) and reads the byte after a string without an
 * end check; whatever it does not take (an escape, a control byte, an
 * error, the end of the bytes, deep nesting) is scanned again by the
 * reference scanner from the element's first byte. The cases below put
 * strings, quotes, whitespace, chunk ends and escapes at every offset
 * against those 16-byte steps and against the end of the chunk. Each
 * must give the reference's outcome: the messages bayeux_decode gives,
 * the exact error text, the same result however the body is cut (a cut
 * element is scanned in the buffer, whose end is the element's), and a
 * payload tape that formats to the line the payload text formats to.
 */

#define FAST_LINE_MAX 16384

struct tape_seen {
	size_t taped; /* events that came with a tape */
	char a[FAST_LINE_MAX];
	char b[FAST_LINE_MAX];
};

/* A split_run hook: an event's line from its tape is, byte for byte,
 * the line from its text, in both formats. */
static const char *
tape_line_check(void *arg, const struct bayeux_msg *m)
{
	static const enum format_kind kinds[] = {FORMAT_LOGFMT, FORMAT_JSON};
	struct tape_seen *ts = arg;
	struct event text_only;
	size_t i, la, lb;
	int ra, rb;

	if (m->kind != BAYEUX_MSG_EVENT || m->ev.tape == NULL)
		return NULL;
	ts->taped++;
	text_only = m->ev;
	text_only.tape = NULL;
	for (i = 0; i < ARRAY_LEN(kinds); i++) {
		ra = format_event_mem(kinds[i], &m->ev, ts->a, sizeof(ts->a),
		                      &la);
		rb = format_event_mem(kinds[i], &text_only, ts->b,
		                      sizeof(ts->b), &lb);
		if (ra != 0 || rb != 0)
			return "an event line does not format";
		if (la != lb || memcmp(ts->a, ts->b, la) != 0)
			return "the line from the tape is not the line from "
			       "the text";
	}
	return NULL;
}

/*
 * The checks of every case: the body whole gives want_n messages (each
 * event with a tape that formats right) and agrees with bayeux_decode,
 * or fails with exactly want_err; cut in 1-byte chunks and at each of
 * cuts[0..ncuts) it gives the very same.
 */
static void
fast_case(const char *ctx, const char *body, size_t len, const char *want_err,
          size_t want_n, const size_t *cuts, size_t ncuts)
{
	struct split_run r = {0};
	struct tape_seen *ts = split_xmalloc(sizeof(*ts));
	char err[256];
	size_t i;
	int rc;

	ts->taped = 0;
	r.hook = tape_line_check;
	r.hook_arg = ts;
	rc = stream_decode(body, len, BIG_MAX, &plan_whole, &r, err,
	                   sizeof(err), NULL);
	if (want_err == NULL) {
		if (rc != 0)
			fail_msg("%s: refused: %s", ctx, err);
		expect_long(ctx, "count", (long)want_n, (long)r.n);
		expect_long(ctx, "taped", (long)want_n, (long)ts->taped);
		expect_same_as_reference(ctx, body, len, &plan_whole);
	} else {
		if (rc == 0)
			fail_msg("%s: accepted", ctx);
		expect_str(ctx, "error", want_err, err);
		expect_long(ctx, "count", (long)want_n, (long)r.n);
	}
	expect_cut_alike(ctx, body, len, BIG_MAX, &plan_bytes, &r);
	for (i = 0; i < ncuts; i++) {
		const struct plan cut = {PLAN_SPLIT, cuts[i], 0};

		if (cuts[i] > 0 && cuts[i] < len)
			expect_cut_alike(ctx, body, len, BIG_MAX, &cut, &r);
	}
	split_run_clear(&r);
	free(ts);
}

/* Cut points every 64 bytes of the element at body offset elem (one
 * before, at, one after) and in the last 4 bytes before len; returns
 * how many (at most max). With the strings shifted one byte a case, they
 * put the chunk's end at every offset of the strings. */
static size_t
fast_cuts(size_t elem, size_t len, size_t *cuts, size_t max)
{
	size_t n = 0, e;

	for (e = elem; e < len && n + 3 <= max; e += 64) {
		cuts[n++] = e - 1;
		cuts[n++] = e;
		cuts[n++] = e + 1;
	}
	for (e = 4; e > 0 && n < max; e--)
		cuts[n++] = len - e;
	return n;
}

/* Appends s to body at *n (room checked against cap). */
static void
fast_put(char *body, size_t *n, size_t cap, const char *s, size_t sl)
{
	assert_true(*n + sl < cap);
	memcpy(body + *n, s, sl);
	*n += sl;
	body[*n] = '\0';
}

static void
fast_puts(char *body, size_t *n, size_t cap, const char *s)
{
	fast_put(body, n, cap, s, strlen(s));
}

#define FAST_EV_HEAD                                                           \
	"{\"channel\":\"/topic/T\",\"data\":{\"event\":{\"createdDate\":"      \
	"\"2025-11-26T19:00:00.000Z\",\"replayId\":7,\"type\":\"updated\"},"   \
	"\"sobject\":{\"A\":\""
#define FAST_EV_TAIL                                                           \
	"\",\"Name\":\"Acme Corp\",\"B\":\"x y=z\",\"N\":12345,"               \
	"\"F\":-1.5e3,\"T\":true,\"U\":null,\"L\":[1,\"two\",{},[]],"          \
	"\"E\":\"\",\"Z\":false}}}"

/* One PushTopic event whose first sobject string is pad bytes long. */
static void
fast_event(char *body, size_t *n, size_t cap, size_t pad)
{
	size_t i;

	fast_puts(body, n, cap, FAST_EV_HEAD);
	for (i = 0; i < pad; i++)
		fast_put(body, n, cap, &"abcdefghij-KLMNOP_0123"[i % 22], 1);
	fast_puts(body, n, cap, FAST_EV_TAIL);
}

/*
 * Two events whose strings are shifted one byte at a time, 141 times:
 * every quote, key and value end falls at every offset of a 16-byte
 * step, and (with the cuts) on, before and after the end of a chunk;
 * the elements end at every offset of a step, exactly at its end too.
 */
static void
test_fast_string_steps(void **state)
{
	char body[1024], ctx[64];
	size_t cuts[40], pad, n, nc, second;

	(void)state;
	for (pad = 0; pad <= 140; pad++) {
		n = 0;
		fast_puts(body, &n, sizeof(body), "[");
		fast_event(body, &n, sizeof(body), pad);
		fast_puts(body, &n, sizeof(body), ",");
		second = n;
		fast_event(body, &n, sizeof(body), 140 - pad);
		fast_puts(body, &n, sizeof(body), "]");
		nc = fast_cuts(1, second, cuts, ARRAY_LEN(cuts));
		nc += fast_cuts(second, n, cuts + nc, ARRAY_LEN(cuts) - nc);
		snprintf(ctx, sizeof(ctx), "pad %zu", pad);
		fast_case(ctx, body, n, NULL, 2, cuts, nc);
	}
}

/*
 * Scalars last in their object, cut at every byte: a number or literal
 * at the very end of a chunk must wait for the next one.
 */
static void
test_fast_chunk_end(void **state)
{
	static const char *const last[] = {
	    "12345", "-0",    "0.5",  "-1.5e-7", "1E+2",
	    "true",  "false", "null", "\"s\"",   "[]",
	};
	char body[256], ctx[64];
	size_t cuts[256], i, k, n;

	(void)state;
	for (i = 0; i < ARRAY_LEN(last); i++) {
		n = 0;
		fast_puts(body, &n, sizeof(body),
		          "[{\"channel\":\"/topic/T\",\"data\":{\"N\":");
		fast_puts(body, &n, sizeof(body), last[i]);
		fast_puts(body, &n, sizeof(body), "}},{\"data\":{\"M\":");
		fast_puts(body, &n, sizeof(body), last[i]);
		fast_puts(body, &n, sizeof(body),
		          "},\"channel\":\"/topic/T\"}]");
		for (k = 0; k < n && k < ARRAY_LEN(cuts); k++)
			cuts[k] = k;
		snprintf(ctx, sizeof(ctx), "last %s", last[i]);
		fast_case(ctx, body, n, NULL, 2, cuts, k);
	}
}

/* The tokens of an event; whitespace goes between them. */
static const char *const fast_tokens[] = {
    "{",     "\"channel\"", ":",    "\"/topic/T\"",
    ",",     "\"data\"",    ":",    "{",
    "\"k\"", ":",           "[",    "1",
    ",",     "true",        ",",    "\"v\"",
    ",",     "{",           "}",    ",",
    "[",     "]",           "]",    ",",
    "\"o\"", ":",           "{",    "\"x\"",
    ":",     "-2.5",        "}",    ",",
    "\"n\"", ":",           "null", "}",
    "}",
};

/*
 * Whitespace of every kind between every two tokens, one place at a
 * time and everywhere at once: the fast scan looks for it only where the
 * expected byte is not.
 */
static void
test_fast_whitespace(void **state)
{
	static const char *const ws[] = {" ", "\t", "\r\n", " \n\t\r  "};
	char body[512], ctx[64];
	size_t cuts[40], g, w, t, n, nc;

	(void)state;
	for (w = 0; w < ARRAY_LEN(ws); w++) {
		/* g == ARRAY_LEN(fast_tokens): everywhere. */
		for (g = 0; g <= ARRAY_LEN(fast_tokens); g++) {
			n = 0;
			fast_puts(body, &n, sizeof(body), "[");
			for (t = 0; t < ARRAY_LEN(fast_tokens); t++) {
				fast_puts(body, &n, sizeof(body),
				          fast_tokens[t]);
				if (t + 1 < ARRAY_LEN(fast_tokens) &&
				    (g == t || g == ARRAY_LEN(fast_tokens)))
					fast_puts(body, &n, sizeof(body),
					          ws[w]);
			}
			fast_puts(body, &n, sizeof(body), "]");
			nc = fast_cuts(1, n, cuts, ARRAY_LEN(cuts));
			snprintf(ctx, sizeof(ctx), "ws %zu after token %zu", w,
			         g);
			fast_case(ctx, body, n, NULL, 1, cuts, nc);
		}
	}
}

/*
 * What the fast scan hands over, at every offset of a string up to 160
 * bytes long: escapes (in a value, in a key, in the channel)
 * are taken by the reference; raw control bytes are refused where they
 * stand; DEL, bytes of 0x80 and up, ' ' and '=' are text, and the
 * payload's tape must carry their classes.
 */
static void
test_fast_handover(void **state)
{
	static const struct {
		const char *text;
		int ok;
	} special[] = {
	    {"\\n", 1},
	    {"\\\"", 1},
	    {"\\\\", 1},
	    {"\\u00e9", 1},
	    {"\\ud83d\\ude00", 1},
	    {"\x7f", 1},
	    {"\xc3\xa9", 1},
	    {"\xff", 1},
	    {" ", 1},
	    {"=", 1},
	    {"~", 1},
	    {"\x01", 0},
	    {"\x1f", 0},
	    {"\t", 0},
	    {"\n", 0},
	};
	static const char *const where[] = {
	    /* before, after: the special goes at offset off of a string */
	    "[{\"channel\":\"/topic/T\",\"data\":{\"D\":\"", "\",\"N\":1}}]",
	    "[{\"channel\":\"/topic/T\",\"data\":{\"",       "\":1,\"N\":2}}]",
	    "[{\"data\":{\"N\":1},\"channel\":\"/topic/T",   "\"}]",
	};
	char body[512], ctx[96], want[128];
	size_t cuts[40], i, j, off, n, nc, at, k;

	(void)state;
	for (i = 0; i < ARRAY_LEN(special); i++) {
		for (j = 0; j < ARRAY_LEN(where); j += 2) {
			for (off = 0; off <= 140; off++) {
				n = 0;
				fast_puts(body, &n, sizeof(body), where[j]);
				for (k = 0; k < off; k++)
					fast_put(body, &n, sizeof(body),
					         &"pqrs-tuv_wxyz"[k % 13], 1);
				at = n;
				fast_puts(body, &n, sizeof(body),
				          special[i].text);
				for (k = 0; k < 20; k++)
					fast_put(body, &n, sizeof(body),
					         &"ABCDEFG"[k % 7], 1);
				fast_puts(body, &n, sizeof(body), where[j + 1]);
				nc = fast_cuts(1, n, cuts, ARRAY_LEN(cuts));
				snprintf(ctx, sizeof(ctx),
				         "special %zu in place %zu at %zu", i,
				         j / 2, off);
				if (special[i].ok) {
					fast_case(ctx, body, n, NULL, 1, cuts,
					          nc);
					continue;
				}
				snprintf(want, sizeof(want),
				         "invalid JSON at byte %zu: unescaped "
				         "control character in string",
				         at);
				fast_case(ctx, body, n, want, 0, cuts, nc);
			}
		}
	}
}

/*
 * Objects nested in data up to and past the limit: the fast scan gives
 * up a level early, so the last levels are the reference's to judge.
 * The element is level 2 and data level 3; the k objects nested in it
 * reach level 3 + k, a member value inside the last one 4 + k.
 */
static void
test_fast_deep_objects(void **state)
{
	char body[1024], ctx[64], want[128];
	size_t k, i, n, at, lvl;
	int scalar;

	(void)state;
	for (scalar = 0; scalar <= 1; scalar++) {
		for (k = 58; k <= 63; k++) {
			n = 0;
			at = 0;
			fast_puts(body, &n, sizeof(body),
			          "[{\"channel\":\"/topic/T\",\"data\":{");
			for (i = 0; i < k; i++) {
				fast_puts(body, &n, sizeof(body), "\"a\":");
				lvl = 4 + i;
				if (lvl == 65)
					at = n;
				fast_puts(body, &n, sizeof(body), "{");
			}
			if (scalar) {
				fast_puts(body, &n, sizeof(body), "\"s\":");
				if (4 + k == 65)
					at = n;
				fast_puts(body, &n, sizeof(body), "1");
			}
			for (i = 0; i < k + 2; i++)
				fast_puts(body, &n, sizeof(body), "}");
			fast_puts(body, &n, sizeof(body), "]");
			snprintf(ctx, sizeof(ctx), "%zu objects%s", k,
			         scalar ? " and a scalar" : "");
			if (3 + k + (size_t)scalar <= 64) {
				fast_case(ctx, body, n, NULL, 1, NULL, 0);
				continue;
			}
			snprintf(want, sizeof(want),
			         "invalid JSON at byte %zu: nesting too deep",
			         at);
			fast_case(ctx, body, n, want, 0, NULL, 0);
		}
	}
}

/*
 * The fast scan matches the wanted keys by length and word compares, the
 * reference by memcmp(). Each wanted key is followed in its object by a
 * key of the same length differing in one byte (every byte in turn), by
 * its prefix one byte shorter and by itself one byte longer, each with a
 * value that would change the message if it were taken for the key; the
 * key itself in that place is the control: being last, it must win. A
 * case also puts the wanted keys inside an array inside the searched
 * object, where they are not searched for.
 */
struct lookalike {
	const char *key;
	const char *fmt;  /* the body, '@' where the second key goes */
	const char *what; /* the message field the wanted key gives */
};

#define LK_TOPIC "[{\"channel\":\"/topic/T\",\"data\":"
#define LK_EVENT                                                               \
	"\"event\":{\"replayId\":7,\"createdDate\":"                           \
	"\"2025-11-26T19:00:00.000Z\",\"type\":\"updated\""
#define LK_CDC                                                                 \
	"[{\"channel\":\"/data/AccountChangeEvent\",\"data\":{\"event\":{"     \
	"\"replayId\":7},\"payload\":{\"ChangeEventHeader\":{"                 \
	"\"commitTimestamp\":1764183600000,\"changeType\":\"UPDATE\""

static const struct lookalike lookalikes[] = {
    {"channel",
     "[{\"channel\":\"/topic/T\",\"data\":{" LK_EVENT "}},"
     "\"@\":\"/topic/Wrong\"}]",
     "channel"},
    {"data",
     LK_TOPIC "{" LK_EVENT "}},\"@\":{\"event\":{\"replayId\":9}}}]",
     "position"},
    {"event",
     LK_TOPIC "{" LK_EVENT "},\"@\":{\"replayId\":9,\"type\":\"deleted\"}}}]",
     "position"},
    {"replayId", LK_TOPIC "{" LK_EVENT ",\"@\":9}}}]", "position"},
    {"createdDate",
     LK_TOPIC "{" LK_EVENT ",\"@\":\"2020-01-01T00:00:00.000Z\"}}}]",
     "created"},
    {"type", LK_TOPIC "{" LK_EVENT ",\"@\":\"deleted\"}}}]", "event_type"},
    {"payload",
     "[{\"channel\":\"/event/E__e\",\"data\":{\"event\":{\"replayId\":7},"
     "\"payload\":{\"CreatedDate\":\"2025-11-26T19:00:00.000Z\"},"
     "\"@\":{\"CreatedDate\":\"2020-01-01T00:00:00.000Z\"}}}]",
     "created"},
    {"CreatedDate",
     "[{\"channel\":\"/event/E__e\",\"data\":{\"event\":{\"replayId\":7},"
     "\"payload\":{\"CreatedDate\":\"2025-11-26T19:00:00.000Z\","
     "\"@\":\"2020-01-01T00:00:00.000Z\"}}}]",
     "created"},
    {"ChangeEventHeader",
     LK_CDC "},\"@\":{\"commitTimestamp\":1577836800000,"
            "\"changeType\":\"DELETE\"}}}}]",
     "event_type"},
    {"commitTimestamp", LK_CDC ",\"@\":1577836800000}}}}]", "created"},
    {"changeType", LK_CDC ",\"@\":\"DELETE\"}}}}]", "event_type"},
};

/* fmt with key for its '@' into out (room checked). */
static void
lookalike_body(char *out, size_t cap, const char *fmt, const char *key)
{
	const char *at = strchr(fmt, '@');

	assert_non_null(at);
	assert_true(strlen(fmt) + strlen(key) < cap);
	memcpy(out, fmt, (size_t)(at - fmt));
	out += at - fmt;
	memcpy(out, key, strlen(key));
	out += strlen(key);
	memcpy(out, at + 1, strlen(at + 1) + 1);
}

/* The field of m that what names (struct lookalike). */
static const char *
lookalike_field(const struct bayeux_msg *m, const char *what)
{
	const char *v = NULL;

	if (strcmp(what, "channel") == 0)
		v = m->ev.channel;
	else if (strcmp(what, "position") == 0)
		v = m->ev.position;
	else if (strcmp(what, "created") == 0)
		v = m->ev.created;
	else if (strcmp(what, "event_type") == 0)
		v = m->ev.event_type;
	return v != NULL ? v : "(null)";
}

/* The one event of body, decoded whole: its field what, into out. */
static void
lookalike_decode(const char *ctx, const char *body, const char *what,
                 char *out, size_t cap)
{
	struct split_run r = {0};
	char err[256];

	if (stream_decode(body, strlen(body), BIG_MAX, &plan_whole, &r, err,
	                  sizeof(err), NULL) != 0)
		fail_msg("%s: refused: %s", ctx, err);
	expect_long(ctx, "count", 1, (long)r.n);
	snprintf(out, cap, "%s", lookalike_field(&r.v[0], what));
	split_run_clear(&r);
}

static void
test_fast_key_lookalikes(void **state)
{
	char body[1024], ctx[96], key[32], base[64], got[64];
	size_t i, k, len, v;

	(void)state;
	for (i = 0; i < ARRAY_LEN(lookalikes); i++) {
		const struct lookalike *lk = &lookalikes[i];

		len = strlen(lk->key);
		/* The value the wanted key gives, with a key no wanted key
		 * is like in the second place. */
		lookalike_body(body, sizeof(body), lk->fmt, "q");
		lookalike_decode(lk->key, body, lk->what, base, sizeof(base));
		/* v < len: byte v changed; len: one shorter; len + 1: one
		 * longer; len + 2: the key itself. */
		for (v = 0; v <= len + 2; v++) {
			snprintf(key, sizeof(key), "%s", lk->key);
			if (v < len)
				key[v] = key[v] == 'X' ? 'Y' : 'X';
			else if (v == len)
				key[len - 1] = '\0';
			else if (v == len + 1)
				snprintf(key + len, sizeof(key) - len, "s");
			lookalike_body(body, sizeof(body), lk->fmt, key);
			snprintf(ctx, sizeof(ctx), "%s as %s", lk->key, key);
			fast_case(ctx, body, strlen(body), NULL, 1, NULL, 0);
			lookalike_decode(ctx, body, lk->what, got,
			                 sizeof(got));
			if (v < len + 2 && strcmp(got, base) != 0)
				fail_msg("%s: %s is \"%s\", not \"%s\"", ctx,
				         lk->what, got, base);
			if (v == len + 2 && strcmp(got, base) == 0)
				fail_msg("%s: the later %s was not taken", ctx,
				         lk->key);
		}
	}
	/* Wanted keys inside an array inside a searched object. */
	for (k = 0; k < 2; k++) {
		snprintf(body, sizeof(body),
		         LK_TOPIC "{\"event\":{\"replayId\":7,\"x\":[%s{"
		         "\"replayId\":9,\"type\":\"deleted\"}]}}}]",
		         k ? "1," : "");
		fast_case("keys in an array", body, strlen(body), NULL, 1,
		          NULL, 0);
		lookalike_decode("keys in an array", body, "position", got,
		                 sizeof(got));
		expect_str("keys in an array", "position", "7", got);
	}
}

/* Appends count members "m<i>":<value>, comma-separated. */
static void
fast_members(char *body, size_t *n, size_t cap, size_t count,
             const char *value)
{
	char key[32];
	size_t i;

	for (i = 0; i < count; i++) {
		snprintf(key, sizeof(key), "%s\"m%zu\":", i ? "," : "", i);
		fast_puts(body, n, cap, key);
		fast_puts(body, n, cap, value);
	}
}

/* A split_run hook: counts the events that came with a tape. */
static const char *
tape_count(void *arg, const struct bayeux_msg *m)
{
	if (m->kind == BAYEUX_MSG_EVENT && m->ev.tape != NULL)
		(*(size_t *)arg)++;
	return NULL;
}

/* Events of body, decoded whole, that came with a tape; the messages
 * must also be bayeux_decode()'s. */
static size_t
taped_events(const char *ctx, const char *body, size_t len, size_t want_n)
{
	struct split_run r = {0};
	char err[256];
	size_t taped = 0;

	r.hook = tape_count;
	r.hook_arg = &taped;
	if (stream_decode(body, len, BIG_MAX, &plan_whole, &r, err,
	                  sizeof(err), NULL) != 0)
		fail_msg("%s: refused: %s", ctx, err);
	expect_long(ctx, "count", (long)want_n, (long)r.n);
	expect_same_as_reference(ctx, body, len, &plan_whole);
	split_run_clear(&r);
	return taped;
}

/*
 * The payload tape through its growth steps (256 tokens first, doubled
 * while needed) and past its limit (16384 tokens: then no tape, the
 * payload is formatted from its text), with many tokens outside the
 * payload too (before and after it, where the fast scan writes them to
 * a small scratch area that wraps around), a repeated "data" (the last
 * one is the payload) and a stream reused for a smaller event after a
 * larger one.
 */
static void
test_fast_tape_growth(void **state)
{
	static const size_t sizes[] = {238, 239, 240, 241, 242, 243,
	                               494, 495, 496, 497, 498};
	const size_t big = 20000 * 8 + 1024;
	char *body = split_xmalloc(big), ctx[64];
	size_t i, n, e, taped;

	(void)state;
	for (i = 0; i < ARRAY_LEN(sizes); i++) {
		n = 0;
		fast_puts(body, &n, big, "[{\"x\":{");
		fast_members(body, &n, big, 20, "[1,{}]");
		fast_puts(body, &n, big,
		          "},\"channel\":\"/topic/T\",\"data\":{\"event\":{"
		          "\"replayId\":7},\"sobject\":{");
		fast_members(body, &n, big, sizes[i], "1");
		fast_puts(body, &n, big, "}},\"y\":[");
		fast_members(body, &n, big, 0, "");
		for (e = 0; e < 30; e++)
			fast_puts(body, &n, big, e ? ",[]" : "[]");
		fast_puts(body, &n, big, "]},");
		/* The same stream, a small event after the large one. */
		fast_puts(body, &n, big,
		          "{\"channel\":\"/topic/T\",\"data\":{\"event\":{"
		          "\"replayId\":8},\"sobject\":{\"a\":1}}}]");
		snprintf(ctx, sizeof(ctx), "%zu members", sizes[i]);
		fast_case(ctx, body, n, NULL, 2, NULL, 0);
	}

	/* A repeated "data": the tape is the last one's. */
	n = 0;
	fast_puts(body, &n, big,
	          "[{\"channel\":\"/topic/T\",\"data\":{\"event\":{"
	          "\"replayId\":6},\"sobject\":{");
	fast_members(body, &n, big, 300, "\"first\"");
	fast_puts(body, &n, big,
	          "}},\"data\":{\"event\":{\"replayId\":7},\"sobject\":{");
	fast_members(body, &n, big, 3, "\"second\"");
	fast_puts(body, &n, big, "}}}]");
	fast_case("repeated data", body, n, NULL, 1, NULL, 0);

	/* Past the limit: a payload of 16384 tokens and more has no tape,
	 * one just below it has one. */
	for (e = 0; e < 2; e++) {
		n = 0;
		fast_puts(body, &n, big,
		          "[{\"channel\":\"/topic/T\",\"data\":{\"event\":{"
		          "\"replayId\":7},\"sobject\":{\"L\":[");
		/* 13 tokens besides the array's numbers. */
		for (i = 0; i < (e ? 16384 - 13 + 1 : 16384 - 13); i++)
			fast_puts(body, &n, big, i ? ",1" : "1");
		fast_puts(body, &n, big, "]}}}]");
		taped = taped_events(e ? "over the limit" : "at the limit",
		                     body, n, 1);
		expect_long(e ? "over the limit" : "at the limit", "taped",
		            e ? 0 : 1, (long)taped);
	}
	free(body);
}

/*
 * A stray byte straight after a ',' or an opening bracket, at every
 * distance from the end of the element: the fast scan tests for the end
 * there with a compare that differs in the last bytes of a chunk, and
 * must still stop on the stray byte exactly where the reference does
 * (the string before it keeps the containers' openings out of those
 * last bytes, so that the fast scan gets that far).
 */
static void
test_fast_stray_byte(void **state)
{
	static const struct {
		const char *text; /* '@' is the stray byte */
		const char *why;
	} strays[] = {
	    {",@\"b\":1", "object key is not a double-quoted string"},
	    {",\"o\":{@\"b\":1}", "object key is not a double-quoted string"},
	    {",\"L\":[1,@2]", "unexpected character"},
	    {",\"L\":[@2]", "unexpected character"},
	};
	char body[512], ctx[96], want[160];
	size_t i, k, t, n, at;

	(void)state;
	for (i = 0; i < ARRAY_LEN(strays); i++) {
		for (k = 0; k <= 12; k++) {
			n = 0;
			fast_puts(body, &n, sizeof(body),
			          "[{\"channel\":\"/topic/T\",\"data\":{"
			          "\"event\":{\"replayId\":7},\"s\":{\"a\":"
			          "\"0123456789abcdefghijklmn\"");
			at = n + (size_t)(strchr(strays[i].text, '@') -
			                  strays[i].text);
			fast_puts(body, &n, sizeof(body), strays[i].text);
			body[at] = 'u';
			/* k more members move the stray away from the end. */
			for (t = 0; t < k; t++)
				fast_puts(body, &n, sizeof(body), ",\"c\":2");
			fast_puts(body, &n, sizeof(body), "}}}]");
			snprintf(ctx, sizeof(ctx), "%s and %zu more", body + at,
			         k);
			snprintf(want, sizeof(want),
			         "invalid JSON at byte %zu: %s", at,
			         strays[i].why);
			fast_case(ctx, body, n, want, 0, NULL, 0);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_data_files_whole),
	    cmocka_unit_test(test_data_files_every_split),
	    cmocka_unit_test(test_random_chunks_5000),
	    cmocka_unit_test(test_memory_bound_100mb),
	    cmocka_unit_test(test_oversized_element),
	    cmocka_unit_test(test_memory_worst_case),
	    cmocka_unit_test(test_max_msg_exact),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_truncated_prefixes),
	    cmocka_unit_test(test_strict_json),
	    cmocka_unit_test(test_same_error_however_cut),
	    cmocka_unit_test(test_agree_on_edges),
	    cmocka_unit_test(test_documented_differences),
	    cmocka_unit_test(test_replay_id_shapes),
	    cmocka_unit_test(test_cdc_created),
	    cmocka_unit_test(test_payload_is_raw_slice),
	    cmocka_unit_test(test_nesting_limit),
	    cmocka_unit_test(test_callback_stop),
	    cmocka_unit_test(test_callback_reentry),
	    cmocka_unit_test(test_reset_reuse),
	    cmocka_unit_test(test_degenerate_args),
	    cmocka_unit_test(test_empty_bodies),
	    cmocka_unit_test(test_error_offsets),
	    cmocka_unit_test(test_string_scan_every_offset),
	    cmocka_unit_test(test_fast_string_steps),
	    cmocka_unit_test(test_fast_chunk_end),
	    cmocka_unit_test(test_fast_whitespace),
	    cmocka_unit_test(test_fast_handover),
	    cmocka_unit_test(test_fast_deep_objects),
	    cmocka_unit_test(test_fast_key_lookalikes),
	    cmocka_unit_test(test_fast_tape_growth),
	    cmocka_unit_test(test_fast_stray_byte),
	};

	return cmocka_run_group_tests_name("bayeux_stream", tests, NULL, NULL);
}
