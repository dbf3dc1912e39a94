/*
 * End to end: sfmock and sfrelay on loopback. Events are published the
 * way an org produces them (REST sobjects for platform events, the mock's
 * publish endpoint for PushTopic events); the relay's stdout must hold
 * exactly one correct line per event, in publish order per channel.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define TOPIC "/topic/E2eAccounts"
#define PLATFORM "/event/E2e_Order__e"
#define PER_CHANNEL 500
#define ROUNDS 10

static char *
env_kv(const char *k, const char *v)
{
	size_t n = strlen(k) + strlen(v) + 2;
	char *s = malloc(n);
	snprintf(s, n, "%s=%s", k, v);
	return s;
}

/* Starts sfrelay with the mock's default identity plus overrides. */
static int
start_relay(struct e2e_fixture *f, const char *channels, const char *password)
{
	char bin[512], state[4200], base[64];
	harness_bin("sfrelay", bin, sizeof(bin));
	snprintf(state, sizeof(state), "%s/state", f->dir);
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", f->port);
	char *env[] = {
	    env_kv("SFRELAY_STATE_DIR", state),
	    env_kv("SFDC_LOGIN_URL", base),
	    env_kv("SFDC_CLIENT_ID", "sfmock-client-id"),
	    env_kv("SFDC_CLIENT_SECRET", "sfmock-client-secret"),
	    env_kv("SFDC_USERNAME", "relay@sfmock.test"),
	    env_kv("SFDC_PASSWORD", password),
	    env_kv("SFRELAY_CHANNELS", channels),
	    env_kv("SFRELAY_LOG_LEVEL", "debug"),
	    NULL,
	};
	const char *argv[] = {bin, NULL};
	int rc = proc_start(&f->relay, argv, (const char *const *)env, f->out,
			    f->err);
	for (size_t i = 0; env[i] != NULL; i++)
		free(env[i]);
	return rc;
}

static int
setup(void **state)
{
	struct e2e_fixture *f;
	assert_int_equal(e2e_setup(state, "e2e"), 0);
	f = *state;
	const char *flags[] = {"--channel", TOPIC, "--channel", PLATFORM,
			       NULL};
	f->port = sfmock_start(&f->mock, f->dir, flags);
	assert_true(f->port > 0);
	return 0;
}

/* Waits until the relay logged n "subscribed" lines and its connect is
 * held by the mock, so events published from now on reach it. */
static int
wait_subscribed(struct e2e_fixture *f, int n)
{
	for (long long end = now_ms() + 15000; now_ms() < end; sleep_ms(20)) {
		char *log = file_read(f->err, NULL);
		int count = 0;
		for (char *p = log; p != NULL && (p = strstr(p, "msg=subscribed"));
		     p++)
			count++;
		free(log);
		if (count >= n)
			return 0;
	}
	return -1;
}

static void
get_token(struct e2e_fixture *f, char *token, size_t len)
{
	char url[128], resp[4096];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/services/oauth2/token",
	         f->port);
	long st = http_call(
		"POST", url, NULL,
		"grant_type=password&client_id=sfmock-client-id&client_secret="
		"sfmock-client-secret&username=relay%40sfmock.test&password="
		"sfmock-password",
		resp, sizeof(resp));
	assert_int_equal(st, 200);
	char *p = strstr(resp, "\"access_token\":\"");
	assert_non_null(p);
	p += strlen("\"access_token\":\"");
	char *q = strchr(p, '"');
	assert_non_null(q);
	assert_true((size_t)(q - p) < len);
	memcpy(token, p, (size_t)(q - p));
	token[q - p] = '\0';
}

static void
publish_topic(struct e2e_fixture *f, int count)
{
	char url[256], resp[512];
	snprintf(url, sizeof(url),
	         "http://127.0.0.1:%d/_mock/publish?channel=%%2Ftopic%%2F"
	         "E2eAccounts&count=%d",
	         f->port, count);
	assert_int_equal(http_call("POST", url, NULL, "", resp, sizeof(resp)),
			 200);
}

static void
publish_platform(struct e2e_fixture *f, const char *token, int seq)
{
	char url[256], auth[1024], body[256], resp[512];
	snprintf(
	    url, sizeof(url),
	    "http://127.0.0.1:%d/services/data/v61.0/sobjects/E2e_Order__e",
	    f->port);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	snprintf(body, sizeof(body),
		 "{\"OrderSeq__c\":%d,\"Note__c\":\"order \\\"%d\\\" ok\"}",
		 seq, seq);
	const char *hdr[] = {auth, "Content-Type: application/json", NULL};
	assert_int_equal(http_call("POST", url, hdr, body, resp, sizeof(resp)),
			 201);
}

/* Value of key in a logfmt line (bare or quoted, unescaped only for the
 * simple cases this test publishes). */
static int
field(const char *line, const char *key, char *out, size_t len)
{
	char pat[128];
	snprintf(pat, sizeof(pat), " %s=", key);
	const char *p = strstr(line, pat);
	if (p == NULL)
		return -1;
	p += strlen(pat);
	size_t n = 0;
	if (*p == '"') {
		p++;
		while (*p != '\0' && *p != '"' && n + 1 < len) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			out[n++] = *p++;
		}
	} else {
		while (*p != '\0' && *p != ' ' && *p != '\n' && n + 1 < len)
			out[n++] = *p++;
	}
	out[n] = '\0';
	return 0;
}

static void
check_line(const char *line, const char *channel, int seq)
{
	char v[512], id[600];
	assert_int_equal(strncmp(line, "at=event src=stream ", 20), 0);
	assert_int_equal(field(line, "channel", v, sizeof(v)), 0);
	assert_string_equal(v, channel);
	assert_int_equal(field(line, "replay_id", v, sizeof(v)), 0);
	assert_true(atol(v) > 0);
	snprintf(id, sizeof(id), "%s:%s", channel, v);
	assert_int_equal(field(line, "id", v, sizeof(v)), 0);
	assert_string_equal(v, id);
	assert_int_equal(field(line, "created", v, sizeof(v)), 0);
	assert_int_equal(strlen(v), 24); /* 2026-11-26T19:27:53.000Z */
	if (strcmp(channel, TOPIC) == 0) {
		char want[64];
		assert_int_equal(field(line, "sobject.Seq", v, sizeof(v)), 0);
		assert_int_equal(atoi(v), seq);
		snprintf(want, sizeof(want), "Account %d", seq);
		assert_int_equal(field(line, "sobject.Name", v, sizeof(v)), 0);
		assert_string_equal(v, want);
		assert_int_equal(field(line, "event_type", v, sizeof(v)), 0);
		assert_string_equal(v, "created");
	} else {
		char want[64];
		assert_int_equal(
			field(line, "payload.OrderSeq__c", v, sizeof(v)), 0);
		assert_int_equal(atoi(v), seq);
		snprintf(want, sizeof(want), "order \"%d\" ok", seq);
		assert_int_equal(field(line, "payload.Note__c", v, sizeof(v)),
				 0);
		assert_string_equal(v, want);
		assert_int_equal(
			field(line, "payload.CreatedById", v, sizeof(v)), 0);
	}
}

static void
test_thousand_events_two_channels(void **state)
{
	struct e2e_fixture *f = *state;
	char token[512];
	assert_int_equal(start_relay(f, TOPIC "," PLATFORM, "sfmock-password"),
			 0);
	assert_int_equal(wait_subscribed(f, 2), 0);
	get_token(f, token, sizeof(token));

	/* Interleave the channels so their events share connect replies. */
	int per_round = PER_CHANNEL / ROUNDS, seq = 0;
	for (int r = 0; r < ROUNDS; r++) {
		publish_topic(f, per_round);
		for (int i = 0; i < per_round; i++)
			publish_platform(f, token, ++seq);
	}
	size_t want = 2 * PER_CHANNEL, got = 0;
	for (long long end = now_ms() + 30000;
	     now_ms() < end && (got = file_count_lines(f->out)) < want;
	     sleep_ms(20))
		;
	sleep_ms(300); /* a straggler would show up as line 1001 */
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 25000), 0);

	size_t len = 0;
	char *all = file_read(f->out, &len);
	assert_non_null(all);
	int topic_seq = 0, platform_seq = 0;
	size_t lines = 0;
	for (char *line = strtok(all, "\n"); line != NULL;
	     line = strtok(NULL, "\n"), lines++) {
		char ch[256];
		assert_int_equal(field(line, "channel", ch, sizeof(ch)), 0);
		if (strcmp(ch, TOPIC) == 0)
			check_line(line, TOPIC, ++topic_seq);
		else
			check_line(line, PLATFORM, ++platform_seq);
	}
	free(all);
	assert_int_equal(lines, want);
	assert_int_equal(topic_seq, PER_CHANNEL);
	assert_int_equal(platform_seq, PER_CHANNEL);
	assert_true(file_contains(f->err, "msg=stopped"));
	/* The password and the token never reach the relay's logs. */
	assert_false(file_contains(f->err, "sfmock-password"));
	assert_false(file_contains(f->err, token));
	f->ok = 1;
}

static void
test_bad_credentials_exit_77(void **state)
{
	struct e2e_fixture *f = *state;
	assert_int_equal(start_relay(f, TOPIC, "wrong-password"), 0);
	assert_int_equal(proc_wait(&f->relay, 15000), 77);
	assert_true(file_contains(f->err, "authentication failure"));
	assert_false(file_contains(f->err, "wrong-password"));
	assert_int_equal(file_count_lines(f->out), 0);
	f->ok = 1;
}

static void
test_sigterm_when_idle_exits_0(void **state)
{
	struct e2e_fixture *f = *state;
	assert_int_equal(start_relay(f, TOPIC, "sfmock-password"), 0);
	assert_int_equal(wait_subscribed(f, 1), 0);
	sleep_ms(200); /* let the long poll be held */
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 10000), 0);
	assert_true(file_contains(f->err, "msg=stopped"));
	f->ok = 1;
}

static void
test_bad_config_exit_78(void **state)
{
	struct e2e_fixture *f = *state;
	char bin[512];
	harness_bin("sfrelay", bin, sizeof(bin));
	const char *env[] = {"SFDC_LOGIN_URL=ftp://nope",
			     "SFRELAY_CHANNELS=/bogus/X", NULL};
	const char *argv[] = {bin, NULL};
	assert_int_equal(proc_start(&f->relay, argv, env, f->out, f->err), 0);
	assert_int_equal(proc_wait(&f->relay, 10000), 78);
	/* Every problem, each naming its variable. */
	assert_true(file_contains(f->err, "SFDC_LOGIN_URL"));
	assert_true(file_contains(f->err, "SFRELAY_CHANNELS"));
	assert_true(file_contains(f->err, "SFDC_CLIENT_ID"));
	assert_true(file_contains(f->err, "SFDC_PASSWORD"));
	f->ok = 1;
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_thousand_events_two_channels,
	                                    setup, e2e_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_credentials_exit_77, setup,
	                                    e2e_teardown),
	    cmocka_unit_test_setup_teardown(test_sigterm_when_idle_exits_0,
	                                    setup, e2e_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_config_exit_78, setup,
	                                    e2e_teardown),
	};
	return cmocka_run_group_tests_name("e2e_stream", tests, NULL, NULL);
}
