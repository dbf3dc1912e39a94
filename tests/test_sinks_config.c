/* The sinks' settings in the configuration table: parsing, the
 * per-sink cross-checks, and that LOGPLEX_URL's token is never shown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sfrelay/config.h"
#include "sfrelay/log.h"

#define TOKEN "t.0123456789abcdef"

/* A valid base environment plus extra "K=V" entries (extras first:
 * the first occurrence of a name wins). */
static int
load(struct config *cfg, const char *const *extra, char *err, size_t len)
{
	const char *env[40];
	size_t n = 0;
	for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
		env[n++] = extra[i];
	env[n++] = "SFDC_CLIENT_ID=id";
	env[n++] = "SFDC_CLIENT_SECRET=secret-value";
	env[n++] = "SFDC_USERNAME=u@example.com";
	env[n++] = "SFDC_PASSWORD=password-value";
	env[n++] = "SFRELAY_CHANNELS=/topic/X";
	env[n] = NULL;
	return config_load(cfg, env, err, len);
}

static void
test_defaults(void **state)
{
	(void)state;
	struct config cfg;
	char err[2048];
	assert_int_equal(load(&cfg, NULL, err, sizeof(err)), 0);
	assert_int_equal(cfg.sink, CONFIG_SINK_STDOUT);
	assert_null(cfg.logplex_url);
	assert_null(cfg.syslog_url);
	assert_int_equal(cfg.syslog_facility, 1); /* user */
	assert_string_equal(cfg.syslog_app_name, "sfrelay");
	assert_int_equal(cfg.max_line, 0); /* the sink's own */
	assert_int_equal(cfg.nredact, 0);
	assert_int_equal(cfg.stats_interval_ms, 60000);
	assert_int_equal(cfg.logplex_batch_lines, 500);
	assert_int_equal(cfg.logplex_batch_bytes, 1048576);
	assert_int_equal(cfg.logplex_batch_age_ms, 250);
	config_clear(&cfg);
}

static void
test_good_values(void **state)
{
	(void)state;
	struct config cfg;
	char err[2048];
	const char *env[] = {
		"SFRELAY_SINK=syslog",
		"SYSLOG_URL=syslog+tls://logs.example.com:6514",
		"SFRELAY_SYSLOG_FACILITY=local7",
		"SFRELAY_SYSLOG_SEVERITY=notice",
		"SFRELAY_SYSLOG_APP_NAME=my-relay",
		"DYNO=worker.2",
		"SFRELAY_MAX_LINE=4096",
		"SFRELAY_REDACT=Password, *token* ,sobject.SSN__c",
		"SFRELAY_STATS_INTERVAL=10s",
		"SFRELAY_LOGPLEX_BATCH_AGE=1s",
		NULL,
	};
	if (load(&cfg, env, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg.sink, CONFIG_SINK_SYSLOG);
	assert_string_equal(cfg.syslog_url,
			    "syslog+tls://logs.example.com:6514");
	assert_int_equal(cfg.syslog_facility, 23);
	assert_int_equal(cfg.syslog_severity, 5);
	assert_string_equal(cfg.syslog_app_name, "my-relay");
	assert_string_equal(cfg.dyno, "worker.2");
	assert_int_equal(cfg.max_line, 4096);
	assert_int_equal(cfg.nredact, 3);
	assert_string_equal(cfg.redact[1], "*token*");
	assert_int_equal(cfg.stats_interval_ms, 10000);
	assert_int_equal(cfg.logplex_batch_age_ms, 1000);
	config_clear(&cfg);

	const char *lp[] = {"SFRELAY_SINK=logplex",
			    "LOGPLEX_URL=https://token:" TOKEN
			    "@logs.example.com/logs",
			    "SYSLOG_URL=syslog://[::1]:514", NULL};
	if (load(&cfg, lp, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg.sink, CONFIG_SINK_LOGPLEX);
	assert_non_null(strstr(cfg.logplex_url, TOKEN));
	config_clear(&cfg);
	log_shutdown();
}

static void
test_bad_values(void **state)
{
	(void)state;
	static const struct {
		const char *env[3];
		const char *want; /* a line of err */
	} cases[] = {
		{{"SFRELAY_SINK=kafka"}, "SFRELAY_SINK: \"kafka\" is not one of"},
		{{"SFRELAY_SINK=logplex"},
		 "SFRELAY_SINK: logplex needs LOGPLEX_URL"},
		{{"SFRELAY_SINK=syslog"}, "SFRELAY_SINK: syslog needs SYSLOG_URL"},
		{{"LOGPLEX_URL=https://logs.example.com/logs"},
		 "LOGPLEX_URL: needs credentials"},
		{{"LOGPLEX_URL=ftp://token:" TOKEN "@h/logs"},
		 "LOGPLEX_URL: must start with https://"},
		{{"LOGPLEX_URL=https://token:" TOKEN "@/logs"},
		 "LOGPLEX_URL: has an invalid host or port"},
		{{"LOGPLEX_URL=https://token:" TOKEN "@h:99999/logs"},
		 "LOGPLEX_URL: has an invalid host or port"},
		{{"SYSLOG_URL=tcp://h:514"},
		 "SYSLOG_URL: \"tcp://h:514\" must start with syslog://"},
		{{"SYSLOG_URL=syslog://h"}, "SYSLOG_URL: \"syslog://h\" needs host:port"},
		{{"SYSLOG_URL=syslog://h:0"}, "needs host:port"},
		{{"SYSLOG_URL=syslog://h:514/x"}, "must not have a path"},
		{{"SFRELAY_SYSLOG_FACILITY=local8"}, "is not one of: kern, user"},
		{{"SFRELAY_SYSLOG_SEVERITY=loud"}, "is not one of: emerg, alert"},
		{{"SFRELAY_SYSLOG_APP_NAME=my relay"},
		 "must be 1 to 48 printable ASCII"},
		{{"SFRELAY_MAX_LINE=100"}, "SFRELAY_MAX_LINE: \"100\" is out of range"},
		{{"SFRELAY_REDACT=*"}, "would redact every field"},
		{{"SFRELAY_REDACT=a,,b"}, "SFRELAY_REDACT: item 2 is empty"},
		{{"SFRELAY_STATS_INTERVAL=-1"}, "is negative"},
		{{"SFRELAY_LOGPLEX_BATCH_LINES=0"}, "out of range"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config cfg;
		char err[2048];
		const char *env[3] = {cases[i].env[0], cases[i].env[1], NULL};
		assert_int_equal(load(&cfg, env, err, sizeof(err)), -1);
		if (strstr(err, cases[i].want) == NULL)
			fail_msg("case %zu: want \"%s\" in:\n%s", i,
				 cases[i].want, err);
		/* The drain token never appears in any message. */
		assert_null(strstr(err, TOKEN));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_good_values),
		cmocka_unit_test(test_bad_values),
	};
	return cmocka_run_group_tests_name("sinks_config", tests, NULL, NULL);
}
