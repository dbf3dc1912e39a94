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
 * Secrets (SFDC_CLIENT_SECRET, SFDC_PASSWORD, SFDC_SECURITY_TOKEN) are
 * registered with log_add_secret() once config_load() succeeds, and are
 * never printed.
 */

#define CONFIG_MAX_CHANNELS 64

struct config {
	/* Salesforce */
	char *login_url;      /* SFDC_LOGIN_URL, no trailing '/' */
	char *client_id;      /* SFDC_CLIENT_ID */
	char *client_secret;  /* SFDC_CLIENT_SECRET (secret) */
	char *username;       /* SFDC_USERNAME */
	char *password;       /* SFDC_PASSWORD (secret) */
	char *security_token; /* SFDC_SECURITY_TOKEN (secret), "" if unset */
	char *api_version;    /* SFDC_API_VERSION, "61.0"; >= 37.0 */

	/* What to relay */
	char *channels[CONFIG_MAX_CHANNELS]; /* SFRELAY_CHANNELS, split */
	size_t nchannels;

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

/* Frees the strings of cfg and zeroes it. Safe on a zeroed struct. */
void config_clear(struct config *cfg);

/* Writes the --help text (usage and every variable with its default). */
void config_print_help(FILE *out);

/* Writes the configuration reference as a markdown table (docs). */
void config_print_markdown(FILE *out);

#endif /* SFRELAY_CONFIG_H */
