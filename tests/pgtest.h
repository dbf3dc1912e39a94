#ifndef SFRELAY_TEST_PGTEST_H
#define SFRELAY_TEST_PGTEST_H

/*
 * A throw-away PostgreSQL server for tests: initdb into dir/pgdata, one
 * postmaster on 127.0.0.1:<free port> with its Unix socket in dir, a role
 * "sfrelay" with a random password and a database "sfrelay" it owns.
 * No system service is involved; the Debian server binaries are run from
 * /usr/lib/postgresql/<version>/bin. As root (the server refuses it) they
 * run as the "postgres" system user, and dir is handed to that user.
 *
 * Every wait is bounded. A postmaster dies with the process that started
 * it (parent-death signal: an immediate shutdown), so an aborted test
 * leaves no server behind; a test still calls pgtest_stop() (or
 * pgtest_cleanup()) in its teardown. Messages go to stderr; the server's
 * own log is dir/postgres.log.
 *
 * The struct is plain data so that a test fixture can embed it; only the
 * fields documented here are for callers.
 */

#include <stddef.h>
#include <sys/types.h>

struct event_base;

struct pgtest {
	char dir[1024];     /* the caller's directory (copied) */
	char datadir[1100]; /* dir/pgdata */
	char bindir[256];   /* /usr/lib/postgresql/<ver>/bin */
	int port;           /* TCP port on 127.0.0.1 */
	char password[40];  /* the sfrelay role's password (hex) */
	char url[512];      /* postgres://sfrelay:<pw>@127.0.0.1:<port>/... */
	pid_t pid;          /* the postmaster, or 0 when stopped */
	uid_t uid;          /* who the server runs as */
	gid_t gid;
	int stop_timeout_ms; /* fast-shutdown wait; 0 means 15 s */
};

/*
 * Creates and starts a fresh cluster in dir (which must exist; it is
 * chowned to the server's user when running as root). Fills pg->url with
 *   postgres://sfrelay:<pw>@127.0.0.1:<port>/sfrelay?sslmode=disable
 * Returns 0, or -1 with a message on stderr (nothing left running).
 */
int pgtest_start(struct pgtest *pg, const char *dir);

/* Fast shutdown (SIGINT), waited for; an immediate shutdown and then
 * SIGKILL of the postmaster and every child it had when the fast one
 * does not finish in time. Idempotent. Returns 0 when the server was
 * stopped (or was not running), -1 when it had to be killed. */
int pgtest_stop(struct pgtest *pg);

/* pgtest_stop(), then the same cluster again on the same port. Returns 0
 * or -1 (message on stderr). */
int pgtest_restart(struct pgtest *pg);

/*
 * Runs sql over TCP as role sfrelay (through pg->url, so with its
 * password) and copies the first column of the first row, as text, into
 * out ("" when there is no row or it is NULL). Returns 0, or -1 when
 * the connection or the statement failed (the server's message on
 * stderr) or out is too small.
 */
int pgtest_query(const struct pgtest *pg, const char *sql, char *out,
                 size_t len);

/* Fills pids with the postmaster and every live process whose parent it
 * is (at most max). Returns how many; 0 when stopped. */
size_t pgtest_pids(const struct pgtest *pg, pid_t *pids, size_t max);

/* 1 while process pid exists and is not a zombie. */
int pgtest_pid_alive(pid_t pid);

/* pgtest_stop(), then removes dir/pgdata and the server's log and
 * socket files, leaving dir itself for the caller. Idempotent. */
void pgtest_cleanup(struct pgtest *pg);

/* Removes path and everything under it (a test's temp dir); bounded
 * depth, does not follow symbolic links. */
void pgtest_rmtree(const char *path);

/* Fixtures for the tests of the relay's Postgres modules. ------------ */

/*
 * One server in a temp dir for a whole cmocka group, and a fresh event
 * loop for each test. A test's own fixture struct may begin with it to
 * carry more.
 */
struct pgtest_fixture {
	struct pgtest db;
	char *dir;               /* the temp dir (owned) */
	struct event_base *base; /* set for the duration of a test */
};

/*
 * Group setup: *state becomes size zeroed bytes (at least a struct
 * pgtest_fixture, which they begin with) and a server is started in a
 * fresh temp dir named after name (harness_tmpdir()). Returns 0, or -1
 * with a message on stderr and nothing left behind.
 */
int pgtest_group_setup(void **state, size_t size, const char *name);

/* Group teardown: the server stopped, its dir removed, *state freed.
 * Returns 0. */
int pgtest_group_teardown(void **state);

/* Test setup: the server started again when an earlier test stopped it,
 * and a new event loop in base. Returns 0 or -1. */
int pgtest_test_setup(void **state);

/* Test teardown: frees the event loop. Returns 0. */
int pgtest_test_teardown(void **state);

/* Runs base's loop until *flag reaches want or timeout_ms have passed
 * (checked every 10 ms). Returns 1 when *flag reached want, else 0. */
int pgtest_run_until(struct event_base *base, const int *flag, int want,
                     int timeout_ms);

/* Runs base's loop for ms milliseconds (one timer ends it). */
void pgtest_run_for(struct event_base *base, int ms);

#endif
