#include "sfrelay/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Every setting is one row of the table below. Loading, validation, --help
 * and the markdown reference all walk that table, so a setting is added or
 * changed in exactly one place.
 */

enum setting_kind {
	SETTING_STRING, /* any text without control characters */
	SETTING_SECRET, /* like STRING, but never shown, and redacted in logs */
	SETTING_URL,    /* http:// or https:// with a host; trailing '/' cut */
	SETTING_INT,    /* decimal integer in [min, max], optional unit */
	SETTING_ENUM,   /* one of a fixed set of words */
	SETTING_LIST,   /* comma-separated items */
	SETTING_PATH,   /* a readable regular file */
};

/* A unit accepted after a number; the value is scaled to the base unit. */
struct unit_suffix {
	const char *suffix;
	long scale;
};

static const struct unit_suffix ms_suffixes[] = {
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {NULL, 0},
};

struct load;
struct setting;

/* Extra rule for a string value or for each item of a list. Returns 0, or
 * reports the problem through ld and returns -1. */
typedef int setting_check_fn(struct load *ld, const struct setting *s,
                             const char *value);
/* Parses an enum word into the field it points to. Returns 0 or -1. */
typedef int setting_enum_fn(const char *value, void *field);

struct setting {
	const char *name;
	enum setting_kind kind;
	/* Used when the variable is unset; NULL for required settings and for
	 * optional ones that are simply absent when unset. */
	const char *def;
	int required;
	size_t field; /* offsetof(struct config, ...) */
	/* Short noun phrase for "required, not set (...)". */
	const char *what;
	/* Description for --help and the docs; `code` is marked with
	 * backticks, which --help drops. */
	const char *help;

	/* SETTING_INT: bounds in the base unit, and the unit (NULL: none). */
	long min;
	long max;
	const char *unit;
	const struct unit_suffix *suffixes;

	/* SETTING_ENUM */
	const char *const *choices;
	setting_enum_fn *parse_enum;

	/* SETTING_LIST: capacity of the char *[] field, and its count field. */
	size_t max_items;
	size_t count_field;

	/* Extra rule: string value, or each list item. */
	setting_check_fn *check;
};

struct load {
	const char *const *env;
	char *err;
	size_t errlen;
	size_t used;
	unsigned nproblems;
};

static setting_enum_fn parse_format;
static setting_enum_fn parse_log_level;
static setting_enum_fn parse_replay;
static setting_check_fn check_api_version;
static setting_check_fn check_channel;

static const char *const format_choices[] = {"logfmt", "json", NULL};
static const char *const log_level_choices[] = {"debug", "info", "warn",
                                                "error", NULL};

static const char *const replay_choices[] = {"-1", "-2", NULL};

static const char *const channel_prefixes[] = {"/topic/", "/event/", "/data/",
                                               "/u/", NULL};

/* The replay extension ("ext":{"replay":...}) needs API 37.0 or later. */
#define API_VERSION_MIN_MAJOR 37

static const struct setting settings[] = {
    {
        .name = "SFDC_LOGIN_URL",
        .kind = SETTING_URL,
        .def = "https://login.salesforce.com",
        .field = offsetof(struct config, login_url),
        .what = "the login server",
        .help = "Login server that issues access tokens: "
                "`https://login.salesforce.com` for production, "
                "`https://test.salesforce.com` for sandboxes, or the "
                "org's My Domain URL. Real orgs use `https://`; "
                "`http://` is accepted only so that the bundled mock "
                "org can run on a loopback address.",
    },
    {
        .name = "SFDC_CLIENT_ID",
        .kind = SETTING_STRING,
        .required = 1,
        .field = offsetof(struct config, client_id),
        .what = "the connected app's consumer key",
        .help = "Consumer key of the connected app the relay logs "
                "in through.",
    },
    {
        .name = "SFDC_CLIENT_SECRET",
        .kind = SETTING_SECRET,
        .required = 1,
        .field = offsetof(struct config, client_secret),
        .what = "the connected app's consumer secret",
        .help = "Consumer secret of the connected app.",
    },
    {
        .name = "SFDC_USERNAME",
        .kind = SETTING_STRING,
        .required = 1,
        .field = offsetof(struct config, username),
        .what = "the user the relay logs in as",
        .help = "Username of the integration user the relay logs in "
                "as; it needs API access and read access to what the "
                "channels carry.",
    },
    {
        .name = "SFDC_PASSWORD",
        .kind = SETTING_SECRET,
        .required = 1,
        .field = offsetof(struct config, password),
        .what = "the user's password",
        .help = "Password of that user.",
    },
    {
        .name = "SFDC_SECURITY_TOKEN",
        .kind = SETTING_SECRET,
        .def = "",
        .field = offsetof(struct config, security_token),
        .what = "the user's security token",
        .help = "Security token of that user, appended to the "
                "password when logging in. Leave it unset (or empty) "
                "when the org does not ask for one.",
    },
    {
        .name = "SFDC_API_VERSION",
        .kind = SETTING_STRING,
        .def = "61.0",
        .field = offsetof(struct config, api_version),
        .what = "the Salesforce API version",
        .help = "Salesforce API version of the streaming and REST "
                "endpoints, written like `61.0`; `37.0` or later, the "
                "first version with event replay.",
        .check = check_api_version,
    },
    {
        .name = "SFRELAY_CHANNELS",
        .kind = SETTING_LIST,
        .required = 1,
        .field = offsetof(struct config, channels),
        .what = "the streaming channels to relay, e.g. "
                "/topic/AccountWatch,/event/LoginEventStream",
        .help = "Streaming channels to relay: PushTopics "
                "(`/topic/Name`), platform events and event "
                "monitoring streams (`/event/Name__e`, "
                "`/event/LoginEventStream`), Change Data Capture "
                "(`/data/ChangeEvents`, `/data/AccountChangeEvent`) "
                "and generic streaming (`/u/Name`).",
        .max_items = CONFIG_MAX_CHANNELS,
        .count_field = offsetof(struct config, nchannels),
        .check = check_channel,
    },
    {
        .name = "SFRELAY_FORMAT",
        .kind = SETTING_ENUM,
        .def = "logfmt",
        .field = offsetof(struct config, format),
        .what = "the line format",
        .help = "Format of each event line: `logfmt` (key=value "
                "pairs) or `json` (one JSON object per line).",
        .choices = format_choices,
        .parse_enum = parse_format,
    },
    {
        .name = "SFRELAY_LOG_LEVEL",
        .kind = SETTING_ENUM,
        .def = "info",
        .field = offsetof(struct config, log_level),
        .what = "the diagnostics level",
        .help = "Least severe level of the relay's own diagnostics, "
                "which go to stderr.",
        .choices = log_level_choices,
        .parse_enum = parse_log_level,
    },
    {
        .name = "SFRELAY_HTTP_TIMEOUT",
        .kind = SETTING_INT,
        .def = "30000",
        .field = offsetof(struct config, connect_timeout_ms),
        .what = "the HTTP request time limit",
        .help = "Time limit of each ordinary HTTP request (login, "
                "subscribe, queries); the streaming long poll has its "
                "own, longer limit.",
        .min = 1000,
        .max = 600000,
        .unit = "ms",
        .suffixes = ms_suffixes,
    },
    {
        .name = "SFRELAY_CA_FILE",
        .kind = SETTING_PATH,
        .field = offsetof(struct config, ca_file),
        .what = "a CA bundle",
        .help = "PEM file of certificate authorities that TLS peers "
                "are verified against, instead of the system's store.",
    },
    {
        .name = "SFRELAY_STATE_DIR",
        .kind = SETTING_STRING,
        .def = ".sfrelay",
        .field = offsetof(struct config, state_dir),
        .what = "the checkpoint directory",
        .help = "Directory of the checkpoint file (created with mode "
                "0700 if missing): the replay id of each channel that "
                "the sink has acknowledged, so a restart resumes "
                "there. On Heroku the dyno's disk is wiped at every "
                "dyno restart; it survives process restarts only.",
    },
    {
        .name = "SFRELAY_REPLAY_FROM",
        .kind = SETTING_ENUM,
        .def = "-1",
        .field = offsetof(struct config, replay_from),
        .what = "where a channel without a checkpoint starts",
        .help = "Where a channel with no checkpoint starts: `-1` only "
                "new events, `-2` every event Salesforce still retains "
                "(24 hours for PushTopics and generic streaming, 72 "
                "hours for platform events and Change Data Capture).",
        .choices = replay_choices,
        .parse_enum = parse_replay,
    },
    {
        .name = "SFRELAY_REPLAY_INVALID",
        .kind = SETTING_ENUM,
        .def = "-2",
        .field = offsetof(struct config, replay_invalid),
        .what = "where to restart after a rejected replay id",
        .help = "Where a channel restarts when Salesforce rejects its "
                "checkpoint (older than the retention window): `-2` "
                "every retained event (default: the least loss), `-1` "
                "only new events. Either way the gap is logged.",
        .choices = replay_choices,
        .parse_enum = parse_replay,
    },
    {
        .name = "SFRELAY_CHECKPOINT_INTERVAL",
        .kind = SETTING_INT,
        .def = "1000",
        .field = offsetof(struct config, checkpoint_interval_ms),
        .what = "the checkpoint write interval",
        .help = "Longest time between an acknowledgement and its "
                "checkpoint write (writes are batched; shutdown always "
                "writes). `0` writes at every acknowledgement.",
        .min = 0,
        .max = 60000,
        .unit = "ms",
        .suffixes = ms_suffixes,
    },
    {
        .name = "SFRELAY_QUEUE_LINES",
        .kind = SETTING_INT,
        .def = "10000",
        .field = offsetof(struct config, queue_lines),
        .what = "the queue's high-water mark",
        .help = "Lines waiting for the sink above which the relay "
                "stops asking Salesforce for more (back-pressure; the "
                "events wait at Salesforce, nothing is dropped).",
        .min = 10,
        .max = 1000000,
        .unit = "lines",
    },
    {
        .name = "SFRELAY_BACKOFF_MIN",
        .kind = SETTING_INT,
        .def = "1000",
        .field = offsetof(struct config, backoff_min_ms),
        .what = "the shortest retry delay",
        .help = "Shortest delay before retrying after a failure; "
                "each further failure doubles the ceiling, and the "
                "delay is drawn at random below it (full jitter).",
        .min = 10,
        .max = 60000,
        .unit = "ms",
        .suffixes = ms_suffixes,
    },
    {
        .name = "SFRELAY_BACKOFF_MAX",
        .kind = SETTING_INT,
        .def = "60000",
        .field = offsetof(struct config, backoff_max_ms),
        .what = "the longest retry delay",
        .help = "Ceiling of the retry delay.",
        .min = 100,
        .max = 3600000,
        .unit = "ms",
        .suffixes = ms_suffixes,
    },
    {
        .name = "SFRELAY_SHUTDOWN_TIMEOUT",
        .kind = SETTING_INT,
        .def = "20000",
        .field = offsetof(struct config, shutdown_timeout_ms),
        .what = "the shutdown time limit",
        .help = "Time SIGTERM leaves for delivering in-flight lines, "
                "saving checkpoints and disconnecting before the relay "
                "exits anyway (Heroku kills a dyno 30 s after "
                "SIGTERM).",
        .min = 100,
        .max = 600000,
        .unit = "ms",
        .suffixes = ms_suffixes,
    },
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static int
parse_format(const char *value, void *field)
{
	return format_kind_parse(value, field);
}

static int
parse_log_level(const char *value, void *field)
{
	return log_level_parse(value, field);
}

static int
parse_replay(const char *value, void *field)
{
	long *out = field;
	if (strcmp(value, "-1") == 0)
		*out = -1;
	else if (strcmp(value, "-2") == 0)
		*out = -2;
	else
		return -1;
	return 0;
}

static void *
setting_field(const struct setting *s, struct config *cfg)
{
	return (char *)cfg + s->field;
}

/* Problems ------------------------------------------------------------- */

/* Appends "NAME: <message>\n" to the error buffer, truncating safely. */
static void load_problem(struct load *ld, const struct setting *s,
                         const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
load_problem(struct load *ld, const struct setting *s, const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	ld->nproblems++;
	if (ld->err == NULL || ld->errlen == 0 || ld->used + 1 >= ld->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	int n = snprintf(ld->err + ld->used, ld->errlen - ld->used, "%s: %s\n",
	                 s != NULL ? s->name : "config", msg);
	if (n < 0)
		return;
	if ((size_t)n >= ld->errlen - ld->used)
		ld->used = ld->errlen - 1;
	else
		ld->used += (size_t)n;
}

/* Does v contain the value of any secret setting present in env? Secrets
 * shorter than 4 bytes are not considered, as in the log module. */
static int
load_shows_secret(const struct load *ld, const char *v)
{
	for (size_t i = 0; i < NSETTINGS; i++) {
		if (settings[i].kind != SETTING_SECRET)
			continue;
		size_t nlen = strlen(settings[i].name);
		for (const char *const *e = ld->env; e != NULL && *e != NULL;
		     e++) {
			if (strncmp(*e, settings[i].name, nlen) != 0 ||
			    (*e)[nlen] != '=')
				continue;
			const char *sv = *e + nlen + 1;
			if (strlen(sv) >= 4 && strstr(v, sv) != NULL)
				return 1;
		}
	}
	return 0;
}

/*
 * Quotes a (non-secret) value for an error line: escaped so the line stays
 * one line, shortened when long. A value that contains a secret (the
 * password pasted into the wrong variable) is not shown at all.
 */
#define QUOTE_MAX 48
#define QUOTE_SIZE (QUOTE_MAX * 4 + 8)

static const char *
load_quote(const struct load *ld, const char *v, char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	size_t i;

	if (load_shows_secret(ld, v)) {
		snprintf(buf, len, "(value not shown: it contains a secret)");
		return buf;
	}
	buf[o++] = '"';
	for (i = 0; v[i] != '\0' && i < QUOTE_MAX && o + 8 < len; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 0xf];
		} else {
			buf[o++] = (char)c;
		}
	}
	if (v[i] != '\0') {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* Checks ---------------------------------------------------------------- */

static int
has_control(const char *v)
{
	for (; *v != '\0'; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return 1;
	return 0;
}

static int
has_space_or_control(const char *v)
{
	for (; *v != '\0'; v++)
		if ((unsigned char)*v <= 0x20 || *v == 0x7f)
			return 1;
	return 0;
}

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Counts the digits at v, at most max+1 of them. */
static size_t
count_digits(const char *v, size_t max)
{
	size_t n = 0;

	while (n <= max && is_digit(v[n]))
		n++;
	return n;
}

static int
check_api_version(struct load *ld, const struct setting *s, const char *v)
{
	char q[QUOTE_SIZE];
	size_t major_len = count_digits(v, 4);
	size_t minor_len = 0;

	if (major_len >= 1 && major_len <= 4 && v[major_len] == '.') {
		minor_len = count_digits(v + major_len + 1, 4);
		if (minor_len < 1 || minor_len > 4 ||
		    v[major_len + 1 + minor_len] != '\0')
			minor_len = 0;
	}
	if (minor_len == 0) {
		load_problem(ld, s, "%s is not a version like 61.0",
		             load_quote(ld, v, q, sizeof(q)));
		return -1;
	}
	/* Bounded to four digits above, so this cannot overflow. */
	long major = strtol(v, NULL, 10);
	if (major < API_VERSION_MIN_MAJOR) {
		load_problem(
		    ld, s, "%s is below %d.0, the first version with replay",
		    load_quote(ld, v, q, sizeof(q)), API_VERSION_MIN_MAJOR);
		return -1;
	}
	return 0;
}

static int
check_channel(struct load *ld, const struct setting *s, const char *v)
{
	char q[QUOTE_SIZE];
	const char *const *p;

	for (p = channel_prefixes; *p != NULL; p++)
		if (strncmp(v, *p, strlen(*p)) == 0)
			break;
	if (*p == NULL) {
		load_problem(ld, s,
		             "%s does not start with /topic/, /event/, "
		             "/data/ or /u/",
		             load_quote(ld, v, q, sizeof(q)));
		return -1;
	}
	if (v[strlen(*p)] == '\0') {
		load_problem(ld, s, "%s has no name after %s",
		             load_quote(ld, v, q, sizeof(q)), *p);
		return -1;
	}
	if (has_space_or_control(v)) {
		load_problem(ld, s, "%s contains a space or control character",
		             load_quote(ld, v, q, sizeof(q)));
		return -1;
	}
	return 0;
}

/* Validates a host[:port] authority; the host may be a [bracketed] IPv6
 * literal. */
static int
url_authority_ok(const char *a, size_t n)
{
	size_t i = 0;

	if (n > 0 && a[0] == '[') {
		for (i = 1; i < n && a[i] != ']'; i++)
			if (!isxdigit((unsigned char)a[i]) && a[i] != ':' &&
			    a[i] != '.')
				return 0;
		if (i >= n || i == 1)
			return 0;
		i++;
	} else {
		for (; i < n && a[i] != ':'; i++)
			if (!isalnum((unsigned char)a[i]) && a[i] != '-' &&
			    a[i] != '.' && a[i] != '_')
				return 0;
		if (i == 0)
			return 0;
	}
	if (i == n)
		return 1;
	if (a[i] != ':')
		return 0;
	i++;
	if (n - i < 1 || n - i > 5)
		return 0;
	long port = 0;
	for (; i < n; i++) {
		if (!is_digit(a[i]))
			return 0;
		port = port * 10 + (a[i] - '0');
	}
	return port >= 1 && port <= 65535;
}

/* Returns a malloc'd copy of v without trailing slashes, or NULL after
 * reporting the problem. */
static char *
url_normalize(struct load *ld, const struct setting *s, const char *v)
{
	char q[QUOTE_SIZE];
	const char *rest;

	if (strncmp(v, "https://", 8) == 0)
		rest = v + 8;
	else if (strncmp(v, "http://", 7) == 0)
		rest = v + 7;
	else {
		load_problem(ld, s, "%s must start with https:// or http://",
		             load_quote(ld, v, q, sizeof(q)));
		return NULL;
	}
	size_t alen = strcspn(rest, "/");
	if (memchr(rest, '@', alen) != NULL) {
		/* user:password@host: never echo it. */
		load_problem(ld, s,
		             "must not contain a user name or password "
		             "(value not shown)");
		return NULL;
	}
	if (has_space_or_control(v)) {
		load_problem(ld, s, "%s contains a space or control character",
		             load_quote(ld, v, q, sizeof(q)));
		return NULL;
	}
	if (strpbrk(v, "?#") != NULL) {
		load_problem(ld, s, "%s must not have a query or fragment",
		             load_quote(ld, v, q, sizeof(q)));
		return NULL;
	}
	if (alen == 0) {
		load_problem(ld, s, "%s has no host",
		             load_quote(ld, v, q, sizeof(q)));
		return NULL;
	}
	if (!url_authority_ok(rest, alen)) {
		load_problem(ld, s, "%s has an invalid host or port",
		             load_quote(ld, v, q, sizeof(q)));
		return NULL;
	}
	size_t len = strlen(v);
	while (len > 0 && v[len - 1] == '/')
		len--;
	return strndup(v, len);
}

/* Writes the unit suffixes of s as "ms, s or m", each between quote. */
static void
suffix_words(const struct setting *s, const char *quote, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (const struct unit_suffix *u = s->suffixes;
	     u != NULL && u->suffix != NULL && o < len; u++) {
		const char *sep = u == s->suffixes      ? ""
		                  : u[1].suffix == NULL ? " or "
		                                        : ", ";
		int n = snprintf(buf + o, len - o, "%s%s%s%s", sep, quote,
		                 u->suffix, quote);
		if (n < 0)
			break;
		o += (size_t)n;
	}
}

/*
 * Parses digits with an optional unit suffix into the base unit, checking
 * the range. Returns 0, or reports and returns -1.
 */
static int
parse_int(struct load *ld, const struct setting *s, const char *v, long *out)
{
	char q[QUOTE_SIZE];
	long n = 0;
	size_t i;

	if (v[0] == '-') {
		load_problem(ld, s, "%s is negative",
		             load_quote(ld, v, q, sizeof(q)));
		return -1;
	}
	if (!is_digit(v[0])) {
		load_problem(ld, s, "%s is not a number",
		             load_quote(ld, v, q, sizeof(q)));
		return -1;
	}
	for (i = 0; is_digit(v[i]); i++) {
		int d = v[i] - '0';
		if (n > (LONG_MAX - d) / 10) {
			load_problem(ld, s, "%s is too large",
			             load_quote(ld, v, q, sizeof(q)));
			return -1;
		}
		n = n * 10 + d;
	}
	if (v[i] != '\0') {
		const struct unit_suffix *u = s->suffixes;
		while (u != NULL && u->suffix != NULL &&
		       strcmp(v + i, u->suffix) != 0)
			u++;
		if (u == NULL || u->suffix == NULL) {
			char words[64] = "";
			if (s->suffixes != NULL)
				suffix_words(s, "", words, sizeof(words));
			load_problem(ld, s, "%s has trailing characters%s%s%s",
			             load_quote(ld, v, q, sizeof(q)),
			             words[0] != '\0' ? " (it may end in " : "",
			             words, words[0] != '\0' ? ")" : "");
			return -1;
		}
		if (n > LONG_MAX / u->scale) {
			load_problem(ld, s, "%s is too large",
			             load_quote(ld, v, q, sizeof(q)));
			return -1;
		}
		n *= u->scale;
	}
	if (n < s->min || n > s->max) {
		load_problem(ld, s, "%s is out of range, %ld..%ld%s",
		             load_quote(ld, v, q, sizeof(q)), s->min, s->max,
		             s->unit != NULL ? s->unit : "");
		return -1;
	}
	*out = n;
	return 0;
}

static int
check_readable_file(struct load *ld, const struct setting *s, const char *v)
{
	char q[QUOTE_SIZE];
	struct stat st;

	int fd = open(v, O_RDONLY | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		load_problem(ld, s, "%s cannot be read: %s",
		             load_quote(ld, v, q, sizeof(q)), strerror(errno));
		return -1;
	}
	int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	close(fd);
	if (!ok) {
		load_problem(ld, s, "%s is not a regular file",
		             load_quote(ld, v, q, sizeof(q)));
		return -1;
	}
	return 0;
}

/* Splits, trims and checks a comma-separated list into the char *[] field.
 * Reports every bad item. */
static int
load_list(struct load *ld, const struct setting *s, const char *v,
          struct config *cfg)
{
	char q[QUOTE_SIZE];
	char **items = setting_field(s, cfg);
	size_t *count = (size_t *)(void *)((char *)cfg + s->count_field);
	size_t total = 0;
	int rc = 0;

	for (const char *p = v;; p++) {
		const char *end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		const char *b = p;
		const char *e = end;
		while (b < e && isspace((unsigned char)*b))
			b++;
		while (e > b && isspace((unsigned char)e[-1]))
			e--;
		total++;
		char *item = strndup(b, (size_t)(e - b));
		if (item == NULL) {
			load_problem(ld, s, "out of memory");
			return -1;
		}
		if (*item == '\0') {
			load_problem(ld, s,
			             "item %zu is empty (two commas in a row, "
			             "or a comma at an end)",
			             total);
			rc = -1;
		} else if (s->check != NULL && s->check(ld, s, item) < 0) {
			rc = -1;
		} else if (total <= s->max_items) {
			size_t j;
			for (j = 0; j < *count; j++)
				if (strcmp(items[j], item) == 0)
					break;
			if (j < *count) {
				load_problem(
				    ld, s, "%s is listed twice",
				    load_quote(ld, item, q, sizeof(q)));
				rc = -1;
			} else {
				items[(*count)++] = item;
				item = NULL;
			}
		}
		free(item);
		if (*end == '\0')
			break;
		p = end;
	}
	if (total > s->max_items) {
		load_problem(ld, s, "has %zu items, at most %zu", total,
		             s->max_items);
		rc = -1;
	}
	return rc;
}

/* Validates v and stores it into cfg. Returns 0, or -1 after reporting. */
static int
load_setting(struct load *ld, const struct setting *s, const char *v,
             struct config *cfg)
{
	char q[QUOTE_SIZE];
	void *field = setting_field(s, cfg);
	char **sp = field;

	switch (s->kind) {
	case SETTING_SECRET:
		if (has_control(v)) {
			load_problem(ld, s,
			             "contains a control character (value not "
			             "shown)");
			return -1;
		}
		break;
	case SETTING_STRING:
	case SETTING_PATH:
		if (has_control(v)) {
			load_problem(ld, s, "%s contains a control character",
			             load_quote(ld, v, q, sizeof(q)));
			return -1;
		}
		if (isspace((unsigned char)v[0]) ||
		    (v[0] != '\0' &&
		     isspace((unsigned char)v[strlen(v) - 1]))) {
			load_problem(ld, s,
			             "%s has leading or trailing whitespace",
			             load_quote(ld, v, q, sizeof(q)));
			return -1;
		}
		if (s->kind == SETTING_PATH &&
		    check_readable_file(ld, s, v) < 0)
			return -1;
		break;
	case SETTING_URL:
		*sp = url_normalize(ld, s, v);
		return *sp != NULL ? 0 : -1;
	case SETTING_INT:
		return parse_int(ld, s, v, field);
	case SETTING_ENUM:
		if (s->parse_enum(v, field) < 0) {
			char words[128] = "";
			for (const char *const *c = s->choices; *c != NULL;
			     c++) {
				if (c != s->choices)
					strncat(words, ", ",
					        sizeof(words) - strlen(words) -
					            1);
				strncat(words, *c,
				        sizeof(words) - strlen(words) - 1);
			}
			load_problem(ld, s, "%s is not one of: %s",
			             load_quote(ld, v, q, sizeof(q)), words);
			return -1;
		}
		return 0;
	case SETTING_LIST:
		return load_list(ld, s, v, cfg);
	}
	if (s->check != NULL && s->check(ld, s, v) < 0)
		return -1;
	*sp = strdup(v);
	if (*sp == NULL) {
		load_problem(ld, s, "out of memory");
		return -1;
	}
	return 0;
}

/* First occurrence wins, as with getenv(). */
static const char *
env_find(const char *const *env, const char *name)
{
	size_t n = strlen(name);

	for (; env != NULL && *env != NULL; env++)
		if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
			return *env + n + 1;
	return NULL;
}

/*
 * cfg is overwritten, not freed: pass a zeroed or cleared struct. An empty
 * value is "not set" for a required setting, and an error for any other
 * setting unless its default is itself empty: an empty config var is more
 * often a mistake than a request for the default.
 */
int
config_load(struct config *cfg, const char *const *env, char *err,
            size_t errlen)
{
	struct load ld = {.env = env, .err = err, .errlen = errlen};

	memset(cfg, 0, sizeof(*cfg));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *s = &settings[i];
		const char *v = env_find(env, s->name);

		if (v == NULL || (*v == '\0' && s->required)) {
			if (s->required) {
				load_problem(&ld, s, "required, not set (%s)",
				             s->what);
				continue;
			}
			if (s->def == NULL)
				continue;
			v = s->def;
		} else if (*v == '\0' && (s->def == NULL || *s->def != '\0')) {
			if (s->def != NULL)
				load_problem(&ld, s,
				             "empty value; unset it to use the "
				             "default (%s)",
				             s->def);
			else
				load_problem(&ld, s,
				             "empty value; unset it to leave "
				             "it out");
			continue;
		}
		load_setting(&ld, s, v, cfg);
	}
	if (ld.nproblems > 0) {
		config_clear(cfg);
		return -1;
	}
	for (size_t i = 0; i < NSETTINGS; i++) {
		char **sp = setting_field(&settings[i], cfg);
		if (settings[i].kind == SETTING_SECRET && *sp != NULL &&
		    **sp != '\0')
			log_add_secret(*sp);
	}
	return 0;
}

/* Overwrites a secret before its memory goes back to the allocator; the
 * volatile keeps the stores from being optimized away. */
static void
wipe(char *p)
{
	volatile char *v = p;

	while (*v != '\0')
		*v++ = '\0';
}

void
config_clear(struct config *cfg)
{
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *s = &settings[i];
		char **sp = setting_field(s, cfg);

		switch (s->kind) {
		case SETTING_SECRET:
			if (*sp != NULL)
				wipe(*sp);
			/* FALLTHROUGH */
		case SETTING_STRING:
		case SETTING_URL:
		case SETTING_PATH:
			free(*sp);
			break;
		case SETTING_LIST: {
			size_t *count =
			    (size_t *)(void *)((char *)cfg + s->count_field);
			for (size_t j = 0; j < *count; j++)
				free(sp[j]);
			break;
		}
		case SETTING_INT:
		case SETTING_ENUM:
			break;
		}
	}
	memset(cfg, 0, sizeof(*cfg));
}

/* Help and docs ----------------------------------------------------------- */

/*
 * The generated part of a setting's description: its type, allowed values
 * or range, straight from the table. Written into buf (always terminated).
 */
static void
setting_rules(const struct setting *s, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	switch (s->kind) {
	case SETTING_SECRET:
		snprintf(buf, len, "Secret: never shown.");
		break;
	case SETTING_ENUM:
		o = (size_t)snprintf(buf, len, "One of:");
		for (const char *const *c = s->choices; *c != NULL && o < len;
		     c++)
			o += (size_t)snprintf(buf + o, len - o, "%s `%s`",
			                      c == s->choices ? "" : ",", *c);
		if (o < len)
			snprintf(buf + o, len - o, ".");
		break;
	case SETTING_INT: {
		char words[64];
		if (s->unit != NULL)
			o = (size_t)snprintf(buf, len, "In %s, from %ld to %ld",
			                     s->unit, s->min, s->max);
		else
			o = (size_t)snprintf(buf, len,
			                     "An integer from %ld to %ld",
			                     s->min, s->max);
		if (s->suffixes != NULL && o < len) {
			suffix_words(s, "`", words, sizeof(words));
			o += (size_t)snprintf(buf + o, len - o,
			                      "; the number may end in %s",
			                      words);
		}
		if (o < len)
			snprintf(buf + o, len - o, ".");
		break;
	}
	case SETTING_LIST:
		snprintf(buf, len, "Comma-separated, at most %zu items.",
		         s->max_items);
		break;
	case SETTING_PATH:
		snprintf(buf, len, "Path of a readable file.");
		break;
	case SETTING_STRING:
	case SETTING_URL:
		break;
	}
}

/* Prints text wrapped at 78 columns after an indent, dropping backticks. */
static void
print_wrapped(FILE *out, const char *text, int indent)
{
	const int width = 78;
	int col = 0;
	const char *p = text;

	while (*p != '\0') {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		size_t n = strcspn(p, " ");
		int visible = 0;
		for (size_t i = 0; i < n; i++)
			visible += p[i] != '`';
		if (col > 0 && col + 1 + visible > width) {
			fputc('\n', out);
			col = 0;
		}
		if (col == 0) {
			fprintf(out, "%*s", indent, "");
			col = indent;
		} else {
			fputc(' ', out);
			col++;
		}
		for (size_t i = 0; i < n; i++)
			if (p[i] != '`')
				fputc(p[i], out);
		col += visible;
		p += n;
	}
	if (col > 0)
		fputc('\n', out);
}

void
config_print_help(FILE *out)
{
	char rules[256];

	fprintf(out, "Usage: sfrelay [--help] [--version]\n\n");
	print_wrapped(out,
	              "Relays a Salesforce org's streaming events as log "
	              "lines. It is configured through environment variables "
	              "(Heroku config vars); every problem is reported at "
	              "start-up. A variable set to an empty value is an error "
	              "unless its default is empty: unset it to get the "
	              "default.",
	              0);
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *s = &settings[i];

		fprintf(out, "\n  %s", s->name);
		if (s->required)
			fprintf(out, " (required)\n");
		else if (s->def == NULL)
			fprintf(out, " (optional)\n");
		else if (*s->def == '\0')
			fprintf(out, " (default: empty)\n");
		else
			fprintf(out, " (default: %s)\n", s->def);
		print_wrapped(out, s->help, 6);
		setting_rules(s, rules, sizeof(rules));
		if (rules[0] != '\0')
			print_wrapped(out, rules, 6);
	}
}

/* Writes text for a table cell: a '|' would end the cell. */
static void
print_cell(FILE *out, const char *text)
{
	for (; *text != '\0'; text++) {
		if (*text == '|')
			fputc('\\', out);
		fputc(*text, out);
	}
}

void
config_print_markdown(FILE *out)
{
	char rules[256];

	fprintf(out,
	        "# Configuration\n"
	        "\n"
	        "sfrelay reads its settings from environment variables (on "
	        "Heroku, config vars: `heroku config:set NAME=value`). All "
	        "problems are reported together at start-up, one line each, "
	        "starting with the variable's name, and the relay exits with "
	        "status 78. A variable set to the empty string is an error "
	        "unless its default is empty: unset it to get the default. "
	        "Secrets are never printed, and are redacted from the relay's "
	        "own log lines.\n"
	        "\n"
	        "| Variable | Default | Description |\n"
	        "|---|---|---|\n");
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *s = &settings[i];

		fprintf(out, "| %s | ", s->name);
		if (s->required)
			fprintf(out, "required");
		else if (s->def == NULL)
			fprintf(out, "not set");
		else if (*s->def == '\0')
			fprintf(out, "empty");
		else {
			fputc('`', out);
			print_cell(out, s->def);
			fputc('`', out);
		}
		fprintf(out, " | ");
		print_cell(out, s->help);
		setting_rules(s, rules, sizeof(rules));
		if (rules[0] != '\0') {
			fputc(' ', out);
			print_cell(out, rules);
		}
		fprintf(out, " |\n");
	}
}
