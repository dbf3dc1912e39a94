#ifndef SFRELAY_LOOP_H
#define SFRELAY_LOOP_H

struct event_base;

/*
 * The relay's event loop, configured once for every program that runs
 * it (the relay and --check).
 *
 * Timers count from the real time at which they are added. libevent
 * otherwise reads the clock once per loop pass, so a timer added late in
 * a long pass (a big reply decoded, a slow machine) would fire early by
 * the length of that pass: a back-off of 50 ms after a bad reply could
 * become 40, and the server would see the retry sooner than promised.
 */

/* A new event base; NULL when out of memory. The caller owns it
 * (event_base_free()). */
struct event_base *loop_base_new(void);

#endif /* SFRELAY_LOOP_H */
