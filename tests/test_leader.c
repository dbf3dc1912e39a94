/* The leader lock (leader.h), against a private server. */
#include <setjmp.h>
#include <signal.h>
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
#include "sfrelay/leader.h"
#include "sfrelay/log.h"

struct fix {
	struct pgtest_fixture pg; /* first: the pgtest_*() fixtures use it */
	char logpath[1200];
	int saved_stderr;
};

struct seen {
	int acquired, lost;
	long long epoch;
	char why[256];
	struct leader **free_on_lost; /* frees itself from the callback */
	int *any_acquired;            /* shared by several leaders */
	struct leader *resign_first;  /* resigns from its first ACQUIRED */
};

static void
on_leader(void *arg, enum leader_event ev, long long epoch, const char *why)
{
	struct seen *s = arg;
	if (ev == LEADER_ACQUIRED) {
		s->acquired++;
		s->epoch = epoch;
		if (s->any_acquired != NULL)
			(*s->any_acquired)++;
		if (s->resign_first != NULL && s->acquired == 1)
			leader_resign(s->resign_first,
			              "cannot load checkpoints");
		return;
	}
	s->lost++;
	snprintf(s->why, sizeof(s->why), "%s", why != NULL ? why : "");
	if (s->free_on_lost != NULL) {
		leader_free(*s->free_on_lost);
		*s->free_on_lost = NULL;
	}
}

static int
setup(void **state)
{
	if (pgtest_group_setup(state, sizeof(struct fix), "test_leader") != 0)
		return -1;
	struct fix *f = *state;
	snprintf(f->logpath, sizeof(f->logpath), "%s/stderr.log", f->pg.dir);
	return 0;
}

static int
teardown(void **state)
{
	log_shutdown();
	return pgtest_group_teardown(state);
}

/* Each test: a fresh loop, a running server, stderr captured. */
static int
each_setup(void **state)
{
	struct fix *f = *state;
	if (pgtest_test_setup(state) != 0)
		return -1;
	f->saved_stderr = stderr_redirect(f->logpath);
	return f->saved_stderr >= 0 ? 0 : -1;
}

static int
each_teardown(void **state)
{
	struct fix *f = *state;
	stderr_restore(f->saved_stderr);
	return pgtest_test_teardown(state);
}

static struct leader *
new_leader(struct fix *f, const char *holder, long failover_ms, struct seen *s)
{
	struct leader_opts o = {.url = f->pg.db.url,
	                        .failover_ms = failover_ms,
	                        .holder = holder,
	                        .backoff_min_ms = 50,
	                        .backoff_max_ms = 200,
	                        .seed = 11};
	char err[256];
	struct leader *l =
	    leader_new(f->pg.base, &o, on_leader, s, err, sizeof(err));
	assert_non_null(l);
	return l;
}

static int
log_count(struct fix *f, const char *needle)
{
	fflush(stderr);
	return file_count(f->logpath, needle);
}

static void
test_timing_fits_failover(void **state)
{
	(void)state;
	static const long fs[] = {3000, 5000, 15000, 60000, 300000};
	for (size_t i = 0; i < sizeof(fs) / sizeof(fs[0]); i++) {
		struct leader_timing t;
		leader_timing(fs[i], &t);
		long server_ms = (t.keepalive_idle_s +
		                  t.keepalive_interval_s * t.keepalive_count) *
		                 1000;
		/* The server frees a dead leader's lock, and a standby
		 * polls, within the failover time. */
		assert_true(server_ms <= t.user_timeout_ms);
		assert_true(t.user_timeout_ms + t.poll_ms <= fs[i]);
		/* A leader on a dead link notices before the server frees
		 * its lock. */
		assert_true(t.liveness_ms + t.query_timeout_ms <
		            t.user_timeout_ms);
		assert_true(t.keepalive_idle_s >= 1 &&
		            t.keepalive_interval_s >= 1 &&
		            t.keepalive_count >= 1);
	}
}

/* One relay leads at once; a second waits, and takes over (with a new
 * epoch) when the first goes away. */
static void
test_single_leader_and_takeover(void **state)
{
	struct fix *f = *state;
	char out[64];
	struct seen a = {0}, b = {0};
	struct leader *la = new_leader(f, "relay-a", 3000, &a);
	log_set_level(LOG_DEBUG);
	leader_start(la);
	assert_true(pgtest_run_until(f->pg.base, &a.acquired, 1, 5000));
	log_set_level(LOG_INFO);
	/* The server took all four keepalive settings for the session. */
	assert_int_equal(log_count(f, "settings=4"), 1);
	assert_true(leader_is_leader(la));
	assert_true(a.epoch >= 1);
	assert_int_equal(leader_epoch(la), a.epoch);
	assert_int_equal(pgtest_query(&f->pg.db,
	                              "SELECT epoch || ':' || holder FROM "
	                              "sfrelay_leader",
	                              out, sizeof(out)),
	                 0);
	char want[64];
	snprintf(want, sizeof(want), "%lld:relay-a", a.epoch);
	assert_string_equal(out, want);

	struct leader *lb = new_leader(f, "relay-b", 3000, &b);
	leader_start(lb);
	/* Several polls (every second) and still a standby. */
	pgtest_run_until(f->pg.base, &b.acquired, 1, 2500);
	assert_int_equal(b.acquired, 0);
	assert_false(leader_is_leader(lb));
	assert_int_equal(leader_epoch(lb), 0);
	assert_int_equal(log_count(f, "msg=\"waiting for the leader lock\""),
	                 1);
	assert_int_equal(log_count(f, "holder=relay-a"), 2);

	/* The leader goes away: its session ends, its lock is free. */
	long long t0 = now_ms();
	leader_free(la);
	assert_true(pgtest_run_until(f->pg.base, &b.acquired, 1, 3000));
	assert_true(now_ms() - t0 <= 1500); /* one poll interval */
	assert_int_equal(b.epoch, a.epoch + 1);
	assert_int_equal(log_count(f, "msg=\"leader lock acquired\""), 2);
	char line[64];
	snprintf(line, sizeof(line), "epoch=%lld", b.epoch);
	assert_true(log_count(f, line) >= 1);
	assert_int_equal(a.lost, 0); /* freeing is no callback */
	leader_free(lb);
}

/* A leader whose database goes away loses the lock at once and says so;
 * freed from that callback, it does nothing more. */
static void
test_lost_on_connection_loss(void **state)
{
	struct fix *f = *state;
	struct seen a = {0};
	struct leader *la = new_leader(f, "relay-a", 3000, &a);
	a.free_on_lost = &la;
	leader_start(la);
	assert_true(pgtest_run_until(f->pg.base, &a.acquired, 1, 5000));
	assert_int_equal(pgtest_stop(&f->pg.db), 0);
	assert_true(pgtest_run_until(f->pg.base, &a.lost, 1, 3000));
	assert_null(la); /* freed from its own callback */
	assert_int_equal(log_count(f, "msg=\"leader lock lost\""), 1);
	assert_int_equal(pgtest_restart(&f->pg.db), 0);
	pgtest_run_for(f->pg.base, 300);
	assert_int_equal(a.acquired, 1);
}

/* A leader whose database restarts loses the lock, stands by again on
 * a new session, and leads again with the next epoch once the server is
 * back: the same object, no new leader_start(). */
static void
test_leads_again_after_connection_loss(void **state)
{
	struct fix *f = *state;
	char out[64], want[64];
	struct seen a = {0};
	struct leader *la = new_leader(f, "relay-a", 3000, &a);
	leader_start(la);
	assert_true(pgtest_run_until(f->pg.base, &a.acquired, 1, 5000));
	long long first = a.epoch;
	assert_int_equal(log_count(f, "msg=\"waiting for the leader lock\""),
	                 0);

	assert_int_equal(pgtest_stop(&f->pg.db), 0);
	assert_true(pgtest_run_until(f->pg.base, &a.lost, 1, 3000));
	assert_false(leader_is_leader(la));
	assert_int_equal(leader_epoch(la), 0);
	assert_int_equal(log_count(f, "msg=\"leader lock lost\""), 1);
	/* A standby again, and it says so. */
	assert_int_equal(log_count(f, "msg=\"waiting for the leader lock\""),
	                 1);
	/* While the server is away: retries, no callback. */
	pgtest_run_for(f->pg.base, 500);
	assert_int_equal(a.acquired, 1);
	assert_int_equal(a.lost, 1);

	assert_int_equal(pgtest_restart(&f->pg.db), 0);
	assert_true(pgtest_run_until(f->pg.base, &a.acquired, 2, 8000));
	assert_true(leader_is_leader(la));
	assert_int_equal(a.epoch, first + 1);
	assert_int_equal(leader_epoch(la), a.epoch);
	assert_int_equal(a.lost, 1);
	assert_int_equal(log_count(f, "msg=\"leader lock acquired\""), 2);
	assert_int_equal(pgtest_query(&f->pg.db,
	                              "SELECT epoch || ':' || holder FROM "
	                              "sfrelay_leader",
	                              out, sizeof(out)),
	                 0);
	snprintf(want, sizeof(want), "%lld:relay-a", a.epoch);
	assert_string_equal(out, want);
	/* It holds the lock for real: another session cannot take it. */
	assert_int_equal(pgtest_query(&f->pg.db,
	                              "SELECT pg_try_advisory_lock("
	                              "8315459572198277121)",
	                              out, sizeof(out)),
	                 0);
	assert_string_equal(out, "f");
	/* And a second loss is handled like the first. */
	assert_int_equal(pgtest_stop(&f->pg.db), 0);
	assert_true(pgtest_run_until(f->pg.base, &a.lost, 2, 3000));
	assert_false(leader_is_leader(la));
	assert_int_equal(log_count(f, "msg=\"waiting for the leader lock\""),
	                 2);
	leader_free(la);
}

/* A leader whose server stops answering (frozen, link intact) notices
 * within its query deadline, well inside the failover time. */
static void
test_lost_on_silent_server(void **state)
{
	struct fix *f = *state;
	struct seen a = {0};
	struct leader *la = new_leader(f, "relay-a", 3000, &a);
	leader_start(la);
	assert_true(pgtest_run_until(f->pg.base, &a.acquired, 1, 5000));
	pid_t pids[64];
	size_t n = pgtest_pids(&f->pg.db, pids, 64);
	for (size_t i = 0; i < n; i++)
		kill(pids[i], SIGSTOP);
	long long t0 = now_ms();
	int lost = pgtest_run_until(f->pg.base, &a.lost, 1, 3000);
	long long took = now_ms() - t0;
	for (size_t i = 0; i < n; i++)
		kill(pids[i], SIGCONT);
	assert_true(lost);
	struct leader_timing t;
	leader_timing(3000, &t);
	assert_true(took <= t.liveness_ms + t.query_timeout_ms + 300);
	assert_false(leader_is_leader(la));
	leader_free(la);
}

/* A deposed leader resigns: the lock is released at once, so a standby
 * can take over, and the old epoch's writes change nothing. The one that
 * resigned stands by again: exactly one of the two leads, and the other
 * takes over when it goes. */
static void
test_resign_releases_and_fences(void **state)
{
	struct fix *f = *state;
	char err[512], out[64];
	int any = 0;
	struct seen a = {.any_acquired = &any}, b = {.any_acquired = &any};
	struct leader *la = new_leader(f, "relay-a", 3000, &a);
	leader_start(la);
	assert_true(pgtest_run_until(f->pg.base, &a.acquired, 1, 5000));
	long long old_epoch = a.epoch;
	struct checkpoint_pg_opts co = {
	    .url = f->pg.db.url, .epoch = a.epoch, .timeout_ms = 2000};
	void *impl = checkpoint_pg_open(f->pg.base, &co, err, sizeof(err));
	assert_non_null(impl);
	struct checkpoint *cp = checkpoint_new_async(
	    f->pg.base, &checkpoint_pg_ops, &checkpoint_pg_async_ops, impl, 0);
	assert_int_equal(checkpoint_load(cp, err, sizeof(err)), 0);
	checkpoint_set(cp, "/topic/F", "1", NULL);
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), 0);

	struct leader *lb = new_leader(f, "relay-b", 3000, &b);
	leader_start(lb);
	pgtest_run_until(f->pg.base, &b.acquired, 1, 300);
	assert_int_equal(b.acquired, 0);
	leader_resign(la, "checkpoint write refused");
	assert_int_equal(a.lost, 1);
	assert_string_equal(a.why, "checkpoint write refused");
	assert_false(leader_is_leader(la));
	assert_int_equal(log_count(f, "msg=\"leader lock lost\""), 1);
	/* Released at once: one of the two leads within a poll interval. */
	assert_true(pgtest_run_until(f->pg.base, &any, 2, 3000));
	pgtest_run_for(f->pg.base, 300);
	assert_int_equal(any, 2);
	assert_int_equal(leader_is_leader(la) + leader_is_leader(lb), 1);
	struct leader *now = leader_is_leader(la) ? la : lb;
	struct leader *other = now == la ? lb : la;
	struct seen *sn = now == la ? &a : &b, *so = now == la ? &b : &a;
	assert_int_equal(sn->epoch, old_epoch + 1);
	/* The old leader's epoch no longer writes. */
	checkpoint_set(cp, "/topic/F", "2", NULL);
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), -1);
	assert_int_equal(pgtest_query(&f->pg.db,
	                              "SELECT position FROM "
	                              "sfrelay_checkpoints WHERE key = "
	                              "'/topic/F'",
	                              out, sizeof(out)),
	                 0);
	assert_string_equal(out, "1");
	/* A second resign, or one by a standby, does nothing. */
	leader_resign(la == now ? lb : la, "again");
	assert_int_equal(a.lost, 1);
	assert_int_equal(b.lost, 0);
	checkpoint_free(cp);

	/* The one that stands by takes over when the leader goes. */
	int before = so->acquired;
	leader_free(now);
	assert_true(
	    pgtest_run_until(f->pg.base, &so->acquired, before + 1, 3000));
	assert_true(leader_is_leader(other));
	assert_int_equal(so->epoch, old_epoch + 2);
	leader_free(other);
}

/* A leader that cannot start (its checkpoints would not load) resigns
 * from inside the ACQUIRED callback: LOST comes from within that call,
 * and it then stands by and wins the lock again with the next epoch. */
static void
test_resign_from_acquired_callback(void **state)
{
	struct fix *f = *state;
	struct seen a = {0};
	struct leader *la = new_leader(f, "relay-a", 3000, &a);
	a.resign_first = la;
	leader_start(la);
	assert_true(pgtest_run_until(f->pg.base, &a.acquired, 1, 5000));
	long long first = a.epoch;
	assert_int_equal(a.lost, 1);
	assert_string_equal(a.why, "cannot load checkpoints");
	assert_true(pgtest_run_until(f->pg.base, &a.acquired, 2, 5000));
	assert_int_equal(a.epoch, first + 1);
	assert_true(leader_is_leader(la));
	assert_int_equal(a.lost, 1);
	assert_int_equal(log_count(f, "msg=\"leader lock lost\""), 1);
	assert_int_equal(log_count(f, "msg=\"waiting for the leader lock\""),
	                 1);
	leader_free(la);
}

/* The leader starts while the database is down, and keeps trying. */
static void
test_waits_for_database(void **state)
{
	struct fix *f = *state;
	struct seen a = {0};
	assert_int_equal(pgtest_stop(&f->pg.db), 0);
	struct leader *la = new_leader(f, "relay-a", 3000, &a);
	leader_start(la);
	pgtest_run_until(f->pg.base, &a.acquired, 1, 500);
	assert_int_equal(a.acquired, 0);
	assert_int_equal(pgtest_restart(&f->pg.db), 0);
	assert_true(pgtest_run_until(f->pg.base, &a.acquired, 1, 8000));
	leader_free(la);
}

static void
test_password_not_in_logs(void **state)
{
	struct fix *f = *state;
	/* Everything the tests above logged, and a line quoting the URL. */
	struct seen a = {0};
	struct leader *la = new_leader(f, "relay-a", 3000, &a);
	log_warn("url", "value", f->pg.db.url, NULL);
	leader_free(la);
	fflush(stderr);
	char *text = file_read(f->logpath, NULL);
	assert_non_null(text);
	assert_null(strstr(text, f->pg.db.password));
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_timing_fits_failover),
	    cmocka_unit_test_setup_teardown(test_single_leader_and_takeover,
	                                    each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(test_lost_on_connection_loss,
	                                    each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(
	        test_leads_again_after_connection_loss, each_setup,
	        each_teardown),
	    cmocka_unit_test_setup_teardown(test_lost_on_silent_server,
	                                    each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(test_resign_releases_and_fences,
	                                    each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(test_resign_from_acquired_callback,
	                                    each_setup, each_teardown),
	    cmocka_unit_test_setup_teardown(test_waits_for_database, each_setup,
	                                    each_teardown),
	    cmocka_unit_test_setup_teardown(test_password_not_in_logs,
	                                    each_setup, each_teardown),
	};
	return cmocka_run_group_tests_name("leader", tests, setup, teardown);
}
