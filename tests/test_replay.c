/* Replay policy helpers: ISO-8601 times and the subscription-start
 * marker rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sfrelay/replay.h"

static void
test_iso_round_trip(void **state)
{
	(void)state;
	static const struct {
		const char *iso;
		long long ms;
	} cases[] = {
		{"1970-01-01T00:00:00.000Z", 0},
		{"2026-11-26T19:27:53.000Z", 1795721273000LL},
		{"2000-02-29T23:59:59.999Z", 951868799999LL},
		{"1969-12-31T23:59:59.999Z", -1},
		{"2400-03-01T00:00:00.000Z", 13574649600000LL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long ms = 0;
		char buf[32];
		assert_int_equal(replay_iso_to_ms(cases[i].iso, &ms), 0);
		assert_true(ms == cases[i].ms);
		replay_ms_to_iso(cases[i].ms, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].iso);
	}
}

static void
test_iso_variants_and_errors(void **state)
{
	(void)state;
	long long a, b;
	assert_int_equal(replay_iso_to_ms("2026-11-26T19:27:53Z", &a), 0);
	assert_int_equal(replay_iso_to_ms("2026-11-26T19:27:53.0Z", &b), 0);
	assert_true(a == b);
	/* Salesforce's REST form: +0000 offset. */
	assert_int_equal(replay_iso_to_ms("2026-11-26T20:27:53.000+0100", &b),
			 0);
	assert_true(a == b);
	assert_int_equal(replay_iso_to_ms("2026-11-26T18:57:53.000-00:30", &b),
			 0);
	assert_true(a == b);
	const char *bad[] = {"",
			     "2026-11-26",
			     "2026-13-26T19:27:53Z",
			     "2026-11-26 19:27:53Z",
			     "2026-11-26T19:27:53",
			     "2026-11-26T19:27:53.Z",
			     "2026-11-26T19:27:53.000+01",
			     "2026-11-26T19:27:53.000Zjunk",
			     "abcd-11-26T19:27:53.000Z",
			     NULL};
	for (size_t i = 0; bad[i] != NULL; i++)
		assert_int_equal(replay_iso_to_ms(bad[i], &a), -1);
	assert_int_equal(replay_iso_to_ms(NULL, &a), -1);
}

static void
test_before_marker(void **state)
{
	(void)state;
	const char *since = "2026-11-26T12:00:00.000Z";
	/* Long before the marker: dropped. */
	assert_true(replay_before_marker("-2", since,
					 "2026-11-26T11:00:00.000Z"));
	/* Within the skew margin, or after: kept. */
	assert_false(replay_before_marker("-2", since,
					  "2026-11-26T11:58:00.000Z"));
	assert_false(replay_before_marker("-2", since,
					  "2026-11-26T12:00:01.000Z"));
	/* Not a marker (a real position, or -2 chosen by the user without a
	 * time): never drops. */
	assert_false(replay_before_marker("1234", since,
					  "2026-11-26T11:00:00.000Z"));
	assert_false(replay_before_marker("-2", NULL,
					  "2026-11-26T11:00:00.000Z"));
	assert_false(replay_before_marker(NULL, since,
					  "2026-11-26T11:00:00.000Z"));
	/* Unknown event time: kept. */
	assert_false(replay_before_marker("-2", since, NULL));
	assert_false(replay_before_marker("-2", since, "yesterday"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_iso_round_trip),
		cmocka_unit_test(test_iso_variants_and_errors),
		cmocka_unit_test(test_before_marker),
	};
	return cmocka_run_group_tests_name("replay", tests, NULL, NULL);
}
