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
backoff_delay(long min_ms, long max_ms, unsigned failures, uint64_t *state)
{
	long ceil = min_ms;
	for (unsigned i = 1; i < failures && ceil < max_ms; i++)
		ceil *= 2;
	if (ceil > max_ms)
		ceil = max_ms;
	long lo = min_ms / 2;
	return lo + (long)(backoff_random(state) % (uint64_t)(ceil - lo + 1));
}
