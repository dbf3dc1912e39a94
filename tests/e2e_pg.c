/*
 * The Postgres checkpoint store and leader lock against a real server
 * (pgtest.h) and sfmock:
 *   - checkpoints land in sfrelay_checkpoints and follow the sink;
 *   - a relay started elsewhere (no local state) resumes from them;
 *   - of two relays, exactly one leads and only the leader writes lines;
 *   - SIGKILL of the leader: the standby takes over within the failover
 *     bound, and between them every event is written (duplicates are
 *     counted and bounded by what the dead leader had in flight);
 *   - restarts of the database while events flow lose nothing, the relay
 *     process stays up (it stands by and leads again each time), and the
 *     stored checkpoint catches up;
 *   - a deposed leader stands by and leads again in the same process; a
 *     standby stops cleanly on SIGTERM;
 *   - the database password never reaches the relay's output;
 *   - an unreachable or silent database is a clear error, not a hang;
 *   - checkpoints that will not load (the lock works, the load query
 *     fails) are retried with a back-off that grows, and starts over
 *     from the minimum after a load that worked.
 *
 * Timeouts grow tenfold with VALGRIND_RELAY=1 (the relay runs under
 * valgrind); the failover bound itself does not, only its slack.
 */
#include <ctype.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "harness.h"
#include "pgtest.h"

#define CH "/topic/PgRelay"
#define NRELAY 3
#define MAXSEQ 4096
#define FAILOVER_MS 3000
/* Scheduling and log polling on a shared two-core machine. */
#define FAILOVER_SLACK_MS 1500

struct fixture {
	char *dir; /* sfmock and the database */
	char *rdir[NRELAY];
	struct proc mock;
	struct proc relay[NRELAY];
	struct pgtest pg;
	int port;
	int scale;
	char url_env[768];
	const char *env[12];
	int ok;
};

static int
scaled(const struct fixture *f, int ms)
{
	return ms * f->scale;
}

static void
build_env(struct fixture *f, const char *url)
{
	size_t n = 0;
	snprintf(f->url_env, sizeof(f->url_env), "DATABASE_URL=%s", url);
	f->env[n++] = "SFRELAY_CHECKPOINT=postgres";
	f->env[n++] = f->url_env;
	f->env[n++] = "SFRELAY_FAILOVER=3s";
	f->env[n++] = "SFRELAY_BACKOFF_MIN=50ms";
	f->env[n++] = "SFRELAY_BACKOFF_MAX=400ms";
	f->env[n++] = "SFRELAY_CHECKPOINT_INTERVAL=100ms";
	f->env[n] = NULL;
}

static int teardown(void **state);

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	const char *v = getenv("VALGRIND_RELAY");
	f->scale = v != NULL && strcmp(v, "1") == 0 ? 10 : 1;
	*state = f;
	int ok = (f->dir = harness_tmpdir("pg")) != NULL;
	for (int i = 0; i < NRELAY && ok; i++)
		ok = (f->rdir[i] = harness_tmpdir("pgrelay")) != NULL;
	ok = ok && pgtest_start(&f->pg, f->dir) == 0;
	const char *flags[] = {"--channel", CH, NULL};
	ok = ok && (f->port = sfmock_start(&f->mock, f->dir, flags)) > 0;
	if (!ok) {
		/* cmocka skips the teardown of a failed setup. */
		fprintf(stderr, "e2e_pg: setup failed\n");
		teardown(state);
		*state = NULL;
		return -1;
	}
	build_env(f, f->pg.url);
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	if (f == NULL)
		return 0;
	for (int i = 0; i < NRELAY; i++)
		if (f->relay[i].pid > 0)
			proc_stop(&f->relay[i], SIGKILL, 5000);
	if (f->mock.pid > 0)
		proc_stop(&f->mock, SIGTERM, 5000);
	/* On failure the logs stay; the cluster itself (tens of MB) goes. */
	pgtest_stop(&f->pg);
	pgtest_rmtree(f->pg.datadir);
	if (f->ok)
		pgtest_cleanup(&f->pg);
	for (int i = 0; i < NRELAY; i++) {
		if (f->rdir[i] == NULL)
			continue;
		if (f->ok)
			pgtest_rmtree(f->rdir[i]);
		else
			harness_rmdir(f->rdir[i], 1);
		free(f->rdir[i]);
	}
	if (f->dir != NULL) {
		if (f->ok)
			pgtest_rmtree(f->dir);
		else
			harness_rmdir(f->dir, 1);
	}
	free(f->dir);
	free(f);
	return 0;
}

static int
start_relay(struct fixture *f, int i)
{
	return relay_start(&f->relay[i], f->rdir[i], f->port, CH, f->env);
}

static void
path_in(const struct fixture *f, int i, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", f->rdir[i], name);
}

/*
 * The sobject.Seq of every complete line of relay i, in file order. A
 * line cut by a kill (no newline, or followed on the same line by the
 * next run's first line) counts only for the line that follows it.
 */
static size_t
read_seqs(const struct fixture *f, int i, int *seqs, size_t max)
{
	char path[4200];
	path_in(f, i, "relay.out", path, sizeof(path));
	char *all = file_read(path, NULL);
	size_t n = 0;
	char *line = all;
	while (line != NULL && n < max) {
		char *eol = strchr(line, '\n');
		if (eol == NULL)
			break;
		*eol = '\0';
		char *ev = NULL;
		for (char *p = line; (p = strstr(p, "at=event ")) != NULL; p++)
			ev = p;
		char *seq = ev != NULL ? strstr(ev, " sobject.Seq=") : NULL;
		if (seq != NULL)
			seqs[n++] = atoi(seq + strlen(" sobject.Seq="));
		line = eol + 1;
	}
	free(all);
	return n;
}

static int
max_seq(const struct fixture *f, int i)
{
	int *seqs = calloc(MAXSEQ, sizeof(int));
	assert_non_null(seqs);
	size_t n = read_seqs(f, i, seqs, MAXSEQ);
	int max = 0;
	for (size_t k = 0; k < n; k++)
		max = seqs[k] > max ? seqs[k] : max;
	free(seqs);
	return max;
}

/*
 * Over the outputs of relays who[0..nwho) read in that order: how many
 * of 1..total were seen at least once (first appearances must come in
 * publish order), and how many lines repeat one seen before.
 */
struct coverage {
	int seen;
	size_t lines, dups;
	int in_order;
};

static struct coverage
cover(const struct fixture *f, const int *who, size_t nwho, int total)
{
	struct coverage c = {0, 0, 0, 1};
	char *seen = calloc((size_t)total + 2, 1);
	int *seqs = calloc(MAXSEQ, sizeof(int));
	int next = 1;
	assert_non_null(seen);
	assert_non_null(seqs);
	for (size_t w = 0; w < nwho; w++) {
		size_t n = read_seqs(f, who[w], seqs, MAXSEQ);
		for (size_t k = 0; k < n; k++) {
			int s = seqs[k];
			c.lines++;
			if (s < 1 || s > total) {
				c.in_order = 0;
				continue;
			}
			if (seen[s]) {
				c.dups++;
				continue;
			}
			if (s != next)
				c.in_order = 0;
			seen[s] = 1;
			c.seen++;
			next = s + 1;
		}
	}
	free(seqs);
	free(seen);
	return c;
}

/* Waits until the union of the outputs holds every event 1..total. */
static struct coverage
wait_cover(const struct fixture *f, const int *who, size_t nwho, int total,
           int timeout_ms)
{
	struct coverage c = cover(f, who, nwho, total);
	for (long long end = now_ms() + timeout_ms;
	     c.seen < total && now_ms() < end; sleep_ms(50))
		c = cover(f, who, nwho, total);
	return c;
}

/* Returned by db_position() when the query fails. */
#define DB_UNKNOWN (-1000)

/* The stored replay id of CH: its value (-1 and -2 are the start
 * markers "new events" and "all retained"), 0 for no row, DB_UNKNOWN
 * when the query failed. */
static long
db_position(const struct fixture *f)
{
	char out[64];
	if (pgtest_query(&f->pg,
	                 "SELECT position FROM sfrelay_checkpoints WHERE "
	                 "key = '" CH "'",
	                 out, sizeof(out)) != 0)
		return DB_UNKNOWN;
	return out[0] == '\0' ? 0 : atol(out);
}

static long
wait_db_position(const struct fixture *f, long want, int timeout_ms)
{
	long pos = db_position(f);
	for (long long end = now_ms() + timeout_ms;
	     pos != want && now_ms() < end; sleep_ms(50))
		pos = db_position(f);
	return pos;
}

static int
relay_log_count(const struct fixture *f, int i, const char *needle)
{
	char path[4200];
	path_in(f, i, "relay.err", path, sizeof(path));
	return file_count(path, needle);
}

/* The replay id relay i last subscribed from ("replay_from=N"), or
 * -100 when it has not subscribed. */
static long
replay_from(const struct fixture *f, int i)
{
	char path[4200];
	path_in(f, i, "relay.err", path, sizeof(path));
	char *s = file_read(path, NULL);
	long v = -100;
	for (char *p = s;
	     p != NULL && (p = strstr(p, "msg=subscribed")) != NULL; p++) {
		char *eol = strchr(p, '\n');
		char *r = strstr(p, " replay_from=");
		if (r != NULL && (eol == NULL || r < eol))
			v = atol(r + strlen(" replay_from="));
	}
	free(s);
	return v;
}

/* Non-blocking: 1 when relay i has ended (status in *st, as
 * proc_wait() reports it), 0 while it runs. */
static int
relay_ended(struct fixture *f, int i, int *st)
{
	struct proc *p = &f->relay[i];
	int raw = 0;
	if (p->pid <= 0) {
		*st = -1;
		return 1;
	}
	if (waitpid(p->pid, &raw, WNOHANG) != p->pid)
		return 0;
	p->pid = 0;
	*st = WIFEXITED(raw)     ? WEXITSTATUS(raw)
	      : WIFSIGNALED(raw) ? 128 + WTERMSIG(raw)
	                         : -1;
	return 1;
}

/* No output file of relay i holds secret. */
static void
assert_secret_absent(const struct fixture *f, int i, const char *secret)
{
	char out[4200], err[4200];
	path_in(f, i, "relay.out", out, sizeof(out));
	path_in(f, i, "relay.err", err, sizeof(err));
	if (file_contains(out, secret) || file_contains(err, secret))
		fail_msg("the database password appears in the output of "
		         "the relay in %s",
		         f->rdir[i]);
}

/* The relay kept its checkpoints in the database, not in a file. */
static void
assert_no_state_file(const struct fixture *f, int i)
{
	char path[4200];
	path_in(f, i, "state/checkpoints.json", path, sizeof(path));
	assert_false(file_contains(path, CH));
}

/* Starts relay i and waits until it leads and has subscribed. */
static void
start_leader(struct fixture *f, int i, int nth)
{
	assert_int_equal(start_relay(f, i), 0);
	assert_int_equal(wait_log(f->rdir[i], "msg=\"leader lock acquired\"",
	                          nth, scaled(f, 15000)),
	                 0);
	assert_int_equal(
	    wait_log(f->rdir[i], "msg=subscribed", nth, scaled(f, 15000)), 0);
}

/* (a) */
static void
test_checkpoint_round_trip(void **state)
{
	struct fixture *f = *state;
	start_leader(f, 0, 1);
	assert_true(relay_log_count(f, 0, "epoch=") >= 1);
	assert_int_equal(mock_publish(f->port, CH, 100), 200);
	assert_int_equal(wait_lines(f->rdir[0], 100, scaled(f, 15000)), 100);
	/* Written while running (the interval is 100 ms), not only at the
	 * end. */
	assert_int_equal(wait_db_position(f, 100, scaled(f, 5000)), 100);

	char leader_epoch[32], ckpt_epoch[32], n[32];
	assert_int_equal(pgtest_query(&f->pg,
	                              "SELECT count(*) FROM sfrelay_leader", n,
	                              sizeof(n)),
	                 0);
	assert_string_equal(n, "1");
	assert_int_equal(pgtest_query(&f->pg,
	                              "SELECT epoch FROM sfrelay_leader",
	                              leader_epoch, sizeof(leader_epoch)),
	                 0);
	assert_int_equal(pgtest_query(&f->pg,
	                              "SELECT epoch FROM sfrelay_checkpoints "
	                              "WHERE key = '" CH "'",
	                              ckpt_epoch, sizeof(ckpt_epoch)),
	                 0);
	assert_true(atol(leader_epoch) >= 1);
	/* Written under the fencing token this relay holds. */
	assert_string_equal(ckpt_epoch, leader_epoch);
	char logged[64];
	snprintf(logged, sizeof(logged), "epoch=%s", leader_epoch);
	assert_true(relay_log_count(f, 0, logged) >= 1);

	assert_int_equal(proc_stop(&f->relay[0], SIGTERM, scaled(f, 15000)), 0);
	assert_int_equal(db_position(f), 100);
	int who[] = {0};
	struct coverage c = cover(f, who, 1, 100);
	assert_int_equal(c.seen, 100);
	assert_int_equal(c.dups, 0);
	assert_true(c.in_order);
	assert_no_state_file(f, 0);
	assert_secret_absent(f, 0, f->pg.password);
	f->ok = 1;
}

/* (b) */
static void
test_restart_resumes_from_database(void **state)
{
	struct fixture *f = *state;
	start_leader(f, 0, 1);
	assert_int_equal(mock_publish(f->port, CH, 100), 200);
	assert_int_equal(wait_lines(f->rdir[0], 100, scaled(f, 15000)), 100);
	assert_int_equal(proc_stop(&f->relay[0], SIGTERM, scaled(f, 15000)), 0);
	assert_int_equal(db_position(f), 100);

	/* 50 more while no relay runs; the next one starts in another
	 * directory, so only the database can tell it where to resume. */
	assert_int_equal(mock_publish(f->port, CH, 50), 200);
	start_leader(f, 1, 1);
	assert_int_equal(replay_from(f, 1), 100);
	assert_int_equal(wait_lines(f->rdir[1], 50, scaled(f, 15000)), 50);
	assert_int_equal(wait_db_position(f, 150, scaled(f, 5000)), 150);
	sleep_ms(200);
	assert_int_equal(proc_stop(&f->relay[1], SIGTERM, scaled(f, 15000)), 0);
	int who01[] = {0, 1};
	struct coverage c = cover(f, who01, 2, 150);
	/* Clean stops: nothing repeated. */
	assert_int_equal(c.seen, 150);
	assert_int_equal(c.lines, 150);
	assert_true(c.in_order);

	/* SIGKILL while lines flow: the next run repeats at most what was
	 * written past the stored checkpoint at the kill. */
	start_leader(f, 2, 1);
	assert_int_equal(replay_from(f, 2), 150);
	assert_int_equal(mock_publish(f->port, CH, 300), 200);
	sleep_ms(30);
	assert_int_equal(proc_stop(&f->relay[2], SIGKILL, 5000), 128 + SIGKILL);
	/* A write the server had already received may still commit. */
	sleep_ms(100);
	long saved = db_position(f);
	int written = max_seq(f, 2);
	if (written == 0)
		written = 150;
	assert_true(saved >= 150);
	assert_true(saved <= written); /* never ahead of the sink */
	start_leader(f, 2, 2);
	assert_int_equal(replay_from(f, 2), saved);
	int who012[] = {0, 1, 2};
	c = wait_cover(f, who012, 3, 450, scaled(f, 20000));
	assert_int_equal(wait_db_position(f, 450, scaled(f, 5000)), 450);
	assert_int_equal(proc_stop(&f->relay[2], SIGTERM, scaled(f, 15000)), 0);
	c = cover(f, who012, 3, 450);
	print_message("# killed with %d written, %ld stored: %zu duplicate "
	              "lines\n",
	              written, saved, c.dups);
	assert_int_equal(c.seen, 450);
	assert_true(c.in_order);
	assert_true(c.dups <= (size_t)(written - saved));
	for (int i = 0; i < NRELAY; i++) {
		assert_no_state_file(f, i);
		assert_secret_absent(f, i, f->pg.password);
	}
	f->ok = 1;
}

/* Waits until one of relays 0 and 1 leads and the other waits; returns
 * the leader's index, or -1. */
static int
wait_one_leader(const struct fixture *f, int timeout_ms)
{
	for (long long end = now_ms() + timeout_ms; now_ms() < end;
	     sleep_ms(20)) {
		int a0 = relay_log_count(f, 0, "msg=\"leader lock acquired\"");
		int a1 = relay_log_count(f, 1, "msg=\"leader lock acquired\"");
		int w0 = relay_log_count(f, 0,
		                         "msg=\"waiting for the leader lock\"");
		int w1 = relay_log_count(f, 1,
		                         "msg=\"waiting for the leader lock\"");
		if (a0 > 0 && w1 > 0)
			return 0;
		if (a1 > 0 && w0 > 0)
			return 1;
	}
	return -1;
}

/* (c) */
static void
test_two_relays_one_leader(void **state)
{
	struct fixture *f = *state;
	/* Both at once: they race for the lock (and for the schema). */
	assert_int_equal(start_relay(f, 0), 0);
	assert_int_equal(start_relay(f, 1), 0);
	int lead = wait_one_leader(f, scaled(f, 15000));
	assert_true(lead == 0 || lead == 1);
	int standby = 1 - lead;
	assert_int_equal(
	    wait_log(f->rdir[lead], "msg=subscribed", 1, scaled(f, 15000)), 0);
	assert_int_equal(mock_publish(f->port, CH, 50), 200);
	assert_int_equal(wait_lines(f->rdir[lead], 50, scaled(f, 15000)), 50);
	/* Time for a wrongly active standby to show itself. */
	sleep_ms(scaled(f, 1000));
	int st = 0;
	assert_int_equal(relay_ended(f, standby, &st), 0);
	assert_int_equal(relay_ended(f, lead, &st), 0);
	assert_int_equal(
	    relay_log_count(f, lead, "msg=\"leader lock acquired\""), 1);
	assert_int_equal(
	    relay_log_count(f, standby, "msg=\"leader lock acquired\""), 0);
	assert_int_equal(
	    relay_log_count(f, standby, "msg=\"waiting for the leader lock\""),
	    1);
	assert_int_equal(relay_log_count(f, standby, "msg=subscribed"), 0);
	char out[4200];
	path_in(f, standby, "relay.out", out, sizeof(out));
	assert_int_equal(file_count_lines(out), 0);
	int who[] = {lead};
	struct coverage c = cover(f, who, 1, 50);
	assert_int_equal(c.seen, 50);
	assert_int_equal(c.dups, 0);
	assert_int_equal(wait_db_position(f, 50, scaled(f, 5000)), 50);
	char n[16];
	assert_int_equal(pgtest_query(&f->pg,
	                              "SELECT count(*) FROM sfrelay_leader", n,
	                              sizeof(n)),
	                 0);
	assert_string_equal(n, "1");
	/* The standby goes first, so it does not take over. */
	assert_int_equal(
	    proc_stop(&f->relay[standby], SIGTERM, scaled(f, 15000)), 0);
	assert_int_equal(proc_stop(&f->relay[lead], SIGTERM, scaled(f, 15000)),
	                 0);
	assert_secret_absent(f, 0, f->pg.password);
	assert_secret_absent(f, 1, f->pg.password);
	f->ok = 1;
}

/* (d) */
static void
test_leader_killed_standby_takes_over(void **state)
{
	struct fixture *f = *state;
	const int batches = 10, per = 20, total = batches * per;
	start_leader(f, 0, 1);
	assert_int_equal(start_relay(f, 1), 0);
	assert_int_equal(wait_log(f->rdir[1],
	                          "msg=\"waiting for the leader lock\"", 1,
	                          scaled(f, 15000)),
	                 0);
	long long killed_at = 0;
	int written = 0;
	long saved = -1;
	for (int b = 0; b < batches; b++) {
		assert_int_equal(mock_publish(f->port, CH, per), 200);
		sleep_ms(40);
		if (b == batches / 2) {
			assert_int_equal(proc_stop(&f->relay[0], SIGKILL, 5000),
			                 128 + SIGKILL);
			killed_at = now_ms();
			written = max_seq(f, 0);
			/* Only meaningful while the standby has not led. */
			saved = db_position(f);
			if (relay_log_count(f, 1,
			                    "msg=\"leader lock acquired\"") > 0)
				saved = -1;
		}
	}
	assert_int_equal(wait_log(f->rdir[1], "msg=\"leader lock acquired\"", 1,
	                          FAILOVER_MS + scaled(f, 15000)),
	                 0);
	long long took = now_ms() - killed_at;
	print_message("# standby led %lld ms after the kill (bound %d ms)\n",
	              took, FAILOVER_MS);
	assert_true(took <= FAILOVER_MS + scaled(f, FAILOVER_SLACK_MS));
	if (saved >= 0)
		assert_true(saved <= written);
	assert_int_equal(
	    wait_log(f->rdir[1], "msg=subscribed", 1, scaled(f, 15000)), 0);
	long from = replay_from(f, 1);
	/* It resumed from what the old leader stored: not past what that
	 * one wrote. */
	assert_true(from >= 0 && from <= written);

	int who[] = {0, 1};
	struct coverage c = wait_cover(f, who, 2, total, scaled(f, 20000));
	assert_int_equal(wait_db_position(f, total, scaled(f, 5000)), total);
	assert_int_equal(proc_stop(&f->relay[1], SIGTERM, scaled(f, 15000)), 0);
	c = cover(f, who, 2, total);
	print_message("# %d events, %zu lines, %zu duplicates (old leader "
	              "wrote %d, new one replayed from %ld)\n",
	              total, c.lines, c.dups, written, from);
	assert_int_equal(c.seen, total); /* zero loss */
	assert_true(c.in_order);
	/* Duplicates are exactly the old leader's lines past the stored
	 * checkpoint. */
	assert_true(c.dups <= (size_t)(written - from));
	assert_no_state_file(f, 1);
	assert_secret_absent(f, 0, f->pg.password);
	assert_secret_absent(f, 1, f->pg.password);
	f->ok = 1;
}

/* Fails unless relay i is still running: a lost lock or database must
 * never end the process. */
static void
assert_running(struct fixture *f, int i, const char *when)
{
	int st = 0;
	if (relay_ended(f, i, &st))
		fail_msg("the relay ended with status %d %s; it must stand by "
		         "and lead again in the same process",
		         st, when);
}

/* Offset in relay i's log of the last line holding needle, or -1. */
static long
last_log_offset(const struct fixture *f, int i, const char *needle)
{
	char path[4200];
	path_in(f, i, "relay.err", path, sizeof(path));
	char *s = file_read(path, NULL);
	long at = -1;
	for (char *p = s; p != NULL && (p = strstr(p, needle)) != NULL; p++)
		at = (long)(p - s);
	free(s);
	return at;
}

/* (e) */
static void
test_database_restart_mid_stream(void **state)
{
	struct fixture *f = *state;
	const int rounds = 3, per = 30;
	/* Lines the relay had written past the stored checkpoint each time
	 * it led again: the only ones it may repeat. */
	long in_flight = 0;
	start_leader(f, 0, 1);
	assert_int_equal(mock_publish(f->port, CH, 50), 200);
	assert_int_equal(wait_lines(f->rdir[0], 50, scaled(f, 15000)), 50);
	assert_int_equal(wait_db_position(f, 50, scaled(f, 5000)), 50);
	int total = 50;
	struct coverage c;
	int who[] = {0};
	for (int r = 0; r < rounds; r++) {
		/* Events before, during and after the restart. */
		assert_int_equal(mock_publish(f->port, CH, per), 200);
		sleep_ms(20 * (r + 1));
		long saved = db_position(f);
		assert_true(saved >= 50);
		assert_int_equal(pgtest_restart(&f->pg), 0);
		assert_int_equal(mock_publish(f->port, CH, per), 200);
		total += 2 * per;
		/* The lock went with the server's sessions: lost, a standby
		 * again, then leading again, all in the same process. */
		assert_int_equal(wait_log(f->rdir[0],
		                          "msg=\"leader lock lost\"", r + 1,
		                          scaled(f, 15000)),
		                 0);
		assert_int_equal(wait_log(f->rdir[0],
		                          "msg=\"leader lock acquired\"", r + 2,
		                          scaled(f, 15000)),
		                 0);
		assert_int_equal(wait_log(f->rdir[0], "msg=subscribed", r + 2,
		                          scaled(f, 15000)),
		                 0);
		assert_running(f, 0, "after the database restarted");
		assert_true(
		    last_log_offset(f, 0, "msg=\"leader lock lost\"") <
		    last_log_offset(f, 0, "msg=\"leader lock acquired\""));
		assert_true(relay_log_count(
		                f, 0, "msg=\"waiting for the leader lock\"") >=
		            r + 1);
		/* It resumed from the checkpoint stored before the restart
		 * (or a newer one), never past what it had written. */
		long from = replay_from(f, 0);
		int written = max_seq(f, 0);
		print_message("# restart %d: %ld stored before, led again from "
		              "%ld, %d written\n",
		              r + 1, saved, from, written);
		assert_true(from >= saved);
		assert_true(from <= written);
		in_flight += written - from;
		c = wait_cover(f, who, 1, total, scaled(f, 15000));
		assert_int_equal(c.seen, total);
		assert_running(f, 0, "while catching up");
		/* Some time at work before the next restart. */
		sleep_ms(scaled(f, 300));
	}
	/* The stored checkpoint catches up with the last event. */
	assert_int_equal(wait_db_position(f, total, scaled(f, 15000)), total);
	assert_running(f, 0, "at the end");
	assert_int_equal(relay_log_count(f, 0, "msg=\"leader lock acquired\""),
	                 rounds + 1);
	assert_int_equal(proc_stop(&f->relay[0], SIGTERM, scaled(f, 15000)), 0);
	c = cover(f, who, 1, total);
	print_message("# %d database restarts: led again each time; %ld lines "
	              "past the checkpoint, %zu duplicate lines\n",
	              rounds, in_flight, c.dups);
	assert_int_equal(c.seen, total);
	assert_true(c.in_order);
	assert_true(c.dups <= (size_t)in_flight);
	assert_no_state_file(f, 0);
	assert_secret_absent(f, 0, f->pg.password);
	f->ok = 1;
}

/* (h) A leader deposed behind its back (the epoch moved on) finds out at
 * its next checkpoint write, stands by, and, the lock being free, leads
 * again in the same process with a new epoch; nothing is lost. Then,
 * standing by while the database is down, it still stops at once and
 * cleanly on SIGTERM. */
static void
test_deposed_leads_again_and_stops_as_standby(void **state)
{
	struct fixture *f = *state;
	char out[64];
	int who[] = {0};
	start_leader(f, 0, 1);
	assert_int_equal(mock_publish(f->port, CH, 20), 200);
	assert_int_equal(wait_lines(f->rdir[0], 20, scaled(f, 15000)), 20);
	assert_int_equal(wait_db_position(f, 20, scaled(f, 5000)), 20);
	assert_int_equal(pgtest_query(&f->pg,
	                              "UPDATE sfrelay_leader SET epoch = "
	                              "epoch + 1 RETURNING epoch",
	                              out, sizeof(out)),
	                 0);
	long bumped = atol(out);
	assert_int_equal(mock_publish(f->port, CH, 20), 200);
	assert_int_equal(wait_log(f->rdir[0],
	                          "msg=\"checkpoint write refused: another "
	                          "relay leads now\"",
	                          1, scaled(f, 15000)),
	                 0);
	assert_int_equal(wait_log(f->rdir[0], "msg=\"leader lock lost\"", 1,
	                          scaled(f, 15000)),
	                 0);
	assert_int_equal(wait_log(f->rdir[0], "msg=\"leader lock acquired\"", 2,
	                          scaled(f, 15000)),
	                 0);
	assert_int_equal(
	    wait_log(f->rdir[0], "msg=subscribed", 2, scaled(f, 15000)), 0);
	assert_running(f, 0, "after it was deposed");
	char epoch[32];
	snprintf(epoch, sizeof(epoch), "epoch=%ld", bumped + 1);
	assert_int_equal(relay_log_count(f, 0, epoch), 1);
	/* The refused write stored nothing: it resumed from 20. */
	assert_int_equal(replay_from(f, 0), 20);
	struct coverage c = wait_cover(f, who, 1, 40, scaled(f, 15000));
	assert_int_equal(c.seen, 40);
	assert_true(c.in_order);
	assert_true(c.dups <= 20);
	assert_int_equal(wait_db_position(f, 40, scaled(f, 5000)), 40);
	assert_int_equal(pgtest_query(&f->pg,
	                              "SELECT epoch FROM sfrelay_checkpoints "
	                              "WHERE key = '" CH "'",
	                              out, sizeof(out)),
	                 0);
	assert_int_equal(atol(out), bumped + 1);

	/* The database goes away: a standby again, until SIGTERM. */
	assert_int_equal(pgtest_stop(&f->pg), 0);
	assert_int_equal(wait_log(f->rdir[0], "msg=\"leader lock lost\"", 2,
	                          scaled(f, 15000)),
	                 0);
	assert_int_equal(wait_log(f->rdir[0],
	                          "msg=\"relaying stopped; standing by\"", 2,
	                          scaled(f, 15000)),
	                 0);
	sleep_ms(scaled(f, 300));
	assert_running(f, 0, "while the database was down");
	long long t0 = now_ms();
	assert_int_equal(proc_stop(&f->relay[0], SIGTERM, scaled(f, 5000)), 0);
	print_message("# a standby stopped %lld ms after SIGTERM\n",
	              now_ms() - t0);
	assert_int_equal(relay_log_count(f, 0, "msg=\"shutting down\""), 1);
	assert_secret_absent(f, 0, f->pg.password);
	f->ok = 1;
}

/* 1 when relay i logged a warning or error that names the database. */
static int
has_database_error(const struct fixture *f, int i)
{
	char path[4200];
	path_in(f, i, "relay.err", path, sizeof(path));
	char *s = file_read(path, NULL);
	int found = 0;
	for (char *line = s; line != NULL && *line != '\0' && !found;) {
		char *eol = strchr(line, '\n');
		if (eol != NULL)
			*eol = '\0';
		int bad = strstr(line, "at=warn ") == line ||
		          strstr(line, "at=error ") == line;
		for (char *c = line; *c != '\0'; c++)
			*c = (char)tolower((unsigned char)*c);
		found = bad && (strstr(line, "database") != NULL ||
		                strstr(line, "postgres") != NULL);
		line = eol != NULL ? eol + 1 : NULL;
	}
	free(s);
	return found;
}

/* A loopback port: listening but never answering (listen_fd >= 0 is
 * kept open by the caller), or closed (listen_fd NULL). */
static int
loopback_port(int *listen_fd)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int port = -1;
	assert_true(s >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(s, (struct sockaddr *)&a, &alen) == 0)
		port = ntohs(a.sin_port);
	if (listen_fd != NULL && listen(s, 16) == 0) {
		*listen_fd = s;
		return port;
	}
	close(s);
	return port;
}

/* Runs relay i against url: within timeout_ms it must either end with
 * a non-zero status or log a database error; it never leads, subscribes
 * or writes a line. */
static void
expect_clear_error(struct fixture *f, int i, const char *url,
                   const char *secret, int timeout_ms)
{
	build_env(f, url);
	long long t0 = now_ms();
	assert_int_equal(start_relay(f, i), 0);
	int st = 0, ended = 0;
	for (long long end = t0 + timeout_ms; now_ms() < end; sleep_ms(50)) {
		if ((ended = relay_ended(f, i, &st)) != 0 ||
		    has_database_error(f, i))
			break;
	}
	long long took = now_ms() - t0;
	int named = has_database_error(f, i);
	if (ended)
		print_message("# relay ended with status %d after %lld ms\n",
		              st, took);
	else
		print_message("# relay still running after %lld ms\n", took);
	assert_true(named);
	if (ended)
		assert_true(st != 0 && st != -1);
	if (!ended) {
		/* Still retrying: a stop request must still end it. */
		int rc = proc_stop(&f->relay[i], SIGTERM, scaled(f, 15000));
		assert_true(rc >= 0);
	}
	assert_int_equal(relay_log_count(f, i, "msg=\"leader lock acquired\""),
	                 0);
	assert_int_equal(relay_log_count(f, i, "msg=subscribed"), 0);
	char out[4200];
	path_in(f, i, "relay.out", out, sizeof(out));
	assert_int_equal(file_count_lines(out), 0);
	assert_secret_absent(f, i, secret);
}

/* (f) */
static void
test_password_never_printed(void **state)
{
	struct fixture *f = *state;
	/* Errors with the right password: the database goes away. */
	start_leader(f, 0, 1);
	assert_int_equal(mock_publish(f->port, CH, 10), 200);
	assert_int_equal(wait_lines(f->rdir[0], 10, scaled(f, 15000)), 10);
	assert_int_equal(pgtest_stop(&f->pg), 0);
	assert_int_equal(mock_publish(f->port, CH, 5), 200);
	sleep_ms(scaled(f, 2000));
	assert_int_equal(pgtest_restart(&f->pg), 0);
	int who[] = {0};
	struct coverage c = cover(f, who, 1, 15);
	for (long long end = now_ms() + scaled(f, 20000);
	     c.seen < 15 && now_ms() < end; sleep_ms(50)) {
		assert_running(f, 0, "while the database was away");
		c = cover(f, who, 1, 15);
	}
	assert_int_equal(c.seen, 15);
	assert_int_equal(proc_stop(&f->relay[0], SIGTERM, scaled(f, 15000)), 0);
	char err[4200];
	path_in(f, 0, "relay.err", err, sizeof(err));
	assert_true(file_count_lines(err) > 5);

	/* A wrong password: refused, and not printed either. */
	char wrong[64], url[700];
	snprintf(wrong, sizeof(wrong), "x%.30sq", f->pg.password);
	snprintf(url, sizeof(url),
	         "postgres://sfrelay:%s@127.0.0.1:%d/sfrelay?sslmode=disable",
	         wrong, f->pg.port);
	expect_clear_error(f, 1, url, wrong, scaled(f, 15000));

	/* The password as a query parameter of a postgresql:// URL. */
	snprintf(url, sizeof(url),
	         "postgresql://sfrelay@127.0.0.1:%d/sfrelay?password=%s&"
	         "sslmode=disable",
	         f->pg.port, f->pg.password);
	build_env(f, url);
	start_leader(f, 2, 1);
	assert_int_equal(mock_publish(f->port, CH, 5), 200);
	assert_int_equal(wait_lines(f->rdir[2], 5, scaled(f, 15000)), 5);
	assert_int_equal(proc_stop(&f->relay[2], SIGTERM, scaled(f, 15000)), 0);
	assert_int_equal(db_position(f), 20);

	for (int i = 0; i < NRELAY; i++) {
		assert_secret_absent(f, i, f->pg.password);
		assert_secret_absent(f, i, wrong);
	}
	f->ok = 1;
}

/* (g) */
static void
test_unreachable_database_is_a_clear_error(void **state)
{
	struct fixture *f = *state;
	char url[300];
	/* Refused: nothing listens. */
	int closed = loopback_port(NULL);
	assert_true(closed > 0);
	snprintf(url, sizeof(url),
	         "postgres://sfrelay:unreachable-pw-51@127.0.0.1:%d/sfrelay",
	         closed);
	expect_clear_error(f, 0, url, "unreachable-pw-51", scaled(f, 15000));

	/* Silent: the connection is accepted (by the kernel) and never
	 * answered, which only a connect timeout ends. */
	int lfd = -1;
	int silent = loopback_port(&lfd);
	assert_true(silent > 0 && lfd >= 0);
	snprintf(url, sizeof(url),
	         "postgres://sfrelay:unreachable-pw-51@127.0.0.1:%d/sfrelay"
	         "?sslmode=disable",
	         silent);
	expect_clear_error(f, 1, url, "unreachable-pw-51", scaled(f, 20000));
	close(lfd);
	f->ok = 1;
}

/* (i) What a term acknowledged but never stored (here: the rows are
 * deleted behind its back, as if the writes had not reached the database
 * before it went away) is kept by the process for its next term: without
 * it, the next term would subscribe from -1 and miss what was published
 * while the database was away. */
static void
test_next_term_keeps_unstored_positions(void **state)
{
	struct fixture *f = *state;
	char out[32];
	start_leader(f, 0, 1);
	assert_int_equal(mock_publish(f->port, CH, 10), 200);
	assert_int_equal(wait_lines(f->rdir[0], 10, scaled(f, 15000)), 10);
	assert_int_equal(wait_db_position(f, 10, scaled(f, 5000)), 10);
	assert_int_equal(pgtest_query(&f->pg,
	                              "DELETE FROM sfrelay_checkpoints", out,
	                              sizeof(out)),
	                 0);
	assert_int_equal(pgtest_stop(&f->pg), 0);
	assert_int_equal(wait_log(f->rdir[0], "msg=\"leader lock lost\"", 1,
	                          scaled(f, 15000)),
	                 0);
	assert_int_equal(mock_publish(f->port, CH, 5), 200);
	assert_int_equal(pgtest_restart(&f->pg), 0);
	assert_int_equal(wait_log(f->rdir[0], "msg=subscribed", 2,
	                          scaled(f, 20000)),
	                 0);
	assert_int_equal(relay_log_count(f, 0, "msg=\"checkpoint kept from "
	                                       "the previous term\""),
	                 1);
	assert_int_equal(replay_from(f, 0), 10);
	int who[] = {0};
	struct coverage c = cover(f, who, 1, 15);
	for (long long end = now_ms() + scaled(f, 20000);
	     c.seen < 15 && now_ms() < end; sleep_ms(50))
		c = cover(f, who, 1, 15);
	assert_int_equal(c.seen, 15);
	assert_int_equal(wait_db_position(f, 15, scaled(f, 5000)), 15);
	assert_int_equal(proc_stop(&f->relay[0], SIGTERM, scaled(f, 15000)), 0);
	f->ok = 1;
}

/* The delay_ms of each "checkpoint load retrying after back-off" line
 * of relay i, in order. Returns how many (at most max). */
static size_t
load_retry_delays(const struct fixture *f, int i, long *delays, size_t max)
{
	static const char needle[] =
	    "msg=\"checkpoint load retrying after back-off\"";
	char path[4200];
	path_in(f, i, "relay.err", path, sizeof(path));
	char *s = file_read(path, NULL);
	size_t n = 0;
	for (char *p = s; p != NULL && n < max && (p = strstr(p, needle));
	     p++) {
		char *eol = strchr(p, '\n');
		char *d = strstr(p, " delay_ms=");
		delays[n++] = d != NULL && (eol == NULL || d < eol)
		                  ? atol(d + strlen(" delay_ms="))
		                  : -1;
	}
	free(s);
	return n;
}

#define LOAD_RETRY "msg=\"checkpoint load retrying after back-off\""
/* A sfrelay_gaps of the wrong shape: the schema (CREATE TABLE IF NOT
 * EXISTS) keeps it, the lock and the epoch work, the load query fails. */
#define BREAK_GAPS                                                             \
	"DROP TABLE IF EXISTS sfrelay_gaps;"                                   \
	" CREATE TABLE sfrelay_gaps (key text)"

/* (j) The checkpoints cannot be loaded although the lock can be won:
 * each failure gives the lock up, and the next attempt waits longer
 * (SFRELAY_BACKOFF_MIN=50ms doubling to SFRELAY_BACKOFF_MAX=400ms), not
 * the minimum again and again; a load that works resets the back-off. */
static void
test_failing_load_backs_off(void **state)
{
	struct fixture *f = *state;
	enum { STREAK = 6, MAXD = 64 };
	char out[64];
	long d[MAXD];
	assert_int_equal(pgtest_query(&f->pg, BREAK_GAPS, out, sizeof(out)), 0);
	long long t0 = now_ms();
	assert_int_equal(start_relay(f, 0), 0);
	assert_int_equal(
	    wait_log(f->rdir[0], LOAD_RETRY, STREAK, scaled(f, 20000)), 0);
	long long took = now_ms() - t0;
	assert_int_equal(load_retry_delays(f, 0, d, STREAK), STREAK);
	long waited = 0, most = 0;
	for (int k = 0; k < STREAK; k++) {
		long ceil = 50L << k < 400 ? 50L << k : 400;
		print_message("# load retry %d: delay_ms=%ld (ceiling %ld)\n",
		              k + 1, d[k], ceil);
		assert_true(d[k] >= 50 && d[k] <= ceil);
		most = d[k] > most ? d[k] : most;
		if (k < STREAK - 1)
			waited += d[k];
	}
	/* The first waits the minimum; later ones grow past it. */
	assert_int_equal(d[0], 50);
	assert_true(most > 50);
	/* The delays were waited, not only logged. */
	assert_true(took >= waited);
	/* Each failure was a term of its own: the lock given up and won
	 * again, nothing relayed. */
	assert_true(relay_log_count(f, 0, "msg=\"leader lock acquired\"") >=
	            STREAK);
	assert_true(relay_log_count(f, 0, "msg=\"leader lock lost\"") >=
	            STREAK);
	assert_int_equal(relay_log_count(f, 0, "msg=subscribed"), 0);
	assert_running(f, 0, "while its checkpoints would not load");

	/* Repaired: the next load creates the table again and works. */
	assert_int_equal(
	    pgtest_query(&f->pg, "DROP TABLE sfrelay_gaps", out, sizeof(out)),
	    0);
	assert_int_equal(
	    wait_log(f->rdir[0], "msg=subscribed", 1, scaled(f, 15000)), 0);
	assert_int_equal(mock_publish(f->port, CH, 5), 200);
	assert_int_equal(wait_lines(f->rdir[0], 5, scaled(f, 15000)), 5);
	assert_int_equal(wait_db_position(f, 5, scaled(f, 5000)), 5);
	/* Retries may have come between the streak and the repair. */
	int before = relay_log_count(f, 0, LOAD_RETRY);
	assert_true(before >= STREAK && before + 2 <= MAXD);

	/* Broken again, then the term ends (the database restarts): the
	 * next failure starts over at the minimum. */
	assert_int_equal(pgtest_query(&f->pg, BREAK_GAPS, out, sizeof(out)), 0);
	assert_int_equal(pgtest_restart(&f->pg), 0);
	assert_int_equal(
	    wait_log(f->rdir[0], LOAD_RETRY, before + 2, scaled(f, 20000)), 0);
	size_t n = load_retry_delays(f, 0, d, MAXD);
	assert_true(n >= (size_t)before + 2);
	assert_int_equal(d[before], 50);
	assert_true(d[before + 1] >= 50 && d[before + 1] <= 100);
	assert_int_equal(
	    pgtest_query(&f->pg, "DROP TABLE sfrelay_gaps", out, sizeof(out)),
	    0);
	assert_int_equal(
	    wait_log(f->rdir[0], "msg=subscribed", 2, scaled(f, 20000)), 0);
	assert_int_equal(replay_from(f, 0), 5);
	assert_int_equal(proc_stop(&f->relay[0], SIGTERM, scaled(f, 15000)), 0);
	assert_secret_absent(f, 0, f->pg.password);
	f->ok = 1;
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_checkpoint_round_trip, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_restart_resumes_from_database,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_relays_one_leader, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(
	        test_leader_killed_standby_takes_over, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_database_restart_mid_stream,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_password_never_printed, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(
	        test_unreachable_database_is_a_clear_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_deposed_leads_again_and_stops_as_standby, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_next_term_keeps_unstored_positions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failing_load_backs_off, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests_name("e2e_pg", tests, NULL, NULL);
}
