#ifndef SFRELAY_PG_H
#define SFRELAY_PG_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct pg_result; /* libpq's PGresult */

/*
 * One asynchronous PostgreSQL connection (libpq) on the relay's event
 * loop: non-blocking connect (PQconnectStart/PQconnectPoll), a FIFO of
 * queries sent one at a time (PQsendQueryParams), results read as the
 * socket becomes readable, and a completion callback per query.
 *
 * Connection loss is noticed by libpq's own errors, by TCP keepalives
 * (set in the connection parameters), and by a deadline on every query:
 * an idle connection sends a liveness query ("SELECT 1") every
 * liveness_ms, and a query unanswered after query_timeout_ms counts as a
 * lost connection. After a loss the connection is re-established with
 * back-off (backoff.h) unless reconnection is off.
 *
 * The URL's password is registered with log_add_secret() by pg_new(), and
 * no message of this module quotes the URL.
 */

/* Called once per query accepted by pg_query(): with the query's result
 * (the last one for a multi-statement text; borrowed for the call) and
 * err NULL, or with res NULL and err saying why (an SQL error, a lost
 * connection, pg_reset()). Not called from pg_free(). */
typedef void pg_result_fn(void *arg, const struct pg_result *res,
                          const char *err);

/* Called when the connection comes up (up 1, err NULL) and when it goes
 * down or a connection attempt fails (up 0, err the reason). Queries
 * still queued have failed (their callbacks ran) before a "down". */
typedef void pg_state_fn(void *arg, int up, const char *err);

struct pg_opts {
	const char *url;         /* postgres:// URL or conninfo; copied */
	long connect_timeout_ms; /* whole connection attempt */
	long query_timeout_ms;   /* one query, liveness included; 0: none */
	long liveness_ms;        /* idle period before "SELECT 1"; 0: none */
	long keepalive_idle_s;   /* client TCP keepalives; 0: libpq default */
	long keepalive_interval_s;
	long keepalive_count;
	long backoff_min_ms, backoff_max_ms; /* reconnection delays */
	int reconnect;                       /* 1: reconnect after a loss */
	uint64_t seed;                       /* jitter */
};

struct pg;

/* base borrowed (outlives the pg); state and arg borrowed. Does not
 * connect yet. Returns NULL with err when the URL does not parse. */
struct pg *pg_new(struct event_base *base, const struct pg_opts *opts,
                  pg_state_fn *state, void *arg, char *err, size_t errlen);
/* Closes the connection; pending queries are dropped without their
 * callbacks. Safe from inside a callback of this pg (the free is
 * deferred until it returns). NULL is a no-op. */
void pg_free(struct pg *pg);

/* Starts connecting (no-op when connected or connecting). */
void pg_start(struct pg *pg);
/* 1 when connected and usable. */
int pg_connected(const struct pg *pg);
/* Turns reconnection after a loss on or off. */
void pg_set_reconnect(struct pg *pg, int on);
/* Drops the connection now as if it were lost (callbacks run with err
 * "reset"; the state callback sees up 0), then reconnects if enabled. */
void pg_reset(struct pg *pg, const char *why);

/*
 * Queues sql with n text parameters ($1..$n; NULL elements are SQL NULL;
 * everything copied). With n 0 the text may hold several statements
 * (simple protocol). Returns 0 when accepted: fn will be called exactly
 * once, never before pg_query returns. Returns -1 (fn never called) when
 * not connected.
 */
int pg_query(struct pg *pg, const char *sql, int n, const char *const *params,
             pg_result_fn *fn, void *arg);

/*
 * Drives the connection without the event loop (poll on its socket) until
 * it is connected with no query pending, or it is down, or timeout_ms
 * passes. For start-up before the loop runs and for a final write at
 * shutdown. Returns 0 when connected and idle, -1 otherwise with err.
 */
int pg_wait(struct pg *pg, long timeout_ms, char *err, size_t errlen);

/* Queries sent so far, liveness queries included (tests). */
unsigned long pg_queries(const struct pg *pg);

/* Result helpers over libpq (res borrowed): rows, and the text of a
 * field (NULL for SQL NULL or out of range). */
int pg_rows(const struct pg_result *res);
const char *pg_value(const struct pg_result *res, int row, int col);

/*
 * Copies url into buf with its password replaced by "***" (userinfo and
 * a password= query parameter). Always terminates buf (len > 0).
 */
char *pg_url_redact(const char *url, char *buf, size_t len);

/*
 * The sslmode sfrelay uses for url: the URL's own sslmode when it has
 * one; else "prefer" when every host is 127.0.0.1, ::1, localhost or a
 * Unix socket directory (or no host is given), "require" otherwise.
 * Returns a static string, or NULL when the URL does not parse.
 */
const char *pg_sslmode_for(const char *url);

#endif /* SFRELAY_PG_H */
