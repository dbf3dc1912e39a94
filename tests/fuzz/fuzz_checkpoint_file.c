/*
 * Fuzz harness for the file checkpoint backend's reader
 * (checkpoint_file_ops.load, checkpoint.h).
 *
 * Input: the whole content of checkpoints.json. It is written into a
 * private temporary directory (made once per process with mkdtemp, removed
 * at exit) and loaded.
 *
 * Invariants, each an abort() (after a message) when broken:
 *   - load returns 0 or -1; on -1 err is terminated and non-empty;
 *   - on 0 the callback ran exactly once; on -1 at most once;
 *   - every entry has key and position, every gap key, after_position and
 *     detected (non-NULL); all strings, optional ones included, are read
 *     to their end (ASan checks they are live);
 *   - round trip: the state handed to the callback, saved with the same
 *     backend into a second directory and loaded back, is the same state.
 *     Skipped when two entries share a key: a JSON object cannot hold
 *     that (it arises from keys that differ only after a "\u0000").
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <unistd.h>

#include "sfrelay/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HARNESS "checkpoint_file"

/* Reports which promise broke, then aborts: libFuzzer records the input. */
static void broken(const char *what) __attribute__((noreturn));

static void
broken(const char *what)
{
	fprintf(stderr, "%s: invariant broken: %s\n", HARNESS, what);
	abort();
}

/* The process-wide scratch place: libFuzzer calls the harness many times
 * in one process and offers no context pointer. */
static struct {
	char dir[4096];
	char file[4200];
	char dir2[4200];
	void *impl;  /* backend on dir: the input under test */
	void *impl2; /* backend on dir2: the round trip */
} scratch;

static void
remove_scratch(void)
{
	char path[4300];

	if (scratch.impl != NULL)
		checkpoint_file_ops.free(scratch.impl);
	if (scratch.impl2 != NULL)
		checkpoint_file_ops.free(scratch.impl2);
	unlink(scratch.file);
	snprintf(path, sizeof(path), "%s/checkpoints.json", scratch.dir2);
	unlink(path);
	snprintf(path, sizeof(path), "%s/checkpoints.json.tmp", scratch.dir2);
	unlink(path);
	rmdir(scratch.dir2);
	rmdir(scratch.dir);
}

static void
setup_scratch(void)
{
	const char *tmp = getenv("TMPDIR");
	char err[512];

	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	snprintf(scratch.dir, sizeof(scratch.dir), "%s/fuzz_cp.XXXXXX", tmp);
	if (mkdtemp(scratch.dir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	snprintf(scratch.file, sizeof(scratch.file), "%s/checkpoints.json",
	         scratch.dir);
	snprintf(scratch.dir2, sizeof(scratch.dir2), "%s/again", scratch.dir);
	atexit(remove_scratch);
	scratch.impl = checkpoint_file_open(scratch.dir, err, sizeof(err));
	scratch.impl2 = checkpoint_file_open(scratch.dir2, err, sizeof(err));
	if (scratch.impl == NULL || scratch.impl2 == NULL) {
		fprintf(stderr, "checkpoint_file_open: %s\n", err);
		abort();
	}
}

static void
write_input(const uint8_t *data, size_t size)
{
	int fd = open(scratch.file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	size_t off = 0;

	if (fd < 0)
		abort();
	while (off < size) {
		ssize_t w = write(fd, data + off, size - off);

		if (w <= 0)
			abort();
		off += (size_t)w;
	}
	if (close(fd) != 0)
		abort();
}

/* Where the byte sums go, so the reads that make them are not optimized
 * away: ASan checks only the loads that happen. */
static volatile size_t touched;

/* Reads s (may be NULL) to its terminator; returns a sum of its bytes. */
static size_t
touch(const char *s)
{
	size_t n, sum = 0;

	if (s == NULL)
		return 0;
	n = strlen(s);
	for (size_t i = 0; i < n; i++)
		sum += (unsigned char)s[i];
	return sum + n;
}

static int
same_str(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static int
same_state(const struct checkpoint_state *a, const struct checkpoint_state *b)
{
	if (a->nentries != b->nentries || a->ngaps != b->ngaps)
		return 0;
	for (size_t i = 0; i < a->nentries; i++) {
		const struct checkpoint_entry *x = &a->entries[i];
		const struct checkpoint_entry *y = &b->entries[i];

		if (!same_str(x->key, y->key) ||
		    !same_str(x->position, y->position) ||
		    !same_str(x->created, y->created))
			return 0;
	}
	for (size_t i = 0; i < a->ngaps; i++) {
		const struct checkpoint_gap *x = &a->gaps[i];
		const struct checkpoint_gap *y = &b->gaps[i];

		if (!same_str(x->key, y->key) ||
		    !same_str(x->after_position, y->after_position) ||
		    !same_str(x->after_created, y->after_created) ||
		    !same_str(x->detected, y->detected))
			return 0;
	}
	return 1;
}

static int
unique_keys(const struct checkpoint_state *st)
{
	for (size_t i = 0; i < st->nentries; i++)
		for (size_t j = i + 1; j < st->nentries; j++)
			if (strcmp(st->entries[i].key, st->entries[j].key) == 0)
				return 0;
	return 1;
}

struct visit {
	int calls;
	const struct checkpoint_state *first; /* set during the round trip */
};

static int
on_state(void *arg, const struct checkpoint_state *st)
{
	struct visit *v = arg;
	size_t sum = 0;

	v->calls++;
	if (st == NULL || (st->nentries > 0 && st->entries == NULL) ||
	    (st->ngaps > 0 && st->gaps == NULL))
		broken("state with entries or gaps but no array");
	for (size_t i = 0; i < st->nentries; i++) {
		const struct checkpoint_entry *e = &st->entries[i];

		if (e->key == NULL || e->position == NULL)
			broken("entry without key or position");
		sum += touch(e->key) + touch(e->position) + touch(e->created);
	}
	for (size_t i = 0; i < st->ngaps; i++) {
		const struct checkpoint_gap *g = &st->gaps[i];

		if (g->key == NULL || g->after_position == NULL ||
		    g->detected == NULL)
			broken("gap without key, after_position or detected");
		sum += touch(g->key) + touch(g->after_position) +
		       touch(g->after_created) + touch(g->detected);
	}
	touched += sum;
	return 0;
}

/* The second load of the round trip: must see what the first one saw. */
static int
on_reloaded(void *arg, const struct checkpoint_state *st)
{
	struct visit *v = arg;

	on_state(arg, st);
	if (!same_state(v->first, st))
		broken("round trip: reloaded state differs from the saved one");
	return 0;
}

static int
on_loaded(void *arg, const struct checkpoint_state *st)
{
	struct visit again = {0, st};
	char err[512];

	on_state(arg, st);
	if (!unique_keys(st))
		return 0;
	if (checkpoint_file_ops.save(scratch.impl2, st, err, sizeof(err)) !=
	    0) {
		fprintf(stderr, "round trip: save: %s\n", err);
		abort();
	}
	if (checkpoint_file_ops.load(scratch.impl2, on_reloaded, &again, err,
	                             sizeof(err)) != 0) {
		fprintf(stderr, "round trip: load: %s\n", err);
		abort();
	}
	if (again.calls != 1)
		broken("round trip: reload did not call back exactly once");
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct visit v = {0, NULL};
	char err[512];
	int rc;

	if (scratch.impl == NULL)
		setup_scratch();
	write_input(data, size);
	memset(err, 'x', sizeof(err));
	rc = checkpoint_file_ops.load(scratch.impl, on_loaded, &v, err,
	                              sizeof(err));
	if (rc == 0) {
		if (v.calls != 1)
			broken(
			    "load succeeded without calling back exactly once");
	} else if (rc == -1) {
		if (v.calls > 1 || memchr(err, '\0', sizeof(err)) == NULL ||
		    err[0] == '\0')
			broken("failed load: callback ran twice, or err empty "
			       "or unterminated");
	} else {
		broken("load returned neither 0 nor -1");
	}
	return 0;
}
