/*
 * The SOQL poller and the backfill against sfmock: records come out
 * exactly once (equal timestamps across pages and polls included),
 * paging follows nextRecordsUrl, restarts resume from the checkpointed
 * high-water mark, SIGKILL loses nothing, the API budget stretches the
 * intervals, a revoked session is renewed, objects due together share
 * one composite call, and stream gaps are recovered by query.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"

#define MAX_EXTRA 16

static void
start_mock(struct e2e_fixture *f, const char *const *flags)
{
	f->port = sfmock_start(&f->mock, f->dir, flags);
	assert_true(f->port > 0);
}

/* The relay with fast retries, no stats line (stdout holds only event
 * lines), and the given settings first (they win). */
static void
start_relay(struct e2e_fixture *f, const char *channels,
            const char *const *extra)
{
	static const char *const defaults[] = {
	    "SFRELAY_BACKOFF_MIN=50ms",
	    "SFRELAY_BACKOFF_MAX=400ms",
	    "SFRELAY_CHECKPOINT_INTERVAL=100ms",
	    "SFRELAY_STATS_INTERVAL=0",
	};
	const char *env[MAX_EXTRA + 8];
	size_t n = 0;
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < MAX_EXTRA;
	     i++)
		env[n++] = extra[i];
	/* No name twice: a wrapper such as valgrind may reorder the
	 * environment, and then the wrong one would win. */
	size_t nextra = n;
	for (size_t d = 0; d < sizeof(defaults) / sizeof(defaults[0]); d++) {
		size_t len = strcspn(defaults[d], "=") + 1;
		size_t i = 0;
		while (i < nextra && strncmp(env[i], defaults[d], len) != 0)
			i++;
		if (i == nextra)
			env[n++] = defaults[d];
	}
	env[n] = NULL;
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, channels, env),
	                 0);
}

/* An ISO time offset_ms from now, as the mock takes it. */
static void
iso_from_now(char *buf, size_t len, long long offset_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	long long ms =
	    (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + offset_ms;
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	         tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* Inserts count generated records of object at time (NULL: now), each
 * step_ms after the previous one, with body's fields. */
static void
insert(struct e2e_fixture *f, const char *object, int count, const char *time,
       int step_ms, const char *body)
{
	char url[512], resp[512];
	int n = snprintf(url, sizeof(url),
	                 "http://127.0.0.1:%d/_mock/records?object=%s&count=%d"
	                 "&step_ms=%d",
	                 f->port, object, count, step_ms);
	if (time != NULL)
		snprintf(url + n, sizeof(url) - (size_t)n, "&time=%s", time);
	const char *hdr[] = {"Content-Type: application/json", NULL};
	long st = http_call("POST", url, hdr, body != NULL ? body : "", resp,
	                    sizeof(resp));
	if (st != 200)
		fail_msg("insert %s: HTTP %ld %s", object, st, resp);
}

static long long
json_number(const char *json, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(json, pat);
	return p != NULL ? atoll(p + strlen(pat)) : -1;
}

/* A counter from /_mock/query-stats or /_mock/stats. */
static long long
mock_counter(struct e2e_fixture *f, const char *path, const char *key)
{
	char url[256], resp[16384];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->port, path);
	assert_int_equal(http_call("GET", url, NULL, NULL, resp, sizeof(resp)),
	                 200);
	return json_number(resp, key);
}

static void
mock_post(struct e2e_fixture *f, const char *path)
{
	char url[256], resp[512];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->port, path);
	assert_int_equal(http_call("POST", url, NULL, "", resp, sizeof(resp)),
	                 200);
}

/*
 * The number in each "id=<object>:<prefix>xx<10 digits>AAA" of the
 * output, in order; returns the count. With prefix NULL any object.
 */
static size_t
read_ids(const char *path, const char *object, int *ids, size_t max)
{
	char needle[96];
	snprintf(needle, sizeof(needle), " id=%s:", object);
	char *all = file_read(path, NULL);
	size_t n = 0;
	for (char *p = all;
	     p != NULL && (p = strstr(p, needle)) != NULL && n < max; p++)
		ids[n++] = atoi(p + strlen(needle) + 5);
	free(all);
	return n;
}

/* Each of 1..total exactly once; returns the first misfit or 0. */
static int
exactly_once(const int *ids, size_t n, int total)
{
	char *seen = calloc((size_t)total + 2, 1);
	int bad = 0;
	for (size_t i = 0; i < n && bad == 0; i++) {
		if (ids[i] < 1 || ids[i] > total || seen[ids[i]])
			bad = ids[i] != 0 ? ids[i] : -1;
		else
			seen[ids[i]] = 1;
	}
	for (int k = 1; k <= total && bad == 0; k++)
		if (!seen[k])
			bad = k;
	free(seen);
	return bad;
}

static size_t
count_in(const char *path, const char *needle)
{
	return (size_t)file_count(path, needle);
}

/* Waits until path holds at least n occurrences of needle. */
static int
wait_count(const char *path, const char *needle, size_t n, int timeout_ms)
{
	for (long long end = now_ms() + timeout_ms; now_ms() < end;
	     sleep_ms(20))
		if (count_in(path, needle) >= n)
			return 0;
	return -1;
}

/* --- polling ----------------------------------------------------------- */

static const char *const poll_audit[] = {
    "SFRELAY_POLL=SetupAuditTrail@1s",
    "SFRELAY_POLL_LOOKBACK=1h",
    NULL,
};

static void
test_audit_trail_exactly_once(void **state)
{
	struct e2e_fixture *f = *state;
	char t[64];
	start_mock(f, NULL);
	iso_from_now(t, sizeof(t), -10 * 60 * 1000);
	insert(f, "SetupAuditTrail", 5, t, 1000, NULL);
	/* Older than the look-back: never asked for. */
	iso_from_now(t, sizeof(t), -2 * 3600 * 1000);
	insert(f, "SetupAuditTrail", 2, t, 0, NULL);
	start_relay(f, "", poll_audit);
	assert_int_equal(wait_lines(f->dir, 5, 10000), 5);
	insert(f, "SetupAuditTrail", 3, NULL, 0, NULL);
	assert_int_equal(wait_lines(f->dir, 8, 10000), 8);
	sleep_ms(2500); /* more polls: nothing new may appear */
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);

	int ids[64];
	size_t n = read_ids(f->out, "SetupAuditTrail", ids, 64);
	assert_int_equal(n, 8);
	assert_int_equal(file_count_lines(f->out), 8);
	/* 1..5 and 8..10 (6 and 7 were older than the look-back). */
	static const int want[] = {1, 2, 3, 4, 5, 8, 9, 10};
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(ids[i], want[i]);
	assert_int_equal(count_in(f->out, "at=event src=poll "
	                                  "object=SetupAuditTrail id="
	                                  "SetupAuditTrail:0Ymxx0000000001AAA "
	                                  "created="),
	                 1);
	assert_int_equal(count_in(f->out, " CreatedBy.Username="
	                                  "admin@sfmock.test "),
	                 8);
	assert_int_equal(count_in(f->out, "attributes"), 0);
	assert_int_equal(count_in(f->out, " Id="), 0);
	/* The checkpoint is the high-water mark with its boundary ids. */
	assert_true(file_contains(f->ckpt, "\"SetupAuditTrail\""));
	assert_true(file_contains(f->ckpt, "|0Ymxx0000000008AAA,"
	                                   "0Ymxx0000000009AAA,"
	                                   "0Ymxx0000000010AAA\""));
	/* The query the relay sent has the promised shape. */
	char url[128], resp[16384];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_mock/query-stats",
	         f->port);
	assert_int_equal(http_call("GET", url, NULL, NULL, resp, sizeof(resp)),
	                 200);
	assert_non_null(strstr(resp, " FROM SetupAuditTrail WHERE CreatedDate "
	                             ">= "));
	assert_non_null(strstr(resp, " ORDER BY CreatedDate, Id"));
	f->ok = 1;
}

/* 2,100 records with one timestamp: the first page ends inside them;
 * more records with that same timestamp arrive after the first poll. */
static void
test_equal_timestamps_across_pages_and_polls(void **state)
{
	struct e2e_fixture *f = *state;
	char t[64];
	start_mock(f, NULL);
	iso_from_now(t, sizeof(t), -60 * 1000);
	insert(f, "SetupAuditTrail", 2100, t, 0, NULL);
	start_relay(f, "", poll_audit);
	assert_int_equal(wait_lines(f->dir, 2100, 20000), 2100);
	insert(f, "SetupAuditTrail", 50, t, 0, NULL); /* the same time */
	assert_int_equal(wait_lines(f->dir, 2150, 10000), 2150);
	char t2[64];
	iso_from_now(t2, sizeof(t2), -59 * 1000);
	insert(f, "SetupAuditTrail", 10, t2, 0, NULL);
	assert_int_equal(wait_lines(f->dir, 2160, 10000), 2160);
	sleep_ms(2500);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);

	static int ids[4000];
	size_t n = read_ids(f->out, "SetupAuditTrail", ids, 4000);
	assert_int_equal(n, 2160);
	assert_int_equal(exactly_once(ids, n, 2160), 0);
	assert_true(mock_counter(f, "/_mock/query-stats", "query_more") >= 1);
	f->ok = 1;
}

static void
test_paging_follows_next_records_url(void **state)
{
	struct e2e_fixture *f = *state;
	char t[64];
	start_mock(f, NULL);
	iso_from_now(t, sizeof(t), -30 * 60 * 1000);
	insert(f, "SetupAuditTrail", 4500, t, 1, NULL);
	start_relay(f, "", poll_audit);
	assert_int_equal(wait_lines(f->dir, 4500, 30000), 4500);
	sleep_ms(1500);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	static int ids[5000];
	size_t n = read_ids(f->out, "SetupAuditTrail", ids, 5000);
	assert_int_equal(n, 4500);
	for (size_t i = 0; i < n; i++) /* in (time, id) order */
		assert_int_equal(ids[i], (int)i + 1);
	/* Two more pages after the first, in one run. */
	assert_int_equal(mock_counter(f, "/_mock/query-stats", "query_more"),
	                 2);
	f->ok = 1;
}

static void
test_restart_resumes_without_repeats(void **state)
{
	struct e2e_fixture *f = *state;
	char t[64];
	start_mock(f, NULL);
	iso_from_now(t, sizeof(t), -20 * 60 * 1000);
	insert(f, "SetupAuditTrail", 100, t, 10, NULL);
	start_relay(f, "", poll_audit);
	assert_int_equal(wait_lines(f->dir, 100, 15000), 100);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	assert_true(file_contains(f->ckpt, "|0Ymxx0000000100AAA\""));
	/* The stored mark's time, which the next run must start from. */
	char since[96] = "since=";
	char *ck = file_read(f->ckpt, NULL);
	const char *pos = ck != NULL ? strstr(ck, "\"position\"") : NULL;
	pos = pos != NULL ? strchr(pos + 10, '"') : NULL;
	assert_non_null(pos);
	size_t tl = strcspn(pos + 1, "|");
	assert_true(tl < 40);
	memcpy(since + 6, pos + 1, tl);
	since[6 + tl] = '\0';
	free(ck);

	/* While down: new ones, and late ones at the mark's own time. */
	iso_from_now(t, sizeof(t), -10 * 60 * 1000);
	insert(f, "SetupAuditTrail", 40, t, 10, NULL);
	start_relay(f, "", poll_audit);
	assert_int_equal(wait_lines(f->dir, 140, 15000), 140);
	sleep_ms(2000);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	int ids[256];
	size_t n = read_ids(f->out, "SetupAuditTrail", ids, 256);
	assert_int_equal(n, 140);
	assert_int_equal(exactly_once(ids, n, 140), 0);
	/* The second run started from the stored mark, not from "now less
	 * the look-back". */
	assert_int_equal(count_in(f->err, "msg=polling object=SetupAuditTrail"),
	                 2);
	assert_int_equal(count_in(f->err, since), 1);
	f->ok = 1;
}

/* The number of the id in the stored position ("...|0Ymxx<n>AAA"). */
static int
checkpointed_id(const struct e2e_fixture *f)
{
	char *s = file_read(f->ckpt, NULL);
	const char *p = s != NULL ? strstr(s, "|0Ymxx") : NULL;
	int id = p != NULL ? atoi(p + 6) : 0;
	free(s);
	return id;
}

static int
max_id(const struct e2e_fixture *f)
{
	static int ids[20000];
	size_t n = read_ids(f->out, "SetupAuditTrail", ids, 20000);
	int m = 0;
	for (size_t i = 0; i < n; i++)
		m = ids[i] > m ? ids[i] : m;
	return m;
}

static void
test_sigkill_loses_nothing(void **state)
{
	struct e2e_fixture *f = *state;
	start_mock(f, NULL);
	const int rounds = 5, per = 400;
	/* Kill delays after the round's first line: before and after the
	 * checkpoint write (100 ms after the first acknowledgement). */
	static const int delay_ms[] = {0, 150, 20, 260, 60};
	int in_flight = 0;
	char t[64];
	for (int r = 0; r < rounds; r++) {
		/* Unique, increasing times across rounds. */
		iso_from_now(t, sizeof(t), -50 * 60 * 1000 + r * 60 * 1000);
		insert(f, "SetupAuditTrail", per, t, 1, NULL);
		start_relay(f, "", poll_audit);
		/* Kill while lines flow: after the first of this round. */
		size_t before = file_count_lines(f->out);
		assert_true(wait_lines(f->dir, before + 1, 15000) > before);
		sleep_ms(delay_ms[r]);
		assert_int_equal(proc_stop(&f->relay, SIGKILL, 5000),
		                 128 + SIGKILL);
		int written = max_id(f), saved = checkpointed_id(f);
		assert_true(saved <= written); /* never ahead of the sink */
		in_flight += written - saved;
	}
	start_relay(f, "", poll_audit);
	int total = rounds * per;
	/* Up before it is stopped: a round may already have stored the
	 * newest record, and a SIGTERM that beats the relay's handler would
	 * end it by the signal instead of a clean stop. */
	assert_int_equal(wait_log(f->dir, "msg=starting", rounds + 1, 15000),
	                 0);
	/* Done when the last run has acknowledged the newest record. */
	for (long long end = now_ms() + 30000;
	     now_ms() < end && checkpointed_id(f) < total; sleep_ms(50))
		;
	assert_int_equal(checkpointed_id(f), total);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	static int ids[20000];
	size_t n = read_ids(f->out, "SetupAuditTrail", ids, 20000);
	char *seen = calloc((size_t)total + 1, 1);
	size_t dups = 0;
	for (size_t i = 0; i < n; i++) {
		assert_true(ids[i] >= 1 && ids[i] <= total);
		dups += seen[ids[i]];
		seen[ids[i]] = 1;
	}
	for (int k = 1; k <= total; k++)
		if (!seen[k])
			fail_msg("record %d lost", k);
	free(seen);
	print_message("# %d records, %zu lines, %zu duplicates after %d kills "
	              "(%d lines were past the checkpoint at the kills)\n",
	              total, n, dups, rounds, in_flight);
	assert_true(dups <= (size_t)in_flight);
	f->ok = 1;
}

/* --- API economy -----------------------------------------------------------
 */

static void
test_api_budget_stretches_intervals(void **state)
{
	struct e2e_fixture *f = *state;
	start_mock(f, NULL);
	/* 91% used, budget 90%: intervals x2.8. */
	mock_post(f, "/_mock/api-usage?used=13650&max=15000");
	const char *env[] = {"SFRELAY_POLL=SetupAuditTrail@1s",
	                     "SFRELAY_API_BUDGET_PCT=90", NULL};
	start_relay(f, "", env);
	assert_int_equal(wait_log(f->dir,
	                          "msg=\"API usage above budget; "
	                          "polling less often\" "
	                          "api_usage=13651/15000 budget_pct=90 "
	                          "stretch=2.8",
	                          1, 10000),
	                 0);
	long long before = mock_counter(f, "/_mock/stats", "api_calls");
	sleep_ms(2000);
	long long during = mock_counter(f, "/_mock/stats", "api_calls");
	/* At 1s there would be two calls in 2 s; stretched, one at most. */
	assert_true(during - before <= 1);
	/* Usage falls (a new day): back to the configured interval. */
	mock_post(f, "/_mock/api-usage?used=10");
	assert_int_equal(
	    wait_log(f->dir, "msg=\"API usage back under budget", 1, 8000), 0);
	before = mock_counter(f, "/_mock/stats", "api_calls");
	sleep_ms(3200);
	long long after = mock_counter(f, "/_mock/stats", "api_calls");
	assert_true(after - before >= 2);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	f->ok = 1;
}

static void
test_usage_in_stats_line(void **state)
{
	struct e2e_fixture *f = *state;
	start_mock(f, NULL);
	mock_post(f, "/_mock/api-usage?used=1499&max=15000");
	const char *env[] = {"SFRELAY_POLL=SetupAuditTrail@1s",
	                     "SFRELAY_STATS_INTERVAL=300ms", NULL};
	start_relay(f, "", env);
	/* 1500 or more calls of 15000: about 10%. */
	assert_int_equal(
	    wait_count(f->out, "sample#sfrelay.api_usage_pct=10", 1, 10000), 0);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	f->ok = 1;
}

static void
test_composite_when_several_objects_are_due(void **state)
{
	struct e2e_fixture *f = *state;
	start_mock(f, NULL);
	const char *env[] = {"SFRELAY_POLL=SetupAuditTrail@1s,LoginHistory@1s,"
	                     "Account@1s(Id,Name),Case@2s",
	                     "SFRELAY_POLL_LOOKBACK=1h", NULL};
	insert(f, "Case", 1, NULL, 0, NULL); /* declares the object */
	start_relay(f, "", env);
	sleep_ms(4500);
	insert(f, "LoginHistory", 3, NULL, 0, NULL);
	insert(f, "Account", 2, NULL, 0, NULL);
	assert_int_equal(wait_lines(f->dir, 6, 10000), 6);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	long long calls = mock_counter(f, "/_mock/stats", "api_calls");
	long long composites =
	    mock_counter(f, "/_mock/query-stats", "composites");
	long long queries = mock_counter(f, "/_mock/query-stats", "queries");
	print_message("# %lld API calls carried %lld queries (%lld "
	              "composite)\n",
	              calls, queries, composites);
	/* One call per tick for all the objects due in it, not one per
	 * object: every call was composite, carrying 3 or 4 queries. */
	assert_true(calls >= 3);
	assert_int_equal(composites, calls);
	assert_true(queries >= 3 * calls);
	assert_int_equal(count_in(f->out, "object=LoginHistory "), 3);
	assert_int_equal(count_in(f->out, "object=Account "), 2);
	assert_int_equal(count_in(f->out, "object=Case "), 1);
	f->ok = 1;
}

static void
test_revoked_session_is_renewed(void **state)
{
	struct e2e_fixture *f = *state;
	start_mock(f, NULL);
	insert(f, "SetupAuditTrail", 3, NULL, 0, NULL);
	start_relay(f, "", poll_audit);
	assert_int_equal(wait_lines(f->dir, 3, 10000), 3);
	long long tokens = mock_counter(f, "/_mock/stats", "tokens_issued");
	mock_post(f, "/_mock/revoke-tokens");
	insert(f, "SetupAuditTrail", 4, NULL, 0, NULL);
	assert_int_equal(wait_lines(f->dir, 7, 10000), 7);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	assert_true(file_contains(f->err, "msg=\"REST session refused; "
	                                  "renewing the token\""));
	assert_int_equal(mock_counter(f, "/_mock/stats", "tokens_issued"),
	                 tokens + 1);
	int ids[16];
	size_t n = read_ids(f->out, "SetupAuditTrail", ids, 16);
	assert_int_equal(exactly_once(ids, n, 7), 0);
	f->ok = 1;
}

static void
test_bad_query_is_reported_and_others_go_on(void **state)
{
	struct e2e_fixture *f = *state;
	start_mock(f, NULL);
	const char *env[] = {"SFRELAY_POLL=SetupAuditTrail@1s,"
	                     "Account@1s(Id,Nonexistent__c)",
	                     "SFRELAY_POLL_LOOKBACK=1h", NULL};
	insert(f, "SetupAuditTrail", 2, NULL, 0, NULL);
	start_relay(f, "", env);
	assert_int_equal(wait_lines(f->dir, 2, 10000), 2);
	assert_int_equal(wait_log(f->dir,
	                          "msg=\"query failed\" object=Account "
	                          "status=400 code=INVALID_FIELD",
	                          2, 10000),
	                 0);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	f->ok = 1;
}

static void
test_corrupt_poll_checkpoint_is_refused(void **state)
{
	struct e2e_fixture *f = *state;
	char path[4200];
	start_mock(f, NULL);
	snprintf(path, sizeof(path), "%s/state", f->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	FILE *cf = fopen(f->ckpt, "w");
	assert_non_null(cf);
	fputs("{\"version\":1,\"positions\":{\"SetupAuditTrail\":"
	      "{\"position\":\"1234\"}}}",
	      cf);
	fclose(cf);
	start_relay(f, "", poll_audit);
	assert_int_equal(proc_wait(&f->relay, 10000), 78);
	assert_true(file_contains(f->err,
	                          "SFRELAY_STATE_DIR: the checkpoint of "
	                          "SetupAuditTrail (\"1234\") is not a "
	                          "poll position"));
	f->ok = 1;
}

/* --- backfill --------------------------------------------------------------
 */

/* Makes the stream lose its place: 5 events delivered, the relay stops,
 * 20 more published while the mock keeps only 5; the restarted relay's
 * replay id is then past retention and a gap is recorded. */
static void
lose_stream_place(struct e2e_fixture *f, const char *channel,
                  const char *const *env)
{
	start_relay(f, channel, env);
	assert_int_equal(wait_log(f->dir, "msg=subscribed", 1, 10000), 0);
	assert_int_equal(mock_publish(f->port, channel, 5), 200);
	assert_int_equal(wait_lines(f->dir, 5, 10000), 5);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	assert_int_equal(mock_publish(f->port, channel, 20), 200);
}

static void
test_backfill_recovers_cdc_gap(void **state)
{
	struct e2e_fixture *f = *state;
	const char *ch = "/data/AccountChangeEvent";
	const char *flags[] = {"--channel", ch, "--retention", "5", NULL};
	char t[64];
	start_mock(f, flags);
	lose_stream_place(f, ch, NULL);
	/* Modified during the gap: recovered. Long before it, or after the
	 * relay noticed it: not part of it. */
	insert(f, "Account", 3, NULL, 0, NULL);
	iso_from_now(t, sizeof(t), -3 * 3600 * 1000);
	insert(f, "Account", 1, t, 0, NULL);
	iso_from_now(t, sizeof(t), 3 * 3600 * 1000);
	insert(f, "Account", 1, t, 0, NULL);
	start_relay(f, ch, NULL);
	assert_int_equal(wait_log(f->dir,
	                          "msg=\"replay gap recovered\" "
	                          "channel=/data/AccountChangeEvent "
	                          "object=Account lines=3",
	                          1, 15000),
	                 0);
	/* 5 before, 5 still retained (replayed with -2), 3 backfilled. */
	assert_int_equal(wait_lines(f->dir, 13, 10000), 13);
	sleep_ms(300);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	assert_int_equal(count_in(f->out, "backfill_for=/data/AccountChange"
	                                  "Event"),
	                 3);
	assert_int_equal(count_in(f->out, "at=event src=backfill "), 3);
	int ids[16];
	size_t n = read_ids(f->out, "Account", ids, 16);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ids[i], (int)i + 1);
	/* The query was bounded on LastModifiedDate both ways. */
	char url[128], resp[16384];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_mock/query-stats",
	         f->port);
	assert_int_equal(http_call("GET", url, NULL, NULL, resp, sizeof(resp)),
	                 200);
	assert_non_null(
	    strstr(resp, "FROM Account WHERE LastModifiedDate >= "));
	assert_non_null(strstr(resp, " AND LastModifiedDate <= "));
	/* Acknowledged, so the gap is gone from the checkpoint. */
	assert_true(file_contains(f->ckpt, "\"gaps\""));
	assert_false(file_contains(f->ckpt, "\"after_position\""));
	f->ok = 1;
}

static void
test_backfill_login_events_deduplicated(void **state)
{
	struct e2e_fixture *f = *state;
	const char *ch = "/event/LoginEventStream";
	const char *flags[] = {"--channel", ch, "--retention", "5", NULL};
	start_mock(f, flags);
	lose_stream_place(f, ch, NULL);
	/* Four rows, two of them the same event stored twice. */
	insert(
	    f, "LoginEvent", 4, NULL, 0,
	    "[{\"EventIdentifier\":\"ev-a\"},{\"EventIdentifier\":\"ev-b\"},"
	    "{\"EventIdentifier\":\"ev-a\"},{\"EventIdentifier\":\"ev-c\"}]");
	start_relay(f, ch, NULL);
	assert_int_equal(wait_log(f->dir,
	                          "msg=\"replay gap recovered\" "
	                          "channel=/event/LoginEventStream "
	                          "object=LoginEvent lines=3",
	                          1, 15000),
	                 0);
	sleep_ms(300);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	assert_int_equal(count_in(f->out, " id=LoginEvent:ev-a "), 1);
	assert_int_equal(count_in(f->out, " id=LoginEvent:ev-b "), 1);
	assert_int_equal(count_in(f->out, " id=LoginEvent:ev-c "), 1);
	assert_int_equal(
	    count_in(f->out, "backfill_for=/event/LoginEventStream"), 3);
	assert_false(file_contains(f->ckpt, "\"after_position\""));
	f->ok = 1;
}

static void
test_unmapped_gap_is_reported_and_kept(void **state)
{
	struct e2e_fixture *f = *state;
	const char *ch = "/topic/Orders";
	const char *flags[] = {"--channel", ch, "--retention", "5", NULL};
	start_mock(f, flags);
	lose_stream_place(f, ch, NULL);
	insert(f, "Account", 2, NULL, 0, NULL); /* during the gap */
	const char *stats[] = {"SFRELAY_STATS_INTERVAL=200ms", NULL};
	start_relay(f, ch, stats);
	assert_int_equal(wait_log(f->dir,
	                          "msg=\"replay gap cannot be "
	                          "backfilled; it stays recorded in "
	                          "the checkpoint\" channel=/topic/Orders",
	                          1, 15000),
	                 0);
	/* The kept gap shows in the stats line too, not only in a warning. */
	for (long long end = now_ms() + 10000;
	     now_ms() < end && !file_contains(f->out, "sample#sfrelay.gaps=1");
	     sleep_ms(50))
		;
	assert_true(file_contains(f->out, "sample#sfrelay.gaps=1"));
	/* 10 event lines, plus the stats lines. */
	assert_true(wait_lines(f->dir, 10, 10000) >= 10);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	assert_true(file_contains(f->err, "SFRELAY_BACKFILL=/topic/Orders=<its "
	                                  "object>"));
	assert_true(file_contains(f->ckpt, "\"after_position\": \"5\"") ||
	            file_contains(f->ckpt, "\"after_position\":\"5\""));
	/* A mapping recovers it on the next start. */
	const char *env[] = {"SFRELAY_BACKFILL=/topic/Orders=Account(Id,Name)",
	                     NULL};
	start_relay(f, ch, env);
	assert_int_equal(wait_log(f->dir,
	                          "msg=\"replay gap recovered\" "
	                          "channel=/topic/Orders object=Account "
	                          "lines=2",
	                          1, 15000),
	                 0);
	sleep_ms(300);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	assert_false(file_contains(f->ckpt, "\"after_position\""));
	assert_int_equal(count_in(f->out, "backfill_for=/topic/Orders"), 2);
	f->ok = 1;
}

static int
setup(void **state)
{
	return e2e_setup(state, "poll");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, e2e_teardown)

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    T(test_audit_trail_exactly_once),
	    T(test_equal_timestamps_across_pages_and_polls),
	    T(test_paging_follows_next_records_url),
	    T(test_restart_resumes_without_repeats),
	    T(test_sigkill_loses_nothing),
	    T(test_api_budget_stretches_intervals),
	    T(test_usage_in_stats_line),
	    T(test_composite_when_several_objects_are_due),
	    T(test_revoked_session_is_renewed),
	    T(test_bad_query_is_reported_and_others_go_on),
	    T(test_corrupt_poll_checkpoint_is_refused),
	    T(test_backfill_recovers_cdc_gap),
	    T(test_backfill_login_events_deduplicated),
	    T(test_unmapped_gap_is_reported_and_kept),
	};
	return cmocka_run_group_tests_name("e2e_poll", tests, NULL, NULL);
}
