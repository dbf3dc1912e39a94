/*
 * Delivery across restarts: checkpoints follow acknowledgements, a
 * restart resumes where the sink stopped, SIGKILL loses nothing, a replay
 * id past retention is reported as a gap, and a restarted server (which
 * forgot the client and the token) is recovered from.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define CH "/topic/Deliver"

static const char *const fast[] = {
	"SFRELAY_BACKOFF_MIN=50ms",
	"SFRELAY_BACKOFF_MAX=400ms",
	"SFRELAY_CHECKPOINT_INTERVAL=100ms",
	NULL,
};

static int
start_mock(struct e2e_fixture *f, const char *const *flags)
{
	f->port = sfmock_start(&f->mock, f->dir, flags);
	return f->port > 0 ? 0 : -1;
}

/* The sobject.Seq of every line, in file order; returns the count. */
static size_t
read_seqs(const char *path, int *seqs, size_t max)
{
	char *all = file_read(path, NULL);
	size_t n = 0;
	for (char *p = all; p != NULL && (p = strstr(p, " sobject.Seq=")) &&
			    n < max;
	     p++)
		seqs[n++] = atoi(p + strlen(" sobject.Seq="));
	free(all);
	return n;
}

/* Every seq 1..total seen at least once, first appearances in order;
 * returns the number of duplicate lines. */
static size_t
check_at_least_once(const int *seqs, size_t n, int total)
{
	char *seen = calloc((size_t)total + 1, 1);
	int next = 1;
	size_t dups = 0;
	for (size_t i = 0; i < n; i++) {
		assert_true(seqs[i] >= 1 && seqs[i] <= total);
		if (seen[seqs[i]]) {
			dups++;
			continue;
		}
		/* A first appearance must be the next unseen one. */
		assert_int_equal(seqs[i], next);
		seen[seqs[i]] = 1;
		next++;
	}
	assert_int_equal(next, total + 1);
	free(seen);
	return dups;
}

static void
test_restart_resumes_from_checkpoint(void **state)
{
	struct e2e_fixture *f = *state;
	const char *flags[] = {"--channel", CH, NULL};
	assert_int_equal(start_mock(f, flags), 0);
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, CH, fast), 0);
	assert_int_equal(wait_log(f->dir, "msg=subscribed", 1, 10000), 0);
	assert_int_equal(mock_publish(f->port, CH, 100), 200);
	assert_int_equal(wait_lines(f->dir, 100, 15000), 100);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	/* Shutdown saved the last acknowledged replay id. */
	assert_true(file_contains(f->ckpt, "\"100\""));

	assert_int_equal(mock_publish(f->port, CH, 50), 200); /* while down */
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, CH, fast), 0);
	assert_int_equal(wait_lines(f->dir, 150, 15000), 150);
	sleep_ms(200);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	assert_true(file_contains(f->dir == NULL ? "" : f->ckpt, "\"150\""));
	char err[4096];
	snprintf(err, sizeof(err), "%s/relay.err", f->dir);
	assert_true(file_contains(err, "replay_from=100"));

	int seqs[400];
	size_t n = read_seqs(f->out, seqs, 400);
	assert_int_equal(n, 150); /* clean stops: no duplicates */
	assert_int_equal(check_at_least_once(seqs, n, 150), 0);
	f->ok = 1;
}

static void
test_replay_all_retained_on_first_start(void **state)
{
	struct e2e_fixture *f = *state;
	const char *flags[] = {"--channel", CH, NULL};
	assert_int_equal(start_mock(f, flags), 0);
	assert_int_equal(mock_publish(f->port, CH, 30), 200);
	const char *env[] = {"SFRELAY_REPLAY_FROM=-2", NULL};
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, CH, env), 0);
	assert_int_equal(wait_lines(f->dir, 30, 15000), 30);
	sleep_ms(200);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	int seqs[64];
	size_t n = read_seqs(f->out, seqs, 64);
	assert_int_equal(n, 30);
	assert_int_equal(check_at_least_once(seqs, n, 30), 0);
	f->ok = 1;
}

/* The checkpointed replay id of the one channel (0 for the start
 * marker or none). With one channel on a fresh mock, replay id k is the
 * k-th event, Seq k. */
static int
checkpointed(const struct e2e_fixture *f)
{
	char *s = file_read(f->ckpt, NULL);
	const char *p = s != NULL ? strstr(s, "\"position\"") : NULL;
	int pos = 0;
	if (p != NULL && (p = strchr(p + 10, '"')) != NULL)
		pos = atoi(p + 1);
	free(s);
	return pos > 0 ? pos : 0;
}

static int
max_seq(const struct e2e_fixture *f)
{
	static int seqs[20000];
	size_t n = read_seqs(f->out, seqs, 20000);
	int max = 0;
	for (size_t i = 0; i < n; i++)
		max = seqs[i] > max ? seqs[i] : max;
	return max;
}

static void
test_sigkill_loses_nothing(void **state)
{
	struct e2e_fixture *f = *state;
	const char *flags[] = {"--channel", CH, NULL};
	assert_int_equal(start_mock(f, flags), 0);
	const int rounds = 6, per = 200;
	unsigned seed = 12345;
	/* Lines written past the durable checkpoint at each kill: the only
	 * ones a restart may repeat. */
	int in_flight = 0;
	for (int r = 0; r < rounds; r++) {
		assert_int_equal(
			relay_start(&f->relay, f->dir, f->port, CH, fast), 0);
		assert_int_equal(
			wait_log(f->dir, "msg=subscribed", r + 1, 10000), 0);
		assert_int_equal(mock_publish(f->port, CH, per), 200);
		/* Kill at a pseudo-random moment while lines are flowing. */
		seed = seed * 1103515245u + 12345u;
		sleep_ms((int)((seed >> 16) % 40));
		assert_int_equal(proc_stop(&f->relay, SIGKILL, 5000),
				 128 + SIGKILL);
		int written = max_seq(f), saved = checkpointed(f);
		assert_true(saved <= written); /* never ahead of the sink */
		in_flight += written - saved;
	}
	/* A last run picks up whatever the kills left behind. */
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, CH, fast), 0);
	int total = rounds * per;
	int *seqs = calloc(20000, sizeof(int));
	for (long long end = now_ms() + 20000;
	     now_ms() < end && max_seq(f) < total; sleep_ms(50))
		;
	sleep_ms(300);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	size_t n = read_seqs(f->out, seqs, 20000);
	size_t dups = check_at_least_once(seqs, n, total);
	print_message("# %d events, %zu lines, %zu duplicates after %d kills "
		      "(%d lines were past the checkpoint at the kills)\n",
		      total, n, dups, rounds, in_flight);
	assert_true(dups <= (size_t)in_flight);
	free(seqs);
	f->ok = 1;
}

static void
test_replay_id_past_retention_is_a_gap(void **state)
{
	struct e2e_fixture *f = *state;
	const char *flags[] = {"--channel", CH, "--retention", "5", NULL};
	assert_int_equal(start_mock(f, flags), 0);
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, CH, fast), 0);
	assert_int_equal(wait_log(f->dir, "msg=subscribed", 1, 10000), 0);
	assert_int_equal(mock_publish(f->port, CH, 5), 200);
	assert_int_equal(wait_lines(f->dir, 5, 15000), 5);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);

	/* 20 more while down: the mock keeps only 21..25 now, so the
	 * stored id 5 is past retention. */
	assert_int_equal(mock_publish(f->port, CH, 20), 200);
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, CH, fast), 0);
	assert_int_equal(wait_lines(f->dir, 10, 15000), 10);
	sleep_ms(200);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);

	char err[4096];
	snprintf(err, sizeof(err), "%s/relay.err", f->dir);
	assert_true(file_contains(err, "msg=\"replay gap"));
	assert_true(file_contains(err, "last_replay_id=5 "));
	assert_true(file_contains(f->ckpt, "\"after_position\": \"5\"") ||
		    file_contains(f->ckpt, "\"after_position\":\"5\""));
	int seqs[64];
	size_t n = read_seqs(f->out, seqs, 64);
	assert_int_equal(n, 10);
	for (int i = 0; i < 5; i++)
		assert_int_equal(seqs[i], i + 1);
	for (int i = 5; i < 10; i++) /* -2: every retained event */
		assert_int_equal(seqs[i], 16 + i);
	f->ok = 1;
}

static void
test_server_restart_is_recovered(void **state)
{
	struct e2e_fixture *f = *state;
	const char *flags[] = {"--channel", CH, NULL};
	assert_int_equal(start_mock(f, flags), 0);
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, CH, fast), 0);
	assert_int_equal(wait_log(f->dir, "msg=subscribed", 1, 10000), 0);
	assert_int_equal(mock_publish(f->port, CH, 20), 200);
	assert_int_equal(wait_lines(f->dir, 20, 15000), 20);

	/* A new server on the same port: no token, no client, no events. */
	proc_stop(&f->mock, SIGTERM, 5000);
	char port[16];
	snprintf(port, sizeof(port), "%d", f->port);
	const char *again[] = {"--port", port, "--channel", CH, NULL};
	char bin[512];
	harness_bin("sfmock", bin, sizeof(bin));
	const char *argv[] = {bin, "--port", port, "--channel", CH, NULL};
	(void)again;
	char log[4200];
	snprintf(log, sizeof(log), "%s/sfmock2.log", f->dir);
	assert_int_equal(proc_start(&f->mock, argv, NULL, NULL, log), 0);
	char line[256];
	assert_int_equal(proc_read_line(&f->mock, line, sizeof(line), 10000),
			 0);
	assert_int_equal(wait_log(f->dir, "msg=subscribed", 2, 15000), 0);
	assert_int_equal(mock_publish(f->port, CH, 10), 200);
	assert_int_equal(wait_lines(f->dir, 30, 15000), 30);
	sleep_ms(200);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	char err[4096];
	snprintf(err, sizeof(err), "%s/relay.err", f->dir);
	/* The new server did not know the stored id: reported, not hidden. */
	assert_true(file_contains(err, "last_replay_id=20"));
	assert_true(file_contains(err, "msg=authenticated") );
	assert_true(file_count(err, "msg=authenticated") >= 2);
	f->ok = 1;
}

/*
 * Shutdown: SIGTERM sends /meta/disconnect (held here by the mock for
 * 8 s); a second signal must not wait for it: the relay saves its
 * checkpoint once more and exits at once.
 */
static void
test_second_signal_exits_at_once(void **state)
{
	struct e2e_fixture *f = *state;
	const char *flags[] = {"--channel", CH, NULL};
	assert_int_equal(start_mock(f, flags), 0);
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, CH, fast), 0);
	assert_int_equal(wait_log(f->dir, "msg=subscribed", 1, 10000), 0);
	assert_int_equal(mock_publish(f->port, CH, 10), 200);
	assert_int_equal(wait_lines(f->dir, 10, 15000), 10);
	char url[128], resp[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_mock/fault", f->port);
	assert_int_equal(http_call("POST", url, NULL,
				   "{\"match\":\"/meta/disconnect\","
				   "\"action\":\"delay\",\"ms\":8000}",
				   resp, sizeof(resp)),
			 200);
	kill(f->relay.pid, SIGTERM);
	assert_int_equal(wait_log(f->dir, "msg=\"shutting down\"", 1, 5000),
			 0);
	sleep_ms(200); /* the disconnect is now held by the mock */
	long long t0 = now_ms();
	/* Well inside the 8 s hold: only the second signal can end it. */
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 4000), 0);
	assert_true(now_ms() - t0 < 4000);
	char err[4096];
	snprintf(err, sizeof(err), "%s/relay.err", f->dir);
	assert_true(file_contains(err, "second signal"));
	assert_true(file_contains(f->ckpt, "\"10\""));
	f->ok = 1;
}

static int
setup(void **state)
{
	return e2e_setup(state, "delivery");
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, e2e_teardown)
	const struct CMUnitTest tests[] = {
		T(test_restart_resumes_from_checkpoint),
		T(test_replay_all_retained_on_first_start),
		T(test_sigkill_loses_nothing),
		T(test_replay_id_past_retention_is_a_gap),
		T(test_server_restart_is_recovered),
		T(test_second_signal_exits_at_once),
	};
	return cmocka_run_group_tests_name("e2e_delivery", tests, NULL, NULL);
}
