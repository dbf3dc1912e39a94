/* The relay's own log: secret redaction and quoting of user text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "sfrelay/log.h"

static void
log_probe(const char *value)
{
	log_info("probe", "v", value, NULL);
}

/* Runs log_info(msg, "v", value) with stderr sent to a temp file and
 * returns what was written (malloc'd). */
static char *
logged(const char *value)
{
	size_t n = 0;
	char *buf = stderr_capture(log_probe, value, &n);
	assert_non_null(buf);
	assert_true(n > 0);
	return buf;
}

static int
teardown(void **state)
{
	(void)state;
	log_shutdown();
	return 0;
}

static void
test_secrets_are_redacted_without_a_limit(void **state)
{
	(void)state;
	char secret[64];

	for (int i = 0; i < 40; i++) {
		snprintf(secret, sizeof(secret), "secret-%02d-value", i);
		log_add_secret(secret);
	}
	/* The first and the last registered are both still hidden. */
	char *out = logged("a secret-00-value and secret-39-value here");
	assert_null(strstr(out, "secret-00-value"));
	assert_null(strstr(out, "secret-39-value"));
	assert_non_null(strstr(out, "a [redacted] and [redacted] here"));
	free(out);
	/* Shorter than 4 bytes: too common to hide. */
	log_add_secret("abc");
	out = logged("abc");
	assert_non_null(strstr(out, "abc"));
	free(out);
}

static void
test_newest_tokens_are_redacted_after_many_renewals(void **state)
{
	(void)state;
	char token[64], line[128];

	log_add_secret("client-secret-xyz");
	for (int i = 0; i < 100; i++) {
		snprintf(token, sizeof(token), "00Dtoken!%03d", i);
		log_add_token(token);
		/* The token just registered is always hidden. */
		snprintf(line, sizeof(line), "Bearer %s", token);
		char *out = logged(line);
		if (strstr(out, token) != NULL)
			fail_msg("token %d shown: %s", i, out);
		free(out);
	}
	/* The 8 newest are hidden; one long replaced is no longer scanned
	 * for; configuration secrets stay hidden whatever the tokens do. */
	char *out = logged("00Dtoken!092 00Dtoken!099 00Dtoken!000 "
			   "client-secret-xyz");
	assert_null(strstr(out, "00Dtoken!092"));
	assert_null(strstr(out, "00Dtoken!099"));
	assert_non_null(strstr(out, "00Dtoken!000"));
	assert_null(strstr(out, "client-secret-xyz"));
	free(out);
}

static void
test_quote_escapes_and_shortens(void **state)
{
	(void)state;
	char buf[64];

	assert_string_equal(log_quote(buf, sizeof(buf), "a\"b\\c", 5, 48),
			    "\"a\\\"b\\\\c\"");
	assert_string_equal(log_quote(buf, sizeof(buf), "x\ny\x7f", 4, 48),
			    "\"x\\x0ay\\x7f\"");
	/* Only n bytes are read: an embedded NUL is a byte like others. */
	assert_string_equal(log_quote(buf, sizeof(buf), "a\0b", 3, 48),
			    "\"a\\x00b\"");
	assert_string_equal(log_quote(buf, sizeof(buf), "abcdefgh", 8, 3),
			    "\"abc...\"");
	assert_string_equal(log_quote(buf, sizeof(buf), "", 0, 3), "\"\"");
	/* A small buffer cuts the value, never the closing quote. */
	char small[12];
	const char *q = log_quote(small, sizeof(small), "\"\"\"\"\"\"", 6, 48);
	size_t n = strlen(q);
	assert_true(n < sizeof(small));
	assert_int_equal(q[0], '"');
	assert_int_equal(q[n - 1], '"');
	assert_non_null(strstr(q, "..."));
	char tiny[2] = "x";
	assert_string_equal(log_quote(tiny, sizeof(tiny), "abc", 3, 48), "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_secrets_are_redacted_without_a_limit,
				      teardown),
	    cmocka_unit_test_teardown(
		test_newest_tokens_are_redacted_after_many_renewals, teardown),
	    cmocka_unit_test(test_quote_escapes_and_shortens),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
