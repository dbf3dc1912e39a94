/* Retry delays: bounds per failure count, the cap, and jitter. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sfrelay/backoff.h"

/* Ceilings for min 100, max 1000, by failure count. */
static const struct {
	unsigned failures;
	long ceil;
} ceilings[] = {{0, 100}, {1, 100},  {2, 200},  {3, 400},
		{4, 800}, {5, 1000}, {40, 1000}, {UINT_MAX, 1000}};
#define NCEILINGS (sizeof(ceilings) / sizeof(ceilings[0]))

typedef long delay_fn(long min_ms, long max_ms, unsigned failures,
		      uint64_t *state);

/* Draws n delays; the smallest and largest seen. */
static void
spread(delay_fn *fn, long min_ms, long max_ms, unsigned failures,
       uint64_t *rng, int n, long *lo, long *hi)
{
	*lo = LONG_MAX;
	*hi = LONG_MIN;
	for (int i = 0; i < n; i++) {
		long d = fn(min_ms, max_ms, failures, rng);
		*lo = d < *lo ? d : *lo;
		*hi = d > *hi ? d : *hi;
	}
}

static void
test_ceiling_doubles_up_to_the_cap(void **state)
{
	(void)state;
	for (size_t c = 0; c < NCEILINGS; c++)
		assert_int_equal(backoff_ceiling(100, 1000, ceilings[c].failures),
				 ceilings[c].ceil);
	/* A cap that is not a power-of-two multiple of the minimum. */
	assert_int_equal(backoff_ceiling(50, 400, 4), 400);
	assert_int_equal(backoff_ceiling(50, 400, 5), 400);
	assert_int_equal(backoff_ceiling(30, 100, 3), 100);
}

/* Near LONG_MAX doubling would overflow: it must stop at the cap. */
static void
test_ceiling_does_not_overflow(void **state)
{
	(void)state;
	long big = LONG_MAX / 3;
	assert_int_equal(backoff_ceiling(big, LONG_MAX, 2), 2 * big);
	assert_int_equal(backoff_ceiling(big, LONG_MAX, 3), LONG_MAX);
	assert_int_equal(backoff_ceiling(1, LONG_MAX, UINT_MAX), LONG_MAX);
	uint64_t rng = 5;
	for (int i = 0; i < 1000; i++) {
		long d = backoff_delay(1, LONG_MAX, UINT_MAX, &rng);
		assert_true(d >= 0);
		d = backoff_delay_from_min(1, LONG_MAX, UINT_MAX, &rng);
		assert_true(d >= 1);
	}
}

/* A maximum below the minimum (both are separate settings) counts as
 * the minimum: no delay under half the minimum, none above it, and no
 * division by an empty range. */
static void
test_max_below_min_counts_as_min(void **state)
{
	(void)state;
	uint64_t rng = 9;
	assert_int_equal(backoff_ceiling(300, 100, 1), 300);
	assert_int_equal(backoff_ceiling(300, 100, 7), 300);
	static const long maxes[] = {100, 101, 149, 150, 151, 299};
	for (size_t m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
		long lo, hi;
		spread(backoff_delay, 300, maxes[m], 3, &rng, 500, &lo, &hi);
		assert_true(lo >= 150);
		assert_true(hi <= 300);
		spread(backoff_delay_from_min, 300, maxes[m], 3, &rng, 50, &lo,
		       &hi);
		assert_int_equal(lo, 300);
		assert_int_equal(hi, 300);
	}
}

static void
test_zero_or_negative_min_is_no_wait(void **state)
{
	(void)state;
	uint64_t rng = 3;
	assert_int_equal(backoff_ceiling(0, 1000, 10), 0);
	assert_int_equal(backoff_ceiling(-5, 1000, 10), 0);
	assert_int_equal(backoff_delay(0, 1000, 10, &rng), 0);
	assert_int_equal(backoff_delay(-5, 1000, 10, &rng), 0);
	assert_int_equal(backoff_delay_from_min(-5, 1000, 10, &rng), 0);
}

static void
test_delay_bounds_double_up_to_the_cap(void **state)
{
	(void)state;
	uint64_t rng = 42;
	static const struct {
		unsigned failures;
		long ceil;
	} cases[] = {{0, 100}, {1, 100}, {2, 200}, {3, 400}, {4, 800},
		     {5, 1000}, {40, 1000}};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		long lo = 1000000, hi = -1;
		for (int i = 0; i < 2000; i++) {
			long d = backoff_delay(100, 1000, cases[c].failures,
					       &rng);
			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
		}
		assert_true(lo >= 50);
		assert_true(hi <= cases[c].ceil);
		/* Jitter spreads over the range, not one value. */
		assert_true(hi - lo > (cases[c].ceil - 50) / 2);
	}
}

/* The stream's, the poller's and the checkpoint load's delays: never
 * below the minimum (SFRELAY_BACKOFF_MIN is "the shortest delay"). */
static void
test_delay_from_min_never_below_min(void **state)
{
	(void)state;
	uint64_t rng = 7;
	for (size_t c = 0; c < NCEILINGS; c++) {
		long lo, hi;
		spread(backoff_delay_from_min, 100, 1000, ceilings[c].failures,
		       &rng, 2000, &lo, &hi);
		assert_true(lo >= 100);
		assert_true(hi <= ceilings[c].ceil);
		if (ceilings[c].ceil == 100) {
			/* No room for jitter: exactly the minimum. */
			assert_int_equal(lo, 100);
			assert_int_equal(hi, 100);
		} else {
			assert_true(hi - lo > (ceilings[c].ceil - 100) / 2);
			/* Both ends of the range are reachable. */
			assert_true(lo < 100 + (ceilings[c].ceil - 100) / 10);
			assert_true(hi > ceilings[c].ceil -
					     (ceilings[c].ceil - 100) / 10);
		}
	}
}

/*
 * How a caller uses it (the checkpoint load in main, the stream, the
 * poller): count failures in a row, reset on success. A run of failures
 * grows towards the cap; after a success the next failure waits the
 * minimum again, whatever came before.
 */
static void
test_failure_streak_grows_and_resets(void **state)
{
	(void)state;
	uint64_t rng = 0; /* 0 is a valid seed */
	long sixth_sum = 0, late_max = 0;
	const int rounds = 400;
	for (int round = 0; round < rounds; round++) {
		unsigned failures = 0;
		for (int k = 1; k <= 6; k++) {
			long d = backoff_delay_from_min(50, 400, ++failures,
							&rng);
			assert_true(d >= 50);
			assert_true(d <= backoff_ceiling(50, 400, failures));
			if (k == 1)
				assert_int_equal(d, 50);
			if (k >= 4 && d > late_max)
				late_max = d;
			if (k == 6)
				sixth_sum += d;
		}
		failures = 0; /* a load that worked */
		assert_int_equal(
		    backoff_delay_from_min(50, 400, ++failures, &rng), 50);
	}
	/* Grown to the cap, not stuck at the minimum: the sixth delay is
	 * uniform in [50, 400], so its mean is near 225. */
	assert_true(late_max > 380);
	assert_true(sixth_sum / rounds > 180 && sixth_sum / rounds < 270);
}

static void
test_random_depends_on_seed(void **state)
{
	(void)state;
	uint64_t a = 1, b = 1, c = 2;
	uint64_t x = backoff_random(&a);
	assert_true(x == backoff_random(&b));
	assert_true(x != backoff_random(&c));
	assert_true(backoff_random(&a) != x);
}

/* Two objects with their own state draw their own sequences: a delay
 * drawn for one does not move the other's. */
static void
test_state_is_per_caller(void **state)
{
	(void)state;
	uint64_t a = 77, b = 77, c = 78;
	long first = backoff_delay_from_min(100, 100000, 20, &a);
	(void)backoff_delay_from_min(100, 100000, 20, &c);
	assert_int_equal(backoff_delay_from_min(100, 100000, 20, &b), first);
	int differ = 0;
	for (int i = 0; i < 16; i++)
		differ |= backoff_delay_from_min(100, 100000, 20, &a) !=
			  backoff_delay_from_min(100, 100000, 20, &c);
	assert_true(differ);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ceiling_doubles_up_to_the_cap),
		cmocka_unit_test(test_ceiling_does_not_overflow),
		cmocka_unit_test(test_max_below_min_counts_as_min),
		cmocka_unit_test(test_zero_or_negative_min_is_no_wait),
		cmocka_unit_test(test_delay_bounds_double_up_to_the_cap),
		cmocka_unit_test(test_delay_from_min_never_below_min),
		cmocka_unit_test(test_failure_streak_grows_and_resets),
		cmocka_unit_test(test_random_depends_on_seed),
		cmocka_unit_test(test_state_is_per_caller),
	};
	return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
