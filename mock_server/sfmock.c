/*
 * sfmock: a fake Salesforce org for tests, demos and benchmarks. It
 * serves the OAuth token endpoint, the CometD streaming endpoint with
 * replay, platform event publishing, and a few /_mock test endpoints, on
 * 127.0.0.1 only. See docs/sfmock.md.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <event2/http.h>

#include "sfrelay/log.h"

#include "cometd.h"
#include "demo.h"
#include "fault.h"
#include "logs.h"
#include "oauth.h"
#include "org.h"
#include "rest.h"
#include "state.h"
#include "util.h"

#define EXIT_USAGE 64
#define MAX_BODY (16 * 1024 * 1024)
#define MAX_HEADERS (64 * 1024)

enum opt_id {
	OPT_PORT,
	OPT_DEMO,
	OPT_CHANNEL,
	OPT_CLIENT_ID,
	OPT_CLIENT_SECRET,
	OPT_USERNAME,
	OPT_PASSWORD,
	OPT_SECURITY_TOKEN,
	OPT_REFRESH_TOKEN,
	OPT_JWT_CERT,
	OPT_TOKEN_TTL,
	OPT_CONNECT_TIMEOUT,
	OPT_CLIENT_EXPIRY,
	OPT_RETENTION,
	OPT_MAX_BATCH,
	OPT_DEMO_RATE,
	OPT_LOG_LEVEL,
	OPT_FAULT,
	OPT_STATE,
	OPT_HELP,
};

/* The command line, declared once: parsing and --help both read it. */
static const struct opt {
	const char *name;
	enum opt_id id;
	const char *arg; /* NULL: a flag without value */
	int64_t min, max;
	const char *help;
} opts[] = {
    {"port", OPT_PORT, "N", 0, 65535,
     "TCP port on 127.0.0.1; 0 picks a free one (default 0)"},
    {"demo", OPT_DEMO, NULL, 0, 0,
     "declare the demo channels and publish a demo stream"},
    {"channel", OPT_CHANNEL, "NAME", 0, 0,
     "declare a channel: /topic/X, /event/X, /data/X or /u/X "
     "(repeatable)"},
    {"client-id", OPT_CLIENT_ID, "ID", 0, 0,
     "OAuth client id (default sfmock-client-id)"},
    {"client-secret", OPT_CLIENT_SECRET, "S", 0, 0,
     "OAuth client secret (default sfmock-client-secret)"},
    {"username", OPT_USERNAME, "U", 0, 0,
     "user name (default relay@sfmock.test)"},
    {"password", OPT_PASSWORD, "P", 0, 0, "password (default sfmock-password)"},
    {"security-token", OPT_SECURITY_TOKEN, "T", 0, 0,
     "security token appended to the password (default empty)"},
    {"refresh-token", OPT_REFRESH_TOKEN, "T", 0, 0,
     "refresh token the refresh_token grant accepts "
     "(default sfmock-refresh-token)"},
    {"jwt-cert", OPT_JWT_CERT, "FILE", 0, 0,
     "PEM certificate or public key that JWT assertions are verified "
     "with (default: none, JWTs refused)"},
    {"token-ttl", OPT_TOKEN_TTL, "MS", 1, 86400000,
     "access tokens expire this long after they are issued "
     "(default: never)"},
    {"connect-timeout", OPT_CONNECT_TIMEOUT, "MS", 1, 86400000,
     "long-poll hold and advice.timeout (default 110000)"},
    {"client-expiry", OPT_CLIENT_EXPIRY, "MS", 1, 86400000,
     "forget a client idle this long after its last response "
     "(default 40000)"},
    {"retention", OPT_RETENTION, "N", 1, 100000000,
     "events kept per channel (default 100000)"},
    {"max-batch", OPT_MAX_BATCH, "N", 1, 10000000,
     "most events in one connect response (default 1000)"},
    {"demo-rate", OPT_DEMO_RATE, "N", 0, 1000000,
     "demo events per second (default 3)"},
    {"log-level", OPT_LOG_LEVEL, "L", 0, 0,
     "debug, info, warn or error (default info)"},
    {"fault", OPT_FAULT, "SPEC", 0, 0,
     "a fault rule, e.g. action=http_503,match=/meta/connect,nth=3 "
     "(repeatable; see docs/sfmock.md)"},
    {"state", OPT_STATE, "FILE", 0, 0,
     "keep channels, retained events and tokens in FILE across "
     "restarts"},
    {"help", OPT_HELP, NULL, 0, 0, "show this help"},
};

struct cli {
	struct org_config cfg;
	const char **channels; /* borrowed from argv */
	size_t nchannels;
	const char **faults; /* --fault specs, in the same allocation */
	size_t nfaults;
	const char *state; /* --state FILE or NULL */
	enum log_level level;
	int help;
};

struct router {
	struct cometd *cometd;
	struct rest *rest;
	struct logs *logs;
	struct fault_plan *faults;
};

static void
usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: sfmock [options]\n\n"
	           "A fake Salesforce org on 127.0.0.1 (OAuth, CometD with "
	           "replay, event publishing).\n\n");
	for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		char left[40];

		snprintf(left, sizeof(left), "--%s%s%s", opts[i].name,
		         opts[i].arg != NULL ? " " : "",
		         opts[i].arg != NULL ? opts[i].arg : "");
		fprintf(f, "  %-24s %s\n", left, opts[i].help);
	}
}

static const struct opt *
opt_find(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (strlen(opts[i].name) == len &&
		    strncmp(opts[i].name, name, len) == 0)
			return &opts[i];
	return NULL;
}

static int
opt_apply(struct cli *cli, const struct opt *o, const char *val)
{
	struct org_config *cfg = &cli->cfg;
	enum org_kind kind;
	int64_t n = 0;

	if (o->max > 0 && util_parse_i64(val, o->min, o->max, &n) != 0) {
		fprintf(stderr, "sfmock: --%s needs a number in %lld..%lld\n",
		        o->name, (long long)o->min, (long long)o->max);
		return -1;
	}
	switch (o->id) {
	case OPT_PORT:
		cfg->port = (int)n;
		break;
	case OPT_DEMO:
		cfg->demo = 1;
		break;
	case OPT_CHANNEL:
		if (org_kind_of(val, &kind) != 0) {
			fprintf(stderr,
			        "sfmock: --channel %s: want /topic/X, "
			        "/event/X, /data/X or /u/X with X of "
			        "[A-Za-z0-9_.-]\n",
			        val);
			return -1;
		}
		cli->channels[cli->nchannels++] = val;
		break;
	case OPT_CLIENT_ID:
		cfg->client_id = val;
		break;
	case OPT_CLIENT_SECRET:
		cfg->client_secret = val;
		break;
	case OPT_USERNAME:
		cfg->username = val;
		break;
	case OPT_PASSWORD:
		cfg->password = val;
		break;
	case OPT_SECURITY_TOKEN:
		cfg->security_token = val;
		break;
	case OPT_REFRESH_TOKEN:
		cfg->refresh_token = val;
		break;
	case OPT_JWT_CERT: {
		char err[512];

		if (oauth_check_cert(val, err, sizeof(err)) != 0) {
			fprintf(stderr, "sfmock: --jwt-cert: %s\n", err);
			return -1;
		}
		cfg->jwt_cert = val;
		break;
	}
	case OPT_TOKEN_TTL:
		cfg->token_ttl_ms = n;
		break;
	case OPT_CONNECT_TIMEOUT:
		cfg->connect_timeout_ms = n;
		break;
	case OPT_CLIENT_EXPIRY:
		cfg->client_expiry_ms = n;
		break;
	case OPT_RETENTION:
		cfg->retention = (size_t)n;
		break;
	case OPT_MAX_BATCH:
		cfg->max_batch = (size_t)n;
		break;
	case OPT_DEMO_RATE:
		cfg->demo_rate = (int)n;
		break;
	case OPT_LOG_LEVEL:
		if (log_level_parse(val, &cli->level) != 0) {
			fprintf(stderr,
			        "sfmock: --log-level %s: want debug, "
			        "info, warn or error\n",
			        val);
			return -1;
		}
		break;
	case OPT_FAULT: {
		char err[256];

		if (fault_spec_check(val, err, sizeof(err)) != 0) {
			fprintf(stderr, "sfmock: --fault %s: %s\n", val, err);
			return -1;
		}
		cli->faults[cli->nfaults++] = val;
		break;
	}
	case OPT_STATE:
		cli->state = val;
		break;
	case OPT_HELP:
		cli->help = 1;
		break;
	}
	return 0;
}

/* Fills cli from argv. Returns 0, or -1 after a message on stderr. */
static int
cli_parse(struct cli *cli, int argc, char **argv)
{
	int i;

	memset(cli, 0, sizeof(*cli));
	cli->cfg.client_id = "sfmock-client-id";
	cli->cfg.client_secret = "sfmock-client-secret";
	cli->cfg.username = "relay@sfmock.test";
	cli->cfg.password = "sfmock-password";
	cli->cfg.security_token = "";
	cli->cfg.refresh_token = "sfmock-refresh-token";
	cli->cfg.connect_timeout_ms = 110000;
	cli->cfg.client_expiry_ms = 40000;
	cli->cfg.retention = 100000;
	cli->cfg.max_batch = 1000;
	cli->cfg.demo_rate = 3;
	cli->level = LOG_INFO;
	/* At most one channel per argument, so argc bounds the list; the
	 * fault specs share the allocation. */
	cli->channels = calloc(2 * ((size_t)argc + 1), sizeof(*cli->channels));
	if (cli->channels == NULL) {
		fprintf(stderr, "sfmock: out of memory\n");
		return -1;
	}
	cli->faults = cli->channels + argc + 1;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *eq, *val = NULL;
		const struct opt *o;

		if (strncmp(a, "--", 2) != 0) {
			fprintf(stderr, "sfmock: unexpected argument '%s'\n",
			        a);
			goto bad;
		}
		a += 2;
		eq = strchr(a, '=');
		o = opt_find(a, eq != NULL ? (size_t)(eq - a) : strlen(a));
		if (o == NULL) {
			fprintf(stderr, "sfmock: unknown option '%s'\n",
			        argv[i]);
			goto bad;
		}
		if (o->arg == NULL && eq != NULL) {
			fprintf(stderr, "sfmock: --%s takes no value\n",
			        o->name);
			goto bad;
		}
		if (o->arg != NULL) {
			if (eq != NULL)
				val = eq + 1;
			else if (i + 1 < argc)
				val = argv[++i];
			else {
				fprintf(stderr, "sfmock: --%s needs a value\n",
				        o->name);
				goto bad;
			}
		}
		if (opt_apply(cli, o, val) != 0)
			goto bad;
	}
	return 0;
bad:
	fprintf(stderr, "sfmock: try --help\n");
	return -1;
}

static void
route_cb(struct evhttp_request *req, void *arg)
{
	struct router *r = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

	/* The fault plan sees every request first (and may route it back
	 * here later, or now with a verdict in force). */
	if (fault_intercept(r->faults, req, route_cb, arg))
		return;
	if (path != NULL && strncmp(path, "/cometd", 7) == 0 &&
	    (path[7] == '\0' || path[7] == '/'))
		cometd_handle(r->cometd, req);
	else if (path == NULL || !logs_handle(r->logs, req, path))
		rest_handle(r->rest, req);
}

static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct event_base *base = arg;

	(void)what;
	log_info("stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
	         NULL);
	event_base_loopbreak(base);
}

static void
libevent_log(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_WARN)
		log_warn("libevent", "detail", msg, NULL);
	else
		log_debug("libevent", "detail", msg, NULL);
}

static int
bound_port(struct evhttp_bound_socket *bound)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	if (getsockname(evhttp_bound_socket_get_fd(bound),
	                (struct sockaddr *)&sin, &len) != 0)
		return -1;
	return ntohs(sin.sin_port);
}

int
main(int argc, char **argv)
{
	struct cli cli;
	struct sigaction sa;
	struct event_base *base = NULL;
	struct event *sigint = NULL, *sigterm = NULL;
	struct evhttp *http = NULL;
	struct evhttp_bound_socket *bound;
	struct org *org = NULL;
	struct demo *demo = NULL;
	struct state *state = NULL;
	struct router router = {0};
	struct timeval tv;
	char portbuf[16], errbuf[512];
	int port, rc = 1;
	size_t i;

	if (cli_parse(&cli, argc, argv) != 0) {
		free(cli.channels);
		return EXIT_USAGE;
	}
	if (cli.help) {
		usage(stdout);
		free(cli.channels);
		return 0;
	}
	log_set_level(cli.level);
	log_add_secret(cli.cfg.client_secret);
	log_add_secret(cli.cfg.password);
	log_add_secret(cli.cfg.security_token);
	log_add_secret(cli.cfg.refresh_token);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	event_set_log_callback(libevent_log);

	base = event_base_new();
	org = org_new(&cli.cfg);
	if (base == NULL || org == NULL) {
		log_error("out of memory", NULL);
		goto out;
	}
	for (i = 0; i < cli.nchannels; i++) {
		if (org_channel_declare(org, cli.channels[i]) == NULL) {
			log_error("cannot declare channel", "channel",
			          cli.channels[i], NULL);
			goto out;
		}
	}
	if (cli.state != NULL) {
		state =
		    state_open(base, org, cli.state, errbuf, sizeof(errbuf));
		if (state == NULL) {
			log_error("cannot use the state file", "error", errbuf,
			          NULL);
			goto out;
		}
	}
	if (cli.cfg.demo) {
		demo = demo_new(base, org, cli.cfg.demo_rate);
		if (demo == NULL) {
			log_error("cannot start the demo", NULL);
			goto out;
		}
	}

	http = evhttp_new(base);
	if (http == NULL)
		goto out;
	evhttp_set_max_body_size(http, MAX_BODY);
	evhttp_set_max_headers_size(http, MAX_HEADERS);
	/* evhttp's idle timeout must not cut a connect we hold. */
	tv.tv_sec = (time_t)(cli.cfg.connect_timeout_ms / 1000 + 30);
	tv.tv_usec = 0;
	evhttp_set_timeout_tv(http, &tv);
	bound = evhttp_bind_socket_with_handle(http, "127.0.0.1",
	                                       (ev_uint16_t)cli.cfg.port);
	port = bound != NULL ? bound_port(bound) : -1;
	if (port < 0) {
		snprintf(portbuf, sizeof(portbuf), "%d", cli.cfg.port);
		log_error("cannot listen", "address", "127.0.0.1", "port",
		          portbuf, NULL);
		goto out;
	}
	org_set_instance_url(org, port);
	router.cometd = cometd_new(base, org);
	router.rest = rest_new(org, router.cometd);
	router.logs = logs_new(base, NULL);
	if (router.cometd == NULL || router.rest == NULL || router.logs == NULL)
		goto out;
	router.faults = fault_plan_new(base, org, router.cometd);
	if (router.faults == NULL)
		goto out;
	for (i = 0; i < cli.nfaults; i++) {
		if (fault_plan_add_text(router.faults, cli.faults[i], errbuf,
		                        sizeof(errbuf)) < 0) {
			log_error("bad fault", "error", errbuf, NULL);
			goto out;
		}
	}
	cometd_set_faults(router.cometd, router.faults);
	rest_set_faults(router.rest, router.faults);
	evhttp_set_gencb(http, route_cb, &router);

	sigint = evsignal_new(base, SIGINT, stop_cb, base);
	sigterm = evsignal_new(base, SIGTERM, stop_cb, base);
	if (sigint == NULL || sigterm == NULL || event_add(sigint, NULL) != 0 ||
	    event_add(sigterm, NULL) != 0)
		goto out;

	/* Tests read this line to learn the port: exact text, flushed. */
	printf("sfmock listening on %s\n", org_instance_url(org));
	fflush(stdout);
	log_info("listening", "url", org_instance_url(org), "demo",
	         cli.cfg.demo ? "on" : "off", NULL);

	event_base_dispatch(base);
	rc = 0;
out:
	if (sigint != NULL)
		event_free(sigint);
	if (sigterm != NULL)
		event_free(sigterm);
	demo_free(demo);
	/* Before evhttp_free: clears the close callbacks of held requests,
	 * which evhttp then frees with their connections. */
	fault_plan_free(router.faults);
	cometd_free(router.cometd);
	if (http != NULL)
		evhttp_free(http);
	rest_free(router.rest);
	logs_free(router.logs);
	state_close(state);
	org_free(org);
	if (base != NULL)
		event_base_free(base);
	libevent_global_shutdown();
	log_shutdown();
	free(cli.channels);
	return rc;
}
