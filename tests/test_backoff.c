/* Retry delays: bounds per failure count, the cap, and jitter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sfrelay/backoff.h"

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delay_bounds_double_up_to_the_cap),
		cmocka_unit_test(test_random_depends_on_seed),
	};
	return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
