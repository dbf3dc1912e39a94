/*
 * End to end: the long poll sent ahead. When a connect reply has arrived
 * in full, the relay sends the next connect before it decodes the reply
 * (bayeux.c, on_poll_complete), so that the server gathers the next batch
 * while the relay formats this one: only when the reply's /meta/connect
 * message says "reconnect at once". A reply that turns out bad after all
 * cancels it, and the events of a cancelled one come again in the new
 * session's replay: never one lost.
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

#define CH "/topic/Ahead"
#define EVENTS 1000
#define BATCH "50" /* events per connect reply: 20 replies */

static void
start_mock(struct e2e_fixture *f, const char *fault)
{
	const char *plain[] = {"--channel", CH, "--max-batch", BATCH, NULL};
	const char *faulty[] = {"--channel", CH,      "--max-batch",
	                        BATCH,       "--fault", fault, NULL};

	f->port = sfmock_start(&f->mock, f->dir, fault ? faulty : plain);
	assert_true(f->port > 0);
	assert_int_equal(mock_publish(f->port, CH, EVENTS), 200);
}

static void
start_relay(struct e2e_fixture *f)
{
	const char *extra[] = {"SFRELAY_REPLAY_FROM=-2", NULL};

	assert_int_equal(relay_start(&f->relay, f->dir, f->port, CH, extra),
	                 0);
}

/* The number after needle in the relay's log (its last occurrence). */
static long
log_number(const struct e2e_fixture *f, const char *needle)
{
	char *log = file_read(f->err, NULL), *p, *last = NULL;
	long v = -1;

	assert_non_null(log);
	for (p = strstr(log, needle); p != NULL; p = strstr(p + 1, needle))
		last = p;
	if (last != NULL)
		v = strtol(last + strlen(needle), NULL, 10);
	free(log);
	return v;
}

/*
 * Every event 1..EVENTS is in relay.out, and the first sightings come in
 * order (a replay after a new session may repeat a tail, never skip or
 * reorder). Returns how many lines were repeats.
 */
static size_t
expect_all_in_order(const struct e2e_fixture *f)
{
	static long ids[4 * EVENTS];
	static char seen[EVENTS + 1];
	size_t n = file_replay_ids(f->out, CH, ids, 4 * EVENTS), i, dups = 0;
	long next = 1;

	memset(seen, 0, sizeof(seen));
	for (i = 0; i < n && i < 4 * EVENTS; i++) {
		if (ids[i] < 1 || ids[i] > EVENTS)
			fail_msg("line %zu: replay id %ld out of range", i,
			         ids[i]);
		if (seen[ids[i]]) {
			dups++;
			continue;
		}
		if (ids[i] != next)
			fail_msg("line %zu: replay id %ld first seen before %ld",
			         i, ids[i], next);
		seen[ids[i]] = 1;
		next++;
	}
	if (next != EVENTS + 1)
		fail_msg("only %ld of %d events relayed", next - 1, EVENTS);
	return dups;
}

static void
stop_relay(struct e2e_fixture *f)
{
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 20000), 0);
}

/* Twenty replies in a row, each with the next connect already out. */
static void
test_connects_go_ahead(void **state)
{
	struct e2e_fixture *f = *state;

	start_mock(f, NULL);
	start_relay(f);
	assert_true(wait_lines(f->dir, EVENTS, 30000) >= EVENTS);
	stop_relay(f);
	assert_int_equal(expect_all_in_order(f), 0);
	/* Every reply but the last carried events and said "reconnect":
	 * the connect after it went ahead and was kept. */
	long ahead = log_number(f, "connects_ahead=");
	if (ahead < EVENTS / 50 - 1)
		fail_msg("%ld connects went ahead, expected at least %d", ahead,
		         EVENTS / 50 - 1);
	assert_int_equal(log_number(f, "handshakes="), 1);
	assert_int_equal(file_count(f->err, "connect sent ahead cancelled"), 0);
	f->ok = 1;
}

/* Waits until the last event is in relay.out, then stops the relay. */
static void
wait_all_then_stop(struct e2e_fixture *f)
{
	for (long long end = now_ms() + 30000; now_ms() < end; sleep_ms(50))
		if (file_contains(f->out, " replay_id=1000 "))
			break;
	stop_relay(f);
}

/*
 * The fourth reply advises a new handshake: its /meta/connect message
 * says so, so no connect goes ahead of it on the old session; the new
 * session replays from the checkpoint, and nothing is missing.
 */
static void
test_no_connect_ahead_of_handshake_advice(void **state)
{
	struct e2e_fixture *f = *state;

	start_mock(f, "action=advice_handshake,match=/meta/connect,nth=4");
	start_relay(f);
	wait_all_then_stop(f);
	expect_all_in_order(f);
	assert_int_equal(wait_log(f->dir, "server advised handshake", 1, 100),
	                 0);
	assert_int_equal(log_number(f, "handshakes="), 2);
	assert_int_equal(file_count(f->err, "connect sent ahead cancelled"), 0);
	f->ok = 1;
}

/*
 * The fourth reply ends in a good /meta/connect message, so the next
 * connect goes ahead; but its events have string replayIds and the relay
 * refuses the reply. The connect sent ahead is cancelled and a new
 * session replays from the checkpoint: nothing is missing, even what the
 * server may have put in the cancelled reply.
 */
static void
test_refused_reply_cancels_connect_ahead(void **state)
{
	struct e2e_fixture *f = *state;

	start_mock(f, "action=replay_id_string,match=/meta/connect,nth=4");
	start_relay(f);
	wait_all_then_stop(f);
	expect_all_in_order(f);
	assert_int_equal(file_count(f->err, "connect sent ahead cancelled"), 1);
	assert_int_equal(log_number(f, "handshakes="), 2);
	f->ok = 1;
}

/* The server forgot the client mid-stream (403::Unknown client on the
 * sixth connect): no connect goes ahead of that reply either. */
static void
test_no_connect_ahead_of_unknown_client(void **state)
{
	struct e2e_fixture *f = *state;

	start_mock(f, "action=unknown_client,match=/meta/connect,nth=6");
	start_relay(f);
	wait_all_then_stop(f);
	expect_all_in_order(f);
	assert_int_equal(log_number(f, "handshakes="), 2);
	assert_int_equal(file_count(f->err, "connect sent ahead cancelled"), 0);
	f->ok = 1;
}

static int
setup(void **state)
{
	return e2e_setup(state, "e2e-ahead");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_connects_go_ahead, setup,
	                                    e2e_teardown),
	    cmocka_unit_test_setup_teardown(
	        test_no_connect_ahead_of_handshake_advice, setup, e2e_teardown),
	    cmocka_unit_test_setup_teardown(
	        test_refused_reply_cancels_connect_ahead, setup, e2e_teardown),
	    cmocka_unit_test_setup_teardown(
	        test_no_connect_ahead_of_unknown_client, setup, e2e_teardown),
	};

	return cmocka_run_group_tests_name("e2e_ahead", tests, NULL, NULL);
}
