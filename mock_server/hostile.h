#ifndef SFMOCK_HOSTILE_H
#define SFMOCK_HOSTILE_H

#include <stdint.h>

struct event_base;
struct evbuffer;
struct evhttp_request;

/*
 * Streamed hostile replies: a body of any size, generated as it goes
 * out and never held whole (sfmock's memory stays flat however many
 * bytes a rule asks for), or one that never ends. A body is a list of
 * parts, each either literal text or one byte repeated n times; parts
 * are sent in order in chunks of at most 64 KiB, each written only once
 * the previous one left the socket. A trickle sends the parts, then one
 * space every interval, forever.
 *
 * A job ends when its body is sent, or when the client closes the
 * connection (the request is then freed here), or at hostile_free_all.
 */

struct hostile_set;

/* base is borrowed and must outlive the set. NULL when out of memory. */
struct hostile_set *hostile_set_new(struct event_base *base);
/* Stops every running job (their connections are left to evhttp_free,
 * which must run after this). NULL is a no-op. */
void hostile_set_free(struct hostile_set *set);

struct hostile_body;

/* An empty body; NULL when out of memory. */
struct hostile_body *hostile_body_new(void);
/* Frees a body that was not sent. NULL is a no-op. */
void hostile_body_free(struct hostile_body *body);
/* Appends literal text (copied). Returns 0 or -1. */
int hostile_body_text(struct hostile_body *body, const char *text, size_t len);
/* Appends from the buffer, draining it. Returns 0 or -1. */
int hostile_body_buffer(struct hostile_body *body, struct evbuffer *buf);
/* Appends byte c repeated n times. Returns 0 or -1. */
int hostile_body_fill(struct hostile_body *body, char c, uint64_t n);

/*
 * Answers req with status code, Content-Type ctype, and body (owned by
 * the set from here on, whatever the outcome). interval_ms > 0 makes
 * it a trickle: after the body one space goes out every interval_ms,
 * and the reply never ends.
 */
void hostile_send(struct hostile_set *set, struct evhttp_request *req, int code,
                  const char *ctype, struct hostile_body *body,
                  int64_t interval_ms);

#endif /* SFMOCK_HOSTILE_H */
