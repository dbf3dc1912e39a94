/*
 * checkpoint: the in-memory map, its debounced writes on a libevent base,
 * and the file backend (atomic replace, strict load, private modes).
 *
 * Every test runs in its own mkdtemp directory, removed at the end. Timer
 * tests use a fresh event_base and a watchdog, and never rely on timing
 * for correctness: the debounce timer only fires when the test runs the
 * loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "harness.h"
#include "sfrelay/checkpoint.h"

#define ERRLEN 1024
#define NOBODY 65534
#define T1 "2026-11-26T19:27:53.000Z"
#define T2 "2026-11-26T19:30:00.123Z"

struct fx {
	char *root;              /* the test's mkdtemp directory */
	char dir[1024];          /* root/state: the checkpoint directory */
	char path[1100];         /* dir/checkpoints.json */
	char tmp[1200];          /* dir/checkpoints.json.tmp */
	struct event_base *base; /* for stores that must not write at once */
};

/* ---- helpers ---- */

#define assert_contains(h, n) assert_contains_at((h), (n), __FILE__, __LINE__)

static void
assert_contains_at(const char *hay, const char *needle, const char *file,
                   int line)
{
	if (hay != NULL && strstr(hay, needle) != NULL)
		return;
	print_error("\"%s\" does not contain \"%s\"\n",
	            hay != NULL ? hay : "(null)", needle);
	_fail(file, line);
}

static void
rm_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	chmod(path, 0700);
	DIR *d = opendir(path);
	struct dirent *e;
	char sub[2048];
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		rm_tree(sub);
	}
	if (d != NULL)
		closedir(d);
	rmdir(path);
}

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	fx->root = harness_tmpdir("checkpoint");
	assert_non_null(fx->root);
	snprintf(fx->dir, sizeof(fx->dir), "%s/state", fx->root);
	snprintf(fx->path, sizeof(fx->path), "%s/checkpoints.json", fx->dir);
	snprintf(fx->tmp, sizeof(fx->tmp), "%s.tmp", fx->path);
	fx->base = event_base_new();
	assert_non_null(fx->base);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;
	rm_tree(fx->root);
	event_base_free(fx->base);
	free(fx->root);
	free(fx);
	return 0;
}

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

static int
exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static mode_t
mode_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

/* A file store on fx->dir (interval 0 without a base: every change is
 * written at once, unless a base and interval are given). */
static struct checkpoint *
open_store(const struct fx *fx, struct event_base *base, long interval_ms)
{
	char err[ERRLEN] = "";
	void *impl = checkpoint_file_open(fx->dir, err, sizeof(err));
	if (impl == NULL)
		print_error("open: %s\n", err);
	assert_non_null(impl);
	struct checkpoint *cp =
	    checkpoint_new(base, &checkpoint_file_ops, impl, interval_ms);
	assert_non_null(cp);
	return cp;
}

/* A new store on the same directory, loaded: what a restart sees. */
static struct checkpoint *
reopen(const struct fx *fx)
{
	char err[ERRLEN] = "";
	struct checkpoint *cp = open_store(fx, NULL, 0);
	int rc = checkpoint_load(cp, err, sizeof(err));
	if (rc != 0)
		print_error("load: %s\n", err);
	assert_int_equal(rc, 0);
	return cp;
}

static void
flush_ok(struct checkpoint *cp)
{
	char err[ERRLEN] = "";
	int rc = checkpoint_flush(cp, err, sizeof(err));
	if (rc != 0)
		print_error("flush: %s\n", err);
	assert_int_equal(rc, 0);
}

static void
watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* Runs one round of the loop: returns when an event ran, or after 5 s
 * (the watchdog) which fails the test. */
static void
run_once(struct event_base *base)
{
	int fired = 0;
	struct event *wd = event_new(base, -1, 0, watchdog, &fired);
	struct timeval tv = {5, 0};
	assert_non_null(wd);
	assert_int_equal(event_add(wd, &tv), 0);
	assert_int_equal(event_base_loop(base, EVLOOP_ONCE), 0);
	event_free(wd);
	assert_int_equal(fired, 0);
}

/* stderr into a file, to check what was logged. */
struct capture {
	int saved;
	char path[1100];
};

static void
capture_begin(struct capture *c, const struct fx *fx)
{
	snprintf(c->path, sizeof(c->path), "%s/stderr.log", fx->root);
	int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	c->saved = dup(STDERR_FILENO);
	assert_true(c->saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	close(fd);
}

/* Restores stderr; returns what was written (malloc'd). */
static char *
capture_end(struct capture *c)
{
	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	char *s = file_read(c->path, NULL);
	assert_non_null(s);
	return s;
}

/*
 * Runs fn without root's power over permissions: as root (tests run as
 * root in CI) in a child that switched to uid/gid 65534, otherwise
 * directly. Returns fn's result; err gets fn's message.
 */
typedef int unpriv_fn(const struct fx *fx, char *err, size_t errlen);

static int
run_unprivileged(unpriv_fn *fn, const struct fx *fx, char *err, size_t errlen)
{
	if (geteuid() != 0)
		return fn(fx, err, errlen);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char buf[ERRLEN] = "";
		int rc = 2;
		close(fds[0]);
		if (setgid(NOBODY) == 0 && setuid(NOBODY) == 0 &&
		    geteuid() == NOBODY)
			rc = fn(fx, buf, sizeof(buf)) == 0 ? 0 : 1;
		if (write(fds[1], buf, strlen(buf)) < 0)
			rc = 3;
		_exit(rc);
	}
	close(fds[1]);
	ssize_t n = read(fds[0], err, errlen - 1);
	err[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_in_range(WEXITSTATUS(st), 0, 1); /* 2, 3: the child broke */
	return WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ---- a fake backend, for what the file cannot show ---- */

struct fake {
	int fail_saves; /* the next N saves fail */
	int attempts, saves;
	size_t saved_entries, saved_gaps;
	char saved_position[64]; /* of the first entry */
	const struct checkpoint_state *to_load;
	int *freed;
};

static int
fake_load(void *impl, checkpoint_load_fn *fn, void *arg, char *err,
          size_t errlen)
{
	struct fake *f = impl;
	struct checkpoint_state empty = {0};
	if (fn(arg, f->to_load != NULL ? f->to_load : &empty) != 0) {
		snprintf(err, errlen, "fake: state rejected");
		return -1;
	}
	return 0;
}

static int
fake_save(void *impl, const struct checkpoint_state *st, char *err,
          size_t errlen)
{
	struct fake *f = impl;
	f->attempts++;
	if (f->fail_saves > 0) {
		f->fail_saves--;
		snprintf(err, errlen, "fake: disk on fire");
		return -1;
	}
	f->saves++;
	f->saved_entries = st->nentries;
	f->saved_gaps = st->ngaps;
	snprintf(f->saved_position, sizeof(f->saved_position), "%s",
	         st->nentries > 0 ? st->entries[0].position : "");
	return 0;
}

static void
fake_free(void *impl)
{
	struct fake *f = impl;
	*f->freed = 1;
	free(f);
}

static const struct checkpoint_ops fake_ops = {"fake", fake_load, fake_save,
                                               fake_free};

static struct fake *
fake_new(int *freed)
{
	struct fake *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->freed = freed;
	return f;
}

/* ---- round trips ---- */

static void
test_round_trip(void **state)
{
	struct fx *fx = *state;
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct checkpoint *cp = open_store(fx, base, 60000);
	checkpoint_set(cp, "/topic/AccountWatch", "1234", T1);
	checkpoint_set(cp, "SetupAuditTrail", "0Ymxx0000000001", NULL);
	assert_false(exists(fx->path));
	flush_ok(cp);
	assert_int_equal(checkpoint_writes(cp), 1);
	checkpoint_free(cp);
	event_base_free(base);

	cp = reopen(fx);
	assert_string_equal(checkpoint_get(cp, "/topic/AccountWatch"), "1234");
	assert_string_equal(checkpoint_created(cp, "/topic/AccountWatch"), T1);
	assert_string_equal(checkpoint_get(cp, "SetupAuditTrail"),
	                    "0Ymxx0000000001");
	assert_null(checkpoint_created(cp, "SetupAuditTrail"));
	assert_null(checkpoint_get(cp, "/topic/Other"));
	assert_null(checkpoint_created(cp, "/topic/Other"));
	assert_int_equal(checkpoint_writes(cp), 0);
	checkpoint_free(cp);
}

static void
test_positions_kept_as_text(void **state)
{
	struct fx *fx = *state;
	static const char *const cases[][2] = {
	    {"/topic/Zero", "000123"},
	    {"/event/Big__e", "123456789012345678901234567890"},
	    {"/data/ChangeEvents", "-2"},
	    {"/u/weird \"key\" \\ with\ttab\nnewline", "1.50e3"},
	    {"/topic/Unicode\xc3\xa9", "\xe2\x82\xac 7"},
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	struct checkpoint *cp = open_store(fx, NULL, 0);
	for (size_t i = 0; i < n; i++)
		checkpoint_set(cp, cases[i][0], cases[i][1], T2);
	checkpoint_free(cp);

	/* Stored as JSON strings, slashes not escaped: "000123" can never
	 * turn into 123 or 1.2345678901234568e+29 on the way back. */
	char *text = file_read(fx->path, NULL);
	assert_non_null(text);
	assert_contains(text, "\"000123\"");
	assert_contains(text, "\"123456789012345678901234567890\"");
	assert_contains(text, "\"/topic/Zero\"");
	free(text);

	cp = reopen(fx);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(checkpoint_get(cp, cases[i][0]),
		                    cases[i][1]);
		assert_string_equal(checkpoint_created(cp, cases[i][0]), T2);
	}
	checkpoint_free(cp);
}

/* The saved file has the documented shape, read with a plain parser. */
static void
test_file_format(void **state)
{
	struct fx *fx = *state;
	struct checkpoint *cp = open_store(fx, NULL, 0);
	checkpoint_set(cp, "/topic/X", "1234", T1);
	checkpoint_set(cp, "/topic/Y", "5", NULL);
	struct checkpoint_gap g = {"/topic/X", "17", NULL, T2};
	checkpoint_add_gap(cp, &g);
	checkpoint_free(cp);

	struct json_object *root = json_object_from_file(fx->path);
	struct json_object *v, *pos, *x, *gaps;
	assert_non_null(root);
	assert_true(json_object_object_get_ex(root, "version", &v));
	assert_int_equal(json_object_get_int(v), 1);
	assert_true(json_object_object_get_ex(root, "positions", &pos));
	assert_true(json_object_object_get_ex(pos, "/topic/X", &x));
	assert_true(json_object_object_get_ex(x, "position", &v));
	assert_true(json_object_is_type(v, json_type_string));
	assert_string_equal(json_object_get_string(v), "1234");
	assert_true(json_object_object_get_ex(x, "created", &v));
	assert_string_equal(json_object_get_string(v), T1);
	assert_true(json_object_object_get_ex(pos, "/topic/Y", &x));
	assert_false(json_object_object_get_ex(x, "created", &v));
	assert_true(json_object_object_get_ex(root, "gaps", &gaps));
	assert_int_equal(json_object_array_length(gaps), 1);
	x = json_object_array_get_idx(gaps, 0);
	assert_true(json_object_object_get_ex(x, "after_position", &v));
	assert_string_equal(json_object_get_string(v), "17");
	assert_true(json_object_object_get_ex(x, "detected", &v));
	assert_string_equal(json_object_get_string(v), T2);
	assert_false(json_object_object_get_ex(x, "after_created", &v));
	json_object_put(root);
}

static void
test_many_keys(void **state)
{
	struct fx *fx = *state;
	char key[64], pos[64];
	struct checkpoint *cp = open_store(fx, fx->base, 60000);
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "/event/Stream%04d__e", i);
		snprintf(pos, sizeof(pos), "%d", i * 7919);
		checkpoint_set(cp, key, pos, NULL);
	}
	flush_ok(cp);
	checkpoint_free(cp);

	cp = reopen(fx);
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "/event/Stream%04d__e", i);
		snprintf(pos, sizeof(pos), "%d", i * 7919);
		assert_string_equal(checkpoint_get(cp, key), pos);
	}
	checkpoint_free(cp);
}

static void
test_update_key(void **state)
{
	struct fx *fx = *state;
	struct checkpoint *cp = open_store(fx, NULL, 0);
	checkpoint_set(cp, "/topic/A", "10", T1);
	checkpoint_set(cp, "/topic/A", "11", T2);
	assert_string_equal(checkpoint_get(cp, "/topic/A"), "11");
	assert_string_equal(checkpoint_created(cp, "/topic/A"), T2);
	assert_int_equal(checkpoint_writes(cp), 2);
	/* The same position again is no change: no write. */
	checkpoint_set(cp, "/topic/A", "11", T2);
	assert_int_equal(checkpoint_writes(cp), 2);
	/* A created time that goes away is a change. */
	checkpoint_set(cp, "/topic/A", "11", NULL);
	assert_int_equal(checkpoint_writes(cp), 3);
	assert_null(checkpoint_created(cp, "/topic/A"));
	checkpoint_set(cp, "/topic/A", "12", T1);
	checkpoint_free(cp);

	char *text = file_read(fx->path, NULL);
	assert_non_null(text);
	char *first = strstr(text, "\"/topic/A\"");
	assert_non_null(first);
	assert_null(strstr(first + 1, "\"/topic/A\""));
	free(text);

	cp = reopen(fx);
	assert_string_equal(checkpoint_get(cp, "/topic/A"), "12");
	assert_string_equal(checkpoint_created(cp, "/topic/A"), T1);
	checkpoint_free(cp);
}

static void
assert_gap(const struct checkpoint_gap *g, const char *key, const char *after,
           const char *after_created, const char *detected)
{
	assert_string_equal(g->key, key);
	assert_string_equal(g->after_position, after);
	if (after_created == NULL)
		assert_null(g->after_created);
	else
		assert_string_equal(g->after_created, after_created);
	assert_string_equal(g->detected, detected);
}

static void
test_gaps(void **state)
{
	struct fx *fx = *state;
	const struct checkpoint_gap *gaps = NULL;
	char key[32] = "/topic/A", after[32] = "17";
	struct checkpoint *cp = open_store(fx, NULL, 0);
	assert_int_equal(checkpoint_gaps(cp, &gaps), 0);

	struct checkpoint_gap g = {key, after, T1, T2};
	checkpoint_add_gap(cp, &g);
	/* Copied: the caller's buffers may change afterwards. */
	strcpy(key, "/topic/B");
	strcpy(after, "99");
	g.after_created = NULL;
	checkpoint_add_gap(cp, &g);
	strcpy(key, "/topic/C");
	strcpy(after, "5");
	checkpoint_add_gap(cp, &g);
	assert_int_equal(checkpoint_gaps(cp, &gaps), 3);
	assert_gap(&gaps[0], "/topic/A", "17", T1, T2);
	assert_gap(&gaps[1], "/topic/B", "99", NULL, T2);

	/* A gap without its required fields is not recorded. */
	struct checkpoint_gap bad = {NULL, "1", NULL, T2};
	checkpoint_add_gap(cp, &bad);
	assert_int_equal(checkpoint_gaps(cp, &gaps), 3);

	checkpoint_remove_gap(cp, 1);
	checkpoint_remove_gap(cp, 7); /* out of range: ignored */
	assert_int_equal(checkpoint_gaps(cp, &gaps), 2);
	assert_gap(&gaps[0], "/topic/A", "17", T1, T2);
	assert_gap(&gaps[1], "/topic/C", "5", NULL, T2);
	checkpoint_free(cp);

	cp = reopen(fx);
	assert_int_equal(checkpoint_gaps(cp, &gaps), 2);
	assert_gap(&gaps[0], "/topic/A", "17", T1, T2);
	assert_gap(&gaps[1], "/topic/C", "5", NULL, T2);
	checkpoint_remove_gap(cp, 0);
	checkpoint_remove_gap(cp, 0);
	assert_int_equal(checkpoint_gaps(cp, &gaps), 0);
	checkpoint_free(cp);

	cp = reopen(fx);
	assert_int_equal(checkpoint_gaps(cp, &gaps), 0);
	checkpoint_free(cp);
}

static void
test_missing_file_is_empty(void **state)
{
	struct fx *fx = *state;
	const struct checkpoint_gap *gaps = NULL;
	struct checkpoint *cp = reopen(fx);
	assert_null(checkpoint_get(cp, "/topic/X"));
	assert_int_equal(checkpoint_gaps(cp, &gaps), 0);
	assert_false(exists(fx->path)); /* loading writes nothing */
	checkpoint_free(cp);
}

static void
test_trailing_slash_dir(void **state)
{
	struct fx *fx = *state;
	char dir[1400], err[ERRLEN];
	snprintf(dir, sizeof(dir), "%s///", fx->dir);
	void *impl = checkpoint_file_open(dir, err, sizeof(err));
	assert_non_null(impl);
	struct checkpoint *cp =
	    checkpoint_new(NULL, &checkpoint_file_ops, impl, 0);
	assert_non_null(cp);
	checkpoint_set(cp, "/topic/X", "1", NULL);
	checkpoint_free(cp);
	assert_true(exists(fx->path));
}

/* ---- load errors ---- */

static const struct {
	const char *name;
	const char *text;
	const char *want;
} corrupt[] = {
    {"truncated", "{\"version\":1,\"positions\":{\"/topic/X\":{\"posi",
     "invalid JSON"},
    {"empty file", "", "invalid JSON"},
    {"bad token", "{\"version\":1,\"positions\":{} oops}",
     "invalid JSON at byte"},
    {"trailing data", "{\"version\":1,\"positions\":{}} {}",
     "data after the object"},
    {"NUL inside", "{\"version\":1,\"positions\":{}}\n\0\n",
     "data after the object"},
    {"array", "[1,2]", "not a JSON object"},
    {"number", "123", "not a JSON object"},
    {"string", "\"x\"", "not a JSON object"},
    {"version 2", "{\"version\":2,\"positions\":{}}", "unsupported version 2"},
    {"version string", "{\"version\":\"1\",\"positions\":{}}",
     "\"version\" is missing or not an integer"},
    {"version missing", "{\"positions\":{}}",
     "\"version\" is missing or not an integer"},
    {"positions missing", "{\"version\":1}",
     "\"positions\" is missing or not an object"},
    {"positions array", "{\"version\":1,\"positions\":[]}",
     "\"positions\" is missing or not an object"},
    {"entry not object", "{\"version\":1,\"positions\":{\"/topic/X\":\"1\"}}",
     "\"positions\" entry \"/topic/X\" is not an object"},
    {"position number",
     "{\"version\":1,\"positions\":{\"/topic/X\":{\"position\":1234}}}",
     "\"positions\" entry \"/topic/X\": \"position\" is missing or not a "
     "string"},
    {"position missing",
     "{\"version\":1,\"positions\":{\"/topic/X\":{\"created\":\"x\"}}}",
     "\"position\" is missing or not a string"},
    {"created number",
     "{\"version\":1,\"positions\":{\"/topic/X\":{\"position\":\"1\","
     "\"created\":5}}}",
     "\"created\" is not a string"},
    {"gaps object", "{\"version\":1,\"positions\":{},\"gaps\":{}}",
     "\"gaps\" is not an array"},
    {"gap not object", "{\"version\":1,\"positions\":{},\"gaps\":[1]}",
     "\"gaps\"[0] is not an object"},
    {"gap missing key",
     "{\"version\":1,\"positions\":{},\"gaps\":[{\"after_position\":\"1\","
     "\"detected\":\"" T2 "\"}]}",
     "\"gaps\"[0]: \"key\" is missing or not a string"},
    {"gap detected number",
     "{\"version\":1,\"positions\":{},\"gaps\":[{\"key\":\"/topic/X\","
     "\"after_position\":\"1\",\"detected\":\"" T2 "\"},{\"key\":\"k\","
     "\"after_position\":\"1\",\"detected\":3}]}",
     "\"gaps\"[1]: \"detected\" is missing or not a string"},
    {"gap after_created number",
     "{\"version\":1,\"positions\":{},\"gaps\":[{\"key\":\"/topic/X\","
     "\"after_position\":\"1\",\"after_created\":false,\"detected\":\"x\"}]}",
     "\"after_created\" is not a string"},
    {"too deep",
     "{\"version\":1,\"positions\":{},\"x\":[[[[[[[[[[[[1]]]]]]]]]]]]}",
     "nesting too deep"},
};

/* A store with an unsaved change, then a load that must fail: the error
 * names the file, memory is kept, and the bad file is left alone. */
static void
expect_load_error(const struct fx *fx, const char *want, char *err,
                  size_t errlen)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct checkpoint *cp = open_store(fx, base, 60000);
	checkpoint_set(cp, "/topic/Mem", "42", NULL);
	err[0] = '\0';
	assert_int_equal(checkpoint_load(cp, err, errlen), -1);
	print_message("#   %s\n", err);
	assert_contains(err, fx->path);
	if (want != NULL)
		assert_contains(err, want);
	assert_string_equal(checkpoint_get(cp, "/topic/Mem"), "42");
	assert_int_equal(checkpoint_writes(cp), 0);
	checkpoint_free(cp);
	event_base_free(base);
}

static void
test_corrupt_files(void **state)
{
	struct fx *fx = *state;
	char err[ERRLEN];
	assert_int_equal(mkdir(fx->dir, 0700), 0);
	for (size_t i = 0; i < sizeof(corrupt) / sizeof(corrupt[0]); i++) {
		print_message("# %s:\n", corrupt[i].name);
		size_t len = strlen(corrupt[i].text);
		if (strcmp(corrupt[i].name, "NUL inside") == 0)
			len += 2; /* "\0\n" after the object */
		FILE *f = fopen(fx->path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(corrupt[i].text, 1, len, f), len);
		assert_int_equal(fclose(f), 0);
		expect_load_error(fx, corrupt[i].want, err, sizeof(err));
		size_t got = 0;
		char *after = file_read(fx->path, &got);
		assert_non_null(after);
		assert_int_equal(got, len);
		assert_memory_equal(after, corrupt[i].text, len);
		free(after);
	}
}

static void
test_file_too_large(void **state)
{
	struct fx *fx = *state;
	char err[ERRLEN];
	assert_int_equal(mkdir(fx->dir, 0700), 0);
	int fd = open(fx->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{", 1), 1);
	assert_int_equal(ftruncate(fd, 17L * 1024 * 1024), 0);
	close(fd);
	expect_load_error(fx, "too large (17825792 bytes", err, sizeof(err));
}

/* A checkpoints.json that is a directory: open() succeeds, read() would
 * not, and root cannot bypass it. */
static void
test_file_is_directory(void **state)
{
	struct fx *fx = *state;
	char err[ERRLEN];
	assert_int_equal(mkdir(fx->dir, 0700), 0);
	assert_int_equal(mkdir(fx->path, 0700), 0);
	expect_load_error(fx, "not a regular file", err, sizeof(err));
}

static int
load_unreadable(const struct fx *fx, char *err, size_t errlen)
{
	void *impl = checkpoint_file_open(fx->dir, err, errlen);
	if (impl == NULL)
		return 2;
	struct checkpoint *cp =
	    checkpoint_new(NULL, &checkpoint_file_ops, impl, 0);
	int rc = checkpoint_load(cp, err, errlen);
	checkpoint_free(cp);
	return rc;
}

/* chmod 000: root reads it anyway, so as root this runs in a child that
 * dropped to an unprivileged uid which owns the directory. */
static void
test_file_unreadable(void **state)
{
	struct fx *fx = *state;
	char err[ERRLEN] = "";
	assert_int_equal(mkdir(fx->dir, 0700), 0);
	write_text(fx->path, "{\"version\":1,\"positions\":{}}");
	assert_int_equal(chmod(fx->path, 0), 0);
	if (geteuid() == 0) {
		assert_int_equal(chmod(fx->root, 0711), 0);
		assert_int_equal(chown(fx->dir, NOBODY, NOBODY), 0);
	}
	assert_int_equal(
	    run_unprivileged(load_unreadable, fx, err, sizeof(err)), -1);
	char want[1400];
	snprintf(want, sizeof(want), "cannot read %s: %s", fx->path,
	         strerror(EACCES));
	assert_contains(err, want);
}

/* ---- the directory ---- */

static void
check_created_modes(const struct fx *fx, mode_t mask)
{
	mode_t old = umask(mask);
	struct checkpoint *cp = open_store(fx, NULL, 0);
	checkpoint_set(cp, "/topic/X", "1", NULL);
	checkpoint_free(cp);
	umask(old);
	assert_int_equal(mode_of(fx->dir), 0700);
	assert_int_equal(mode_of(fx->path), 0600);
	rm_tree(fx->dir);
}

static void
test_created_modes_any_umask(void **state)
{
	struct fx *fx = *state;
	check_created_modes(fx, 0);
	check_created_modes(fx, 022);
	check_created_modes(fx, 0777);
}

static void
test_existing_dir_tightened(void **state)
{
	struct fx *fx = *state;
	static const mode_t modes[] = {0755, 0750, 0707, 0777};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		assert_int_equal(mkdir(fx->dir, 0700), 0);
		assert_int_equal(chmod(fx->dir, modes[i]), 0);
		struct checkpoint *cp = open_store(fx, NULL, 0);
		assert_int_equal(mode_of(fx->dir), 0700);
		checkpoint_free(cp);
		rm_tree(fx->dir);
	}
}

/* A shared sticky directory (like /tmp) is refused, not chmod'ed. */
static void
test_sticky_dir_refused(void **state)
{
	struct fx *fx = *state;
	char err[ERRLEN] = "";
	assert_int_equal(mkdir(fx->dir, 0700), 0);
	assert_int_equal(chmod(fx->dir, 01777), 0);
	assert_null(checkpoint_file_open(fx->dir, err, sizeof(err)));
	assert_contains(err, fx->dir);
	assert_contains(err, "sticky");
	assert_int_equal(mode_of(fx->dir), 01777);
}

static void
test_dir_is_a_file(void **state)
{
	struct fx *fx = *state;
	char err[ERRLEN] = "", want[1400];
	write_text(fx->dir, "not a directory");
	assert_null(checkpoint_file_open(fx->dir, err, sizeof(err)));
	snprintf(want, sizeof(want), "checkpoint directory %s: not a directory",
	         fx->dir);
	assert_contains(err, want);
}

static void
test_parent_missing(void **state)
{
	struct fx *fx = *state;
	char err[ERRLEN] = "", dir[1200], want[1400];
	snprintf(dir, sizeof(dir), "%s/no/such", fx->root);
	assert_null(checkpoint_file_open(dir, err, sizeof(err)));
	snprintf(want, sizeof(want),
	         "cannot create checkpoint directory %s: %s", dir,
	         strerror(ENOENT));
	assert_contains(err, want);
	snprintf(dir, sizeof(dir), "%s/no", fx->root);
	assert_false(exists(dir));
}

static void
test_empty_dir_name(void **state)
{
	char err[ERRLEN] = "";
	(void)state;
	assert_null(checkpoint_file_open("", err, sizeof(err)));
	assert_contains(err, "checkpoint directory");
	err[0] = '\0';
	assert_null(checkpoint_file_open(NULL, err, sizeof(err)));
	assert_contains(err, "checkpoint directory");
}

static int
open_readonly_dir(const struct fx *fx, char *err, size_t errlen)
{
	void *impl = checkpoint_file_open(fx->dir, err, errlen);
	if (impl == NULL)
		return -1;
	checkpoint_file_ops.free(impl);
	return 0;
}

static void
test_dir_not_writable(void **state)
{
	struct fx *fx = *state;
	char err[ERRLEN] = "", want[1400];
	assert_int_equal(mkdir(fx->dir, 0700), 0);
	assert_int_equal(chmod(fx->dir, 0500), 0);
	if (geteuid() == 0)
		assert_int_equal(chmod(fx->root, 0711), 0);
	assert_int_equal(
	    run_unprivileged(open_readonly_dir, fx, err, sizeof(err)), -1);
	snprintf(want, sizeof(want),
	         "cannot write in checkpoint directory %s: %s", fx->dir,
	         strerror(EACCES));
	assert_contains(err, want);
	assert_int_equal(mode_of(fx->dir), 0500);
}

/* ---- write failures and atomicity ---- */

/* Only checkpoints.json may be left in the directory after a save. */
static void
assert_dir_holds_only_file(const struct fx *fx)
{
	DIR *d = opendir(fx->dir);
	struct dirent *e;
	int files = 0;
	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		assert_string_equal(e->d_name, "checkpoints.json");
		files++;
	}
	closedir(d);
	assert_int_equal(files, 1);
}

static void
test_write_failure_keeps_dirty(void **state)
{
	struct fx *fx = *state;
	char err[ERRLEN] = "", want[1400];
	struct checkpoint *cp = open_store(fx, NULL, 0);
	/* A directory at the temp name: open(O_WRONLY) must fail. */
	assert_int_equal(mkdir(fx->tmp, 0700), 0);
	struct capture cap;
	capture_begin(&cap, fx);
	checkpoint_set(cp, "/topic/X", "77", T1);
	char *logged = capture_end(&cap);
	assert_contains(logged, "at=warn");
	assert_contains(logged, "checkpoint write failed");
	assert_contains(logged, fx->tmp);
	free(logged);
	assert_int_equal(checkpoint_writes(cp), 0);

	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "cannot write %s: %s", fx->tmp,
	         strerror(EISDIR));
	assert_contains(err, want);
	assert_false(exists(fx->path));
	assert_int_equal(checkpoint_writes(cp), 0);

	assert_int_equal(rmdir(fx->tmp), 0);
	flush_ok(cp);
	assert_int_equal(checkpoint_writes(cp), 1);
	assert_dir_holds_only_file(fx);
	checkpoint_free(cp);

	cp = reopen(fx);
	assert_string_equal(checkpoint_get(cp, "/topic/X"), "77");
	checkpoint_free(cp);
}

/*
 * A write that runs out of room (RLIMIT_FSIZE: EFBIG, the way ENOSPC
 * would look): the temp file is removed, the old file is untouched, and
 * the change is written once there is room again.
 */
static void
test_short_of_space(void **state)
{
	struct fx *fx = *state;
	char err[ERRLEN] = "", want[1400], big[4096];
	struct checkpoint *cp = open_store(fx, fx->base, 60000);
	checkpoint_set(cp, "/topic/X", "1", NULL);
	flush_ok(cp);
	memset(big, '9', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	checkpoint_set(cp, "/topic/X", big, NULL);

	struct rlimit old, small;
	struct sigaction ign = {.sa_handler = SIG_IGN}, oldsa;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small = old;
	small.rlim_cur = 1024;
	assert_int_equal(sigaction(SIGXFSZ, &ign, &oldsa), 0);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	int rc = checkpoint_flush(cp, err, sizeof(err));
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(sigaction(SIGXFSZ, &oldsa, NULL), 0);

	assert_int_equal(rc, -1);
	snprintf(want, sizeof(want), "cannot write %s: %s", fx->tmp,
	         strerror(EFBIG));
	assert_contains(err, want);
	assert_false(exists(fx->tmp));
	assert_int_equal(checkpoint_writes(cp), 1);
	struct checkpoint *other = reopen(fx);
	assert_string_equal(checkpoint_get(other, "/topic/X"), "1");
	checkpoint_free(other);

	flush_ok(cp);
	assert_int_equal(checkpoint_writes(cp), 2);
	checkpoint_free(cp);
	cp = reopen(fx);
	assert_string_equal(checkpoint_get(cp, "/topic/X"), big);
	checkpoint_free(cp);
}

/* rename() onto a non-empty directory fails: the temp file goes too. */
static void
test_rename_failure(void **state)
{
	struct fx *fx = *state;
	char err[ERRLEN] = "", inner[1400];
	struct checkpoint *cp = open_store(fx, fx->base, 60000);
	assert_int_equal(mkdir(fx->path, 0700), 0);
	snprintf(inner, sizeof(inner), "%s/x", fx->path);
	write_text(inner, "x");
	checkpoint_set(cp, "/topic/X", "1", NULL);
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), -1);
	assert_contains(err, "cannot rename");
	assert_contains(err, fx->tmp);
	assert_contains(err, fx->path);
	assert_false(exists(fx->tmp));
	rm_tree(fx->path);
	flush_ok(cp);
	checkpoint_free(cp);
	assert_dir_holds_only_file(fx);
}

static void
test_leftover_tmp_ignored(void **state)
{
	struct fx *fx = *state;
	struct checkpoint *cp = open_store(fx, NULL, 0);
	checkpoint_set(cp, "/topic/X", "5", NULL);
	checkpoint_free(cp);
	/* A crash between writing the temp file and the rename. */
	write_text(fx->tmp, "{\"version\":1,\"positions\":{\"/topic/X\":{");

	cp = reopen(fx);
	assert_string_equal(checkpoint_get(cp, "/topic/X"), "5");
	assert_true(exists(fx->tmp));
	checkpoint_set(cp, "/topic/X", "6", NULL);
	assert_false(exists(fx->tmp));
	assert_dir_holds_only_file(fx);
	checkpoint_free(cp);

	cp = reopen(fx);
	assert_string_equal(checkpoint_get(cp, "/topic/X"), "6");
	checkpoint_free(cp);
}

static void
test_no_tmp_after_save(void **state)
{
	struct fx *fx = *state;
	struct checkpoint *cp = open_store(fx, NULL, 0);
	for (int i = 0; i < 5; i++) {
		char pos[16];
		snprintf(pos, sizeof(pos), "%d", i);
		checkpoint_set(cp, "/topic/X", pos, NULL);
		assert_false(exists(fx->tmp));
		assert_dir_holds_only_file(fx);
	}
	assert_int_equal(checkpoint_writes(cp), 5);
	checkpoint_free(cp);
}

/* ---- the in-memory layer ---- */

static void
test_debounce(void **state)
{
	struct fx *fx = *state;
	char pos[32];
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct checkpoint *cp = open_store(fx, base, 50);
	for (int i = 1; i <= 1000; i++) {
		snprintf(pos, sizeof(pos), "%d", i);
		checkpoint_set(cp, "/topic/X", pos, NULL);
	}
	assert_int_equal(checkpoint_writes(cp), 0);
	assert_false(exists(fx->path));

	run_once(base);
	assert_int_equal(checkpoint_writes(cp), 1);
	struct checkpoint *other = reopen(fx);
	assert_string_equal(checkpoint_get(other, "/topic/X"), "1000");
	checkpoint_free(other);

	/* The next change waits for its own interval. */
	checkpoint_set(cp, "/topic/X", "1001", NULL);
	assert_int_equal(checkpoint_writes(cp), 1);
	run_once(base);
	assert_int_equal(checkpoint_writes(cp), 2);

	/* A flush writes now; the pending timer is cancelled, not repeated. */
	checkpoint_set(cp, "/topic/X", "1002", NULL);
	flush_ok(cp);
	assert_int_equal(checkpoint_writes(cp), 3);
	flush_ok(cp);
	assert_int_equal(checkpoint_writes(cp), 3);
	assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1);
	checkpoint_free(cp);
	event_base_free(base);
}

static void
test_timer_retries_failed_write(void **state)
{
	struct fx *fx = *state;
	int freed = 0;
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct fake *f = fake_new(&freed);
	f->fail_saves = 1;
	struct checkpoint *cp = checkpoint_new(base, &fake_ops, f, 10);
	assert_non_null(cp);
	checkpoint_set(cp, "/topic/X", "9", NULL);
	assert_int_equal(f->attempts, 0);

	struct capture cap;
	capture_begin(&cap, fx);
	run_once(base);
	char *logged = capture_end(&cap);
	assert_contains(logged, "at=warn msg=\"checkpoint write failed\"");
	assert_contains(logged, "disk on fire");
	free(logged);
	assert_int_equal(f->attempts, 1);
	assert_int_equal(checkpoint_writes(cp), 0);

	run_once(base); /* the retry, one interval later */
	assert_int_equal(f->attempts, 2);
	assert_int_equal(f->saves, 1);
	assert_int_equal(checkpoint_writes(cp), 1);
	assert_string_equal(f->saved_position, "9");
	checkpoint_free(cp);
	assert_int_equal(freed, 1);
	event_base_free(base);
}

static void
test_failed_flush_retried_by_timer(void **state)
{
	int freed = 0;
	char err[ERRLEN] = "";
	(void)state;
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct fake *f = fake_new(&freed);
	struct checkpoint *cp = checkpoint_new(base, &fake_ops, f, 10);
	assert_non_null(cp);
	checkpoint_set(cp, "/topic/X", "3", NULL);
	f->fail_saves = 1;
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), -1);
	assert_string_equal(err, "fake: disk on fire");
	run_once(base);
	assert_int_equal(f->saves, 1);
	assert_int_equal(checkpoint_writes(cp), 1);
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), 0);
	assert_int_equal(f->attempts, 2);
	checkpoint_free(cp);
	event_base_free(base);
}

static void
test_free_without_flush_does_not_write(void **state)
{
	struct fx *fx = *state;
	int freed = 0;
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct checkpoint *cp = open_store(fx, base, 60000);
	checkpoint_set(cp, "/topic/X", "1", NULL);
	struct checkpoint_gap g = {"/topic/X", "0", NULL, T1};
	checkpoint_add_gap(cp, &g);
	checkpoint_free(cp);
	assert_false(exists(fx->path));

	struct fake *f = fake_new(&freed);
	cp = checkpoint_new(base, &fake_ops, f, 60000);
	assert_non_null(cp);
	checkpoint_set(cp, "/topic/X", "1", NULL);
	int attempts = f->attempts;
	checkpoint_free(cp);
	assert_int_equal(attempts, 0);
	assert_int_equal(freed, 1);
	/* The timer went with the store: the loop has nothing left. */
	assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1);
	event_base_free(base);
}

static void
test_flush_when_clean(void **state)
{
	int freed = 0;
	char err[ERRLEN] = "";
	(void)state;
	struct fake *f = fake_new(&freed);
	struct checkpoint *cp = checkpoint_new(NULL, &fake_ops, f, 0);
	assert_non_null(cp);
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), 0);
	assert_int_equal(f->attempts, 0);
	checkpoint_set(cp, "/topic/X", "1", NULL);
	assert_int_equal(f->saves, 1); /* interval 0: at once */
	assert_int_equal(checkpoint_flush(cp, err, sizeof(err)), 0);
	assert_int_equal(f->attempts, 1);
	checkpoint_remove_gap(cp, 0); /* nothing to remove: no change */
	assert_int_equal(f->attempts, 1);
	checkpoint_free(cp);
	checkpoint_free(NULL);
}

static void
test_load_replaces_memory(void **state)
{
	struct fx *fx = *state;
	const struct checkpoint_gap *gaps;
	struct checkpoint *cp = open_store(fx, NULL, 0);
	checkpoint_set(cp, "/topic/Saved", "10", NULL);
	checkpoint_free(cp);

	struct event_base *base = event_base_new();
	assert_non_null(base);
	cp = open_store(fx, base, 60000);
	checkpoint_set(cp, "/topic/Pending", "1", NULL);
	struct checkpoint_gap g = {"/topic/Pending", "0", NULL, T1};
	checkpoint_add_gap(cp, &g);
	char err[ERRLEN];
	assert_int_equal(checkpoint_load(cp, err, sizeof(err)), 0);
	assert_null(checkpoint_get(cp, "/topic/Pending"));
	assert_string_equal(checkpoint_get(cp, "/topic/Saved"), "10");
	assert_int_equal(checkpoint_gaps(cp, &gaps), 0);
	/* Memory equals the file: nothing to write. */
	flush_ok(cp);
	assert_int_equal(checkpoint_writes(cp), 0);
	checkpoint_free(cp);
	event_base_free(base);
}

static void
test_backend_state_validated(void **state)
{
	int freed = 0;
	char err[ERRLEN] = "";
	(void)state;
	struct checkpoint_entry good[] = {{"/topic/A", "1", T1},
	                                  {"/topic/A", "2", NULL}};
	struct checkpoint_entry bad[] = {{"/topic/B", NULL, NULL}};
	struct checkpoint_state st_good = {good, 2, NULL, 0};
	struct checkpoint_state st_bad = {bad, 1, NULL, 0};
	struct fake *f = fake_new(&freed);
	struct checkpoint *cp = checkpoint_new(NULL, &fake_ops, f, 0);
	assert_non_null(cp);
	/* A duplicate key: the later entry wins. */
	f->to_load = &st_good;
	assert_int_equal(checkpoint_load(cp, err, sizeof(err)), 0);
	assert_string_equal(checkpoint_get(cp, "/topic/A"), "2");
	assert_null(checkpoint_created(cp, "/topic/A"));
	f->to_load = &st_bad;
	assert_int_equal(checkpoint_load(cp, err, sizeof(err)), -1);
	assert_string_equal(err, "fake: state rejected");
	assert_string_equal(checkpoint_get(cp, "/topic/A"), "2");
	assert_null(checkpoint_get(cp, "/topic/B"));
	checkpoint_free(cp);
	assert_int_equal(freed, 1);
}

static void
test_every_change_written_without_interval(void **state)
{
	struct fx *fx = *state;
	struct checkpoint *cp = open_store(fx, NULL, 0);
	checkpoint_set(cp, "/topic/X", "1", NULL);
	assert_int_equal(checkpoint_writes(cp), 1);
	struct checkpoint_gap g = {"/topic/X", "1", NULL, T1};
	checkpoint_add_gap(cp, &g);
	assert_int_equal(checkpoint_writes(cp), 2);
	checkpoint_remove_gap(cp, 0);
	assert_int_equal(checkpoint_writes(cp), 3);
	checkpoint_free(cp);
	/* An interval without a base also writes at once. */
	cp = open_store(fx, NULL, 1000);
	checkpoint_set(cp, "/topic/X", "2", NULL);
	assert_int_equal(checkpoint_writes(cp), 1);
	checkpoint_free(cp);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_round_trip),
	    T(test_positions_kept_as_text),
	    T(test_file_format),
	    T(test_many_keys),
	    T(test_update_key),
	    T(test_gaps),
	    T(test_missing_file_is_empty),
	    T(test_trailing_slash_dir),
	    T(test_corrupt_files),
	    T(test_file_too_large),
	    T(test_file_is_directory),
	    T(test_file_unreadable),
	    T(test_created_modes_any_umask),
	    T(test_existing_dir_tightened),
	    T(test_sticky_dir_refused),
	    T(test_dir_is_a_file),
	    T(test_parent_missing),
	    T(test_empty_dir_name),
	    T(test_dir_not_writable),
	    T(test_write_failure_keeps_dirty),
	    T(test_short_of_space),
	    T(test_rename_failure),
	    T(test_leftover_tmp_ignored),
	    T(test_no_tmp_after_save),
	    T(test_debounce),
	    T(test_timer_retries_failed_write),
	    T(test_failed_flush_retried_by_timer),
	    T(test_free_without_flush_does_not_write),
	    T(test_flush_when_clean),
	    T(test_load_replaces_memory),
	    T(test_backend_state_validated),
	    T(test_every_change_written_without_interval),
	};
	return cmocka_run_group_tests_name("checkpoint", tests, NULL, NULL);
}
