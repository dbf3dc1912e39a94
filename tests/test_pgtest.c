/*
 * The PostgreSQL test bed itself: a server starts quickly, answers as
 * role sfrelay only with its password, keeps its data across a restart,
 * leaves no process behind however it is stopped (even when the test
 * process dies without stopping it), and two run side by side.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "harness.h"
#include "pgtest.h"

#define MAXPIDS 64

struct fixture {
	char *dir[2];
	struct pgtest pg[2];
	int ok;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	for (int i = 0; i < 2; i++) {
		f->dir[i] = harness_tmpdir("pgtest");
		assert_non_null(f->dir[i]);
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	for (int i = 0; i < 2; i++) {
		if (f->ok) {
			pgtest_cleanup(&f->pg[i]);
			pgtest_rmtree(f->dir[i]);
		} else {
			/* The logs stay, the clusters (tens of MB) go. */
			pgtest_stop(&f->pg[i]);
			pgtest_rmtree(f->pg[i].datadir);
			harness_rmdir(f->dir[i], 1);
		}
		free(f->dir[i]);
	}
	free(f);
	return 0;
}

/* 1 when nothing answers on the port any more. */
static int
port_dead(int port)
{
	char conninfo[128];
	snprintf(conninfo, sizeof(conninfo),
	         "host=127.0.0.1 port=%d dbname=postgres connect_timeout=2",
	         port);
	return PQping(conninfo) == PQPING_NO_RESPONSE;
}

/* Waits (bounded) until none of pids is alive; returns how many are. */
static size_t
wait_all_dead(const pid_t *pids, size_t n, int timeout_ms)
{
	size_t alive = n;
	for (long long end = now_ms() + timeout_ms; alive > 0; sleep_ms(20)) {
		alive = 0;
		for (size_t i = 0; i < n; i++)
			alive += (size_t)pgtest_pid_alive(pids[i]);
		if (now_ms() >= end)
			break;
	}
	return alive;
}

static uid_t
uid_of(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	FILE *fp = fopen(path, "r");
	long uid = -1;
	while (fp != NULL && fgets(line, sizeof(line), fp) != NULL)
		if (sscanf(line, "Uid: %ld", &uid) == 1)
			break;
	if (fp != NULL)
		fclose(fp);
	return (uid_t)uid;
}

static void
test_start_and_query(void **state)
{
	struct fixture *f = *state;
	struct pgtest *pg = &f->pg[0];
	long long t0 = now_ms();
	assert_int_equal(pgtest_start(pg, f->dir[0]), 0);
	long long took = now_ms() - t0;
	print_message("# server ready in %lld ms on port %d\n", took, pg->port);
	assert_true(pg->port > 0 && pg->port < 65536);
	assert_true(pg->pid > 0);

	char want[600], out[256];
	snprintf(want, sizeof(want),
	         "postgres://sfrelay:%s@127.0.0.1:%d/sfrelay?sslmode=disable",
	         pg->password, pg->port);
	assert_string_equal(pg->url, want);
	assert_int_equal(strlen(pg->password), 32);
	assert_int_equal(strspn(pg->password, "0123456789abcdef"), 32);

	assert_int_equal(pgtest_query(pg, "SELECT 40 + 2", out, sizeof(out)),
	                 0);
	assert_string_equal(out, "42");
	assert_int_equal(
	    pgtest_query(pg, "SELECT current_user", out, sizeof(out)), 0);
	assert_string_equal(out, "sfrelay");
	assert_int_equal(
	    pgtest_query(pg, "SELECT current_database()", out, sizeof(out)), 0);
	assert_string_equal(out, "sfrelay");
	/* The role owns its database: it can make the relay's tables. */
	assert_int_equal(
	    pgtest_query(pg, "CREATE TABLE t (k text)", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(pgtest_query(pg, "SELECT k FROM t", out, sizeof(out)),
	                 0);
	assert_string_equal(out, ""); /* no row */
	assert_int_equal(pgtest_query(pg, "SELECT NULL", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(pgtest_query(pg, "SELEKT 1", out, sizeof(out)), -1);
	assert_int_equal(pgtest_query(pg, "SELECT 'abcdef'", out, 4), -1);
	assert_int_equal(pgtest_query(pg, "SELECT 1", out, 0), -1);

	/* The server does not run as root, and it listens on TCP and on
	 * its Unix socket in dir. */
	if (geteuid() == 0)
		assert_true(uid_of(pg->pid) != 0);
	char sock[1200];
	struct stat sb;
	snprintf(sock, sizeof(sock), "%s/.s.PGSQL.%d", f->dir[0], pg->port);
	assert_int_equal(stat(sock, &sb), 0);
	assert_true(S_ISSOCK(sb.st_mode));

	assert_int_equal(pgtest_stop(pg), 0);
	assert_int_equal(pg->pid, 0);
	assert_true(port_dead(pg->port));
	/* Stopped: a query fails at once instead of hanging. */
	t0 = now_ms();
	assert_int_equal(pgtest_query(pg, "SELECT 1", out, sizeof(out)), -1);
	assert_true(now_ms() - t0 < 6000);
	f->ok = 1;
}

static void
test_password_is_required(void **state)
{
	struct fixture *f = *state;
	struct pgtest *pg = &f->pg[0];
	assert_int_equal(pgtest_start(pg, f->dir[0]), 0);
	char url[600];
	const char *const keys[] = {"dbname", "connect_timeout", NULL};
	const char *const vals[] = {url, "5", NULL};

	snprintf(url, sizeof(url),
	         "postgres://sfrelay:not-%s@127.0.0.1:%d/sfrelay"
	         "?sslmode=disable",
	         pg->password, pg->port);
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	assert_int_equal(PQstatus(c), CONNECTION_BAD);
	assert_non_null(strstr(PQerrorMessage(c), "password"));
	PQfinish(c);

	snprintf(url, sizeof(url), "%s", pg->url);
	c = PQconnectdbParams(keys, vals, 1);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PQfinish(c);
	assert_int_equal(pgtest_stop(pg), 0);
	f->ok = 1;
}

static void
test_restart_keeps_data(void **state)
{
	struct fixture *f = *state;
	struct pgtest *pg = &f->pg[0];
	char out[64];
	assert_int_equal(pgtest_start(pg, f->dir[0]), 0);
	int port = pg->port;
	pid_t before = pg->pid;
	assert_int_equal(pgtest_query(pg,
	                              "CREATE TABLE kept AS SELECT 'x7' AS v",
	                              out, sizeof(out)),
	                 0);
	long long t0 = now_ms();
	assert_int_equal(pgtest_restart(pg), 0);
	print_message("# restarted in %lld ms\n", now_ms() - t0);
	assert_int_equal(pg->port, port);
	assert_true(pg->pid > 0 && pg->pid != before);
	assert_false(pgtest_pid_alive(before));
	assert_int_equal(
	    pgtest_query(pg, "SELECT v FROM kept", out, sizeof(out)), 0);
	assert_string_equal(out, "x7");
	/* A second restart in a row, then a stop, then a start again. */
	assert_int_equal(pgtest_restart(pg), 0);
	assert_int_equal(pgtest_stop(pg), 0);
	assert_int_equal(pgtest_restart(pg), 0);
	assert_int_equal(
	    pgtest_query(pg, "SELECT v FROM kept", out, sizeof(out)), 0);
	assert_string_equal(out, "x7");
	assert_int_equal(pgtest_stop(pg), 0);
	f->ok = 1;
}

static void
test_stop_ends_every_process(void **state)
{
	struct fixture *f = *state;
	struct pgtest *pg = &f->pg[0];
	assert_int_equal(pgtest_start(pg, f->dir[0]), 0);
	/* A backend busy in a long statement must go too. */
	const char *const keys[] = {"dbname", NULL};
	const char *const vals[] = {pg->url, NULL};
	PGconn *busy = PQconnectdbParams(keys, vals, 1);
	assert_int_equal(PQstatus(busy), CONNECTION_OK);
	assert_int_equal(PQsendQuery(busy, "SELECT pg_sleep(60)"), 1);
	sleep_ms(200);

	pid_t pids[MAXPIDS];
	size_t n = pgtest_pids(pg, pids, MAXPIDS);
	/* postmaster, checkpointer, background writer, WAL writer,
	 * autovacuum launcher, the busy backend, ... */
	print_message("# %zu server processes\n", n);
	assert_true(n >= 5);
	assert_int_equal(pids[0], pg->pid);

	long long t0 = now_ms();
	assert_int_equal(pgtest_stop(pg), 0);
	assert_true(now_ms() - t0 < 10000);
	assert_int_equal(wait_all_dead(pids, n, 2000), 0);
	assert_int_equal(pgtest_pids(pg, pids, MAXPIDS), 0);
	assert_true(port_dead(pg->port));
	/* Idempotent. */
	assert_int_equal(pgtest_stop(pg), 0);
	PQfinish(busy);
	f->ok = 1;
}

/* A postmaster that ignores the fast shutdown (here: stopped) is killed
 * with all its children. */
static void
test_stop_kills_a_stuck_server(void **state)
{
	struct fixture *f = *state;
	struct pgtest *pg = &f->pg[0];
	assert_int_equal(pgtest_start(pg, f->dir[0]), 0);
	pid_t pids[MAXPIDS];
	size_t n = pgtest_pids(pg, pids, MAXPIDS);
	assert_true(n >= 4);
	pg->stop_timeout_ms = 300;
	assert_int_equal(kill(pg->pid, SIGSTOP), 0);
	long long t0 = now_ms();
	assert_int_equal(pgtest_stop(pg), -1);
	assert_true(now_ms() - t0 < 8000);
	assert_int_equal(pg->pid, 0);
	assert_int_equal(wait_all_dead(pids, n, 3000), 0);
	assert_true(port_dead(pg->port));
	/* What the kill left behind does not stop a restart. */
	assert_int_equal(pgtest_restart(pg), 0);
	char out[16];
	assert_int_equal(pgtest_query(pg, "SELECT 1", out, sizeof(out)), 0);
	assert_string_equal(out, "1");
	assert_int_equal(pgtest_stop(pg), 0);
	f->ok = 1;
}

/* A test process that dies without stopping its server takes the server
 * with it. */
static void
test_server_dies_with_its_starter(void **state)
{
	struct fixture *f = *state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct pgtest pg;
		pid_t pids[MAXPIDS];
		size_t n = 0;
		close(fds[0]);
		if (pgtest_start(&pg, f->dir[0]) == 0)
			n = pgtest_pids(&pg, pids, MAXPIDS);
		ssize_t w = write(fds[1], pids, n * sizeof(pid_t));
		_exit(w == (ssize_t)(n * sizeof(pid_t)) ? 0 : 1);
	}
	close(fds[1]);
	pid_t pids[MAXPIDS];
	size_t got = 0;
	ssize_t r;
	while (got < sizeof(pids) &&
	       (r = read(fds[0], (char *)pids + got, sizeof(pids) - got)) > 0)
		got += (size_t)r;
	close(fds[0]);
	int st = 0;
	assert_int_equal(waitpid(child, &st, 0), child);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	size_t n = got / sizeof(pid_t);
	assert_true(n >= 4);
	assert_int_equal(wait_all_dead(pids, n, 10000), 0);
	f->ok = 1;
}

static void
test_two_servers_side_by_side(void **state)
{
	struct fixture *f = *state;
	char out[64];
	assert_int_equal(pgtest_start(&f->pg[0], f->dir[0]), 0);
	assert_int_equal(pgtest_start(&f->pg[1], f->dir[1]), 0);
	assert_true(f->pg[0].port != f->pg[1].port);
	assert_string_not_equal(f->pg[0].password, f->pg[1].password);
	assert_int_equal(pgtest_query(&f->pg[0],
	                              "CREATE TABLE only_a AS SELECT 1 AS v",
	                              out, sizeof(out)),
	                 0);
	assert_int_equal(pgtest_query(&f->pg[0], "SELECT to_regclass('only_a')",
	                              out, sizeof(out)),
	                 0);
	assert_string_equal(out, "only_a");
	assert_int_equal(pgtest_query(&f->pg[1], "SELECT to_regclass('only_a')",
	                              out, sizeof(out)),
	                 0);
	assert_string_equal(out, "");
	/* Stopping one leaves the other serving. */
	assert_int_equal(pgtest_stop(&f->pg[0]), 0);
	assert_int_equal(pgtest_query(&f->pg[1], "SELECT 2", out, sizeof(out)),
	                 0);
	assert_string_equal(out, "2");
	assert_int_equal(pgtest_stop(&f->pg[1]), 0);
	f->ok = 1;
}

static void
test_start_fails_cleanly(void **state)
{
	struct fixture *f = *state;
	char path[4200];
	snprintf(path, sizeof(path), "%s/missing", f->dir[0]);
	assert_int_equal(pgtest_start(&f->pg[0], path), -1);
	assert_int_equal(f->pg[0].pid, 0);
	assert_int_equal(pgtest_start(&f->pg[0], NULL), -1);
	char longdir[200];
	memset(longdir, 'd', sizeof(longdir) - 1);
	longdir[0] = '/';
	longdir[sizeof(longdir) - 1] = '\0';
	assert_int_equal(pgtest_start(&f->pg[0], longdir), -1);
	/* A second cluster cannot be made over an existing one. */
	assert_int_equal(pgtest_start(&f->pg[1], f->dir[1]), 0);
	struct pgtest again;
	assert_int_equal(pgtest_start(&again, f->dir[1]), -1);
	assert_int_equal(again.pid, 0);
	assert_int_equal(pgtest_stop(&f->pg[1]), 0);
	/* A restart of a never-started bed is an error, not a crash. */
	struct pgtest blank;
	memset(&blank, 0, sizeof(blank));
	assert_int_equal(pgtest_restart(&blank), -1);
	assert_int_equal(pgtest_stop(&blank), 0);
	f->ok = 1;
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_start_and_query, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_password_is_required, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_restart_keeps_data, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_stop_ends_every_process, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_stop_kills_a_stuck_server,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_server_dies_with_its_starter,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_servers_side_by_side,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_start_fails_cleanly, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests_name("pgtest", tests, NULL, NULL);
}
