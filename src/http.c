/*
 * libcurl multi-socket on libevent. Follows curl's hiperfifo.c: curl tells
 * us which sockets to watch (sock_cb) and when to time out (timer_cb); we
 * tell curl what happened (curl_multi_socket_action) and then collect the
 * finished transfers (check_multi_info). Nothing calls into the multi
 * handle from inside a libcurl callback.
 */
#include "sfrelay/http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "sfrelay/log.h"

#define HTTP_DEFAULT_MAX_BODY (64u * 1024u * 1024u)
#define HTTP_DEFAULT_CONNECT_MS 10000L
#define LIMIT_HEADER "sforce-limit-info:"
/* Salesforce's response headers are a few KiB; far more is refused
 * before libcurl's own, version-dependent limit (300 KB in 7.88). */
#define HTTP_MAX_HEADER_BYTES (64u * 1024u)
/* A response buffer is kept for the next request when no larger than
 * this: enough for what one socket read burst of a streamed long poll
 * brings (libcurl reads while the socket has data, up to ~1.6 MB), so
 * the connect loop reuses one buffer instead of allocating and freeing
 * a chain per 16 KiB of every response. Larger (REST) bodies are freed. */
#define HTTP_RETAIN_BYTES ((size_t)2 * 1024 * 1024)
/* First size of a response buffer. */
#define HTTP_BUF_MIN ((size_t)16 * 1024)

struct http_request {
	struct http *http;
	CURL *easy;
	struct curl_slist *headers;
	char *method;
	char *url;
	char *body;
	size_t body_len;
	long timeout_ms;
	size_t max_body; /* 0: the http's */
	/* The response bytes not yet handed over: the whole body, or for
	 * a streamed response what arrived since the last delivery. Flat,
	 * so a body needs no gathering and a delivery is one call; taken
	 * from http->spare when data first arrives. */
	char *buf;
	size_t buf_len;
	size_t buf_cap;
	char *limit_info;
	size_t header_bytes;
	int header_overflow;
	int overflow;
	int aborted;
	http_data_fn *on_data;
	void *data_arg;
	http_complete_fn *on_complete; /* with data_arg */
	struct event *data_ev; /* hands streamed bytes over outside curl */
	int no_resend;
	int sends; /* request headers sent, when no_resend */
	http_done_fn *cb;
	void *arg;
	struct http_request *prev, *next; /* http's list of running requests */
	char errbuf[CURL_ERROR_SIZE];
};

struct http {
	struct event_base *base;
	CURLM *multi;
	CURLSH *share;
	struct event *timer;
	struct http_request *running;
	char *ca_file;
	long timeout_ms;
	long connect_timeout_ms;
	size_t max_body;
	char *spare; /* a finished request's buffer, for the next one */
	size_t spare_cap;
};

/* What curl asked us to watch on one socket. */
struct http_sock {
	struct http *http;
	curl_socket_t fd;
	struct event *ev;
};

static void check_multi_info(struct http *http);

static void
set_err(char *err, size_t errlen, const char *msg)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", msg);
}

static void
on_socket_event(evutil_socket_t fd, short kind, void *arg)
{
	struct http *http = arg;
	int action = ((kind & EV_READ) ? CURL_CSELECT_IN : 0) |
		     ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running = 0;
	curl_multi_socket_action(http->multi, fd, action, &running);
	/* No evtimer_del when nothing runs: a completion callback may just
	 * have added a transfer whose timer curl armed. */
	check_multi_info(http);
}

static void
on_timer(evutil_socket_t fd, short kind, void *arg)
{
	(void)fd;
	(void)kind;
	struct http *http = arg;
	int running = 0;
	curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi_info(http);
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms our timer, never calls curl. */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	struct http *http = userp;
	if (timeout_ms < 0) {
		evtimer_del(http->timer);
		return 0;
	}
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	evtimer_add(http->timer, &tv);
	return 0;
}

static void
sock_free(struct http_sock *s)
{
	if (s == NULL)
		return;
	event_free(s->ev);
	free(s);
}

/* CURLMOPT_SOCKETFUNCTION: keeps one libevent event per curl socket. */
static int
sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	(void)easy;
	struct http *http = userp;
	struct http_sock *s = socketp;

	if (what == CURL_POLL_REMOVE) {
		sock_free(s);
		curl_multi_assign(http->multi, fd, NULL);
		return 0;
	}
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			return -1;
		s->http = http;
		s->fd = fd;
		curl_multi_assign(http->multi, fd, s);
	} else {
		event_free(s->ev);
		s->ev = NULL;
	}
	short kind = (short)(EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
			     ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
	s->ev = event_new(http->base, fd, kind, on_socket_event, http);
	if (s->ev == NULL)
		return -1;
	event_add(s->ev, NULL);
	return 0;
}

struct http *
http_new(struct event_base *base, const struct http_opts *opts, char *err,
	 size_t errlen)
{
	struct http *http = calloc(1, sizeof(*http));
	if (http == NULL) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	http->base = base;
	http->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
	http->connect_timeout_ms = opts->connect_timeout_ms > 0
					   ? opts->connect_timeout_ms
					   : HTTP_DEFAULT_CONNECT_MS;
	http->max_body = opts->max_body > 0 ? opts->max_body
					    : HTTP_DEFAULT_MAX_BODY;
	if (opts->ca_file != NULL && (http->ca_file = strdup(opts->ca_file)) ==
					     NULL)
		goto fail;
	http->multi = curl_multi_init();
	http->share = curl_share_init();
	http->timer = evtimer_new(base, on_timer, http);
	if (http->multi == NULL || http->share == NULL || http->timer == NULL)
		goto fail;
	/* One cookie jar for every request: CometD sessions are bound to
	 * their cookies. Single-threaded, so no share lock functions. */
	curl_share_setopt(http->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
	curl_share_setopt(http->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http);
	curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http);
	return http;
fail:
	set_err(err, errlen, "cannot initialise libcurl");
	http_free(http);
	return NULL;
}

static void
unlink_request(struct http *http, struct http_request *req)
{
	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		http->running = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	req->prev = req->next = NULL;
}

void
http_free(struct http *http)
{
	if (http == NULL)
		return;
	/* Order matters: easy handles, then the multi handle (the base is
	 * still alive for its socket events), then our timer. */
	while (http->running != NULL) {
		struct http_request *req = http->running;
		unlink_request(http, req);
		curl_multi_remove_handle(http->multi, req->easy);
		http_request_free(req);
	}
	if (http->multi != NULL)
		curl_multi_cleanup(http->multi);
	if (http->share != NULL)
		curl_share_cleanup(http->share);
	if (http->timer != NULL)
		event_free(http->timer);
	free(http->spare);
	free(http->ca_file);
	free(http);
}

struct http_request *
http_request_new(const char *method, const char *url)
{
	struct http_request *req = calloc(1, sizeof(*req));
	if (req == NULL)
		return NULL;
	req->method = strdup(method);
	req->url = strdup(url);
	if (req->method == NULL || req->url == NULL) {
		http_request_free(req);
		return NULL;
	}
	return req;
}

int
http_request_header(struct http_request *req, const char *name,
		    const char *value)
{
	size_t n = strlen(name) + strlen(value) + 3;
	char *line = malloc(n);
	if (line == NULL)
		return -1;
	snprintf(line, n, "%s: %s", name, value);
	struct curl_slist *l = curl_slist_append(req->headers, line);
	/* The line may hold a token: wipe our copy (curl keeps its own). */
	memset(line, 0, n);
	free(line);
	if (l == NULL)
		return -1;
	req->headers = l;
	return 0;
}

int
http_request_body(struct http_request *req, const void *body, size_t len)
{
	char *copy = malloc(len + 1);
	if (copy == NULL)
		return -1;
	memcpy(copy, body, len);
	copy[len] = '\0';
	free(req->body);
	req->body = copy;
	req->body_len = len;
	return 0;
}

void
http_request_on_data(struct http_request *req, http_data_fn *fn, void *arg)
{
	req->on_data = fn;
	req->data_arg = arg;
}

/*
 * Room for n more bytes and a NUL in req's buffer: the http's spare
 * buffer when req has none yet, else grown by doubling. Returns 0 or -1
 * (out of memory; the buffer is unchanged).
 */
static int
buf_reserve(struct http_request *req, size_t n)
{
	struct http *http = req->http;
	size_t need, cap;
	char *p;

	if (n > SIZE_MAX / 2 - req->buf_len)
		return -1;
	need = req->buf_len + n + 1;
	if (req->buf == NULL && http != NULL && http->spare != NULL) {
		req->buf = http->spare;
		req->buf_cap = http->spare_cap;
		http->spare = NULL;
		http->spare_cap = 0;
	}
	if (need <= req->buf_cap)
		return 0;
	cap = req->buf_cap > 0 ? req->buf_cap : HTTP_BUF_MIN;
	while (cap < need)
		cap *= 2;
	if ((p = realloc(req->buf, cap)) == NULL)
		return -1;
	req->buf = p;
	req->buf_cap = cap;
	return 0;
}

static int
buf_append(struct http_request *req, const char *data, size_t n)
{
	if (buf_reserve(req, n) != 0)
		return -1;
	memcpy(req->buf + req->buf_len, data, n);
	req->buf_len += n;
	return 0;
}

/* Hands the buffered bytes of a streamed response to its receiver, in
 * one call: they are contiguous. */
static void
deliver_data(struct http_request *req)
{
	long status = 0;
	if (req->buf_len == 0)
		return;
	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	if (!req->aborted && req->on_data(req->data_arg, status, req->buf,
					  req->buf_len) != 0)
		req->aborted = 1;
	req->buf_len = 0;
}

void
http_request_on_complete(struct http_request *req, http_complete_fn *fn)
{
	req->on_complete = fn;
}

static void
on_data_ready(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	deliver_data(arg);
}

void
http_request_timeout(struct http_request *req, long timeout_ms)
{
	req->timeout_ms = timeout_ms;
}

void
http_request_max_body(struct http_request *req, size_t max_body)
{
	req->max_body = max_body;
}

static size_t
max_body_of(const struct http_request *req)
{
	return req->max_body > 0 ? req->max_body : req->http->max_body;
}

void
http_request_free(struct http_request *req)
{
	if (req == NULL)
		return;
	if (req->easy != NULL)
		curl_easy_cleanup(req->easy);
	if (req->headers != NULL)
		curl_slist_free_all(req->headers);
	if (req->data_ev != NULL)
		event_free(req->data_ev);
	/* A whole body (a token reply, say) is wiped before its buffer
	 * outlives the request; a streamed one was handed over and
	 * emptied. The buffer goes back to the http for its next request:
	 * one is kept, and none over HTTP_RETAIN_BYTES. */
	if (req->buf != NULL)
		memset(req->buf, 0, req->buf_len);
	if (req->http != NULL && req->http->spare == NULL &&
	    req->buf_cap <= HTTP_RETAIN_BYTES) {
		req->http->spare = req->buf;
		req->http->spare_cap = req->buf_cap;
	} else {
		free(req->buf);
	}
	if (req->body != NULL) {
		memset(req->body, 0, req->body_len); /* may hold secrets */
		free(req->body);
	}
	free(req->method);
	free(req->url);
	free(req->limit_info);
	free(req);
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_request *req = userp;
	size_t n = size * nmemb;
	if (req->aborted && req->sends > 1)
		return 0;
	if (req->on_data != NULL) {
		/* Never call the receiver from inside libcurl: it may start
		 * other transfers. The bytes wait for the next loop turn
		 * (bounded by what one socket read brings). */
		if (req->aborted || buf_append(req, data, n) != 0)
			return 0;
		event_active(req->data_ev, EV_TIMEOUT, 0);
		return n;
	}
	if (n > max_body_of(req) - req->buf_len) {
		req->overflow = 1;
		return 0; /* makes curl fail the transfer with a write error */
	}
	if (buf_append(req, data, n) != 0)
		return 0;
	return n;
}

static size_t
header_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_request *req = userp;
	size_t n = size * nmemb;
	size_t hl = strlen(LIMIT_HEADER);
	req->header_bytes += n;
	if (req->header_bytes > HTTP_MAX_HEADER_BYTES) {
		req->header_overflow = 1;
		return 0; /* makes curl fail the transfer */
	}
	if (n > hl && strncasecmp(data, LIMIT_HEADER, hl) == 0) {
		const char *v = data + hl;
		size_t vn = n - hl;
		while (vn > 0 && (*v == ' ' || *v == '\t'))
			v++, vn--;
		while (vn > 0 && (v[vn - 1] == '\r' || v[vn - 1] == '\n' ||
				  v[vn - 1] == ' '))
			vn--;
		free(req->limit_info);
		req->limit_info = strndup(v, vn);
	}
	return n;
}

void
http_request_no_resend(struct http_request *req)
{
	req->no_resend = 1;
}

/* Debug hook, used only to notice a request's headers going out more
 * than once; it never logs (the headers hold the token). */
static int
debug_cb(CURL *easy, curl_infotype type, char *data, size_t size, void *userp)
{
	(void)easy;
	(void)data;
	(void)size;
	struct http_request *req = userp;
	/* The flag makes the next write callback fail the transfer. */
	if (type == CURLINFO_HEADER_OUT && ++req->sends > 1)
		req->aborted = 1;
	return 0;
}

static int
setup_easy(struct http *http, struct http_request *req)
{
	CURL *e = curl_easy_init();
	if (e == NULL)
		return -1;
	req->easy = e;
	curl_easy_setopt(e, CURLOPT_URL, req->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, req);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_SHARE, http->share);
	curl_easy_setopt(e, CURLOPT_COOKIEFILE, ""); /* enable the jar */
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_USERAGENT, "sfrelay/0.1");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, http->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
			 req->timeout_ms > 0 ? req->timeout_ms
					     : http->timeout_ms);
	if (http->ca_file != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, http->ca_file);
	if (strcmp(req->method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS,
				 req->body != NULL ? req->body : "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)req->body_len);
	}
	if (req->no_resend) {
		curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, debug_cb);
		curl_easy_setopt(e, CURLOPT_DEBUGDATA, req);
		curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
	}
	/* An empty Expect: saves a round trip on large POST bodies. */
	req->headers = curl_slist_append(req->headers, "Expect:");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers);
	return 0;
}

int
http_submit(struct http *http, struct http_request *req, http_done_fn *cb,
	    void *arg)
{
	req->http = http;
	req->cb = cb;
	req->arg = arg;
	if (req->on_data != NULL &&
	    (req->data_ev = event_new(http->base, -1, 0, on_data_ready, req)) ==
		    NULL) {
		http_request_free(req);
		return -1;
	}
	if (setup_easy(http, req) != 0 ||
	    curl_multi_add_handle(http->multi, req->easy) != CURLM_OK) {
		http_request_free(req);
		return -1;
	}
	req->next = http->running;
	if (req->next != NULL)
		req->next->prev = req;
	http->running = req;
	return 0;
}

void
http_cancel(struct http *http, struct http_request *req)
{
	if (req == NULL)
		return;
	unlink_request(http, req);
	curl_multi_remove_handle(http->multi, req->easy);
	http_request_free(req);
}

static void
finish(struct http *http, struct http_request *req, CURLcode code)
{
	struct http_response resp = {0};
	char msg[CURL_ERROR_SIZE + 128];
	int streamed = req->on_data != NULL && !(req->aborted && req->sends > 1);
	long status = 0;

	/* libcurl has put the connection back in its pool already: a
	 * request on_complete submits goes out on it. */
	if (streamed && code == CURLE_OK && !req->aborted &&
	    req->on_complete != NULL) {
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
		if (status == 200) {
			int running;
			req->on_complete(req->data_arg,
					 req->buf != NULL ? req->buf : "",
					 req->buf_len);
			/* A request submitted there would wait for the next
			 * loop turn, after this reply's bytes are handled:
			 * start it now, so it is on the wire meanwhile. What
			 * it completes is read by check_multi_info's loop. */
			curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT,
						 0, &running);
		}
	}
	/* Every streamed byte reaches the receiver before the completion. */
	if (streamed)
		deliver_data(req);
	if (req->aborted && code == CURLE_OK)
		code = CURLE_WRITE_ERROR;
	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &resp.status);
	resp.transport_ok = code == CURLE_OK;
	resp.timed_out = code == CURLE_OPERATION_TIMEDOUT;
	if (!resp.transport_ok) {
		if (req->overflow)
			snprintf(msg, sizeof(msg), "response body over %zu bytes",
				 max_body_of(req));
		else if (req->header_overflow)
			snprintf(msg, sizeof(msg),
				 "response headers over %u bytes",
				 HTTP_MAX_HEADER_BYTES);
		else if (code == CURLE_OPERATION_TIMEDOUT)
			snprintf(msg, sizeof(msg),
				 "no complete reply within the %ld ms time "
				 "limit (%s)",
				 req->timeout_ms > 0 ? req->timeout_ms
						     : http->timeout_ms,
				 req->errbuf[0] != '\0'
					 ? req->errbuf
					 : curl_easy_strerror(code));
		else if (req->aborted && req->sends > 1)
			snprintf(msg, sizeof(msg),
				 "request re-sent after a dropped connection");
		else if (req->aborted)
			snprintf(msg, sizeof(msg), "aborted by the receiver");
		else
			snprintf(msg, sizeof(msg), "%s",
				 req->errbuf[0] != '\0'
					 ? req->errbuf
					 : curl_easy_strerror(code));
		resp.error = msg;
	}
	/* Every append left room for the NUL text parsers want. */
	if (req->buf != NULL) {
		req->buf[req->buf_len] = '\0';
		resp.body = req->buf;
		resp.body_len = req->buf_len;
	} else {
		resp.body = "";
	}
	resp.limit_info = req->limit_info;

	unlink_request(http, req);
	curl_multi_remove_handle(http->multi, req->easy);
	if (req->cb != NULL)
		req->cb(req->arg, &resp);
	http_request_free(req);
}

static void
check_multi_info(struct http *http)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(http->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct http_request *req = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &req);
		finish(http, req, m->data.result);
	}
}
