#ifndef SFRELAY_TEST_HARNESS_H
#define SFRELAY_TEST_HARNESS_H

/*
 * End-to-end test helpers: temp dirs, child processes (sfmock, sfrelay)
 * and small blocking HTTP calls to the mock. Every wait is bounded.
 * Binaries are found under $B (default "build"), relative to the repo
 * root, which is the working directory of every test.
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
/* Milliseconds from a monotonic clock. */
long long now_ms(void);
void sleep_ms(int ms);

#endif
