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

#include "sfrelay/backfill.h"
#include "sfrelay/jwt.h"
#include "sfrelay/soql.h"

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

/* Durations counted in seconds (long look-backs). */
static const struct unit_suffix s_suffixes[] = {
    {"s", 1},
    {"m", 60},
    {"h", 3600},
    {"d", 86400},
    {NULL, 0},
};

static const struct unit_suffix pct_suffixes[] = {
    {"%", 1},
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

	/* Authentication flows that require this setting (AUTH_BIT of each
	 * enum config_auth); an empty value counts as unset for them. When
	 * partner names another setting, either one satisfies the flow. */
	unsigned flows;
	const char *partner;
	/* SETTING_SECRET: newlines and tabs allowed (PEM text). */
	int multiline;
	/* What --help and the docs say happens when it is unset and has no
	 * default ("inferred"); NULL: it is optional. */
	const char *unset;
	/* Required unless the setting named here is set; an empty value
	 * counts as unset. */
	const char *unless;
};

#define AUTH_BIT(a) (1u << (a))
#define AUTH_RENEWABLE                                                     \
    (AUTH_BIT(CONFIG_AUTH_JWT) | AUTH_BIT(CONFIG_AUTH_CLIENT_CREDENTIALS) | \
     AUTH_BIT(CONFIG_AUTH_REFRESH_TOKEN) | AUTH_BIT(CONFIG_AUTH_PASSWORD))

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
static setting_check_fn check_poll;
static setting_check_fn check_backfill;
static setting_enum_fn parse_auth;
static setting_check_fn check_jwt_key;
static setting_check_fn check_jwt_key_file;

/* Indexed by enum config_auth. */
static const char *const auth_names[] = {
    "none", "jwt", "client_credentials", "refresh_token", "password", "token",
};
static const char *const auth_choices[] = {
    "jwt", "client_credentials", "refresh_token", "password", "token", NULL,
};

static const char *const format_choices[] = {"logfmt", "json", NULL};
static const char *const log_level_choices[] = {"debug", "info", "warn",
                                                "error", NULL};

static const char *const replay_choices[] = {"-1", "-2", NULL};

static setting_enum_fn parse_checkpoint;
static setting_check_fn check_database_url;
static const char *const checkpoint_choices[] = {"file", "postgres", NULL};

static setting_enum_fn parse_sink;
static setting_enum_fn parse_facility;
static setting_enum_fn parse_severity;
static setting_check_fn check_logplex_url;
static setting_check_fn check_syslog_url;
static setting_check_fn check_app_name;
static setting_check_fn check_redact;

static const char *const sink_choices[] = {"stdout", "logplex", "syslog",
                                           NULL};
/* RFC 5424 facility codes 0..23, in order. */
static const char *const facility_choices[] = {
    "kern",   "user",   "mail",   "daemon", "auth",   "syslog",
    "lpr",    "news",   "uucp",   "cron",   "authpriv", "ftp",
    "ntp",    "audit",  "alert",  "clock",  "local0", "local1",
    "local2", "local3", "local4", "local5", "local6", "local7",
    NULL,
};

static const char *const severity_choices[] = {
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    NULL,
};

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
        .name = "SFDC_AUTH",
        .kind = SETTING_ENUM,
        .field = offsetof(struct config, auth),
        .what = "the authentication flow",
        .help = "How the relay gets its access token: `jwt` (OAuth 2.0 "
                "JWT bearer flow, the one to use), `client_credentials`, "
                "`refresh_token`, `password` (username-password flow, "
                "blocked by default in orgs created since Summer '23) or "
                "`token` (a fixed access token that cannot be renewed). "
                "Unset, it is inferred from the credentials that are "
                "set, first match wins: SFDC_JWT_KEY or "
                "SFDC_JWT_KEY_FILE: `jwt`; SFDC_REFRESH_TOKEN: "
                "`refresh_token`; SFDC_PASSWORD, or SFDC_USERNAME with "
                "SFDC_CLIENT_SECRET: `password`; SFDC_CLIENT_SECRET: "
                "`client_credentials`; SFDC_ACCESS_TOKEN: `token`; "
                "SFDC_USERNAME alone: `jwt`. Each flow requires its own "
                "variables, listed with each of them.",
        .choices = auth_choices,
        .parse_enum = parse_auth,
        .unset = "inferred",
    },
    {
        .name = "SFDC_CLIENT_ID",
        .kind = SETTING_STRING,
        .field = offsetof(struct config, client_id),
        .what = "the connected app's consumer key",
        .help = "Consumer key of the connected app the relay logs "
                "in through (the issuer of a JWT assertion).",
        .flows = AUTH_RENEWABLE,
    },
    {
        .name = "SFDC_CLIENT_SECRET",
        .kind = SETTING_SECRET,
        .field = offsetof(struct config, client_secret),
        .what = "the connected app's consumer secret",
        .help = "Consumer secret of the connected app; optional with "
                "`refresh_token` (sent when set).",
        .flows = AUTH_BIT(CONFIG_AUTH_CLIENT_CREDENTIALS) |
                 AUTH_BIT(CONFIG_AUTH_PASSWORD),
    },
    {
        .name = "SFDC_USERNAME",
        .kind = SETTING_STRING,
        .field = offsetof(struct config, username),
        .what = "the user the relay logs in as",
        .help = "Username of the integration user the relay logs in "
                "as (the subject of a JWT assertion); it needs API "
                "access and read access to what the channels carry. "
                "With `client_credentials` the connected app's "
                "run-as user is used instead.",
        .flows = AUTH_BIT(CONFIG_AUTH_JWT) | AUTH_BIT(CONFIG_AUTH_PASSWORD),
    },
    {
        .name = "SFDC_PASSWORD",
        .kind = SETTING_SECRET,
        .field = offsetof(struct config, password),
        .what = "the user's password",
        .help = "Password of that user.",
        .flows = AUTH_BIT(CONFIG_AUTH_PASSWORD),
    },
    {
        .name = "SFDC_SECURITY_TOKEN",
        .kind = SETTING_SECRET,
        .def = "",
        .field = offsetof(struct config, security_token),
        .what = "the user's security token",
        .help = "Security token of that user, appended to the "
                "password when logging in (`password` only). Leave it "
                "unset (or empty) when the org does not ask for one.",
    },
    {
        .name = "SFDC_JWT_KEY",
        .kind = SETTING_SECRET,
        .field = offsetof(struct config, jwt_key),
        .what = "the connected app's private key, PEM text; or set "
                "SFDC_JWT_KEY_FILE",
        .help = "Private key the relay signs its JWT assertions with "
                "(RS256): the whole PEM text, from `-----BEGIN PRIVATE "
                "KEY-----` to `-----END PRIVATE KEY-----`, unencrypted "
                "RSA. Its certificate is the one uploaded to the "
                "connected app. On Heroku: `heroku config:set "
                "SFDC_JWT_KEY=\"$(cat server.key)\"`.",
        .check = check_jwt_key,
        .flows = AUTH_BIT(CONFIG_AUTH_JWT),
        .partner = "SFDC_JWT_KEY_FILE",
        .multiline = 1,
    },
    {
        .name = "SFDC_JWT_KEY_FILE",
        .kind = SETTING_PATH,
        .field = offsetof(struct config, jwt_key_file),
        .what = "a file holding the connected app's private key",
        .help = "File holding that private key, instead of "
                "SFDC_JWT_KEY (set only one of them).",
        .check = check_jwt_key_file,
        .flows = AUTH_BIT(CONFIG_AUTH_JWT),
        .partner = "SFDC_JWT_KEY",
    },
    {
        .name = "SFDC_REFRESH_TOKEN",
        .kind = SETTING_SECRET,
        .field = offsetof(struct config, refresh_token),
        .what = "a refresh token of the connected app",
        .help = "Refresh token the connected app was given for the "
                "integration user by a one-time authorization (web "
                "server or device flow, with the `refresh_token` "
                "scope).",
        .flows = AUTH_BIT(CONFIG_AUTH_REFRESH_TOKEN),
    },
    {
        .name = "SFDC_ACCESS_TOKEN",
        .kind = SETTING_SECRET,
        .field = offsetof(struct config, access_token),
        .what = "an access token",
        .help = "A fixed access token (session id). It cannot be "
                "renewed: once Salesforce refuses it, the relay exits "
                "with status 77. For tests and one-off runs.",
        .flows = AUTH_BIT(CONFIG_AUTH_TOKEN),
    },
    {
        .name = "SFDC_INSTANCE_URL",
        .kind = SETTING_URL,
        .field = offsetof(struct config, instance_url),
        .what = "the org's instance URL, e.g. "
                "https://acme.my.salesforce.com",
        .help = "The org's URL that goes with SFDC_ACCESS_TOKEN, like "
                "`https://acme.my.salesforce.com`. The other flows take "
                "it from the token response.",
        .flows = AUTH_BIT(CONFIG_AUTH_TOKEN),
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
        .unless = "SFRELAY_POLL",
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
        .name = "SFRELAY_POLL",
        .kind = SETTING_STRING,
        .field = offsetof(struct config, poll),
        .what = "the objects to poll",
        .help = "Objects to poll with SOQL, for what has no stream, "
                "e.g. `SetupAuditTrail@60s,LoginHistory@5m,Account@2m`. "
                "Each item is `Object[:TimeField][@interval][(fields)]"
                "[[condition]]`: the interval is a number with `s`, `m` "
                "or `h` (1s to 24h, default 60s); the optional field "
                "list replaces the built-in one; the optional SOQL "
                "condition is ANDed with the time window, e.g. "
                "`Account:SystemModstamp@2m(Id,Name)[Industry = "
                "'Banking']`. SetupAuditTrail (CreatedDate), "
                "LoginHistory (LoginTime) and EventLogFile (CreatedDate) "
                "have built-in field lists; other objects default to "
                "LastModifiedDate and `FIELDS(STANDARD)`. Objects due "
                "together share one composite request (one API call). "
                "See docs/polling.md.",
        .check = check_poll,
    },
    {
        .name = "SFRELAY_POLL_LOOKBACK",
        .kind = SETTING_INT,
        .def = "0",
        .field = offsetof(struct config, poll_lookback_s),
        .what = "the first poll's look-back",
        .help = "How far back the first poll of an object (one with no "
                "checkpoint yet) starts: `0` from now on, `24h` the last "
                "day. Later polls resume from the checkpoint.",
        .min = 0,
        .max = 180L * 86400,
        .unit = "seconds",
        .suffixes = s_suffixes,
    },
    {
        .name = "SFRELAY_API_BUDGET_PCT",
        .kind = SETTING_INT,
        .def = "50",
        .field = offsetof(struct config, api_budget_pct),
        .what = "the API budget",
        .help = "Share of the org's daily API limit (read from every "
                "`Sforce-Limit-Info` reply) above which the relay "
                "stretches its poll intervals (2x at the budget, up to "
                "10x at 100%) and warns.",
        .min = 1,
        .max = 100,
        .unit = "percent",
        .suffixes = pct_suffixes,
    },
    {
        .name = "SFRELAY_BACKFILL",
        .kind = SETTING_STRING,
        .field = offsetof(struct config, backfill),
        .what = "the backfill mappings",
        .help = "Which object recovers a stream channel's replay gap "
                "(events older than Salesforce's retention), as "
                "comma-separated `channel=Object[:TimeField][(fields)]"
                "[[condition]]`, e.g. `/topic/AccountWatch=Account`. "
                "Without a mapping, Change Data Capture channels "
                "(`/data/AccountChangeEvent`: Account, by "
                "LastModifiedDate) and event monitoring streams "
                "(`/event/LoginEventStream`: LoginEvent, by EventDate) "
                "are recovered anyway; other gaps are reported and kept "
                "in the checkpoint.",
        .check = check_backfill,
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
        .name = "SFRELAY_CHECKPOINT",
        .kind = SETTING_ENUM,
        .field = offsetof(struct config, checkpoint),
        .what = "the checkpoint store",
        .help = "Where checkpoints are kept: `file` (in "
                "SFRELAY_STATE_DIR; on Heroku it survives process "
                "restarts only) or `postgres` (tables in the database "
                "at DATABASE_URL, which survive everything; the relay "
                "then also takes a leader lock there, so that of several "
                "relays sharing the database exactly one relays and the "
                "others stand by). Unset, `postgres` when DATABASE_URL "
                "is set, else `file`. See docs/postgres.md.",
        .choices = checkpoint_choices,
        .parse_enum = parse_checkpoint,
        .unset = "postgres if DATABASE_URL is set, else file",
    },
    {
        .name = "DATABASE_URL",
        .kind = SETTING_SECRET,
        .field = offsetof(struct config, database_url),
        .what = "the Postgres database",
        .help = "The Postgres database of the `postgres` checkpoint "
                "store, as Heroku Postgres sets it: "
                "`postgres://user:password@host:5432/dbname`. Without "
                "an `sslmode` in the URL, TLS is required for any host "
                "but 127.0.0.1, ::1, localhost or a Unix socket "
                "directory (`prefer` for those).",
        .check = check_database_url,
    },
    {
        .name = "SFRELAY_FAILOVER",
        .kind = SETTING_INT,
        .def = "15s",
        .field = offsetof(struct config, failover_ms),
        .what = "the failover time",
        .help = "With the `postgres` store: the longest time after the "
                "leader dies or loses its database connection before a "
                "standby relay takes over. The database connection's "
                "keepalives, the leader's liveness checks and the "
                "standbys' polling are all derived from it.",
        .min = 3000,
        .max = 300000,
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
        .help = "Retry delay after a first failure; each further "
                "failure in a row doubles the ceiling, and the delay is "
                "drawn at random below it (full jitter). Salesforce "
                "requests and checkpoint loads wait at least this long; "
                "sink and database reconnects at least half of it.",
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
    {
        .name = "SFRELAY_SINK",
        .kind = SETTING_ENUM,
        .def = "stdout",
        .field = offsetof(struct config, sink),
        .what = "where event lines go",
        .help = "Where event lines go: `stdout` (on Heroku, the app's "
                "log stream), `logplex` (the Logplex HTTP input at "
                "LOGPLEX_URL, in batches) or `syslog` (an RFC 5424 "
                "drain over TCP or TLS at SYSLOG_URL). See "
                "docs/sinks.md.",
        .choices = sink_choices,
        .parse_enum = parse_sink,
    },
    {
        .name = "LOGPLEX_URL",
        .kind = SETTING_SECRET,
        .field = offsetof(struct config, logplex_url),
        .what = "the Logplex HTTP input",
        .help = "Logplex HTTP input the `logplex` sink POSTs to, with "
                "its credentials: `https://token:t.xxx@host/logs` (a "
                "bare host means the path `/logs`); the user name and "
                "token become basic auth. Required with "
                "SFRELAY_SINK=logplex.",
        .check = check_logplex_url,
    },
    {
        .name = "SYSLOG_URL",
        .kind = SETTING_STRING,
        .field = offsetof(struct config, syslog_url),
        .what = "the syslog drain",
        .help = "Syslog drain of the `syslog` sink: "
                "`syslog://host:port` (TCP) or `syslog+tls://host:port` "
                "(TLS, the certificate verified against SFRELAY_CA_FILE "
                "or the system store, and its name against host). "
                "Required with SFRELAY_SINK=syslog.",
        .check = check_syslog_url,
    },
    {
        .name = "SFRELAY_SYSLOG_FACILITY",
        .kind = SETTING_ENUM,
        .def = "user",
        .field = offsetof(struct config, syslog_facility),
        .what = "the syslog facility",
        .help = "Facility in the PRI of every syslog and Logplex frame.",
        .choices = facility_choices,
        .parse_enum = parse_facility,
    },
    {
        .name = "SFRELAY_SYSLOG_SEVERITY",
        .kind = SETTING_ENUM,
        .def = "info",
        .field = offsetof(struct config, syslog_severity),
        .what = "the syslog severity",
        .help = "Severity in the PRI of every syslog and Logplex frame "
                "(e.g. `notice` or `warning` to route security events "
                "apart from a drain's ordinary traffic).",
        .choices = severity_choices,
        .parse_enum = parse_severity,
    },
    {
        .name = "SFRELAY_SYSLOG_APP_NAME",
        .kind = SETTING_STRING,
        .def = "sfrelay",
        .field = offsetof(struct config, syslog_app_name),
        .what = "the syslog APP-NAME",
        .help = "APP-NAME of every syslog and Logplex frame: 1 to 48 "
                "printable ASCII characters, no space. The HOSTNAME is "
                "DYNO when set, else the machine's host name; PROCID is "
                "the process id; MSGID the line's kind (`event`, "
                "`stats`).",
        .check = check_app_name,
    },
    {
        .name = "DYNO",
        .kind = SETTING_STRING,
        .field = offsetof(struct config, dyno),
        .what = "the dyno name",
        .help = "Set by Heroku (`worker.1`); the relay uses it as the "
                "HOSTNAME of its syslog and Logplex frames. Leave it to "
                "Heroku.",
    },
    {
        .name = "SFRELAY_MAX_LINE",
        .kind = SETTING_INT,
        .field = offsetof(struct config, max_line),
        .what = "the longest line",
        .help = "Longest event line, in bytes without its newline, "
                "that the sink gets whole; a longer event is split "
                "into self-describing parts (`part=1/3`, the same "
                "`id`), never cut. Unset, each sink uses its own limit: "
                "10000 for stdout and logplex (Logplex's message "
                "limit), and for syslog whatever keeps the whole "
                "syslog message within 8 KiB (rsyslog's default).",
        .min = 1024,
        .max = 1048576,
        .unit = "bytes",
    },
    {
        .name = "SFRELAY_REDACT",
        .kind = SETTING_LIST,
        .field = offsetof(struct config, redact),
        .what = "fields to redact",
        .help = "Fields whose values are replaced by `[redacted]` in "
                "every event line: names or patterns (`*` any run of "
                "characters, `?` one), matched without regard to case "
                "against the whole dotted key and against its last "
                "part, e.g. `Password,*Token*,sobject.SSN__c`. The "
                "header fields (`at`, `src`, `channel`, `id`, ...) are "
                "never redacted.",
        .max_items = CONFIG_MAX_REDACT,
        .count_field = offsetof(struct config, nredact),
        .check = check_redact,
    },
    {
        .name = "SFRELAY_STATS_INTERVAL",
        .kind = SETTING_INT,
        .def = "60000",
        .field = offsetof(struct config, stats_interval_ms),
        .what = "the stats interval",
        .help = "Interval of the l2met stats line (`at=stats "
                "count#sfrelay.events=... sample#sfrelay.queue=...`), "
                "written through the same sink as the events. `0` "
                "turns it off.",
        .min = 0,
        .max = 86400000,
        .unit = "ms",
        .suffixes = ms_suffixes,
    },
    {
        .name = "SFRELAY_LOGPLEX_BATCH_LINES",
        .kind = SETTING_INT,
        .def = "500",
        .field = offsetof(struct config, logplex_batch_lines),
        .what = "the Logplex batch size in lines",
        .help = "Most lines in one POST of the `logplex` sink.",
        .min = 1,
        .max = 100000,
        .unit = "lines",
    },
    {
        .name = "SFRELAY_LOGPLEX_BATCH_BYTES",
        .kind = SETTING_INT,
        .def = "1048576",
        .field = offsetof(struct config, logplex_batch_bytes),
        .what = "the Logplex batch size in bytes",
        .help = "Body size at which the `logplex` sink sends a batch "
                "without waiting for more lines.",
        .min = 1024,
        .max = 67108864,
        .unit = "bytes",
    },
    {
        .name = "SFRELAY_LOGPLEX_BATCH_AGE",
        .kind = SETTING_INT,
        .def = "250",
        .field = offsetof(struct config, logplex_batch_age_ms),
        .what = "the Logplex batch age",
        .help = "Longest time a line waits for its batch to fill "
                "before the `logplex` sink sends it anyway.",
        .min = 1,
        .max = 60000,
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

static int
parse_auth(const char *value, void *field)
{
	enum config_auth *out = field;
	for (size_t i = 1; i < sizeof(auth_names) / sizeof(auth_names[0]); i++)
		if (strcmp(value, auth_names[i]) == 0) {
			*out = (enum config_auth)i;
			return 0;
		}
	return -1;
}

const char *
config_auth_name(enum config_auth auth)
{
	size_t i = (size_t)auth;
	return i < sizeof(auth_names) / sizeof(auth_names[0]) ? auth_names[i]
	                                                      : "none";
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
	if (load_shows_secret(ld, v)) {
		snprintf(buf, len, "(value not shown: it contains a secret)");
		return buf;
	}
	return log_quote(buf, len, v, strlen(v), QUOTE_MAX);
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

/* The poll and backfill parsers report each bad item; each report
 * becomes one line naming the variable. */
struct item_report {
	struct load *ld;
	const struct setting *s;
	/* The whole value holds a secret: the item parsers quote items
	 * escaped, so a secret with a '"' in it would not match msg. */
	int hides;
};

static void
report_item(void *arg, const char *msg)
{
	struct item_report *r = arg;
	char buf[512];
	size_t o = 0;

	/* The item parsers quote the item: keep secrets and raw bytes out. */
	if (r->hides || load_shows_secret(r->ld, msg)) {
		load_problem(r->ld, r->s,
		             "an item is invalid (not shown: the value holds a "
		             "secret)");
		return;
	}
	for (const char *p = msg; *p != '\0' && o + 5 < sizeof(buf); p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c >= 0x7f)
			o += (size_t)snprintf(buf + o, sizeof(buf) - o,
			                      "\\x%02x", c);
		else
			buf[o++] = (char)c;
	}
	buf[o] = '\0';
	load_problem(r->ld, r->s, "%s", buf);
}

static int
check_poll(struct load *ld, const struct setting *s, const char *v)
{
	struct item_report r = {ld, s, load_shows_secret(ld, v)};
	struct soql_spec *specs;
	size_t n;

	if (soql_poll_parse(v, &specs, &n, report_item, &r) != 0)
		return -1;
	soql_specs_free(specs, n);
	return 0;
}

static int
check_backfill(struct load *ld, const struct setting *s, const char *v)
{
	struct item_report r = {ld, s, load_shows_secret(ld, v)};
	struct backfill_map *maps;
	size_t n;

	if (backfill_parse(v, &maps, &n, report_item, &r) != 0)
		return -1;
	backfill_maps_free(maps, n);
	return 0;
}

/* A key that does not load is caught here, with every other problem,
 * rather than at the first token request. The reason never quotes it. */
static int
check_jwt_key(struct load *ld, const struct setting *s, const char *v)
{
	char why[384];
	struct jwt_key *key = jwt_key_from_pem(v, strlen(v), why, sizeof(why));

	if (key == NULL) {
		load_problem(ld, s, "%s", why);
		return -1;
	}
	jwt_key_free(key);
	return 0;
}

static int
check_jwt_key_file(struct load *ld, const struct setting *s, const char *v)
{
	char q[QUOTE_SIZE], why[384];
	struct jwt_key *key = jwt_key_from_file(v, why, sizeof(why));

	if (key == NULL) {
		load_problem(ld, s, "%s %s", load_quote(ld, v, q, sizeof(q)),
		             why);
		return -1;
	}
	jwt_key_free(key);
	return 0;
}

/* PEM text: control characters other than line breaks and tabs. */
static int
has_control_multiline(const char *v)
{
	for (; *v != '\0'; v++)
		if (((unsigned char)*v < 0x20 && *v != '\n' && *v != '\r' &&
		     *v != '\t') ||
		    *v == 0x7f)
			return 1;
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
		if (s->multiline ? has_control_multiline(v) : has_control(v)) {
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

/* Checkpoint store ------------------------------------------------------- */

static int
parse_checkpoint(const char *value, void *field)
{
	enum config_checkpoint *out = field;
	for (size_t i = 0; checkpoint_choices[i] != NULL; i++)
		if (strcmp(value, checkpoint_choices[i]) == 0) {
			*out = (enum config_checkpoint)i;
			return 0;
		}
	return -1;
}

/* The value holds the database password: no message may quote it. */
static int
check_database_url(struct load *ld, const struct setting *s, const char *v)
{
	const char *rest = strncmp(v, "postgres://", 11) == 0 ? v + 11
	                   : strncmp(v, "postgresql://", 13) == 0 ? v + 13
	                                                          : NULL;
	if (rest == NULL) {
		load_problem(ld, s,
		             "must start with postgres:// or postgresql:// "
		             "(value not shown)");
		return -1;
	}
	if (*rest == '\0') {
		load_problem(ld, s, "has nothing after :// (value not shown)");
		return -1;
	}
	for (const char *p = v; *p != '\0'; p++)
		if (*p == ' ') {
			load_problem(ld, s,
			             "contains a space (value not shown)");
			return -1;
		}
	return 0;
}

static int env_has(const char *const *env, const char *name);
static const struct setting *setting_find(const char *name);

/* SFRELAY_CHECKPOINT unset: postgres exactly when there is a database. */
static void
resolve_checkpoint(struct load *ld, struct config *cfg)
{
	const struct setting *s = setting_find("SFRELAY_CHECKPOINT");
	int has_db = env_has(ld->env, "DATABASE_URL");
	if (!env_has(ld->env, s->name))
		cfg->checkpoint = has_db ? CONFIG_CHECKPOINT_POSTGRES
		                         : CONFIG_CHECKPOINT_FILE;
	else if (cfg->checkpoint == CONFIG_CHECKPOINT_POSTGRES && !has_db)
		load_problem(ld, s,
		             "postgres needs DATABASE_URL "
		             "(postgres://user:password@host:5432/dbname)");
}

/* Sinks ------------------------------------------------------------------ */

static int
parse_sink(const char *value, void *field)
{
	enum config_sink *out = field;
	for (size_t i = 0; sink_choices[i] != NULL; i++)
		if (strcmp(value, sink_choices[i]) == 0) {
			*out = (enum config_sink)i;
			return 0;
		}
	return -1;
}

static int
parse_severity(const char *value, void *field)
{
	long *out = field;
	for (size_t i = 0; severity_choices[i] != NULL; i++)
		if (strcmp(value, severity_choices[i]) == 0) {
			*out = (long)i;
			return 0;
		}
	return -1;
}

static int
parse_facility(const char *value, void *field)
{
	long *out = field;
	for (size_t i = 0; facility_choices[i] != NULL; i++)
		if (strcmp(value, facility_choices[i]) == 0) {
			*out = (long)i;
			return 0;
		}
	return -1;
}

/* The value holds the drain token: no message may quote it. */
static int
check_logplex_url(struct load *ld, const struct setting *s, const char *v)
{
	const char *rest = strncmp(v, "https://", 8) == 0  ? v + 8
	                   : strncmp(v, "http://", 7) == 0 ? v + 7
	                                                   : NULL;
	if (rest == NULL) {
		load_problem(ld, s,
		             "must start with https:// (value not shown)");
		return -1;
	}
	if (has_space_or_control(v)) {
		load_problem(ld, s,
		             "contains a space or control character (value "
		             "not shown)");
		return -1;
	}
	size_t alen = strcspn(rest, "/?#");
	const char *at = memchr(rest, '@', alen);
	if (at == NULL || memchr(rest, ':', (size_t)(at - rest)) == NULL) {
		load_problem(ld, s,
		             "needs credentials: https://token:t.xxx@host/logs "
		             "(value not shown)");
		return -1;
	}
	if (!url_authority_ok(at + 1, alen - (size_t)(at + 1 - rest))) {
		load_problem(ld, s,
		             "has an invalid host or port (value not shown)");
		return -1;
	}
	return 0;
}

static int
check_syslog_url(struct load *ld, const struct setting *s, const char *v)
{
	char q[QUOTE_SIZE];
	const char *rest = strncmp(v, "syslog://", 9) == 0       ? v + 9
	                   : strncmp(v, "syslog+tls://", 13) == 0 ? v + 13
	                                                          : NULL;
	if (rest == NULL) {
		load_problem(ld, s,
		             "%s must start with syslog:// or syslog+tls://",
		             load_quote(ld, v, q, sizeof(q)));
		return -1;
	}
	size_t alen = strcspn(rest, "/");
	if (rest[alen] != '\0' && strcmp(rest + alen, "/") != 0) {
		load_problem(ld, s, "%s must not have a path",
		             load_quote(ld, v, q, sizeof(q)));
		return -1;
	}
	const char *colon = alen > 0 && rest[alen - 1] != ']'
	                        ? memchr(rest, ':', alen)
	                        : NULL;
	if (rest[0] == '[') {
		const char *close = memchr(rest, ']', alen);
		colon = close != NULL && close + 1 < rest + alen &&
		                close[1] == ':'
		            ? close + 1
		            : NULL;
	}
	if (colon == NULL || !url_authority_ok(rest, alen) ||
	    colon + 1 == rest + alen || atol(colon + 1) == 0) {
		load_problem(ld, s, "%s needs host:port, e.g. "
		                    "syslog+tls://logs.example.com:6514",
		             load_quote(ld, v, q, sizeof(q)));
		return -1;
	}
	return 0;
}

static int
check_app_name(struct load *ld, const struct setting *s, const char *v)
{
	char q[QUOTE_SIZE];
	size_t n = strlen(v);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 33 || (unsigned char)v[i] > 126)
			n = 0;
	if (n == 0 || n > 48) {
		load_problem(ld, s,
		             "%s must be 1 to 48 printable ASCII characters "
		             "without spaces",
		             load_quote(ld, v, q, sizeof(q)));
		return -1;
	}
	return 0;
}

static int
check_redact(struct load *ld, const struct setting *s, const char *v)
{
	char q[QUOTE_SIZE];
	if (has_space_or_control(v)) {
		load_problem(ld, s, "%s contains a space or control character",
		             load_quote(ld, v, q, sizeof(q)));
		return -1;
	}
	if (strspn(v, "*?") == strlen(v)) {
		load_problem(ld, s,
		             "%s would redact every field; name the fields",
		             load_quote(ld, v, q, sizeof(q)));
		return -1;
	}
	return 0;
}

static const char *env_find(const char *const *env, const char *name);

/* What each sink needs that the table cannot say alone. */
static void
check_sinks(struct load *ld, struct config *cfg)
{
	const struct setting *sink = NULL;
	for (size_t i = 0; i < NSETTINGS; i++)
		if (strcmp(settings[i].name, "SFRELAY_SINK") == 0)
			sink = &settings[i];
	if (cfg->sink == CONFIG_SINK_LOGPLEX && cfg->logplex_url == NULL &&
	    env_find(ld->env, "LOGPLEX_URL") == NULL)
		load_problem(ld, sink,
		             "logplex needs LOGPLEX_URL "
		             "(https://token:t.xxx@host/logs)");
	if (cfg->sink == CONFIG_SINK_SYSLOG && cfg->syslog_url == NULL &&
	    env_find(ld->env, "SYSLOG_URL") == NULL)
		load_problem(ld, sink,
		             "syslog needs SYSLOG_URL (syslog+tls://host:port)");
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

/* Authentication flows -------------------------------------------------- */

static int
env_has(const char *const *env, const char *name)
{
	const char *v = env_find(env, name);

	return v != NULL && *v != '\0';
}

static const struct setting *
setting_find(const char *name)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (strcmp(settings[i].name, name) == 0)
			return &settings[i];
	return NULL;
}

/*
 * The flow an unset SFDC_AUTH stands for: the first renewable flow whose
 * distinctive credential is present, the static token last (the order
 * documented in the SFDC_AUTH row). *why says what decided it.
 */
static enum config_auth
infer_auth(const char *const *env, const char **why)
{
	int user = env_has(env, "SFDC_USERNAME");
	int secret = env_has(env, "SFDC_CLIENT_SECRET");

	*why = NULL;
	if (env_has(env, "SFDC_JWT_KEY") || env_has(env, "SFDC_JWT_KEY_FILE")) {
		*why = "SFDC_JWT_KEY or SFDC_JWT_KEY_FILE is set";
		return CONFIG_AUTH_JWT;
	}
	if (env_has(env, "SFDC_REFRESH_TOKEN")) {
		*why = "SFDC_REFRESH_TOKEN is set";
		return CONFIG_AUTH_REFRESH_TOKEN;
	}
	if (env_has(env, "SFDC_PASSWORD") || (user && secret)) {
		*why = env_has(env, "SFDC_PASSWORD")
		           ? "SFDC_PASSWORD is set"
		           : "SFDC_USERNAME and SFDC_CLIENT_SECRET are set";
		return CONFIG_AUTH_PASSWORD;
	}
	if (secret) {
		*why = "SFDC_CLIENT_SECRET is set without SFDC_USERNAME";
		return CONFIG_AUTH_CLIENT_CREDENTIALS;
	}
	if (env_has(env, "SFDC_ACCESS_TOKEN")) {
		*why = "SFDC_ACCESS_TOKEN is set";
		return CONFIG_AUTH_TOKEN;
	}
	if (user) {
		*why = "SFDC_USERNAME is set without a password or secret";
		return CONFIG_AUTH_JWT;
	}
	return CONFIG_AUTH_NONE;
}

/* Appends to buf (always terminated; extra text is cut). */
static void append(char *buf, size_t len, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
append(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
	va_list ap;

	if (*used + 1 >= len)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *used, len - *used, fmt, ap);
	va_end(ap);
	if (n > 0)
		*used = *used + (size_t)n < len ? *used + (size_t)n : len - 1;
}

/* "jwt (SFDC_CLIENT_ID, SFDC_USERNAME, SFDC_JWT_KEY or
 * SFDC_JWT_KEY_FILE), ... or token (...)", from the table, into buf. */
static void
describe_flows(char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t a = CONFIG_AUTH_JWT; a <= CONFIG_AUTH_TOKEN; a++) {
		const char *sep = "";

		append(buf, len, &o, "%s%s (",
		       a == CONFIG_AUTH_JWT     ? ""
		       : a == CONFIG_AUTH_TOKEN ? " or "
		                                : ", ",
		       auth_names[a]);
		for (size_t i = 0; i < NSETTINGS; i++) {
			const struct setting *s = &settings[i];

			/* A pair is named once, at its first row. */
			if (!(s->flows & AUTH_BIT(a)) ||
			    (s->partner != NULL && setting_find(s->partner) < s))
				continue;
			append(buf, len, &o, "%s%s", sep, s->name);
			if (s->partner != NULL)
				append(buf, len, &o, " or %s", s->partner);
			sep = ", ";
		}
		append(buf, len, &o, ")");
	}
}

/*
 * Settles cfg->auth (SFDC_AUTH, or inferred) and reports every variable
 * the flow needs that is not set. A variable that is set but failed its
 * own checks was reported already.
 */
static void
resolve_auth(struct load *ld, struct config *cfg)
{
	const struct setting *auth = setting_find("SFDC_AUTH");
	const char *why = NULL;
	char flows[640];

	if (env_has(ld->env, auth->name)) {
		if (cfg->auth == CONFIG_AUTH_NONE)
			return; /* an unknown word, reported */
	} else {
		cfg->auth = infer_auth(ld->env, &why);
		cfg->auth_inferred = 1;
	}
	if (cfg->auth == CONFIG_AUTH_NONE) {
		describe_flows(flows, sizeof(flows));
		load_problem(ld, auth,
		             "not set, and no credentials are set to infer it "
		             "from; set it to %s",
		             flows);
		return;
	}
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *s = &settings[i];
		const struct setting *p =
		    s->partner != NULL ? setting_find(s->partner) : NULL;

		if (!(s->flows & AUTH_BIT(cfg->auth)))
			continue;
		if (env_has(ld->env, s->name)) {
			if (p != NULL && p > s && env_has(ld->env, p->name))
				load_problem(ld, p,
				             "set only one of %s and %s",
				             s->name, p->name);
			continue;
		}
		if (p != NULL && (p < s || env_has(ld->env, p->name)))
			continue;
		if (cfg->auth_inferred)
			load_problem(ld, s,
			             "required, not set (%s), for the %s flow, "
			             "chosen because %s (SFDC_AUTH picks "
			             "another)",
			             s->what, auth_names[cfg->auth], why);
		else
			load_problem(ld, s,
			             "required, not set (%s), for SFDC_AUTH=%s",
			             s->what, auth_names[cfg->auth]);
	}
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

		if (v == NULL ||
		    (*v == '\0' && (s->required || s->flows || s->unless))) {
			if (s->required) {
				load_problem(&ld, s, "required, not set (%s)",
				             s->what);
				continue;
			}
			if (s->unless != NULL && !env_has(env, s->unless)) {
				load_problem(&ld, s,
				             "required, not set (%s), unless %s "
				             "is set",
				             s->what, s->unless);
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
	resolve_auth(&ld, cfg);
	check_sinks(&ld, cfg);
	resolve_checkpoint(&ld, cfg);
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

/* The flows that require s, as "jwt, password" with each word between
 * quote, and its alternative: " (or SFDC_JWT_KEY_FILE)". */
static void
flow_words(const struct setting *s, const char *quote, char *buf, size_t len)
{
	size_t o = 0;
	const char *sep = "";

	buf[0] = '\0';
	if (s->flows == AUTH_RENEWABLE)
		append(buf, len, &o, "every flow but %stoken%s", quote, quote);
	for (size_t a = CONFIG_AUTH_JWT;
	     s->flows != AUTH_RENEWABLE && a <= CONFIG_AUTH_TOKEN; a++) {
		if (!(s->flows & AUTH_BIT(a)))
			continue;
		append(buf, len, &o, "%s%s%s%s", sep, quote, auth_names[a],
		       quote);
		sep = ", ";
	}
	if (s->partner != NULL)
		append(buf, len, &o, " (or %s)", s->partner);
}

void
config_print_help(FILE *out)
{
	char rules[256];

	fprintf(out, "Usage: sfrelay [--check] [--help] [--version]\n\n");
	print_wrapped(out,
	              "Relays a Salesforce org's streaming events as log "
	              "lines. It is configured through environment variables "
	              "(Heroku config vars); every problem is reported at "
	              "start-up. A variable set to an empty value is an error "
	              "unless its default is empty: unset it to get the "
	              "default. --check tests the settings, the login, the "
	              "streaming handshake and each channel's subscription, "
	              "prints one line per check and exits 0 when all pass, "
	              "1 otherwise.",
	              0);
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *s = &settings[i];
		char words[160];

		fprintf(out, "\n  %s", s->name);
		if (s->required)
			fprintf(out, " (required)\n");
		else if (s->unless != NULL)
			fprintf(out, " (required unless %s is set)\n",
			        s->unless);
		else if (s->flows != 0) {
			flow_words(s, "", words, sizeof(words));
			fprintf(out, " (required for %s)\n", words);
		} else if (s->def == NULL && s->unset != NULL)
			fprintf(out, " (default: %s)\n", s->unset);
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
		char words[160];

		fprintf(out, "| %s | ", s->name);
		if (s->required)
			fprintf(out, "required");
		else if (s->unless != NULL)
			fprintf(out, "required unless `%s` is set", s->unless);
		else if (s->flows != 0) {
			flow_words(s, "`", words, sizeof(words));
			fprintf(out, "required for %s", words);
		} else if (s->def == NULL && s->unset != NULL)
			fprintf(out, "%s", s->unset);
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
