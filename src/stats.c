/* l2met stats line (see stats.h). */
#include "sfrelay/stats.h"
#include "sfrelay/replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

struct stats {
	struct event *timer;
	stats_collect_fn *collect;
	stats_emit_fn *emit;
	void *arg;
	struct stats_totals last;
	long max_lag_ms; /* -1: nothing acknowledged this interval */
	double api_usage_pct;
	struct evbuffer *line;
};

int
stats_format(struct evbuffer *out, const struct stats_sample *s)
{
	char lag[48] = "", api[64] = "", gaps[48] = "";
	if (s->gaps > 0)
		snprintf(gaps, sizeof(gaps), " sample#sfrelay.gaps=%zu",
			 s->gaps);
	if (s->lag_ms >= 0)
		snprintf(lag, sizeof(lag), " sample#sfrelay.lag_ms=%ld",
			 s->lag_ms);
	if (s->api_usage_pct >= 0)
		snprintf(api, sizeof(api), " sample#sfrelay.api_usage_pct=%.1f",
			 s->api_usage_pct);
	return evbuffer_add_printf(
		       out,
		       "at=stats count#sfrelay.events=%llu "
		       "count#sfrelay.dropped=%llu sample#sfrelay.queue=%zu%s "
		       "count#sfrelay.reconnects=%llu%s%s\n",
		       (unsigned long long)s->events,
		       (unsigned long long)s->dropped, s->queue, lag,
		       (unsigned long long)s->reconnects, api, gaps) < 0
		       ? -1
		       : 0;
}

static int
read_u64(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t n = 0;
	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (UINT64_MAX - 9) / 10)
			return -1;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	*v = n;
	return 0;
}

int
stats_parse_limit_info(const char *value, double *pct)
{
	if (value == NULL)
		return -1;
	for (const char *p = value; (p = strstr(p, "api-usage=")) != NULL;
	     p++) {
		if (p != value && p[-1] != ' ' && p[-1] != ',' &&
		    p[-1] != ';')
			continue;
		const char *q = p + strlen("api-usage=");
		uint64_t used, max;
		if (read_u64(&q, &used) != 0 || *q++ != '/' ||
		    read_u64(&q, &max) != 0 || max == 0)
			return -1;
		*pct = 100.0 * (double)used / (double)max;
		return 0;
	}
	return -1;
}

int
stats_parse_time(const char *s, int64_t *ms)
{
	long long t;

	if (replay_iso_to_ms(s, &t) != 0)
		return -1;
	*ms = (int64_t)t;
	return 0;
}

static void
emit(struct stats *st)
{
	struct stats_totals t = {0};
	st->collect(st->arg, &t);
	struct stats_sample s = {
		.events = t.events - st->last.events,
		.dropped = t.dropped - st->last.dropped,
		.reconnects = t.reconnects - st->last.reconnects,
		.queue = t.queue,
		.lag_ms = st->max_lag_ms,
		.api_usage_pct = st->api_usage_pct,
		.gaps = t.gaps,
	};
	st->last = t;
	st->max_lag_ms = -1;
	if (stats_format(st->line, &s) != 0)
		return;
	size_t n = evbuffer_get_length(st->line);
	st->emit(st->arg, (const char *)evbuffer_pullup(st->line, -1), n);
	evbuffer_drain(st->line, n);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	emit(arg);
}

struct stats *
stats_new(struct event_base *base, long interval_ms, stats_collect_fn *collect,
	  stats_emit_fn *emit_fn, void *arg)
{
	struct stats *st = calloc(1, sizeof(*st));
	if (st == NULL)
		return NULL;
	st->collect = collect;
	st->emit = emit_fn;
	st->arg = arg;
	st->max_lag_ms = -1;
	st->api_usage_pct = -1;
	st->line = evbuffer_new();
	st->timer = event_new(base, -1, EV_PERSIST, on_timer, st);
	if (st->line == NULL || st->timer == NULL) {
		stats_free(st);
		return NULL;
	}
	/* The first interval's counts start from what was already done. */
	collect(arg, &st->last);
	st->last.queue = 0;
	struct timeval tv = {interval_ms / 1000, (interval_ms % 1000) * 1000};
	event_add(st->timer, &tv);
	return st;
}

void
stats_free(struct stats *st)
{
	if (st == NULL)
		return;
	if (st->timer != NULL)
		event_free(st->timer);
	if (st->line != NULL)
		evbuffer_free(st->line);
	free(st);
}

void
stats_note_ack(struct stats *st, const char *created)
{
	int64_t t;
	if (st == NULL || created == NULL || stats_parse_time(created, &t) != 0)
		return;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t lag = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 - t;
	if (lag < 0)
		lag = 0; /* clocks disagree: no lag rather than a negative */
	if (lag > st->max_lag_ms)
		st->max_lag_ms = (long)lag;
}

void
stats_note_limit_info(struct stats *st, const char *value)
{
	double pct;
	if (st != NULL && stats_parse_limit_info(value, &pct) == 0)
		st->api_usage_pct = pct;
}

void
stats_emit_now(struct stats *st)
{
	if (st != NULL)
		emit(st);
}
