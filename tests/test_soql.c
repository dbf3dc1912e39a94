/*
 * soql: poll item syntax, query text, reply decoding, Sforce-Limit-Info
 * and the high-water mark's boundary rule. Pure functions, so every case
 * is a table row or a small simulation.
 */
#include <json-c/json.h>

#include "sfrelay/soql.h"
#include "soql_fixture.h"

/* 2026-11-26T19:20:01Z */
#define T0 1795720801000LL

/* --- datetime literals ------------------------------------------------ */

static void
test_datetime_literal(void **state)
{
	(void)state;
	static const struct {
		long long ms;
		const char *want;
	} cases[] = {
	    {T0, "2026-11-26T19:20:01Z"},
	    {T0 + 250, "2026-11-26T19:20:01.250Z"},
	    {T0 + 1, "2026-11-26T19:20:01.001Z"},
	    {T0 + 999, "2026-11-26T19:20:01.999Z"},
	    {0, "1970-01-01T00:00:00Z"},
	    {951782400000LL, "2000-02-29T00:00:00Z"},
	    {-1000, "1969-12-31T23:59:59Z"},
	};
	char buf[64];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		soql_datetime(cases[i].ms, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].want);
	}
}

/* --- the poll item syntax ---------------------------------------------- */

struct spec_case {
	const char *text;
	const char *object, *time, *id, *fields, *where;
	long interval;
	int big;
};

static const struct spec_case good_specs[] = {
    {"SetupAuditTrail@60s", "SetupAuditTrail", "CreatedDate", "Id",
     "Id, Action, Section, CreatedDate, CreatedById, CreatedBy.Username, "
     "Display, DelegateUser",
     NULL, 60000, 0},
    {"  setupaudittrail  ", "SetupAuditTrail", "CreatedDate", "Id", NULL, NULL,
     60000, 0},
    {"LoginHistory@5m", "LoginHistory", "LoginTime", "Id", NULL, NULL, 300000,
     0},
    {"Account@2m", "Account", "LastModifiedDate", "Id", "FIELDS(STANDARD)",
     NULL, 120000, 0},
    {"Account:SystemModstamp@1h(Id, Name)[Industry = 'Banking']", "Account",
     "SystemModstamp", "Id", "SystemModstamp, Id, Name", "Industry = 'Banking'",
     3600000, 0},
    {"Account(Name,Id , LastModifiedDate)", "Account", "LastModifiedDate", "Id",
     "Name, Id, LastModifiedDate", NULL, 60000, 0},
    {"Invoice__c:Paid_At__c@30s", "Invoice__c", "Paid_At__c", "Id",
     "Paid_At__c, FIELDS(STANDARD)", NULL, 30000, 0},
    {"Invoice__c:Paid_At__c(fields(standard), Amount__c)", "Invoice__c",
     "Paid_At__c", "Id", "Paid_At__c, FIELDS(STANDARD), Amount__c", NULL, 60000,
     0},
    {"Case @ 1s [ Status IN ('New', 'Escalated]') AND (IsClosed = false) ]",
     "Case", "LastModifiedDate", "Id", "FIELDS(STANDARD)",
     "Status IN ('New', 'Escalated]') AND (IsClosed = false)", 1000, 0},
    {"Contact[Name = 'O\\'Brien']", "Contact", "LastModifiedDate", "Id",
     "FIELDS(STANDARD)", "Name = 'O\\'Brien'", 60000, 0},
    {"SetupAuditTrail@24h(Action, CreatedBy.Username)[Action = "
     "'changedPassword']",
     "SetupAuditTrail", "CreatedDate", "Id",
     "Id, CreatedDate, Action, CreatedBy.Username",
     "Action = 'changedPassword'", 86400000, 0},
};

static void
check_spec(const struct spec_case *c, const struct soql_spec *s)
{
	assert_string_equal(s->object, c->object);
	assert_string_equal(s->time_field, c->time);
	assert_string_equal(s->id_field, c->id);
	if (c->fields != NULL)
		assert_string_equal(s->fields, c->fields);
	if (c->where == NULL)
		assert_null(s->where);
	else
		assert_string_equal(s->where, c->where);
	assert_int_equal(s->interval_ms, c->interval);
	assert_int_equal(s->big, c->big);
}

static void
test_spec_good(void **state)
{
	(void)state;
	char err[256];
	for (size_t i = 0; i < sizeof(good_specs) / sizeof(good_specs[0]);
	     i++) {
		struct soql_spec s;
		const char *t = good_specs[i].text;
		if (soql_spec_parse(t, strlen(t), 1, &s, err, sizeof(err)) != 0)
			fail_msg("%s rejected: %s", t, err);
		check_spec(&good_specs[i], &s);
		struct soql_spec c;
		assert_int_equal(soql_spec_copy(&c, &s), 0);
		check_spec(&good_specs[i], &c);
		soql_spec_clear(&c);
		soql_spec_clear(&s);
		soql_spec_clear(&s); /* cleared twice is harmless */
	}
}

static void
test_spec_backfill_form(void **state)
{
	(void)state;
	char err[256];
	struct soql_spec s;
	const char *t = "LoginEvent";
	assert_int_equal(soql_spec_parse(t, strlen(t), 0, &s, err, sizeof(err)),
	                 0);
	assert_string_equal(s.object, "LoginEvent");
	assert_string_equal(s.time_field, "EventDate");
	assert_string_equal(s.id_field, "EventIdentifier");
	assert_int_equal(s.big, 1);
	assert_int_equal(s.interval_ms, 0);
	soql_spec_clear(&s);

	t = "Account@5m";
	assert_int_equal(soql_spec_parse(t, strlen(t), 0, &s, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "takes no @interval"));
	assert_null(s.object);

	assert_int_equal(soql_spec_big_object("loginevent", &s), 0);
	assert_string_equal(s.object, "LoginEvent");
	soql_spec_clear(&s);
	assert_int_equal(soql_spec_big_object("Account", &s), -1);
}

static const struct {
	const char *text;
	const char *want;
} bad_specs[] = {
    {"", "empty item"},
    {"   ", "empty item"},
    {"9Account", "must start with an object name"},
    {"@60s", "must start with an object name"},
    {"Account@", "interval like 60s"},
    {"Account@60", "needs a unit"},
    {"Account@60x", "needs a unit"},
    {"Account@60sec", "needs a unit"},
    {"Account@0s", "out of range"},
    {"Account@25h", "out of range"},
    {"Account@99999999999s", "too large"},
    {"Account:", "time field name"},
    {"Account:Bad.Field", "unexpected"},
    {"Account(Id, Name", "no closing ')'"},
    {"Account(Id,,Name)", "empty field name"},
    {"Account()", "empty field name"},
    {"Account(Id; Name)", "is not a field name"},
    {"Account(Id, id)", "listed twice"},
    {"Account(FIELDS(ALL))", "need LIMIT 200"},
    {"Account(FIELDS(STANDARD), Name)", "already part of FIELDS(STANDARD)"},
    {"Account[Name = 'x'", "no closing ']'"},
    {"Account[Name = 'x]", "unterminated string"},
    {"Account[(Name = 'x']", "unbalanced '('"},
    {"Account[Name = 'x')]", "unbalanced ')'"},
    {"Account[a [b] c]", "'[' inside the condition"},
    {"Account[ ]", "empty condition"},
    {"Account[Name = 'x'] extra", "unexpected \"extra\""},
    {"Account@1m@2m", "unexpected"},
    {"LoginEvent[UserId = '005']", "filtered only on EventDate"},
    {"LoginEvent:CreatedDate", "queried only by EventDate"},
};

/* A parser's refusal of input: rc -1 and an err that says want. */
static void
check_refused(const char *input, int rc, const char *err, const char *want)
{
	if (rc != -1 || strstr(err, want) == NULL)
		fail_msg("%s: rc %d, err \"%s\", want \"%s\"", input, rc, err,
		         want);
}

static void
test_spec_bad(void **state)
{
	(void)state;
	char err[256];
	for (size_t i = 0; i < sizeof(bad_specs) / sizeof(bad_specs[0]); i++) {
		struct soql_spec s;
		const char *t = bad_specs[i].text;
		strcpy(err, "untouched");
		int rc = soql_spec_parse(t, strlen(t), 1, &s, err, sizeof(err));
		check_refused(t, rc, err, bad_specs[i].want);
		assert_null(s.object);
		assert_null(s.fields);
	}
	/* Quoted input never brings a control byte into a message. */
	struct soql_spec s;
	const char junk[] = "Ac\001count \033[31m";
	assert_int_equal(
	    soql_spec_parse(junk, strlen(junk), 1, &s, err, sizeof(err)), -1);
	for (const char *c = err; *c != '\0'; c++)
		assert_true((unsigned char)*c >= 0x20);
	/* A control byte inside a condition. */
	const char ctl[] = "Account[Name = \001]";
	assert_int_equal(
	    soql_spec_parse(ctl, strlen(ctl), 1, &s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "control character"));
}

static void
test_poll_list(void **state)
{
	(void)state;
	struct soql_spec *specs;
	size_t n;
	struct problems pr = {"", 0};
	const char *text = "SetupAuditTrail@60s, LoginHistory@5m,"
	                   "Account@2m(Id, Name)[Name IN ('a,b', 'c')],"
	                   "EventLogFile(Id,EventType,LogDate)";
	assert_int_equal(soql_poll_parse(text, &specs, &n, collect, &pr), 0);
	assert_int_equal(pr.n, 0);
	assert_int_equal(n, 4);
	assert_string_equal(specs[0].object, "SetupAuditTrail");
	assert_string_equal(specs[1].object, "LoginHistory");
	assert_string_equal(specs[2].object, "Account");
	assert_string_equal(specs[2].where, "Name IN ('a,b', 'c')");
	assert_string_equal(specs[2].fields, "LastModifiedDate, Id, Name");
	assert_string_equal(specs[3].fields,
	                    "CreatedDate, Id, EventType, LogDate");
	soql_specs_free(specs, n);
}

static int
parse_count(const char *text, size_t *n, soql_problem_fn *problem, void *arg)
{
	struct soql_spec *specs;
	int rc = soql_poll_parse(text, &specs, n, problem, arg);
	soql_specs_free(specs, *n);
	return rc;
}

static void
test_poll_list_problems(void **state)
{
	(void)state;
	struct soql_spec *specs = (void *)1;
	size_t n = 99;
	struct problems pr = {"", 0};
	const char *text = "SetupAuditTrail@60x,,Account@1m,account@2m,"
	                   "LoginEvent@5m,LoginHistory";
	assert_int_equal(soql_poll_parse(text, &specs, &n, collect, &pr), -1);
	assert_null(specs);
	assert_int_equal(n, 0);
	check_problems(
	    &pr, 4,
	    (const char *const[]){
	        "item 1 \"SetupAuditTrail@60x\": interval needs a unit",
	        "item 2 is empty", "item 4 \"account@2m\": object listed twice",
	        "item 5 \"LoginEvent@5m\": LoginEvent is an event monitoring "
	        "big object",
	        NULL});

	check_list_limit(parse_count, "Obj", "__c");
}

static int
count_items(void *arg, const char *item, size_t len, size_t index)
{
	(void)item;
	(void)len;
	*(size_t *)arg = index;
	return index == 3 ? 7 : 0;
}

static void
test_split(void **state)
{
	(void)state;
	size_t last = 0;
	/* The callback's non-zero return stops the walk. */
	assert_int_equal(
	    soql_split("a,b(c,d),e[x,'y,]z'],f", count_items, &last), 7);
	assert_int_equal(last, 3);
	last = 0;
	assert_int_equal(soql_split("a(b,c)", count_items, &last), 0);
	assert_int_equal(last, 1);
}

/* A soql_list_item_fn, arg a char[256]: notes every item it is given
 * ("item|") and refuses those starting with 'x', echoing the raw item
 * in the reason. */
static int
note_item(void *arg, const char *item, size_t len, char *why, size_t whylen)
{
	char *seen = arg;
	size_t used = strlen(seen);
	snprintf(seen + used, 256 - used, "%.*s|", (int)len, item);
	if (item[0] != 'x')
		return 0;
	snprintf(why, whylen, "no %.*s", (int)len, item);
	return -1;
}

#define EMPTY_ITEM " is empty (two commas in a row, or a comma at an end)\n"

static void
test_list_parse(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		size_t max;
		int rc;
		const char *seen;     /* the items given to the callback */
		const char *problems; /* every report, in order */
	} cases[] = {
	    {"a, b ,\tc\n", 3, 0, "a|b|c|", ""},
	    {"a", 1, 0, "a|", ""},
	    /* Commas inside (), [] or '...' do not split; blanks inside an
	     * item stay. */
	    {" a(p, q) [r = ',s'] ,b", 2, 0, "a(p, q) [r = ',s']|b|", ""},
	    {"", 32, -1, "", "item 1" EMPTY_ITEM},
	    {NULL, 32, -1, "", "item 1" EMPTY_ITEM},
	    {"a,b,", 32, -1, "a|b|", "item 3" EMPTY_ITEM},
	    {",a", 32, -1, "a|", "item 1" EMPTY_ITEM},
	    {"a, \t ,b", 32, -1, "a|b|", "item 2" EMPTY_ITEM},
	    {" , ", 32, -1, "", "item 1" EMPTY_ITEM "item 2" EMPTY_ITEM},
	    /* The quote is escaped so that the quoted item ends where the
	     * item ends; the reason is scrubbed of control bytes. */
	    {"a,x\"y", 32, -1, "a|x\"y|", "item 2 \"x\\\"y\": no x\"y\n"},
	    {"x\\", 32, -1, "x\\|", "item 1 \"x\\\\\": no x\\\n"},
	    {"x\001y", 32, -1, "x\001y|", "item 1 \"x\\x01y\": no x?y\n"},
	    {"x234567890123456789012345678901234567890123456789", 32, -1,
	     "x234567890123456789012345678901234567890123456789|",
	     "item 1 \"x23456789012345678901234567890123456789012345678...\": "
	     "no x234567890123456789012345678901234567890123456789\n"},
	    {"a,b,c", 2, -1, "a|b|c|", "has 3 items, at most 2\n"},
	    /* Every problem is reported; the count once, after them. */
	    {"x1,,a,b", 2, -1, "x1|a|b|",
	     "item 1 \"x1\": no x1\nitem 2" EMPTY_ITEM
	     "has 4 items, at most 2\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char seen[256] = "";
		struct problems pr = {"", 0};
		int rc = soql_list_parse(cases[i].text, cases[i].max, note_item,
		                         seen, collect, &pr);
		const char *t = cases[i].text != NULL ? cases[i].text : "NULL";
		if (rc != cases[i].rc)
			fail_msg("\"%s\": rc %d", t, rc);
		if (strcmp(seen, cases[i].seen) != 0)
			fail_msg("\"%s\": items \"%s\", want \"%s\"", t, seen,
			         cases[i].seen);
		if (strcmp(pr.text, cases[i].problems) != 0)
			fail_msg("\"%s\": problems \"%s\", want \"%s\"", t,
			         pr.text, cases[i].problems);
	}
	/* No problem callback: still refused, nothing else changes. */
	char seen[256] = "";
	assert_int_equal(
	    soql_list_parse("a,,x", 32, note_item, seen, NULL, NULL), -1);
	assert_string_equal(seen, "a|x|");
}

/* --- query text ---------------------------------------------------------- */

static char *
build_since(const char *item, long long ms)
{
	char err[256];
	struct soql_spec s;
	struct evbuffer *b = evbuffer_new();
	assert_int_equal(
	    soql_spec_parse(item, strlen(item), 1, &s, err, sizeof(err)), 0);
	assert_int_equal(soql_build_since(b, &s, ms), 0);
	soql_spec_clear(&s);
	return take_free(b);
}

static void
test_build_queries(void **state)
{
	(void)state;
	char *q = build_since("SetupAuditTrail", T0);
	assert_string_equal(
	    q, "SELECT Id, Action, Section, CreatedDate, CreatedById, "
	       "CreatedBy.Username, Display, DelegateUser FROM "
	       "SetupAuditTrail WHERE CreatedDate >= 2026-11-26T19:20:01Z "
	       "ORDER BY CreatedDate, Id");
	free(q);
	q = build_since("Account:SystemModstamp(Name)[Industry = 'Banking' OR "
	                "Name LIKE 'A%']",
	                T0 + 7);
	assert_string_equal(
	    q, "SELECT Id, SystemModstamp, Name FROM Account WHERE "
	       "SystemModstamp >= 2026-11-26T19:20:01.007Z AND (Industry = "
	       "'Banking' OR Name LIKE 'A%') ORDER BY SystemModstamp, Id");
	free(q);

	char err[256];
	struct soql_spec s;
	struct evbuffer *b = evbuffer_new();
	assert_int_equal(soql_spec_parse("Account[IsDeleted = false]", 26, 0,
	                                 &s, err, sizeof(err)),
	                 0);
	assert_int_equal(soql_build_window(b, &s, T0, T0 + 3600000), 0);
	q = take(b);
	assert_string_equal(q, "SELECT FIELDS(STANDARD) FROM Account WHERE "
	                       "LastModifiedDate >= 2026-11-26T19:20:01Z AND "
	                       "LastModifiedDate <= 2026-11-26T20:20:01Z AND "
	                       "(IsDeleted = false) ORDER BY LastModifiedDate, "
	                       "Id");
	free(q);
	soql_spec_clear(&s);
	/* A big object: the time window only, no ORDER BY. */
	assert_int_equal(soql_spec_big_object("LoginEvent", &s), 0);
	assert_int_equal(soql_build_window(b, &s, T0, T0 + 500), 0);
	q = take(b);
	assert_non_null(strstr(q, " FROM LoginEvent WHERE EventDate >= "
	                          "2026-11-26T19:20:01Z AND EventDate <= "
	                          "2026-11-26T19:20:01.500Z"));
	assert_null(strstr(q, "ORDER BY"));
	assert_true(strncmp(q, "SELECT EventIdentifier, EventDate,", 34) == 0);
	free(q);
	soql_spec_clear(&s);
	evbuffer_free(b);
}

static void
test_url_escape(void **state)
{
	(void)state;
	struct evbuffer *b = evbuffer_new();
	const char in[] = "SELECT Id FROM A WHERE N = 'x&y' AND T >= "
	                  "2026-01-01T00:00:00Z+%#/é";
	assert_int_equal(soql_url_escape(b, in, strlen(in)), 0);
	char *q = take(b);
	assert_string_equal(q, "SELECT+Id+FROM+A+WHERE+N+%3D+%27x%26y%27+AND+T+"
	                       "%3E%3D+2026-01-01T00%3A00%3A00Z%2B%25%23%2F%C3"
	                       "%A9");
	free(q);
	/* Longer than the internal chunk: nothing lost at the seams. */
	char big[1000];
	memset(big, '=', sizeof(big));
	assert_int_equal(soql_url_escape(b, big, sizeof(big)), 0);
	assert_int_equal(evbuffer_get_length(b), 3000);
	evbuffer_free(b);
}

static void
test_build_composite(void **state)
{
	(void)state;
	struct evbuffer *b = evbuffer_new();
	const char *urls[] = {"/services/data/v61.0/query?q=SELECT+Id",
	                      "/services/data/v61.0/query/01gxx-2000", "/a\"b"};
	assert_int_equal(soql_build_composite(b, urls, 3), 0);
	char *body = take(b);
	json_object *o = json_tokener_parse(body);
	assert_non_null(o);
	json_object *v, *arr;
	assert_true(json_object_object_get_ex(o, "allOrNone", &v));
	assert_false(json_object_get_boolean(v));
	assert_true(json_object_object_get_ex(o, "compositeRequest", &arr));
	assert_int_equal(json_object_array_length(arr), 3);
	for (size_t i = 0; i < 3; i++) {
		json_object *sub = json_object_array_get_idx(arr, i);
		char ref[8];
		snprintf(ref, sizeof(ref), "r%zu", i);
		assert_true(json_object_object_get_ex(sub, "url", &v));
		assert_string_equal(json_object_get_string(v), urls[i]);
		assert_true(json_object_object_get_ex(sub, "method", &v));
		assert_string_equal(json_object_get_string(v), "GET");
		assert_true(json_object_object_get_ex(sub, "referenceId", &v));
		assert_string_equal(json_object_get_string(v), ref);
	}
	json_object_put(o);
	free(body);
	assert_int_equal(soql_build_composite(b, urls, 0), -1);
	const char *many[26];
	for (int i = 0; i < 26; i++)
		many[i] = "/x";
	assert_int_equal(soql_build_composite(b, many, 26), -1);
	assert_int_equal(soql_build_composite(b, many, 25), 0);
	evbuffer_free(b);
}

/* --- replies ------------------------------------------------------------ */

static const char page_json[] =
    "{\"totalSize\": 4100, \"done\": false,\n"
    " \"nextRecordsUrl\": \"/services/data/v61.0/query/01gxx0001-2000\",\n"
    " \"records\": [\n"
    "  {\"attributes\": {\"type\": \"SetupAuditTrail\", \"url\": "
    "\"/services/data/v61.0/sobjects/SetupAuditTrail/0Ym1\"},\n"
    "   \"Id\": \"0Ymxx0000000001AAA\", \"Action\": \"changedPassword\",\n"
    "   \"CreatedDate\": \"2026-11-26T19:20:01.000+0000\",\n"
    "   \"CreatedBy\": {\"attributes\": {\"type\": \"User\"}, "
    "\"Username\": \"admin@example.com\"},\n"
    "   \"Display\": \"Changed \\\"x\\\" \\u00e9\\ud83d\\ude00\", "
    "\"DelegateUser\": null},\n"
    "  {\"attributes\":{\"type\":\"SetupAuditTrail\"},\"Id\":"
    "\"0Ymxx0000000002AAA\",\"Nums\":[1,2.5e3,-0.5],\"Deep\":{\"a\":"
    "[{\"attributes\":{\"x\":1},\"b\":true}]},\"CreatedDate\":"
    "\"2026-11-26T19:20:02.000+0000\"}\n"
    " ]}";

/* page_json decoded into p (cleared with soql_page_clear). */
static void
decode_page_json(struct soql_page *p)
{
	char err[128];
	if (soql_page_decode(page_json, strlen(page_json), p, err,
	                     sizeof(err)) != 0)
		fail_msg("page_json rejected: %s", err);
}

static void
test_page_decode(void **state)
{
	(void)state;
	struct soql_page p;
	decode_page_json(&p);
	assert_int_equal(p.total_size, 4100);
	assert_int_equal(p.done, 0);
	assert_string_equal(p.next_url,
	                    "/services/data/v61.0/query/01gxx0001-2000");
	assert_int_equal(p.nrecords, 2);
	assert_true(p.records[0].text[0] == '{');
	assert_true(p.records[0].text[p.records[0].len - 1] == '}');
	assert_true(p.records[0].text >= page_json &&
	            p.records[1].text + p.records[1].len <=
	                page_json + strlen(page_json));

	static const struct {
		size_t rec;
		const char *name;
		size_t len; /* 0: the whole buffer */
		int rc;
		const char *want; /* buffer after a call returning 0 or -1 */
	} cases[] = {
	    {0, "Id", 0, 0, "0Ymxx0000000001AAA"},
	    {0, "createddate", 0, 0, "2026-11-26T19:20:01.000+0000"},
	    {0, "Display", 0, 0, "Changed \"x\" \xc3\xa9\xf0\x9f\x98\x80"},
	    {0, "DelegateUser", 0, 1, NULL}, /* null */
	    {0, "Missing", 0, 1, NULL},
	    /* Not a string, or too long for the buffer. */
	    {0, "CreatedBy", 0, -1, NULL},
	    {1, "Nums", 0, -1, NULL},
	    {0, "Id", 10, -1, ""},
	    /* Only the top level counts: Username is nested. */
	    {0, "Username", 0, 1, NULL},
	};
	char buf[128];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len != 0 ? cases[i].len : sizeof(buf);
		int rc = soql_record_string(&p.records[cases[i].rec],
		                            cases[i].name, buf, len);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d", cases[i].name, rc,
			         cases[i].rc);
		if (cases[i].want != NULL)
			assert_string_equal(buf, cases[i].want);
	}
	soql_page_clear(&p);
	soql_page_clear(&p);
	assert_null(p.records);
}

static void
test_page_done_and_empty(void **state)
{
	(void)state;
	struct soql_page p;
	char err[128];
	const char *done = "{\"totalSize\":0,\"done\":true,\"records\":[],"
	                   "\"nextRecordsUrl\":\"/services/data/v1/x\"}";
	assert_int_equal(
	    soql_page_decode(done, strlen(done), &p, err, sizeof(err)), 0);
	assert_int_equal(p.done, 1);
	assert_null(p.next_url); /* ignored when done */
	assert_int_equal(p.nrecords, 0);
	soql_page_clear(&p);
	const char *nul = "{\"done\":true,\"nextRecordsUrl\":null,\"records\":["
	                  "{}],\"extra\":{\"a\":[1,{\"b\":null}]}}";
	assert_int_equal(
	    soql_page_decode(nul, strlen(nul), &p, err, sizeof(err)), 0);
	assert_int_equal(p.total_size, -1);
	assert_int_equal(p.nrecords, 1);
	soql_page_clear(&p);
}

static void
test_page_malformed(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		const char *want;
	} cases[] = {
	    {"", "not a JSON object"},
	    {"[]", "not a JSON object"},
	    {"nope", "not a JSON object"},
	    {"{\"records\":[]}", "no \"done\""},
	    {"{\"done\":true}", "no \"records\" array"},
	    {"{\"done\":\"yes\",\"records\":[]}", "not a boolean"},
	    {"{\"done\":true,\"records\":{}}", "not an array"},
	    {"{\"done\":true,\"records\":[1]}", "not an object"},
	    {"{\"done\":true,\"records\":[{}],\"records\":[]}", "twice"},
	    {"{\"done\":false,\"records\":[]}", "no nextRecordsUrl"},
	    {"{\"done\":false,\"nextRecordsUrl\":\"http://evil/x\","
	     "\"records\":[]}",
	     "not a /services/data/ path"},
	    {"{\"done\":false,\"nextRecordsUrl\":\"/services/data/a b\","
	     "\"records\":[]}",
	     "not a /services/data/ path"},
	    {"{\"done\":false,\"nextRecordsUrl\":5,\"records\":[]}",
	     "expected a string"},
	    {"{\"done\":true,\"records\":[]} x", "trailing text"},
	    {"{\"done\":true,\"records\":[{\"a\":}]}", "unexpected character"},
	    {"{\"done\":true,\"records\":[{\"a\":", "unexpected end"},
	    {"{\"done\":true,\"records\":[{\"a\":1]}", "expected ','"},
	    {"{\"done\":true,\"records\":[{\"a\":\"x}]}", "unterminated"},
	    {"{\"done\":true,\"records\":[{\"a\":\"\\q\"}]}", "invalid escape"},
	    {"{\"done\":true,\"records\":[{\"a\":\"\\u12\"}]}",
	     "invalid \\u escape"},
	    {"{\"done\":true,\"records\":[{\"a\":tru}]}", "invalid literal"},
	    {"{\"done\":true,\"records\":[{\"a\":-}]}", "invalid number"},
	    {"{\"done\":true,\"records\":[{\"a\":1.}]}", "invalid number"},
	    {"{\"done\":true,\"records\":[{\"a\":1e}]}", "invalid number"},
	    {"{\"totalSize\":1.5,\"done\":true,\"records\":[]}",
	     "not an integer"},
	    {"{\"totalSize\":12345678901234567890,\"done\":true,"
	     "\"records\":[]}",
	     "too large"},
	    {"{\"done\":true,\"records\":[{1:2}]}", "expected a string"},
	    {"{\"done\":true,\"records\":[{\"a\" 2}]}", "unexpected character"},
	    {"{\"done\":true,\"records\":[]", "expected ','"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct soql_page p;
		char err[128] = "";
		const char *b = cases[i].body;
		int rc = soql_page_decode(b, strlen(b), &p, err, sizeof(err));
		check_refused(b, rc, err, cases[i].want);
		assert_null(p.records);
		assert_null(p.next_url);
	}
}

static void
test_page_depth_limit(void **state)
{
	(void)state;
	char body[1024];
	struct soql_page p;
	char err[128];
	/* Nesting inside a record is bounded (64 levels): deeper is an
	 * error, not a stack overflow. */
	for (int depth = 60; depth <= 80; depth += 20) {
		size_t o = (size_t)snprintf(
		    body, sizeof(body), "{\"done\":true,\"records\":[{\"a\":");
		for (int i = 0; i < depth; i++)
			body[o++] = '[';
		for (int i = 0; i < depth; i++)
			body[o++] = ']';
		snprintf(body + o, sizeof(body) - o, "}]}");
		int rc =
		    soql_page_decode(body, strlen(body), &p, err, sizeof(err));
		if (depth == 60) {
			assert_int_equal(rc, 0);
			assert_int_equal(p.nrecords, 1);
		} else {
			assert_int_equal(rc, -1);
			assert_non_null(strstr(err, "nesting too deep"));
		}
		soql_page_clear(&p);
	}
}

static char *
payload_of(const char *rec, const char *const *drop, size_t ndrop,
           const char *first, int *rc)
{
	struct soql_record r = {rec, strlen(rec)};
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, "<", 1);
	*rc = soql_record_payload(&r, drop, ndrop, first, b);
	return take_free(b);
}

static void
test_record_payload(void **state)
{
	(void)state;
	struct soql_page p;
	decode_page_json(&p);
	struct evbuffer *b = evbuffer_new();
	const char *drop[] = {"id", "CreatedDate"};
	assert_int_equal(soql_record_payload(&p.records[0], drop, 2, NULL, b),
	                 0);
	char *s = take(b);
	assert_string_equal(
	    s, "{\"Action\":\"changedPassword\",\"CreatedBy\":{\"Username\":"
	       "\"admin@example.com\"},\"Display\":\"Changed \\\"x\\\" "
	       "\\u00e9\\ud83d\\ude00\",\"DelegateUser\":null}");
	free(s);
	/* Attributes go at any depth, arrays of objects included; numbers
	 * keep their text. */
	assert_int_equal(soql_record_payload(&p.records[1], NULL, 0,
	                                     "\"backfill_for\":\"/data/X\"", b),
	                 0);
	s = take(b);
	assert_string_equal(
	    s, "{\"backfill_for\":\"/data/X\",\"Id\":\"0Ymxx0000000002AAA\","
	       "\"Nums\":[1,2.5e3,-0.5],\"Deep\":{\"a\":[{\"b\":true}]},"
	       "\"CreatedDate\":\"2026-11-26T19:20:02.000+0000\"}");
	free(s);
	evbuffer_free(b);
	soql_page_clear(&p);

	int rc;
	/* Only an object named attributes is metadata. */
	s = payload_of("{\"attributes\":\"keep\",\"a\":[]}", NULL, 0, NULL,
	               &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(s, "<{\"attributes\":\"keep\",\"a\":[]}");
	free(s);
	/* Everything dropped: an empty object, or just the first member. */
	const char *all[] = {"a"};
	s = payload_of("{\"attributes\":{},\"a\":1}", all, 1, NULL, &rc);
	assert_string_equal(s, "<{}");
	free(s);
	s = payload_of("{\"a\":1}", all, 1, "\"k\":2", &rc);
	assert_string_equal(s, "<{\"k\":2}");
	free(s);
	/* Raw control bytes (tolerated on input) leave escaped: strict
	 * JSON for whoever reads the payload. */
	s = payload_of("{\"a\x01\":\"x\ny\x1f\"}", NULL, 0, NULL, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(s, "<{\"a\\u0001\":\"x\\u000ay\\u001f\"}");
	free(s);
	/* Malformed: -1 and the buffer is left as it was. */
	static const char *const bad[] = {"{\"a\":[1,}", "[1]", "{\"a\":1} x",
	                                  "{\"a\"", ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s = payload_of(bad[i], NULL, 0, "\"k\":1", &rc);
		assert_int_equal(rc, -1);
		assert_string_equal(s, "<");
		free(s);
	}
}

static void
test_composite_decode(void **state)
{
	(void)state;
	const char *body =
	    "{\"compositeResponse\":[{\"body\":{\"totalSize\":1,\"done\":"
	    "true,\"records\":[{\"Id\":\"1\"}]},\"httpHeaders\":{},"
	    "\"httpStatusCode\":200,\"referenceId\":\"r0\"},\n"
	    "{\"referenceId\":\"r1\",\"httpStatusCode\":400,\"body\":[{"
	    "\"errorCode\":\"MALFORMED_QUERY\",\"message\":\"bad\"}]},"
	    "{\"referenceId\":\"a-very-long-reference-id-beyond-32-bytes\","
	    "\"body\":null}]}";
	struct soql_sub *subs;
	size_t n;
	char err[128];
	assert_int_equal(soql_composite_decode(body, strlen(body), &subs, &n,
	                                       err, sizeof(err)),
	                 0);
	assert_int_equal(n, 3);
	assert_string_equal(subs[0].ref, "r0");
	assert_int_equal(subs[0].status, 200);
	struct soql_page p;
	assert_int_equal(
	    soql_page_decode(subs[0].body, subs[0].len, &p, err, sizeof(err)),
	    0);
	assert_int_equal(p.nrecords, 1);
	soql_page_clear(&p);
	assert_string_equal(subs[1].ref, "r1");
	assert_int_equal(subs[1].status, 400);
	char code[64], msg[64];
	assert_int_equal(soql_error_parse(subs[1].body, subs[1].len, code,
	                                  sizeof(code), msg, sizeof(msg)),
	                 0);
	assert_string_equal(code, "MALFORMED_QUERY");
	assert_string_equal(subs[2].ref, "");
	assert_int_equal(subs[2].status, 0);
	assert_int_equal(subs[2].len, 4);
	free(subs);

	static const char *const bad[] = {
	    "",
	    "[]",
	    "{}",
	    "{\"compositeResponse\":{}}",
	    "{\"compositeResponse\":[1]}",
	    "{\"compositeResponse\":[{\"httpStatusCode\":\"200\"}]}",
	    "{\"compositeResponse\":[{\"httpStatusCode\":1000}]}",
	    "{\"compositeResponse\":[{\"referenceId\":5}]}",
	    "{\"compositeResponse\":[{\"body\":}]}",
	    "{\"compositeResponse\":[]} trailing",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		subs = (void *)1;
		if (soql_composite_decode(bad[i], strlen(bad[i]), &subs, &n,
		                          err, sizeof(err)) != -1)
			fail_msg("accepted %s", bad[i]);
		assert_null(subs);
		assert_int_equal(n, 0);
	}
	/* An empty list is well-formed. */
	const char *empty = "{\"compositeResponse\":[]}";
	assert_int_equal(soql_composite_decode(empty, strlen(empty), &subs, &n,
	                                       err, sizeof(err)),
	                 0);
	assert_int_equal(n, 0);
	free(subs);
}

static void
test_error_parse(void **state)
{
	(void)state;
	char code[32], msg[128];
	const char *expired = "[{\"message\":\"Session expired or invalid\","
	                      "\"errorCode\":\"INVALID_SESSION_ID\"}]";
	assert_int_equal(soql_error_parse(expired, strlen(expired), code,
	                                  sizeof(code), msg, sizeof(msg)),
	                 0);
	assert_string_equal(code, "INVALID_SESSION_ID");
	assert_string_equal(msg, "Session expired or invalid");
	/* Salesforce's multi-line MALFORMED_QUERY message becomes one line. */
	const char *malformed =
	    "[{\"message\":\"\\nSELECT Id FRM Account\\n          ^\\n"
	    "ERROR at Row:1:Column:11\\nunexpected token: FRM\","
	    "\"errorCode\":\"MALFORMED_QUERY\"}]";
	assert_int_equal(soql_error_parse(malformed, strlen(malformed), code,
	                                  sizeof(code), msg, sizeof(msg)),
	                 0);
	assert_string_equal(msg, "SELECT Id FRM Account ^ ERROR at "
	                         "Row:1:Column:11 unexpected token: FRM");
	const char *obj = "{\"errorCode\":\"X\",\"fields\":[\"a\"]}";
	assert_int_equal(soql_error_parse(obj, strlen(obj), code, sizeof(code),
	                                  msg, sizeof(msg)),
	                 0);
	assert_string_equal(code, "X");
	assert_string_equal(msg, "");
	/* Truncated into small buffers, still terminated. */
	char small[8];
	assert_int_equal(soql_error_parse(expired, strlen(expired), small,
	                                  sizeof(small), msg, sizeof(msg)),
	                 0);
	assert_string_equal(small, "INVALID");
	static const char *const bad[] = {
	    "",   "<html>", "[]",        "[1]",
	    "{}", "[{}]",   "{\"a\":1}", "[{\"message\":"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		strcpy(code, "x");
		strcpy(msg, "y");
		assert_int_equal(soql_error_parse(bad[i], strlen(bad[i]), code,
		                                  sizeof(code), msg,
		                                  sizeof(msg)),
		                 -1);
		assert_string_equal(code, "");
		assert_string_equal(msg, "");
	}
}

static void
test_limit_info(void **state)
{
	(void)state;
	static const struct {
		const char *h;
		int rc;
		long long used, max;
	} cases[] = {
	    {"api-usage=25/15000", 0, 25, 15000},
	    {"api-usage=0/5000", 0, 0, 5000},
	    {"api-usage=18/5000; per-app-api-usage=17/250(appName=app)", 0, 18,
	     5000},
	    {"per-app-api-usage=17/250(appName=app); api-usage=19/5000", 0, 19,
	     5000},
	    {"per-app-api-usage=17/250(appName=app)", -1, 0, 0},
	    {"  api-usage=7/100 ", 0, 7, 100},
	    {"x=1,api-usage=8/100", 0, 8, 100},
	    {"api-usage=120000/100000", 0, 120000, 100000},
	    {"api-usage=1/0", -1, 0, 0},
	    {"api-usage=/100", -1, 0, 0},
	    {"api-usage=1/", -1, 0, 0},
	    {"api-usage=1-100", -1, 0, 0},
	    {"api-usage=1/100x", -1, 0, 0},
	    {"api-usage=-1/100", -1, 0, 0},
	    {"api-usage=1234567890123456789/2", -1, 0, 0},
	    {"garbage", -1, 0, 0},
	    {"", -1, 0, 0},
	    {"api-usage=bad; api-usage=3/9", 0, 3, 9},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long used = -5, max = -5;
		int rc = soql_limit_info(cases[i].h, &used, &max);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d", cases[i].h, rc);
		if (rc == 0) {
			assert_int_equal(used, cases[i].used);
			assert_int_equal(max, cases[i].max);
		} else {
			assert_int_equal(used, -5);
		}
	}
	long long u, m;
	assert_int_equal(soql_limit_info(NULL, &u, &m), -1);
}

/* --- the high-water mark -------------------------------------------------- */

static char *
mark_text(const struct soql_mark *m)
{
	struct evbuffer *b = evbuffer_new();
	assert_int_equal(soql_mark_format(m, b), 0);
	return take_free(b);
}

static void
test_mark_rule(void **state)
{
	(void)state;
	struct soql_mark *m = soql_mark_new();
	struct evbuffer *b = evbuffer_new();
	assert_false(soql_mark_is_set(m));
	assert_int_equal(soql_mark_format(m, b), -1);
	/* An unset mark takes anything. */
	assert_int_equal(soql_mark_offer(m, T0, "B"), SOQL_NEW);
	assert_int_equal(soql_mark_offer(m, T0, "A"), SOQL_NEW);
	assert_int_equal(soql_mark_offer(m, T0, "B"), SOQL_SEEN);
	assert_int_equal(soql_mark_offer(m, T0 - 1, "C"), SOQL_OLDER);
	assert_int_equal(soql_mark_count(m), 2);
	char *s = mark_text(m);
	assert_string_equal(s, "2026-11-26T19:20:01.000Z|A,B");
	free(s);
	/* A later time forgets the ids of the earlier one. */
	assert_int_equal(soql_mark_offer(m, T0 + 5, "A"), SOQL_NEW);
	assert_int_equal(soql_mark_time(m), T0 + 5);
	assert_int_equal(soql_mark_count(m), 1);
	assert_int_equal(soql_mark_offer(m, T0, "Z"), SOQL_OLDER);
	s = mark_text(m);
	assert_string_equal(s, "2026-11-26T19:20:01.005Z|A");
	free(s);
	/* Ids that the text form cannot hold. */
	assert_int_equal(soql_mark_offer(m, T0 + 9, "a,b"), SOQL_BAD);
	assert_int_equal(soql_mark_offer(m, T0 + 9, "a|b"), SOQL_BAD);
	assert_int_equal(soql_mark_offer(m, T0 + 9, ""), SOQL_BAD);
	char longid[70];
	memset(longid, 'x', 65);
	longid[65] = '\0';
	assert_int_equal(soql_mark_offer(m, T0 + 9, longid), SOQL_BAD);
	assert_int_equal(soql_mark_time(m), T0 + 5); /* unchanged */
	assert_int_equal(
	    soql_mark_offer(m, T0 + 9, "e8b0d5b2-1c1f-4c35-9a3e-5d0f1b2c3d4e"),
	    SOQL_NEW);
	soql_mark_reset(m, T0);
	assert_int_equal(soql_mark_count(m), 0);
	s = mark_text(m);
	assert_string_equal(s, "2026-11-26T19:20:01.000Z|");
	free(s);
	evbuffer_free(b);
	soql_mark_free(m);
	soql_mark_free(NULL);
}

static void
test_mark_text_form(void **state)
{
	(void)state;
	struct soql_mark *m = soql_mark_new();
	struct soql_mark *c = soql_mark_new();
	assert_int_equal(soql_mark_parse(m, "2026-11-26T19:20:01.000Z|"
	                                    "0Ymxx02,0Ymxx01,0Ymxx02"),
	                 0);
	assert_int_equal(soql_mark_time(m), T0);
	assert_int_equal(soql_mark_count(m), 2); /* sorted, duplicates once */
	char *s = mark_text(m);
	assert_string_equal(s, "2026-11-26T19:20:01.000Z|0Ymxx01,0Ymxx02");
	free(s);
	assert_int_equal(soql_mark_offer(m, T0, "0Ymxx01"), SOQL_SEEN);
	/* Other ISO forms Salesforce writes are read too. */
	assert_int_equal(soql_mark_parse(m, "2026-11-26T19:20:01.000+0000|"),
	                 0);
	assert_int_equal(soql_mark_time(m), T0);
	assert_int_equal(soql_mark_count(m), 0);
	static const char *const bad[] = {
	    "",
	    "2026-11-26T19:20:01.000Z",
	    "|a",
	    "yesterday|a",
	    "2026-11-26T19:20:01.000Z|a,",
	    "2026-11-26T19:20:01.000Z|,a",
	    "2026-11-26T19:20:01.000Z|a,,b",
	    "2026-11-26T19:20:01.000Z|a b",
	    "2026-11-26T19:20:01.000Z|a|b",
	    "2026-13-26T19:20:01.000Z|a",
	};
	assert_int_equal(soql_mark_parse(c, "2026-11-26T19:20:02.000Z|k"), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (soql_mark_parse(c, bad[i]) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
		/* A failed parse leaves the mark as it was. */
		assert_int_equal(soql_mark_time(c), T0 + 1000);
		assert_int_equal(soql_mark_count(c), 1);
	}
	assert_int_equal(soql_mark_parse(c, NULL), -1);
	assert_int_equal(soql_mark_copy(c, m), 0);
	assert_int_equal(soql_mark_offer(m, T0, "x"), SOQL_NEW);
	assert_int_equal(soql_mark_count(c), 0); /* a copy, not an alias */
	assert_int_equal(soql_mark_offer(c, T0, "x"), SOQL_NEW);
	soql_mark_free(m);
	soql_mark_free(c);
}

/*
 * The boundary rule end to end: a server holding records in (time, id)
 * order answers "time >= mark" a page at a time; records keep arriving at
 * the mark's own time between polls, and the client restarts from the
 * checkpoint text now and then. Every record must come out exactly once.
 */
struct rec {
	long long t;
	char id[16];
};

static int
rec_cmp(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;
	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	return strcmp(x->id, y->id);
}

static void
test_boundary_simulation(void **state)
{
	(void)state;
	enum { MAXREC = 400, PAGE = 7 };
	struct rec *db = calloc(MAXREC, sizeof(*db));
	int *seen = calloc(MAXREC, sizeof(int));
	size_t ndb = 0;
	unsigned seed = 7;
	struct soql_mark *m = soql_mark_new();
	soql_mark_reset(m, T0);
	long long newest = T0;
	for (int poll = 0; poll < 40; poll++) {
		/* New records, never older than the newest one so far (a
		 * record committed late with an older time is the rule's
		 * known limit, not what this checks); many share it. */
		int add =
		    (int)((seed = seed * 1103515245u + 12345u) >> 16) % 12;
		for (int i = 0; i < add && ndb < MAXREC; i++) {
			seed = seed * 1103515245u + 12345u;
			if ((seed >> 16) % 4 == 0)
				newest += 1000;
			db[ndb].t = newest;
			/* "R" + 5 random digits + the insertion index: ids
			 * at one time are not in insertion order. */
			snprintf(db[ndb].id, sizeof(db[ndb].id), "R%05u%03zu",
			         (seed >> 8) % 90000, ndb);
			ndb++;
		}
		qsort(db, ndb, sizeof(*db), rec_cmp);
		/* The query: a snapshot, then pages. */
		long long since = soql_mark_time(m);
		size_t first = 0;
		while (first < ndb && db[first].t < since)
			first++;
		for (size_t i = first; i < ndb; i++) {
			if (soql_mark_offer(m, db[i].t, db[i].id) != SOQL_NEW)
				continue;
			int idx = atoi(db[i].id + 6);
			seen[idx]++;
			if ((i - first) % PAGE == PAGE - 1 && poll % 4 == 1) {
				/* A restart from the checkpoint text. */
				char *txt = mark_text(m);
				struct soql_mark *m2 = soql_mark_new();
				assert_int_equal(soql_mark_parse(m2, txt), 0);
				soql_mark_free(m);
				m = m2;
				free(txt);
			}
		}
	}
	assert_true(ndb > 100);
	for (size_t i = 0; i < ndb; i++)
		if (seen[i] != 1)
			fail_msg("record %zu emitted %d times", i, seen[i]);
	soql_mark_free(m);
	free(seen);
	free(db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_datetime_literal),
	    cmocka_unit_test(test_spec_good),
	    cmocka_unit_test(test_spec_backfill_form),
	    cmocka_unit_test(test_spec_bad),
	    cmocka_unit_test(test_poll_list),
	    cmocka_unit_test(test_poll_list_problems),
	    cmocka_unit_test(test_split),
	    cmocka_unit_test(test_list_parse),
	    cmocka_unit_test(test_build_queries),
	    cmocka_unit_test(test_url_escape),
	    cmocka_unit_test(test_build_composite),
	    cmocka_unit_test(test_page_decode),
	    cmocka_unit_test(test_page_done_and_empty),
	    cmocka_unit_test(test_page_malformed),
	    cmocka_unit_test(test_page_depth_limit),
	    cmocka_unit_test(test_record_payload),
	    cmocka_unit_test(test_composite_decode),
	    cmocka_unit_test(test_error_parse),
	    cmocka_unit_test(test_limit_info),
	    cmocka_unit_test(test_mark_rule),
	    cmocka_unit_test(test_mark_text_form),
	    cmocka_unit_test(test_boundary_simulation),
	};
	return cmocka_run_group_tests_name("soql", tests, NULL, NULL);
}
