/*
 * The network sinks' shared bookkeeping (sink_net.h): back-off growth
 * and its reset on success, the retry timer (fires, re-arms from its own
 * callback, is cancelled by free), the down/up and reconnect reporting,
 * the ready/wake flag and the RFC 5424 identity. Then the two sinks on
 * it, against receivers in-process on the same event base: the syslog
 * sink backs off from connections that die young and counts its
 * reconnects; the Logplex sink fails a POST whose reply body is over its
 * 64 KiB cap and retries it without losing or repeating a line, while a
 * reply under the cap is an answer like any other. Each event-loop test
 * has a fresh base and a watchdog.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "harness.h"
#include "sfrelay/backoff.h"
#include "sfrelay/http.h"
#include "sfrelay/log.h"
#include "sfrelay/sink.h"
#include "sfrelay/sink_net.h"
#include "sfrelay/syslog_frame.h"

/* ---- a sink that records what sink_net reports ----------------------- */

struct rec {
	struct event_base *base;
	struct sink *sink;
	struct sink_net *net;
	int retries;        /* retry callbacks run */
	int retries_wanted; /* the loop ends after this many */
	int rearm;          /* the callback schedules one more failure */
	int writable;       /* sink_writable() calls */
	uint64_t acked;
	uint64_t ack_until; /* the loop ends once acked reaches it */
	int errors;
};

static int
rec_write(void *impl, uint64_t seq, const char *line, size_t len)
{
	(void)impl;
	(void)seq;
	(void)line;
	(void)len;
	return 0;
}

static int
rec_flush(void *impl)
{
	(void)impl;
	return 0;
}

static void
rec_free(void *impl)
{
	(void)impl;
}

static const struct sink_ops rec_ops = {
	.name = "rec",
	.write = rec_write,
	.flush = rec_flush,
	.free = rec_free,
};

static void
on_ack(void *arg, uint64_t upto)
{
	struct rec *r = arg;
	assert_true(upto > r->acked); /* cumulative, increasing */
	r->acked = upto;
	if (r->ack_until > 0 && upto >= r->ack_until)
		event_base_loopexit(r->base, NULL);
}

static void
on_error(void *arg, const char *msg)
{
	(void)msg;
	((struct rec *)arg)->errors++;
}

static void
on_writable(void *arg)
{
	((struct rec *)arg)->writable++;
}

static void
on_retry(void *arg)
{
	struct rec *r = arg;
	r->retries++;
	if (r->rearm) {
		r->rearm = 0;
		sink_net_failed(r->net);
	}
	if (r->retries >= r->retries_wanted)
		event_base_loopexit(r->base, NULL);
}

static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
	fail_msg("watchdog: the test did not finish in time");
}

static struct event *
watchdog(struct event_base *base, long sec)
{
	struct event *ev = evtimer_new(base, on_watchdog, base);
	struct timeval tv = {sec, 0};
	assert_non_null(ev);
	evtimer_add(ev, &tv);
	return ev;
}

/* Lines as the relay hands them over (they outlive the sinks). */
static const char *const lines[] = {
	"at=event id=/t:1 seq=first\n",
	"at=event id=/t:2 seq=second\n",
	"at=event id=/t:3 seq=third\n",
};

/* Occurrences of needle in a NUL-terminated text. */
static int
count_str(const char *text, const char *needle)
{
	int c = 0;
	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		c++;
	return c;
}

/* Occurrences of needle in what a receiver kept. */
static int
count_in(struct evbuffer *b, const char *needle)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	evbuffer_copyout(b, s, n);
	s[n] = '\0';
	int c = count_str(s, needle);
	free(s);
	return c;
}

/* Each of the lines above is in b exactly once. */
static void
assert_each_line_once(struct evbuffer *b)
{
	static const char *const marks[] = {"seq=first", "seq=second",
					    "seq=third"};
	for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
		int n = count_in(b, marks[i]);
		if (n != 1)
			fail_msg("%s arrived %d times", marks[i], n);
	}
}

/* Sends the sinks' log lines (stderr) to a file named into path. */
static int
capture_begin(char *path, size_t len)
{
	snprintf(path, len, "/tmp/test_sink_net.%d.err", (int)getpid());
	int saved = stderr_redirect(path);
	assert_true(saved >= 0);
	return saved;
}

/* Ends the capture; returns what was logged (malloc'd). */
static char *
capture_end(const char *path, int saved)
{
	assert_int_equal(stderr_restore(saved), 0);
	char *log = file_read(path, NULL);
	unlink(path);
	assert_non_null(log);
	return log;
}

/* A base, a recording sink and a sink_net reporting to it. */
static void
rec_open(struct rec *r, long min_ms, long max_ms, uint64_t seed)
{
	memset(r, 0, sizeof(*r));
	r->base = event_base_new();
	assert_non_null(r->base);
	r->sink = sink_new(&rec_ops, r);
	assert_non_null(r->sink);
	sink_set_callbacks(r->sink, on_ack, on_error, r);
	sink_set_writable_callback(r->sink, on_writable);
	struct sink_backoff b = {min_ms, max_ms, seed};
	r->net = sink_net_new(r->base, &b, on_retry, r);
	assert_non_null(r->net);
	sink_net_set_sink(r->net, r->sink);
}

static void
rec_close(struct rec *r)
{
	sink_net_free(r->net);
	sink_free(r->sink);
	event_base_free(r->base);
}

static long
ceiling(long min_ms, long max_ms, unsigned failures)
{
	long c = min_ms;
	for (unsigned i = 1; i < failures; i++)
		c = c * 2 < max_ms ? c * 2 : max_ms;
	return c;
}

/* ---- back-off --------------------------------------------------------- */

static void
test_backoff_grows_and_resets_on_success(void **state)
{
	(void)state;
	struct rec r;
	rec_open(&r, 100, 800, 42);
	/* The same draws as backoff_delay() from the same seed, one more
	 * failure each time, within [min/2, ceiling]. */
	uint64_t shadow = 42;
	for (unsigned n = 1; n <= 6; n++) {
		long d = sink_net_failed(r.net);
		assert_int_equal(sink_net_failures(r.net), n);
		assert_int_equal(d, backoff_delay(100, 800, n, &shadow));
		assert_true(d >= 50 && d <= ceiling(100, 800, n));
		assert_true(sink_net_retry_pending(r.net));
	}
	/* Success ends the run: reported once, and the next failure waits
	 * no longer than the first did. */
	assert_int_equal(sink_net_succeeded(r.net), 1);
	assert_int_equal(sink_net_failures(r.net), 0);
	assert_int_equal(sink_net_succeeded(r.net), 0);
	long d = sink_net_failed(r.net);
	assert_int_equal(sink_net_failures(r.net), 1);
	assert_int_equal(d, backoff_delay(100, 800, 1, &shadow));
	assert_true(d >= 50 && d <= 100);
	rec_close(&r);

	/* Over many seeds the ceiling visibly doubles: the first failure
	 * never waits over 100 ms, the fourth often waits over 400. */
	long first_max = 0, fourth_max = 0;
	for (uint64_t seed = 1; seed <= 64; seed++) {
		rec_open(&r, 100, 800, seed);
		long d1 = sink_net_failed(r.net);
		sink_net_failed(r.net);
		sink_net_failed(r.net);
		long d4 = sink_net_failed(r.net);
		first_max = d1 > first_max ? d1 : first_max;
		fourth_max = d4 > fourth_max ? d4 : fourth_max;
		rec_close(&r);
	}
	assert_true(first_max <= 100);
	assert_true(fourth_max > 400 && fourth_max <= 800);

	/* Unset limits: 1 s, and a maximum below the minimum is the
	 * minimum. */
	rec_open(&r, 0, 0, 7);
	for (int i = 0; i < 5; i++) {
		d = sink_net_failed(r.net);
		assert_true(d >= 500 && d <= 1000);
	}
	rec_close(&r);
	rec_open(&r, 300, 10, 7);
	for (int i = 0; i < 5; i++) {
		d = sink_net_failed(r.net);
		assert_true(d >= 150 && d <= 300);
	}
	rec_close(&r);
	sink_net_free(NULL);
}

/* ---- the retry timer -------------------------------------------------- */

static void
test_retry_fires_and_can_rearm(void **state)
{
	(void)state;
	struct rec r;
	rec_open(&r, 10, 20, 1);
	struct event *wd = watchdog(r.base, 5);
	sink_net_failed(r.net);
	r.rearm = 1; /* the first retry fails again, from its callback */
	r.retries_wanted = 2;
	event_base_dispatch(r.base);
	assert_int_equal(r.retries, 2);
	assert_int_equal(sink_net_failures(r.net), 2);
	assert_false(sink_net_retry_pending(r.net));

	/* A retry without a failure (a reconnect at once). */
	sink_net_retry_in(r.net, 1);
	assert_true(sink_net_retry_pending(r.net));
	r.retries_wanted = 3;
	event_base_dispatch(r.base);
	assert_int_equal(r.retries, 3);
	assert_int_equal(sink_net_failures(r.net), 2);
	event_free(wd);
	rec_close(&r);
}

static void
on_quiet(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopexit(arg, NULL);
}

static void
test_free_cancels_the_retry(void **state)
{
	(void)state;
	struct rec r;
	rec_open(&r, 10, 10, 3);
	sink_net_failed(r.net); /* due in 5..10 ms */
	assert_true(sink_net_retry_pending(r.net));
	sink_net_free(r.net);
	r.net = NULL;
	/* Well past the delay: had the timer stayed in the base, its
	 * callback would run (and touch freed memory). */
	struct event *quiet = evtimer_new(r.base, on_quiet, r.base);
	struct timeval tv = {0, 100 * 1000};
	evtimer_add(quiet, &tv);
	event_base_dispatch(r.base);
	assert_int_equal(r.retries, 0);
	event_free(quiet);
	rec_close(&r);
}

/* ---- down / up -------------------------------------------------------- */

static void
test_connections_report_reconnects_and_young_deaths(void **state)
{
	(void)state;
	struct rec r;
	rec_open(&r, 100, 800, 9);
	/* A connect that fails before any connection: a failure. */
	long d = sink_net_lost(r.net);
	assert_true(d >= 50 && d <= 100);
	assert_int_equal(sink_net_failures(r.net), 1);
	/* The first connection is not a reconnect. */
	sink_net_connected(r.net);
	assert_int_equal(sink_reconnects(r.sink), 0);
	/* It dies young: still failing, backing off further; connecting
	 * alone does not end the run. */
	d = sink_net_lost(r.net);
	assert_true(d > 0 && d <= 200);
	assert_int_equal(sink_net_failures(r.net), 2);
	sink_net_connected(r.net);
	assert_int_equal(sink_reconnects(r.sink), 1);
	assert_int_equal(sink_net_failures(r.net), 2);
	/* A connection that lived is a success: failures forgotten, and
	 * the next connect comes at once. */
	sleep_ms(SINK_NET_LIVED_MS + 50);
	assert_int_equal(sink_net_lost(r.net), 0);
	assert_int_equal(sink_net_failures(r.net), 0);
	assert_true(sink_net_retry_pending(r.net));
	sink_net_connected(r.net);
	assert_int_equal(sink_reconnects(r.sink), 2);
	/* Down again at once: the run starts over at the shortest delay. */
	d = sink_net_lost(r.net);
	assert_true(d >= 50 && d <= 100);
	assert_int_equal(sink_net_failures(r.net), 1);
	/* A lost connect while down (never up since) is no success even
	 * after a long wait. */
	sleep_ms(SINK_NET_LIVED_MS + 50);
	d = sink_net_lost(r.net);
	assert_true(d > 0);
	assert_int_equal(sink_net_failures(r.net), 2);
	assert_int_equal(sink_reconnects(r.sink), 2);
	assert_int_equal(r.errors, 0);
	rec_close(&r);
}

static void
test_ready_and_wake(void **state)
{
	(void)state;
	/* What ops->ready said and what wake-ups came, in order, with the
	 * relay's writable callbacks counted after each step. */
	enum { READY, WAKE };
	static const struct {
		int call, value, writable;
	} steps[] = {
		/* Ready all along: nobody waits, nobody is woken. */
		{READY, 1, 0},
		{WAKE, 1, 0},
		/* Told 0: a wake-up while still full does nothing, the first
		 * one when ready calls the relay back, once. */
		{READY, 0, 0},
		{WAKE, 0, 0},
		{WAKE, 1, 1},
		{WAKE, 1, 1},
		/* Several 0s make one wake-up. */
		{READY, 0, 1},
		{READY, 0, 1},
		{WAKE, 1, 2},
		{WAKE, 1, 2},
	};
	struct rec r;
	rec_open(&r, 100, 800, 5);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (steps[i].call == READY)
			assert_int_equal(sink_net_ready(r.net, steps[i].value),
					 steps[i].value);
		else
			sink_net_wake(r.net, steps[i].value);
		if (r.writable != steps[i].writable)
			fail_msg("step %zu: %d wake-ups", i, r.writable);
	}
	rec_close(&r);
}

/* ---- the RFC 5424 header -------------------------------------------- */

static void
test_ident_header_and_overhead(void **state)
{
	(void)state;
	struct sink_net_ident id;
	memset(&id, 0, sizeof(id));
	assert_int_equal(sink_net_ident_init(&id, NULL, NULL, NULL, 3, 5), 0);
	assert_string_equal(id.hdr.hostname, "-");
	assert_string_equal(id.hdr.app_name, "sfrelay");
	assert_string_equal(id.hdr.procid, "-");
	assert_int_equal(id.hdr.facility, 3);
	assert_int_equal(id.hdr.severity, 5);
	assert_null(id.hdr.msgid);
	sink_net_ident_clear(&id);
	assert_null(id.hostname);
	sink_net_ident_clear(&id); /* cleared twice: nothing to free */

	char host[] = "web.1";
	assert_int_equal(sink_net_ident_init(&id, host, "app", "42", 1, 6), 0);
	host[0] = 'X'; /* the ident keeps its own copy */
	char stamp[SYSLOG_TIMESTAMP_LEN + 1], msgid[SYSLOG_MSGID_MAX + 1];
	char before[SYSLOG_TIMESTAMP_LEN + 1], after[SYSLOG_TIMESTAMP_LEN + 1];
	const char *stats = "at=stats count#sfrelay.events=1\n";
	syslog_timestamp(before, sizeof(before), (int64_t)time(NULL), 0);
	struct syslog_header h =
		sink_net_ident_header(&id, stats, strlen(stats), stamp, msgid);
	syslog_timestamp(after, sizeof(after), (int64_t)time(NULL), 0);
	assert_string_equal(h.hostname, "web.1");
	assert_string_equal(h.app_name, "app");
	assert_string_equal(h.procid, "42");
	assert_int_equal(h.facility, 1);
	assert_int_equal(h.severity, 6);
	assert_ptr_equal(h.msgid, msgid);
	assert_string_equal(msgid, "stats");
	assert_null(id.hdr.msgid); /* the ident itself is unchanged */
	/* Now, in UTC, to the second (and the microseconds after it). */
	assert_int_equal(strlen(stamp), SYSLOG_TIMESTAMP_LEN);
	assert_true(strncmp(stamp, before, 19) >= 0 &&
		    strncmp(stamp, after, 19) <= 0);
	assert_int_equal(stamp[19], '.');
	assert_int_equal(stamp[26], 'Z');

	/* The overhead is what a line with the longest MSGID costs on top
	 * of its own bytes (plus the space before them). */
	char line[128];
	memset(line, 'm', sizeof(line));
	memcpy(line, "at=", 3);
	memcpy(line + 3 + SYSLOG_MSGID_MAX, " x=1", 5);
	size_t len = strlen(line);
	h = sink_net_ident_header(&id, line, len, stamp, msgid);
	assert_int_equal(strlen(msgid), SYSLOG_MSGID_MAX);
	size_t plain = sink_net_ident_overhead(&id, 0);
	size_t framed = syslog_frame_len(&h, stamp, line, len, 0);
	assert_true(framed == plain + len || framed == plain + len + 1);
	/* A shorter MSGID costs less; octet counting adds "N ". */
	h = sink_net_ident_header(&id, stats, strlen(stats), stamp, msgid);
	assert_true(syslog_frame_len(&h, stamp, stats, strlen(stats), 0) <
		    plain + strlen(stats));
	assert_true(sink_net_ident_overhead(&id, 1) >= plain + 2);
	sink_net_ident_clear(&id);
}

/* ---- the syslog sink's reconnects -------------------------------------- */

/* A receiver that drops its first `drop` connections at once (a
 * receiver dying young) and reads from the next one. */
struct receiver {
	struct rec r;
	struct evconnlistener *lst;
	struct bufferevent *kept;
	struct evbuffer *got;
	struct event *poll;
	struct sink *sink;
	int port;
	int accepts;
	int drop;
	int written;
};

static void
recv_read(struct bufferevent *bev, void *arg)
{
	struct receiver *rv = arg;
	evbuffer_add_buffer(rv->got, bufferevent_get_input(bev));
}


static void
recv_accept(struct evconnlistener *l, evutil_socket_t fd,
	    struct sockaddr *sa, int salen, void *arg)
{
	(void)l;
	(void)sa;
	(void)salen;
	struct receiver *rv = arg;
	rv->accepts++;
	if (rv->accepts <= rv->drop || rv->kept != NULL) {
		evutil_closesocket(fd);
		return;
	}
	rv->kept = bufferevent_socket_new(rv->r.base, fd,
					  BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(rv->kept);
	bufferevent_setcb(rv->kept, recv_read, NULL, NULL, rv);
	bufferevent_enable(rv->kept, EV_READ);
}

/* The relay's part: lines go only while the sink says it is ready.
 * Done once they were acknowledged and the receiver has the last. */
static void
recv_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct receiver *rv = arg;
	if (!rv->written && rv->kept != NULL && sink_ready(rv->sink)) {
		for (uint64_t i = 0; i < 3; i++)
			assert_int_equal(sink_write(rv->sink, i + 1, lines[i],
						    strlen(lines[i])),
					 0);
		rv->written = 1;
	}
	if (rv->r.acked == 3 && count_in(rv->got, "seq=third") == 1)
		event_base_loopexit(rv->r.base, NULL);
}

static void
test_syslog_young_connections_back_off(void **state)
{
	(void)state;
	struct receiver rv;
	memset(&rv, 0, sizeof(rv));
	rec_open(&rv.r, 10, 40, 13); /* the base and the callbacks */
	rv.drop = 2;
	rv.got = evbuffer_new();
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rv.lst = evconnlistener_new_bind(
		rv.r.base, recv_accept, &rv,
		LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
		(struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(rv.lst);
	struct sockaddr_in bound;
	ev_socklen_t blen = sizeof(bound);
	getsockname(evconnlistener_get_fd(rv.lst), (struct sockaddr *)&bound,
		    &blen);
	rv.port = ntohs(bound.sin_port);

	char url[64], err[256];
	snprintf(url, sizeof(url), "syslog://127.0.0.1:%d", rv.port);
	struct sink_syslog_opts o = {
		.url = url,
		.hostname = "host",
		.app_name = "app",
		.procid = "1",
		.facility = 1,
		.severity = 6,
		.backoff = {10, 40, 17},
	};
	char path[64];
	int saved = capture_begin(path, sizeof(path));
	rv.sink = sink_syslog_new(rv.r.base, &o, err, sizeof(err));
	assert_non_null(rv.sink);
	sink_set_callbacks(rv.sink, on_ack, on_error, &rv.r);
	sink_set_writable_callback(rv.sink, on_writable);
	rv.poll = event_new(rv.r.base, -1, EV_PERSIST, recv_poll, &rv);
	struct timeval tick = {0, 5 * 1000};
	evtimer_add(rv.poll, &tick);
	struct event *wd = watchdog(rv.r.base, 10);
	event_base_dispatch(rv.r.base);
	char *log = capture_end(path, saved);

	/* Two connections that died young, each retried after a back-off
	 * delay (never at once), then the one that stayed. */
	assert_int_equal(rv.accepts, 3);
	const char *up = "msg=\"syslog connected\"";
	int lost = 0, connected = 0;
	for (char *p = log; (p = strstr(p, "msg=\"syslog conne")) != NULL;
	     p++) {
		if (strncmp(p, up, strlen(up)) == 0) {
			connected++;
			continue;
		}
		char *d = strstr(p, "delay_ms=");
		assert_non_null(d);
		assert_true(atol(d + 9) >= 5);
		lost++;
	}
	assert_int_equal(lost, 2);
	/* Each connection after the first counts as a reconnect. */
	assert_true(connected >= 1);
	assert_int_equal(sink_reconnects(rv.sink), (uint64_t)connected - 1);
	/* Every line arrived once, acknowledged. */
	assert_int_equal(rv.r.acked, 3);
	assert_each_line_once(rv.got);
	assert_int_equal(rv.r.errors, 0);
	free(log);

	event_free(wd);
	event_free(rv.poll);
	sink_free(rv.sink);
	if (rv.kept != NULL)
		bufferevent_free(rv.kept);
	evconnlistener_free(rv.lst);
	evbuffer_free(rv.got);
	rec_close(&rv.r);
}

/* ---- the Logplex sink's reply cap -------------------------------------- */

#define TOKEN "t.sink-net-test-token"

struct input {
	struct rec r;
	struct evhttp *server;
	struct http *http;
	int port;
	int posts;
	int big_replies;     /* the first N POSTs get a 200 with big_size */
	size_t big_size;
	struct evbuffer *stored; /* bodies answered 204 */
	char stderr_path[64];
	int saved_stderr;
};

static void
serve(struct evhttp_request *req, void *arg)
{
	struct input *in = arg;
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	struct evbuffer *out = evbuffer_new();
	const char *count = evhttp_find_header(
		evhttp_request_get_input_headers(req), "Logplex-Msg-Count");
	assert_non_null(count);
	in->posts++;
	if (in->posts <= in->big_replies) {
		/* Not stored: the sink must send these lines again. */
		char *junk = malloc(in->big_size);
		memset(junk, 'x', in->big_size);
		evbuffer_add(out, junk, in->big_size);
		free(junk);
		evhttp_send_reply(req, 200, "OK", out);
	} else {
		evbuffer_add_buffer(in->stored, body);
		evhttp_send_reply(req, 204, "No Content", NULL);
	}
	evbuffer_free(out);
}

static struct sink *
input_open(struct input *in, int big_replies, size_t big_size)
{
	memset(in, 0, sizeof(*in));
	/* The base and the callbacks; the rec's own sink_net stays idle. */
	rec_open(&in->r, 10, 40, 11);
	in->big_replies = big_replies;
	in->big_size = big_size;
	in->stored = evbuffer_new();
	in->server = evhttp_new(in->r.base);
	struct evhttp_bound_socket *s =
		evhttp_bind_socket_with_handle(in->server, "127.0.0.1", 0);
	assert_non_null(s);
	struct sockaddr_storage ss;
	ev_socklen_t len = sizeof(ss);
	getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss,
		    &len);
	in->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	evhttp_set_gencb(in->server, serve, in);
	/* The http's own limit stays at its 64 MiB default: the cap under
	 * test is the sink's. */
	struct http_opts hopts = {.timeout_ms = 5000};
	char err[256], url[128];
	in->http = http_new(in->r.base, &hopts, err, sizeof(err));
	assert_non_null(in->http);
	snprintf(url, sizeof(url), "http://token:" TOKEN "@127.0.0.1:%d/logs",
		 in->port);
	struct sink_logplex_opts o = {
		.url = url,
		.hostname = "host",
		.app_name = "app",
		.procid = "1",
		.facility = 1,
		.severity = 6,
		.max_age_ms = 10,
		.backoff = {10, 40, 5},
	};
	struct sink *sink = sink_logplex_new(in->r.base, in->http, &o, err,
					     sizeof(err));
	if (sink == NULL)
		fail_msg("%s", err);
	sink_set_callbacks(sink, on_ack, on_error, &in->r);
	sink_set_writable_callback(sink, on_writable);
	/* The sink's warnings, to check what it said. */
	in->saved_stderr = capture_begin(in->stderr_path,
					 sizeof(in->stderr_path));
	return sink;
}

static void
input_close(struct input *in, struct sink *sink)
{
	sink_free(sink);
	http_free(in->http);
	evhttp_free(in->server);
	evbuffer_free(in->stored);
	rec_close(&in->r);
}


static void
write_lines(struct sink *sink)
{
	for (uint64_t i = 0; i < 3; i++)
		assert_int_equal(sink_write(sink, i + 1, lines[i],
					    strlen(lines[i])),
				 0);
	assert_int_equal(sink_flush(sink), 0);
}

/* Starts the input and the sink, writes the three lines and runs the
 * loop until they are acknowledged. Returns what the sink logged. */
static char *
deliver(struct input *in, struct sink **sink, int big_replies,
	size_t big_size)
{
	*sink = input_open(in, big_replies, big_size);
	struct event *wd = watchdog(in->r.base, 10);
	in->r.ack_until = 3;
	write_lines(*sink);
	event_base_dispatch(in->r.base);
	char *log = capture_end(in->stderr_path, in->saved_stderr);
	event_free(wd);
	assert_int_equal(in->r.acked, 3);
	assert_int_equal(in->r.errors, 0);
	assert_int_equal(sink_dropped_lines(*sink), 0);
	assert_null(strstr(log, TOKEN));
	assert_null(strstr(log, "dropped"));
	return log;
}

static void
test_logplex_reply_cap(void **state)
{
	(void)state;
	/* The first big_replies POSTs are answered 200 with big bytes of
	 * body and not stored; the next one 204, stored. */
	static const struct {
		int big_replies;
		size_t big;
		int posts;    /* POSTs until the lines are acknowledged */
		int failures; /* of them, failed for the size of the reply */
	} cases[] = {
		/* Twice 1 MiB: neither counts as accepted, the lines go
		 * again until the 204. */
		{2, 1024 * 1024, 3, 2},
		/* One byte over the cap is over it. */
		{1, 64 * 1024 + 1, 2, 1},
		/* Up to the cap, a reply body is odd but an answer: the
		 * 200 acknowledges the lines at once. */
		{1, 64 * 1024, 1, 0},
		{1, 60 * 1024, 1, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct input in;
		struct sink *sink;
		char *log = deliver(&in, &sink, cases[i].big_replies,
				    cases[i].big);
		int failed = count_str(log, "logplex post failed; retrying");
		if (in.posts != cases[i].posts || failed != cases[i].failures)
			fail_msg("case %zu: %d posts, %d failed", i, in.posts,
				 failed);
		if (cases[i].failures > 0) {
			char attempt[32];
			snprintf(attempt, sizeof(attempt), "attempt=%d",
				 cases[i].failures);
			assert_non_null(
				strstr(log, "response body over 65536 bytes"));
			assert_non_null(strstr(log, attempt));
			assert_non_null(
				strstr(log, "logplex input accepts lines again"));
			/* Retried, not lost, not repeated. */
			assert_each_line_once(in.stored);
		} else {
			assert_int_equal(evbuffer_get_length(in.stored), 0);
		}
		free(log);
		input_close(&in, sink);
	}
}

int
main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_grows_and_resets_on_success),
		cmocka_unit_test(test_retry_fires_and_can_rearm),
		cmocka_unit_test(test_free_cancels_the_retry),
		cmocka_unit_test(
			test_connections_report_reconnects_and_young_deaths),
		cmocka_unit_test(test_ready_and_wake),
		cmocka_unit_test(test_ident_header_and_overhead),
		cmocka_unit_test(test_syslog_young_connections_back_off),
		cmocka_unit_test(test_logplex_reply_cap),
	};
	int rc = cmocka_run_group_tests_name("sink_net", tests, NULL, NULL);
	log_shutdown();
	curl_global_cleanup();
	return rc;
}
