/*
 * config: environment array -> struct config. Table-driven: every bad
 * value must fail with one line that names its variable, every good one
 * must land in the right field, and no secret may appear in an error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sfrelay/config.h"
#include "sfrelay/log.h"

#define ERRLEN 4096
#define MAX_ENV 32

/* An environ-style array the test owns. */
struct env {
	char *vars[MAX_ENV + 1];
	size_t n;
};

/* The smallest valid environment: exactly the required settings. */
static const char *const minimal[][2] = {
    {"SFDC_CLIENT_ID", "3MVG9consumerkey"},
    {"SFDC_CLIENT_SECRET", "client-secret-AAAA"},
    {"SFDC_USERNAME", "relay@example.com"},
    {"SFDC_PASSWORD", "password-BBBB"},
    {"SFRELAY_CHANNELS", "/topic/AccountWatch"},
};
#define NMINIMAL (sizeof(minimal) / sizeof(minimal[0]))

static char *
join(const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 2;
	char *s = malloc(n);

	assert_non_null(s);
	snprintf(s, n, "%s=%s", name, value);
	return s;
}

static void
env_unset(struct env *e, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < e->n; i++) {
		if (strncmp(e->vars[i], name, len) == 0 &&
		    e->vars[i][len] == '=') {
			free(e->vars[i]);
			memmove(&e->vars[i], &e->vars[i + 1],
			        (e->n - i) * sizeof(e->vars[0]));
			e->n--;
			return;
		}
	}
}

/* Replaces name's value (or appends it). */
static void
env_set(struct env *e, const char *name, const char *value)
{
	env_unset(e, name);
	assert_true(e->n < MAX_ENV);
	e->vars[e->n++] = join(name, value);
	e->vars[e->n] = NULL;
}

/* Appends an entry as is, keeping any earlier one. */
static void
env_add_raw(struct env *e, const char *entry)
{
	assert_true(e->n < MAX_ENV);
	e->vars[e->n] = strdup(entry);
	assert_non_null(e->vars[e->n]);
	e->n++;
	e->vars[e->n] = NULL;
}

static void
env_minimal(struct env *e)
{
	memset(e, 0, sizeof(*e));
	for (size_t i = 0; i < NMINIMAL; i++)
		env_set(e, minimal[i][0], minimal[i][1]);
}

static void
env_free(struct env *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->vars[i]);
	memset(e, 0, sizeof(*e));
}

static const char *const *
env_array(const struct env *e)
{
	return (const char *const *)e->vars;
}

static size_t
count_lines(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

/* Is there a line in err that starts with "name: "? */
static int
has_line_for(const char *err, const char *name)
{
	size_t len = strlen(name);

	for (const char *l = err; *l != '\0';) {
		if (strncmp(l, name, len) == 0 && l[len] == ':' &&
		    l[len + 1] == ' ')
			return 1;
		const char *nl = strchr(l, '\n');
		if (nl == NULL)
			break;
		l = nl + 1;
	}
	return 0;
}

static int
is_zeroed(const struct config *cfg)
{
	struct config zero;

	memset(&zero, 0, sizeof(zero));
	return memcmp(cfg, &zero, sizeof(zero)) == 0;
}

/* Captures config_print_help / config_print_markdown in a heap string. */
static char *
capture(void (*print)(FILE *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	print(f);
	assert_int_equal(fclose(f), 0);
	assert_non_null(buf);
	return buf;
}

/* --- loading a valid environment ---------------------------------------- */

static void
test_minimal_defaults(void **state)
{
	(void)state;
	struct env e;
	struct config cfg;
	char err[ERRLEN] = "untouched";

	env_minimal(&e);
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_string_equal(cfg.login_url, "https://login.salesforce.com");
	assert_string_equal(cfg.client_id, "3MVG9consumerkey");
	assert_string_equal(cfg.client_secret, "client-secret-AAAA");
	assert_string_equal(cfg.username, "relay@example.com");
	assert_string_equal(cfg.password, "password-BBBB");
	assert_string_equal(cfg.security_token, "");
	assert_string_equal(cfg.api_version, "61.0");
	assert_int_equal(cfg.nchannels, 1);
	assert_string_equal(cfg.channels[0], "/topic/AccountWatch");
	assert_null(cfg.channels[1]);
	assert_int_equal(cfg.format, FORMAT_LOGFMT);
	assert_int_equal(cfg.log_level, LOG_INFO);
	assert_int_equal(cfg.connect_timeout_ms, 30000);
	assert_null(cfg.ca_file);
	config_clear(&cfg);
	assert_true(is_zeroed(&cfg));
	env_free(&e);
}

/* Accepted values, checked through the field they set. */
enum field {
	F_LOGIN_URL,
	F_SECURITY_TOKEN,
	F_API_VERSION,
	F_FORMAT,
	F_LOG_LEVEL,
	F_TIMEOUT,
	F_CHANNELS,
	F_CLIENT_ID,
};

struct good_case {
	const char *name;
	const char *value;
	enum field field;
	const char *want; /* string fields; channels joined with '|' */
	long want_num;    /* numeric and enum fields */
};

static const struct good_case good_cases[] = {
    {"SFDC_LOGIN_URL", "https://test.salesforce.com", F_LOGIN_URL,
     "https://test.salesforce.com", 0},
    {"SFDC_LOGIN_URL", "https://acme.my.salesforce.com/", F_LOGIN_URL,
     "https://acme.my.salesforce.com", 0},
    {"SFDC_LOGIN_URL", "http://127.0.0.1:8080//", F_LOGIN_URL,
     "http://127.0.0.1:8080", 0},
    {"SFDC_LOGIN_URL", "http://[::1]:65535/mock/", F_LOGIN_URL,
     "http://[::1]:65535/mock", 0},
    {"SFDC_LOGIN_URL", "http://localhost", F_LOGIN_URL, "http://localhost", 0},
    {"SFDC_SECURITY_TOKEN", "tokenCCCC", F_SECURITY_TOKEN, "tokenCCCC", 0},
    {"SFDC_SECURITY_TOKEN", "", F_SECURITY_TOKEN, "", 0},
    {"SFDC_API_VERSION", "37.0", F_API_VERSION, "37.0", 0},
    {"SFDC_API_VERSION", "62.0", F_API_VERSION, "62.0", 0},
    {"SFDC_API_VERSION", "100.0", F_API_VERSION, "100.0", 0},
    {"SFRELAY_FORMAT", "json", F_FORMAT, NULL, FORMAT_JSON},
    {"SFRELAY_FORMAT", "logfmt", F_FORMAT, NULL, FORMAT_LOGFMT},
    {"SFRELAY_LOG_LEVEL", "debug", F_LOG_LEVEL, NULL, LOG_DEBUG},
    {"SFRELAY_LOG_LEVEL", "info", F_LOG_LEVEL, NULL, LOG_INFO},
    {"SFRELAY_LOG_LEVEL", "warn", F_LOG_LEVEL, NULL, LOG_WARN},
    {"SFRELAY_LOG_LEVEL", "error", F_LOG_LEVEL, NULL, LOG_ERROR},
    {"SFRELAY_HTTP_TIMEOUT", "1000", F_TIMEOUT, NULL, 1000},
    {"SFRELAY_HTTP_TIMEOUT", "600000", F_TIMEOUT, NULL, 600000},
    {"SFRELAY_HTTP_TIMEOUT", "2500ms", F_TIMEOUT, NULL, 2500},
    {"SFRELAY_HTTP_TIMEOUT", "30s", F_TIMEOUT, NULL, 30000},
    {"SFRELAY_HTTP_TIMEOUT", "1s", F_TIMEOUT, NULL, 1000},
    {"SFRELAY_HTTP_TIMEOUT", "10m", F_TIMEOUT, NULL, 600000},
    {"SFRELAY_HTTP_TIMEOUT", "0045s", F_TIMEOUT, NULL, 45000},
    {"SFRELAY_CHANNELS", "/topic/A,/event/B__e,/data/ChangeEvents,/u/D",
     F_CHANNELS, "/topic/A|/event/B__e|/data/ChangeEvents|/u/D", 0},
    {"SFRELAY_CHANNELS", "  /topic/A ,\t/event/LoginEventStream  ", F_CHANNELS,
     "/topic/A|/event/LoginEventStream", 0},
    {"SFRELAY_CHANNELS", "/topic/A?Name=Acme", F_CHANNELS, "/topic/A?Name=Acme",
     0},
    {"SFDC_CLIENT_ID", "key with inner spaces", F_CLIENT_ID,
     "key with inner spaces", 0},
};

static void
test_good_values(void **state)
{
	(void)state;
	char err[ERRLEN];
	char joined[1024];

	for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]);
	     i++) {
		const struct good_case *c = &good_cases[i];
		struct env e;
		struct config cfg;

		env_minimal(&e);
		env_set(&e, c->name, c->value);
		if (config_load(&cfg, env_array(&e), err, sizeof(err)) != 0)
			fail_msg("%s=%s rejected: %s", c->name, c->value, err);
		switch (c->field) {
		case F_LOGIN_URL:
			assert_string_equal(cfg.login_url, c->want);
			break;
		case F_SECURITY_TOKEN:
			assert_string_equal(cfg.security_token, c->want);
			break;
		case F_API_VERSION:
			assert_string_equal(cfg.api_version, c->want);
			break;
		case F_CLIENT_ID:
			assert_string_equal(cfg.client_id, c->want);
			break;
		case F_FORMAT:
			assert_int_equal(cfg.format, c->want_num);
			break;
		case F_LOG_LEVEL:
			assert_int_equal(cfg.log_level, c->want_num);
			break;
		case F_TIMEOUT:
			assert_int_equal(cfg.connect_timeout_ms, c->want_num);
			break;
		case F_CHANNELS:
			joined[0] = '\0';
			for (size_t j = 0; j < cfg.nchannels; j++) {
				if (j > 0)
					strcat(joined, "|");
				strcat(joined, cfg.channels[j]);
			}
			assert_string_equal(joined, c->want);
			break;
		}
		config_clear(&cfg);
		env_free(&e);
	}
}

static void
test_max_channels_and_ca_file(void **state)
{
	(void)state;
	char list[CONFIG_MAX_CHANNELS * 16] = "";
	char item[32];
	char path[] = "/tmp/test_config_caXXXXXX";
	char err[ERRLEN];
	struct env e;
	struct config cfg;

	for (int i = 0; i < CONFIG_MAX_CHANNELS; i++) {
		snprintf(item, sizeof(item), "%s/event/E%d__e", i ? "," : "",
		         i);
		strcat(list, item);
	}
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "pem\n", 4), 4);
	close(fd);

	env_minimal(&e);
	env_set(&e, "SFRELAY_CHANNELS", list);
	env_set(&e, "SFRELAY_CA_FILE", path);
	if (config_load(&cfg, env_array(&e), err, sizeof(err)) != 0)
		fail_msg("rejected: %s", err);
	assert_int_equal(cfg.nchannels, CONFIG_MAX_CHANNELS);
	assert_string_equal(cfg.channels[0], "/event/E0__e");
	assert_string_equal(cfg.channels[CONFIG_MAX_CHANNELS - 1],
	                    "/event/E63__e");
	assert_string_equal(cfg.ca_file, path);
	config_clear(&cfg);
	env_free(&e);
	unlink(path);
}

/* getenv semantics: first entry wins; look-alikes and junk are ignored. */
static void
test_env_scanning(void **state)
{
	(void)state;
	struct env e;
	struct config cfg;
	char err[ERRLEN];

	memset(&e, 0, sizeof(e));
	env_add_raw(&e, "SFDC_USERNAME_EXTRA=wrong@example.com");
	env_add_raw(&e, "SFDC_USERNAMEX=wrong@example.com");
	env_add_raw(&e, "SFDC_USERNAME");
	env_add_raw(&e, "SFRELAY_FORMAT=json");
	env_add_raw(&e, "SFRELAY_FORMAT=bogus");
	env_add_raw(&e, "SFRELAY_UNKNOWN_SETTING=whatever");
	env_add_raw(&e, "SFDC_NOT_A_SETTING=");
	env_add_raw(&e, "=");
	env_add_raw(&e, "");
	for (size_t i = 0; i < NMINIMAL; i++) {
		char *entry = join(minimal[i][0], minimal[i][1]);
		env_add_raw(&e, entry);
		free(entry);
	}
	env_add_raw(&e, "SFDC_USERNAME=second@example.com");
	if (config_load(&cfg, env_array(&e), err, sizeof(err)) != 0)
		fail_msg("rejected: %s", err);
	assert_string_equal(cfg.username, "relay@example.com");
	assert_int_equal(cfg.format, FORMAT_JSON);
	config_clear(&cfg);
	env_free(&e);

	/* A NULL array is an empty environment. */
	assert_int_equal(config_load(&cfg, NULL, err, sizeof(err)), -1);
	assert_true(has_line_for(err, "SFDC_CLIENT_ID"));
	assert_true(is_zeroed(&cfg));
}

/* --- missing settings ----------------------------------------------------- */

static void
test_each_required_missing(void **state)
{
	(void)state;
	char err[ERRLEN];

	for (size_t i = 0; i < NMINIMAL; i++) {
		/* Unset, and set to empty: both are "not set". */
		for (int empty = 0; empty <= 1; empty++) {
			struct env e;
			struct config cfg;
			char want[128];

			env_minimal(&e);
			if (empty)
				env_set(&e, minimal[i][0], "");
			else
				env_unset(&e, minimal[i][0]);
			assert_int_equal(
			    config_load(&cfg, env_array(&e), err, sizeof(err)),
			    -1);
			snprintf(want, sizeof(want), "%s: required, not set (",
			         minimal[i][0]);
			if (strncmp(err, want, strlen(want)) != 0)
				fail_msg("%s: got %s", minimal[i][0], err);
			assert_int_equal(count_lines(err), 1);
			assert_true(is_zeroed(&cfg));
			env_free(&e);
		}
	}
}

static void
test_all_required_missing(void **state)
{
	(void)state;
	const char *const empty_env[] = {NULL};
	char err[ERRLEN];
	struct config cfg;

	assert_int_equal(config_load(&cfg, empty_env, err, sizeof(err)), -1);
	for (size_t i = 0; i < NMINIMAL; i++)
		assert_true(has_line_for(err, minimal[i][0]));
	assert_int_equal(count_lines(err), NMINIMAL);
	assert_non_null(strstr(err, "SFDC_CLIENT_ID: required, not set "
	                            "(the connected app's consumer key)\n"));
	assert_true(is_zeroed(&cfg));
}

/* The set of required settings in the docs is the minimal environment. */
static void
test_required_matches_docs(void **state)
{
	(void)state;
	char *md = capture(config_print_markdown);
	size_t nrequired = 0;

	for (char *l = strstr(md, "\n| SF"); l != NULL;
	     l = strstr(l + 1, "\n| SF")) {
		char name[64];
		char def[64];
		if (sscanf(l + 1, "| %63[A-Z_] | %63[^|]|", name, def) != 2)
			fail_msg("bad row: %.60s", l + 1);
		if (strcmp(def, "required ") != 0)
			continue;
		nrequired++;
		size_t i;
		for (i = 0; i < NMINIMAL; i++)
			if (strcmp(minimal[i][0], name) == 0)
				break;
		if (i == NMINIMAL)
			fail_msg("%s is required but not in the test env",
			         name);
	}
	assert_int_equal(nrequired, NMINIMAL);
	free(md);
}

/* --- invalid values ------------------------------------------------------- */

struct bad_case {
	const char *name;
	const char *value;
	const char *want; /* must appear in the error line */
};

static const struct bad_case bad_cases[] = {
    /* login URL */
    {"SFDC_LOGIN_URL", "", "empty value"},
    {"SFDC_LOGIN_URL", "ftp://login.salesforce.com",
     "\"ftp://login.salesforce.com\" must start with https:// or http://"},
    {"SFDC_LOGIN_URL", "login.salesforce.com", "must start with https://"},
    {"SFDC_LOGIN_URL", "https:/login.salesforce.com", "must start with"},
    {"SFDC_LOGIN_URL", "HTTPS://login.salesforce.com", "must start with"},
    {"SFDC_LOGIN_URL", "https://", "has no host"},
    {"SFDC_LOGIN_URL", "https:///services", "has no host"},
    {"SFDC_LOGIN_URL", "https://login.salesforce.com?x=1",
     "must not have a query or fragment"},
    {"SFDC_LOGIN_URL", "https://login.salesforce.com/#top",
     "must not have a query or fragment"},
    {"SFDC_LOGIN_URL", "https://login salesforce.com",
     "contains a space or control character"},
    {"SFDC_LOGIN_URL", "https://host:0", "invalid host or port"},
    {"SFDC_LOGIN_URL", "https://host:65536", "invalid host or port"},
    {"SFDC_LOGIN_URL", "https://host:", "invalid host or port"},
    {"SFDC_LOGIN_URL", "https://host:8x", "invalid host or port"},
    {"SFDC_LOGIN_URL", "https://:443", "invalid host or port"},
    {"SFDC_LOGIN_URL", "https://[::1", "invalid host or port"},
    {"SFDC_LOGIN_URL", "https://[]:80", "invalid host or port"},
    {"SFDC_LOGIN_URL", "https://ho%st", "invalid host or port"},
    {"SFDC_LOGIN_URL", "https://user@host", "user name or password"},
    /* plain strings */
    {"SFDC_CLIENT_ID", " 3MVG9", "leading or trailing whitespace"},
    {"SFDC_CLIENT_ID", "3MVG9\n", "\"3MVG9\\x0a\" contains a control"},
    {"SFDC_USERNAME", "relay@example.com ", "leading or trailing"},
    {"SFDC_USERNAME", "a\tb", "contains a control character"},
    /* API version */
    {"SFDC_API_VERSION", "",
     "empty value; unset it to use the default "
     "(61.0)"},
    {"SFDC_API_VERSION", "36.0",
     "\"36.0\" is below 37.0, the first version with replay"},
    {"SFDC_API_VERSION", "0.0", "is below 37.0"},
    {"SFDC_API_VERSION", "abc", "\"abc\" is not a version like 61.0"},
    {"SFDC_API_VERSION", "61", "\"61\" is not a version like 61.0"},
    {"SFDC_API_VERSION", "61.", "is not a version"},
    {"SFDC_API_VERSION", ".0", "is not a version"},
    {"SFDC_API_VERSION", "61.0.1", "is not a version"},
    {"SFDC_API_VERSION", "v61.0", "is not a version"},
    {"SFDC_API_VERSION", "-61.0", "is not a version"},
    {"SFDC_API_VERSION", "99999999999999999999.0", "is not a version"},
    {"SFDC_API_VERSION", " 61.0", "leading or trailing whitespace"},
    /* channels */
    {"SFRELAY_CHANNELS", "/foo/X",
     "\"/foo/X\" does not start with /topic/, /event/, /data/ or /u/"},
    {"SFRELAY_CHANNELS", "topic/X", "\"topic/X\" does not start with"},
    {"SFRELAY_CHANNELS", "/TOPIC/X", "does not start with"},
    {"SFRELAY_CHANNELS", "/topic/", "\"/topic/\" has no name after /topic/"},
    {"SFRELAY_CHANNELS", "/u/", "has no name after /u/"},
    {"SFRELAY_CHANNELS", "/topic/A b", "\"/topic/A b\" contains a space"},
    {"SFRELAY_CHANNELS", "/topic/A\001", "contains a space or control"},
    {"SFRELAY_CHANNELS", "/topic/A,,/topic/B", "item 2 is empty"},
    {"SFRELAY_CHANNELS", ",/topic/A", "item 1 is empty"},
    {"SFRELAY_CHANNELS", "/topic/A,", "item 2 is empty"},
    {"SFRELAY_CHANNELS", "/topic/A, \t ,/topic/B", "item 2 is empty"},
    {"SFRELAY_CHANNELS", " ", "item 1 is empty"},
    {"SFRELAY_CHANNELS", "/topic/A, /topic/A", "\"/topic/A\" is listed twice"},
    /* enums */
    {"SFRELAY_FORMAT", "", "empty value; unset it to use the default"},
    {"SFRELAY_FORMAT", "xml", "\"xml\" is not one of: logfmt, json"},
    {"SFRELAY_FORMAT", "JSON", "is not one of"},
    {"SFRELAY_LOG_LEVEL", "", "empty value"},
    {"SFRELAY_LOG_LEVEL", "verbose",
     "\"verbose\" is not one of: debug, info, warn, error"},
    {"SFRELAY_LOG_LEVEL", "info ", "is not one of"},
    /* timeout */
    {"SFRELAY_HTTP_TIMEOUT", "", "empty value"},
    {"SFRELAY_HTTP_TIMEOUT", "-5", "\"-5\" is negative"},
    {"SFRELAY_HTTP_TIMEOUT", "-30s", "is negative"},
    {"SFRELAY_HTTP_TIMEOUT", "+5000", "is not a number"},
    {"SFRELAY_HTTP_TIMEOUT", " 5000", "is not a number"},
    {"SFRELAY_HTTP_TIMEOUT", "s", "is not a number"},
    {"SFRELAY_HTTP_TIMEOUT", "99999999999999999999",
     "\"99999999999999999999\" is too large"},
    {"SFRELAY_HTTP_TIMEOUT", "9999999999999999999m", "is too large"},
    {"SFRELAY_HTTP_TIMEOUT", "999999999999999m", "is too large"},
    {"SFRELAY_HTTP_TIMEOUT", "5000x",
     "\"5000x\" has trailing characters (it may end in ms, s or m)"},
    {"SFRELAY_HTTP_TIMEOUT", "30 s", "has trailing characters"},
    {"SFRELAY_HTTP_TIMEOUT", "1.5s", "has trailing characters"},
    {"SFRELAY_HTTP_TIMEOUT", "30sec", "has trailing characters"},
    {"SFRELAY_HTTP_TIMEOUT", "30S", "has trailing characters"},
    {"SFRELAY_HTTP_TIMEOUT", "5000ms ", "has trailing characters"},
    {"SFRELAY_HTTP_TIMEOUT", "999",
     "\"999\" is out of range, "
     "1000..600000ms"},
    {"SFRELAY_HTTP_TIMEOUT", "0", "is out of range"},
    {"SFRELAY_HTTP_TIMEOUT", "600001", "is out of range"},
    {"SFRELAY_HTTP_TIMEOUT", "11m", "is out of range"},
    {"SFRELAY_HTTP_TIMEOUT", "999ms", "is out of range"},
    /* CA file */
    {"SFRELAY_CA_FILE", "", "empty value; unset it"},
    {"SFRELAY_CA_FILE", "/nonexistent/ca.pem",
     "\"/nonexistent/ca.pem\" cannot be read: No such file or directory"},
    {"SFRELAY_CA_FILE", "/", "\"/\" is not a regular file"},
    {"SFRELAY_CA_FILE", "/etc/ca\n.pem", "contains a control character"},
};

static void
test_bad_values(void **state)
{
	(void)state;
	char err[ERRLEN];

	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct env e;
		struct config cfg;

		env_minimal(&e);
		env_set(&e, c->name, c->value);
		int rc = config_load(&cfg, env_array(&e), err, sizeof(err));
		if (rc != -1 || !has_line_for(err, c->name) ||
		    strstr(err, c->want) == NULL || count_lines(err) != 1)
			fail_msg("%s=\"%s\": rc %d, err \"%s\", want \"%s\"",
			         c->name, c->value, rc, err, c->want);
		assert_true(is_zeroed(&cfg));
		env_free(&e);
	}
}

static void
test_too_many_channels(void **state)
{
	(void)state;
	char list[(CONFIG_MAX_CHANNELS + 1) * 16] = "";
	char item[32];
	char err[ERRLEN];
	char want[64];
	struct env e;
	struct config cfg;

	for (int i = 0; i <= CONFIG_MAX_CHANNELS; i++) {
		snprintf(item, sizeof(item), "%s/topic/T%d", i ? "," : "", i);
		strcat(list, item);
	}
	env_minimal(&e);
	env_set(&e, "SFRELAY_CHANNELS", list);
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)),
	                 -1);
	snprintf(want, sizeof(want),
	         "SFRELAY_CHANNELS: has %d items, at most %d\n",
	         CONFIG_MAX_CHANNELS + 1, CONFIG_MAX_CHANNELS);
	assert_string_equal(err, want);
	assert_true(is_zeroed(&cfg));
	env_free(&e);
}

/* Every bad item of a list is reported, and every bad setting at once. */
static void
test_every_problem_reported(void **state)
{
	(void)state;
	char err[ERRLEN];
	struct env e;
	struct config cfg;

	env_minimal(&e);
	env_unset(&e, "SFDC_CLIENT_ID");
	env_set(&e, "SFRELAY_CHANNELS", "/foo/A,/topic/ok,/bar/B,,/topic/ok");
	env_set(&e, "SFRELAY_FORMAT", "xml");
	env_set(&e, "SFRELAY_HTTP_TIMEOUT", "-1");
	env_set(&e, "SFDC_API_VERSION", "36.0");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "SFDC_CLIENT_ID: required, not set"));
	assert_non_null(strstr(err, "SFRELAY_CHANNELS: \"/foo/A\""));
	assert_non_null(strstr(err, "SFRELAY_CHANNELS: \"/bar/B\""));
	assert_non_null(strstr(err, "SFRELAY_CHANNELS: item 4 is empty"));
	assert_non_null(strstr(err, "SFRELAY_CHANNELS: \"/topic/ok\" is "
	                            "listed twice"));
	assert_non_null(strstr(err, "SFRELAY_FORMAT: \"xml\""));
	assert_non_null(strstr(err, "SFRELAY_HTTP_TIMEOUT: \"-1\""));
	assert_non_null(strstr(err, "SFDC_API_VERSION: \"36.0\""));
	assert_int_equal(count_lines(err), 8);
	assert_true(is_zeroed(&cfg));
	env_free(&e);
}

/* Long or hostile values are shortened and escaped: one line each. */
static void
test_values_quoted_safely(void **state)
{
	(void)state;
	char err[ERRLEN];
	char longv[2048];
	struct env e;
	struct config cfg;

	memset(longv, 'x', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	env_minimal(&e);
	env_set(&e, "SFRELAY_FORMAT", longv);
	env_set(&e, "SFRELAY_LOG_LEVEL", "a\"b\\c\r\nat=error \xff");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)),
	                 -1);
	assert_int_equal(count_lines(err), 2);
	/* The 2047-byte value is cut: the line stays short. */
	assert_true(strchr(err, '\n') - err < 128);
	assert_non_null(strstr(err, "xxx...\" is not one of"));
	assert_non_null(strstr(err, "\"a\\\"b\\\\c\\x0d\\x0aat=error "
	                            "\\xff\" is not one of"));
	env_free(&e);
}

/* --- secrets -------------------------------------------------------------- */

struct secret_case {
	const char *name;
	const char *value;
	const char *hidden; /* must not appear in err */
};

static const struct secret_case secret_cases[] = {
    {"SFDC_CLIENT_SECRET", "topsecret\001value", "topsecret"},
    {"SFDC_PASSWORD", "hunter2hunter2\n", "hunter2"},
    {"SFDC_SECURITY_TOKEN", "\x7ftokentoken", "tokentoken"},
    {"SFDC_SECURITY_TOKEN", "tok\tentoken", "entoken"},
    /* Credentials in a URL are never echoed. */
    {"SFDC_LOGIN_URL", "https://admin:pa55word@login.salesforce.com",
     "pa55word"},
};

static void
test_secrets_never_in_errors(void **state)
{
	(void)state;
	char err[ERRLEN];

	for (size_t i = 0; i < sizeof(secret_cases) / sizeof(secret_cases[0]);
	     i++) {
		const struct secret_case *c = &secret_cases[i];
		struct env e;
		struct config cfg;

		env_minimal(&e);
		env_set(&e, c->name, c->value);
		assert_int_equal(
		    config_load(&cfg, env_array(&e), err, sizeof(err)), -1);
		assert_true(has_line_for(err, c->name));
		if (strstr(err, c->hidden) != NULL)
			fail_msg("%s leaked: %s", c->name, err);
		env_free(&e);
	}
}

/* A secret pasted into a non-secret variable is not echoed either. */
static void
test_secret_in_wrong_variable(void **state)
{
	(void)state;
	char err[ERRLEN];
	struct env e;
	struct config cfg;

	env_minimal(&e);
	env_set(&e, "SFDC_PASSWORD", "pw-in-two-places");
	env_set(&e, "SFDC_API_VERSION", "pw-in-two-places");
	env_set(&e, "SFRELAY_CHANNELS", "/topic/A,pw-in-two-places");
	env_set(&e, "SFRELAY_FORMAT", "x-pw-in-two-places-x");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)),
	                 -1);
	assert_true(has_line_for(err, "SFDC_API_VERSION"));
	assert_true(has_line_for(err, "SFRELAY_CHANNELS"));
	assert_true(has_line_for(err, "SFRELAY_FORMAT"));
	assert_int_equal(count_lines(err), 3);
	assert_null(strstr(err, "pw-in-two-places"));
	assert_non_null(strstr(err, "value not shown"));
	env_free(&e);
}

/* Reads what fn writes to fd 2. */
static char *
capture_stderr(void (*fn)(const char *), const char *arg)
{
	char path[] = "/tmp/test_config_logXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	fn(arg);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);

	off_t len = lseek(fd, 0, SEEK_END);
	assert_true(len >= 0);
	char *buf = calloc(1, (size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)len, 0), len);
	close(fd);
	return buf;
}

static void
log_value(const char *v)
{
	log_msg(LOG_ERROR, "probe", "value", v, NULL);
}

/* After a successful load the log module redacts every secret. */
static void
test_secrets_registered(void **state)
{
	(void)state;
	static const char *const secrets[] = {"client-secret-DDDD",
	                                      "password-EEEE", "token-FFFF"};
	char err[ERRLEN];
	struct env e;
	struct config cfg;

	env_minimal(&e);
	env_set(&e, "SFDC_CLIENT_SECRET", secrets[0]);
	env_set(&e, "SFDC_PASSWORD", secrets[1]);
	env_set(&e, "SFDC_SECURITY_TOKEN", secrets[2]);
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)), 0);
	for (size_t i = 0; i < 3; i++) {
		char *out = capture_stderr(log_value, secrets[i]);
		assert_non_null(strstr(out, "probe"));
		assert_null(strstr(out, secrets[i]));
		assert_non_null(strstr(out, "[redacted]"));
		free(out);
	}
	/* A value that is not a secret goes through untouched. */
	char *out = capture_stderr(log_value, "relay@example.com");
	assert_non_null(strstr(out, "relay@example.com"));
	free(out);
	config_clear(&cfg);
	env_free(&e);
}

/* --- the error buffer ----------------------------------------------------- */

static void
test_err_truncation(void **state)
{
	(void)state;
	const char *const empty_env[] = {NULL};
	char full[ERRLEN];
	struct config cfg;

	assert_int_equal(config_load(&cfg, empty_env, full, sizeof(full)), -1);
	size_t full_len = strlen(full);
	assert_true(full_len > 100);

	for (size_t errlen = 1; errlen <= full_len + 2; errlen++) {
		char buf[ERRLEN + 16];
		memset(buf, 'Z', sizeof(buf));
		assert_int_equal(config_load(&cfg, empty_env, buf, errlen), -1);
		assert_true(strlen(buf) < errlen);
		/* A prefix of the full text, and nothing written past errlen.
		 */
		assert_memory_equal(buf, full, strlen(buf));
		if (errlen > full_len)
			assert_string_equal(buf, full);
		else
			assert_int_equal(strlen(buf), errlen - 1);
		for (size_t i = errlen; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 'Z');
		assert_true(is_zeroed(&cfg));
	}

	/* No buffer at all: still fails, still writes nothing. */
	assert_int_equal(config_load(&cfg, empty_env, NULL, 0), -1);
	char one = 'Z';
	assert_int_equal(config_load(&cfg, empty_env, &one, 0), -1);
	assert_int_equal(one, 'Z');
}

static void
test_clear_twice(void **state)
{
	(void)state;
	struct env e;
	struct config cfg;
	char err[ERRLEN];

	memset(&cfg, 0, sizeof(cfg));
	config_clear(&cfg);
	assert_true(is_zeroed(&cfg));

	env_minimal(&e);
	env_set(&e, "SFRELAY_CHANNELS", "/topic/A,/topic/B,/u/C");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)), 0);
	config_clear(&cfg);
	assert_true(is_zeroed(&cfg));
	config_clear(&cfg);
	assert_true(is_zeroed(&cfg));
	env_free(&e);
}

/* --- help and docs -------------------------------------------------------- */

static void
test_help_and_markdown(void **state)
{
	(void)state;
	char *help = capture(config_print_help);
	char *md = capture(config_print_markdown);
	static const char *const known[] = {"SFDC_LOGIN_URL", "SFDC_PASSWORD",
	                                    "SFRELAY_CHANNELS",
	                                    "SFRELAY_HTTP_TIMEOUT"};

	assert_true(
	    strncmp(help, "Usage: sfrelay [--help] [--version]\n", 36) == 0);
	assert_true(strncmp(md, "# Configuration\n\n", 17) == 0);
	assert_non_null(strstr(md, "\n| Variable | Default | Description |\n"));
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		assert_non_null(strstr(help, known[i]));
		assert_non_null(strstr(md, known[i]));
	}
	/* Every variable the help text lists comes with its default. */
	assert_non_null(strstr(help, "SFDC_LOGIN_URL (default: "
	                             "https://login.salesforce.com)"));
	assert_non_null(strstr(help, "SFDC_CLIENT_ID (required)"));

	/* Table rows: every row is a variable row. */
	size_t rows = 0, sf_rows = 0;
	for (char *l = md; l != NULL && *l != '\0';) {
		if (strncmp(l, "| ", 2) == 0)
			rows++;
		if (strncmp(l, "| SF", 4) == 0)
			sf_rows++;
		l = strchr(l, '\n');
		if (l != NULL)
			l++;
	}
	assert_true(sf_rows >= NMINIMAL);
	assert_int_equal(rows, sf_rows + 1); /* + the header row */

	/* Each documented variable is in --help and is really read: a value
	 * with a control byte is rejected with a line naming it. */
	size_t checked = 0;
	for (char *l = strstr(md, "\n| SF"); l != NULL;
	     l = strstr(l + 1, "\n| SF")) {
		char name[64];
		char err[ERRLEN];
		struct env e;
		struct config cfg;

		assert_int_equal(sscanf(l + 1, "| %63[A-Z_] |", name), 1);
		if (strstr(help, name) == NULL)
			fail_msg("%s missing from --help", name);
		env_minimal(&e);
		env_set(&e, name, "bad\001value");
		assert_int_equal(
		    config_load(&cfg, env_array(&e), err, sizeof(err)), -1);
		if (!has_line_for(err, name) || count_lines(err) != 1)
			fail_msg("%s: %s", name, err);
		env_free(&e);
		checked++;
	}
	assert_int_equal(checked, sf_rows);

	/* --help has one entry per variable, like the table. */
	size_t help_entries = 0;
	for (char *l = strstr(help, "\n  SF"); l != NULL;
	     l = strstr(l + 1, "\n  SF"))
		help_entries++;
	assert_int_equal(help_entries, sf_rows);

	/* Plain text: no markdown backticks in --help. */
	assert_null(strchr(help, '`'));
	free(help);
	free(md);
}

/* Successful loads register secrets with the process-wide logger; drop
 * them after each test so leak checkers see an empty heap. */
static int
log_teardown(void **state)
{
	(void)state;
	log_shutdown();
	return 0;
}

#define TEST(f) cmocka_unit_test_teardown(f, log_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST(test_minimal_defaults),
	    TEST(test_good_values),
	    TEST(test_max_channels_and_ca_file),
	    TEST(test_env_scanning),
	    TEST(test_each_required_missing),
	    TEST(test_all_required_missing),
	    TEST(test_required_matches_docs),
	    TEST(test_bad_values),
	    TEST(test_too_many_channels),
	    TEST(test_every_problem_reported),
	    TEST(test_values_quoted_safely),
	    TEST(test_secrets_never_in_errors),
	    TEST(test_secret_in_wrong_variable),
	    TEST(test_secrets_registered),
	    TEST(test_err_truncation),
	    TEST(test_clear_twice),
	    TEST(test_help_and_markdown),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
