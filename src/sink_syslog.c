/*
 * Syslog sink: RFC 5424 messages in RFC 6587 octet-counted frames over a
 * non-blocking TCP or TLS connection on the event loop (a bufferevent;
 * bufferevent_openssl for TLS, the peer verified against the CA file or
 * the system store, and its name or address against the URL's host).
 *
 * Every frame is an entry of one list, in sequence order, in one of
 * three stages:
 *
 *   retained -> acknowledged, kept a short while for a resend
 *   written  -> in the bufferevent's output, not yet taken by the socket
 *   waiting  -> not handed to a connection yet (none, or not connected)
 *
 * A frame is acknowledged once the socket took all of its bytes (the
 * output buffer's drain is counted byte by byte). Syslog over TCP has no
 * application acknowledgement, so bytes the kernel accepted can still
 * die in a receiver that goes away before reading them. The sink
 * therefore keeps acknowledged frames for RETAIN_MS (bounded in bytes)
 * and, when a connection ends, sends them again on the next one with
 * whatever was not yet written: a receiver restart costs duplicates,
 * never lines. While not connected, or when more than the window waits,
 * the sink is not ready and the relay holds the sources.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "sfrelay/log.h"
#include "sfrelay/sink.h"
#include "sfrelay/sink_net.h"
#include "sfrelay/syslog_frame.h"

#define SYSLOG_WINDOW (1024u * 1024u)
#define SYSLOG_MAX_MESSAGE 8192u
#define SYSLOG_CONNECT_MS 10000L
#define RETAIN_MS 250
#define RETAIN_BYTES (1024u * 1024u)

struct entry {
	struct entry *next;
	uint64_t seq;
	long long taken_ms; /* when the socket took it (retained only) */
	size_t len;
	char data[];
};

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_UP };

struct sink_syslog {
	struct sink *sink;
	struct event_base *base;
	struct evdns_base *dns;
	char *host;
	int port;
	int tls;
	SSL_CTX *ctx;
	struct sink_net_ident id;
	size_t window;
	long connect_ms;
	struct sink_net *net; /* failures, reconnect back-off, reconnects */

	struct bufferevent *bev;
	enum conn_state state;
	size_t drained;       /* bytes taken by the socket, not yet matched */
	struct event *timeout; /* connect + handshake deadline */
	struct event *process; /* acks, out of libevent's callbacks */

	struct entry *head, *tail;
	struct entry *written; /* first written (unacknowledged) entry */
	struct entry *waiting; /* first entry not handed to bev */
	size_t retained_bytes, unacked_bytes;
	uint64_t acked;
	int closing;
};

static int
can_take(const struct sink_syslog *s)
{
	return s->state == CONN_UP && s->unacked_bytes < s->window;
}

static int
syslog_ready(void *impl)
{
	struct sink_syslog *s = impl;
	return sink_net_ready(s->net, can_take(s));
}

/* Drops retained entries that are old enough, or too many. */
static void
prune(struct sink_syslog *s, long long now)
{
	while (s->head != NULL && s->head != s->written &&
	       (s->retained_bytes > RETAIN_BYTES ||
		now - s->head->taken_ms > RETAIN_MS)) {
		struct entry *e = s->head;
		s->head = e->next;
		if (s->head == NULL)
			s->tail = NULL;
		s->retained_bytes -= e->len;
		free(e);
	}
}

/* Hands every waiting entry to the connection. */
static void
push_waiting(struct sink_syslog *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	for (; s->waiting != NULL; s->waiting = s->waiting->next)
		if (evbuffer_add(out, s->waiting->data, s->waiting->len) != 0)
			break; /* out of memory: the rest waits */
}

/* Matches drained bytes to entries, acknowledging whole frames. */
static void
on_process(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sink_syslog *s = arg;
	long long now = sink_net_now_ms();
	uint64_t upto = 0;
	while (s->written != NULL && s->written != s->waiting &&
	       s->drained >= s->written->len) {
		struct entry *e = s->written;
		s->drained -= e->len;
		s->unacked_bytes -= e->len;
		s->retained_bytes += e->len;
		e->taken_ms = now;
		upto = e->seq;
		s->written = e->next;
	}
	prune(s, now);
	if (upto > s->acked) {
		s->acked = upto;
		sink_acked(s->sink, upto);
	}
	sink_net_wake(s->net, can_take(s));
}

static void
on_output_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info,
		  void *arg)
{
	(void)buf;
	struct sink_syslog *s = arg;
	if (info->n_deleted == 0)
		return;
	s->drained += info->n_deleted;
	event_active(s->process, EV_TIMEOUT, 0);
}

static void connect_now(struct sink_syslog *s);

/* Ends the connection; everything retained or written goes back to
 * waiting, to be sent again on the next one. */
static void
drop_connection(struct sink_syslog *s, const char *why)
{
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	evtimer_del(s->timeout);
	int was_up = s->state == CONN_UP;
	s->state = CONN_DOWN;
	/* Acknowledge what the socket did take before going down. */
	on_process(-1, 0, s);
	s->drained = 0;
	size_t resend = 0;
	for (struct entry *e = s->head; e != s->written; e = e->next)
		resend++;
	s->unacked_bytes += s->retained_bytes;
	s->retained_bytes = 0;
	s->written = s->waiting = s->head;
	if (s->closing)
		return;
	/* A connection that dies young is a failure, not a blip: it backs
	 * off rather than reconnect in a tight loop. */
	long delay = sink_net_lost(s->net);
	char d[24], n[24];
	log_warn(was_up ? "syslog connection lost; reconnecting"
			: "syslog connect failed; retrying",
		 "host", s->host, "error", why, "delay_ms",
		 log_fmt(d, sizeof(d), "%ld", delay), "resend_lines",
		 log_fmt(n, sizeof(n), "%zu", resend), NULL);
}

static void
on_connected(struct sink_syslog *s)
{
	evtimer_del(s->timeout);
	s->state = CONN_UP;
	sink_net_connected(s->net);
	char p[16];
	log_info("syslog connected", "host", s->host, "port",
		 log_fmt(p, sizeof(p), "%d", s->port), "tls",
		 s->tls ? "yes" : "no", NULL);
	push_waiting(s);
	sink_net_wake(s->net, can_take(s));
}

static void
tls_error(struct sink_syslog *s, char *buf, size_t len)
{
	unsigned long e = bufferevent_get_openssl_error(s->bev);
	long vr = X509_V_OK;
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	if (ssl != NULL)
		vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK)
		snprintf(buf, len, "TLS verification failed: %s",
			 X509_verify_cert_error_string(vr));
	else if (e != 0)
		snprintf(buf, len, "TLS: %s", ERR_reason_error_string(e));
	else
		snprintf(buf, len, "%s",
			 EVUTIL_SOCKET_ERROR() != 0
				 ? evutil_socket_error_to_string(
					   EVUTIL_SOCKET_ERROR())
				 : "connection closed");
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct sink_syslog *s = arg;
	char why[256];
	if (what & BEV_EVENT_CONNECTED) {
		on_connected(s);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		snprintf(why, sizeof(why), "closed by the receiver");
	} else if (what & BEV_EVENT_ERROR) {
		int dns = bufferevent_socket_get_dns_error(s->bev);
		if (dns != 0)
			snprintf(why, sizeof(why), "cannot resolve: %s",
				 evutil_gai_strerror(dns));
		else if (s->tls)
			tls_error(s, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "%s",
				 evutil_socket_error_to_string(
					 EVUTIL_SOCKET_ERROR()));
	} else {
		snprintf(why, sizeof(why), "connection event %d", what);
	}
	drop_connection(s, why);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	/* Receivers do not talk back; whatever comes is discarded. */
	struct evbuffer *in = bufferevent_get_input(bev);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drop_connection(arg, "connect timed out");
}

static void
on_retry(void *arg)
{
	connect_now(arg);
}

static SSL *
new_ssl(struct sink_syslog *s)
{
	SSL *ssl = SSL_new(s->ctx);
	if (ssl == NULL)
		return NULL;
	unsigned char addr[16];
	int is_ip = inet_pton(AF_INET, s->host, addr) == 1 ||
		    inet_pton(AF_INET6, s->host, addr) == 1;
	X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
	int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, s->host)
		       : SSL_set1_host(ssl, s->host) &&
				 SSL_set_tlsext_host_name(ssl, s->host);
	if (!ok) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

static void
connect_now(struct sink_syslog *s)
{
	if (s->closing || s->state != CONN_DOWN)
		return;
	int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	if (s->tls) {
		SSL *ssl = new_ssl(s);
		if (ssl != NULL)
			s->bev = bufferevent_openssl_socket_new(
				s->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
				opts);
		else
			s->bev = NULL;
		if (s->bev == NULL && ssl != NULL)
			SSL_free(ssl);
	} else {
		s->bev = bufferevent_socket_new(s->base, -1, opts);
	}
	if (s->bev == NULL) {
		drop_connection(s, "cannot create a connection");
		return;
	}
	bufferevent_setcb(s->bev, on_read, NULL, on_event, s);
	evbuffer_add_cb(bufferevent_get_output(s->bev), on_output_drained, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	s->state = CONN_CONNECTING;
	struct timeval tv = {s->connect_ms / 1000,
			     (s->connect_ms % 1000) * 1000};
	evtimer_add(s->timeout, &tv);
	if (bufferevent_socket_connect_hostname(s->bev, s->dns, AF_UNSPEC,
						s->host, s->port) != 0 &&
	    s->state == CONN_CONNECTING && s->bev != NULL)
		drop_connection(s, "connect failed at once");
}

/* ---- ops ---------------------------------------------------------------- */

static int
syslog_write(void *impl, uint64_t seq, const char *line, size_t len)
{
	struct sink_syslog *s = impl;
	char stamp[SYSLOG_TIMESTAMP_LEN + 1], msgid[SYSLOG_MSGID_MAX + 1];
	struct syslog_header h =
		sink_net_ident_header(&s->id, line, len, stamp, msgid);
	size_t n = syslog_frame_len(&h, stamp, line, len, 1);
	struct entry *e = malloc(sizeof(*e) + n);
	if (e == NULL)
		return -1;
	struct evbuffer *tmp = evbuffer_new();
	if (tmp == NULL || syslog_frame(tmp, &h, stamp, line, len, 1) < 0 ||
	    evbuffer_remove(tmp, e->data, n) != (int)n) {
		if (tmp != NULL)
			evbuffer_free(tmp);
		free(e);
		return -1;
	}
	evbuffer_free(tmp);
	e->next = NULL;
	e->seq = seq;
	e->len = n;
	e->taken_ms = 0;
	if (s->tail != NULL)
		s->tail->next = e;
	else
		s->head = e;
	s->tail = e;
	if (s->written == NULL)
		s->written = e;
	if (s->waiting == NULL)
		s->waiting = e;
	s->unacked_bytes += n;
	if (s->state == CONN_UP)
		push_waiting(s);
	return 0;
}

static int
syslog_flush(void *impl)
{
	struct sink_syslog *s = impl;
	/* Frames go out as soon as they are written; acknowledgements
	 * follow the socket. Nothing to hurry. */
	if (s->state == CONN_DOWN && !sink_net_retry_pending(s->net))
		connect_now(s);
	return 0;
}

static void
syslog_free(void *impl)
{
	struct sink_syslog *s = impl;
	if (s == NULL)
		return;
	s->closing = 1;
	if (s->bev != NULL && s->tls && s->state == CONN_UP) {
		/* Orderly end: close_notify, so the receiver knows the
		 * stream was not cut. */
		SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
		if (ssl != NULL)
			SSL_shutdown(ssl);
	}
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	while (s->head != NULL) {
		struct entry *e = s->head;
		s->head = e->next;
		free(e);
	}
	sink_net_free(s->net);
	if (s->timeout != NULL)
		event_free(s->timeout);
	if (s->process != NULL)
		event_free(s->process);
	if (s->dns != NULL)
		evdns_base_free(s->dns, 0);
	if (s->ctx != NULL)
		SSL_CTX_free(s->ctx);
	free(s->host);
	sink_net_ident_clear(&s->id);
	free(s);
}

static const struct sink_ops syslog_ops = {
	.name = "syslog",
	.write = syslog_write,
	.flush = syslog_flush,
	.free = syslog_free,
	.ready = syslog_ready,
};

/* syslog://host:port or syslog+tls://host:port ([v6]:port too). */
static int
parse_url(struct sink_syslog *s, const char *url, char *err, size_t errlen)
{
	const char *rest;
	if (strncmp(url, "syslog://", 9) == 0) {
		rest = url + 9;
	} else if (strncmp(url, "syslog+tls://", 13) == 0) {
		rest = url + 13;
		s->tls = 1;
	} else {
		snprintf(err, errlen, "must start with syslog:// or "
				      "syslog+tls://");
		return -1;
	}
	size_t alen = strcspn(rest, "/");
	const char *hs = rest, *he, *colon;
	if (*rest == '[') {
		hs = rest + 1;
		he = memchr(rest, ']', alen);
		colon = he != NULL ? he + 1 : NULL;
	} else {
		colon = memchr(rest, ':', alen);
		he = colon;
	}
	if (he == NULL || colon == NULL || *colon != ':' || he == hs) {
		snprintf(err, errlen, "needs host:port");
		return -1;
	}
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (port < 1 || port > 65535 || end != rest + alen) {
		snprintf(err, errlen, "needs a port from 1 to 65535");
		return -1;
	}
	s->host = strndup(hs, (size_t)(he - hs));
	s->port = (int)port;
	if (s->host == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int
tls_setup(struct sink_syslog *s, const char *ca_file, char *err,
	  size_t errlen)
{
	s->ctx = SSL_CTX_new(TLS_client_method());
	if (s->ctx == NULL) {
		snprintf(err, errlen, "cannot create a TLS context");
		return -1;
	}
	SSL_CTX_set_min_proto_version(s->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER, NULL);
	int ok = ca_file != NULL
			 ? SSL_CTX_load_verify_locations(s->ctx, ca_file, NULL)
			 : SSL_CTX_set_default_verify_paths(s->ctx);
	if (ok != 1) {
		snprintf(err, errlen, "SFRELAY_CA_FILE: cannot load %s",
			 ca_file != NULL ? ca_file : "the system store");
		return -1;
	}
	return 0;
}

struct sink *
sink_syslog_new(struct event_base *base, const struct sink_syslog_opts *o,
		char *err, size_t errlen)
{
	char why[200];
	struct sink_syslog *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->base = base;
	if (parse_url(s, o->url, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "SYSLOG_URL: %s", why);
		goto fail;
	}
	if (s->tls && tls_setup(s, o->ca_file, err, errlen) != 0)
		goto fail;
	int named = sink_net_ident_init(&s->id, o->hostname, o->app_name,
					o->procid, o->facility,
					o->severity) == 0;
	s->window = o->window_bytes > 0 ? o->window_bytes : SYSLOG_WINDOW;
	s->connect_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms
						  : SYSLOG_CONNECT_MS;
	s->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
					      EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (s->dns == NULL) /* no resolv.conf: numeric hosts still work */
		s->dns = evdns_base_new(base, 0);
	s->net = sink_net_new(base, &o->backoff, on_retry, s);
	s->timeout = evtimer_new(base, on_timeout, s);
	s->process = event_new(base, -1, 0, on_process, s);
	if (!named || s->dns == NULL || s->net == NULL || s->timeout == NULL ||
	    s->process == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->sink = sink_new(&syslog_ops, s);
	if (s->sink == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	sink_net_set_sink(s->net, s->sink);
	/* The whole message (header and line) within the receiver's
	 * limit, whatever the MSGID. */
	size_t max_msg = o->max_message > 0 ? o->max_message
					    : SYSLOG_MAX_MESSAGE;
	size_t header = sink_net_ident_overhead(&s->id, 0);
	sink_set_max_line(s->sink, max_msg > header + 1024 ? max_msg - header
							   : 1024);
	connect_now(s);
	return s->sink;
fail:
	syslog_free(s);
	return NULL;
}
