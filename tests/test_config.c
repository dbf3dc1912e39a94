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
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "harness.h"
#include "sfrelay/config.h"
#include "sfrelay/log.h"

#define ERRLEN 4096
#define MAX_ENV 32

/* An environ-style array the test owns. */
struct env {
	char *vars[MAX_ENV + 1];
	size_t n;
};

/* The smallest valid environment: exactly the required settings, for
 * the password flow (inferred from them). */
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
	assert_true(has_line_for(err, "SFDC_AUTH"));
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
	/* The channels, and no flow to infer: one line that names every
	 * flow with its variables. */
	assert_true(has_line_for(err, "SFRELAY_CHANNELS"));
	assert_true(has_line_for(err, "SFDC_AUTH"));
	assert_int_equal(count_lines(err), 2);
	for (size_t i = 0; i < NMINIMAL; i++)
		assert_non_null(strstr(err, minimal[i][0]));
	assert_non_null(strstr(
	    err, "SFDC_AUTH: not set, and no credentials are set to infer it "
	         "from; set it to jwt (SFDC_CLIENT_ID, SFDC_USERNAME, "
	         "SFDC_JWT_KEY or SFDC_JWT_KEY_FILE), client_credentials "
	         "(SFDC_CLIENT_ID, SFDC_CLIENT_SECRET), refresh_token "
	         "(SFDC_CLIENT_ID, SFDC_REFRESH_TOKEN), password "
	         "(SFDC_CLIENT_ID, SFDC_CLIENT_SECRET, SFDC_USERNAME, "
	         "SFDC_PASSWORD) or token (SFDC_ACCESS_TOKEN, "
	         "SFDC_INSTANCE_URL)\n"));
	assert_true(is_zeroed(&cfg));
}

/* The settings the docs call required, or required for `password` (the
 * flow the minimal environment infers), are the minimal environment. */
static void
test_required_matches_docs(void **state)
{
	(void)state;
	char *md = capture(config_print_markdown);
	size_t nrequired = 0;

	for (char *l = strstr(md, "\n| SF"); l != NULL;
	     l = strstr(l + 1, "\n| SF")) {
		char name[64];
		char def[160];
		if (sscanf(l + 1, "| %63[A-Z_] | %159[^|]|", name, def) != 2)
			fail_msg("bad row: %.60s", l + 1);
		if (strcmp(def, "required ") != 0 &&
		    strncmp(def, "required unless ", 16) != 0 &&
		    !(strncmp(def, "required for ", 13) == 0 &&
		      (strstr(def, "`password`") != NULL ||
		       strstr(def, "every flow but `token`") != NULL)))
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
    /* checkpoint store */
    {"SFRELAY_CHECKPOINT", "", "empty value; unset it"},
    {"SFRELAY_CHECKPOINT", "redis", "\"redis\" is not one of: file, postgres"},
    {"SFRELAY_CHECKPOINT", "Postgres", "is not one of"},
    {"SFRELAY_CHECKPOINT", "postgres", "postgres needs DATABASE_URL"},
    {"DATABASE_URL", "", "empty value; unset it"},
    {"DATABASE_URL", "mysql://u:p@h/d",
     "must start with postgres:// or postgresql:// (value not shown)"},
    {"DATABASE_URL", "postgres:/u:p@h/d", "must start with postgres://"},
    {"DATABASE_URL", "postgres://", "has nothing after ://"},
    {"DATABASE_URL", "postgres://u:p w@h/d", "contains a space"},
    {"DATABASE_URL", "postgres://u:p\n@h/d", "contains a control character"},
    {"SFRELAY_FAILOVER", "", "empty value; unset it to use the default (15s)"},
    {"SFRELAY_FAILOVER", "2s", "\"2s\" is out of range, 3000..300000ms"},
    {"SFRELAY_FAILOVER", "2999", "is out of range"},
    {"SFRELAY_FAILOVER", "301s", "is out of range"},
    {"SFRELAY_FAILOVER", "6m", "is out of range"},
    {"SFRELAY_FAILOVER", "-15s", "is negative"},
    {"SFRELAY_FAILOVER", "15 s", "has trailing characters"},
    {"SFRELAY_FAILOVER", "1h", "has trailing characters"},
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
    {"SFDC_REFRESH_TOKEN", "5Aep\001refreshvalue", "refreshvalue"},
    {"SFDC_ACCESS_TOKEN", "00Dxx!\x7f" "accessvalue", "accessvalue"},
    {"SFDC_JWT_KEY",
     "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkq\001hkiG9w0\n"
     "-----END PRIVATE KEY-----\n",
     "MIIEvgIBADANBgkq"},
    /* A key that is not one: the reason, never the text. */
    {"SFDC_JWT_KEY",
     "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0\n"
     "-----END PRIVATE KEY-----\n",
     "MIIEvgIBADANBgkq"},
    /* Credentials in a URL are never echoed. */
    {"SFDC_LOGIN_URL", "https://admin:pa55word@login.salesforce.com",
     "pa55word"},
    {"DATABASE_URL", "mysql://u:dbpa55word@h/d", "dbpa55word"},
    {"DATABASE_URL", "postgres://u:dbpa55 word@h/d", "dbpa55"},
    {"DATABASE_URL", "postgres://u:dbpa55\001word@h/d", "dbpa55"},
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
	char *buf = stderr_capture(fn, arg, NULL);
	assert_non_null(buf);
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

/* --- authentication flows -------------------------------------------------- */

/* A private key, in a variable and in a file (made once per run). */
struct key_fixture {
	char *pem;
	char path[64];
};

static int
group_setup(void **state)
{
	struct key_fixture *k = calloc(1, sizeof(*k));
	assert_non_null(k);
	EVP_PKEY *pkey = EVP_RSA_gen(1024);
	assert_non_null(pkey);
	BIO *b = BIO_new(BIO_s_mem());
	assert_int_equal(
	    PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL), 1);
	char *data;
	long n = BIO_get_mem_data(b, &data);
	k->pem = strndup(data, (size_t)n);
	BIO_free(b);
	EVP_PKEY_free(pkey);
	snprintf(k->path, sizeof(k->path), "/tmp/test_config_keyXXXXXX");
	int fd = mkstemp(k->path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, k->pem, strlen(k->pem)), (ssize_t)n);
	close(fd);
	*state = k;
	return 0;
}

static int
group_teardown(void **state)
{
	struct key_fixture *k = *state;
	unlink(k->path);
	free(k->pem);
	free(k);
	return 0;
}

/* A sample value for each credential variable. */
static const char *
sample(const struct key_fixture *k, const char *name)
{
	static const char *const values[][2] = {
	    {"SFDC_CLIENT_ID", "3MVG9consumerkey"},
	    {"SFDC_CLIENT_SECRET", "client-secret-AAAA"},
	    {"SFDC_USERNAME", "relay@example.com"},
	    {"SFDC_PASSWORD", "password-BBBB"},
	    {"SFDC_REFRESH_TOKEN", "5Aep861refresh-CCCC"},
	    {"SFDC_ACCESS_TOKEN", "00Dxx!access-DDDD"},
	    {"SFDC_INSTANCE_URL", "https://acme.my.salesforce.com/"},
	};
	if (strcmp(name, "SFDC_JWT_KEY") == 0)
		return k->pem;
	if (strcmp(name, "SFDC_JWT_KEY_FILE") == 0)
		return k->path;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		if (strcmp(values[i][0], name) == 0)
			return values[i][1];
	fail_msg("no sample for %s", name);
	return NULL;
}

/* An environment with SFRELAY_CHANNELS, SFDC_AUTH=auth (unless NULL)
 * and the space-separated variables of vars, each with its sample. */
static void
env_for(struct env *e, const struct key_fixture *k, const char *auth,
        const char *vars)
{
	char names[512], *save = NULL;

	memset(e, 0, sizeof(*e));
	env_set(e, "SFRELAY_CHANNELS", "/topic/AccountWatch");
	if (auth != NULL)
		env_set(e, "SFDC_AUTH", auth);
	snprintf(names, sizeof(names), "%s", vars);
	for (char *n = strtok_r(names, " ", &save); n != NULL;
	     n = strtok_r(NULL, " ", &save))
		env_set(e, n, sample(k, n));
}

struct flow_case {
	const char *auth; /* SFDC_AUTH, or NULL to infer */
	const char *vars;
	enum config_auth want; /* NONE: the load fails */
	const char *missing;   /* lines expected, space-separated names */
	const char *err_has;
};

static const struct flow_case flow_cases[] = {
    /* Each flow with exactly its variables. */
    {"jwt", "SFDC_CLIENT_ID SFDC_USERNAME SFDC_JWT_KEY", CONFIG_AUTH_JWT,
     NULL, NULL},
    {"jwt", "SFDC_CLIENT_ID SFDC_USERNAME SFDC_JWT_KEY_FILE", CONFIG_AUTH_JWT,
     NULL, NULL},
    {"client_credentials", "SFDC_CLIENT_ID SFDC_CLIENT_SECRET",
     CONFIG_AUTH_CLIENT_CREDENTIALS, NULL, NULL},
    {"refresh_token", "SFDC_CLIENT_ID SFDC_REFRESH_TOKEN",
     CONFIG_AUTH_REFRESH_TOKEN, NULL, NULL},
    {"refresh_token", "SFDC_CLIENT_ID SFDC_CLIENT_SECRET SFDC_REFRESH_TOKEN",
     CONFIG_AUTH_REFRESH_TOKEN, NULL, NULL},
    {"password",
     "SFDC_CLIENT_ID SFDC_CLIENT_SECRET SFDC_USERNAME SFDC_PASSWORD",
     CONFIG_AUTH_PASSWORD, NULL, NULL},
    {"token", "SFDC_ACCESS_TOKEN SFDC_INSTANCE_URL", CONFIG_AUTH_TOKEN, NULL,
     NULL},
    /* SFDC_AUTH wins over what the variables suggest. */
    {"client_credentials",
     "SFDC_CLIENT_ID SFDC_CLIENT_SECRET SFDC_USERNAME SFDC_PASSWORD "
     "SFDC_JWT_KEY",
     CONFIG_AUTH_CLIENT_CREDENTIALS, NULL, NULL},
    /* A flow that is named needs its variables, whatever else is set. */
    {"token", "SFDC_CLIENT_ID SFDC_CLIENT_SECRET", CONFIG_AUTH_NONE,
     "SFDC_ACCESS_TOKEN SFDC_INSTANCE_URL", "for SFDC_AUTH=token"},
    {"jwt", "SFDC_CLIENT_ID SFDC_USERNAME", CONFIG_AUTH_NONE, "SFDC_JWT_KEY",
     "or set SFDC_JWT_KEY_FILE), for SFDC_AUTH=jwt"},
    {"jwt", "SFDC_CLIENT_ID SFDC_USERNAME SFDC_JWT_KEY SFDC_JWT_KEY_FILE",
     CONFIG_AUTH_NONE, "SFDC_JWT_KEY_FILE",
     "set only one of SFDC_JWT_KEY and SFDC_JWT_KEY_FILE"},
    {"bogus", "SFDC_CLIENT_ID", CONFIG_AUTH_NONE, "SFDC_AUTH",
     "\"bogus\" is not one of: jwt, client_credentials, refresh_token, "
     "password, token"},
    /* Inferred: the first renewable flow whose credential is set. */
    {NULL, "SFDC_CLIENT_ID SFDC_USERNAME SFDC_JWT_KEY", CONFIG_AUTH_JWT, NULL,
     NULL},
    {NULL, "SFDC_CLIENT_ID SFDC_USERNAME SFDC_JWT_KEY_FILE", CONFIG_AUTH_JWT,
     NULL, NULL},
    {NULL,
     "SFDC_CLIENT_ID SFDC_USERNAME SFDC_JWT_KEY SFDC_CLIENT_SECRET "
     "SFDC_PASSWORD SFDC_REFRESH_TOKEN",
     CONFIG_AUTH_JWT, NULL, NULL},
    {NULL,
     "SFDC_CLIENT_ID SFDC_REFRESH_TOKEN SFDC_CLIENT_SECRET SFDC_USERNAME "
     "SFDC_PASSWORD",
     CONFIG_AUTH_REFRESH_TOKEN, NULL, NULL},
    {NULL, "SFDC_CLIENT_ID SFDC_CLIENT_SECRET SFDC_USERNAME SFDC_PASSWORD",
     CONFIG_AUTH_PASSWORD, NULL, NULL},
    {NULL, "SFDC_CLIENT_ID SFDC_CLIENT_SECRET", CONFIG_AUTH_CLIENT_CREDENTIALS,
     NULL, NULL},
    {NULL,
     "SFDC_CLIENT_ID SFDC_CLIENT_SECRET SFDC_ACCESS_TOKEN SFDC_INSTANCE_URL",
     CONFIG_AUTH_CLIENT_CREDENTIALS, NULL, NULL},
    {NULL, "SFDC_ACCESS_TOKEN SFDC_INSTANCE_URL", CONFIG_AUTH_TOKEN, NULL,
     NULL},
    /* Inferred but incomplete: the missing variables, and why that flow. */
    {NULL, "SFDC_CLIENT_ID SFDC_USERNAME", CONFIG_AUTH_NONE, "SFDC_JWT_KEY",
     "for the jwt flow, chosen because SFDC_USERNAME is set without a "
     "password or secret (SFDC_AUTH picks another)"},
    {NULL, "SFDC_CLIENT_ID SFDC_USERNAME SFDC_CLIENT_SECRET", CONFIG_AUTH_NONE,
     "SFDC_PASSWORD",
     "for the password flow, chosen because SFDC_USERNAME and "
     "SFDC_CLIENT_SECRET are set"},
    {NULL, "SFDC_USERNAME SFDC_PASSWORD", CONFIG_AUTH_NONE,
     "SFDC_CLIENT_ID SFDC_CLIENT_SECRET", "chosen because SFDC_PASSWORD is set"},
    {NULL, "SFDC_ACCESS_TOKEN", CONFIG_AUTH_NONE, "SFDC_INSTANCE_URL",
     "for the token flow"},
    {NULL, "SFDC_REFRESH_TOKEN", CONFIG_AUTH_NONE, "SFDC_CLIENT_ID",
     "for the refresh_token flow"},
    {NULL, "SFDC_CLIENT_ID", CONFIG_AUTH_NONE, "SFDC_AUTH",
     "not set, and no credentials are set to infer it from"},
    {NULL, "", CONFIG_AUTH_NONE, "SFDC_AUTH", "or token (SFDC_ACCESS_TOKEN"},
};

/* The field a credential variable loads into. */
static char *
field_of(struct config *cfg, const char *name)
{
	struct {
		const char *name;
		char *value;
	} f[] = {
	    {"SFDC_CLIENT_ID", cfg->client_id},
	    {"SFDC_CLIENT_SECRET", cfg->client_secret},
	    {"SFDC_USERNAME", cfg->username},
	    {"SFDC_PASSWORD", cfg->password},
	    {"SFDC_JWT_KEY", cfg->jwt_key},
	    {"SFDC_JWT_KEY_FILE", cfg->jwt_key_file},
	    {"SFDC_REFRESH_TOKEN", cfg->refresh_token},
	    {"SFDC_ACCESS_TOKEN", cfg->access_token},
	    {"SFDC_INSTANCE_URL", cfg->instance_url},
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (strcmp(f[i].name, name) == 0)
			return f[i].value;
	fail_msg("unknown %s", name);
	return NULL;
}

static const char *const credential_vars[] = {
    "SFDC_CLIENT_ID",     "SFDC_CLIENT_SECRET", "SFDC_USERNAME",
    "SFDC_PASSWORD",      "SFDC_JWT_KEY",       "SFDC_JWT_KEY_FILE",
    "SFDC_REFRESH_TOKEN", "SFDC_ACCESS_TOKEN",  "SFDC_INSTANCE_URL",
};

static int
word_in(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; p != NULL && (p = strstr(p, word)) != NULL;
	     p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return 1;
	return 0;
}

static void
test_flow_table(void **state)
{
	const struct key_fixture *k = *state;
	char err[ERRLEN];

	for (size_t i = 0; i < sizeof(flow_cases) / sizeof(flow_cases[0]);
	     i++) {
		const struct flow_case *c = &flow_cases[i];
		struct env e;
		struct config cfg;

		env_for(&e, k, c->auth, c->vars);
		int rc = config_load(&cfg, env_array(&e), err, sizeof(err));
		if (c->want != CONFIG_AUTH_NONE) {
			if (rc != 0)
				fail_msg("case %zu: %s", i, err);
			assert_int_equal(cfg.auth, c->want);
			assert_int_equal(cfg.auth_inferred, c->auth == NULL);
			/* What was set is loaded; nothing else appears. */
			for (size_t j = 0; j < sizeof(credential_vars) /
			                           sizeof(credential_vars[0]);
			     j++) {
				const char *v = credential_vars[j];
				char *got = field_of(&cfg, v);
				if (word_in(c->vars, v) != (got != NULL))
					fail_msg("case %zu: %s", i, v);
			}
			config_clear(&cfg);
		} else {
			size_t want_lines = 0;
			if (rc != -1)
				fail_msg("case %zu loaded", i);
			for (size_t j = 0; j < sizeof(credential_vars) /
			                           sizeof(credential_vars[0]);
			     j++)
				if (word_in(c->missing, credential_vars[j])) {
					want_lines++;
					if (!has_line_for(err, credential_vars[j]))
						fail_msg("case %zu: no line for "
						         "%s: %s",
						         i, credential_vars[j],
						         err);
				}
			if (word_in(c->missing, "SFDC_AUTH")) {
				want_lines++;
				assert_true(has_line_for(err, "SFDC_AUTH"));
			}
			if (count_lines(err) != want_lines ||
			    strstr(err, c->err_has) == NULL)
				fail_msg("case %zu: %s", i, err);
			assert_true(is_zeroed(&cfg));
		}
		env_free(&e);
	}
}

/* Each complete flow, with any one of its variables unset (or empty):
 * exactly one line, naming that variable and the flow. */
static void
test_flow_each_missing(void **state)
{
	const struct key_fixture *k = *state;
	char err[ERRLEN], want[160];

	for (size_t i = 0; i < 7; i++) {
		const struct flow_case *c = &flow_cases[i];
		char names[512], *save = NULL;

		snprintf(names, sizeof(names), "%s", c->vars);
		for (char *n = strtok_r(names, " ", &save); n != NULL;
		     n = strtok_r(NULL, " ", &save)) {
			/* The secret is optional for refresh_token. */
			if (c->want == CONFIG_AUTH_REFRESH_TOKEN &&
			    strcmp(n, "SFDC_CLIENT_SECRET") == 0)
				continue;
			for (int empty = 0; empty <= 1; empty++) {
				struct env e;
				struct config cfg;

				env_for(&e, k, c->auth, c->vars);
				if (empty)
					env_set(&e, n, "");
				else
					env_unset(&e, n);
				assert_int_equal(config_load(&cfg,
				                             env_array(&e), err,
				                             sizeof(err)),
				                 -1);
				/* A key pair is reported at its first name. */
				const char *named =
				    strcmp(n, "SFDC_JWT_KEY_FILE") == 0
				        ? "SFDC_JWT_KEY"
				        : n;
				snprintf(want, sizeof(want),
				         "%s: required, not set (", named);
				if (strncmp(err, want, strlen(want)) != 0 ||
				    count_lines(err) != 1)
					fail_msg("%s without %s: %s", c->auth,
					         n, err);
				snprintf(want, sizeof(want),
				         "for SFDC_AUTH=%s\n", c->auth);
				assert_non_null(strstr(err, want));
				env_free(&e);
			}
		}
	}
}

/* An empty SFDC_AUTH is a mistake like any empty variable; the flow is
 * still inferred, so the rest is checked too. */
static void
test_flow_empty_auth(void **state)
{
	const struct key_fixture *k = *state;
	char err[ERRLEN];
	struct env e;
	struct config cfg;

	env_for(&e, k, "", "SFDC_CLIENT_ID SFDC_CLIENT_SECRET");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)),
	                 -1);
	assert_string_equal(err,
	                    "SFDC_AUTH: empty value; unset it to leave it out\n");
	env_free(&e);
}

/* The key keeps its line breaks; the static token's URL loses its '/'. */
static void
test_flow_values(void **state)
{
	const struct key_fixture *k = *state;
	char err[ERRLEN];
	struct env e;
	struct config cfg;

	env_for(&e, k, NULL, "SFDC_CLIENT_ID SFDC_USERNAME SFDC_JWT_KEY");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)), 0);
	assert_string_equal(cfg.jwt_key, k->pem);
	assert_non_null(strchr(cfg.jwt_key, '\n'));
	config_clear(&cfg);
	env_free(&e);

	env_for(&e, k, "token", "SFDC_ACCESS_TOKEN SFDC_INSTANCE_URL");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)), 0);
	assert_string_equal(cfg.instance_url, "https://acme.my.salesforce.com");
	assert_string_equal(cfg.access_token, "00Dxx!access-DDDD");
	assert_null(cfg.client_id);
	config_clear(&cfg);
	env_set(&e, "SFDC_INSTANCE_URL", "acme.my.salesforce.com");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)),
	                 -1);
	assert_true(has_line_for(err, "SFDC_INSTANCE_URL"));
	assert_int_equal(count_lines(err), 1);
	env_free(&e);

	assert_string_equal(config_auth_name(CONFIG_AUTH_JWT), "jwt");
	assert_string_equal(config_auth_name(CONFIG_AUTH_CLIENT_CREDENTIALS),
	                    "client_credentials");
	assert_string_equal(config_auth_name(CONFIG_AUTH_TOKEN), "token");
	assert_string_equal(config_auth_name((enum config_auth)99), "none");
}

/* The new secrets are redacted from the log once loaded. */
static void
test_flow_secrets_registered(void **state)
{
	const struct key_fixture *k = *state;
	char err[ERRLEN];
	struct env e;
	struct config cfg;

	env_for(&e, k, NULL,
	        "SFDC_CLIENT_ID SFDC_USERNAME SFDC_JWT_KEY SFDC_REFRESH_TOKEN "
	        "SFDC_ACCESS_TOKEN SFDC_INSTANCE_URL");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)), 0);
	const char *secrets[] = {sample(k, "SFDC_REFRESH_TOKEN"),
	                         sample(k, "SFDC_ACCESS_TOKEN"), k->pem};
	for (size_t i = 0; i < 3; i++) {
		char *out = capture_stderr(log_value, secrets[i]);
		assert_null(strstr(out, secrets[i]));
		assert_non_null(strstr(out, "[redacted]"));
		free(out);
	}
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

	assert_true(strncmp(help,
	                    "Usage: sfrelay [--check] [--help] [--version]\n",
	                    46) == 0);
	assert_true(strncmp(md, "# Configuration\n\n", 17) == 0);
	assert_non_null(strstr(md, "\n| Variable | Default | Description |\n"));
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		assert_non_null(strstr(help, known[i]));
		assert_non_null(strstr(md, known[i]));
	}
	/* Every variable the help text lists comes with its default. */
	assert_non_null(strstr(help, "SFDC_LOGIN_URL (default: "
	                             "https://login.salesforce.com)"));
	assert_non_null(strstr(help, "SFRELAY_CHANNELS (required unless "
	                             "SFRELAY_POLL is set)"));
	assert_non_null(strstr(help, "SFDC_CLIENT_ID (required for every "
	                             "flow but token)"));
	assert_non_null(strstr(help, "SFDC_USERNAME (required for jwt, "
	                             "password)"));
	assert_non_null(strstr(help, "SFDC_AUTH (default: inferred)"));
	assert_non_null(strstr(help, "SFDC_JWT_KEY (required for jwt (or "
	                             "SFDC_JWT_KEY_FILE))"));
	assert_non_null(strstr(md, "| SFDC_PASSWORD | required for `password` "
	                           "| "));

	/* Table rows: every row is a variable row. */
	size_t rows = 0, sf_rows = 0;
	for (char *l = md; l != NULL && *l != '\0';) {
		if (strncmp(l, "| ", 2) == 0)
			rows++;
		if (l[0] == '|' && l[2] >= 'A' && l[2] <= 'Z' &&
		    strncmp(l, "| Variable ", 11) != 0)
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
	for (char *l = strstr(md, "\n| "); l != NULL;
	     l = strstr(l + 1, "\n| ")) {
		char name[64];
		char err[ERRLEN];
		struct env e;
		struct config cfg;

		int end = 0;
		if (sscanf(l + 1, "| %63[A-Z_] |%n", name, &end) != 1 ||
		    end == 0)
			continue;
		if (strstr(help, name) == NULL)
			fail_msg("%s missing from --help", name);
		env_minimal(&e);
		env_set(&e, name, "bad\001value");
		if (config_load(&cfg, env_array(&e), err, sizeof(err)) != -1)
			fail_msg("%s accepted a control byte", name);
		if (!has_line_for(err, name) || count_lines(err) != 1)
			fail_msg("%s: %s", name, err);
		env_free(&e);
		checked++;
	}
	assert_int_equal(checked, sf_rows);

	/* --help has one entry per variable, like the table. */
	size_t help_entries = 0;
	for (char *l = strstr(help, "\n  "); l != NULL;
	     l = strstr(l + 1, "\n  ")) {
		char name[64];
		if (sscanf(l + 3, "%63[A-Z_]", name) == 1 &&
		    (size_t)strspn(l + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") ==
		        strlen(name) &&
		    (l[3 + strlen(name)] == ' ' || l[3 + strlen(name)] == '\n') &&
		    strlen(name) >= 4 && strstr(md, name) != NULL)
			help_entries++;
	}
	assert_int_equal(help_entries, sf_rows);

	/* Plain text: no markdown backticks in --help. */
	assert_null(strchr(help, '`'));
	free(help);
	free(md);
}

/* --- polling (SFRELAY_POLL and friends) ---------------------------------- */

static void
test_poll_settings(void **state)
{
	(void)state;
	char err[ERRLEN];
	struct env e;
	struct config cfg;

	/* Defaults: nothing polled, first run from now, 50% budget. */
	env_minimal(&e);
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)), 0);
	assert_null(cfg.poll);
	assert_null(cfg.backfill);
	assert_int_equal(cfg.poll_lookback_s, 0);
	assert_int_equal(cfg.api_budget_pct, 50);
	config_clear(&cfg);

	static const struct {
		const char *lookback;
		long seconds;
		const char *budget;
		long pct;
	} units[] = {
	    {"24h", 86400, "80", 80},    {"90", 90, "1%", 1},
	    {"15m", 900, "100%", 100},   {"2d", 172800, "50", 50},
	    {"180d", 15552000, "7", 7},  {"0", 0, "99%", 99},
	};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		env_set(&e, "SFRELAY_POLL_LOOKBACK", units[i].lookback);
		env_set(&e, "SFRELAY_API_BUDGET_PCT", units[i].budget);
		if (config_load(&cfg, env_array(&e), err, sizeof(err)) != 0)
			fail_msg("%s / %s rejected: %s", units[i].lookback,
			         units[i].budget, err);
		assert_int_equal(cfg.poll_lookback_s, units[i].seconds);
		assert_int_equal(cfg.api_budget_pct, units[i].pct);
		config_clear(&cfg);
	}
	/* The texts are kept as written; the poller parses them again. */
	const char *poll = "SetupAuditTrail@60s, LoginHistory@5m(Id,Status),"
	                   "Account:SystemModstamp@2m[Industry IN ('a,b')]";
	const char *bf = "/topic/AccountWatch=Account(Id,Name),"
	                 "/event/Order__e=Order__c";
	env_set(&e, "SFRELAY_POLL", poll);
	env_set(&e, "SFRELAY_BACKFILL", bf);
	if (config_load(&cfg, env_array(&e), err, sizeof(err)) != 0)
		fail_msg("rejected: %s", err);
	assert_string_equal(cfg.poll, poll);
	assert_string_equal(cfg.backfill, bf);
	config_clear(&cfg);
	assert_true(is_zeroed(&cfg));
	env_free(&e);
}

static void
test_poll_settings_bad(void **state)
{
	(void)state;
	static const struct {
		const char *name, *value, *want;
		int lines;
	} cases[] = {
	    {"SFRELAY_POLL", "", "empty value; unset it to leave it out", 1},
	    {"SFRELAY_POLL", "Account@5x",
	     "SFRELAY_POLL: item 1 \"Account@5x\": interval needs a unit", 1},
	    {"SFRELAY_POLL", "Account@1m,,Case",
	     "SFRELAY_POLL: item 2 is empty", 1},
	    {"SFRELAY_POLL", "Account,account",
	     "SFRELAY_POLL: item 2 \"account\": object listed twice", 1},
	    {"SFRELAY_POLL", "LoginEvent@1m",
	     "is an event monitoring big object", 1},
	    {"SFRELAY_POLL", "Account[Name = 'x'",
	     "condition has no closing ']'", 1},
	    /* Every bad item is reported, one line each. */
	    {"SFRELAY_POLL", "Account@0s,Case(Id;Name),Lead", "item 2", 2},
	    {"SFRELAY_POLL_LOOKBACK", "1w",
	     "\"1w\" has trailing characters (it may end in s, m, h or d)", 1},
	    {"SFRELAY_POLL_LOOKBACK", "181d", "is out of range, 0..15552000",
	     1},
	    {"SFRELAY_POLL_LOOKBACK", "-1h", "is negative", 1},
	    {"SFRELAY_API_BUDGET_PCT", "0", "is out of range, 1..100percent",
	     1},
	    {"SFRELAY_API_BUDGET_PCT", "101%", "is out of range", 1},
	    {"SFRELAY_API_BUDGET_PCT", "half", "is not a number", 1},
	    {"SFRELAY_BACKFILL", "Account",
	     "SFRELAY_BACKFILL: item 1 \"Account\": must be channel=Object", 1},
	    {"SFRELAY_BACKFILL", "/topic/A=Account@1m",
	     "takes no @interval", 1},
	    {"SFRELAY_BACKFILL", "/foo/A=Account", "the channel must be", 1},
	    /* A quote or backslash in an item is escaped, so the quoted
	     * span ends where the item ends and nothing after it reads as
	     * the value (the fuzzer found the unescaped form). */
	    {"SFRELAY_POLL", "Ac\"c=x",
	     "item 1 \"Ac\\\"c=x\": unexpected \"\\\"c=x\"", 1},
	    {"SFRELAY_POLL", "Account(Na\\me)",
	     "\"Na\\\\me\" is not a field name", 1},
	    {"SFRELAY_BACKFILL", "/topic/A\"=Account@1m",
	     "item 1 \"/topic/A\\\"=Account@1m\"", 1},
	};
	char err[ERRLEN];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct env e;
		struct config cfg;

		env_minimal(&e);
		env_set(&e, cases[i].name, cases[i].value);
		int rc = config_load(&cfg, env_array(&e), err, sizeof(err));
		if (rc != -1 || !has_line_for(err, cases[i].name) ||
		    strstr(err, cases[i].want) == NULL ||
		    count_lines(err) != (size_t)cases[i].lines)
			fail_msg("%s=\"%s\": rc %d, err \"%s\", want \"%s\"",
			         cases[i].name, cases[i].value, rc, err,
			         cases[i].want);
		assert_true(is_zeroed(&cfg));
		env_free(&e);
	}
}

/* Streams, polls, or both; at least one. */
static void
test_channels_or_poll(void **state)
{
	(void)state;
	char err[ERRLEN];
	struct env e;
	struct config cfg;

	env_minimal(&e);
	env_unset(&e, "SFRELAY_CHANNELS");
	env_set(&e, "SFRELAY_POLL", "SetupAuditTrail");
	if (config_load(&cfg, env_array(&e), err, sizeof(err)) != 0)
		fail_msg("poll only rejected: %s", err);
	assert_int_equal(cfg.nchannels, 0);
	assert_string_equal(cfg.poll, "SetupAuditTrail");
	config_clear(&cfg);

	/* An empty channel list counts as unset, as for required ones. */
	env_set(&e, "SFRELAY_CHANNELS", "");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)), 0);
	assert_int_equal(cfg.nchannels, 0);
	config_clear(&cfg);

	env_set(&e, "SFRELAY_CHANNELS", "/topic/A");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)), 0);
	assert_int_equal(cfg.nchannels, 1);
	assert_non_null(cfg.poll);
	config_clear(&cfg);

	/* Neither: one line naming the channels and the alternative. */
	env_unset(&e, "SFRELAY_CHANNELS");
	env_unset(&e, "SFRELAY_POLL");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)),
	                 -1);
	assert_int_equal(count_lines(err), 1);
	assert_true(strncmp(err, "SFRELAY_CHANNELS: required, not set (", 37) ==
	            0);
	assert_non_null(strstr(err, "), unless SFRELAY_POLL is set\n"));
	/* An empty SFRELAY_POLL does not count as set. */
	env_set(&e, "SFRELAY_POLL", "");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)),
	                 -1);
	assert_true(has_line_for(err, "SFRELAY_CHANNELS"));
	assert_true(has_line_for(err, "SFRELAY_POLL"));
	/* A bad SFRELAY_POLL is reported for itself only. */
	env_set(&e, "SFRELAY_POLL", "Account@1x");
	assert_int_equal(config_load(&cfg, env_array(&e), err, sizeof(err)),
	                 -1);
	assert_int_equal(count_lines(err), 1);
	assert_true(has_line_for(err, "SFRELAY_POLL"));
	assert_true(is_zeroed(&cfg));
	env_free(&e);
}

/* SFRELAY_CHECKPOINT follows DATABASE_URL unless set; SFRELAY_FAILOVER
 * takes a duration. */
static void
test_checkpoint_store(void **state)
{
	(void)state;
	static const struct {
		const char *checkpoint, *url, *failover;
		enum config_checkpoint want;
		long want_failover;
	} cases[] = {
	    {NULL, NULL, NULL, CONFIG_CHECKPOINT_FILE, 15000},
	    {NULL, "postgres://u:pw@db.example.com:5432/d", NULL,
	     CONFIG_CHECKPOINT_POSTGRES, 15000},
	    {NULL, "postgresql://u:pw@localhost/d", "3s",
	     CONFIG_CHECKPOINT_POSTGRES, 3000},
	    {"file", "postgres://u:pw@h/d", "300s", CONFIG_CHECKPOINT_FILE,
	     300000},
	    {"postgres", "postgres://h/d", "5m", CONFIG_CHECKPOINT_POSTGRES,
	     300000},
	    {"file", NULL, "4500ms", CONFIG_CHECKPOINT_FILE, 4500},
	};
	char err[ERRLEN];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct env e;
		struct config cfg;
		env_minimal(&e);
		if (cases[i].checkpoint != NULL)
			env_set(&e, "SFRELAY_CHECKPOINT", cases[i].checkpoint);
		if (cases[i].url != NULL)
			env_set(&e, "DATABASE_URL", cases[i].url);
		if (cases[i].failover != NULL)
			env_set(&e, "SFRELAY_FAILOVER", cases[i].failover);
		if (config_load(&cfg, env_array(&e), err, sizeof(err)) != 0)
			fail_msg("case %zu rejected: %s", i, err);
		assert_int_equal(cfg.checkpoint, cases[i].want);
		assert_int_equal(cfg.failover_ms, cases[i].want_failover);
		if (cases[i].url != NULL)
			assert_string_equal(cfg.database_url, cases[i].url);
		else
			assert_null(cfg.database_url);
		config_clear(&cfg);
		env_free(&e);
	}
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
	    TEST(test_poll_settings),
	    TEST(test_poll_settings_bad),
	    TEST(test_channels_or_poll),
	    TEST(test_flow_table),
	    TEST(test_flow_each_missing),
	    TEST(test_flow_empty_auth),
	    TEST(test_flow_values),
	    TEST(test_flow_secrets_registered),
	    TEST(test_checkpoint_store),
	};

	return cmocka_run_group_tests_name("config", tests, group_setup,
	                                   group_teardown);
}
