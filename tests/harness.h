#ifndef SFRELAY_TEST_HARNESS_H
#define SFRELAY_TEST_HARNESS_H

/*
 * Test helpers, linked into every test. End to end: temp dirs, child
 * processes (sfmock, sfrelay) and small blocking HTTP calls to the mock;
 * every wait is bounded. For unit tests too: data files, cmocka checks
 * that name what they compare, and the malformed Bayeux bodies both
 * decoders' tests share. Binaries and data files are found relative to
 * the repo root (binaries under $B, default "build"), which is the
 * working directory of every test.
 */

#include <stddef.h>
#include <sys/types.h>

struct proc {
	pid_t pid;
	int out_fd; /* read end of the child's stdout, or -1 */
	char buf[65536];
	size_t buf_len;
};

/* A fresh directory under $TMPDIR (default /tmp); returns a malloc'd path. */
char *harness_tmpdir(const char *name);
/* Removes dir and its files (one level), unless keep is set. */
void harness_rmdir(const char *dir, int keep);
/* Path of a built binary: "$B/name" (static buffer per call site; copy it). */
const char *harness_bin(const char *name, char *buf, size_t len);

/*
 * Starts argv[0] with a clean environment made of env (NULL-terminated
 * "K=V" strings; PATH is added). stdout goes to stdout_path, or to a pipe
 * readable with proc_read_line() when stdout_path is NULL; stderr goes to
 * stderr_path (or /dev/null). Returns 0 or -1.
 */
int proc_start(struct proc *p, const char *const *argv, const char *const *env,
	       const char *stdout_path, const char *stderr_path);
/* Reads one line of the child's stdout into line (no '\n'). Returns 0, or
 * -1 on timeout/EOF. */
int proc_read_line(struct proc *p, char *line, size_t len, int timeout_ms);
/* Sends sig and waits up to timeout_ms. Returns the exit status
 * (0..255), 128+signal when killed, or -1 when it did not end (it is then
 * SIGKILLed and reaped). */
int proc_stop(struct proc *p, int sig, int timeout_ms);
/* Waits for the child to end on its own. Same returns as proc_stop. */
int proc_wait(struct proc *p, int timeout_ms);

/*
 * What most end-to-end tests keep: a temp dir, sfmock and the relay, the
 * mock's port, the paths of the relay's files in dir, whether the test
 * reached its end (its logs are removed only then), and the test's
 * parameter when it is one case of a table.
 */
struct e2e_fixture {
	char *dir;
	struct proc mock;
	struct proc relay;
	int port;
	char out[4096];  /* dir/relay.out */
	char err[4096];  /* dir/relay.err */
	char ckpt[4096]; /* dir/state/checkpoints.json */
	int ok;
	const void *param; /* the test's cmocka initial_state, or NULL */
};

/* Zeroes f, then gives it a fresh temp dir named after name (owned by f:
 * harness_finish() frees it) and the paths above. Returns 0 or -1. */
int e2e_fixture_init(struct e2e_fixture *f, const char *name);

/* cmocka setup: *state becomes a struct e2e_fixture (malloc'd), made by
 * e2e_fixture_init(), whose param is what *state held (the test's
 * initial_state, or NULL). Returns 0 or -1. */
int e2e_setup(void **state, const char *name);
/* cmocka teardown: harness_finish() of the fixture, its logs kept unless
 * ok is set; then frees it. Returns 0. */
int e2e_teardown(void **state);

/*
 * The usual end of an end-to-end test: the relay SIGKILLed, then the mock
 * sent SIGTERM, each waited for up to 5 s (one not running is skipped);
 * then dir is removed unless keep (see harness_rmdir()) and freed.
 */
void harness_finish(struct proc *relay, struct proc *mock, char *dir,
		    int keep);

/* sfmock on a free port with extra flags (NULL-terminated); logs into
 * dir/sfmock.log. Returns the port, or -1. */
int sfmock_start(struct proc *p, const char *dir, const char *const *flags);

/*
 * sfrelay against the mock on port, with the mock's default identity,
 * SFRELAY_STATE_DIR=dir/state, debug logs, stdout appended to
 * dir/relay.out and stderr to dir/relay.err. extra: more "K=V" entries
 * (NULL-terminated; may be NULL), which win over the defaults.
 */
int relay_start(struct proc *p, const char *dir, int port,
		const char *channels, const char *const *extra);
/* Waits until dir/relay.err holds at least n lines containing needle.
 * Returns 0, or -1 after timeout_ms. */
int wait_log(const char *dir, const char *needle, int n, int timeout_ms);
/* Waits until dir/relay.out has at least n lines; returns the count. */
size_t wait_lines(const char *dir, size_t n, int timeout_ms);
/* The replay ids of channel's lines in an output file (relay.out), in
 * file order: the first max go into ids; returns how many there are. */
size_t file_replay_ids(const char *path, const char *channel, long *ids,
		       size_t max);
/* Counts occurrences of needle in a file. */
int file_count(const char *path, const char *needle);
/* POSTs /_mock/publish for channel (URL-encoded here). Returns HTTP status. */
long mock_publish(int port, const char *channel, int count);

/* Blocking HTTP to loopback. Returns the HTTP status (0 on transport
 * failure); the body (NUL-terminated, truncated) goes to resp. */
long http_call(const char *method, const char *url, const char *const *headers,
	       const char *body, char *resp, size_t resp_len);

/* Counts lines in a file (0 if missing). */
size_t file_count_lines(const char *path);
/* Reads a whole file (malloc'd, NUL-terminated) or NULL. */
char *file_read(const char *path, size_t *len);
/* 1 when the file contains needle. */
int file_contains(const char *path, const char *needle);
/*
 * Sends fd 2 into path (created, or truncated) until stderr_restore().
 * Returns the saved fd 2, or -1 (nothing changed).
 */
int stderr_redirect(const char *path);
/* Flushes stderr and puts back (and closes) the fd 2 that
 * stderr_redirect() saved. Returns 0 or -1. */
int stderr_restore(int saved);
/*
 * Runs fn(arg) with fd 2 sent to an unlinked temp file and returns what
 * was written there (malloc'd, NUL-terminated; its length in *len when
 * len is not NULL), or NULL when the capture or the read-back failed.
 */
char *stderr_capture(void (*fn)(const char *), const char *arg, size_t *len);

/* Reads dir followed by name (a path relative to the repository root,
 * the tests' working directory) whole: malloc'd, a NUL after the last
 * byte, its length in *len. A file that cannot be read fails the test. */
char *load_test_file(const char *dir, const char *name, size_t *len);

/*
 * cmocka checks that name what they compare: fail the test with "ctx:
 * field: want ..., got ..." unless want and got are equal (two NULL
 * strings are equal).
 */
void expect_str(const char *ctx, const char *field, const char *want,
                const char *got);
void expect_long(const char *ctx, const char *field, long want, long got);

/*
 * Malformed Bayeux response bodies, one table for the tests of both
 * decoders (bayeux_decode() in test_bayeux_msg.c, the stream in
 * test_bayeux_stream.c): both must refuse every one, with an error
 * holding decode_has (bayeux_decode) or stream_has (the stream); NULL
 * where that decoder's words are not checked. Static storage.
 */
struct harness_bad_body {
	const char *name;
	const char *body;
	size_t len; /* 0: strlen(body) */
	const char *decode_has;
	const char *stream_has;
};
extern const struct harness_bad_body harness_bad_bodies[];
extern const size_t harness_bad_bodies_count;

/* Milliseconds from a monotonic clock. */
long long now_ms(void);
void sleep_ms(int ms);

#endif
