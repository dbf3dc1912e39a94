/*
 * The Logplex HTTP input, modelled strictly: a request is accepted whole
 * (204) or refused whole (4xx), as Logplex does, and only what was
 * accepted is stored. Independent of the relay's framer on purpose: a
 * misreading of RFC 5424 or RFC 6587 cannot hide on both sides.
 */
#include "logs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "sfrelay/log.h"

#include "util.h"

#define LOGS_FRAME_MAX 10240
#define LOGS_KEEP_BATCHES 4096
#define LOGS_MAX_STORED (256u * 1024u * 1024u)
#define LOGS_CTYPE "application/logplex-1"

struct fault {
	int status;
	long count;
	long delay_ms;
};

struct pending_reply {
	struct logs *logs;
	struct evhttp_request *req;
	struct event *timer;
	int status;
	struct pending_reply *next;
};

struct logs {
	struct event_base *base;
	char *token;
	struct evbuffer *store; /* accepted messages, '\n' after each */
	unsigned long long posts, accepted, rejected, frames, faulted;
	unsigned long long batches[LOGS_KEEP_BATCHES];
	size_t nbatches;
	struct fault fault;
	struct pending_reply *pending;
};

struct logs *
logs_new(struct event_base *base, const char *token)
{
	struct logs *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->base = base;
	l->token = strdup(token != NULL ? token : LOGS_DEFAULT_TOKEN);
	l->store = evbuffer_new();
	if (l->token == NULL || l->store == NULL) {
		logs_free(l);
		return NULL;
	}
	return l;
}

void
logs_free(struct logs *l)
{
	if (l == NULL)
		return;
	/* Normally empty: evhttp_free (called first) closes the held
	 * connections, whose close callbacks unlink them. */
	while (l->pending != NULL) {
		struct pending_reply *p = l->pending;
		l->pending = p->next;
		event_free(p->timer);
		free(p);
	}
	if (l->store != NULL)
		evbuffer_free(l->store);
	free(l->token);
	free(l);
}

/* ---- checks ------------------------------------------------------------- */

static int
b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes standard base64 into out (NUL-terminated). Returns 0 or -1. */
static int
b64_decode(const char *s, char *out, size_t outlen)
{
	size_t n = strlen(s), o = 0;
	unsigned acc = 0;
	int bits = 0;

	if (n % 4 != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '=') {
			if (i + 2 < n || (i + 1 < n && s[i + 1] != '='))
				return -1;
			break;
		}
		int v = b64val((unsigned char)s[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o + 1 >= outlen)
				return -1;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[o] = '\0';
	return 0;
}

/* Basic auth whose password is the token (the user name is ignored,
 * as Logplex does: drains send "token"). */
static int
auth_ok(const struct logs *l, struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req),
	                                   "Authorization");
	char dec[512];

	if (h == NULL || strncasecmp(h, "Basic ", 6) != 0 ||
	    b64_decode(h + 6, dec, sizeof(dec)) != 0)
		return 0;
	const char *colon = strchr(dec, ':');
	return colon != NULL && strcmp(colon + 1, l->token) == 0;
}

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* n digits at p. */
static int
digits_at(const char *p, const char *end, int n)
{
	for (int i = 0; i < n; i++)
		if (p + i >= end || !is_digit(p[i]))
			return 0;
	return 1;
}

/* RFC 5424 TIMESTAMP: FULL-DATE "T" PARTIAL-TIME [.1*6DIGIT] TIME-OFFSET,
 * or "-". */
static int
timestamp_ok(const char *p, size_t n)
{
	const char *end = p + n, *q = p;

	if (n == 1 && p[0] == '-')
		return 1;
	if (!digits_at(q, end, 4) || q[4] != '-' || !digits_at(q + 5, end, 2) ||
	    q[7] != '-' || !digits_at(q + 8, end, 2) || q[10] != 'T' ||
	    !digits_at(q + 11, end, 2) || q[13] != ':' ||
	    !digits_at(q + 14, end, 2) || q[16] != ':' ||
	    !digits_at(q + 17, end, 2))
		return 0;
	q += 19;
	if (q < end && *q == '.') {
		int f = 0;
		for (q++; q < end && is_digit(*q); q++)
			f++;
		if (f < 1 || f > 6)
			return 0;
	}
	if (q < end && *q == 'Z')
		return q + 1 == end;
	if (q < end && (*q == '+' || *q == '-'))
		return end - q == 6 && digits_at(q + 1, end, 2) &&
		       q[3] == ':' && digits_at(q + 4, end, 2);
	return 0;
}

/* A header field: 1..max bytes of PRINTUSASCII, then a space. */
static const char *
field(const char *p, const char *end, size_t max)
{
	const char *s = p;

	while (p < end && *p != ' ') {
		if ((unsigned char)*p < 33 || (unsigned char)*p > 126)
			return NULL;
		p++;
	}
	if (p >= end || p == s || (size_t)(p - s) > max)
		return NULL;
	return p + 1;
}

/* One RFC 5424 message (the frame's content). Returns NULL when fine,
 * else what is wrong. */
static const char *
message_problem(const char *p, size_t n)
{
	const char *end = p + n, *q;
	int pri = 0, nd = 0;

	if (n == 0 || *p != '<')
		return "frame does not start with <PRI>";
	for (q = p + 1; q < end && is_digit(*q) && nd < 4; q++, nd++)
		pri = pri * 10 + (*q - '0');
	if (nd == 0 || nd > 3 || pri > 191 || (nd > 1 && p[1] == '0') ||
	    q >= end || *q != '>')
		return "bad PRI";
	q++;
	if (end - q < 2 || q[0] != '1' || q[1] != ' ')
		return "version is not 1";
	q += 2;
	const char *ts = q;
	if ((q = field(q, end, 64)) == NULL ||
	    !timestamp_ok(ts, (size_t)(q - 1 - ts)))
		return "bad TIMESTAMP";
	if ((q = field(q, end, 255)) == NULL)
		return "bad HOSTNAME";
	if ((q = field(q, end, 48)) == NULL)
		return "bad APP-NAME";
	if ((q = field(q, end, 128)) == NULL)
		return "bad PROCID";
	if ((q = field(q, end, 32)) == NULL)
		return "bad MSGID";
	if (q < end && *q == '-') {
		q++;
	} else if (q < end && *q == '[') {
		while (q < end && *q != ']')
			q++;
		if (q >= end)
			return "bad STRUCTURED-DATA";
		q++;
	} else {
		return "bad STRUCTURED-DATA";
	}
	if (q < end && *q != ' ')
		return "no space after STRUCTURED-DATA";
	return NULL;
}

/*
 * Walks the octet-counted frames of body. With store set, appends each
 * message to l->store. Returns the frame count, or -1 with why set.
 */
static long
walk_frames(struct logs *l, const char *b, size_t n, int store,
            char *why, size_t whylen)
{
	size_t i = 0;
	long count = 0;

	while (i < n) {
		size_t len = 0, d = 0;
		while (i < n && is_digit(b[i]) && d < 6) {
			len = len * 10 + (size_t)(b[i] - '0');
			i++;
			d++;
		}
		if (d == 0 || i >= n || b[i] != ' ' ||
		    (d > 1 && b[i - d] == '0')) {
			snprintf(why, whylen, "frame %ld: bad octet count",
			         count + 1);
			return -1;
		}
		i++;
		if (len > LOGS_FRAME_MAX) {
			snprintf(why, whylen,
			         "frame %ld: %zu bytes, over the %d-byte cap",
			         count + 1, len, LOGS_FRAME_MAX);
			return -1;
		}
		if (len > n - i) {
			snprintf(why, whylen,
			         "frame %ld: count %zu runs past the body",
			         count + 1, len);
			return -1;
		}
		const char *problem = message_problem(b + i, len);
		if (problem != NULL) {
			snprintf(why, whylen, "frame %ld: %s", count + 1,
			         problem);
			return -1;
		}
		if (store) {
			/* One message a line: a raw newline is shown as \n. */
			for (size_t k = 0; k < len; k++) {
				if (b[i + k] == '\n')
					evbuffer_add(l->store, "\\n", 2);
				else
					evbuffer_add(l->store, b + i + k, 1);
			}
			evbuffer_add(l->store, "\n", 1);
		}
		i += len;
		count++;
	}
	return count;
}

/* ---- replies ------------------------------------------------------------ */

static void
refuse(struct logs *l, struct evhttp_request *req, int code, const char *why)
{
	struct evbuffer *b = evbuffer_new();

	l->rejected++;
	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add_printf(b, "%s\n", why);
	util_reply(req, code, "text/plain", b, why);
	evbuffer_free(b);
}

static void
pending_unlink(struct pending_reply *p)
{
	struct pending_reply **pp;

	for (pp = &p->logs->pending; *pp != NULL; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	evhttp_connection_set_closecb(evhttp_request_get_connection(p->req),
	                              NULL, NULL);
	event_free(p->timer);
}

/* The client gave up (its timeout) before the delayed reply: evhttp
 * frees the request with the connection, so forget it. */
static void
on_client_gone(struct evhttp_connection *conn, void *arg)
{
	struct pending_reply *p = arg;

	(void)conn;
	pending_unlink(p);
	free(p);
}

static void
on_delayed(evutil_socket_t fd, short what, void *arg)
{
	struct pending_reply *p = arg;
	struct evhttp_request *req = p->req;
	int status = p->status;

	(void)fd;
	(void)what;
	pending_unlink(p);
	free(p);
	util_reply_text(req, status, "{\"error\":\"injected fault\"}",
	                "injected fault");
}

static void
inject(struct logs *l, struct evhttp_request *req)
{
	struct pending_reply *p;
	struct timeval tv;

	l->fault.count--;
	l->faulted++;
	if (l->fault.delay_ms <= 0) {
		util_reply_text(req, l->fault.status,
		                "{\"error\":\"injected fault\"}",
		                "injected fault");
		return;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	p->logs = l;
	p->req = req;
	p->status = l->fault.status;
	p->timer = evtimer_new(l->base, on_delayed, p);
	if (p->timer == NULL) {
		free(p);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	p->next = l->pending;
	l->pending = p;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req),
	                              on_client_gone, p);
	tv.tv_sec = l->fault.delay_ms / 1000;
	tv.tv_usec = (l->fault.delay_ms % 1000) * 1000;
	evtimer_add(p->timer, &tv);
}

static void
do_post(struct logs *l, struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const char *ctype = evhttp_find_header(h, "Content-Type");
	const char *cnt = evhttp_find_header(h, "Logplex-Msg-Count");
	char why[160];
	int64_t want = 0;

	l->posts++;
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		refuse(l, req, 405, "only POST");
		return;
	}
	if (!auth_ok(l, req)) {
		refuse(l, req, 401, "basic auth with the drain token required");
		return;
	}
	if (ctype == NULL || strcasecmp(ctype, LOGS_CTYPE) != 0) {
		refuse(l, req, 400, "Content-Type must be " LOGS_CTYPE);
		return;
	}
	if (l->fault.count > 0) {
		inject(l, req);
		return;
	}
	if (cnt == NULL || util_parse_i64(cnt, 1, 1000000, &want) != 0) {
		refuse(l, req, 400, "Logplex-Msg-Count missing or invalid");
		return;
	}
	size_t n = evbuffer_get_length(in);
	const char *body = (const char *)evbuffer_pullup(in, -1);
	if (n == 0) {
		refuse(l, req, 400, "empty body");
		return;
	}
	long got = walk_frames(l, body, n, 0, why, sizeof(why));
	if (got < 0) {
		refuse(l, req, 400, why);
		return;
	}
	if (got != want) {
		snprintf(why, sizeof(why),
		         "Logplex-Msg-Count says %lld, body has %ld frames",
		         (long long)want, got);
		refuse(l, req, 400, why);
		return;
	}
	if (evbuffer_get_length(l->store) + n > LOGS_MAX_STORED) {
		refuse(l, req, 413, "receiver full");
		return;
	}
	walk_frames(l, body, n, 1, why, sizeof(why));
	l->accepted++;
	l->frames += (unsigned long long)got;
	if (l->nbatches < LOGS_KEEP_BATCHES)
		l->batches[l->nbatches++] = (unsigned long long)got;
	util_reply(req, 204, NULL, NULL, NULL);
}

static void
do_fault(struct logs *l, struct evhttp_request *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *q = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	struct evkeyvalq params;
	int64_t status = 0, count = 1, delay = 0;
	const char *v;

	params.tqh_first = NULL;
	params.tqh_last = &params.tqh_first;
	if (q == NULL || evhttp_parse_query_str(q, &params) != 0) {
		util_reply_text(req, 400, "{\"error\":\"need status\"}",
		                "bad fault query");
		return;
	}
	if ((v = evhttp_find_header(&params, "status")) == NULL ||
	    util_parse_i64(v, 100, 599, &status) != 0 ||
	    ((v = evhttp_find_header(&params, "count")) != NULL &&
	     util_parse_i64(v, 0, 1000000, &count) != 0) ||
	    ((v = evhttp_find_header(&params, "delay")) != NULL &&
	     util_parse_i64(v, 0, 600000, &delay) != 0)) {
		evhttp_clear_headers(&params);
		util_reply_text(req, 400, "{\"error\":\"bad fault\"}",
		                "bad fault query");
		return;
	}
	evhttp_clear_headers(&params);
	l->fault.status = (int)status;
	l->fault.count = (long)count;
	l->fault.delay_ms = (long)delay;
	util_reply_text(req, 200, "{\"ok\":true}", NULL);
}

static void
do_stats(struct logs *l, struct evhttp_request *req)
{
	struct evbuffer *out = evbuffer_new();

	if (out == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add_printf(out,
	                    "{\"posts\":%llu,\"accepted\":%llu,"
	                    "\"rejected\":%llu,\"faulted\":%llu,"
	                    "\"frames\":%llu,\"batches\":[",
	                    l->posts, l->accepted, l->rejected, l->faulted,
	                    l->frames);
	for (size_t i = 0; i < l->nbatches; i++)
		evbuffer_add_printf(out, "%s%llu", i > 0 ? "," : "",
		                    l->batches[i]);
	evbuffer_add(out, "]}", 2);
	util_reply(req, 200, UTIL_JSON_UTF8, out, NULL);
	evbuffer_free(out);
}

int
logs_handle(struct logs *l, struct evhttp_request *req, const char *path)
{
	if (strcmp(path, "/logs") == 0) {
		do_post(l, req);
	} else if (strcmp(path, "/_mock/logs") == 0) {
		struct evbuffer *copy = evbuffer_new();
		if (copy == NULL) {
			evhttp_send_error(req, 500, NULL);
			return 1;
		}
		evbuffer_add_buffer_reference(copy, l->store);
		util_reply(req, 200, "text/plain; charset=utf-8", copy, NULL);
		evbuffer_free(copy);
	} else if (strcmp(path, "/_mock/logs/stats") == 0) {
		do_stats(l, req);
	} else if (strcmp(path, "/_mock/logs/fault") == 0) {
		do_fault(l, req);
	} else {
		return 0;
	}
	return 1;
}
