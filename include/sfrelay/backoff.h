#ifndef SFRELAY_BACKOFF_H
#define SFRELAY_BACKOFF_H

#include <stdint.h>

/*
 * Retry delays, the one formula of the relay: after `failures`
 * consecutive failures (counting the one being retried) the ceiling is
 * min_ms * 2^(failures - 1), never above max_ms (nor below min_ms: a
 * max_ms under min_ms counts as min_ms, a negative min_ms as 0). With
 * failures 0 or 1 it is min_ms. The delay is drawn at random below the
 * ceiling (full jitter).
 *
 * Pure: the caller keeps the generator state, one per object (seed it
 * with anything non-constant; every value, 0 included, is a valid
 * seed), and the failure count, reset to 0 on success.
 */

/* The next pseudo-random number of the splitmix64 sequence in *state. */
uint64_t backoff_random(uint64_t *state);

/* The ceiling for `failures`, as above (no jitter). */
long backoff_ceiling(long min_ms, long max_ms, unsigned failures);

/*
 * A delay in [min_ms / 2, ceiling]: the network sinks and the Postgres
 * connections, where half the minimum is soon enough.
 */
long backoff_delay(long min_ms, long max_ms, unsigned failures,
		   uint64_t *state);

/*
 * A delay in [min_ms, ceiling]: never shorter than min_ms, as
 * SFRELAY_BACKOFF_MIN promises ("the shortest delay"). The stream, the
 * poller and the checkpoint load retry with it.
 */
long backoff_delay_from_min(long min_ms, long max_ms, unsigned failures,
			    uint64_t *state);

#endif /* SFRELAY_BACKOFF_H */
