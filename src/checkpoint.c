/*
 * The in-memory checkpoint map over a backend (checkpoint.h).
 *
 * The relay acknowledges lines far more often than a backend should be
 * written (an fsync or a database round trip per event would cap the
 * throughput), so changes only mark the map dirty and arm a one-shot
 * timer; when it fires, the whole state is saved once. A failed save keeps
 * the map dirty and re-arms the timer, so a full disk or a database
 * outage costs retries, never positions. With interval 0, or without an
 * event base, every change is saved at once.
 *
 * Entries and gaps live in arrays of the public structs so that a save
 * can hand them to the backend as they are; the strings of one record sit
 * in one malloc'd block, owned through a parallel array of pointers.
 */
#include "sfrelay/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>

#include "sfrelay/log.h"

struct cp_data {
	struct checkpoint_entry *entries;
	char **entry_mem; /* entry_mem[i] owns entries[i]'s strings */
	size_t nentries, entries_cap;
	struct checkpoint_gap *gaps;
	char **gap_mem;
	size_t ngaps, gaps_cap;
};

struct checkpoint {
	struct event_base *base; /* borrowed */
	const struct checkpoint_ops *ops;
	const struct checkpoint_async_ops *async; /* NULL: synchronous */
	void *impl;
	long interval_ms;
	struct event *timer; /* NULL when every change is saved at once */
	struct cp_data data;
	int dirty;
	unsigned long writes;
	/* Asynchronous saves: gen counts changes, so a save that completes
	 * after newer changes leaves the map dirty. */
	unsigned long gen, inflight_gen;
	int inflight;
	int halted; /* deposed or halted: never write again */
	checkpoint_deposed_fn *deposed_fn;
	void *deposed_arg;
};

static void *
xreallocarray(void *p, size_t n, size_t size)
{
	if (size != 0 && n > (size_t)-1 / size)
		abort();
	void *q = realloc(p, n * size);
	if (q == NULL)
		abort(); /* out of memory is fatal by design (STYLE.md) */
	return q;
}

/* Copies n strings (NULLs stay NULL) into one block; out[i] point into
 * it. One free() releases the record. */
static char *
pack(const char *const *in, const char **out, size_t n)
{
	size_t total = 1;
	for (size_t i = 0; i < n; i++)
		total += in[i] != NULL ? strlen(in[i]) + 1 : 0;
	char *mem = malloc(total);
	if (mem == NULL)
		abort();
	char *p = mem;
	for (size_t i = 0; i < n; i++) {
		out[i] = NULL;
		if (in[i] == NULL)
			continue;
		size_t l = strlen(in[i]) + 1;
		memcpy(p, in[i], l);
		out[i] = p;
		p += l;
	}
	return mem;
}

static int
same_text(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void
data_clear(struct cp_data *d)
{
	for (size_t i = 0; i < d->nentries; i++)
		free(d->entry_mem[i]);
	for (size_t i = 0; i < d->ngaps; i++)
		free(d->gap_mem[i]);
	free(d->entries);
	free(d->entry_mem);
	free(d->gaps);
	free(d->gap_mem);
	memset(d, 0, sizeof(*d));
}

static const struct checkpoint_entry *
data_find(const struct cp_data *d, const char *key)
{
	for (size_t i = 0; i < d->nentries; i++)
		if (strcmp(d->entries[i].key, key) == 0)
			return &d->entries[i];
	return NULL;
}

/* Adds or replaces key's entry. Returns 0 when nothing changed. */
static int
data_put(struct cp_data *d, const char *key, const char *position,
         const char *created)
{
	const struct checkpoint_entry *old = data_find(d, key);
	size_t i = old != NULL ? (size_t)(old - d->entries) : d->nentries;
	if (old != NULL && strcmp(old->position, position) == 0 &&
	    same_text(old->created, created))
		return 0;
	if (old == NULL && d->nentries == d->entries_cap) {
		d->entries_cap = d->entries_cap != 0 ? d->entries_cap * 2 : 8;
		d->entries = xreallocarray(d->entries, d->entries_cap,
		                           sizeof(*d->entries));
		d->entry_mem = xreallocarray(d->entry_mem, d->entries_cap,
		                             sizeof(*d->entry_mem));
	}
	const char *out[3];
	const char *in[3] = {key, position, created};
	char *mem = pack(in, out, 3);
	if (old != NULL)
		free(d->entry_mem[i]);
	else
		d->nentries++;
	d->entry_mem[i] = mem;
	d->entries[i] = (struct checkpoint_entry){out[0], out[1], out[2]};
	return 1;
}

static void
data_add_gap(struct cp_data *d, const struct checkpoint_gap *g)
{
	if (d->ngaps == d->gaps_cap) {
		d->gaps_cap = d->gaps_cap != 0 ? d->gaps_cap * 2 : 8;
		d->gaps = xreallocarray(d->gaps, d->gaps_cap, sizeof(*d->gaps));
		d->gap_mem =
		    xreallocarray(d->gap_mem, d->gaps_cap, sizeof(*d->gap_mem));
	}
	const char *out[4];
	const char *in[4] = {g->key, g->after_position, g->after_created,
	                     g->detected};
	d->gap_mem[d->ngaps] = pack(in, out, 4);
	d->gaps[d->ngaps++] =
	    (struct checkpoint_gap){out[0], out[1], out[2], out[3]};
}

static int
gap_valid(const struct checkpoint_gap *g)
{
	return g != NULL && g->key != NULL && g->after_position != NULL &&
	       g->detected != NULL;
}

/* checkpoint_load_fn: copies a backend's state into a fresh cp_data. */
static int
load_into(void *arg, const struct checkpoint_state *st)
{
	struct cp_data *d = arg;
	data_clear(d);
	for (size_t i = 0; i < st->nentries; i++) {
		const struct checkpoint_entry *e = &st->entries[i];
		if (e->key == NULL || e->position == NULL)
			return -1;
		data_put(d, e->key, e->position, e->created);
	}
	for (size_t i = 0; i < st->ngaps; i++) {
		if (!gap_valid(&st->gaps[i]))
			return -1;
		data_add_gap(d, &st->gaps[i]);
	}
	return 0;
}

static void on_saved(void *arg, int status, const char *err);

/* Starts an asynchronous save if dirty and none runs. Returns 0, or -1
 * with err when it cannot start. */
static int
start_save(struct checkpoint *cp, char *err, size_t errlen)
{
	if (cp->halted) {
		snprintf(err, errlen, "%s checkpoint store: writes stopped",
		         cp->ops->name);
		return -1;
	}
	if (!cp->dirty || cp->inflight)
		return 0;
	struct checkpoint_state st = {cp->data.entries, cp->data.nentries,
	                              cp->data.gaps, cp->data.ngaps};
	err[0] = '\0';
	if (cp->async->save_start(cp->impl, &st, on_saved, cp, err, errlen) !=
	    0) {
		if (err[0] == '\0')
			snprintf(err, errlen,
			         "%s checkpoint store: save failed",
			         cp->ops->name);
		return -1;
	}
	cp->inflight = 1;
	cp->inflight_gen = cp->gen;
	return 0;
}

/* Saves now if dirty (an asynchronous backend: starts the save). */
static int
write_now(struct checkpoint *cp, char *err, size_t errlen)
{
	if (cp->async != NULL)
		return start_save(cp, err, errlen);
	if (!cp->dirty)
		return 0;
	struct checkpoint_state st = {cp->data.entries, cp->data.nentries,
	                              cp->data.gaps, cp->data.ngaps};
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (cp->ops->save(cp->impl, &st, err, errlen) != 0) {
		if (err != NULL && errlen > 0 && err[0] == '\0')
			snprintf(err, errlen,
			         "%s checkpoint store: save failed",
			         cp->ops->name);
		return -1;
	}
	cp->dirty = 0;
	cp->writes++;
	if (cp->timer != NULL)
		event_del(cp->timer);
	return 0;
}

static void
write_or_warn(struct checkpoint *cp)
{
	char err[512];
	if (write_now(cp, err, sizeof(err)) != 0)
		log_warn("checkpoint write failed", "error", err, NULL);
}

/* Arms the one-shot timer unless it already runs: at most one write per
 * interval however many changes arrive. */
static void
arm(struct checkpoint *cp)
{
	if (event_pending(cp->timer, EV_TIMEOUT, NULL))
		return;
	struct timeval tv = {.tv_sec = cp->interval_ms / 1000,
	                     .tv_usec = (cp->interval_ms % 1000) * 1000};
	if (event_add(cp->timer, &tv) != 0) {
		/* Without a timer nothing would retry: write now instead. */
		log_warn("checkpoint timer failed; writing at once", NULL);
		write_or_warn(cp);
	}
}

/* An asynchronous save reported back. */
static void
on_saved(void *arg, int status, const char *err)
{
	struct checkpoint *cp = arg;
	cp->inflight = 0;
	if (status == CHECKPOINT_SAVED) {
		cp->writes++;
		if (cp->gen == cp->inflight_gen) {
			cp->dirty = 0;
			if (cp->timer != NULL)
				event_del(cp->timer);
			return;
		}
	} else if (status == CHECKPOINT_DEPOSED) {
		cp->halted = 1;
		log_warn("checkpoint write refused: another relay leads now",
		         "error", err != NULL ? err : "deposed", NULL);
		if (cp->deposed_fn != NULL)
			cp->deposed_fn(cp->deposed_arg,
			               err != NULL ? err : "deposed");
		return;
	} else {
		log_warn("checkpoint write failed", "error",
		         err != NULL ? err : "unknown error", NULL);
	}
	if (cp->halted || !cp->dirty)
		return;
	/* Newer changes, or a failure: write again after the interval. */
	if (cp->timer != NULL)
		arm(cp);
	else if (status == CHECKPOINT_SAVED)
		write_or_warn(cp);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct checkpoint *cp = arg;
	char err[512];
	(void)fd;
	(void)what;
	if (write_now(cp, err, sizeof(err)) != 0) {
		log_warn("checkpoint write failed", "error", err, NULL);
		arm(cp);
	}
}

static void
changed(struct checkpoint *cp)
{
	cp->dirty = 1;
	cp->gen++;
	if (cp->halted)
		return;
	if (cp->timer == NULL)
		write_or_warn(cp);
	else
		arm(cp);
}

struct checkpoint *
checkpoint_new(struct event_base *base, const struct checkpoint_ops *ops,
               void *impl, long interval_ms)
{
	struct checkpoint *cp = calloc(1, sizeof(*cp));
	if (cp == NULL) {
		ops->free(impl);
		return NULL;
	}
	cp->base = base;
	cp->ops = ops;
	cp->async = NULL;
	cp->impl = impl;
	cp->interval_ms = interval_ms > 0 ? interval_ms : 0;
	if (cp->interval_ms > 0 && base != NULL) {
		cp->timer = event_new(base, -1, 0, on_timer, cp);
		if (cp->timer == NULL) {
			checkpoint_free(cp);
			return NULL;
		}
	}
	return cp;
}

struct checkpoint *
checkpoint_new_async(struct event_base *base, const struct checkpoint_ops *ops,
                     const struct checkpoint_async_ops *async, void *impl,
                     long interval_ms)
{
	struct checkpoint *cp = checkpoint_new(base, ops, impl, interval_ms);
	if (cp != NULL)
		cp->async = async;
	return cp;
}

void
checkpoint_on_deposed(struct checkpoint *cp, checkpoint_deposed_fn *fn,
                      void *arg)
{
	cp->deposed_fn = fn;
	cp->deposed_arg = arg;
}

void
checkpoint_halt(struct checkpoint *cp)
{
	cp->halted = 1;
	if (cp->timer != NULL)
		event_del(cp->timer);
}

int
checkpoint_write_soon(struct checkpoint *cp)
{
	char err[512];
	if (cp->halted)
		return -1;
	if (write_now(cp, err, sizeof(err)) != 0) {
		log_warn("checkpoint write failed", "error", err, NULL);
		if (cp->timer != NULL)
			arm(cp);
		return -1;
	}
	return 0;
}

void
checkpoint_free(struct checkpoint *cp)
{
	if (cp == NULL)
		return;
	if (cp->timer != NULL)
		event_free(cp->timer);
	cp->ops->free(cp->impl);
	data_clear(&cp->data);
	free(cp);
}

int
checkpoint_load(struct checkpoint *cp, char *err, size_t errlen)
{
	struct cp_data fresh = {0};
	if (cp->ops->load(cp->impl, load_into, &fresh, err, errlen) != 0) {
		data_clear(&fresh);
		return -1;
	}
	data_clear(&cp->data);
	cp->data = fresh;
	/* Memory now equals what is saved; pending changes were replaced. */
	cp->dirty = 0;
	return 0;
}

const char *
checkpoint_get(const struct checkpoint *cp, const char *key)
{
	const struct checkpoint_entry *e = data_find(&cp->data, key);
	return e != NULL ? e->position : NULL;
}

size_t
checkpoint_count(const struct checkpoint *cp)
{
	return cp->data.nentries;
}

const struct checkpoint_entry *
checkpoint_entry_at(const struct checkpoint *cp, size_t i)
{
	return i < cp->data.nentries ? &cp->data.entries[i] : NULL;
}

const char *
checkpoint_created(const struct checkpoint *cp, const char *key)
{
	const struct checkpoint_entry *e = data_find(&cp->data, key);
	return e != NULL ? e->created : NULL;
}

void
checkpoint_set(struct checkpoint *cp, const char *key, const char *position,
               const char *created)
{
	if (key == NULL || position == NULL)
		return;
	if (data_put(&cp->data, key, position, created))
		changed(cp);
}

void
checkpoint_add_gap(struct checkpoint *cp, const struct checkpoint_gap *g)
{
	if (!gap_valid(g))
		return;
	data_add_gap(&cp->data, g);
	changed(cp);
}

size_t
checkpoint_gaps(const struct checkpoint *cp, const struct checkpoint_gap **gaps)
{
	*gaps = cp->data.gaps;
	return cp->data.ngaps;
}

void
checkpoint_remove_gap(struct checkpoint *cp, size_t i)
{
	struct cp_data *d = &cp->data;
	if (i >= d->ngaps)
		return;
	free(d->gap_mem[i]);
	size_t tail = d->ngaps - i - 1;
	memmove(&d->gaps[i], &d->gaps[i + 1], tail * sizeof(*d->gaps));
	memmove(&d->gap_mem[i], &d->gap_mem[i + 1], tail * sizeof(*d->gap_mem));
	d->ngaps--;
	changed(cp);
}

/* Flush over an asynchronous backend: let the running save finish, then
 * save what is newer, all within CHECKPOINT_FLUSH_WAIT_MS. */
static int
flush_async(struct checkpoint *cp, char *err, size_t errlen)
{
	struct timeval start, now;
	evutil_gettimeofday(&start, NULL);
	for (int round = 0; round < 3; round++) {
		if (cp->halted) {
			snprintf(err, errlen,
			         "%s checkpoint store: writes stopped",
			         cp->ops->name);
			return -1;
		}
		if (!cp->dirty && !cp->inflight)
			return 0;
		if (!cp->inflight && start_save(cp, err, errlen) != 0)
			return -1;
		evutil_gettimeofday(&now, NULL);
		long spent = (long)(now.tv_sec - start.tv_sec) * 1000 +
		             (long)(now.tv_usec - start.tv_usec) / 1000;
		long left = CHECKPOINT_FLUSH_WAIT_MS - spent;
		if (left <= 0 ||
		    cp->async->wait(cp->impl, left, err, errlen) != 0) {
			if (left <= 0)
				snprintf(
				    err, errlen,
				    "%s checkpoint store: no answer within "
				    "%d ms",
				    cp->ops->name, CHECKPOINT_FLUSH_WAIT_MS);
			return -1;
		}
		if (cp->inflight) {
			snprintf(err, errlen,
			         "%s checkpoint store: save still running",
			         cp->ops->name);
			return -1;
		}
	}
	if (!cp->dirty)
		return 0;
	snprintf(err, errlen, "%s checkpoint store: save failed",
	         cp->ops->name);
	return -1;
}

int
checkpoint_flush(struct checkpoint *cp, char *err, size_t errlen)
{
	if (cp->async != NULL) {
		if (err != NULL && errlen > 0)
			err[0] = '\0';
		char tmp[512];
		if (err == NULL || errlen == 0) {
			err = tmp;
			errlen = sizeof(tmp);
		}
		if (flush_async(cp, err, errlen) == 0)
			return 0;
		if (cp->timer != NULL && !cp->halted)
			arm(cp);
		return -1;
	}
	if (write_now(cp, err, errlen) == 0)
		return 0;
	/* Keep retrying in the background too, not only on the next flush. */
	if (cp->timer != NULL)
		arm(cp);
	return -1;
}

unsigned long
checkpoint_writes(const struct checkpoint *cp)
{
	return cp->writes;
}
