/* Token reply decoding and form encoding (the pure parts of auth). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "sfrelay/auth.h"

struct token_case {
	const char *name;
	long status;
	const char *body;
	enum auth_status want;
	const char *want_token;
	const char *want_url;
	const char *err_has;
};

static const struct token_case cases[] = {
	{"success", 200,
	 "{\"access_token\":\"00Dxx!AQ.tok\",\"instance_url\":"
	 "\"https://acme.my.salesforce.com/\",\"id\":\"https://login/id/1/2\","
	 "\"token_type\":\"Bearer\",\"issued_at\":\"1764185273000\","
	 "\"signature\":\"abc=\"}",
	 AUTH_OK, "00Dxx!AQ.tok", "https://acme.my.salesforce.com", NULL},
	{"invalid_grant", 400,
	 "{\"error\":\"invalid_grant\",\"error_description\":"
	 "\"authentication failure\"}",
	 AUTH_PERMANENT, NULL, NULL, "authentication failure"},
	{"invalid_client_id", 400,
	 "{\"error\":\"invalid_client_id\",\"error_description\":\"client "
	 "identifier invalid\"}",
	 AUTH_PERMANENT, NULL, NULL, "invalid_client_id"},
	{"unknown oauth error is temporary", 400,
	 "{\"error\":\"server_busy\",\"error_description\":\"later\"}",
	 AUTH_TEMPORARY, NULL, NULL, "server_busy"},
	{"5xx with invalid_grant is temporary", 503,
	 "{\"error\":\"invalid_grant\"}", AUTH_TEMPORARY, NULL, NULL, "503"},
	{"html error page", 502, "<html>bad gateway</html>", AUTH_TEMPORARY,
	 NULL, NULL, "not a JSON object"},
	{"truncated", 200, "{\"access_token\":\"x\",\"instance_u",
	 AUTH_TEMPORARY, NULL, NULL, "not a JSON object"},
	{"no instance_url", 200, "{\"access_token\":\"tok\"}", AUTH_TEMPORARY,
	 NULL, NULL, "instance_url"},
	{"instance_url not http", 200,
	 "{\"access_token\":\"tok\",\"instance_url\":\"ftp://x\"}",
	 AUTH_TEMPORARY, NULL, NULL, "instance_url"},
	{"empty token", 200,
	 "{\"access_token\":\"\",\"instance_url\":\"https://x\"}",
	 AUTH_TEMPORARY, NULL, NULL, "access_token"},
	{"token not a string", 200,
	 "{\"access_token\":5,\"instance_url\":\"https://x\"}", AUTH_TEMPORARY,
	 NULL, NULL, "access_token"},
	{"control bytes in the description", 400,
	 "{\"error\":\"invalid_grant\",\"error_description\":\"bad\\r\\nat=forged\"}",
	 AUTH_PERMANENT, NULL, NULL, "bad  at=forged"},
	{"array", 200, "[]", AUTH_TEMPORARY, NULL, NULL, "not a JSON object"},
	{"deep nesting", 200,
	 "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]"
	 "]]]]]]]]]]]]]]]]]}",
	 AUTH_TEMPORARY, NULL, NULL, "not a JSON object"},
};

static void
test_parse_token_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct token_case *c = &cases[i];
		char *tok = (char *)1, *url = (char *)1, err[256] = "";
		enum auth_status st =
			auth_parse_token(c->status, c->body, strlen(c->body),
					 &tok, &url, err, sizeof(err));
		print_message("case: %s\n", c->name);
		assert_int_equal(st, c->want);
		if (c->want == AUTH_OK) {
			assert_string_equal(tok, c->want_token);
			assert_string_equal(url, c->want_url);
		} else {
			assert_null(tok);
			assert_null(url);
			assert_non_null(strstr(err, c->err_has));
		}
		free(tok);
		free(url);
	}
}

static void
test_form_escape(void **state)
{
	(void)state;
	struct evbuffer *b = evbuffer_new();
	assert_int_equal(auth_form_escape(b, "a b&c=d+e/é~._-"), 0);
	size_t n = evbuffer_get_length(b);
	char *s = (char *)evbuffer_pullup(b, -1);
	const char *want = "a%20b%26c%3Dd%2Be%2F%C3%A9~._-";
	assert_int_equal(n, strlen(want));
	assert_memory_equal(s, want, n);
	evbuffer_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_token_table),
		cmocka_unit_test(test_form_escape),
	};
	return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
