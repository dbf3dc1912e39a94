/*
 * stdout sink. Lines from one loop turn (typically one connect response)
 * are written together; the ack follows the write. stdout stays blocking:
 * it is usually a pipe into Heroku's log router, and a blocked write is
 * the honest form of back-pressure for it.
 *
 * Lines are not copied: the relay's queue keeps each one, unmoved, until
 * it is acknowledged (sink.h), so the sink gathers pointers and hands
 * them to writev(2). Consecutive lines usually sit next to each other in
 * the queue's memory and become one iovec.
 */
#define _GNU_SOURCE /* F_SETPIPE_SZ (Linux) */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>

#include "sfrelay/sink.h"

/* The pipe buffer asked for when stdout is a pipe (Linux lets any
 * process have up to /proc/sys/fs/pipe-max-size, 1 MiB by default). */
#define PIPE_WANT (1024 * 1024)

/* Below every system's IOV_MAX (1024 on Linux; POSIX guarantees 16 only,
 * hence the clamp in drain()). */
#define IOV_BATCH 1024

struct sink_stdout {
	struct sink *sink;
	int fd;
	struct iovec *iov; /* pending bytes, borrowed from the queue */
	size_t niov, cap;
	struct event *flush_ev;
	uint64_t buffered_upto; /* highest seq in iov */
	int failed;
};

static void
fail_sink(struct sink_stdout *s, const char *why)
{
	s->failed = 1;
	sink_failed(s->sink, why);
}

/* Writes out everything gathered. Returns 0 or -1 (sink failed). */
static int
drain(struct sink_stdout *s)
{
	size_t done = 0;
	int batch = IOV_BATCH;
#ifdef IOV_MAX
	if (IOV_MAX < batch)
		batch = IOV_MAX;
#endif
	while (done < s->niov) {
		size_t left = s->niov - done;
		int cnt = left < (size_t)batch ? (int)left : batch;
		ssize_t n = writev(s->fd, s->iov + done, cnt);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* Someone made the shared fd non-blocking: wait. */
			struct pollfd p = {.fd = s->fd, .events = POLLOUT};
			poll(&p, 1, -1);
			continue;
		}
		if (n <= 0) {
			fail_sink(s, n == 0 ? "write returned 0"
					    : strerror(errno));
			return -1;
		}
		/* Skip what was written; a partial iovec is advanced. */
		size_t w = (size_t)n;
		while (w > 0 && w >= s->iov[done].iov_len)
			w -= s->iov[done++].iov_len;
		if (w > 0) {
			s->iov[done].iov_base = (char *)s->iov[done].iov_base + w;
			s->iov[done].iov_len -= w;
		}
	}
	s->niov = 0;
	if (s->buffered_upto > 0)
		sink_acked(s->sink, s->buffered_upto);
	return 0;
}

static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain(arg);
}

static int
stdout_write(void *impl, uint64_t seq, const char *line, size_t len)
{
	struct sink_stdout *s = impl;
	if (s->failed)
		return -1;
	struct iovec *last = s->niov > 0 ? &s->iov[s->niov - 1] : NULL;
	if (last != NULL &&
	    (const char *)last->iov_base + last->iov_len == line) {
		last->iov_len += len;
	} else {
		if (s->niov == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 64;
			struct iovec *iov = realloc(s->iov, cap * sizeof(*iov));
			if (iov == NULL)
				return -1;
			s->iov = iov;
			s->cap = cap;
		}
		/* writev() does not write through iov_base: the cast only
		 * drops a const the structure cannot express. */
		s->iov[s->niov].iov_base = (void *)(uintptr_t)line;
		s->iov[s->niov].iov_len = len;
		s->niov++;
	}
	s->buffered_upto = seq;
	/* Runs after the callbacks of this loop turn: one write per batch. */
	event_active(s->flush_ev, EV_TIMEOUT, 0);
	return 0;
}

static int
stdout_flush(void *impl)
{
	struct sink_stdout *s = impl;
	if (s->failed)
		return -1;
	return drain(s);
}

static void
stdout_free(void *impl)
{
	struct sink_stdout *s = impl;
	if (s == NULL)
		return;
	if (s->flush_ev != NULL)
		event_free(s->flush_ev);
	free(s->iov);
	free(s);
}

static const struct sink_ops stdout_ops = {
	.name = "stdout",
	.write = stdout_write,
	.flush = stdout_flush,
	.free = stdout_free,
};

/*
 * A pipe holds 64 KiB by default: a connect reply's lines (some 600 KB
 * for a thousand events) then go out in ten blocking writes, each waiting
 * for the reader. With room for the whole batch the write returns at
 * once and the relay goes on with the next reply while the log router
 * reads. Best effort: a refusal changes nothing else. The lines in the
 * pipe are safe once written: the reader gets them even if the relay
 * dies.
 */
static void
widen_pipe(int fd)
{
#ifdef F_SETPIPE_SZ
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) &&
	    fcntl(fd, F_GETPIPE_SZ) < PIPE_WANT)
		(void)fcntl(fd, F_SETPIPE_SZ, PIPE_WANT);
#else
	(void)fd;
#endif
}

struct sink *
sink_stdout_new(struct event_base *base, int fd)
{
	struct sink_stdout *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->fd = fd;
	widen_pipe(fd);
	s->flush_ev = event_new(base, -1, 0, on_flush, s);
	if (s->flush_ev == NULL) {
		stdout_free(s);
		return NULL;
	}
	s->sink = sink_new(&stdout_ops, s);
	if (s->sink == NULL) {
		stdout_free(s);
		return NULL;
	}
	return s->sink;
}
