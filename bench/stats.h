#ifndef SFRELAY_BENCH_STATS_H
#define SFRELAY_BENCH_STATS_H

/*
 * A growable list of latency samples (microseconds) and its percentiles,
 * shared by the bench helpers. Header-only: each helper is one file.
 * A zeroed struct is an empty list; bench_samples_free releases it.
 */

#include <stdint.h>
#include <stdlib.h>

struct bench_samples {
	int64_t *v;
	size_t n, cap;
	int sorted;
};

/* Adds x; a sample that does not fit in memory is dropped. */
static inline void
bench_samples_add(struct bench_samples *s, int64_t x)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		int64_t *p = realloc(s->v, cap * sizeof(*p));

		if (p == NULL)
			return;
		s->v = p;
		s->cap = cap;
	}
	s->v[s->n++] = x;
	s->sorted = 0;
}

static inline int
bench_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* The pct-th percentile (nearest rank), or -1 when there are none. */
static inline int64_t
bench_samples_pct(struct bench_samples *s, unsigned pct)
{
	size_t rank;

	if (s->n == 0)
		return -1;
	if (!s->sorted) {
		qsort(s->v, s->n, sizeof(*s->v), bench_cmp_i64);
		s->sorted = 1;
	}
	/* nearest rank: ceil(pct/100 * n), 1-based */
	rank = (s->n * pct + 99) / 100;
	if (rank < 1)
		rank = 1;
	return s->v[rank - 1];
}

static inline int64_t
bench_samples_max(struct bench_samples *s)
{
	return bench_samples_pct(s, 100);
}

static inline void
bench_samples_free(struct bench_samples *s)
{
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

#endif /* SFRELAY_BENCH_STATS_H */
