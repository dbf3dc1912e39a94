#ifndef SFRELAY_SINKS_H
#define SFRELAY_SINKS_H

#include <stddef.h>

struct config;
struct event_base;
struct http;
struct sink;

/*
 * Picks and builds the sink the configuration names (SFRELAY_SINK):
 * stdout, logplex (LOGPLEX_URL, batches) or syslog (SYSLOG_URL), with
 * the syslog header fields (DYNO or the host name, APP-NAME, the
 * process id, the facility) and the line limit (SFRELAY_MAX_LINE or the
 * sink's own). base, http and cfg are borrowed; base and http must
 * outlive the sink. Returns an owned sink, or NULL with a message in err
 * (never holding a secret).
 */
struct sink *sink_open(struct event_base *base, struct http *http,
		       const struct config *cfg, char *err, size_t errlen);

#endif /* SFRELAY_SINKS_H */
