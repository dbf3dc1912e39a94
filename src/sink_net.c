/* Failure count, back-off timer, reconnect state and RFC 5424 identity
 * of the network sinks (see sink_net.h). */
#include "sfrelay/sink_net.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "sfrelay/backoff.h"

struct sink_net {
	struct sink *sink; /* borrowed */
	struct sink_backoff backoff;
	uint64_t rng;
	unsigned failures;
	struct event *retry;
	sink_net_retry_fn *retry_fn;
	void *arg;
	int up;             /* a connection is up (sink_net_connected) */
	int ever_up;
	long long up_since;
	int told_full;      /* ready() said 0 since the last wake-up */
};

long long
sink_net_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sink_net *net = arg;
	net->retry_fn(net->arg);
}

struct sink_net *
sink_net_new(struct event_base *base, const struct sink_backoff *backoff,
	     sink_net_retry_fn *retry, void *arg)
{
	struct sink_net *net = calloc(1, sizeof(*net));
	if (net == NULL)
		return NULL;
	net->backoff = *backoff;
	if (net->backoff.min_ms <= 0)
		net->backoff.min_ms = 1000;
	if (net->backoff.max_ms < net->backoff.min_ms)
		net->backoff.max_ms = net->backoff.min_ms;
	net->rng = backoff->seed;
	net->retry_fn = retry;
	net->arg = arg;
	net->retry = evtimer_new(base, on_retry, net);
	if (net->retry == NULL) {
		free(net);
		return NULL;
	}
	return net;
}

void
sink_net_free(struct sink_net *net)
{
	if (net == NULL)
		return;
	event_free(net->retry); /* deletes a pending retry first */
	free(net);
}

void
sink_net_set_sink(struct sink_net *net, struct sink *sink)
{
	net->sink = sink;
}

void
sink_net_retry_in(struct sink_net *net, long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(net->retry, &tv);
}

int
sink_net_retry_pending(const struct sink_net *net)
{
	return evtimer_pending(net->retry, NULL) != 0;
}

long
sink_net_failed(struct sink_net *net)
{
	net->failures++;
	long delay = backoff_delay(net->backoff.min_ms, net->backoff.max_ms,
				   net->failures, &net->rng);
	sink_net_retry_in(net, delay);
	return delay;
}

int
sink_net_succeeded(struct sink_net *net)
{
	int was_down = net->failures > 0;
	net->failures = 0;
	return was_down;
}

unsigned
sink_net_failures(const struct sink_net *net)
{
	return net->failures;
}

void
sink_net_connected(struct sink_net *net)
{
	net->up = 1;
	net->up_since = sink_net_now_ms();
	if (net->ever_up)
		sink_reconnected(net->sink);
	net->ever_up = 1;
}

long
sink_net_lost(struct sink_net *net)
{
	int lived = net->up &&
		    sink_net_now_ms() - net->up_since >= SINK_NET_LIVED_MS;
	net->up = 0;
	if (!lived)
		return sink_net_failed(net);
	sink_net_succeeded(net);
	/* Not 0: the new connection starts from the loop, after whatever
	 * the caller still does with the old one. */
	sink_net_retry_in(net, 1);
	return 0;
}

int
sink_net_ready(struct sink_net *net, int ready)
{
	if (!ready)
		net->told_full = 1;
	return ready;
}

void
sink_net_wake(struct sink_net *net, int ready)
{
	if (net->told_full && ready) {
		net->told_full = 0;
		sink_writable(net->sink);
	}
}

int
sink_net_ident_init(struct sink_net_ident *id, const char *hostname,
		    const char *app_name, const char *procid, int facility,
		    int severity)
{
	id->hostname = strdup(hostname != NULL ? hostname : "-");
	id->app_name = strdup(app_name != NULL ? app_name : "sfrelay");
	id->procid = strdup(procid != NULL ? procid : "-");
	id->hdr = (struct syslog_header){.facility = facility,
					 .severity = severity,
					 .hostname = id->hostname,
					 .app_name = id->app_name,
					 .procid = id->procid};
	if (id->hostname == NULL || id->app_name == NULL || id->procid == NULL)
		return -1;
	return 0;
}

void
sink_net_ident_clear(struct sink_net_ident *id)
{
	free(id->hostname);
	free(id->app_name);
	free(id->procid);
	memset(id, 0, sizeof(*id));
}

struct syslog_header
sink_net_ident_header(const struct sink_net_ident *id, const char *line,
		      size_t len, char *stamp, char *msgid)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	syslog_timestamp(stamp, SYSLOG_TIMESTAMP_LEN + 1, (int64_t)ts.tv_sec,
			 ts.tv_nsec / 1000);
	struct syslog_header h = id->hdr;
	h.msgid = syslog_msgid_of_line(line, len, msgid, SYSLOG_MSGID_MAX + 1);
	return h;
}

size_t
sink_net_ident_overhead(const struct sink_net_ident *id, int counted)
{
	struct syslog_header h = id->hdr;
	char longest[SYSLOG_MSGID_MAX + 1];
	memset(longest, 'x', SYSLOG_MSGID_MAX);
	longest[SYSLOG_MSGID_MAX] = '\0';
	h.msgid = longest;
	/* Every timestamp has the same length. */
	return syslog_frame_len(&h, "2026-01-01T00:00:00.000000Z", "", 0,
				counted);
}
