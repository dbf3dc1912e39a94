#ifndef SFRELAY_CONFIG_H
#define SFRELAY_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "sfrelay/format.h"
#include "sfrelay/log.h"

/*
 * Configuration: environment variables (Heroku config vars) -> one
 * validated struct. This is the only module that reads the environment,
 * and it reads it only through the environ-style array it is given, so
 * tests pass their own.
 *
 * Every setting is declared once, in the table in config.c (name, type,
 * default, help); --help and docs/configuration.md are generated from it.
 * Secrets (SFDC_CLIENT_SECRET, SFDC_PASSWORD, SFDC_SECURITY_TOKEN,
 * SFDC_JWT_KEY, SFDC_REFRESH_TOKEN, SFDC_ACCESS_TOKEN, LOGPLEX_URL,
 * DATABASE_URL) are registered
 * with log_add_secret() once config_load() succeeds, are wiped by
 * config_clear(), and are never printed.
 */

#define CONFIG_MAX_CHANNELS 64
#define CONFIG_MAX_REDACT 64

/* Where event lines go (SFRELAY_SINK). */
enum config_sink {
	CONFIG_SINK_STDOUT = 0,
	CONFIG_SINK_LOGPLEX,
	CONFIG_SINK_SYSLOG,
};

/* Where checkpoints are kept (SFRELAY_CHECKPOINT). */
enum config_checkpoint {
	CONFIG_CHECKPOINT_FILE = 0,
	CONFIG_CHECKPOINT_POSTGRES,
};

/*
 * How the relay gets its access token: SFDC_AUTH, or inferred from the
 * credentials that are set (see the SFDC_AUTH row in config.c). Each
 * flow requires its own variables; the others may be NULL.
 */
enum config_auth {
	CONFIG_AUTH_NONE = 0,           /* only in a zeroed struct */
	CONFIG_AUTH_JWT,                /* client_id, username, a JWT key */
	CONFIG_AUTH_CLIENT_CREDENTIALS, /* client_id, client_secret */
	CONFIG_AUTH_REFRESH_TOKEN,      /* client_id, refresh_token */
	CONFIG_AUTH_PASSWORD,           /* client_id, client_secret,
					   username, password */
	CONFIG_AUTH_TOKEN,              /* access_token, instance_url */
};

struct config {
	/* Salesforce */
	char *login_url;      /* SFDC_LOGIN_URL, no trailing '/' */
	enum config_auth auth; /* SFDC_AUTH or inferred; never NONE */
	int auth_inferred;    /* 1 when SFDC_AUTH was not set */
	char *client_id;      /* SFDC_CLIENT_ID */
	char *client_secret;  /* SFDC_CLIENT_SECRET (secret) or NULL */
	char *username;       /* SFDC_USERNAME or NULL */
	char *password;       /* SFDC_PASSWORD (secret) or NULL */
	char *security_token; /* SFDC_SECURITY_TOKEN (secret), "" if unset */
	char *jwt_key;        /* SFDC_JWT_KEY (secret): PEM text, or NULL */
	char *jwt_key_file;   /* SFDC_JWT_KEY_FILE or NULL */
	char *refresh_token;  /* SFDC_REFRESH_TOKEN (secret) or NULL */
	char *access_token;   /* SFDC_ACCESS_TOKEN (secret) or NULL */
	char *instance_url;   /* SFDC_INSTANCE_URL, no trailing '/', or NULL */
	char *api_version;    /* SFDC_API_VERSION, "61.0"; >= 37.0 */

	/* What to relay: channels, polled objects, or both (at least one) */
	char *channels[CONFIG_MAX_CHANNELS]; /* SFRELAY_CHANNELS, split */
	size_t nchannels;
	char *poll;            /* SFRELAY_POLL, validated (soql.h), or NULL */
	long poll_lookback_s;  /* SFRELAY_POLL_LOOKBACK, seconds; 0 = now */
	long api_budget_pct;   /* SFRELAY_API_BUDGET_PCT, 1..100 */
	char *backfill;        /* SFRELAY_BACKFILL, validated, or NULL */

	/* Output and diagnostics */
	enum format_kind format; /* SFRELAY_FORMAT */
	enum log_level log_level; /* SFRELAY_LOG_LEVEL */
	long connect_timeout_ms;  /* SFRELAY_HTTP_TIMEOUT: non-long-poll requests */
	char *ca_file;            /* SFRELAY_CA_FILE, NULL = system store */

	/* Delivery */
	char *state_dir;            /* SFRELAY_STATE_DIR */
	long replay_from;           /* SFRELAY_REPLAY_FROM: -1 or -2 */
	long replay_invalid;        /* SFRELAY_REPLAY_INVALID: -1 or -2 */
	long checkpoint_interval_ms; /* SFRELAY_CHECKPOINT_INTERVAL */
	long queue_lines;           /* SFRELAY_QUEUE_LINES */
	long backoff_min_ms;        /* SFRELAY_BACKOFF_MIN */
	long backoff_max_ms;        /* SFRELAY_BACKOFF_MAX */
	long shutdown_timeout_ms;   /* SFRELAY_SHUTDOWN_TIMEOUT */
	/* SFRELAY_CHECKPOINT, or inferred: POSTGRES when DATABASE_URL is
	 * set, else FILE. */
	enum config_checkpoint checkpoint;
	char *database_url;         /* DATABASE_URL (secret) or NULL */
	long failover_ms;           /* SFRELAY_FAILOVER */

	/* Sinks (see docs/sinks.md) */
	enum config_sink sink;      /* SFRELAY_SINK */
	char *logplex_url;          /* LOGPLEX_URL (secret: holds the token) */
	char *syslog_url;           /* SYSLOG_URL: syslog[+tls]://host:port */
	long syslog_facility;       /* SFRELAY_SYSLOG_FACILITY: 0..23 */
	long syslog_severity;       /* SFRELAY_SYSLOG_SEVERITY: 0..7 */
	char *syslog_app_name;      /* SFRELAY_SYSLOG_APP_NAME */
	char *dyno;                 /* DYNO (set by Heroku) or NULL */
	long max_line;              /* SFRELAY_MAX_LINE; 0: the sink's own */
	char *redact[CONFIG_MAX_REDACT]; /* SFRELAY_REDACT, split */
	size_t nredact;
	long stats_interval_ms;     /* SFRELAY_STATS_INTERVAL; 0: off */
	long logplex_batch_lines;   /* SFRELAY_LOGPLEX_BATCH_LINES */
	long logplex_batch_bytes;   /* SFRELAY_LOGPLEX_BATCH_BYTES */
	long logplex_batch_age_ms;  /* SFRELAY_LOGPLEX_BATCH_AGE */
};

/*
 * Reads env (a NULL-terminated array of "NAME=value" strings, as environ)
 * into cfg. Returns 0 on success. On failure returns -1 and writes one
 * line per problem into err ("SFDC_CLIENT_ID: required, ...\n"), each
 * naming its variable; every problem is reported, not just the first.
 * err is truncated to errlen bytes and always terminated.
 * On success cfg owns its strings until config_clear().
 */
int config_load(struct config *cfg, const char *const *env, char *err,
		size_t errlen);

/* "jwt", "client_credentials", "refresh_token", "password", "token"
 * (SFDC_AUTH's words), or "none". Static storage. */
const char *config_auth_name(enum config_auth auth);

/* Frees the strings of cfg and zeroes it. Safe on a zeroed struct. */
void config_clear(struct config *cfg);

/* Writes the --help text (usage and every variable with its default). */
void config_print_help(FILE *out);

/* Writes the configuration reference as a markdown table (docs). */
void config_print_markdown(FILE *out);

#endif /* SFRELAY_CONFIG_H */
