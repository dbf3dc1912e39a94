/* What happens to a line on its way to a sink: redaction, splitting into
 * parts, and the l2met stats line (lines.h, stats.h). Table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <json-c/json.h>

#include "sfrelay/lines.h"
#include "sfrelay/stats.h"

static char *
drain_str(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

/* ---- redaction -------------------------------------------------------- */

static void
test_redact_lines(void **state)
{
	(void)state;
	const char *pats[] = {"password", "*token*", "sobject.SSN__c", "a?c",
			      "id"};
	struct lines_redact *r = lines_redact_new(pats, 5);
	assert_non_null(r);
	static const struct {
		enum format_kind kind;
		const char *in, *out;
		int n;
	} cases[] = {
		{FORMAT_LOGFMT,
		 "at=event id=/t:1 sobject.Password=\"p w\" x=1\n",
		 "at=event id=/t:1 sobject.Password=[redacted] x=1\n", 1},
		{FORMAT_LOGFMT, "at=event Session_Token__c=abc SSN__c=1",
		 "at=event Session_Token__c=[redacted] SSN__c=1", 1},
		{FORMAT_LOGFMT, "at=event sobject.SSN__c=123-45 abc=1 abbc=2\n",
		 "at=event sobject.SSN__c=[redacted] abc=[redacted] abbc=2\n",
		 2},
		/* Header fields stay, even when a pattern names them. */
		{FORMAT_LOGFMT, "at=event id=/t:1 payload.id=7\n",
		 "at=event id=/t:1 payload.id=[redacted]\n", 1},
		{FORMAT_LOGFMT, "at=event x=1\n", "at=event x=1\n", 0},
		{FORMAT_JSON,
		 "{\"at\":\"event\",\"PASSWORD\":\"s\\\"x\",\"n\":3,"
		 "\"my.token\":null}\n",
		 "{\"at\":\"event\",\"PASSWORD\":\"[redacted]\",\"n\":3,"
		 "\"my.token\":\"[redacted]\"}\n",
		 2},
		/* Not the formatter's grammar: left as it was. */
		{FORMAT_LOGFMT, "password=\"unterminated\n",
		 "password=\"unterminated\n", 0},
		{FORMAT_JSON, "password=1\n", "password=1\n", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct evbuffer *b = evbuffer_new();
		int n = lines_redact_line(r, cases[i].kind, cases[i].in,
					  strlen(cases[i].in), b);
		char *got = drain_str(b);
		if (n != cases[i].n || strcmp(got, cases[i].out) != 0)
			fail_msg("case %zu: %d \"%s\"", i, n, got);
		free(got);
		evbuffer_free(b);
	}
	assert_true(lines_redact_match(r, "x.y.PassWord", 12));
	assert_false(lines_redact_match(r, "passwords", 9));
	assert_false(lines_redact_match(r, "channel", 7));
	lines_redact_free(r);
	const char *empty[] = {""};
	assert_null(lines_redact_new(empty, 1));
	lines_redact_free(NULL);
}

/* ---- splitting -------------------------------------------------------- */

struct parts {
	char *text[64];
	size_t len[64];
	unsigned n, total;
	int stop_at;
};

static int
collect(void *arg, const char *part, size_t plen, unsigned k, unsigned n)
{
	struct parts *p = arg;
	assert_int_equal(k, p->n + 1);
	assert_true(p->n < 64);
	if (p->stop_at > 0 && (int)k == p->stop_at)
		return -1;
	p->text[p->n] = strndup(part, plen);
	p->len[p->n] = plen;
	p->n++;
	p->total = n;
	return 0;
}

static void
parts_free(struct parts *p)
{
	for (unsigned i = 0; i < p->n; i++)
		free(p->text[i]);
	memset(p, 0, sizeof(*p));
}

/* Concatenation of a logfmt key's values over parts (quotes removed). */
static size_t
joined(struct parts *p, const char *key, char *out)
{
	size_t n = 0, kl = strlen(key);
	for (unsigned i = 0; i < p->n; i++)
		for (const char *s = p->text[i]; (s = strstr(s, key)) != NULL;
		     s += kl) {
			if (s[-1] != ' ' && s[-1] != '"')
				continue;
			const char *v = s + kl;
			int q = *v == '"';
			v += q;
			while (*v != '\0' && (q ? *v != '"' || v[-1] == '\\'
					      : *v != ' ' && *v != '\n'))
				out[n++] = *v++;
		}
	out[n] = '\0';
	return n;
}

static void
test_split_logfmt(void **state)
{
	(void)state;
	/* A value with escapes and multi-byte UTF-8 that must not be cut
	 * inside either. */
	char big[6000];
	size_t o = 0;
	while (o < 5000) {
		const char *unit = (o / 7) % 3 == 0   ? "\\\""
				   : (o / 7) % 3 == 1 ? "\xc3\xa9"
						      : "\\u0001x";
		memcpy(big + o, unit, strlen(unit));
		o += strlen(unit);
	}
	big[o] = '\0';
	size_t linecap = 16000;
	char *line = malloc(linecap);
	snprintf(line, linecap,
		 "at=event src=stream channel=/topic/X id=/topic/X:9 "
		 "replay_id=9 created=2026-01-01T00:00:00.000Z a=1 "
		 "sobject.Description=\"%s\" b=\"two words\" c=3\n",
		 big);
	struct parts p = {0};
	int n = lines_split(FORMAT_LOGFMT, line, strlen(line), 1500, collect,
			    &p);
	assert_true(n >= 4);
	assert_int_equal((unsigned)n, p.n);
	for (unsigned i = 0; i < p.n; i++) {
		char tag[32];
		snprintf(tag, sizeof(tag), " part=%u/%d ", i + 1, n);
		assert_true(p.len[i] - 1 <= 1500);
		assert_int_equal(p.text[i][p.len[i] - 1], '\n');
		assert_null(memchr(p.text[i], '\n', p.len[i] - 1));
		assert_memory_equal(p.text[i],
				    "at=event src=stream channel=/topic/X "
				    "id=/topic/X:9 replay_id=9 created=",
				    70);
		assert_non_null(strstr(p.text[i], tag));
	}
	char got[6000];
	assert_int_equal(joined(&p, "sobject.Description=", got), o);
	assert_string_equal(got, big);
	assert_int_equal(joined(&p, "b=", got), 9);
	assert_string_equal(got, "two words");
	/* a= comes before the description, c= after, each once. */
	assert_non_null(strstr(p.text[0], " a=1"));
	assert_non_null(strstr(p.text[p.n - 1], " c=3\n"));
	parts_free(&p);

	/* Within the limit: one part, unchanged. */
	const char *small = "at=event id=x a=1";
	assert_int_equal(lines_split(FORMAT_LOGFMT, small, strlen(small),
				     1500, collect, &p),
			 1);
	assert_string_equal(p.text[0], "at=event id=x a=1\n");
	parts_free(&p);

	/* Refusals: not the grammar, no room for the header, fn says stop. */
	snprintf(line, linecap, "at=event =%s", big);
	assert_int_equal(lines_split(FORMAT_LOGFMT, line, strlen(line), 1024,
				     collect, &p),
			 -1);
	memset(line, 'k', 1500);
	memcpy(line + 1500, "=1 b=2", 7);
	assert_int_equal(lines_split(FORMAT_LOGFMT, line, strlen(line), 1024,
				     collect, &p),
			 -1); /* a key longer than a part */
	assert_int_equal(p.n, 0);
	snprintf(line, linecap, "at=event id=x d=\"%s\"", big);
	p.stop_at = 2;
	assert_int_equal(lines_split(FORMAT_LOGFMT, line, strlen(line), 1024,
				     collect, &p),
			 -1);
	parts_free(&p);
	free(line);
}

static void
test_split_json(void **state)
{
	(void)state;
	struct evbuffer *b = evbuffer_new();
	evbuffer_add_printf(b, "{\"at\":\"event\",\"src\":\"stream\","
			       "\"id\":\"/u/X:3\",\"n\":12345,\"e\":[],"
			       "\"desc\":\"");
	for (int i = 0; i < 800; i++)
		evbuffer_add_printf(b, "%s", i % 2 ? "caf\xc3\xa9 " : "\\n\\\"");
	evbuffer_add_printf(b, "\",\"last\":true}\n");
	char *line = drain_str(b);
	evbuffer_free(b);
	struct json_object *whole = json_tokener_parse(line);
	assert_non_null(whole);
	const char *want =
		json_object_get_string(json_object_object_get(whole, "desc"));

	struct parts p = {0};
	int n = lines_split(FORMAT_JSON, line, strlen(line), 1200, collect,
			    &p);
	assert_true(n >= 3);
	struct evbuffer *desc = evbuffer_new();
	for (unsigned i = 0; i < p.n; i++) {
		assert_true(p.len[i] - 1 <= 1200);
		/* Every part is one valid JSON object with the header. */
		struct json_object *o = json_tokener_parse(p.text[i]);
		assert_non_null(o);
		struct json_object *v;
		char tag[16];
		snprintf(tag, sizeof(tag), "%u/%d", i + 1, n);
		assert_true(json_object_object_get_ex(o, "part", &v));
		assert_string_equal(json_object_get_string(v), tag);
		assert_true(json_object_object_get_ex(o, "id", &v));
		assert_string_equal(json_object_get_string(v), "/u/X:3");
		if (json_object_object_get_ex(o, "desc", &v))
			evbuffer_add_printf(desc, "%s",
					    json_object_get_string(v));
		json_object_put(o);
	}
	char *got = drain_str(desc);
	assert_string_equal(got, want);
	assert_non_null(strstr(p.text[p.n - 1], "\"last\":true}"));
	free(got);
	evbuffer_free(desc);
	json_object_put(whole);
	parts_free(&p);
	free(line);
}

/* ---- stats ------------------------------------------------------------- */

static void
test_stats_format(void **state)
{
	(void)state;
	static const struct {
		struct stats_sample s;
		const char *want;
	} cases[] = {
		{{120, 0, 0, 0, 14, 1.25, 0},
		 "at=stats count#sfrelay.events=120 count#sfrelay.dropped=0 "
		 "sample#sfrelay.queue=0 sample#sfrelay.lag_ms=14 "
		 "count#sfrelay.reconnects=0 sample#sfrelay.api_usage_pct=1.2\n"},
		{{0, 7, 2, 31, -1, -1, 0},
		 "at=stats count#sfrelay.events=0 count#sfrelay.dropped=7 "
		 "sample#sfrelay.queue=31 count#sfrelay.reconnects=2\n"},
		{{1, 0, 0, 0, -1, -1, 3},
		 "at=stats count#sfrelay.events=1 count#sfrelay.dropped=0 "
		 "sample#sfrelay.queue=0 count#sfrelay.reconnects=0 "
		 "sample#sfrelay.gaps=3\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct evbuffer *b = evbuffer_new();
		assert_int_equal(stats_format(b, &cases[i].s), 0);
		char *got = drain_str(b);
		assert_string_equal(got, cases[i].want);
		free(got);
		evbuffer_free(b);
	}
}

static void
test_stats_parsers(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int rc;
		double pct;
	} li[] = {
		{"api-usage=18/15000", 0, 0.12},
		{"per-app-api-usage=1/10, api-usage=7500/15000", 0, 50.0},
		{"api-usage=15000/15000; other=1", 0, 100.0},
		{"api-usage=1/0", -1, 0},
		{"api-usage=x/10", -1, 0},
		{"per-app-api-usage=1/10", -1, 0},
		{"", -1, 0},
	};
	for (size_t i = 0; i < sizeof(li) / sizeof(li[0]); i++) {
		double pct = -1;
		assert_int_equal(stats_parse_limit_info(li[i].in, &pct),
				 li[i].rc);
		if (li[i].rc == 0)
			assert_true(pct > li[i].pct - 0.001 &&
				    pct < li[i].pct + 0.001);
	}
	assert_int_equal(stats_parse_limit_info(NULL, NULL), -1);
	static const struct {
		const char *in;
		int rc;
		int64_t ms;
	} t[] = {
		{"1970-01-01T00:00:00Z", 0, 0},
		{"1970-01-01T00:00:01.5Z", 0, 1500},
		{"2026-11-26T19:27:53.000Z", 0, 1795721273000LL},
		{"2000-02-29T12:00:00.123+01:00", 0, 951822000123LL},
		{"2026-11-26T19:27:53", -1, 0},
		{"2026-13-26T19:27:53Z", -1, 0},
		{"2026-11-26T19:27:53.Z", -1, 0},
		{"2026-11-26 19:27:53Z", -1, 0},
		{"2026-11-26T19:27:53Zjunk", -1, 0},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int64_t ms = -1;
		int rc = stats_parse_time(t[i].in, &ms);
		if (rc != t[i].rc || (rc == 0 && ms != t[i].ms))
			fail_msg("case %s: rc %d ms %lld", t[i].in, rc,
				 (long long)ms);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_redact_lines),
		cmocka_unit_test(test_split_logfmt),
		cmocka_unit_test(test_split_json),
		cmocka_unit_test(test_stats_format),
		cmocka_unit_test(test_stats_parsers),
	};
	return cmocka_run_group_tests_name("sinks_lines", tests, NULL, NULL);
}
