/*
 * The curl-multi-on-libevent glue against an in-process evhttp server on
 * the same event base: statuses, bodies, headers, cookies, limits,
 * timeouts, streaming, cancellation, a request started from a completion
 * callback, and bodies that stay exact while the response buffer is
 * reused from request to request. Each test has a fresh base and a
 * watchdog.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "sfrelay/http.h"

struct env {
	struct event_base *base;
	struct evhttp *server;
	struct event *watchdog;
	struct http *http;
	int port;
	int done;
	long status;
	int transport_ok;
	char body[256];
	size_t body_len;
	char error[256];
	char limit[128];
	char cookie_seen[256];
	size_t streamed;
	int chunks;
	struct evhttp_request *held; /* a request the server never answers */
	int pattern_ok;   /* bodies checked against pattern_at() */
	int pattern_bad;
	int want_done;    /* loop exits after this many completions */
	/* http_request_on_complete: calls, and what had happened by then. */
	int completes;
	int done_at_complete;
	struct evhttp_connection *conns[4]; /* of the requests served */
	int served;
	int next_done; /* the request submitted from on_complete */
	char next_body[64];
};

/* Byte k of a /pattern/<n> body: not periodic in any power of two, so a
 * slice delivered twice, skipped or taken from a stale buffer shows. */
static char
pattern_at(size_t k)
{
	return (char)('a' + (k * 7 + k / 251) % 26);
}

static int
pattern_matches(const char *data, size_t off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (data[i] != pattern_at(off + i))
			return 0;
	return 1;
}

static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct env *e = arg;
	event_base_loopbreak(e->base);
	fail_msg("watchdog: the test did not finish in time");
}

static void
serve(struct evhttp_request *req, void *arg)
{
	struct env *e = arg;
	const char *uri = evhttp_request_get_uri(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct evbuffer *buf = evbuffer_new();
	const char *cookie =
		evhttp_find_header(evhttp_request_get_input_headers(req),
				   "Cookie");
	if (cookie != NULL)
		snprintf(e->cookie_seen, sizeof(e->cookie_seen), "%s", cookie);
	if (e->served < 4)
		e->conns[e->served] = evhttp_request_get_connection(req);
	e->served++;
	if (strcmp(uri, "/ok") == 0) {
		evhttp_add_header(out, "Sforce-Limit-Info", "api-usage=25/15000");
		evbuffer_add_printf(buf, "hello");
		evhttp_send_reply(req, 200, "OK", buf);
	} else if (strcmp(uri, "/echo") == 0) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		evbuffer_add_buffer(buf, in);
		evhttp_send_reply(req, 200, "OK", buf);
	} else if (strcmp(uri, "/fail") == 0) {
		evbuffer_add_printf(buf, "{\"error\":\"boom\"}");
		evhttp_send_reply(req, 503, "Unavailable", buf);
	} else if (strcmp(uri, "/cookie") == 0) {
		evhttp_add_header(out, "Set-Cookie", "BAYEUX_BROWSER=abc; Path=/");
		evhttp_send_reply(req, 200, "OK", buf);
	} else if (strcmp(uri, "/big") == 0) {
		char chunk[1024];
		memset(chunk, 'x', sizeof(chunk));
		for (int i = 0; i < 1024; i++) /* 1 MiB */
			evbuffer_add(buf, chunk, sizeof(chunk));
		evhttp_send_reply(req, 200, "OK", buf);
	} else if (strncmp(uri, "/pattern/", 9) == 0) {
		size_t n = strtoul(uri + 9, NULL, 10);
		char chunk[4096];
		for (size_t off = 0; off < n; off += sizeof(chunk)) {
			size_t k = n - off < sizeof(chunk) ? n - off
							   : sizeof(chunk);
			for (size_t i = 0; i < k; i++)
				chunk[i] = pattern_at(off + i);
			evbuffer_add(buf, chunk, k);
		}
		evhttp_send_reply(req, 200, "OK", buf);
	} else if (strcmp(uri, "/hang") == 0) {
		e->held = req; /* answered at teardown, never in time */
	} else {
		evhttp_send_reply(req, 404, "Not Found", buf);
	}
	evbuffer_free(buf);
}

static int
setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	e->base = event_base_new();
	e->server = evhttp_new(e->base);
	struct evhttp_bound_socket *s =
		evhttp_bind_socket_with_handle(e->server, "127.0.0.1", 0);
	assert_non_null(s);
	struct sockaddr_storage ss;
	ev_socklen_t len = sizeof(ss);
	getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss,
		    &len);
	e->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	evhttp_set_gencb(e->server, serve, e);
	struct http_opts opts = {.timeout_ms = 5000, .max_body = 64 * 1024};
	char err[128];
	e->http = http_new(e->base, &opts, err, sizeof(err));
	assert_non_null(e->http);
	e->watchdog = evtimer_new(e->base, on_watchdog, e);
	struct timeval tv = {10, 0};
	evtimer_add(e->watchdog, &tv);
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	struct env *e = *state;
	http_free(e->http);
	if (e->held != NULL)
		evhttp_send_reply(e->held, 200, "OK", NULL);
	evhttp_free(e->server);
	event_free(e->watchdog);
	event_base_free(e->base);
	free(e);
	return 0;
}

static void
on_done(void *arg, const struct http_response *r)
{
	struct env *e = arg;
	e->done++;
	e->status = r->status;
	e->transport_ok = r->transport_ok;
	snprintf(e->body, sizeof(e->body), "%s", r->body);
	e->body_len = r->body_len;
	snprintf(e->error, sizeof(e->error), "%s",
		 r->error != NULL ? r->error : "");
	snprintf(e->limit, sizeof(e->limit), "%s",
		 r->limit_info != NULL ? r->limit_info : "");
	event_base_loopexit(e->base, NULL);
}

static void
get(struct env *e, const char *path, http_done_fn *cb)
{
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", e->port, path);
	struct http_request *req = http_request_new("GET", url);
	assert_non_null(req);
	assert_int_equal(http_submit(e->http, req, cb, e), 0);
}

static void
test_ok_body_and_limit_header(void **state)
{
	struct env *e = *state;
	get(e, "/ok", on_done);
	event_base_dispatch(e->base);
	assert_int_equal(e->done, 1);
	assert_int_equal(e->status, 200);
	assert_true(e->transport_ok);
	assert_string_equal(e->body, "hello");
	assert_int_equal(e->body_len, 5);
	assert_string_equal(e->limit, "api-usage=25/15000");
}

static void
test_post_body_and_headers(void **state)
{
	struct env *e = *state;
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo", e->port);
	struct http_request *req = http_request_new("POST", url);
	assert_int_equal(http_request_header(req, "Content-Type",
					     "application/json"),
			 0);
	assert_int_equal(http_request_body(req, "[{\"a\":1}]", 9), 0);
	assert_int_equal(http_submit(e->http, req, on_done, e), 0);
	event_base_dispatch(e->base);
	assert_int_equal(e->status, 200);
	assert_string_equal(e->body, "[{\"a\":1}]");
}

static void
test_error_status_is_not_transport_error(void **state)
{
	struct env *e = *state;
	get(e, "/fail", on_done);
	event_base_dispatch(e->base);
	assert_int_equal(e->status, 503);
	assert_true(e->transport_ok);
	assert_string_equal(e->body, "{\"error\":\"boom\"}");
}

static void
test_refused_connection(void **state)
{
	struct env *e = *state;
	/* Port 1 on loopback: nothing listens there. */
	struct http_request *req =
		http_request_new("GET", "http://127.0.0.1:1/x");
	assert_int_equal(http_submit(e->http, req, on_done, e), 0);
	event_base_dispatch(e->base);
	assert_int_equal(e->done, 1);
	assert_false(e->transport_ok);
	assert_int_equal(e->status, 0);
	assert_true(strlen(e->error) > 0);
}

static void
test_body_over_limit_fails(void **state)
{
	struct env *e = *state;
	get(e, "/big", on_done);
	event_base_dispatch(e->base);
	assert_false(e->transport_ok);
	assert_non_null(strstr(e->error, "response body over"));
}

static int
count_chunks(void *arg, long status, const char *data, size_t len)
{
	(void)data;
	struct env *e = arg;
	assert_int_equal(status, 200);
	e->streamed += len;
	e->chunks++;
	return 0;
}

/* count_chunks for a reply of any status. */
static int
count_chunks_any(void *arg, long status, const char *data, size_t len)
{
	(void)data;
	(void)status;
	struct env *e = arg;
	e->streamed += len;
	e->chunks++;
	return 0;
}

static void
test_streaming_has_no_body_limit(void **state)
{
	struct env *e = *state;
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/big", e->port);
	struct http_request *req = http_request_new("GET", url);
	http_request_on_data(req, count_chunks, e);
	assert_int_equal(http_submit(e->http, req, on_done, e), 0);
	event_base_dispatch(e->base);
	assert_true(e->transport_ok);
	assert_int_equal(e->streamed, 1024 * 1024);
	assert_true(e->chunks > 1);
	assert_int_equal(e->body_len, 0);
}

static int
refuse_data(void *arg, long status, const char *data, size_t len)
{
	(void)arg;
	(void)status;
	(void)data;
	(void)len;
	return -1;
}

static void
test_streaming_receiver_can_abort(void **state)
{
	struct env *e = *state;
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/big", e->port);
	struct http_request *req = http_request_new("GET", url);
	http_request_on_data(req, refuse_data, e);
	assert_int_equal(http_submit(e->http, req, on_done, e), 0);
	event_base_dispatch(e->base);
	assert_false(e->transport_ok);
	assert_string_equal(e->error, "aborted by the receiver");
}

static void
on_next_done(void *arg, const struct http_response *r)
{
	struct env *e = arg;
	e->next_done++;
	assert_int_equal(r->status, 200);
	snprintf(e->next_body, sizeof(e->next_body), "%s", r->body);
	if (e->done > 0)
		event_base_loopexit(e->base, NULL);
}

static void
on_first_done(void *arg, const struct http_response *r)
{
	struct env *e = arg;
	e->done++;
	e->transport_ok = r->transport_ok;
	e->status = r->status;
	if (e->next_done > 0 || e->completes == 0)
		event_base_loopexit(e->base, NULL);
}

/* The hook of http_request_on_complete(): submits the next request. */
static void
complete_then_next(void *arg, const char *rest, size_t len)
{
	struct env *e = arg;
	/* rest is the part of the body not yet handed over: its bytes
	 * follow the ones streamed so far. */
	assert_true(e->streamed + len == 1024 * 1024);
	assert_true(len == 0 || rest[len - 1] == 'x');
	e->completes++;
	e->done_at_complete = e->done;
	get(e, "/ok", on_next_done);
}

/*
 * The completion hook runs once, after the whole body arrived and before
 * the completion; a request it submits goes out on the same connection
 * (the first one is back in the pool by then) and completes normally;
 * every streamed byte is still delivered.
 */
static void
test_complete_hook_starts_next_request(void **state)
{
	struct env *e = *state;
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/big", e->port);
	struct http_request *req = http_request_new("GET", url);
	http_request_on_data(req, count_chunks, e);
	http_request_on_complete(req, complete_then_next);
	assert_int_equal(http_submit(e->http, req, on_first_done, e), 0);
	event_base_dispatch(e->base);
	assert_int_equal(e->completes, 1);
	assert_int_equal(e->done_at_complete, 0);
	assert_int_equal(e->done, 1);
	assert_true(e->transport_ok);
	assert_int_equal(e->streamed, 1024 * 1024);
	assert_int_equal(e->next_done, 1);
	assert_string_equal(e->next_body, "hello");
	assert_int_equal(e->served, 2);
	assert_ptr_equal(e->conns[0], e->conns[1]);
}

/* No hook for a reply that is not a 200, nor for one the receiver
 * aborted: there is nothing to go on from. */
static void
test_complete_hook_only_for_whole_200(void **state)
{
	struct env *e = *state;
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/fail", e->port);
	struct http_request *req = http_request_new("GET", url);
	http_request_on_data(req, count_chunks_any, e);
	http_request_on_complete(req, complete_then_next);
	assert_int_equal(http_submit(e->http, req, on_first_done, e), 0);
	event_base_dispatch(e->base);
	assert_int_equal(e->done, 1);
	assert_int_equal(e->status, 503);
	assert_int_equal(e->completes, 0);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/big", e->port);
	req = http_request_new("GET", url);
	http_request_on_data(req, refuse_data, e);
	http_request_on_complete(req, complete_then_next);
	assert_int_equal(http_submit(e->http, req, on_first_done, e), 0);
	event_base_dispatch(e->base);
	assert_int_equal(e->done, 2);
	assert_false(e->transport_ok);
	assert_int_equal(e->completes, 0);
	assert_int_equal(e->next_done, 0);
}

static void
test_timeout(void **state)
{
	struct env *e = *state;
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/hang", e->port);
	struct http_request *req = http_request_new("GET", url);
	http_request_timeout(req, 200);
	assert_int_equal(http_submit(e->http, req, on_done, e), 0);
	event_base_dispatch(e->base);
	assert_int_equal(e->done, 1);
	assert_false(e->transport_ok);
}

static void
on_cookie_then_ok(void *arg, const struct http_response *r)
{
	struct env *e = arg;
	assert_int_equal(r->status, 200);
	/* A second request from inside a completion: it must start (the
	 * glue once dropped curl's timer here) and carry the cookie. */
	get(e, "/ok", on_done);
}

static void
test_cookie_jar_and_request_from_callback(void **state)
{
	struct env *e = *state;
	get(e, "/cookie", on_cookie_then_ok);
	event_base_dispatch(e->base);
	assert_int_equal(e->done, 1);
	assert_int_equal(e->status, 200);
	assert_string_equal(e->cookie_seen, "BAYEUX_BROWSER=abc");
}

static void
on_never(void *arg, const struct http_response *r)
{
	(void)arg;
	(void)r;
	fail_msg("a cancelled request's callback ran");
}

static void
on_quit(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopexit(arg, NULL);
}

/* A /pattern/<n> body, n in the request's URL, must come back exact and
 * NUL-terminated. */
static void
on_pattern(void *arg, const struct http_response *r)
{
	struct env *e = arg;
	e->done++;
	e->body_len = r->body_len;
	if (r->transport_ok && r->status == 200 && r->body[r->body_len] == '\0' &&
	    pattern_matches(r->body, 0, r->body_len))
		e->pattern_ok++;
	else
		e->pattern_bad++;
	if (e->want_done == 0 || e->done == e->want_done)
		event_base_loopexit(e->base, NULL);
}

static int
check_pattern_chunk(void *arg, long status, const char *data, size_t len)
{
	struct env *e = arg;
	assert_int_equal(status, 200);
	if (!pattern_matches(data, e->streamed, len))
		e->pattern_bad++;
	e->streamed += len;
	e->chunks++;
	return 0;
}

static void
get_pattern(struct env *e, size_t n, int streamed, size_t max_body)
{
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/pattern/%zu", e->port,
		 n);
	struct http_request *req = http_request_new("GET", url);
	assert_non_null(req);
	if (streamed)
		http_request_on_data(req, check_pattern_chunk, e);
	if (max_body > 0)
		http_request_max_body(req, max_body);
	assert_int_equal(http_submit(e->http, req,
				     streamed ? on_done : on_pattern, e),
			 0);
}

/*
 * One http, one request after the other, the response buffer handed on
 * from each to the next: long bodies, short ones after them (no stale
 * bytes, the right length, the NUL in place), streamed ones whose every
 * byte is checked in order, and a body too large to be kept for reuse.
 */
static void
test_bodies_exact_across_requests(void **state)
{
	struct env *e = *state;
	const size_t mib = 1024 * 1024;
	const struct {
		size_t n;
		int streamed;
	} seq[] = {
		{300000, 0}, {5, 0},       {1 * mib, 1}, {17, 0},
		{0, 0},      {3 * mib, 0}, {2 * mib + 1, 1}, {70000, 0},
		{1, 1},      {1000, 0},
	};
	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		e->done = 0;
		e->pattern_ok = e->pattern_bad = 0;
		e->streamed = 0;
		e->chunks = 0;
		get_pattern(e, seq[i].n, seq[i].streamed, 4 * mib);
		event_base_dispatch(e->base);
		assert_int_equal(e->done, 1);
		assert_int_equal(e->pattern_bad, 0);
		if (seq[i].streamed) {
			assert_true(e->transport_ok);
			assert_int_equal(e->streamed, seq[i].n);
			assert_int_equal(e->body_len, 0);
		} else {
			assert_int_equal(e->pattern_ok, 1);
			assert_int_equal(e->body_len, seq[i].n);
		}
	}
	/* The "hello" of /ok after all that, through on_done's copy. */
	get(e, "/ok", on_done);
	event_base_dispatch(e->base);
	assert_string_equal(e->body, "hello");
	assert_int_equal(e->body_len, 5);
}

/* Requests in flight together each keep a buffer of their own. */
static void
test_concurrent_bodies_stay_apart(void **state)
{
	struct env *e = *state;
	const size_t sizes[] = {200000, 3, 65536, 9000, 1};
	e->want_done = (int)(sizeof(sizes) / sizeof(sizes[0]));
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		get_pattern(e, sizes[i], 0, 1024 * 1024);
	event_base_dispatch(e->base);
	assert_int_equal(e->done, e->want_done);
	assert_int_equal(e->pattern_ok, e->want_done);
	assert_int_equal(e->pattern_bad, 0);
}

/* Over the limit after a long body filled the reused buffer: still
 * refused, by the same rule. */
static void
test_body_limit_with_reused_buffer(void **state)
{
	struct env *e = *state;
	get_pattern(e, 200000, 0, 1024 * 1024);
	event_base_dispatch(e->base);
	assert_int_equal(e->pattern_ok, 1);
	e->done = 0;
	get_pattern(e, 64 * 1024 + 1, 0, 0); /* the http's 64 KiB */
	event_base_dispatch(e->base);
	assert_int_equal(e->done, 1);
	assert_int_equal(e->pattern_bad, 1);
	e->done = 0;
	e->pattern_ok = e->pattern_bad = 0;
	get_pattern(e, 64 * 1024, 0, 0); /* exactly the limit: fine */
	event_base_dispatch(e->base);
	assert_int_equal(e->pattern_ok, 1);
	assert_int_equal(e->body_len, 64 * 1024);
}

static void
test_cancel_runs_no_callback(void **state)
{
	struct env *e = *state;
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/hang", e->port);
	struct http_request *req = http_request_new("GET", url);
	assert_int_equal(http_submit(e->http, req, on_never, e), 0);
	struct event *quit = evtimer_new(e->base, on_quit, e->base);
	struct timeval tv = {0, 100000};
	evtimer_add(quit, &tv);
	event_base_dispatch(e->base); /* the request reaches the server */
	http_cancel(e->http, req);
	evtimer_add(quit, &tv);
	event_base_dispatch(e->base);
	event_free(quit);
}

int
main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ok_body_and_limit_header,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_body_and_headers,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_error_status_is_not_transport_error, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_refused_connection, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_body_over_limit_fails,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_streaming_has_no_body_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_streaming_receiver_can_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_complete_hook_starts_next_request, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_complete_hook_only_for_whole_200, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_cookie_jar_and_request_from_callback, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_cancel_runs_no_callback,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_bodies_exact_across_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_concurrent_bodies_stay_apart, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_body_limit_with_reused_buffer, setup, teardown),
	};
	int rc = cmocka_run_group_tests_name("http", tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
