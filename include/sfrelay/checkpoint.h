#ifndef SFRELAY_CHECKPOINT_H
#define SFRELAY_CHECKPOINT_H

#include <stddef.h>

struct event_base;

/*
 * The checkpoint store: for every stream channel (and, later, every
 * polled object) the newest position whose line, and every earlier line
 * of that key, the sink has acknowledged; plus the replay gaps the relay
 * could not recover from the stream (for the backfill to query).
 *
 * Two layers:
 *  - a backend behind struct checkpoint_ops that loads and durably
 *    replaces the whole saved state (the file backend here; Postgres in
 *    checkpoint_pg.h, which also saves asynchronously);
 *  - struct checkpoint, the in-memory map the relay updates on every
 *    acknowledgement, which writes to the backend at most once per
 *    interval (debounced) and on checkpoint_flush().
 *
 * Positions are kept as Salesforce gave them (text), never reinterpreted.
 */

struct checkpoint_entry {
	const char *key;      /* "/topic/X" or "SetupAuditTrail" */
	const char *position; /* "1234" */
	const char *created;  /* ISO-8601 time of that event, or NULL */
};

/* A replay gap: events after `after_position` (created at `after_created`)
 * up to the moment `detected` may be missing from the stream. */
struct checkpoint_gap {
	const char *key;
	const char *after_position;
	const char *after_created; /* or NULL */
	const char *detected;      /* ISO-8601 UTC */
};

/* The whole saved state, as handed to and from a backend. Borrowed. */
struct checkpoint_state {
	const struct checkpoint_entry *entries;
	size_t nentries;
	const struct checkpoint_gap *gaps;
	size_t ngaps;
};

/* Called by a backend's load for the state it read; strings borrowed for
 * the call. Returns 0, or -1 to abort the load. */
typedef int checkpoint_load_fn(void *arg, const struct checkpoint_state *st);

struct checkpoint_ops {
	const char *name;
	/* Reads the saved state and hands it to fn once (an empty state when
	 * nothing was saved yet). Returns 0, or -1 with a message in err
	 * naming what is wrong and where (a corrupt file is an error, never
	 * a silent fresh start). */
	int (*load)(void *impl, checkpoint_load_fn *fn, void *arg, char *err,
		    size_t errlen);
	/* Durably replaces the saved state with st. Returns 0 or -1 + err. */
	int (*save)(void *impl, const struct checkpoint_state *st, char *err,
		    size_t errlen);
	void (*free)(void *impl);
};

/*
 * Backends that talk to a server (Postgres) also offer an asynchronous
 * save, so that a slow or absent database never stalls the event loop:
 * struct checkpoint then starts a save and carries on, keeping any newer
 * change pending until the save reports back.
 */
#define CHECKPOINT_SAVED 0
#define CHECKPOINT_FAILED (-1)
/* The store refused the write because another relay leads now (its
 * fencing epoch moved on): nothing was changed, and nothing will be. */
#define CHECKPOINT_DEPOSED (-2)

/* Completion of an asynchronous save: status is one of the above, err
 * the reason (NULL on success; borrowed for the call). */
typedef void checkpoint_saved_fn(void *arg, int status, const char *err);

struct checkpoint_async_ops {
	/* Starts replacing the saved state with st (copied before it
	 * returns). Returns 0, and done will be called exactly once, later
	 * (never from inside this call); or -1 with err when it cannot start
	 * (no connection), and done is not called. At most one save is
	 * started at a time. */
	int (*save_start)(void *impl, const struct checkpoint_state *st,
			  checkpoint_saved_fn *done, void *arg, char *err,
			  size_t errlen);
	/* Blocks until the save in progress has reported (done ran) or
	 * timeout_ms passed. Returns 0, or -1 with err. For shutdown. */
	int (*wait)(void *impl, long timeout_ms, char *err, size_t errlen);
};

/*
 * File backend: <dir>/checkpoints.json, replaced atomically (temp file,
 * write, fsync, rename, fsync of the directory). The directory is created
 * with mode 0700 when missing, the file is written with mode 0600.
 * Returns an impl for checkpoint_new(), or NULL with err naming the
 * directory and the reason (missing and not creatable, not a directory,
 * not writable).
 */
void *checkpoint_file_open(const char *dir, char *err, size_t errlen);
extern const struct checkpoint_ops checkpoint_file_ops;

struct checkpoint;

/*
 * The in-memory map over a backend. ops borrowed (static); impl owned
 * (freed with ops->free); base borrowed, for the debounce timer.
 * interval_ms 0 (or a NULL base) writes at every change; setting a value
 * that is already held is no change. Returns NULL on allocation failure
 * (impl is then freed).
 */
struct checkpoint *checkpoint_new(struct event_base *base,
				  const struct checkpoint_ops *ops, void *impl,
				  long interval_ms);
/*
 * As checkpoint_new, over a backend that also saves asynchronously
 * (async borrowed, static). Writes from the timer and from
 * checkpoint_write_soon() then never block; checkpoint_flush() waits for
 * them, at most CHECKPOINT_FLUSH_WAIT_MS.
 */
struct checkpoint *checkpoint_new_async(struct event_base *base,
					const struct checkpoint_ops *ops,
					const struct checkpoint_async_ops *async,
					void *impl, long interval_ms);
#define CHECKPOINT_FLUSH_WAIT_MS 3000

/* Called once when the backend reports CHECKPOINT_DEPOSED; the map stops
 * writing from then on. fn and arg borrowed. */
typedef void checkpoint_deposed_fn(void *arg, const char *err);
void checkpoint_on_deposed(struct checkpoint *cp, checkpoint_deposed_fn *fn,
			   void *arg);
/* Stops every later write (the leader lock is lost): changes stay in
 * memory only; flushes return -1. */
void checkpoint_halt(struct checkpoint *cp);
/* Starts a write of pending changes now: an asynchronous backend returns
 * at once (failures are logged and retried), a synchronous one writes
 * before returning, as checkpoint_flush() does. Returns 0 or -1. */
int checkpoint_write_soon(struct checkpoint *cp);

/* Does not write pending changes (call checkpoint_flush first). */
void checkpoint_free(struct checkpoint *cp);

/* Loads the saved state into memory. Returns 0, or -1 with err. */
int checkpoint_load(struct checkpoint *cp, char *err, size_t errlen);

/* The saved or updated position of key, or NULL. Borrowed until the next
 * checkpoint_set() of that key, checkpoint_load() or checkpoint_free(). */
const char *checkpoint_get(const struct checkpoint *cp, const char *key);
/* Its creation time, or NULL. Same lifetime. */
const char *checkpoint_created(const struct checkpoint *cp, const char *key);

/* The positions held in memory, for i < checkpoint_count(). Borrowed
 * like checkpoint_get()'s. */
size_t checkpoint_count(const struct checkpoint *cp);
const struct checkpoint_entry *checkpoint_entry_at(const struct checkpoint *cp,
						   size_t i);

/* Records a new acknowledged position (copied) and schedules a write. */
void checkpoint_set(struct checkpoint *cp, const char *key,
		    const char *position, const char *created);
/* Records a gap (copied) and schedules a write. */
void checkpoint_add_gap(struct checkpoint *cp, const struct checkpoint_gap *g);
/* The recorded gaps (borrowed until the next change). */
size_t checkpoint_gaps(const struct checkpoint *cp,
		       const struct checkpoint_gap **gaps);
/* Removes the gap at index i (the backfill recovered it). */
void checkpoint_remove_gap(struct checkpoint *cp, size_t i);

/* Writes now if anything changed since the last write. Returns 0, or -1
 * with the reason in err (the changes stay pending; a later flush or
 * timer retries). */
int checkpoint_flush(struct checkpoint *cp, char *err, size_t errlen);
/* Successful backend writes so far (tests, stats). */
unsigned long checkpoint_writes(const struct checkpoint *cp);

#endif /* SFRELAY_CHECKPOINT_H */
