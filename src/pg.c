/*
 * An asynchronous libpq connection on libevent (pg.h).
 *
 * libpq does the protocol; this file only decides when to call it. The
 * socket can change while PQconnectPoll works through its states (one
 * per address tried, TLS negotiation), so the socket event is rebuilt
 * whenever the descriptor or the wanted direction changes. Once connected
 * the connection is put in non-blocking mode so that PQsendQueryParams
 * never waits for the kernel; whatever libpq could not write yet is
 * pushed with PQflush when the socket turns writable.
 *
 * Queries go out one at a time: the relay's traffic is a few small
 * statements a second, and one in flight makes the deadline simple (a
 * query not answered in time means the link or the server is gone).
 *
 * User callbacks may free the pg. Every entry point from the loop counts
 * itself in in_cb; pg_free inside a callback only marks the object, and
 * the outermost entry point destroys it on the way out.
 */
#include "sfrelay/pg.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "sfrelay/backoff.h"
#include "sfrelay/log.h"

enum pg_state {
	PG_DOWN,       /* not started, or lost without reconnection */
	PG_CONNECTING, /* PQconnectPoll in progress */
	PG_UP,
	PG_RETRY, /* waiting for the back-off timer */
};

struct pg_q {
	struct pg_q *next;
	char *sql;
	char **params;
	int n;
	pg_result_fn *fn; /* NULL for the liveness query */
	void *arg;
};

#define PG_MAX_KEYS 12

struct pg {
	struct event_base *base;
	struct pg_opts o;
	char *url;
	const char *keys[PG_MAX_KEYS];
	char *vals[PG_MAX_KEYS];
	pg_state_fn *state_fn;
	void *state_arg;

	PGconn *conn;
	enum pg_state st;
	struct event *io;
	evutil_socket_t io_fd;
	short io_what;
	struct event *deadline; /* connect or query deadline */
	struct event *timer;    /* liveness or reconnection */

	struct pg_q *head, *tail;
	int sent;       /* head is on the wire */
	PGresult *keep; /* head's result so far */
	char qerr[256]; /* head's first error, or "" */
	char lasterr[256];

	unsigned failures;
	uint64_t rng;
	unsigned long nqueries;
	int in_cb, freeing;
};

static void lose(struct pg *pg, const char *why);
static void send_next(struct pg *pg);

static void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p == NULL)
		abort(); /* out of memory is fatal by design (STYLE.md) */
	return p;
}

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);
	if (p == NULL)
		abort();
	return p;
}

/* libpq messages end in a newline and may span lines: one line out. */
static void
copy_msg(char *dst, size_t len, const char *msg)
{
	snprintf(dst, len, "%s",
	         msg != NULL && *msg != '\0' ? msg : "unknown error");
	/* Line breaks become one space each run. */
	char *w = dst;
	for (const char *p = dst; *p != '\0'; p++) {
		char c = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p;
		if (c == ' ' && w > dst && w[-1] == ' ')
			continue;
		*w++ = c;
	}
	*w = '\0';
	size_t n = strlen(dst);
	while (n > 0 && dst[n - 1] == ' ')
		dst[--n] = '\0';
}

static void
timer_ms(struct event *ev, long ms)
{
	struct timeval tv = {.tv_sec = ms / 1000,
	                     .tv_usec = (ms % 1000) * 1000};
	event_add(ev, &tv);
}

static void on_io(evutil_socket_t fd, short what, void *arg);

/* Watches fd for what (0: nothing), rebuilding the event on a change. */
static void
set_io(struct pg *pg, evutil_socket_t fd, short what)
{
	if (pg->io != NULL && pg->io_fd == fd && pg->io_what == what)
		return;
	if (pg->io != NULL) {
		event_free(pg->io);
		pg->io = NULL;
	}
	pg->io_fd = fd;
	pg->io_what = what;
	if (fd < 0 || what == 0)
		return;
	pg->io = event_new(pg->base, fd, (short)(what | EV_PERSIST), on_io, pg);
	if (pg->io == NULL || event_add(pg->io, NULL) != 0)
		abort(); /* libevent out of memory */
}

static void
q_free(struct pg_q *q)
{
	free(q->sql);
	for (int i = 0; i < q->n; i++)
		free(q->params[i]);
	free(q->params);
	free(q);
}

static void
notice(void *arg, const char *msg)
{
	char buf[256];
	(void)arg;
	copy_msg(buf, sizeof(buf), msg);
	log_debug("database notice", "detail", buf, NULL);
}

static void
arm_liveness(struct pg *pg)
{
	if (pg->o.liveness_ms > 0 && pg->st == PG_UP && !pg->sent &&
	    pg->head == NULL)
		timer_ms(pg->timer, pg->o.liveness_ms);
}

static void
connected(struct pg *pg)
{
	evtimer_del(pg->deadline);
	if (PQsetnonblocking(pg->conn, 1) != 0) {
		lose(pg, "cannot make the connection non-blocking");
		return;
	}
	PQsetNoticeProcessor(pg->conn, notice, NULL);
	pg->st = PG_UP;
	pg->failures = 0;
	pg->lasterr[0] = '\0';
	set_io(pg, PQsocket(pg->conn), EV_READ);
	pg->state_fn(pg->state_arg, 1, NULL);
	if (pg->freeing || pg->st != PG_UP)
		return;
	arm_liveness(pg);
	send_next(pg);
}

static void
connect_step(struct pg *pg)
{
	PostgresPollingStatusType r = PQconnectPoll(pg->conn);
	/* libpq may have closed the socket and opened another (next
	 * address, next host) that got the same number: epoll forgot the
	 * closed one, so the event is always registered afresh. */
	set_io(pg, -1, 0);
	switch (r) {
	case PGRES_POLLING_READING:
		set_io(pg, PQsocket(pg->conn), EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		set_io(pg, PQsocket(pg->conn), EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		connected(pg);
		break;
	case PGRES_POLLING_FAILED:
	default: {
		char why[256];
		copy_msg(why, sizeof(why), PQerrorMessage(pg->conn));
		lose(pg, why);
		break;
	}
	}
}

static void
start_connect(struct pg *pg)
{
	pg->conn =
	    PQconnectStartParams(pg->keys, (const char *const *)pg->vals, 1);
	if (pg->conn == NULL)
		abort(); /* libpq out of memory */
	pg->st = PG_CONNECTING;
	if (pg->o.connect_timeout_ms > 0)
		timer_ms(pg->deadline, pg->o.connect_timeout_ms);
	if (PQstatus(pg->conn) == CONNECTION_BAD) {
		char why[256];
		copy_msg(why, sizeof(why), PQerrorMessage(pg->conn));
		lose(pg, why);
		return;
	}
	/* Before the first PQconnectPoll the connection waits to write. */
	if (PQsocket(pg->conn) >= 0)
		set_io(pg, PQsocket(pg->conn), EV_WRITE);
	else
		connect_step(pg);
}

/* Ends the connection and fails what was queued; reconnects later when
 * enabled. User callbacks run: callers check pg->freeing after. */
static void
lose(struct pg *pg, const char *why)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", why);
	set_io(pg, -1, 0);
	if (pg->conn != NULL)
		PQfinish(pg->conn);
	pg->conn = NULL;
	PQclear(pg->keep);
	pg->keep = NULL;
	pg->sent = 0;
	evtimer_del(pg->deadline);
	evtimer_del(pg->timer);
	pg->st = PG_DOWN;
	snprintf(pg->lasterr, sizeof(pg->lasterr), "%s", msg);

	struct pg_q *q = pg->head;
	pg->head = pg->tail = NULL;
	while (q != NULL) {
		struct pg_q *next = q->next;
		if (q->fn != NULL && !pg->freeing)
			q->fn(q->arg, NULL, msg);
		q_free(q);
		q = next;
	}
	if (pg->freeing)
		return;
	pg->state_fn(pg->state_arg, 0, msg);
	if (pg->freeing || pg->st != PG_DOWN || !pg->o.reconnect)
		return;
	pg->st = PG_RETRY;
	long delay = backoff_delay(pg->o.backoff_min_ms, pg->o.backoff_max_ms,
	                           ++pg->failures, &pg->rng);
	timer_ms(pg->timer, delay);
}

/* The head query's results are all in: hand them over. */
static void
complete(struct pg *pg)
{
	struct pg_q *q = pg->head;
	pg->head = q->next;
	if (pg->head == NULL)
		pg->tail = NULL;
	pg->sent = 0;
	evtimer_del(pg->deadline);
	PGresult *res = pg->keep;
	pg->keep = NULL;
	if (q->fn != NULL) {
		if (pg->qerr[0] != '\0')
			q->fn(q->arg, NULL, pg->qerr);
		else
			q->fn(q->arg, (const struct pg_result *)res, NULL);
	}
	PQclear(res);
	q_free(q);
}

static void
flush_out(struct pg *pg)
{
	int r = PQflush(pg->conn);
	if (r < 0) {
		char why[256];
		copy_msg(why, sizeof(why), PQerrorMessage(pg->conn));
		lose(pg, why);
		return;
	}
	set_io(pg, PQsocket(pg->conn),
	       r == 1 ? (short)(EV_READ | EV_WRITE) : (short)EV_READ);
}

static void
send_next(struct pg *pg)
{
	if (pg->st != PG_UP || pg->sent || pg->head == NULL)
		return;
	struct pg_q *q = pg->head;
	int ok = q->n == 0 ? PQsendQuery(pg->conn, q->sql)
	                   : PQsendQueryParams(pg->conn, q->sql, q->n, NULL,
	                                       (const char *const *)q->params,
	                                       NULL, NULL, 0);
	if (!ok) {
		char why[256];
		copy_msg(why, sizeof(why), PQerrorMessage(pg->conn));
		lose(pg, why);
		return;
	}
	pg->sent = 1;
	pg->qerr[0] = '\0';
	pg->nqueries++;
	evtimer_del(pg->timer);
	if (pg->o.query_timeout_ms > 0)
		timer_ms(pg->deadline, pg->o.query_timeout_ms);
	flush_out(pg);
}

static void
read_results(struct pg *pg)
{
	if (!PQconsumeInput(pg->conn) || PQstatus(pg->conn) == CONNECTION_BAD) {
		char why[256];
		copy_msg(why, sizeof(why), PQerrorMessage(pg->conn));
		lose(pg, why);
		return;
	}
	while (pg->st == PG_UP && pg->sent && !PQisBusy(pg->conn)) {
		PGresult *r = PQgetResult(pg->conn);
		if (r == NULL) {
			complete(pg);
			if (pg->freeing)
				return;
			if (pg->st != PG_UP)
				return;
			arm_liveness(pg);
			send_next(pg);
			continue;
		}
		ExecStatusType s = PQresultStatus(r);
		if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK &&
		    s != PGRES_EMPTY_QUERY) {
			if (pg->qerr[0] == '\0')
				copy_msg(pg->qerr, sizeof(pg->qerr),
				         PQresultErrorMessage(r));
			PQclear(r);
			continue;
		}
		PQclear(pg->keep);
		pg->keep = r;
	}
}

static void leave(struct pg *pg);

static void
on_io(evutil_socket_t fd, short what, void *arg)
{
	struct pg *pg = arg;
	(void)fd;
	pg->in_cb++;
	if (pg->st == PG_CONNECTING) {
		connect_step(pg);
	} else if (pg->st == PG_UP) {
		if (what & EV_WRITE)
			flush_out(pg);
		if (!pg->freeing && pg->st == PG_UP && (what & EV_READ))
			read_results(pg);
		if (!pg->freeing)
			send_next(pg);
	}
	leave(pg);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct pg *pg = arg;
	char why[128];
	(void)fd;
	(void)what;
	pg->in_cb++;
	if (pg->st == PG_CONNECTING)
		lose(pg, log_fmt(why, sizeof(why),
		                 "connection attempt timed out after %ld ms",
		                 pg->o.connect_timeout_ms));
	else if (pg->st == PG_UP && pg->sent)
		lose(pg, log_fmt(why, sizeof(why),
		                 "no answer within %ld ms; connection presumed "
		                 "lost",
		                 pg->o.query_timeout_ms));
	leave(pg);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pg *pg = arg;
	(void)fd;
	(void)what;
	pg->in_cb++;
	if (pg->st == PG_RETRY) {
		start_connect(pg);
	} else if (pg->st == PG_UP && !pg->sent && pg->head == NULL) {
		/* Idle: prove the link and the server still answer. */
		struct pg_q *q = xcalloc(1, sizeof(*q));
		q->sql = xstrdup("SELECT 1");
		pg->head = pg->tail = q;
		send_next(pg);
	}
	leave(pg);
}

static void
destroy(struct pg *pg)
{
	set_io(pg, -1, 0);
	if (pg->conn != NULL)
		PQfinish(pg->conn);
	PQclear(pg->keep);
	struct pg_q *q = pg->head;
	while (q != NULL) {
		struct pg_q *next = q->next;
		q_free(q);
		q = next;
	}
	if (pg->deadline != NULL)
		event_free(pg->deadline);
	if (pg->timer != NULL)
		event_free(pg->timer);
	for (size_t i = 0; i < PG_MAX_KEYS; i++)
		free(pg->vals[i]);
	if (pg->url != NULL) {
		memset(pg->url, 0, strlen(pg->url));
		free(pg->url);
	}
	free(pg);
}

static void
leave(struct pg *pg)
{
	if (--pg->in_cb == 0 && pg->freeing)
		destroy(pg);
}

/* Registers the password as it appears in the URL (percent-encoded) and
 * as libpq decodes it. */
static void
register_password(const char *url, const char *decoded)
{
	if (decoded != NULL)
		log_add_secret(decoded);
	const char *s = strstr(url, "://");
	if (s == NULL)
		return;
	s += 3;
	size_t alen = strcspn(s, "/?");
	const char *at = NULL;
	for (size_t i = 0; i < alen; i++)
		if (s[i] == '@')
			at = s + i;
	if (at == NULL)
		return;
	const char *colon = memchr(s, ':', (size_t)(at - s));
	if (colon == NULL || at - colon - 1 < 1)
		return;
	char *raw = strndup(colon + 1, (size_t)(at - colon - 1));
	if (raw == NULL)
		abort();
	log_add_secret(raw);
	memset(raw, 0, strlen(raw));
	free(raw);
}

static void
add_key(struct pg *pg, size_t *n, const char *key, const char *val)
{
	if (*n + 1 >= PG_MAX_KEYS)
		abort(); /* a programming error: the table is fixed */
	pg->keys[*n] = key;
	pg->vals[*n] = xstrdup(val);
	(*n)++;
}

static void
add_key_long(struct pg *pg, size_t *n, const char *key, long v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%ld", v);
	add_key(pg, n, key, buf);
}

struct pg *
pg_new(struct event_base *base, const struct pg_opts *opts, pg_state_fn *state,
       void *arg, char *err, size_t errlen)
{
	char *perr = NULL;
	PQconninfoOption *info = PQconninfoParse(opts->url, &perr);
	if (info == NULL) {
		/* libpq quotes the bad part, which may be the password. */
		char why[256], red[1024];
		copy_msg(why, sizeof(why), perr);
		PQfreemem(perr);
		pg_url_redact(opts->url, red, sizeof(red));
		if (strstr(red, "***") != NULL)
			snprintf(why, sizeof(why),
			         "details not shown: the URL has a password");
		snprintf(err, errlen, "DATABASE_URL does not parse: %s", why);
		return NULL;
	}
	const char *password = NULL;
	for (PQconninfoOption *o = info; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL &&
		    *o->val != '\0')
			password = o->val;
	register_password(opts->url, password);
	PQconninfoFree(info);

	struct pg *pg = xcalloc(1, sizeof(*pg));
	pg->base = base;
	pg->o = *opts;
	pg->url = xstrdup(opts->url);
	pg->o.url = pg->url;
	pg->state_fn = state;
	pg->state_arg = arg;
	pg->io_fd = -1;
	pg->rng = opts->seed ^ (uint64_t)(uintptr_t)pg;
	if (pg->o.backoff_min_ms <= 0)
		pg->o.backoff_min_ms = 1000;
	if (pg->o.backoff_max_ms < pg->o.backoff_min_ms)
		pg->o.backoff_max_ms = pg->o.backoff_min_ms;

	/* The URL first: later keywords override what it sets, except
	 * sslmode, which is only added when the URL has none. */
	size_t n = 0;
	add_key(pg, &n, "dbname", opts->url);
	const char *ssl = pg_sslmode_for(opts->url);
	if (ssl != NULL)
		add_key(pg, &n, "sslmode", ssl);
	add_key(pg, &n, "fallback_application_name", "sfrelay");
	add_key(pg, &n, "keepalives", "1");
	if (opts->keepalive_idle_s > 0)
		add_key_long(pg, &n, "keepalives_idle", opts->keepalive_idle_s);
	if (opts->keepalive_interval_s > 0)
		add_key_long(pg, &n, "keepalives_interval",
		             opts->keepalive_interval_s);
	if (opts->keepalive_count > 0)
		add_key_long(pg, &n, "keepalives_count", opts->keepalive_count);
	if (opts->query_timeout_ms > 0)
		/* Unacknowledged data on a dead link: keepalives do not
		 * fire then, the kernel's user timeout does. */
		add_key_long(pg, &n, "tcp_user_timeout",
		             opts->query_timeout_ms);
	pg->keys[n] = NULL;
	pg->vals[n] = NULL;

	pg->deadline = evtimer_new(base, on_deadline, pg);
	pg->timer = evtimer_new(base, on_timer, pg);
	if (pg->deadline == NULL || pg->timer == NULL) {
		destroy(pg);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	return pg;
}

void
pg_free(struct pg *pg)
{
	if (pg == NULL)
		return;
	if (pg->in_cb > 0) {
		pg->freeing = 1;
		return;
	}
	destroy(pg);
}

void
pg_start(struct pg *pg)
{
	if (pg->st == PG_UP || pg->st == PG_CONNECTING)
		return;
	evtimer_del(pg->timer);
	pg->in_cb++;
	start_connect(pg);
	leave(pg);
}

int
pg_connected(const struct pg *pg)
{
	return pg->st == PG_UP;
}

void
pg_set_reconnect(struct pg *pg, int on)
{
	pg->o.reconnect = on;
	if (!on && pg->st == PG_RETRY) {
		evtimer_del(pg->timer);
		pg->st = PG_DOWN;
	}
}

void
pg_reset(struct pg *pg, const char *why)
{
	if (pg->st != PG_UP && pg->st != PG_CONNECTING)
		return;
	pg->in_cb++;
	lose(pg, why);
	leave(pg);
}

int
pg_query(struct pg *pg, const char *sql, int n, const char *const *params,
         pg_result_fn *fn, void *arg)
{
	if (pg->st != PG_UP || pg->freeing)
		return -1;
	struct pg_q *q = xcalloc(1, sizeof(*q));
	q->sql = xstrdup(sql);
	q->n = n > 0 ? n : 0;
	if (q->n > 0) {
		q->params = xcalloc((size_t)q->n, sizeof(*q->params));
		for (int i = 0; i < q->n; i++)
			q->params[i] =
			    params[i] != NULL ? xstrdup(params[i]) : NULL;
	}
	q->fn = fn;
	q->arg = arg;
	if (pg->tail != NULL)
		pg->tail->next = q;
	else
		pg->head = q;
	pg->tail = q;
	/* Sent from the loop (or pg_wait), so fn never runs before this
	 * returns; only the write of the query itself may start now. */
	if (!pg->sent && pg->st == PG_UP) {
		struct pg_q *h = pg->head;
		if (h == q) {
			int ok = q->n == 0 ? PQsendQuery(pg->conn, q->sql)
			                   : PQsendQueryParams(
			                         pg->conn, q->sql, q->n, NULL,
			                         (const char *const *)q->params,
			                         NULL, NULL, 0);
			if (ok) {
				pg->sent = 1;
				pg->qerr[0] = '\0';
				pg->nqueries++;
				evtimer_del(pg->timer);
				if (pg->o.query_timeout_ms > 0)
					timer_ms(pg->deadline,
					         pg->o.query_timeout_ms);
				/* A failed flush shows up at the next read;
				 * no callback may run here. */
				int r = PQflush(pg->conn);
				set_io(pg, PQsocket(pg->conn),
				       r == 1 ? (short)(EV_READ | EV_WRITE)
				              : (short)EV_READ);
			} else {
				/* Broken: let the loop notice it at once. */
				set_io(pg, PQsocket(pg->conn),
				       (short)(EV_READ | EV_WRITE));
			}
		}
	}
	return 0;
}

static long
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
pg_wait(struct pg *pg, long timeout_ms, char *err, size_t errlen)
{
	long end = now_ms() + timeout_ms;
	int rc = -1;
	pg->in_cb++;
	for (;;) {
		if (pg->freeing) {
			snprintf(err, errlen, "closed");
			break;
		}
		if (pg->st == PG_UP && pg->head == NULL && !pg->sent) {
			rc = 0;
			break;
		}
		if (pg->st == PG_DOWN || pg->st == PG_RETRY) {
			snprintf(err, errlen, "database connection failed: %s",
			         pg->lasterr[0] != '\0' ? pg->lasterr
			                                : "not connected");
			break;
		}
		long left = end - now_ms();
		if (left <= 0) {
			snprintf(err, errlen,
			         "database did not answer within %ld ms",
			         timeout_ms);
			break;
		}
		struct pollfd p = {.fd = pg->io_fd, .events = 0};
		if (pg->io_what & EV_READ)
			p.events |= POLLIN;
		if (pg->io_what & EV_WRITE)
			p.events |= POLLOUT;
		int r = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
		if (r < 0 && errno != EINTR) {
			snprintf(err, errlen, "poll: %s", strerror(errno));
			break;
		}
		if (r <= 0)
			continue;
		short what = 0;
		if (p.revents & (POLLIN | POLLHUP | POLLERR))
			what |= EV_READ;
		if (p.revents & (POLLOUT | POLLHUP | POLLERR))
			what |= EV_WRITE;
		if (p.revents & POLLNVAL) {
			lose(pg, "socket closed");
			continue;
		}
		what &= pg->io_what;
		if (what == 0)
			what = pg->io_what;
		on_io(pg->io_fd, what, pg);
	}
	leave(pg);
	return rc;
}

unsigned long
pg_queries(const struct pg *pg)
{
	return pg->nqueries;
}

int
pg_rows(const struct pg_result *res)
{
	return res != NULL ? PQntuples((const PGresult *)res) : 0;
}

const char *
pg_value(const struct pg_result *res, int row, int col)
{
	const PGresult *r = (const PGresult *)res;
	if (r == NULL || row < 0 || row >= PQntuples(r) || col < 0 ||
	    col >= PQnfields(r) || PQgetisnull(r, row, col))
		return NULL;
	return PQgetvalue(r, row, col);
}

/* Appends n bytes of s to buf at *o, cutting at the end of buf. */
static void
put(char *buf, size_t len, size_t *o, const char *s, size_t n)
{
	size_t room = len - 1 - *o;
	if (n > room)
		n = room;
	memcpy(buf + *o, s, n);
	*o += n;
	buf[*o] = '\0';
}

char *
pg_url_redact(const char *url, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	const char *p = url;
	const char *s = strstr(url, "://");
	if (s != NULL) {
		s += 3;
		size_t alen = strcspn(s, "/?");
		const char *at = NULL;
		for (size_t i = 0; i < alen; i++)
			if (s[i] == '@')
				at = s + i;
		const char *colon =
		    at != NULL ? memchr(s, ':', (size_t)(at - s)) : NULL;
		if (colon != NULL) {
			put(buf, len, &o, url, (size_t)(colon + 1 - url));
			put(buf, len, &o, "***", 3);
			p = at;
		}
	}
	/* password=... in the query string (or a conninfo string). */
	for (;;) {
		const char *k = strstr(p, "password=");
		if (k == NULL)
			break;
		k += strlen("password=");
		put(buf, len, &o, p, (size_t)(k - p));
		put(buf, len, &o, "***", 3);
		p = k + strcspn(k, "& ");
	}
	put(buf, len, &o, p, strlen(p));
	return buf;
}

static int
host_is_local(const char *h, size_t n)
{
	static const char *const local[] = {"localhost", "127.0.0.1", "::1",
	                                    NULL};
	if (n == 0 || h[0] == '/' || h[0] == '@')
		return 1;
	for (const char *const *l = local; *l != NULL; l++)
		if (strlen(*l) == n && strncmp(h, *l, n) == 0)
			return 1;
	return 0;
}

/* Every comma-separated host in list is local. */
static int
hosts_local(const char *list)
{
	for (const char *p = list;;) {
		size_t n = strcspn(p, ",");
		if (!host_is_local(p, n))
			return 0;
		if (p[n] == '\0')
			return 1;
		p += n + 1;
	}
}

const char *
pg_sslmode_for(const char *url)
{
	static const char *const modes[] = {
	    "disable",   "allow",       "prefer", "require",
	    "verify-ca", "verify-full", NULL};
	char *perr = NULL;
	PQconninfoOption *info = PQconninfoParse(url, &perr);
	if (info == NULL) {
		PQfreemem(perr);
		return NULL;
	}
	const char *mode = NULL, *host = NULL, *hostaddr = NULL;
	for (PQconninfoOption *o = info; o->keyword != NULL; o++) {
		if (o->val == NULL || *o->val == '\0')
			continue;
		if (strcmp(o->keyword, "sslmode") == 0)
			mode = o->val;
		else if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
	}
	const char *out = NULL;
	if (mode != NULL) {
		for (const char *const *m = modes; *m != NULL; m++)
			if (strcmp(mode, *m) == 0)
				out = *m;
		/* An unknown word: libpq will refuse it with its own
		 * message; do not guess. */
		if (out == NULL)
			out = "require";
	} else {
		const char *h = hostaddr != NULL ? hostaddr : host;
		out = h == NULL || hosts_local(h) ? "prefer" : "require";
	}
	PQconninfoFree(info);
	return out;
}
