/* The configuration's choice of sink, with the fields every sink shares. */
#include "sfrelay/sinks.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sfrelay/config.h"
#include "sfrelay/sink.h"

#define STDOUT_MAX_LINE 10000u /* Heroku splits longer stdout lines */

struct sink *
sink_open(struct event_base *base, struct http *http, const struct config *cfg,
	  char *err, size_t errlen)
{
	char host[256], pid[24];
	const char *hostname = cfg->dyno;
	if (hostname == NULL) {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "-");
		host[sizeof(host) - 1] = '\0';
		hostname = host;
	}
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	struct sink_backoff backoff = {
		.min_ms = cfg->backoff_min_ms,
		.max_ms = cfg->backoff_max_ms,
		.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32),
	};
	size_t max_line = cfg->max_line > 0 ? (size_t)cfg->max_line : 0;
	struct sink *sink = NULL;

	switch (cfg->sink) {
	case CONFIG_SINK_STDOUT:
		sink = sink_stdout_new(base, STDOUT_FILENO);
		if (sink == NULL) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		sink_set_max_line(sink, max_line > 0 ? max_line
						     : STDOUT_MAX_LINE);
		return sink;
	case CONFIG_SINK_LOGPLEX: {
		struct sink_logplex_opts o = {
			.url = cfg->logplex_url,
			.hostname = hostname,
			.app_name = cfg->syslog_app_name,
			.procid = pid,
			.facility = (int)cfg->syslog_facility,
			.severity = (int)cfg->syslog_severity,
			.max_lines = (size_t)cfg->logplex_batch_lines,
			.max_bytes = (size_t)cfg->logplex_batch_bytes,
			.max_age_ms = cfg->logplex_batch_age_ms,
			.timeout_ms = cfg->connect_timeout_ms,
			.max_line = max_line,
			.backoff = backoff,
		};
		return sink_logplex_new(base, http, &o, err, errlen);
	}
	case CONFIG_SINK_SYSLOG: {
		struct sink_syslog_opts o = {
			.url = cfg->syslog_url,
			.ca_file = cfg->ca_file,
			.hostname = hostname,
			.app_name = cfg->syslog_app_name,
			.procid = pid,
			.facility = (int)cfg->syslog_facility,
			.severity = (int)cfg->syslog_severity,
			.connect_timeout_ms = cfg->connect_timeout_ms,
			.backoff = backoff,
		};
		sink = sink_syslog_new(base, &o, err, errlen);
		if (sink != NULL && max_line > 0)
			sink_set_max_line(sink, max_line);
		return sink;
	}
	}
	snprintf(err, errlen, "unknown sink");
	return NULL;
}
