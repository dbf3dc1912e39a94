/* The Postgres checkpoint backend (checkpoint_pg.h) under the in-memory
 * map (checkpoint.h), against a private server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "harness.h"
#include "pgtest.h"
#include "sfrelay/checkpoint.h"
#include "sfrelay/checkpoint_pg.h"
#include "sfrelay/log.h"

static int
setup(void **state)
{
	return pgtest_group_setup(state, sizeof(struct pgtest_fixture),
	                          "test_checkpoint_pg");
}

static int
teardown(void **state)
{
	log_shutdown();
	return pgtest_group_teardown(state);
}

static void
sql(struct pgtest_fixture *f, const char *q)
{
	char out[256];
	assert_int_equal(pgtest_query(&f->db, q, out, sizeof(out)), 0);
}

static void
sql_value(struct pgtest_fixture *f, const char *q, char *out, size_t len)
{
	assert_int_equal(pgtest_query(&f->db, q, out, len), 0);
}

/* Each test starts from empty tables at epoch 7. */
static int
each_setup(void **state)
{
	struct pgtest_fixture *f = *state;
	if (pgtest_test_setup(state) != 0)
		return -1;
	char out[64];
	if (pgtest_query(&f->db, checkpoint_pg_schema, out, sizeof(out)) != 0)
		return -1;
	sql(f, "DELETE FROM sfrelay_checkpoints");
	sql(f, "DELETE FROM sfrelay_gaps");
	sql(f, "UPDATE sfrelay_leader SET epoch = 7");
	return 0;
}

static struct checkpoint *
open_cp(struct pgtest_fixture *f, long long epoch, long interval_ms)
{
	struct checkpoint_pg_opts o = {.url = f->db.url,
	                               .epoch = epoch,
	                               .timeout_ms = 2000,
	                               .backoff_min_ms = 50,
	                               .backoff_max_ms = 200,
	                               .seed = 3};
	char err[256];
	void *impl = checkpoint_pg_open(f->base, &o, err, sizeof(err));
	assert_non_null(impl);
	struct checkpoint *cp =
	    checkpoint_new_async(f->base, &checkpoint_pg_ops,
	                         &checkpoint_pg_async_ops, impl, interval_ms);
	assert_non_null(cp);
	assert_int_equal(checkpoint_load(cp, err, sizeof(err)), 0);
	return cp;
}

static void
test_round_trip(void **state)
{
	struct pgtest_fixture *f = *state;
	char err[512], out[256];
	struct checkpoint *cp = open_cp(f, 7, 0);
	assert_null(checkpoint_get(cp, "/topic/A"));
	checkpoint_set(cp, "/topic/A", "1234", "2026-11-26T19:27:53.000Z");
	/* Text a literal array must escape. */
	checkpoint_set(cp, "/u/Q\"uo\\te,{x}", "9", NULL);
	struct checkpoint_gap g = {.key = "/topic/A",
	                           .after_position = "100",
	                           .after_created = NULL,
	                           .detected = "2026-11-26T20:00:00.000Z"};
	checkpoint_add_gap(cp, &g);
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), 0);
	assert_true(checkpoint_writes(cp) >= 1);
	sql_value(f,
	          "SELECT position || '/' || epoch FROM sfrelay_checkpoints "
	          "WHERE key = '/topic/A'",
	          out, sizeof(out));
	assert_string_equal(out, "1234/7");
	sql_value(f,
	          "SELECT count(*) FROM sfrelay_checkpoints WHERE key = "
	          "E'/u/Q\"uo\\\\te,{x}' AND created IS NULL",
	          out, sizeof(out));
	assert_string_equal(out, "1");
	checkpoint_free(cp);

	/* A second map over the same tables sees it all. */
	cp = open_cp(f, 7, 0);
	assert_string_equal(checkpoint_get(cp, "/topic/A"), "1234");
	assert_string_equal(checkpoint_created(cp, "/topic/A"),
	                    "2026-11-26T19:27:53.000Z");
	assert_string_equal(checkpoint_get(cp, "/u/Q\"uo\\te,{x}"), "9");
	assert_null(checkpoint_created(cp, "/u/Q\"uo\\te,{x}"));
	const struct checkpoint_gap *gaps;
	assert_int_equal(checkpoint_gaps(cp, &gaps), 1);
	assert_string_equal(gaps[0].after_position, "100");
	assert_null(gaps[0].after_created);
	/* Removing the gap removes its row. */
	checkpoint_remove_gap(cp, 0);
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), 0);
	sql_value(f, "SELECT count(*) FROM sfrelay_gaps", out, sizeof(out));
	assert_string_equal(out, "0");
	checkpoint_free(cp);
}

/* A write never moves a stored position backwards. */
static void
test_never_backwards(void **state)
{
	struct pgtest_fixture *f = *state;
	char err[512], out[256];
	struct checkpoint *newer = open_cp(f, 7, 0);
	struct checkpoint *older = open_cp(f, 7, 0);
	checkpoint_set(newer, "/topic/A", "1000", NULL);
	/* Numerically larger, though smaller as text. */
	checkpoint_set(newer, "/topic/B", "10", NULL);
	checkpoint_set(newer, "Account", "001B", "2026-11-26T10:00:00.000Z");
	assert_int_equal(checkpoint_flush(newer, err, sizeof(err)), 0);

	checkpoint_set(older, "/topic/A", "999", NULL);
	checkpoint_set(older, "/topic/B", "9", NULL);
	checkpoint_set(older, "Account", "001A", "2026-11-26T09:00:00.000Z");
	checkpoint_set(older, "/topic/C", "5", NULL);
	assert_int_equal(checkpoint_flush(older, err, sizeof(err)), 0);
	sql_value(f,
	          "SELECT string_agg(key || '=' || position, ',' ORDER BY "
	          "key) FROM sfrelay_checkpoints",
	          out, sizeof(out));
	assert_string_equal(
	    out, "/topic/A=1000,/topic/B=10,/topic/C=5,Account=001B");

	/* Forward moves go through, the start marker gives way to a replay
	 * id, and a bigger number than bigint holds still compares. */
	checkpoint_set(newer, "/topic/A", "99999999999999999999999", NULL);
	checkpoint_set(newer, "Account", "001C", "2026-11-26T11:00:00.000Z");
	assert_int_equal(checkpoint_flush(newer, err, sizeof(err)), 0);
	checkpoint_set(older, "/topic/D", "-2", "2026-11-26T12:00:00.000Z");
	assert_int_equal(checkpoint_flush(older, err, sizeof(err)), 0);
	checkpoint_set(older, "/topic/D", "17", "2026-11-26T11:59:00.000Z");
	assert_int_equal(checkpoint_flush(older, err, sizeof(err)), 0);
	sql_value(f,
	          "SELECT string_agg(key || '=' || position, ',' ORDER BY "
	          "key) FROM sfrelay_checkpoints",
	          out, sizeof(out));
	assert_string_equal(out, "/topic/A=99999999999999999999999,"
	                         "/topic/B=10,/topic/C=5,/topic/D=17,"
	                         "Account=001C");
	checkpoint_free(newer);
	checkpoint_free(older);
}

struct deposed {
	int calls;
	char err[256];
};

static void
on_deposed(void *arg, const char *err)
{
	struct deposed *d = arg;
	d->calls++;
	snprintf(d->err, sizeof(d->err), "%s", err);
}

/* A write whose epoch is not the leader's changes nothing, says so, and
 * the map writes no more. */
static void
test_fenced_by_epoch(void **state)
{
	struct pgtest_fixture *f = *state;
	char err[512], out[256];
	struct deposed d = {0};
	struct checkpoint *cp = open_cp(f, 7, 0);
	checkpoint_on_deposed(cp, on_deposed, &d);
	checkpoint_set(cp, "/topic/A", "10", NULL);
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), 0);

	sql(f, "UPDATE sfrelay_leader SET epoch = 8"); /* a new leader */
	checkpoint_set(cp, "/topic/A", "20", NULL);
	checkpoint_set(cp, "/topic/B", "1", NULL);
	struct checkpoint_gap g = {.key = "/topic/A",
	                           .after_position = "5",
	                           .detected = "2026-11-26T20:00:00.000Z"};
	checkpoint_add_gap(cp, &g);
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), -1);
	assert_int_equal(d.calls, 1);
	assert_non_null(strstr(d.err, "another relay leads"));
	sql_value(f,
	          "SELECT string_agg(key || '=' || position || '@' || epoch, "
	          "',') FROM sfrelay_checkpoints",
	          out, sizeof(out));
	assert_string_equal(out, "/topic/A=10@7");
	sql_value(f, "SELECT count(*) FROM sfrelay_gaps", out, sizeof(out));
	assert_string_equal(out, "0");
	/* Halted: later changes stay in memory. */
	unsigned long w = checkpoint_writes(cp);
	sql(f, "UPDATE sfrelay_leader SET epoch = 7");
	checkpoint_set(cp, "/topic/A", "30", NULL);
	pgtest_run_for(f->base, 200);
	assert_int_equal(checkpoint_writes(cp), w);
	assert_int_equal(checkpoint_write_soon(cp), -1);
	assert_int_equal(d.calls, 1);
	assert_string_equal(checkpoint_get(cp, "/topic/A"), "30");
	checkpoint_free(cp);
}

/*
 * The database goes away: changes are accepted at once (no call blocks
 * the loop), every failed write is logged and retried, and the writes
 * catch up when it returns.
 */
static void
test_outage_never_blocks_and_catches_up(void **state)
{
	struct pgtest_fixture *f = *state;
	char err[512], out[256];
	struct checkpoint *cp = open_cp(f, 7, 50);
	checkpoint_set(cp, "/topic/A", "1", NULL);
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), 0);
	assert_int_equal(pgtest_stop(&f->db), 0);

	long long t0 = now_ms();
	for (int i = 2; i <= 200; i++) {
		char pos[16];
		snprintf(pos, sizeof(pos), "%d", i);
		checkpoint_set(cp, "/topic/A", pos, NULL);
		/* Timer writes start and fail. */
		if (i % 20 == 0)
			pgtest_run_for(f->base, 20);
		checkpoint_write_soon(cp);
	}
	long long spent = now_ms() - t0;
	/* 10 runs of 20 ms; no wait on the dead server. */
	assert_true(spent < 1000);
	assert_string_equal(checkpoint_get(cp, "/topic/A"), "200");

	assert_int_equal(pgtest_restart(&f->db), 0);
	unsigned long w = checkpoint_writes(cp);
	for (int i = 0; i < 100 && checkpoint_writes(cp) == w; i++)
		pgtest_run_for(f->base, 50);
	assert_true(checkpoint_writes(cp) > w);
	pgtest_run_for(f->base, 100);
	sql_value(f,
	          "SELECT position FROM sfrelay_checkpoints WHERE key = "
	          "'/topic/A'",
	          out, sizeof(out));
	assert_string_equal(out, "200");
	checkpoint_free(cp);
}

/* At shutdown a flush waits for the write in flight, then writes what
 * is newer, within its deadline; with the server gone it gives up in
 * time with a reason. */
static void
test_flush_waits_bounded(void **state)
{
	struct pgtest_fixture *f = *state;
	char err[512], out[256];
	struct checkpoint *cp = open_cp(f, 7, 1000);
	checkpoint_set(cp, "/topic/A", "1", NULL);
	assert_int_equal(checkpoint_write_soon(cp), 0); /* in flight */
	checkpoint_set(cp, "/topic/A", "2", NULL);      /* newer */
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), 0);
	sql_value(f,
	          "SELECT position FROM sfrelay_checkpoints WHERE key = "
	          "'/topic/A'",
	          out, sizeof(out));
	assert_string_equal(out, "2");

	assert_int_equal(pgtest_stop(&f->db), 0);
	pgtest_run_for(f->base, 100); /* the connection notices */
	checkpoint_set(cp, "/topic/A", "3", NULL);
	long long t0 = now_ms();
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), -1);
	assert_true(now_ms() - t0 <= CHECKPOINT_FLUSH_WAIT_MS + 500);
	assert_non_null(strstr(err, "postgres"));
	checkpoint_free(cp);
}

/* Load fails with a reason (never an empty state) when the database is
 * unreachable. */
static void
test_load_unreachable(void **state)
{
	struct pgtest_fixture *f = *state;
	char err[512];
	assert_int_equal(pgtest_stop(&f->db), 0);
	struct checkpoint_pg_opts o = {
	    .url = f->db.url, .epoch = 7, .timeout_ms = 1000};
	void *impl = checkpoint_pg_open(f->base, &o, err, sizeof(err));
	assert_non_null(impl);
	struct checkpoint *cp = checkpoint_new_async(
	    f->base, &checkpoint_pg_ops, &checkpoint_pg_async_ops, impl, 0);
	assert_int_equal(checkpoint_load(cp, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "database"));
	assert_null(strstr(err, f->db.password));
	checkpoint_free(cp);
}

/* The synchronous save (checkpoint_new without the async table). */
static void
test_sync_save(void **state)
{
	struct pgtest_fixture *f = *state;
	char err[512], out[256];
	struct checkpoint_pg_opts o = {
	    .url = f->db.url, .epoch = 7, .timeout_ms = 2000};
	void *impl = checkpoint_pg_open(f->base, &o, err, sizeof(err));
	assert_non_null(impl);
	struct checkpoint *cp =
	    checkpoint_new(f->base, &checkpoint_pg_ops, impl, 0);
	assert_int_equal(checkpoint_load(cp, err, sizeof(err)), 0);
	checkpoint_set(cp, "/topic/S", "42", NULL);
	assert_int_equal(checkpoint_writes(cp), 1);
	sql_value(f,
	          "SELECT position FROM sfrelay_checkpoints WHERE key = "
	          "'/topic/S'",
	          out, sizeof(out));
	assert_string_equal(out, "42");
	sql(f, "UPDATE sfrelay_leader SET epoch = 9");
	checkpoint_set(cp, "/topic/S", "43", NULL);
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "another relay leads"));
	checkpoint_free(cp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip, each_setup,
	                                    pgtest_test_teardown),
	    cmocka_unit_test_setup_teardown(test_never_backwards, each_setup,
	                                    pgtest_test_teardown),
	    cmocka_unit_test_setup_teardown(test_fenced_by_epoch, each_setup,
	                                    pgtest_test_teardown),
	    cmocka_unit_test_setup_teardown(
	        test_outage_never_blocks_and_catches_up, each_setup,
	        pgtest_test_teardown),
	    cmocka_unit_test_setup_teardown(test_flush_waits_bounded,
	                                    each_setup, pgtest_test_teardown),
	    cmocka_unit_test_setup_teardown(test_load_unreachable, each_setup,
	                                    pgtest_test_teardown),
	    cmocka_unit_test_setup_teardown(test_sync_save, each_setup,
	                                    pgtest_test_teardown),
	};
	return cmocka_run_group_tests_name("checkpoint_pg", tests, setup,
	                                   teardown);
}
