#ifndef SFMOCK_LOGS_H
#define SFMOCK_LOGS_H

struct event_base;
struct evhttp_request;

/*
 * A strict Logplex HTTP input, so the relay's logplex sink has a
 * receiver to talk to:
 *   POST /logs                    application/logplex-1 batches
 *   GET  /_mock/logs              every accepted message, one a line
 *   GET  /_mock/logs/stats        counters and batch sizes as JSON
 *   POST /_mock/logs/fault?status=S&count=N[&delay=MS]
 *                                 the next N POSTs get status S (after
 *                                 MS ms; nothing is stored)
 * See docs/sfmock.md for the checks it makes.
 */

struct logs;

/* base is borrowed (delayed replies). token: the password basic auth must
 * carry. Returns NULL when out of memory. */
struct logs *logs_new(struct event_base *base, const char *token);
void logs_free(struct logs *logs);

/* Handles req when path is one of the above and returns 1; returns 0
 * (req untouched) otherwise. */
int logs_handle(struct logs *logs, struct evhttp_request *req,
		const char *path);

#define LOGS_DEFAULT_TOKEN "t.sfmock-logplex-token"

#endif /* SFMOCK_LOGS_H */
