/*
 * stdout sink. Lines from one loop turn (typically one connect response)
 * are written together; the ack follows the write. stdout stays blocking:
 * it is usually a pipe into Heroku's log router, and a blocked write is
 * the honest form of back-pressure for it.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sfrelay/sink.h"

struct sink_stdout {
	struct sink *sink;
	int fd;
	struct evbuffer *buf;
	struct event *flush_ev;
	uint64_t buffered_upto; /* highest seq in buf */
	int failed;
};

/* Writes out everything buffered. Returns 0 or -1 (sink failed). */
static int
drain(struct sink_stdout *s)
{
	while (evbuffer_get_length(s->buf) > 0) {
		int n = evbuffer_write(s->buf, s->fd);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* Someone made the shared fd non-blocking: wait. */
			struct pollfd p = {.fd = s->fd, .events = POLLOUT};
			poll(&p, 1, -1);
			continue;
		}
		if (n <= 0) {
			const char *why = n == 0 ? "write returned 0"
						 : strerror(errno);
			s->failed = 1;
			sink_failed(s->sink, why);
			return -1;
		}
	}
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
	if (evbuffer_add(s->buf, line, len) != 0)
		return -1;
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
	if (s->buf != NULL)
		evbuffer_free(s->buf);
	free(s);
}

static const struct sink_ops stdout_ops = {
	.name = "stdout",
	.write = stdout_write,
	.flush = stdout_flush,
	.free = stdout_free,
};

struct sink *
sink_stdout_new(struct event_base *base, int fd)
{
	struct sink_stdout *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->fd = fd;
	s->buf = evbuffer_new();
	s->flush_ev = event_new(base, -1, 0, on_flush, s);
	if (s->buf == NULL || s->flush_ev == NULL) {
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
