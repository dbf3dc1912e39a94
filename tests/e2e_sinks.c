/*
 * The sinks end to end: the relay against sfmock's org and its strict
 * Logplex input (POST /logs), and the stdout sink's line handling.
 * Logplex: batches by count, size and age; 204 acknowledges (and moves
 * the checkpoint); 429, 503 and timeouts are retried; 400 drops the
 * batch with a warning and a count; a receiver that is down holds the
 * stream (back-pressure) and loses nothing. Lines: a 30 KB event split
 * into parts, redaction, JSON, the l2met stats line.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define CH "/topic/Sink"
#define TOKEN "t.sfmock-logplex-token"
#define LOGS_MAX (16u * 1024u * 1024u)

struct fixture {
	char *dir;
	struct proc mock, recv, relay;
	int port, recv_port;
	char url[256];
	char err[4096], out[4096], ckpt[4096];
	int ok;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->dir = harness_tmpdir("sinks");
	assert_non_null(f->dir);
	snprintf(f->err, sizeof(f->err), "%s/relay.err", f->dir);
	snprintf(f->out, sizeof(f->out), "%s/relay.out", f->dir);
	snprintf(f->ckpt, sizeof(f->ckpt), "%s/state/checkpoints.json",
		 f->dir);
	const char *flags[] = {"--channel", CH, NULL};
	f->port = sfmock_start(&f->mock, f->dir, flags);
	assert_true(f->port > 0);
	snprintf(f->url, sizeof(f->url),
		 "LOGPLEX_URL=http://token:" TOKEN "@127.0.0.1:%d/logs",
		 f->port);
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
		proc_stop(&f->recv, SIGTERM, 5000);
	harness_finish(&f->relay, &f->mock, f->dir, !f->ok);
	free(f);
	return 0;
}

/* GET of a mock endpoint; returns a malloc'd body. */
static char *
mock_get(int port, const char *path)
{
	char url[256];
	char *body = malloc(LOGS_MAX);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	long st = http_call("GET", url, NULL, NULL, body, LOGS_MAX);
	assert_int_equal(st, 200);
	return body;
}

static long
mock_post(int port, const char *path)
{
	char url[256], resp[512];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	return http_call("POST", url, NULL, "", resp, sizeof(resp));
}

/* A number after key in a JSON text (first occurrence), or -1. */
static long
json_num(const char *json, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(json, k);
	return p != NULL ? atol(p + strlen(k)) : -1;
}

static long
logs_stat(int port, const char *key)
{
	char *s = mock_get(port, "/_mock/logs/stats");
	long v = json_num(s, key);
	free(s);
	return v;
}

/* Waits until the receiver holds at least n lines with " event - ". */
static int
wait_events(int port, int n, int timeout_ms)
{
	int got = 0;
	for (long long end = now_ms() + timeout_ms; now_ms() < end;
	     sleep_ms(50)) {
		char *s = mock_get(port, "/_mock/logs");
		got = 0;
		for (char *p = s; (p = strstr(p, " event - ")) != NULL; p++)
			got++;
		free(s);
		if (got >= n)
			return got;
	}
	return got;
}

/* Counts how often each sobject.Seq 1..total occurs in text; checks
 * every one is there; returns the number of duplicates. */
static int
check_seqs(const char *text, int total)
{
	int *seen = calloc((size_t)total + 1, sizeof(int));
	int dups = 0;
	for (const char *p = text; (p = strstr(p, " sobject.Seq=")) != NULL;
	     p++) {
		int k = atoi(p + strlen(" sobject.Seq="));
		assert_true(k >= 1 && k <= total);
		if (seen[k]++)
			dups++;
	}
	for (int k = 1; k <= total; k++)
		if (!seen[k])
			fail_msg("event %d missing", k);
	free(seen);
	return dups;
}

static int
start_relay(struct fixture *f, int port, const char *const *more)
{
	const char *env[40];
	size_t n = 0;
	for (size_t i = 0; more != NULL && more[i] != NULL; i++)
		env[n++] = more[i];
	env[n++] = "SFRELAY_BACKOFF_MIN=50ms";
	env[n++] = "SFRELAY_BACKOFF_MAX=400ms";
	env[n++] = "SFRELAY_CHECKPOINT_INTERVAL=100ms";
	env[n] = NULL;
	if (relay_start(&f->relay, f->dir, port, CH, env) != 0)
		return -1;
	return wait_log(f->dir, "msg=subscribed", 1, 10000);
}

/* Fields of one stored RFC 5424 message, split at the first 7 spaces. */
static void
header_fields(const char *line, char fields[7][64])
{
	const char *p = line;
	for (int i = 0; i < 7; i++) {
		const char *sp = strchr(p, ' ');
		assert_non_null(sp);
		size_t n = (size_t)(sp - p) < 63 ? (size_t)(sp - p) : 63;
		memcpy(fields[i], p, n);
		fields[i][n] = '\0';
		p = sp + 1;
	}
}

static void
test_logplex_delivers_in_batches_of_count(void **state)
{
	struct fixture *f = *state;
	const char *env[] = {"SFRELAY_SINK=logplex", f->url, "DYNO=worker.1",
			     "SFRELAY_LOGPLEX_BATCH_LINES=50",
			     "SFRELAY_SYSLOG_FACILITY=local3",
			     "SFRELAY_SYSLOG_SEVERITY=notice",
			     "SFRELAY_STATS_INTERVAL=0", NULL};
	assert_int_equal(start_relay(f, f->port, env), 0);
	assert_int_equal(mock_publish(f->port, CH, 500), 200);
	assert_int_equal(wait_events(f->port, 500, 20000), 500);
	/* The acknowledgements (204) moved the checkpoint to the end. */
	for (long long end = now_ms() + 5000;
	     now_ms() < end && !file_contains(f->ckpt, "\"500\"");
	     sleep_ms(50))
		;
	assert_true(file_contains(f->ckpt, "\"500\""));
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);

	char *logs = mock_get(f->port, "/_mock/logs");
	assert_int_equal(check_seqs(logs, 500), 0);
	/* Every header field as the relay configured it. */
	char fields[7][64];
	header_fields(strstr(logs, "<"), fields);
	assert_string_equal(fields[0], "<157>1"); /* local3.notice: 19*8+5 */
	assert_int_equal(strlen(fields[1]), 27);
	assert_true(fields[1][26] == 'Z' && fields[1][19] == '.');
	assert_string_equal(fields[2], "worker.1");
	assert_string_equal(fields[3], "sfrelay");
	assert_true(atoi(fields[4]) > 1); /* the relay's process id */
	assert_string_equal(fields[5], "event");
	assert_string_equal(fields[6], "-");
	assert_null(strstr(logs, "\\n")); /* no newline inside a message */
	free(logs);

	/* Batches by count: never over 50, and full ones when busy. */
	char *st = mock_get(f->port, "/_mock/logs/stats");
	const char *b = strstr(st, "\"batches\":[");
	assert_non_null(b);
	int full = 0, batches = 0;
	for (b += 11; *b != ']' && *b != '\0'; b++) {
		int n = atoi(b);
		assert_true(n >= 1 && n <= 50);
		full += n == 50;
		batches++;
		while (b[1] != ',' && b[1] != ']')
			b++;
		if (b[1] == ',')
			b++;
	}
	print_message("# 500 events in %d posts, %d of them full\n", batches,
		      full);
	assert_true(batches >= 10);
	assert_true(full >= 5);
	assert_int_equal(json_num(st, "rejected"), 0);
	free(st);
	assert_false(file_contains(f->err, "dropped"));
	f->ok = 1;
}

static void
test_logplex_batches_by_age_and_size(void **state)
{
	struct fixture *f = *state;
	const char *env[] = {"SFRELAY_SINK=logplex", f->url,
			     "SFRELAY_LOGPLEX_BATCH_BYTES=2048",
			     "SFRELAY_LOGPLEX_BATCH_AGE=300ms",
			     "SFRELAY_STATS_INTERVAL=0", NULL};
	assert_int_equal(start_relay(f, f->port, env), 0);
	/* Three events: far below every size limit, sent on age. */
	long long t0 = now_ms();
	assert_int_equal(mock_publish(f->port, CH, 3), 200);
	assert_int_equal(wait_events(f->port, 3, 5000), 3);
	long long took = now_ms() - t0;
	print_message("# 3 events arrived after %lld ms (age limit 300)\n",
		      took);
	assert_true(took >= 250 && took < 3000);
	assert_int_equal(logs_stat(f->port, "accepted"), 1);

	/* 100 events of ~330-byte frames: batches close at 2 KiB. */
	assert_int_equal(mock_publish(f->port, CH, 100), 200);
	assert_int_equal(wait_events(f->port, 103, 15000), 103);
	char *st = mock_get(f->port, "/_mock/logs/stats");
	long posts = json_num(st, "accepted");
	print_message("# 100 more events in %ld posts of at most 2 KiB\n",
		      posts - 1);
	assert_true(posts - 1 >= 100 * 300 / 2400);
	/* No batch holds more than 2 KiB of frames plus the last frame. */
	const char *b = strstr(st, "\"batches\":[");
	for (b += 11; *b != ']' && *b != '\0'; b++) {
		assert_true(atoi(b) <= 2048 / 250 + 1);
		while (b[1] != ',' && b[1] != ']')
			b++;
		if (b[1] == ',')
			b++;
	}
	free(st);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	char *logs = mock_get(f->port, "/_mock/logs");
	assert_int_equal(check_seqs(logs, 103), 0);
	free(logs);
	f->ok = 1;
}

static void
test_logplex_retries_429_503_and_timeouts(void **state)
{
	struct fixture *f = *state;
	const char *env[] = {"SFRELAY_SINK=logplex", f->url,
			     "SFRELAY_HTTP_TIMEOUT=1000",
			     "SFRELAY_STATS_INTERVAL=0", NULL};
	assert_int_equal(start_relay(f, f->port, env), 0);
	assert_int_equal(mock_post(f->port,
				   "/_mock/logs/fault?status=503&count=3"),
			 200);
	assert_int_equal(mock_publish(f->port, CH, 20), 200);
	assert_int_equal(wait_events(f->port, 20, 15000), 20);
	assert_int_equal(wait_log(f->dir, "status=503", 3, 5000), 0);

	assert_int_equal(mock_post(f->port,
				   "/_mock/logs/fault?status=429&count=2"),
			 200);
	assert_int_equal(mock_publish(f->port, CH, 20), 200);
	assert_int_equal(wait_events(f->port, 40, 15000), 40);
	assert_int_equal(wait_log(f->dir, "status=429", 2, 5000), 0);

	/* A receiver slower than the time limit: the POST times out and is
	 * sent again. */
	assert_int_equal(
		mock_post(f->port,
			  "/_mock/logs/fault?status=204&count=1&delay=2500"),
		200);
	assert_int_equal(mock_publish(f->port, CH, 20), 200);
	assert_int_equal(wait_events(f->port, 60, 20000), 60);
	assert_int_equal(wait_log(f->dir, "timed out", 1, 5000), 0);
	assert_int_equal(logs_stat(f->port, "faulted"), 6);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	char *logs = mock_get(f->port, "/_mock/logs");
	assert_int_equal(check_seqs(logs, 60), 0);
	free(logs);
	assert_false(file_contains(f->err, "dropped"));
	assert_true(file_contains(f->ckpt, "\"60\""));
	/* The token never reaches the relay's log. */
	assert_false(file_contains(f->err, TOKEN));
	f->ok = 1;
}

static void
test_logplex_400_drops_with_warning_and_count(void **state)
{
	struct fixture *f = *state;
	const char *env[] = {"SFRELAY_SINK=logplex", f->url,
			     "SFRELAY_STATS_INTERVAL=400ms", NULL};
	assert_int_equal(start_relay(f, f->port, env), 0);
	/* Let the first (empty) stats line pass before the fault. */
	assert_true(wait_events(f->port, 0, 100) == 0);
	for (long long end = now_ms() + 5000;
	     now_ms() < end && logs_stat(f->port, "accepted") < 1;
	     sleep_ms(50))
		;
	assert_int_equal(mock_post(f->port,
				   "/_mock/logs/fault?status=400&count=1"),
			 200);
	assert_int_equal(mock_publish(f->port, CH, 10), 200);
	assert_int_equal(
		wait_log(f->dir, "lines are dropped", 1, 10000), 0);
	/* The warning says what the input answered. */
	assert_true(file_contains(f->err, "status=400"));
	assert_true(file_contains(f->err, "injected fault"));
	assert_int_equal(mock_publish(f->port, CH, 5), 200);
	/* The stats line counts the dropped lines. */
	char *logs = NULL;
	int seen = 0;
	for (long long end = now_ms() + 10000; now_ms() < end && !seen;
	     sleep_ms(100)) {
		free(logs);
		logs = mock_get(f->port, "/_mock/logs");
		seen = strstr(logs, " sobject.Seq=15") != NULL &&
		       strstr(logs, "count#sfrelay.dropped=0 ") != NULL &&
		       strstr(logs, "count#sfrelay.dropped=") != NULL;
		const char *d = strstr(logs, "count#sfrelay.dropped=");
		int sum = 0;
		while (d != NULL) {
			sum += atoi(d + strlen("count#sfrelay.dropped="));
			d = strstr(d + 1, "count#sfrelay.dropped=");
		}
		seen = seen && sum >= 10;
	}
	assert_true(seen);
	/* Events 11..15 came; the refused batch did not come back. */
	for (int k = 11; k <= 15; k++) {
		char needle[32];
		snprintf(needle, sizeof(needle), " sobject.Seq=%d ", k);
		char nl[32];
		snprintf(nl, sizeof(nl), " sobject.Seq=%d\n", k);
		assert_true(strstr(logs, needle) != NULL ||
			    strstr(logs, nl) != NULL);
	}
	free(logs);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	f->ok = 1;
}

/* A second sfmock as the Logplex input alone, on port (0: any). */
static int
start_receiver(struct fixture *f, int port)
{
	char bin[512], log[4200], p[16];
	harness_bin("sfmock", bin, sizeof(bin));
	snprintf(log, sizeof(log), "%s/receiver.log", f->dir);
	snprintf(p, sizeof(p), "%d", port);
	const char *argv[] = {bin, "--port", p, NULL};
	if (proc_start(&f->recv, argv, NULL, NULL, log) != 0)
		return -1;
	char line[256];
	int got = -1;
	if (proc_read_line(&f->recv, line, sizeof(line), 10000) == 0)
		sscanf(line, "sfmock listening on http://127.0.0.1:%d", &got);
	return got;
}

static long
connects(int port)
{
	char *s = mock_get(port, "/_mock/stats");
	long v = json_num(s, "connects");
	free(s);
	return v;
}

static void
test_logplex_receiver_down_holds_the_stream(void **state)
{
	struct fixture *f = *state;
	f->recv_port = start_receiver(f, 0);
	assert_true(f->recv_port > 0);
	char url[256];
	snprintf(url, sizeof(url),
		 "LOGPLEX_URL=http://token:" TOKEN "@127.0.0.1:%d/logs",
		 f->recv_port);
	const char *env[] = {"SFRELAY_SINK=logplex", url,
			     "SFRELAY_STATS_INTERVAL=0", NULL};
	assert_int_equal(start_relay(f, f->port, env), 0);
	assert_int_equal(mock_publish(f->port, CH, 100), 200);
	assert_int_equal(wait_events(f->recv_port, 100, 15000), 100);

	char *before = mock_get(f->recv_port, "/_mock/logs");
	assert_int_equal(proc_stop(&f->recv, SIGTERM, 5000), 0);
	assert_int_equal(mock_publish(f->port, CH, 50), 200);
	assert_int_equal(wait_log(f->dir, "logplex post failed", 1, 10000),
			 0);
	/* Back-pressure: the stream holds its connect while the input is
	 * down, so further events stay at Salesforce. */
	long c0 = connects(f->port);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(mock_publish(f->port, CH, 50), 200);
		sleep_ms(300);
	}
	long c1 = connects(f->port);
	print_message("# connects while the input was down: %ld\n", c1 - c0);
	assert_true(c1 - c0 <= 1);

	/* The input comes back on the same port: the held lines and the
	 * events that waited at Salesforce all arrive. */
	assert_int_equal(start_receiver(f, f->recv_port), f->recv_port);
	assert_int_equal(wait_events(f->recv_port, 350, 30000), 350);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	char *after = mock_get(f->recv_port, "/_mock/logs");
	size_t bl = strlen(before), al = strlen(after);
	char *all = malloc(bl + al + 1);
	memcpy(all, before, bl);
	memcpy(all + bl, after, al + 1);
	assert_int_equal(check_seqs(all, 450), 0);
	free(all);
	free(before);
	free(after);
	assert_false(file_contains(f->err, "dropped"));
	f->ok = 1;
}

/* ---- lines ------------------------------------------------------------ */

static long
publish_body(int port, const char *body)
{
	char url[256], resp[512];
	snprintf(url, sizeof(url),
		 "http://127.0.0.1:%d/_mock/publish?channel=%%2Ftopic%%2FSink",
		 port);
	const char *h[] = {"Content-Type: application/json", NULL};
	return http_call("POST", url, h, body, resp, sizeof(resp));
}

/* Concatenates the values of key over the parts in text, in order. */
static size_t
join_values(const char *text, const char *key, char *out, size_t max)
{
	size_t n = 0, kl = strlen(key);
	for (const char *p = text; (p = strstr(p, key)) != NULL; p += kl) {
		const char *v = p + kl;
		int q = *v == '"';
		v += q;
		while (*v != '\0' && (q ? *v != '"' : *v != ' ' && *v != '\n') &&
		       n < max)
			out[n++] = *v++;
	}
	return n;
}

static void
test_30kb_event_is_split_into_parts(void **state)
{
	struct fixture *f = *state;
	const char *env[] = {"SFRELAY_STATS_INTERVAL=0", NULL};
	assert_int_equal(start_relay(f, f->port, env), 0);
	size_t big = 30000;
	char *body = malloc(big + 64), *want = malloc(big + 1);
	for (size_t i = 0; i < big; i++)
		want[i] = (char)('a' + (i * 7) % 26);
	want[big] = '\0';
	snprintf(body, big + 64, "{\"Description\":\"%s\"}", want);
	assert_int_equal(publish_body(f->port, body), 200);
	assert_int_equal(mock_publish(f->port, CH, 1), 200);
	assert_int_equal(wait_lines(f->dir, 5, 10000), 5);
	sleep_ms(200);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	char *out = file_read(f->out, NULL);
	/* 30 KB in lines of at most 10,000 bytes: four parts, each one
	 * line within the limit, with the same id. */
	int parts = 0;
	for (char *l = out; *l != '\0';) {
		char *nl = strchr(l, '\n');
		assert_non_null(nl);
		assert_true(nl - l <= 10000);
		if (strstr(l, " part=") != NULL &&
		    strstr(l, " part=") < nl) {
			char tag[32];
			snprintf(tag, sizeof(tag), " part=%d/4 ", ++parts);
			assert_true(strstr(l, tag) != NULL &&
				    strstr(l, tag) < nl);
			assert_true(strstr(l, " id=/topic/Sink:1 ") != NULL &&
				    strstr(l, " id=/topic/Sink:1 ") < nl);
		}
		l = nl + 1;
	}
	assert_int_equal(parts, 4);
	char *got = malloc(big + 1);
	size_t n = join_values(out, "sobject.Description=", got, big);
	assert_int_equal(n, big);
	assert_memory_equal(got, want, big);
	assert_true(strstr(out, "id=/topic/Sink:2 ") != NULL);
	/* The checkpoint covers the split event once its last part went. */
	assert_true(file_contains(f->ckpt, "\"2\""));
	free(got);
	free(out);
	free(body);
	free(want);
	f->ok = 1;
}

static void
test_redaction_and_json(void **state)
{
	struct fixture *f = *state;
	const char *env[] = {"SFRELAY_REDACT=name,*secret*",
			     "SFRELAY_FORMAT=json", "SFRELAY_STATS_INTERVAL=0",
			     NULL};
	assert_int_equal(start_relay(f, f->port, env), 0);
	assert_int_equal(
		publish_body(f->port, "{\"My_Secret__c\":\"hunter2\","
				      "\"Industry\":\"Energy\"}"),
		200);
	assert_int_equal(wait_lines(f->dir, 1, 10000), 1);
	sleep_ms(100);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	char *out = file_read(f->out, NULL);
	assert_non_null(strstr(out, "\"sobject.Name\":\"[redacted]\""));
	assert_non_null(strstr(out, "\"sobject.My_Secret__c\":\"[redacted]\""));
	assert_non_null(strstr(out, "\"sobject.Industry\":\"Energy\""));
	assert_non_null(strstr(out, "\"channel\":\"/topic/Sink\""));
	assert_null(strstr(out, "hunter2"));
	assert_null(strstr(out, "Account 1"));
	free(out);
	f->ok = 1;
}

static void
test_stats_line(void **state)
{
	struct fixture *f = *state;
	const char *env[] = {"SFRELAY_STATS_INTERVAL=300ms", NULL};
	assert_int_equal(start_relay(f, f->port, env), 0);
	assert_int_equal(mock_publish(f->port, CH, 7), 200);
	/* Wait for a stats line that reports the acknowledgements' lag. */
	for (long long end = now_ms() + 10000;
	     now_ms() < end && !file_contains(f->out, "sample#sfrelay.lag_ms=");
	     sleep_ms(50))
		;
	sleep_ms(700);
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
	char *out = file_read(f->out, NULL);
	int lines = 0, events = 0;
	for (char *p = out; (p = strstr(p, "at=stats ")) != NULL; p++) {
		assert_true(p == out || p[-1] == '\n');
		lines++;
		events += atoi(strstr(p, "count#sfrelay.events=") + 21);
		assert_non_null(strstr(p, "count#sfrelay.dropped=0 "));
		assert_non_null(strstr(p, "sample#sfrelay.queue="));
		assert_non_null(strstr(p, "count#sfrelay.reconnects="));
	}
	print_message("# %d stats lines\n", lines);
	assert_true(lines >= 2);
	assert_int_equal(events, 7);
	assert_non_null(strstr(out, "sample#sfrelay.lag_ms="));
	free(out);
	f->ok = 1;
}

static void
test_sink_settings_are_checked(void **state)
{
	struct fixture *f = *state;
	const char *env[] = {"SFRELAY_SINK=logplex", NULL};
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, CH, env), 0);
	assert_int_equal(proc_wait(&f->relay, 10000), 78);
	assert_true(file_contains(f->err, "SFRELAY_SINK: logplex needs "
					  "LOGPLEX_URL"));
	const char *env2[] = {"SFRELAY_SINK=syslog",
			      "SYSLOG_URL=tcp://127.0.0.1:1", NULL};
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, CH, env2),
			 0);
	assert_int_equal(proc_wait(&f->relay, 10000), 78);
	assert_true(file_contains(f->err, "SYSLOG_URL: "));
	const char *env3[] = {"SFRELAY_SINK=logplex",
			      "LOGPLEX_URL=https://nobody.example/logs", NULL};
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, CH, env3),
			 0);
	assert_int_equal(proc_wait(&f->relay, 10000), 78);
	assert_true(file_contains(f->err, "LOGPLEX_URL: needs credentials"));
	f->ok = 1;
}

/* stdout closed under the relay: a clear error and exit 75, no spin. */
static void
test_stdout_closed_is_an_error(void **state)
{
	struct fixture *f = *state;
	char bin[512], login[128], st[4200], err[4200];
	harness_bin("sfrelay", bin, sizeof(bin));
	snprintf(login, sizeof(login), "SFDC_LOGIN_URL=http://127.0.0.1:%d",
		 f->port);
	snprintf(st, sizeof(st), "SFRELAY_STATE_DIR=%s/state", f->dir);
	snprintf(err, sizeof(err), "%s/relay.err", f->dir);
	const char *env[] = {login,
			     st,
			     "SFRELAY_CHANNELS=" CH,
			     "SFDC_CLIENT_ID=sfmock-client-id",
			     "SFDC_CLIENT_SECRET=sfmock-client-secret",
			     "SFDC_USERNAME=relay@sfmock.test",
			     "SFDC_PASSWORD=sfmock-password",
			     "SFRELAY_STATS_INTERVAL=0",
			     NULL};
	const char *argv[] = {bin, NULL};
	/* stdout is a pipe whose reading end is closed at once. */
	assert_int_equal(proc_start(&f->relay, argv, env, NULL, err), 0);
	close(f->relay.out_fd);
	f->relay.out_fd = -1;
	assert_int_equal(wait_log(f->dir, "msg=subscribed", 1, 10000), 0);
	assert_int_equal(mock_publish(f->port, CH, 3), 200);
	long long t0 = now_ms();
	assert_int_equal(proc_wait(&f->relay, 10000), 75);
	print_message("# exited 75 %lld ms after the events came\n",
		      now_ms() - t0);
	assert_true(file_contains(f->err, "msg=\"sink failed\" sink=stdout"));
	assert_true(file_contains(f->err, "Broken pipe"));
	f->ok = 1;
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_logplex_delivers_in_batches_of_count, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_logplex_batches_by_age_and_size, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_logplex_retries_429_503_and_timeouts, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_logplex_400_drops_with_warning_and_count, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_logplex_receiver_down_holds_the_stream, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_30kb_event_is_split_into_parts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_redaction_and_json, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stats_line, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_sink_settings_are_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_stdout_closed_is_an_error, setup, teardown),
	};
	return cmocka_run_group_tests_name("e2e_sinks", tests, NULL, NULL);
}
