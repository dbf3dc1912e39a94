/*
 * Fuzz harness for config_load() (config.h).
 *
 * The variable names and which of them are secrets are read once from
 * config_print_markdown(), the table docs/configuration.md is generated
 * from, so the harness follows config.c's settings table as it grows.
 *
 * Input: environment entries separated by NUL bytes. An entry whose first
 * byte is below 0x20 has that byte replaced by "<NAME>=", NAME picked from
 * the variable names by the byte's value, so the fuzzer reaches the
 * checks behind every variable without having to spell its name (the
 * dictionary config.dict helps with the spelled form).
 *
 * Invariants, each an abort() (after a message) when broken:
 *   - config_load() returns 0 or -1, and err is terminated in its buffer;
 *   - 0: an authentication flow is chosen and the variables config.h
 *     lists for it are set; the login URL (and the instance URL, when
 *     set) has no trailing '/'; there are 1..CONFIG_MAX_CHANNELS channels;
 *   - -1: err is non-empty; every line starts with "<known name>: " or
 *     "config: " (a last line cut by the buffer's end may be a prefix of
 *     one); err holds printable ASCII and '\n' only, so a value cannot
 *     forge a line;
 *   - no secret (the value, 4 bytes or more, of a variable the table
 *     marks "Secret": SFDC_CLIENT_SECRET, SFDC_PASSWORD,
 *     SFDC_SECURITY_TOKEN, ...) appears in err. err quotes user values as
 *     "..." with \" \\ \xNN escapes (all other text comes from config.c
 *     itself), so the check unquotes every quoted value and looks for each
 *     secret there: a secret that merely coincides with fixed message text
 *     ("requ", "SFDC") is not a leak.
 * config_clear() runs after every call, and log_shutdown() drops the
 * secrets a successful load registers with the log module.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfrelay/config.h"
#include "sfrelay/log.h"
#include "sfrelay/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HARNESS "config_load"

/* Reports which promise broke, then aborts: libFuzzer records the input. */
static void broken(const char *what) __attribute__((noreturn));

static void
broken(const char *what)
{
	fprintf(stderr, "%s: invariant broken: %s\n", HARNESS, what);
	abort();
}

/* Rows of the configuration table: far more than config.c has. */
#define MAX_NAMES 128

/* The variables, read from the table once per process (libFuzzer offers
 * no context pointer). */
static struct {
	size_t n;
	char *name[MAX_NAMES];
	int secret[MAX_NAMES];
} vars;

/*
 * Fills vars from config_print_markdown(): each row starts with
 * "| NAME |", and a secret's description ends in "Secret: never shown."
 */
static void
load_names(void)
{
	char *text = NULL, *line, *next;
	size_t len = 0, n;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		abort();
	config_print_markdown(f);
	if (fclose(f) != 0 || text == NULL)
		abort();
	for (line = text; line != NULL; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (strncmp(line, "| ", 2) != 0)
			continue;
		n = strspn(line + 2, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
		if (n == 0 || line[2 + n] != ' ' || vars.n == MAX_NAMES)
			continue;
		vars.name[vars.n] = strndup(line + 2, n);
		if (vars.name[vars.n] == NULL)
			abort();
		vars.secret[vars.n] =
		    strstr(line, "Secret: never shown") != NULL;
		vars.n++;
	}
	free(text);
	if (vars.n == 0)
		broken("no variable found in config_print_markdown()");
}

/* Big enough for most inputs; long lists still reach the truncation. */
#define ERR_SIZE 4096

/* Value of entry e when it is NAME=..., else NULL. */
static const char *
value_of(const char *e, const char *name)
{
	size_t n = strlen(name);

	if (strncmp(e, name, n) == 0 && e[n] == '=')
		return e + n + 1;
	return NULL;
}

/* Splits the input into a NULL-terminated env array (owned strings). */
static char **
make_env(const uint8_t *data, size_t size)
{
	size_t count = 1, k = 0;
	char **env;

	for (size_t i = 0; i < size; i++)
		count += data[i] == '\0';
	env = calloc(count + 1, sizeof(*env));
	if (env == NULL)
		abort();
	for (size_t start = 0; start <= size && k < count;) {
		const uint8_t *nul = memchr(data + start, '\0', size - start);
		size_t n =
		    nul != NULL ? (size_t)(nul - data) - start : size - start;
		const char *name = "";
		size_t skip = 0, nlen = 0;
		char *e;

		if (n > 0 && data[start] < 0x20) {
			name = vars.name[(data[start] - 1u) % vars.n];
			nlen = strlen(name) + 1; /* with its '=' */
			skip = 1;
		}
		e = malloc(nlen + n - skip + 1);
		if (e == NULL)
			abort();
		if (nlen > 0) {
			memcpy(e, name, nlen - 1);
			e[nlen - 1] = '=';
		}
		memcpy(e + nlen, data + start + skip, n - skip);
		e[nlen + n - skip] = '\0';
		env[k++] = e;
		start += n + 1;
	}
	env[k] = NULL;
	return env;
}

static void
free_env(char **env)
{
	for (char **e = env; *e != NULL; e++)
		free(*e);
	free(env);
}

/* Does line (len bytes, no '\n') start like a problem line? When cut is
 * set the line was truncated and may be shorter than its prefix. */
static int
line_ok(const char *line, size_t len, int cut)
{
	char prefix[128];

	for (size_t i = 0; i <= vars.n; i++) {
		int n = snprintf(prefix, sizeof(prefix),
		                 "%s: ", i < vars.n ? vars.name[i] : "config");
		size_t pn = n > 0 ? (size_t)n : 0;

		if (pn >= sizeof(prefix))
			abort();
		if (len >= pn && memcmp(line, prefix, pn) == 0)
			return 1;
		if (cut && len < pn && memcmp(line, prefix, len) == 0)
			return 1;
	}
	return 0;
}


/* memmem, which POSIX does not have. */
static int
contains(const char *hay, size_t hn, const char *needle, size_t nn)
{
	if (nn == 0)
		return 1;
	for (size_t i = 0; i + nn <= hn; i++)
		if (memcmp(hay + i, needle, nn) == 0)
			return 1;
	return 0;
}

/*
 * Unquotes every "..." span of err into buf (one span at a time) and
 * aborts when one contains a secret. A span cut by the end of err is
 * unquoted as far as it goes.
 */
static void
check_secrets(const char *err, char **env)
{
	size_t n = strlen(err), i = 0, o;
	char *buf = malloc(n + 1);

	if (buf == NULL)
		abort();
	while (i < n) {
		if (err[i++] != '"')
			continue;
		o = 0;
		while (i < n && err[i] != '"') {
			if (err[i] == '\\' && i + 1 < n && err[i + 1] == 'x' &&
			    i + 3 < n && text_hex_digit(err[i + 2]) >= 0 &&
			    text_hex_digit(err[i + 3]) >= 0) {
				buf[o++] = (char)(text_hex_digit(err[i + 2]) * 16 +
				                  text_hex_digit(err[i + 3]));
				i += 4;
			} else if (err[i] == '\\' && i + 1 < n) {
				buf[o++] = err[i + 1];
				i += 2;
			} else {
				buf[o++] = err[i++];
			}
		}
		i++; /* the closing quote */
		/* A shortened value ends in "...", which the value may not
		 * have: a secret ending in dots must not match across it. */
		if (o >= 3 && memcmp(buf + o - 3, "...", 3) == 0)
			o -= 3;
		for (char **e = env; *e != NULL; e++) {
			for (size_t s = 0; s < vars.n; s++) {
				const char *v = vars.secret[s]
				                    ? value_of(*e, vars.name[s])
				                    : NULL;

				if (v != NULL && strlen(v) >= 4 &&
				    contains(buf, o, v, strlen(v)))
					broken("err shows a secret inside a "
					       "quoted value");
			}
		}
	}
	free(buf);
}

static void
check_failure(const char *err, char **env)
{
	size_t n = strlen(err);
	int cut = n == ERR_SIZE - 1;
	const char *line = err;

	if (n == 0)
		broken("config_load() failed with an empty err");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)err[i];

		if (c != '\n' && (c < 0x20 || c > 0x7e))
			broken("err holds a byte that is not printable ASCII "
			       "or newline");
	}
	while (*line != '\0') {
		const char *nl = strchr(line, '\n');
		size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);

		/* Only a truncated err may end without a newline. */
		if (nl == NULL && !cut)
			broken("err's last line has no newline, yet err "
			       "was not truncated");
		if (!line_ok(line, len, nl == NULL))
			broken("err line does not start with a variable "
			       "name or \"config\"");
		line += len + (nl != NULL);
	}
	check_secrets(err, env);
}

/* A URL the table says has no trailing '/': NULL, or non-empty without. */
static int
url_trimmed(const char *u)
{
	size_t n;

	if (u == NULL)
		return 1;
	n = strlen(u);
	return n > 0 && u[n - 1] != '/';
}

static void
check_success(const struct config *cfg)
{
	int ok;

	if (cfg->login_url == NULL || cfg->api_version == NULL ||
	    cfg->state_dir == NULL)
		broken("success without a setting that has a default");
	switch (cfg->auth) {
	case CONFIG_AUTH_JWT:
		ok = cfg->client_id != NULL && cfg->username != NULL &&
		     (cfg->jwt_key != NULL || cfg->jwt_key_file != NULL);
		break;
	case CONFIG_AUTH_CLIENT_CREDENTIALS:
		ok = cfg->client_id != NULL && cfg->client_secret != NULL;
		break;
	case CONFIG_AUTH_REFRESH_TOKEN:
		ok = cfg->client_id != NULL && cfg->refresh_token != NULL;
		break;
	case CONFIG_AUTH_PASSWORD:
		ok = cfg->client_id != NULL && cfg->client_secret != NULL &&
		     cfg->username != NULL && cfg->password != NULL;
		break;
	case CONFIG_AUTH_TOKEN:
		ok = cfg->access_token != NULL && cfg->instance_url != NULL;
		break;
	default:
		broken("success without an authentication flow");
	}
	if (!ok)
		broken("success without a variable the flow requires");
	if (cfg->login_url == NULL || !url_trimmed(cfg->login_url) ||
	    !url_trimmed(cfg->instance_url))
		broken("login or instance URL is empty or ends in '/'");
	/* Channels, polled objects, or both: never neither. */
	if (cfg->nchannels > CONFIG_MAX_CHANNELS ||
	    (cfg->nchannels == 0 && cfg->poll == NULL))
		broken("channel count out of range");
	for (size_t i = 0; i < cfg->nchannels; i++)
		if (cfg->channels[i] == NULL || cfg->channels[i][0] != '/')
			broken("channel is NULL or does not start with '/'");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[ERR_SIZE];
	struct config cfg;
	char **env;
	int rc;

	if (vars.n == 0)
		load_names();
	env = make_env(data, size);
	memset(&cfg, 0, sizeof(cfg));
	memset(err, 'x', sizeof(err));
	rc = config_load(&cfg, (const char *const *)env, err, sizeof(err));
	if (memchr(err, '\0', sizeof(err)) == NULL)
		broken("err is not terminated");
	if (rc == 0)
		check_success(&cfg);
	else if (rc == -1)
		check_failure(err, env);
	else
		broken("config_load() returned neither 0 nor -1");
	config_clear(&cfg);
	log_shutdown();
	free_env(env);
	return 0;
}
