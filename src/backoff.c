/* Retry delays with full jitter (see backoff.h). */
#include "sfrelay/backoff.h"

uint64_t
backoff_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

long
backoff_ceiling(long min_ms, long max_ms, unsigned failures)
{
	long c = min_ms > 0 ? min_ms : 0;
	/* Doubling stops at max_ms, so a large failure count costs at most
	 * one step per bit and c * 2 cannot overflow. */
	for (unsigned i = 1; i < failures && c > 0 && c < max_ms; i++)
		c = c > max_ms / 2 ? max_ms : c * 2;
	return c;
}

/* Uniform in [lo, hi], hi >= lo >= 0. */
static long
draw(long lo, long hi, uint64_t *state)
{
	uint64_t span = (uint64_t)(hi - lo) + 1;
	return lo + (long)(backoff_random(state) % span);
}

long
backoff_delay(long min_ms, long max_ms, unsigned failures, uint64_t *state)
{
	long lo = min_ms > 0 ? min_ms / 2 : 0;
	return draw(lo, backoff_ceiling(min_ms, max_ms, failures), state);
}

long
backoff_delay_from_min(long min_ms, long max_ms, unsigned failures,
		       uint64_t *state)
{
	long lo = min_ms > 0 ? min_ms : 0;
	return draw(lo, backoff_ceiling(min_ms, max_ms, failures), state);
}
