/*
 * backfill: which query recovers which replay gap, and the
 * SFRELAY_BACKFILL syntax.
 */
#include "sfrelay/backfill.h"
#include "sfrelay/checkpoint.h"
#include "soql_fixture.h"

/* 2026-11-26T19:20:01Z */
#define T0 1795720801000LL

static void
test_cdc_object(void **state)
{
	(void)state;
	static const struct {
		const char *channel;
		const char *want; /* NULL: not a per-object CDC channel */
	} cases[] = {
	    {"/data/AccountChangeEvent", "Account"},
	    {"/data/OpportunityChangeEvent", "Opportunity"},
	    {"/data/Invoice__ChangeEvent", "Invoice__c"},
	    {"/data/ns__Invoice__ChangeEvent", "ns__Invoice__c"},
	    {"/data/AccountChangeEvent?x=1", "Account"},
	    {"/data/ChangeEvents", NULL},
	    {"/data/ChangeEvent", NULL},
	    {"/topic/AccountChangeEvent", NULL},
	    {"/data/Acc-ountChangeEvent", NULL},
	    {"/data/", NULL},
	};
	char buf[64];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc =
		    backfill_cdc_object(cases[i].channel, buf, sizeof(buf));
		if (cases[i].want == NULL) {
			assert_int_equal(rc, -1);
		} else {
			assert_int_equal(rc, 0);
			assert_string_equal(buf, cases[i].want);
		}
	}
	/* Too small a buffer is a refusal, not an overflow. */
	assert_int_equal(
	    backfill_cdc_object("/data/AccountChangeEvent", buf, 7), -1);
	assert_int_equal(
	    backfill_cdc_object("/data/AccountChangeEvent", buf, 8), 0);
}

static void
test_parse_maps(void **state)
{
	(void)state;
	static const struct {
		const char *channel, *object, *time, *fields, *where;
	} want[] = {
	    {"/topic/AccountWatch", "Account", "LastModifiedDate",
	     "FIELDS(STANDARD)", NULL},
	    {"/topic/Cases", "Case", "SystemModstamp",
	     "SystemModstamp, Id, Subject", "IsClosed = false"},
	    {"/event/Order__e", "Order__c", "LastModifiedDate",
	     "FIELDS(STANDARD)", NULL},
	};
	struct backfill_map *maps;
	size_t n;
	struct problems pr = {"", 0};
	const char *text = "/topic/AccountWatch=Account, /topic/Cases = "
	                   "Case:SystemModstamp(Id, Subject)[IsClosed = false],"
	                   "/event/Order__e=Order__c";
	assert_int_equal(backfill_parse(text, &maps, &n, collect, &pr), 0);
	assert_int_equal(pr.n, 0);
	assert_int_equal(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n; i++) {
		const struct soql_spec *s = &maps[i].spec;
		assert_string_equal(maps[i].channel, want[i].channel);
		assert_string_equal(s->object, want[i].object);
		assert_string_equal(s->time_field, want[i].time);
		assert_string_equal(s->fields, want[i].fields);
		if (want[i].where == NULL)
			assert_null(s->where);
		else
			assert_string_equal(s->where, want[i].where);
		assert_int_equal(s->interval_ms, 0);
	}
	backfill_maps_free(maps, n);
}

static int
parse_count(const char *text, size_t *n, soql_problem_fn *problem, void *arg)
{
	struct backfill_map *maps;
	int rc = backfill_parse(text, &maps, n, problem, arg);
	backfill_maps_free(maps, *n);
	return rc;
}

static void
test_parse_maps_bad(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int n;
		const char *want[8];
	} cases[] = {
	    {"/topic/A=Account@5m,Account,/foo/B=Account,/topic/C=,"
	     "/topic/D=Case,/topic/D?x=1=Case,,/topic/ x=Case",
	     7,
	     {"item 1 \"/topic/A=Account@5m\": a backfill mapping takes no "
	      "@interval",
	      "item 2 \"Account\": must be channel=Object",
	      "item 3 \"/foo/B=Account\": the channel must be",
	      "item 4 \"/topic/C=\": empty item",
	      "item 6 \"/topic/D?x=1=Case\": name the channel without its "
	      "?filter",
	      "item 7 is empty",
	      "item 8 \"/topic/ x=Case\": the channel must be"}},
	    {"/topic/D=Case,/topic/D=Account",
	     1,
	     {"item 2 \"/topic/D=Account\": channel mapped twice"}},
	    /* The same channel with another filter is the same channel. */
	    {"/topic/D=Case, /topic/D?a=1 =Account", 1, {"item 2", "?filter"}},
	    {"/data/X=Case ,/data/X \t= Lead",
	     1,
	     {"item 2 \"/data/X \\x09= Lead\": channel mapped twice"}},
	    {"=Case", 1, {"item 1 \"=Case\": the channel must be"}},
	    {"/u/=Case", 1, {"the channel must be"}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct backfill_map *maps = (void *)1;
		size_t n = 99;
		struct problems pr = {"", 0};
		assert_int_equal(
		    backfill_parse(cases[i].text, &maps, &n, collect, &pr), -1);
		assert_null(maps);
		assert_int_equal(n, 0);
		check_problems(&pr, cases[i].n, cases[i].want);
	}

	check_list_limit(parse_count, "/topic/T", "=Account");
}

static const struct checkpoint_gap gap_template = {
    .key = "/data/AccountChangeEvent",
    .after_position = "17",
    .after_created = "2026-11-26T19:20:01.000Z",
    .detected = "2026-11-26T20:20:01.000Z",
};

static char *
window_query(const struct backfill_plan *plan)
{
	struct evbuffer *b = evbuffer_new();
	assert_int_equal(
	    soql_build_window(b, &plan->spec, plan->from_ms, plan->to_ms), 0);
	return take_free(b);
}

static void
test_plan_cdc(void **state)
{
	(void)state;
	struct backfill_plan plan;
	char why[256];
	struct checkpoint_gap g = gap_template;
	assert_int_equal(
	    backfill_plan(&g, NULL, 0, NULL, 0, &plan, why, sizeof(why)),
	    BACKFILL_PLANNED);
	assert_string_equal(plan.spec.object, "Account");
	assert_int_equal(plan.from_ms, T0 - BACKFILL_MARGIN_MS);
	assert_int_equal(plan.to_ms, T0 + 3600000);
	char *q = window_query(&plan);
	assert_string_equal(q,
	                    "SELECT FIELDS(STANDARD) FROM Account WHERE "
	                    "LastModifiedDate >= 2026-11-26T19:15:01Z AND "
	                    "LastModifiedDate <= 2026-11-26T20:20:01Z ORDER BY "
	                    "LastModifiedDate, Id");
	free(q);
	backfill_plan_clear(&plan);

	/* A polled object lends its spec (fields, time field, condition). */
	struct soql_spec *polls;
	size_t npolls;
	assert_int_equal(soql_poll_parse("Account:SystemModstamp@2m(Name)"
	                                 "[Industry != null]",
	                                 &polls, &npolls, NULL, NULL),
	                 0);
	assert_int_equal(
	    backfill_plan(&g, NULL, 0, polls, npolls, &plan, why, sizeof(why)),
	    BACKFILL_PLANNED);
	q = window_query(&plan);
	assert_string_equal(q,
	                    "SELECT Id, SystemModstamp, Name FROM Account "
	                    "WHERE SystemModstamp >= 2026-11-26T19:15:01Z AND "
	                    "SystemModstamp <= 2026-11-26T20:20:01Z AND "
	                    "(Industry != null) ORDER BY SystemModstamp, Id");
	free(q);
	backfill_plan_clear(&plan);
	soql_specs_free(polls, npolls);

	g.key = "/data/Invoice__ChangeEvent";
	assert_int_equal(
	    backfill_plan(&g, NULL, 0, NULL, 0, &plan, why, sizeof(why)),
	    BACKFILL_PLANNED);
	assert_string_equal(plan.spec.object, "Invoice__c");
	backfill_plan_clear(&plan);
}

static void
test_plan_monitoring_and_maps(void **state)
{
	(void)state;
	struct backfill_plan plan;
	char why[256];
	struct checkpoint_gap g = gap_template;
	g.key = "/event/LoginEventStream";
	assert_int_equal(
	    backfill_plan(&g, NULL, 0, NULL, 0, &plan, why, sizeof(why)),
	    BACKFILL_PLANNED);
	assert_string_equal(plan.spec.object, "LoginEvent");
	assert_string_equal(plan.spec.id_field, "EventIdentifier");
	assert_int_equal(plan.spec.big, 1);
	char *q = window_query(&plan);
	assert_null(strstr(q, "ORDER BY"));
	free(q);
	backfill_plan_clear(&plan);

	struct backfill_map *maps;
	size_t n;
	assert_int_equal(backfill_parse("/topic/AccountWatch=Account(Id,Name),"
	                                "/data/AccountChangeEvent=Contact",
	                                &maps, &n, NULL, NULL),
	                 0);
	g.key = "/topic/AccountWatch?Industry=Banking";
	assert_int_equal(
	    backfill_plan(&g, maps, n, NULL, 0, &plan, why, sizeof(why)),
	    BACKFILL_PLANNED);
	assert_string_equal(plan.spec.object, "Account");
	assert_string_equal(plan.spec.fields, "LastModifiedDate, Id, Name");
	backfill_plan_clear(&plan);
	/* A mapping wins over the CDC rule. */
	g.key = "/data/AccountChangeEvent";
	assert_int_equal(
	    backfill_plan(&g, maps, n, NULL, 0, &plan, why, sizeof(why)),
	    BACKFILL_PLANNED);
	assert_string_equal(plan.spec.object, "Contact");
	backfill_plan_clear(&plan);
	backfill_maps_free(maps, n);
}

static void
test_plan_unmapped_and_invalid(void **state)
{
	(void)state;
	static const struct {
		const char *key, *created, *detected;
		enum backfill_verdict want;
		const char *why;
	} cases[] = {
	    {"/topic/AccountWatch", "2026-11-26T19:20:01.000Z",
	     "2026-11-26T20:00:00.000Z", BACKFILL_UNMAPPED,
	     "SFRELAY_BACKFILL=/topic/AccountWatch=<its object>"},
	    {"/event/Order__e", "2026-11-26T19:20:01.000Z",
	     "2026-11-26T20:00:00.000Z", BACKFILL_UNMAPPED,
	     "platform events are not stored"},
	    {"/u/Notices", "2026-11-26T19:20:01.000Z",
	     "2026-11-26T20:00:00.000Z", BACKFILL_UNMAPPED,
	     "generic streaming"},
	    {"/data/ChangeEvents", "2026-11-26T19:20:01.000Z",
	     "2026-11-26T20:00:00.000Z", BACKFILL_UNMAPPED,
	     "carries several objects"},
	    {"/data/AccountChangeEvent", NULL, "2026-11-26T20:00:00.000Z",
	     BACKFILL_INVALID, "no start time"},
	    {"/data/AccountChangeEvent", "soon", "2026-11-26T20:00:00.000Z",
	     BACKFILL_INVALID, "no start time"},
	    {"/data/AccountChangeEvent", "2026-11-26T19:20:01.000Z", "x",
	     BACKFILL_INVALID, "no valid detection time"},
	    {"/data/AccountChangeEvent", "2026-11-26T19:20:01.000Z",
	     "2026-11-26T18:00:00.000Z", BACKFILL_INVALID,
	     "ends before it starts"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct checkpoint_gap g = {cases[i].key, "5", cases[i].created,
		                           cases[i].detected};
		struct backfill_plan plan;
		char why[256] = "";
		enum backfill_verdict v = backfill_plan(
		    &g, NULL, 0, NULL, 0, &plan, why, sizeof(why));
		if (v != cases[i].want || strstr(why, cases[i].why) == NULL)
			fail_msg("%s: verdict %d, why \"%s\"", cases[i].key,
			         (int)v, why);
		assert_null(plan.spec.object);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cdc_object),
	    cmocka_unit_test(test_parse_maps),
	    cmocka_unit_test(test_parse_maps_bad),
	    cmocka_unit_test(test_plan_cdc),
	    cmocka_unit_test(test_plan_monitoring_and_maps),
	    cmocka_unit_test(test_plan_unmapped_and_invalid),
	};
	return cmocka_run_group_tests_name("backfill", tests, NULL, NULL);
}
