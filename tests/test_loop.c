#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>
#include <event2/event.h>

#include "sfrelay/loop.h"

#define PASS_MS 30  /* how long the pass runs before it adds the timer */
#define TIMER_MS 50 /* the timer, as a back-off would set it */
/* libevent reads a coarse clock (a few ms a tick): room for one tick. */
#define TICK_MS 5

static long long
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct probe {
	struct event_base *base;
	struct event *timer;
	long long added_ms, fired_ms;
};

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct probe *p = arg;
	p->fired_ms = mono_ms();
	event_base_loopbreak(p->base);
}

/* Other work waking the loop every few ms, as sockets do in the relay:
 * each wake-up is a chance for an early timer to fire. */
static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* A loop pass that takes PASS_MS (a big reply being decoded) and ends
 * by setting a timer, as a failed request sets its back-off. */
static void
on_long_pass(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct probe *p = arg;
	long long until = mono_ms() + PASS_MS;
	while (mono_ms() < until)
		;
	struct timeval tv = {0, TIMER_MS * 1000};
	p->added_ms = mono_ms();
	assert_int_equal(evtimer_add(p->timer, &tv), 0);
}

static void
test_timer_counts_from_when_it_is_added(void **state)
{
	(void)state;
	struct event_base *base = loop_base_new();
	assert_non_null(base);
	struct probe p = {.base = base};
	p.timer = evtimer_new(base, on_timer, &p);
	struct event *pass = evtimer_new(base, on_long_pass, &p);
	struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	assert_non_null(p.timer);
	assert_non_null(pass);
	assert_non_null(tick);
	struct timeval now = {0, 0}, period = {0, 2000};
	assert_int_equal(evtimer_add(pass, &now), 0);
	assert_int_equal(evtimer_add(tick, &period), 0);
	assert_int_equal(event_base_dispatch(base), 0);
	assert_true(p.fired_ms > 0);
	/* Had the clock been read at the start of the pass, the timer
	 * would have fired about PASS_MS early. */
	print_message("# timer fired %lld ms after it was added (set: %d)\n",
	              p.fired_ms - p.added_ms, TIMER_MS);
	assert_true(p.fired_ms - p.added_ms >= TIMER_MS - TICK_MS);
	event_free(tick);
	event_free(pass);
	event_free(p.timer);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_timer_counts_from_when_it_is_added),
	};
	return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
