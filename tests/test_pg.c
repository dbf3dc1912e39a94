/* The asynchronous libpq connection (pg.h), against a private server. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/event.h>

#include "harness.h"
#include "pgtest.h"
#include "sfrelay/log.h"
#include "sfrelay/pg.h"

/* What the callbacks saw. */
struct seen {
	int ups, downs;
	char down_err[256];
	int results;
	char value[256];
	int value_null;
	char err[256];
	int errors;
};

static void
on_state(void *arg, int up, const char *err)
{
	struct seen *s = arg;
	if (up) {
		s->ups++;
	} else {
		s->downs++;
		snprintf(s->down_err, sizeof(s->down_err), "%s",
		         err != NULL ? err : "");
	}
}

static void
on_result(void *arg, const struct pg_result *res, const char *err)
{
	struct seen *s = arg;
	s->results++;
	if (err != NULL) {
		s->errors++;
		snprintf(s->err, sizeof(s->err), "%s", err);
		return;
	}
	const char *v = pg_value(res, 0, 0);
	s->value_null = v == NULL;
	snprintf(s->value, sizeof(s->value), "%s", v != NULL ? v : "");
}

static int
setup(void **state)
{
	if (pgtest_group_setup(state, sizeof(struct pgtest_fixture),
	                       "test_pg") != 0) {
		fprintf(stderr, "cannot start PostgreSQL\n");
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	log_shutdown();
	return pgtest_group_teardown(state);
}

static struct pg *
open_pg(struct pgtest_fixture *f, const char *url, struct seen *s,
        long query_timeout)
{
	struct pg_opts o = {.url = url,
	                    .connect_timeout_ms = 5000,
	                    .query_timeout_ms = query_timeout,
	                    .backoff_min_ms = 50,
	                    .backoff_max_ms = 200,
	                    .reconnect = 1,
	                    .seed = 7};
	char err[256];
	struct pg *pg = pg_new(f->base, &o, on_state, s, err, sizeof(err));
	assert_non_null(pg);
	return pg;
}

/* A pg on the test server (5 s query limit), started and connected. */
static struct pg *
open_connected(struct pgtest_fixture *f, struct seen *s)
{
	struct pg *pg = open_pg(f, f->db.url, s, 5000);
	pg_start(pg);
	assert_true(pgtest_run_until(f->base, &s->ups, 1, 5000));
	return pg;
}

/* Pure helpers ---------------------------------------------------------- */

static void
test_url_redact(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"postgres://u:s3cret@db.example.com:5432/d",
	     "postgres://u:***@db.example.com:5432/d"},
	    {"postgresql://u:p%40ss@h/d?sslmode=require",
	     "postgresql://u:***@h/d?sslmode=require"},
	    {"postgres://u@h/d", "postgres://u@h/d"},
	    {"postgres://h/d?user=u&password=pw&sslmode=disable",
	     "postgres://h/d?user=u&password=***&sslmode=disable"},
	    {"host=h password=pw dbname=d", "host=h password=*** dbname=d"},
	    {"postgres://u:a:b@h/d", "postgres://u:***@h/d"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[256];
		assert_string_equal(
		    pg_url_redact(cases[i].in, buf, sizeof(buf)), cases[i].out);
	}
	char small[12];
	pg_url_redact("postgres://u:secret@host/d", small, sizeof(small));
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_null(strstr(small, "secret"));
}

static void
test_sslmode_for(void **state)
{
	(void)state;
	static const struct {
		const char *url, *mode;
	} cases[] = {
	    {"postgres://u:p@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d",
	     "require"},
	    {"postgres://u:p@localhost/d", "prefer"},
	    {"postgres://u:p@127.0.0.1:5432/d", "prefer"},
	    {"postgresql://u:p@[::1]:5432/d", "prefer"},
	    {"postgres://u:p@db.example.com/d?sslmode=disable", "disable"},
	    {"postgres://u:p@localhost/d?sslmode=verify-full", "verify-full"},
	    {"postgres:///d?host=/var/run/postgresql", "prefer"},
	    {"postgres://u@/d", "prefer"},
	    {"postgres://u@localhost,db.example.com/d", "require"},
	    {"postgres://u@db.example.com/d?hostaddr=127.0.0.1", "prefer"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *m = pg_sslmode_for(cases[i].url);
		assert_non_null(m);
		assert_string_equal(m, cases[i].mode);
	}
	assert_null(pg_sslmode_for("postgres://u@h/d?nosuchoption=1"));
}

/* Against the server ---------------------------------------------------- */

static void
test_query_params_and_errors(void **state)
{
	struct pgtest_fixture *f = *state;
	struct seen s = {0};
	struct pg *pg = open_pg(f, f->db.url, &s, 5000);
	char err[256];
	/* Not connected yet: refused, and no callback. */
	assert_int_equal(pg_query(pg, "SELECT 1", 0, NULL, on_result, &s), -1);
	pg_start(pg);
	assert_int_equal(pg_wait(pg, 5000, err, sizeof(err)), 0);
	assert_true(pg_connected(pg));
	assert_int_equal(s.ups, 1);

	const char *params[] = {"2", "3"};
	assert_int_equal(
	    pg_query(pg, "SELECT $1::int + $2::int", 2, params, on_result, &s),
	    0);
	assert_int_equal(s.results, 0); /* never from inside pg_query */
	assert_int_equal(pg_wait(pg, 5000, err, sizeof(err)), 0);
	assert_int_equal(s.results, 1);
	assert_string_equal(s.value, "5");

	const char *null_param[] = {NULL};
	assert_int_equal(
	    pg_query(pg, "SELECT $1::text", 1, null_param, on_result, &s), 0);
	assert_int_equal(pg_wait(pg, 5000, err, sizeof(err)), 0);
	assert_true(s.value_null);

	/* Several statements: the last result counts. */
	assert_int_equal(
	    pg_query(pg, "SELECT 1; SELECT 'last'", 0, NULL, on_result, &s), 0);
	/* An SQL error fails that query only; queued ones still run. */
	assert_int_equal(
	    pg_query(pg, "SELECT nosuchcolumn", 0, NULL, on_result, &s), 0);
	assert_int_equal(pg_query(pg, "SELECT 'after'", 0, NULL, on_result, &s),
	                 0);
	assert_int_equal(pg_wait(pg, 5000, err, sizeof(err)), 0);
	assert_int_equal(s.results, 5);
	assert_int_equal(s.errors, 1);
	assert_non_null(strstr(s.err, "nosuchcolumn"));
	assert_null(strchr(s.err, '\n'));
	assert_string_equal(s.value, "after");

	/* The loop path, not pg_wait. */
	assert_int_equal(pg_query(pg, "SELECT 'loop'", 0, NULL, on_result, &s),
	                 0);
	assert_true(pgtest_run_until(f->base, &s.results, 6, 5000));
	assert_string_equal(s.value, "loop");
	assert_int_equal(s.downs, 0);
	pg_free(pg);
}

static void
test_connect_failure_reported(void **state)
{
	struct pgtest_fixture *f = *state;
	struct seen s = {0};
	/* A port nobody listens on: the server's, after it stops. */
	char url[600];
	snprintf(url, sizeof(url),
	         "postgres://sfrelay:x@127.0.0.1:%d/sfrelay?sslmode=disable",
	         f->db.port);
	assert_int_equal(pgtest_stop(&f->db), 0);
	struct pg *pg = open_pg(f, url, &s, 2000);
	pg_set_reconnect(pg, 0);
	pg_start(pg);
	char err[256];
	assert_int_equal(pg_wait(pg, 5000, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "database connection failed"));
	assert_int_equal(s.downs, 1);
	assert_int_equal(s.ups, 0);
	pg_free(pg);
}

static void
test_loss_fails_queries_and_reconnects(void **state)
{
	struct pgtest_fixture *f = *state;
	struct seen s = {0};
	struct pg *pg = open_connected(f, &s);
	/* A query in flight when the server goes away fails with a
	 * reason; the state callback says down. */
	assert_int_equal(
	    pg_query(pg, "SELECT pg_sleep(3)", 0, NULL, on_result, &s), 0);
	assert_int_equal(pgtest_stop(&f->db), 0);
	assert_true(pgtest_run_until(f->base, &s.downs, 1, 5000));
	assert_int_equal(s.results, 1);
	assert_int_equal(s.errors, 1);
	assert_false(pg_connected(pg));
	assert_int_equal(pg_query(pg, "SELECT 1", 0, NULL, on_result, &s), -1);
	/* Retries (back-off 50..200 ms) until the server is back. */
	assert_int_equal(pgtest_restart(&f->db), 0);
	assert_true(pgtest_run_until(f->base, &s.ups, 2, 10000));
	assert_int_equal(pg_query(pg, "SELECT 'again'", 0, NULL, on_result, &s),
	                 0);
	assert_true(pgtest_run_until(f->base, &s.results, 2, 5000));
	assert_string_equal(s.value, "again");
	pg_free(pg);
}

/* libpq moves to the next host after a refused connection, on a new
 * socket: the event follows it. */
static void
test_next_host_new_socket(void **state)
{
	struct pgtest_fixture *f = *state;
	struct seen s = {0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	close(fd); /* nobody listens there now */
	char url[700];
	snprintf(url, sizeof(url),
	         "postgres://sfrelay:%s@127.0.0.1:%d,127.0.0.1:%d/sfrelay"
	         "?sslmode=disable",
	         f->db.password, ntohs(a.sin_port), f->db.port);
	struct pg *pg = open_pg(f, url, &s, 5000);
	pg_start(pg);
	int up = pgtest_run_until(f->base, &s.ups, 1, 5000);
	if (!up)
		fail_msg("not connected: %d downs, last: %s", s.downs,
			 s.down_err);
	assert_int_equal(s.downs, 0);
	assert_int_equal(
	    pg_query(pg, "SELECT inet_server_port()", 0, NULL, on_result, &s),
	    0);
	assert_true(pgtest_run_until(f->base, &s.results, 1, 5000));
	char port[16];
	snprintf(port, sizeof(port), "%d", f->db.port);
	assert_string_equal(s.value, port);
	pg_free(pg);
}

/* A server that stops answering (its processes frozen, the TCP link
 * intact) is noticed by the query deadline, and by the liveness query
 * when idle. */
static void
test_deadline_and_liveness(void **state)
{
	struct pgtest_fixture *f = *state;
	struct seen s = {0};
	struct pg_opts o = {.url = f->db.url,
	                    .connect_timeout_ms = 5000,
	                    .query_timeout_ms = 300,
	                    .liveness_ms = 100,
	                    .backoff_min_ms = 50,
	                    .backoff_max_ms = 100,
	                    .reconnect = 0};
	char err[256];
	struct pg *pg = pg_new(f->base, &o, on_state, &s, err, sizeof(err));
	assert_non_null(pg);
	pg_start(pg);
	assert_true(pgtest_run_until(f->base, &s.ups, 1, 5000));
	unsigned long before = pg_queries(pg);
	/* Idle: liveness queries go out. */
	int never = 0;
	pgtest_run_until(f->base, &never, 1, 450);
	assert_true(pg_queries(pg) >= before + 2);
	assert_int_equal(s.downs, 0);

	pid_t pids[64];
	size_t n = pgtest_pids(&f->db, pids, 64);
	assert_true(n > 0);
	for (size_t i = 0; i < n; i++)
		kill(pids[i], SIGSTOP);
	long long t0 = now_ms();
	int lost = pgtest_run_until(f->base, &s.downs, 1, 3000);
	long long took = now_ms() - t0;
	for (size_t i = 0; i < n; i++)
		kill(pids[i], SIGCONT);
	assert_true(lost);
	assert_true(took < 1500);
	assert_non_null(strstr(s.down_err, "no answer within 300 ms"));
	assert_false(pg_connected(pg));
	pg_free(pg);
}

static void
test_password_never_logged(void **state)
{
	struct pgtest_fixture *f = *state;
	struct seen s = {0};
	char path[1200];
	snprintf(path, sizeof(path), "%s/stderr.log", f->dir);
	/* A wrong password, so libpq's error is printed; and a log call
	 * that quotes the URL by mistake. */
	char url[600];
	snprintf(url, sizeof(url),
	         "postgres://sfrelay:Wr0ngPassw0rd@127.0.0.1:%d/"
	         "sfrelay?sslmode=disable",
	         f->db.port);
	int saved = stderr_redirect(path);
	assert_true(saved >= 0);
	log_set_level(LOG_DEBUG);
	struct pg *pg = open_pg(f, url, &s, 2000);
	pg_set_reconnect(pg, 0);
	pg_start(pg);
	char err[256];
	int rc = pg_wait(pg, 5000, err, sizeof(err));
	log_warn("test", "error", err, "url", url, NULL);
	char red[600];
	log_warn("redacted", "url", pg_url_redact(url, red, sizeof(red)), NULL);
	log_set_level(LOG_INFO);
	stderr_restore(saved);
	assert_int_equal(rc, -1);
	assert_int_equal(s.downs, 1);
	assert_non_null(strstr(s.down_err, "password authentication failed"));
	assert_null(strstr(err, "Wr0ngPassw0rd"));
	char *text = file_read(path, NULL);
	assert_non_null(text);
	assert_null(strstr(text, "Wr0ngPassw0rd"));
	assert_non_null(strstr(text, "[redacted]"));
	assert_non_null(strstr(text, "sfrelay:***@"));
	free(text);
	pg_free(pg);
}

/* A callback may free the pg; nothing runs after. */
static void
free_in_callback(void *arg, const struct pg_result *res, const char *err)
{
	struct pg **pp = arg;
	(void)res;
	(void)err;
	pg_free(*pp);
	*pp = NULL;
}

static void
test_free_from_callback(void **state)
{
	struct pgtest_fixture *f = *state;
	struct seen s = {0};
	struct pg *pg = open_connected(f, &s);
	assert_int_equal(
	    pg_query(pg, "SELECT 1", 0, NULL, free_in_callback, &pg), 0);
	/* Queued behind it: dropped without a callback. */
	assert_int_equal(pg_query(pg, "SELECT 2", 0, NULL, on_result, &s), 0);
	int never = 0;
	pgtest_run_until(f->base, &never, 1, 500);
	assert_null(pg);
	assert_int_equal(s.results, 0);
}

static void
test_bad_url(void **state)
{
	struct pgtest_fixture *f = *state;
	struct seen s = {0};
	struct pg_opts o = {.url = "postgres://u@h/d?nosuchoption=1"};
	char err[256];
	assert_null(pg_new(f->base, &o, on_state, &s, err, sizeof(err)));
	assert_non_null(strstr(err, "DATABASE_URL does not parse"));
	assert_non_null(strstr(err, "nosuchoption"));
	/* libpq quotes a bad percent-escape: here, part of the password. */
	o.url = "postgres://u:pa%zzword@h/d";
	assert_null(pg_new(f->base, &o, on_state, &s, err, sizeof(err)));
	assert_non_null(strstr(err, "DATABASE_URL does not parse"));
	assert_null(strstr(err, "zzword"));
}

int
main(void)
{
/* A test with a fresh event loop and a running server. */
#define WITH_DB(fn)                                                            \
	cmocka_unit_test_setup_teardown(fn, pgtest_test_setup,                 \
	                                pgtest_test_teardown)
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_url_redact),
	    cmocka_unit_test(test_sslmode_for),
	    WITH_DB(test_query_params_and_errors),
	    WITH_DB(test_connect_failure_reported),
	    WITH_DB(test_loss_fails_queries_and_reconnects),
	    WITH_DB(test_next_host_new_socket),
	    WITH_DB(test_deadline_and_liveness),
	    WITH_DB(test_password_never_logged),
	    WITH_DB(test_free_from_callback),
	    WITH_DB(test_bad_url),
	};
	return cmocka_run_group_tests_name("pg", tests, setup, teardown);
}
