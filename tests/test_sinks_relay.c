#define _GNU_SOURCE /* F_GETPIPE_SZ */
/* The relay and the sink interface with a scripted sink: flow control
 * (ready / writable), cumulative acknowledgements, positions of split
 * events and stats lines, drops, and the drain at shutdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sfrelay/event.h"
#include "sfrelay/format.h"
#include "sfrelay/lines.h"
#include "sfrelay/relay.h"
#include "sfrelay/sink.h"

struct fake {
	struct sink *sink;
	int ready;
	uint64_t seqs[256];
	char *lines[256];
	size_t n;
	int flushed;
};

static int
fake_write(void *impl, uint64_t seq, const char *line, size_t len)
{
	struct fake *f = impl;
	assert_true(f->ready); /* never written to while not ready */
	assert_true(f->n < 256);
	f->seqs[f->n] = seq;
	f->lines[f->n++] = strndup(line, len);
	return 0;
}

static int
fake_flush(void *impl)
{
	((struct fake *)impl)->flushed++;
	return 0;
}

static void
fake_free(void *impl)
{
	struct fake *f = impl;
	for (size_t i = 0; i < f->n; i++)
		free(f->lines[i]);
}

static int
fake_ready(void *impl)
{
	return ((struct fake *)impl)->ready;
}

static const struct sink_ops fake_ops = {
	.name = "fake",
	.write = fake_write,
	.flush = fake_flush,
	.free = fake_free,
	.ready = fake_ready,
};

struct seen {
	char pos[64][32];
	size_t n;
	int drained;
};

static void
on_position(void *arg, const char *channel, const char *position,
	    const char *created)
{
	(void)created;
	struct seen *s = arg;
	assert_string_equal(channel, "/topic/T");
	snprintf(s->pos[s->n++], 32, "%s", position);
}

static void
on_fatal(void *arg, int code, const char *msg)
{
	(void)arg;
	(void)code;
	fail_msg("unexpected fatal: %s", msg);
}

static void
on_drained(void *arg)
{
	((struct seen *)arg)->drained++;
}

static void
submit(struct relay *r, const char *pos, const char *payload)
{
	struct event ev = {.src = EVENT_SRC_STREAM,
			   .channel = "/topic/T",
			   .position = pos,
			   .created = "2026-01-01T00:00:00.000Z",
			   .payload = payload,
			   .payload_len = strlen(payload)};
	assert_int_equal(relay_submit(r, &ev), 0);
}

static void
test_flow_control_and_acks(void **state)
{
	(void)state;
	struct fake f = {.ready = 1};
	struct sink *sink = sink_new(&fake_ops, &f);
	f.sink = sink;
	struct relay_opts o = {.format = FORMAT_LOGFMT, .max_lines = 5,
			       .max_bytes = 1 << 20};
	struct relay *r = relay_new(&o, sink);
	struct seen s = {0};
	relay_set_callbacks(r, on_fatal, on_position, &s);

	submit(r, "1", "{\"a\":1}");
	submit(r, "2", "{\"a\":2}");
	assert_int_equal(f.n, 2);
	assert_false(relay_full(r));
	/* The sink's window fills: the relay holds lines and the sources. */
	f.ready = 0;
	assert_true(relay_full(r));
	submit(r, "3", "{\"a\":3}");
	assert_int_equal(f.n, 2);
	assert_int_equal(relay_pending(r), 3);
	f.ready = 1;
	sink_writable(sink);
	assert_int_equal(f.n, 3);
	assert_int_equal(f.seqs[2], 3);

	/* Cumulative acknowledgements move the position; a stale one is
	 * ignored. */
	sink_acked(sink, 2);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.pos[0], "2");
	sink_acked(sink, 1);
	assert_int_equal(s.n, 1);
	assert_int_equal(relay_acked(r), 2);

	/* A stats line reaches the sink but moves no position. */
	assert_int_equal(relay_submit_line(r, "at=stats x=1", 12), 0);
	assert_string_equal(f.lines[3], "at=stats x=1\n");
	sink_dropped(sink, 1);
	sink_reconnected(sink);
	sink_acked(sink, 4);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.pos[1], "3");

	struct relay_stats st;
	relay_get_stats(r, &st);
	assert_int_equal(st.events, 3);
	assert_int_equal(st.lines, 4);
	assert_int_equal(st.acked, 4);
	assert_int_equal(st.dropped, 1);
	assert_int_equal(st.reconnects, 1);
	assert_int_equal(st.queued, 0);

	/* Drain: at once when nothing is pending, else at the last ack. */
	relay_drain(r, on_drained, &s);
	assert_int_equal(s.drained, 1);
	submit(r, "4", "{\"a\":4}");
	assert_int_equal(relay_flush(r), 0);
	assert_int_equal(f.flushed, 1);
	relay_drain(r, on_drained, &s);
	assert_int_equal(s.drained, 1);
	sink_acked(sink, 5);
	assert_int_equal(s.drained, 2);
	relay_free(r);
}

static void
test_split_event_moves_position_at_last_part(void **state)
{
	(void)state;
	struct fake f = {.ready = 1};
	struct sink *sink = sink_new(&fake_ops, &f);
	sink_set_max_line(sink, 1024);
	const char *pats[] = {"secret"};
	struct lines_redact *red = lines_redact_new(pats, 1);
	struct relay_opts o = {.format = FORMAT_LOGFMT, .max_lines = 100,
			       .max_bytes = 1 << 20, .redact = red};
	struct relay *r = relay_new(&o, sink);
	struct seen s = {0};
	relay_set_callbacks(r, on_fatal, on_position, &s);
	char payload[4000];
	memset(payload, 0, sizeof(payload));
	strcpy(payload, "{\"secret\":\"x\",\"d\":\"");
	memset(payload + strlen(payload), 'z', 3000);
	strcat(payload, "\"}");
	submit(r, "7", payload);
	assert_int_equal(f.n, 4);
	for (size_t i = 0; i < f.n; i++) {
		assert_true(strlen(f.lines[i]) <= 1025);
		assert_non_null(strstr(f.lines[i], " id=/topic/T:7 "));
		assert_null(strstr(f.lines[i], "secret=x"));
	}
	assert_non_null(strstr(f.lines[0], "secret=[redacted]"));
	/* Parts 1..3 acknowledged: the event is not done yet. */
	sink_acked(sink, f.seqs[2]);
	assert_int_equal(s.n, 0);
	sink_acked(sink, f.seqs[3]);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.pos[0], "7");
	relay_free(r);
	lines_redact_free(red);
}


/* ---- the stdout sink, through the relay --------------------------------- */

/* What the relay reported: its fatal and position callbacks share arg. */
struct reports {
	char last[32]; /* newest position */
	int n;         /* fatal calls */
	int code;
};

static void
count_fatal(void *arg, int code, const char *msg)
{
	(void)msg;
	struct reports *f = arg;
	f->n++;
	f->code = code;
}

static void
count_position(void *arg, const char *channel, const char *position,
	       const char *created)
{
	(void)channel;
	(void)created;
	struct reports *f = arg;
	snprintf(f->last, sizeof(f->last), "%s", position);
}

/*
 * Lines formatted into the queue reach the fd through writev() from the
 * queue's memory, in order, byte for byte what format_event() makes, in
 * one loop turn; the write acknowledges them and moves the position.
 * Events of several sizes (one longer than the in-place room, and one
 * redacted) take both of the relay's paths.
 */
static void
test_stdout_sink_writes_queue_lines(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	struct event_base *base = event_base_new();
	struct sink *sink = sink_stdout_new(base, fds[1]);
	assert_non_null(sink);
	const char *pats[] = {"*secret*"};
	struct lines_redact *red = lines_redact_new(pats, 1);
	struct relay_opts o = {.format = FORMAT_LOGFMT, .max_lines = 1000,
			       .max_bytes = 1 << 20, .redact = red};
	struct relay *r = relay_new(&o, sink);
	struct reports fatal = {0};
	relay_set_callbacks(r, count_fatal, count_position, &fatal);

	struct evbuffer *want = evbuffer_new();
	struct evbuffer *unredacted = evbuffer_new();
	char *payload = malloc(40000);
	for (int k = 1; k <= 60; k++) {
		size_t n = k == 30 ? 30000 : (size_t)(k * 13 % 200);
		int m = snprintf(payload, 64, "{\"k\":%d,%s\"v\":\"", k,
				 k == 40 ? "\"secret\":\"x\"," : "");
		memset(payload + m, 'a' + k % 26, n);
		memcpy(payload + (size_t)m + n, "\"}", 3);
		char pos[16];
		snprintf(pos, sizeof(pos), "%d", k);
		struct event ev = {.src = EVENT_SRC_STREAM,
				   .channel = "/topic/T",
				   .position = pos,
				   .payload = payload,
				   .payload_len = strlen(payload)};
		assert_int_equal(format_event(FORMAT_LOGFMT, &ev, unredacted),
				 0);
		size_t ul = evbuffer_get_length(unredacted);
		assert_true(lines_redact_line(
				red, FORMAT_LOGFMT,
				(const char *)evbuffer_pullup(unredacted, -1),
				ul, want) >= 0);
		evbuffer_drain(unredacted, ul);
		assert_int_equal(relay_submit(r, &ev), 0);
	}
	/* Nothing is written before the loop turn ends. */
	assert_int_equal(relay_pending(r), 60);
	assert_true(event_base_loop(base, EVLOOP_NONBLOCK) >= 0);
	assert_int_equal(relay_pending(r), 0);
	assert_string_equal(fatal.last, "60");

	size_t wn = evbuffer_get_length(want);
	char *got = malloc(wn + 1);
	size_t gn = 0;
	ssize_t rd;
	close(fds[1]);
	while ((rd = read(fds[0], got + gn, wn + 1 - gn)) > 0)
		gn += (size_t)rd;
	assert_int_equal(gn, wn);
	assert_memory_equal(got, evbuffer_pullup(want, -1), wn);
	assert_non_null(strstr(got, "secret=[redacted]"));
	assert_int_equal(fatal.n, 0);

	relay_free(r);
	lines_redact_free(red);
	event_base_free(base);
	evbuffer_free(want);
	evbuffer_free(unredacted);
	free(got);
	free(payload);
	close(fds[0]);
}

/* A reader that went away fails the sink: the relay reports code 75,
 * acknowledges nothing and refuses further events. */
static void
test_stdout_sink_closed_pipe(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	close(fds[0]);
	struct event_base *base = event_base_new();
	struct sink *sink = sink_stdout_new(base, fds[1]);
	struct relay_opts o = {.format = FORMAT_LOGFMT, .max_lines = 10,
			       .max_bytes = 1 << 20};
	struct relay *r = relay_new(&o, sink);
	struct reports fatal = {0};
	relay_set_callbacks(r, count_fatal, count_position, &fatal);
	struct event ev = {.src = EVENT_SRC_STREAM, .channel = "/topic/T",
			   .position = "1", .payload = "{}", .payload_len = 2};
	assert_int_equal(relay_submit(r, &ev), 0);
	assert_true(event_base_loop(base, EVLOOP_NONBLOCK) >= 0);
	assert_int_equal(fatal.n, 1);
	assert_int_equal(fatal.code, 75);
	assert_string_equal(fatal.last, "");
	assert_int_equal(relay_submit(r, &ev), -1);
	relay_free(r);
	event_base_free(base);
	close(fds[1]);
}

/* A pipe on stdout is widened so that a reply's lines (~600 KB for a
 * thousand events) go in one write; anything else is left alone. */
static void
test_stdout_sink_widens_a_pipe(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	int before = fcntl(fds[1], F_GETPIPE_SZ);
	struct event_base *base = event_base_new();
	struct sink *sink = sink_stdout_new(base, fds[1]);
	assert_non_null(sink);
	int after = fcntl(fds[1], F_GETPIPE_SZ);
	/* The system may cap it (fs.pipe-max-size); it never shrinks. */
	FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
	long max = 0;
	if (f != NULL) {
		if (fscanf(f, "%ld", &max) != 1)
			max = 0;
		fclose(f);
	}
	if (max >= 1024 * 1024)
		assert_true(after >= 1024 * 1024);
	assert_true(after >= before);
	sink_free(sink);
	/* A regular file is not a pipe: nothing to widen, no error. */
	char path[] = "/tmp/sfrelay-stdout-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	sink = sink_stdout_new(base, fd);
	assert_non_null(sink);
	sink_free(sink);
	close(fd);
	unlink(path);
	event_base_free(base);
	close(fds[0]);
	close(fds[1]);
}

int
main(void)
{
	/* A write to a closed pipe must fail with EPIPE, as in the relay. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flow_control_and_acks),
		cmocka_unit_test(test_split_event_moves_position_at_last_part),
		cmocka_unit_test(test_stdout_sink_writes_queue_lines),
		cmocka_unit_test(test_stdout_sink_closed_pipe),
		cmocka_unit_test(test_stdout_sink_widens_a_pipe),
	};
	return cmocka_run_group_tests_name("sinks_relay", tests, NULL, NULL);
}
