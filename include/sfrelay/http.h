#ifndef SFRELAY_HTTP_H
#define SFRELAY_HTTP_H

#include <stddef.h>

struct event_base;

/*
 * Asynchronous HTTP on the event loop: one libcurl multi handle driven by
 * libevent through curl's multi-socket API (the pattern of curl's
 * hiperfifo.c). Every request of the process (token, CometD long poll,
 * REST, sink uploads) goes through one struct http, so they share
 * connections, TLS sessions and one cookie jar (CometD needs its
 * BAYEUX_BROWSER and routing cookies sent back).
 */

struct http;
struct http_request;

struct http_opts {
	const char *ca_file;      /* CA bundle; NULL = the system store */
	long timeout_ms;          /* default whole-request timeout */
	long connect_timeout_ms;  /* TCP+TLS set-up; 0 = 10 s */
	size_t max_body;          /* bigger responses fail; 0 = 64 MiB */
};

/* What a completed request produced. Borrowed: valid only during the
 * completion callback. */
struct http_response {
	long status;        /* HTTP status; 0 when no response arrived */
	int transport_ok;   /* 1 when the exchange completed (any status) */
	const char *error;  /* transport error text when !transport_ok */
	const char *body;   /* NUL-terminated (body_len excludes the NUL) */
	size_t body_len;
	const char *limit_info; /* Sforce-Limit-Info header, or NULL */
	int timed_out;      /* the request's time limit ended it */
};

/*
 * Called exactly once per submitted request, from the event loop (never
 * from inside http_submit), unless the request is cancelled or the http
 * is freed first. The callback may submit and cancel other requests; the
 * request it reports on is freed when it returns.
 */
typedef void http_done_fn(void *arg, const struct http_response *resp);

/* Returns an owned http bound to base (borrowed; must outlive it), or
 * NULL with a message in err. */
struct http *http_new(struct event_base *base, const struct http_opts *opts,
		      char *err, size_t errlen);
/* Cancels every pending request without calling callbacks; NULL is a
 * no-op. Must not be called from a completion callback. */
void http_free(struct http *http);

/* A new request (owned by the caller until submitted). method: "GET",
 * "POST". Returns NULL on allocation failure. */
struct http_request *http_request_new(const char *method, const char *url);
/* Adds a header line "Name: value" (copied). Returns 0 or -1. */
int http_request_header(struct http_request *req, const char *name,
			const char *value);
/* Sets the request body (copied). */
int http_request_body(struct http_request *req, const void *body, size_t len);
/*
 * Streams the response body to fn as it arrives instead of buffering it
 * (the completion's body is then empty): a multi-megabyte long-poll reply
 * is decoded chunk by chunk within a bounded buffer. status is the HTTP
 * status of the response the bytes belong to. fn runs from the event
 * loop, never from inside libcurl (so it may submit other requests), and
 * every byte has been handed to it before the completion callback runs.
 * Each call carries what arrived since the previous loop turn, in one
 * contiguous piece (data is borrowed for the call).
 * fn returns 0 to go on or -1 to stop: no more data is delivered and the
 * completion reports a transport error "aborted by the receiver". fn must
 * not cancel or free this request.
 */
typedef int http_data_fn(void *arg, long status, const char *data,
			 size_t len);
void http_request_on_data(struct http_request *req, http_data_fn *fn,
			  void *arg);
/*
 * For a streamed response (http_request_on_data): fn(arg, rest, len) runs
 * once when the whole response has arrived with HTTP status 200, before
 * the bytes still buffered (rest, len: the end of the body, borrowed for
 * the call; len may be 0) reach the data callback and before the
 * completion. The
 * connection is back in libcurl's pool by then, so fn may submit the
 * next request: it is started at once and goes out on that connection
 * while the receiver is still busy with this one. fn must not cancel or
 * free this request.
 */
typedef void http_complete_fn(void *arg, const char *rest, size_t len);
void http_request_on_complete(struct http_request *req, http_complete_fn *fn);
/*
 * libcurl silently sends a request again when a reused connection turns
 * out closed before any reply byte. For a long poll that hides a loss:
 * the server may have handed events to the first send. With this set, a
 * re-sent request fails instead (transport error "request re-sent after
 * a dropped connection") and none of the second reply is delivered.
 */
void http_request_no_resend(struct http_request *req);
/* Whole-request timeout for this request (long polls need more). */
void http_request_timeout(struct http_request *req, long timeout_ms);
/* Largest buffered response body for this request, instead of the
 * http's max_body (a reply known to be small need not be let grow to
 * tens of megabytes before it is refused). 0: the http's. No effect on
 * a streamed response (http_request_on_data), whose receiver bounds it. */
void http_request_max_body(struct http_request *req, size_t max_body);
/* Frees a request that was never submitted. NULL is a no-op. */
void http_request_free(struct http_request *req);

/*
 * Starts req; ownership passes to http. Returns 0, or -1 (req freed,
 * callback never called) when curl refuses it. The returned request
 * pointer stays valid as a handle for http_cancel() until the callback
 * has run.
 */
int http_submit(struct http *http, struct http_request *req, http_done_fn *cb,
		void *arg);

/* Aborts a submitted request; its callback will not run. */
void http_cancel(struct http *http, struct http_request *req);

#endif /* SFRELAY_HTTP_H */
