#ifndef SFRELAY_BACKOFF_H
#define SFRELAY_BACKOFF_H

#include <stdint.h>

/*
 * Retry delays with full jitter, shared by the sinks. Pure: the caller
 * keeps the generator state (seed it with anything non-constant).
 */

/* The next pseudo-random number of the splitmix64 sequence in *state. */
uint64_t backoff_random(uint64_t *state);

/*
 * A delay in [min_ms / 2, ceiling], where the ceiling starts at min_ms
 * and doubles with each failure after the first, up to max_ms.
 */
long backoff_delay(long min_ms, long max_ms, unsigned failures,
		   uint64_t *state);

#endif /* SFRELAY_BACKOFF_H */
