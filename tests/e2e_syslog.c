/*
 * The syslog sink against real receivers: rsyslog and syslog-ng, each
 * over plain TCP and over TLS (a CA made for the test), started by the
 * test on a free loopback port with their own configuration
 * (scripts/syslog-receiver.sh) and stopped at the end. Each receiver
 * writes the fields it parsed from every message; the test checks each
 * one, and that a receiver restart loses no event.
 */
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define CH "/topic/Syslog"

struct receiver {
	const char *kind; /* rsyslog | syslog-ng */
	const char *mode; /* tcp | tls */
};

static const struct receiver rsyslog_tcp = {"rsyslog", "tcp"};
static const struct receiver rsyslog_tls = {"rsyslog", "tls"};
static const struct receiver syslogng_tcp = {"syslog-ng", "tcp"};
static const struct receiver syslogng_tls = {"syslog-ng", "tls"};

struct fixture {
	const struct receiver *rc;
	char *dir;
	struct proc mock, recv, relay;
	int port, recv_port;
	char received[4200], recv_err[4200], err[4200];
	int ok;
};

static int
free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	int port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static int
port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static int
start_receiver(struct fixture *f)
{
	char p[16], out[4200];
	snprintf(p, sizeof(p), "%d", f->recv_port);
	snprintf(out, sizeof(out), "%s/receiver.out", f->dir);
	const char *argv[] = {"/bin/bash", "scripts/syslog-receiver.sh",
			      f->rc->kind, f->rc->mode, f->dir, p, NULL};
	/* HOME: where scripts/syslog-ng-local.sh keeps its unpacked copy. */
	char home[4200];
	const char *h = getenv("HOME");
	snprintf(home, sizeof(home), "HOME=%s", h != NULL ? h : "/tmp");
	const char *env[] = {home, NULL};
	if (proc_start(&f->recv, argv, env, out, f->recv_err) != 0)
		return -1;
	/* The first syslog-ng run may unpack the package first. */
	for (long long end = now_ms() + 60000; now_ms() < end; sleep_ms(50))
		if (port_open(f->recv_port))
			return 0;
	return -1;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->rc = *state;
	f->dir = harness_tmpdir("syslog");
	assert_non_null(f->dir);
	snprintf(f->received, sizeof(f->received), "%s/received.log", f->dir);
	snprintf(f->recv_err, sizeof(f->recv_err), "%s/receiver.err", f->dir);
	snprintf(f->err, sizeof(f->err), "%s/relay.err", f->dir);
	char cmd[4400];
	snprintf(cmd, sizeof(cmd), "scripts/test-ca.sh %s", f->dir);
	assert_int_equal(system(cmd), 0);
	const char *flags[] = {"--channel", CH, NULL};
	f->port = sfmock_start(&f->mock, f->dir, flags);
	assert_true(f->port > 0);
	f->recv_port = free_port();
	assert_true(f->recv_port > 0);
	assert_int_equal(start_receiver(f), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	if (f->relay.pid > 0)
		proc_stop(&f->relay, SIGKILL, 5000);
	if (f->recv.pid > 0)
		proc_stop(&f->recv, SIGTERM, 10000);
	harness_finish(&f->relay, &f->mock, f->dir, !f->ok);
	free(f);
	return 0;
}

static int
start_relay(struct fixture *f, const char *ca, const char *stats)
{
	char url[128], cafile[4300];
	snprintf(url, sizeof(url), "SYSLOG_URL=syslog%s://127.0.0.1:%d",
		 strcmp(f->rc->mode, "tls") == 0 ? "+tls" : "", f->recv_port);
	snprintf(cafile, sizeof(cafile), "SFRELAY_CA_FILE=%s/%s", f->dir, ca);
	const char *env[] = {"SFRELAY_SINK=syslog",
			     url,
			     cafile,
			     "DYNO=web.1",
			     "SFRELAY_SYSLOG_FACILITY=local4",
			     "SFRELAY_SYSLOG_APP_NAME=sfrelay-test",
			     stats,
			     "SFRELAY_BACKOFF_MIN=50ms",
			     "SFRELAY_BACKOFF_MAX=400ms",
			     "SFRELAY_CHECKPOINT_INTERVAL=100ms",
			     NULL};
	return relay_start(&f->relay, f->dir, f->port, CH, env);
}

/* Distinct events (by sobject.Seq) the receiver wrote; *dups counts
 * repeats. Checks that each is in 1..total. */
static int
received_events(const struct fixture *f, int total, int *dups)
{
	char *s = file_read(f->received, NULL);
	char *seen = calloc((size_t)total + 2, 1);
	int n = 0, d = 0;
	for (char *p = s; p != NULL && (p = strstr(p, " sobject.Seq=")); p++) {
		int k = atoi(p + 13);
		assert_true(k >= 1 && k <= total);
		if (seen[k])
			d++;
		else
			n++;
		seen[k] = 1;
	}
	free(seen);
	free(s);
	if (dups != NULL)
		*dups = d;
	return n;
}

static int
wait_received(const struct fixture *f, int want, int total, int timeout_ms)
{
	int n = 0;
	for (long long end = now_ms() + timeout_ms; now_ms() < end;
	     sleep_ms(50))
		if ((n = received_events(f, total, NULL)) >= want)
			break;
	return n;
}

static int
is_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

static void
test_every_field_parsed(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(start_relay(f, "ca.pem", "SFRELAY_STATS_INTERVAL=300ms"),
			 0);
	assert_int_equal(wait_log(f->dir, "msg=subscribed", 1, 10000), 0);
	assert_int_equal(wait_log(f->dir, "msg=\"syslog connected\"", 1, 10000),
			 0);
	assert_int_equal(mock_publish(f->port, CH, 200), 200);
	assert_int_equal(wait_received(f, 200, 200, 20000), 200);
	sleep_ms(400); /* one more stats line */
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);

	char *all = file_read(f->received, NULL);
	int events = 0, stats = 0;
	for (char *line = strtok(all, "\n"); line != NULL;
	     line = strtok(NULL, "\n")) {
		char *fld[8];
		char *p = line;
		for (int i = 0; i < 7; i++) {
			fld[i] = p;
			p = strchr(p, '|');
			assert_non_null(p);
			*p++ = '\0';
		}
		fld[7] = p;
		/* local4.info: 20 * 8 + 6 */
		assert_string_equal(fld[0], "166");
		/* 2026-11-26T19:27:53.123456 then Z or +00:00 */
		assert_true(strlen(fld[1]) >= 27);
		assert_true(fld[1][10] == 'T' && fld[1][19] == '.');
		assert_true(is_digits(fld[1] + 20, 6));
		assert_true(strcmp(fld[1] + 26, "Z") == 0 ||
			    strcmp(fld[1] + 26, "+00:00") == 0);
		assert_string_equal(fld[2], "web.1");
		assert_string_equal(fld[3], "sfrelay-test");
		assert_true(is_digits(fld[4], strlen(fld[4])) &&
			    atoi(fld[4]) > 1);
		/* rsyslog shows NILVALUE structured data as "-",
		 * syslog-ng as nothing. */
		assert_true(strcmp(fld[6], "-") == 0 || fld[6][0] == '\0');
		if (strcmp(fld[5], "event") == 0) {
			assert_memory_equal(fld[7], "at=event src=stream "
						    "channel=/topic/Syslog id=",
					    45);
			events++;
		} else {
			assert_string_equal(fld[5], "stats");
			assert_memory_equal(fld[7], "at=stats ", 9);
			stats++;
		}
	}
	free(all);
	print_message("# %s over %s: %d events, %d stats lines, every field "
		      "parsed\n",
		      f->rc->kind, f->rc->mode, events, stats);
	assert_int_equal(events, 200);
	assert_true(stats >= 1);
	int dups = 0;
	assert_int_equal(received_events(f, 200, &dups), 200);
	assert_int_equal(dups, 0);
	/* The relay ended its TLS stream with close_notify: rsyslog
	 * reports a stream cut after the handshake from osslRecordRecv
	 * (the readiness probe's plain connect fails earlier, in the
	 * handshake). */
	sleep_ms(200);
	assert_false(file_contains(f->recv_err, "osslRecordRecv"));
	f->ok = 1;
}

static void
test_receiver_restart_loses_nothing(void **state)
{
	struct fixture *f = *state;
	const int total = 1250;
	assert_int_equal(start_relay(f, "ca.pem", "SFRELAY_STATS_INTERVAL=0"),
			 0);
	assert_int_equal(wait_log(f->dir, "msg=subscribed", 1, 10000), 0);
	assert_int_equal(mock_publish(f->port, CH, 100), 200);
	assert_int_equal(wait_received(f, 100, total, 20000), 100);

	/* Stop the receiver in the middle of a burst: frames are in the
	 * kernel's buffers and in flight when it goes. */
	for (int i = 0; i < 20; i++) {
		assert_int_equal(mock_publish(f->port, CH, 50), 200);
		if (i == 6)
			assert_true(proc_stop(&f->recv, SIGTERM, 10000) >= 0);
		sleep_ms(20);
	}
	int before = received_events(f, total, NULL);
	assert_int_equal(wait_log(f->dir, "syslog connection lost", 1, 10000),
			 0);
	assert_int_equal(mock_publish(f->port, CH, 100), 200);
	sleep_ms(500);
	assert_int_equal(start_receiver(f), 0);
	assert_int_equal(mock_publish(f->port, CH, 50), 200);
	int n = wait_received(f, total, total, 60000);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	int dups = 0;
	n = received_events(f, total, &dups);
	print_message("# %s over %s, stopped after %d of %d events: all %d "
		      "arrived, %d duplicates\n",
		      f->rc->kind, f->rc->mode, before, total, n, dups);
	assert_int_equal(n, total);
	assert_true(file_count(f->err, "msg=\"syslog connected\"") >= 2);
	f->ok = 1;
}

static void
test_tls_peer_is_verified(void **state)
{
	struct fixture *f = *state;
	/* A CA that did not sign the receiver's certificate. */
	assert_int_equal(
		start_relay(f, "other-ca.pem", "SFRELAY_STATS_INTERVAL=0"), 0);
	assert_int_equal(
		wait_log(f->dir, "TLS verification failed", 1, 15000), 0);
	assert_false(file_contains(f->err, "msg=\"syslog connected\""));
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	assert_int_equal(received_events(f, 10, NULL), 0);
	f->ok = 1;
}

#define PER_RECEIVER(fn, rc)                                                \
	cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown,       \
						 (void *)(uintptr_t)&rc)

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		PER_RECEIVER(test_every_field_parsed, rsyslog_tcp),
		PER_RECEIVER(test_every_field_parsed, rsyslog_tls),
		PER_RECEIVER(test_every_field_parsed, syslogng_tcp),
		PER_RECEIVER(test_every_field_parsed, syslogng_tls),
		PER_RECEIVER(test_receiver_restart_loses_nothing, rsyslog_tcp),
		PER_RECEIVER(test_receiver_restart_loses_nothing, rsyslog_tls),
		PER_RECEIVER(test_receiver_restart_loses_nothing,
			     syslogng_tcp),
		PER_RECEIVER(test_receiver_restart_loses_nothing,
			     syslogng_tls),
		PER_RECEIVER(test_tls_peer_is_verified, rsyslog_tls),
	};
	return cmocka_run_group_tests_name("e2e_syslog", tests, NULL, NULL);
}
