#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "sfrelay/log.h"

#include "hostile.h"

#define HOSTILE_CHUNK 65536u
#define HOSTILE_MAX_PARTS 8

struct part {
	struct evbuffer *text; /* NULL: fill */
	char fill;
	uint64_t n;
};

struct hostile_body {
	struct part parts[HOSTILE_MAX_PARTS];
	size_t nparts;
};

struct job {
	struct job *next;
	struct hostile_set *set;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	struct hostile_body *body;
	size_t cur;          /* part being sent */
	uint64_t sent;       /* bytes of the body so far */
	int64_t interval_ms; /* trickle: > 0 */
	struct event *timer; /* trickle ticks */
};

struct hostile_set {
	struct event_base *base;
	struct job *jobs;
};

struct hostile_set *
hostile_set_new(struct event_base *base)
{
	struct hostile_set *set = calloc(1, sizeof(*set));

	if (set != NULL)
		set->base = base;
	return set;
}

struct hostile_body *
hostile_body_new(void)
{
	return calloc(1, sizeof(struct hostile_body));
}

void
hostile_body_free(struct hostile_body *body)
{
	size_t i;

	if (body == NULL)
		return;
	for (i = 0; i < body->nparts; i++)
		if (body->parts[i].text != NULL)
			evbuffer_free(body->parts[i].text);
	free(body);
}

int
hostile_body_text(struct hostile_body *body, const char *text, size_t len)
{
	struct part *p;

	if (body->nparts == HOSTILE_MAX_PARTS)
		return -1;
	p = &body->parts[body->nparts];
	p->text = evbuffer_new();
	if (p->text == NULL)
		return -1;
	if (evbuffer_add(p->text, text, len) != 0) {
		evbuffer_free(p->text);
		p->text = NULL;
		return -1;
	}
	body->nparts++;
	return 0;
}

int
hostile_body_buffer(struct hostile_body *body, struct evbuffer *buf)
{
	struct part *p;

	if (body->nparts == HOSTILE_MAX_PARTS)
		return -1;
	p = &body->parts[body->nparts];
	p->text = evbuffer_new();
	if (p->text == NULL)
		return -1;
	if (evbuffer_add_buffer(p->text, buf) != 0) {
		evbuffer_free(p->text);
		p->text = NULL;
		return -1;
	}
	body->nparts++;
	return 0;
}

int
hostile_body_fill(struct hostile_body *body, char c, uint64_t n)
{
	struct part *p;

	if (body->nparts == HOSTILE_MAX_PARTS)
		return -1;
	p = &body->parts[body->nparts++];
	p->text = NULL;
	p->fill = c;
	p->n = n;
	return 0;
}

static void
job_free(struct job *j)
{
	struct job **pp;

	for (pp = &j->set->jobs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	}
	if (j->evcon != NULL)
		evhttp_connection_set_closecb(j->evcon, NULL, NULL);
	if (j->timer != NULL)
		event_free(j->timer);
	hostile_body_free(j->body);
	free(j);
}

void
hostile_set_free(struct hostile_set *set)
{
	if (set == NULL)
		return;
	while (set->jobs != NULL)
		job_free(set->jobs);
	free(set);
}

/* The client went away: evhttp detached the unfinished request from the
 * dying connection and leaves it to us. */
static void
job_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct job *j = arg;
	struct evhttp_request *req = j->req;
	char sent[32];

	(void)evcon;
	snprintf(sent, sizeof(sent), "%llu", (unsigned long long)j->sent);
	log_info("hostile reply cut off by the client", "bytes", sent, NULL);
	j->evcon = NULL;
	job_free(j);
	if (evhttp_request_get_connection(req) == NULL)
		evhttp_request_free(req);
}

static void job_write_cb(struct evhttp_connection *evcon, void *arg);

/* Fills chunk with the next bytes of the body; 0 bytes when done. */
static int
next_chunk(struct job *j, struct evbuffer *chunk)
{
	char block[4096];
	size_t room = HOSTILE_CHUNK;

	while (room > 0 && j->cur < j->body->nparts) {
		struct part *p = &j->body->parts[j->cur];

		if (p->text != NULL) {
			size_t n = evbuffer_get_length(p->text);

			if (n > room)
				n = room;
			if (evbuffer_remove_buffer(p->text, chunk, n) < 0)
				return -1;
			room -= n;
			j->sent += n;
			if (evbuffer_get_length(p->text) == 0)
				j->cur++;
			continue;
		}
		while (room > 0 && p->n > 0) {
			size_t n = room < sizeof(block) ? room : sizeof(block);

			if ((uint64_t)n > p->n)
				n = (size_t)p->n;
			memset(block, p->fill, n);
			if (evbuffer_add(chunk, block, n) != 0)
				return -1;
			room -= n;
			p->n -= n;
			j->sent += n;
		}
		if (p->n == 0)
			j->cur++;
	}
	return 0;
}

static void
trickle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	struct evbuffer *chunk = evbuffer_new();

	(void)fd;
	(void)what;
	if (chunk == NULL || evbuffer_add(chunk, " ", 1) != 0 ||
	    evhttp_request_get_connection(j->req) == NULL) {
		if (chunk != NULL)
			evbuffer_free(chunk);
		return;
	}
	j->sent++;
	evhttp_send_reply_chunk(j->req, chunk);
	evbuffer_free(chunk);
}

/* Sends the next chunk; called again once it left the socket. */
static void
job_pump(struct job *j)
{
	struct evbuffer *chunk = evbuffer_new();
	struct evhttp_request *req = j->req;

	if (chunk == NULL || next_chunk(j, chunk) != 0) {
		if (chunk != NULL)
			evbuffer_free(chunk);
		log_warn("hostile reply: out of memory", NULL);
		/* Ends the reply early; the client sees a short body. */
		job_free(j);
		evhttp_send_reply_end(req);
		return;
	}
	if (evbuffer_get_length(chunk) > 0) {
		evhttp_send_reply_chunk_with_cb(req, chunk, job_write_cb, j);
		evbuffer_free(chunk);
		return;
	}
	evbuffer_free(chunk);
	if (j->interval_ms > 0) {
		struct timeval tv;

		if (j->timer != NULL)
			return;
		j->timer =
		    event_new(j->set->base, -1, EV_PERSIST, trickle_cb, j);
		if (j->timer == NULL)
			return;
		tv.tv_sec = (time_t)(j->interval_ms / 1000);
		tv.tv_usec = (suseconds_t)((j->interval_ms % 1000) * 1000);
		event_add(j->timer, &tv);
		return;
	}
	job_free(j);
	evhttp_send_reply_end(req);
}

static void
job_write_cb(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	job_pump(arg);
}

void
hostile_send(struct hostile_set *set, struct evhttp_request *req, int code,
             const char *ctype, struct hostile_body *body, int64_t interval_ms)
{
	struct job *j = calloc(1, sizeof(*j));
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);

	if (j == NULL || evcon == NULL) {
		free(j);
		hostile_body_free(body);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	j->set = set;
	j->req = req;
	j->evcon = evcon;
	j->body = body;
	j->interval_ms = interval_ms;
	j->next = set->jobs;
	set->jobs = j;
	evhttp_connection_set_closecb(evcon, job_closed_cb, j);
	if (ctype != NULL)
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "Content-Type", ctype);
	/* No Content-Length: evhttp sends HTTP/1.1 chunked. */
	evhttp_send_reply_start(req, code, NULL);
	job_pump(j);
}
