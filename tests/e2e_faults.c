/*
 * End to end under faults: sfmock's fault plan makes the fake org
 * misbehave in one precise way per test, and the relay must recover in
 * the documented way, with every event still written exactly once (or,
 * where the fault destroys events on the server, with the loss reported).
 * The mock's traffic log (GET /_mock/messages) gives server-side times
 * and the replay ids each subscribe asked for; /_mock/stats the counters.
 *
 * Also here: the fault plan's own interface (rules, counting, windows,
 * errors) and --state (the org survives SIGKILL and SIGTERM of sfmock).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

#define CH_A "/topic/FaultA"
#define CH_B "/topic/FaultB"
#define CH_MISSING "/topic/FaultMissing"
#define BOTH CH_A "," CH_B
#define WAIT_MS 10000

/* Back-off kept short so a test takes seconds; checkpoints written
 * quickly so a test can wait for them. */
static const char *const fast[] = {
    "SFRELAY_BACKOFF_MIN=50ms",
    "SFRELAY_BACKOFF_MAX=500ms",
    "SFRELAY_CHECKPOINT_INTERVAL=50ms",
    "SFRELAY_REPLAY_FROM=-2",
    NULL,
};

/* sfmock with the test channels, a short long-poll hold (so connects
 * come every 300 ms even without events) and the given extra flags. */
static void
start_mock(struct e2e_fixture *f, const char *const *extra)
{
	const char *flags[40] = {"--channel",         CH_A, "--channel", CH_B,
	                         "--connect-timeout", "300"};
	size_t n = 6;
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 39; i++)
		flags[n++] = extra[i];
	flags[n] = NULL;
	f->port = sfmock_start(&f->mock, f->dir, flags);
	assert_true(f->port > 0);
}

static void
start_relay(struct e2e_fixture *f, const char *channels,
            const char *const *more)
{
	const char *env[32];
	size_t n = 0;
	/* The first occurrence of a name wins: test settings first. */
	for (size_t i = 0; more != NULL && more[i] != NULL && n < 20; i++)
		env[n++] = more[i];
	for (size_t i = 0; fast[i] != NULL; i++)
		env[n++] = fast[i];
	env[n] = NULL;
	assert_int_equal(relay_start(&f->relay, f->dir, f->port, channels, env),
	                 0);
}

static char *
mock_url(const struct e2e_fixture *f, const char *path, char *buf, size_t len)
{
	snprintf(buf, len, "http://127.0.0.1:%d%s", f->port, path);
	return buf;
}

/* Adds a fault rule (JSON); returns its id. */
static int
add_fault(struct e2e_fixture *f, const char *json)
{
	char url[256], resp[512];
	long st =
	    http_call("POST", mock_url(f, "/_mock/fault", url, sizeof(url)),
	              NULL, json, resp, sizeof(resp));
	if (st != 200)
		fail_msg("fault %s refused: %ld %s", json, st, resp);
	const char *id = strstr(resp, "\"id\":");
	assert_non_null(id);
	return atoi(id + 5);
}

/* GETs a mock endpoint and parses it; owned by the caller. */
static struct json_object *
get_json(struct e2e_fixture *f, const char *path)
{
	char url[256];
	size_t cap = 4 * 1024 * 1024;
	char *buf = malloc(cap);
	assert_non_null(buf);
	long st = http_call("GET", mock_url(f, path, url, sizeof(url)), NULL,
	                    NULL, buf, cap);
	assert_int_equal(st, 200);
	struct json_object *o = json_tokener_parse(buf);
	free(buf);
	assert_non_null(o);
	return o;
}

static long long
stat_ll(struct e2e_fixture *f, const char *key)
{
	struct json_object *o = get_json(f, "/_mock/stats"), *v;
	assert_true(json_object_object_get_ex(o, key, &v));
	long long n = json_object_get_int64(v);
	json_object_put(o);
	return n;
}

static void
publish(struct e2e_fixture *f, const char *channel, int n)
{
	assert_int_equal(mock_publish(f->port, channel, n), 200);
}

static size_t
wait_channel(struct e2e_fixture *f, const char *channel, size_t n, int ms)
{
	size_t got = 0;
	for (long long end = now_ms() + ms;
	     (got = file_replay_ids(f->out, channel, NULL, 0)) < n &&
	     now_ms() < end;
	     sleep_ms(20))
		;
	return got;
}

/* Asserts that channel's lines are exactly the replay ids in want[0..n),
 * in that order; on failure says what is missing or repeated. */
static void
expect_ids(const struct e2e_fixture *f, const char *channel, const long *want,
           size_t n)
{
	long got[4096];
	size_t k = file_replay_ids(f->out, channel, got, 4096);
	size_t i;
	for (i = 0; i < k && i < n && got[i] == want[i]; i++)
		;
	if (i == n && k == n)
		return;
	if (i < k && i < n)
		fail_msg("%s: line %zu has replay id %ld, expected %ld "
		         "(%zu lines, %zu expected)",
		         channel, i + 1, got[i], want[i], k, n);
	fail_msg("%s: %zu lines, expected %zu (first %zu match; next "
	         "expected id %ld)",
	         channel, k, n, i, i < n ? want[i] : -1L);
}

/* Exactly once, in order: replay ids 1..n (n at most 4096). */
static void
expect_once(const struct e2e_fixture *f, const char *channel, long n)
{
	static long want[4096];
	assert_true(n <= 4096);
	for (long i = 0; i < n; i++)
		want[i] = i + 1;
	expect_ids(f, channel, want, (size_t)n);
}

/* The checkpointed position of channel, or NULL (owned string). */
static char *
checkpoint_of(const struct e2e_fixture *f, const char *channel)
{
	struct json_object *o = json_object_from_file(f->ckpt), *p, *c, *v;
	char *pos = NULL;
	if (o != NULL && json_object_object_get_ex(o, "positions", &p) &&
	    json_object_object_get_ex(p, channel, &c) &&
	    json_object_object_get_ex(c, "position", &v))
		pos = strdup(json_object_get_string(v));
	json_object_put(o);
	return pos;
}

static void
wait_checkpoint(const struct e2e_fixture *f, const char *channel,
                const char *pos)
{
	for (long long end = now_ms() + WAIT_MS; now_ms() < end; sleep_ms(20)) {
		char *p = checkpoint_of(f, channel);
		int same = p != NULL && strcmp(p, pos) == 0;
		free(p);
		if (same)
			return;
	}
	fail_msg("checkpoint of %s never reached %s", channel, pos);
}

/* The traffic log entries (owned array). */
static struct json_object *
traffic(struct e2e_fixture *f)
{
	return get_json(f, "/_mock/messages");
}

static const char *
jstr(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v)
	                                             : "";
}

static long long
jll(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v)
	                                             : -1;
}

/* Index of the first entry at or after `from` with this kind, channel
 * (NULL: any) and action (NULL: any); -1 when none. */
static int
find_note(struct json_object *log, int from, const char *kind,
          const char *channel, const char *action)
{
	int n = (int)json_object_array_length(log);
	for (int i = from < 0 ? 0 : from; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(log, i);
		if (strcmp(jstr(e, "kind"), kind) == 0 &&
		    (channel == NULL ||
		     strcmp(jstr(e, "channel"), channel) == 0) &&
		    (action == NULL || strcmp(jstr(e, "action"), action) == 0))
			return i;
	}
	return -1;
}

static long long
note_t(struct json_object *log, int i)
{
	return jll(json_object_array_get_idx(log, i), "t");
}

/* The replay id the first subscribe of channel at or after entry `from`
 * asked for ("" when it asked for none); NULL when there was none. */
static const char *
subscribe_replay(struct json_object *log, int from, const char *channel)
{
	int n = (int)json_object_array_length(log);
	for (int i = from < 0 ? 0 : from; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(log, i);
		if (strcmp(jstr(e, "kind"), "in") == 0 &&
		    strcmp(jstr(e, "channel"), "/meta/subscribe") == 0 &&
		    strcmp(jstr(e, "subscription"), channel) == 0)
			return jstr(e, "replay");
	}
	return NULL;
}

/* Position of the n-th (1-based) occurrence of needle in the relay's
 * log, or -1. */
static long
log_pos(const struct e2e_fixture *f, const char *needle, int nth)
{
	char *s = file_read(f->err, NULL);
	long pos = -1;
	char *p = s;
	for (int i = 0; p != NULL && i < nth; i++) {
		p = strstr(p, needle);
		if (p != NULL && i + 1 < nth)
			p++;
	}
	if (p != NULL)
		pos = p - s;
	free(s);
	return pos;
}

/* Relay and mock up, both channels subscribed, `pre` events on each
 * delivered and checkpointed: the relay is idle in a long poll. */
static void
steady(struct e2e_fixture *f, const char *const *mock_flags, int pre,
       const char *const *relay_env)
{
	start_mock(f, mock_flags);
	start_relay(f, BOTH, relay_env);
	assert_int_equal(wait_log(f->dir, "msg=subscribed", 2, WAIT_MS), 0);
	if (pre > 0) {
		char pos[32];
		snprintf(pos, sizeof(pos), "%d", pre);
		publish(f, CH_A, pre);
		publish(f, CH_B, pre);
		assert_int_equal(wait_channel(f, CH_A, (size_t)pre, WAIT_MS),
		                 pre);
		assert_int_equal(wait_channel(f, CH_B, (size_t)pre, WAIT_MS),
		                 pre);
		wait_checkpoint(f, CH_A, pos);
		wait_checkpoint(f, CH_B, pos);
	}
}

/* Stops the relay cleanly; the exit status must be 0. */
static void
stop_relay(struct e2e_fixture *f)
{
	assert_int_equal(proc_stop(&f->relay, SIGTERM, 15000), 0);
}

/* n more events on each channel; once each has total lines (or the
 * wait is over) and a moment for late duplicates, the relay stopped. */
static void
more_then_stop(struct e2e_fixture *f, int n, size_t total)
{
	publish(f, CH_A, n);
	publish(f, CH_B, n);
	wait_channel(f, CH_A, total, WAIT_MS);
	wait_channel(f, CH_B, total, WAIT_MS);
	sleep_ms(100);
	stop_relay(f);
}

/* Index of the last entry of this kind and action, or -1. */
static int
last_note(struct json_object *log, const char *kind, const char *action)
{
	int last = -1;
	for (int i = find_note(log, 0, kind, NULL, action); i >= 0;
	     i = find_note(log, i + 1, kind, NULL, action))
		last = i;
	return last;
}

/*
 * The faults of one shape, as a table. The fault is either a rule added
 * (POST /_mock/fault) once the relay is steady (PRE events per channel
 * delivered and checkpointed), or an sfmock --fault flag at start-up,
 * with the events already published before the relay starts. Either way
 * `events` more per channel then flow, the relay is stopped (exit 0),
 * and afterwards every event is on stdout exactly once and in order, the
 * mock's counters moved as the case says, the relay logged what it
 * says, and the case's own check of the mock's traffic log holds.
 */
#define PRE 20
#define PRE_ID "20" /* the replay id of the last of them */
#define NA (-1)     /* a counter that is not checked */

/* The nth occurrence of text in the relay's log. */
struct log_at {
	const char *text;
	int nth;
};

struct fault_case;
typedef void traffic_check_fn(struct json_object *log,
                              const struct fault_case *c);

struct fault_case {
	const char *name;       /* the test's name */
	const char *rule;       /* JSON rule added once steady, or NULL */
	const char *flag;       /* --fault at start-up, or NULL */
	const char *action;     /* the rule's action (for the traffic check) */
	const char *const *env; /* more relay settings, or NULL */
	const char *max_batch;  /* sfmock --max-batch, or NULL */
	int resubscribe;        /* wait until both channels subscribed again */
	int events;             /* published per channel with the fault */
	int settle_ms;          /* room for late duplicates before the stop */
	/* tokens_issued, handshakes and faults_fired when it is over (for
	 * a rule: how much each moved since the steady state), or NA. */
	long long tokens, handshakes, fired;
	struct log_at logged[2];   /* each of these was logged */
	struct log_at in_order[3]; /* and these, in this order */
	const char *not_logged;    /* this never */
	traffic_check_fn *traffic; /* NULL, or more checks */
};

/*
 * The retried request came no sooner than the back-off minimum (50 ms;
 * 40 allowed for clock granularity) after the last faulted one (after
 * the faulted reply, for faults on replies).
 */
static void
check_backoff_gap(struct json_object *log, const struct fault_case *c)
{
	int anchor = last_note(log, "reply", c->action);
	if (anchor < 0)
		anchor = last_note(log, "fault", c->action);
	assert_true(anchor >= 0);
	int next = find_note(log, anchor + 1, "in", NULL, NULL);
	/* libcurl itself resends, at once, a request whose reused connection
	 * closed without a reply: that is not the relay's retry. */
	if (strcmp(c->action, "drop_after") == 0 && next > anchor &&
	    strcmp(jstr(json_object_array_get_idx(log, next), "channel"),
	           "/meta/connect") == 0)
		next = find_note(log, next + 1, "in", NULL, NULL);
	assert_true(next > anchor);
	long long gap = note_t(log, next) - note_t(log, anchor);
	print_message("# %s: next CometD request %lld ms after the fault\n",
	              c->action, gap);
	assert_true(gap >= 40);
}

/* After the fault both channels were subscribed again from their
 * checkpoints. */
static void
check_resubscribed(struct json_object *log, const struct fault_case *c)
{
	(void)c;
	int fi = find_note(log, 0, "fault", NULL, NULL);
	assert_true(fi >= 0);
	assert_string_equal(subscribe_replay(log, fi, CH_A), PRE_ID);
	assert_string_equal(subscribe_replay(log, fi, CH_B), PRE_ID);
}

/* The same, after a new handshake. */
static void
check_rehandshaken(struct json_object *log, const struct fault_case *c)
{
	int fi = find_note(log, 0, "fault", NULL, NULL);
	assert_true(fi >= 0);
	assert_true(find_note(log, fi, "in", "/meta/handshake", NULL) > fi);
	check_resubscribed(log, c);
}

/* Three refused handshakes, each retry at least the back-off minimum
 * after the one before. */
static void
check_handshakes_spaced(struct json_object *log, const struct fault_case *c)
{
	(void)c;
	int prev = find_note(log, 0, "in", "/meta/handshake", NULL);
	for (int k = 0; k < 3; k++) {
		int next =
		    find_note(log, prev + 1, "in", "/meta/handshake", NULL);
		assert_true(next > prev);
		assert_true(note_t(log, next) - note_t(log, prev) >= 40);
		prev = next;
	}
}

/* The delayed handshake (700 ms) was waited for. */
static void
check_delay_waited(struct json_object *log, const struct fault_case *c)
{
	(void)c;
	int fi = find_note(log, 0, "fault", NULL, "delay");
	int in = find_note(log, fi, "in", "/meta/handshake", NULL);
	assert_true(fi >= 0 && in > fi);
	assert_true(note_t(log, in) - note_t(log, fi) >= 650);
}

/* The retried handshake reached the mock before the delayed one
 * (2500 ms) would have been answered. */
static void
check_delay_abandoned(struct json_object *log, const struct fault_case *c)
{
	(void)c;
	int fi = find_note(log, 0, "fault", NULL, "delay");
	int first = find_note(log, 0, "in", "/meta/handshake", NULL);
	assert_true(fi >= 0 && first > fi);
	assert_true(note_t(log, first) - note_t(log, fi) < 2400);
}

/* From the third connect after the rule is added, count connects get
 * action. */
#define CONNECT_FAULT(action, count)                                           \
	"{\"match\":\"/meta/connect\",\"nth\":3,\"count\":" #count             \
	",\"action\":\"" action "\"}"
#define CONNECT_RULE(action)                                                   \
	"{\"match\":\"/meta/connect\",\"action\":\"" action "\"}"
#define BACKED_OFF "msg=\"stream retrying after back-off\""
#define RENEWED "renewing the token"
#define AUTHED "msg=authenticated"
#define SHAKEN "msg=\"stream handshake done\""
#define SESSION_LOST "msg=\"stream session lost; handshaking again\""

static const char *const short_timeout[] = {"SFRELAY_HTTP_TIMEOUT=1000", NULL};

/* Backed off and retried, while 200 events per channel flow in batches
 * of 10 (so the faulted connects carry events). */
#define RETRY(test, act, count, reason)                                        \
	{                                                                      \
		.name = test, .rule = CONNECT_FAULT(act, count),               \
		.action = act, .max_batch = "10", .events = 200,               \
		.settle_ms = 200, .tokens = NA, .handshakes = NA,              \
		.fired = count, .logged = {{BACKED_OFF, 1}, {reason, 1}},      \
		.traffic = check_backoff_gap                                   \
	}
/* A new token, only then the handshake; both channels resubscribed
 * from their checkpoints. */
#define RENEW(test, act, reason)                                               \
	{                                                                      \
		.name = test, .rule = CONNECT_RULE(act), .resubscribe = 1,     \
		.events = 30, .settle_ms = 200, .tokens = 1, .handshakes = 1,  \
		.fired = NA, .logged = {{reason, 1}},                          \
		.in_order = {{RENEWED, 1}, {AUTHED, 2}, {SHAKEN, 2}},          \
		.traffic = check_resubscribed                                  \
	}
/* A new handshake with the token it has; both channels resubscribed
 * from their checkpoints. */
#define REHANDSHAKE(test, act, reason)                                         \
	{                                                                      \
		.name = test, .rule = CONNECT_RULE(act), .resubscribe = 1,     \
		.events = 30, .settle_ms = 200, .tokens = 0, .handshakes = 1,  \
		.fired = NA, .logged = {{SESSION_LOST, 1}, {reason, 1}},       \
		.traffic = check_rehandshaken                                  \
	}

/* A --fault flag at start-up with n events per channel published, a
 * pause of settle ms before the stop, the three counters, then the
 * case's other fields. */
#define AT_START(test, fault, n, settle, tok, shk, fir, ...)                   \
	{                                                                      \
		.name = test, .flag = fault, .events = n, .settle_ms = settle, \
		.tokens = tok, .handshakes = shk, .fired = fir, __VA_ARGS__    \
	}

static const struct fault_case fault_cases[] = {
    RETRY("test_http_500_backs_off", "http_500", 1,
          "connect answered HTTP 500"),
    RETRY("test_http_503_backs_off", "http_503", 1,
          "connect answered HTTP 503"),
    /* libcurl silently resends a request whose reused connection closed
     * before any reply, so one drop is invisible to the relay; the
     * second (on a fresh connection) is what it sees. */
    RETRY("test_drop_backs_off", "drop", 2, "reason=\"connect failed"),
    RETRY("test_malformed_backs_off", "malformed", 1,
          "connect reply malformed"),
    RETRY("test_truncated_backs_off", "truncated", 1,
          "connect reply malformed"),
    /* The server handed the events out, then the connection closed
     * before the reply: they must not be lost. */
    RETRY("test_reply_lost_backs_off", "drop_after", 1,
          "reason=\"connect failed"),

    /* A refused token in any of its shapes. */
    RENEW("test_http_401_renews_token", "http_401",
          "connect answered HTTP 401"),
    RENEW("test_bayeux_401_renews_token", "auth_invalid",
          "401::Authentication invalid"),
    RENEW("test_expired_tokens_renewed", "expire_tokens",
          "401::Authentication invalid"),
    /* The handshake refused as Salesforce refuses a bad session: 403
     * Handshake denied with failureReason 401::Authentication invalid. */
    AT_START("test_handshake_denied_renews_token",
             "action=handshake_denied,match=/meta/handshake,nth=1", 25, 200, 2,
             2, NA, .logged = {{"403::Handshake denied", 1}},
             .in_order = {{RENEWED, 1}, {AUTHED, 2}}),

    /* The session is gone (403::Unknown client, or the server forgot
     * every client, or it advised a handshake on a successful connect). */
    REHANDSHAKE("test_unknown_client_rehandshakes", "unknown_client",
                "403::Unknown client"),
    REHANDSHAKE("test_forgotten_clients_rehandshake", "forget_clients",
                "403::Unknown client"),
    REHANDSHAKE("test_advice_handshake_rehandshakes", "advice_handshake",
                "reason=\"server advised handshake\""),

    /* The org's concurrent user limit, on the handshake (as Salesforce
     * sends it: 403::Handshake denied, failureReason 403::Organization
     * concurrent user limit exceeded, advice none): not an
     * authentication problem, so no new token; the relay backs off and
     * handshakes again until the limit clears, then events flow. */
    AT_START("test_concurrent_limit_backs_off",
             "action=concurrent_limit,match=/meta/handshake,count=3", 15, 200,
             1, 4, 3,
             .logged = {{"concurrent user limit exceeded", 1}, {BACKED_OFF, 3}},
             .traffic = check_handshakes_spaced),
    /* A slow server inside the relay's request time limit: the relay
     * waits, nothing is retried. */
    AT_START("test_delay_is_waited_for",
             "action=delay,match=/meta/handshake,ms=700", 10, 100, NA, 1, NA,
             .not_logged = "stream retrying after back-off",
             .traffic = check_delay_waited),
    /* A server slower than the relay's time limit (1 s): the relay gives
     * up on the request, backs off and handshakes again. */
    AT_START("test_delay_past_timeout_retries",
             "action=delay,match=/meta/handshake,nth=1,ms=2500", 10, 100, NA,
             NA, NA, .env = short_timeout,
             .logged = {{"reason=\"handshake failed", 1}},
             .traffic = check_delay_abandoned),
    /* The token endpoint unavailable once: back-off, then a token. */
    AT_START("test_token_endpoint_503_backs_off", "action=http_503,match=token",
             5, 0, 1, NA, 1, .logged = {{"stream retrying after back-off", 1}}),
};

/* A counter against the case: now - before must be want (NA: skip). */
static void
expect_moved(struct e2e_fixture *f, const char *key, long long before,
             long long want)
{
	if (want == NA)
		return;
	long long now = stat_ll(f, key);
	if (now - before != want)
		fail_msg("%s: %lld, expected %lld", key, now, before + want);
}

static void
run_fault_case(void **state)
{
	struct e2e_fixture *f = *state;
	const struct fault_case *c = f->param;
	long long tokens = 0, shakes = 0, fired = 0;
	long total = c->events;

	if (c->rule != NULL) {
		const char *batch[] = {"--max-batch", c->max_batch, NULL};
		steady(f, c->max_batch != NULL ? batch : NULL, PRE, c->env);
		tokens = stat_ll(f, "tokens_issued");
		shakes = stat_ll(f, "handshakes");
		fired = stat_ll(f, "faults_fired");
		assert_int_equal(tokens, 1);
		assert_int_equal(fired, 0);
		add_fault(f, c->rule);
		if (c->resubscribe)
			assert_int_equal(
			    wait_log(f->dir, "msg=subscribed", 4, WAIT_MS), 0);
		publish(f, CH_A, c->events);
		publish(f, CH_B, c->events);
		total += PRE;
	} else {
		const char *flags[] = {"--fault", c->flag, NULL};
		start_mock(f, flags);
		publish(f, CH_A, c->events);
		publish(f, CH_B, c->events);
		start_relay(f, BOTH, c->env);
	}
	assert_int_equal(wait_channel(f, CH_A, (size_t)total, WAIT_MS), total);
	assert_int_equal(wait_channel(f, CH_B, (size_t)total, WAIT_MS), total);
	if (c->settle_ms > 0)
		sleep_ms(c->settle_ms);
	stop_relay(f);

	expect_moved(f, "tokens_issued", tokens, c->tokens);
	expect_moved(f, "handshakes", shakes, c->handshakes);
	expect_moved(f, "faults_fired", fired, c->fired);
	for (size_t i = 0; i < 2 && c->logged[i].text != NULL; i++)
		if (log_pos(f, c->logged[i].text, c->logged[i].nth) < 0)
			fail_msg("not logged (%d): %s", c->logged[i].nth,
			         c->logged[i].text);
	long prev = -1;
	for (size_t i = 0; i < 3 && c->in_order[i].text != NULL; i++) {
		long pos = log_pos(f, c->in_order[i].text, c->in_order[i].nth);
		if (pos < 0 || pos <= prev)
			fail_msg("not logged (%d) after the line before: %s",
			         c->in_order[i].nth, c->in_order[i].text);
		prev = pos;
	}
	if (c->not_logged != NULL)
		assert_true(log_pos(f, c->not_logged, 1) < 0);
	if (c->traffic != NULL) {
		struct json_object *log = traffic(f);
		c->traffic(log, c);
		json_object_put(log);
	}
	expect_once(f, CH_A, total);
	expect_once(f, CH_B, total);
	f->ok = 1;
}

/* advice reconnect=retry with an interval: the next connect waits for
 * it (measured on the mock's clock, from the reply to the next
 * request). */
static void
test_advice_interval_honoured(void **state)
{
	struct e2e_fixture *f = *state;
	steady(f, NULL, 5, NULL);
	add_fault(f, "{\"match\":\"/meta/connect\",\"action\":\"advice_retry\","
	             "\"interval\":500}");
	struct json_object *log = NULL;
	int ri = -1, next = -1;
	for (long long end = now_ms() + WAIT_MS; now_ms() < end && next < 0;
	     sleep_ms(50)) {
		json_object_put(log);
		log = traffic(f);
		ri =
		    find_note(log, 0, "reply", "/meta/connect", "advice_retry");
		next = ri >= 0
		           ? find_note(log, ri + 1, "in", "/meta/connect", NULL)
		           : -1;
	}
	assert_true(ri >= 0 && next > ri);
	long long gap = note_t(log, next) - note_t(log, ri);
	print_message("# connect %lld ms after advice interval=500\n", gap);
	assert_true(gap >= 400);
	assert_true(gap < 5000);
	json_object_put(log);
	more_then_stop(f, 10, 15);
	expect_once(f, CH_A, 15);
	expect_once(f, CH_B, 15);
	f->ok = 1;
}

/*
 * advice reconnect=none on a successful connect. The Bayeux spec: the
 * client MUST NOT reconnect (send /meta/connect on that session again).
 * So after it the relay may handshake anew (then events must flow
 * exactly once) or exit with 75 (a temporary failure); sending another
 * connect with the same clientId is the one wrong answer.
 */
static void
test_advice_none_ends_the_session(void **state)
{
	struct e2e_fixture *f = *state;
	steady(f, NULL, 5, NULL);
	add_fault(f,
	          "{\"match\":\"/meta/connect\",\"action\":\"advice_none\"}");
	struct json_object *log = NULL;
	int ri = -1;
	for (long long end = now_ms() + WAIT_MS; now_ms() < end && ri < 0;
	     sleep_ms(50)) {
		json_object_put(log);
		log = traffic(f);
		ri = find_note(log, 0, "reply", "/meta/connect", "advice_none");
	}
	assert_true(ri >= 0);
	json_object_put(log);
	sleep_ms(1500);
	log = traffic(f);
	ri = find_note(log, 0, "reply", "/meta/connect", "advice_none");
	const char *client = jstr(json_object_array_get_idx(log, ri), "client");
	int again = -1;
	for (int i = ri + 1; i < (int)json_object_array_length(log); i++) {
		struct json_object *e = json_object_array_get_idx(log, i);
		if (strcmp(jstr(e, "kind"), "in") == 0 &&
		    strcmp(jstr(e, "channel"), "/meta/connect") == 0 &&
		    strcmp(jstr(e, "client"), client) == 0) {
			again = i;
			break;
		}
	}
	if (again >= 0) {
		char why[256];
		snprintf(why, sizeof(why),
		         "connect sent again on session %s %lld ms after "
		         "advice reconnect=none",
		         client, note_t(log, again) - note_t(log, ri));
		json_object_put(log);
		fail_msg("%s", why);
	}
	int shake = find_note(log, ri, "in", "/meta/handshake", NULL);
	json_object_put(log);
	if (shake < 0) {
		/* No new session: then the relay must have exited 75. */
		assert_int_equal(proc_wait(&f->relay, 5000), 75);
		f->ok = 1;
		return;
	}
	more_then_stop(f, 10, 15);
	expect_once(f, CH_A, 15);
	expect_once(f, CH_B, 15);
	f->ok = 1;
}

/* The line of channel with replay id `id` (owned), or NULL. */
static char *
line_of(const struct e2e_fixture *f, const char *channel, long id)
{
	char *all = file_read(f->out, NULL), *line, *save = NULL, *found = NULL;
	char a[256], b[64];
	snprintf(a, sizeof(a), " channel=%s ", channel);
	snprintf(b, sizeof(b), " replay_id=%ld ", id);
	for (line = all != NULL ? strtok_r(all, "\n", &save) : NULL;
	     line != NULL && found == NULL; line = strtok_r(NULL, "\n", &save))
		if (strstr(line, a) != NULL && strstr(line, b) != NULL)
			found = strdup(line);
	free(all);
	return found;
}

/*
 * Retention trimmed while the relay is down, so its stored replay id
 * is refused with 400::The replayId {N} ...: the relay warns naming the
 * channel, the last id and that event's time, records the gap in the
 * checkpoint file, and resubscribes that channel with -2. The other
 * channel is not affected.
 */
static void
test_invalid_replay_id_is_a_recorded_gap(void **state)
{
	struct e2e_fixture *f = *state;
	steady(f, NULL, 10, NULL);
	stop_relay(f);
	publish(f, CH_A, 20);
	publish(f, CH_B, 20);
	add_fault(f, "{\"match\":\"/meta/subscribe\",\"nth\":1,"
	             "\"action\":\"trim_retention\",\"keep\":5,"
	             "\"channel\":\"" CH_A "\"}");
	start_relay(f, BOTH, NULL);
	wait_channel(f, CH_A, 15, WAIT_MS);
	wait_channel(f, CH_B, 30, WAIT_MS);
	sleep_ms(200);
	stop_relay(f);

	/* The warning names channel, last id and its time. */
	char *line10 = line_of(f, CH_A, 10);
	assert_non_null(line10);
	const char *cr = strstr(line10, " created=");
	assert_non_null(cr);
	char created[64];
	snprintf(created, sizeof(created), "%.*s", (int)strcspn(cr + 9, " "),
	         cr + 9);
	free(line10);
	char *log = file_read(f->err, NULL);
	char *gap = log != NULL ? strstr(log, "msg=\"replay gap") : NULL;
	assert_non_null(gap);
	char *eol = strchr(gap, '\n');
	if (eol != NULL)
		*eol = '\0';
	assert_non_null(strstr(gap, "channel=" CH_A " "));
	assert_non_null(strstr(gap, "last_replay_id=10 "));
	char want[128];
	snprintf(want, sizeof(want), "last_created=%s", created);
	assert_non_null(strstr(gap, want));
	assert_non_null(strstr(gap, "400::The replayId {10}"));
	free(log);

	/* The gap is in the checkpoint file. */
	struct json_object *cp = json_object_from_file(f->ckpt), *gaps, *g0;
	assert_non_null(cp);
	assert_true(json_object_object_get_ex(cp, "gaps", &gaps));
	assert_int_equal(json_object_array_length(gaps), 1);
	g0 = json_object_array_get_idx(gaps, 0);
	assert_string_equal(jstr(g0, "key"), CH_A);
	assert_string_equal(jstr(g0, "after_position"), "10");
	assert_string_equal(jstr(g0, "after_created"), created);
	json_object_put(cp);

	/* Refused with the stored id, then resubscribed with -2. */
	struct json_object *tl = traffic(f);
	int fi = find_note(tl, 0, "fault", NULL, "trim_retention");
	assert_true(fi >= 0);
	assert_string_equal(subscribe_replay(tl, fi, CH_A), "10");
	assert_string_equal(subscribe_replay(tl, fi, CH_B), "10");
	int n = (int)json_object_array_length(tl), seen = 0;
	const char *second = NULL;
	for (int i = fi; i < n && second == NULL; i++) {
		struct json_object *e = json_object_array_get_idx(tl, i);
		if (strcmp(jstr(e, "kind"), "in") == 0 &&
		    strcmp(jstr(e, "subscription"), CH_A) == 0 && seen++ == 1)
			second = jstr(e, "replay");
	}
	assert_non_null(second);
	assert_string_equal(second, "-2");
	json_object_put(tl);

	long want_a[15];
	for (int i = 0; i < 10; i++)
		want_a[i] = i + 1;
	for (int i = 10; i < 15; i++)
		want_a[i] = 16 + i; /* 26..30: what retention kept */
	expect_ids(f, CH_A, want_a, 15);
	expect_once(f, CH_B, 30);
	f->ok = 1;
}

/* One channel the org does not have, among two it has: the refusal is
 * reported and retried beside the long poll while the others stream;
 * once the channel exists the retry succeeds. */
static void
test_failed_subscribe_retried_beside_others(void **state)
{
	struct e2e_fixture *f = *state;
	start_mock(f, NULL);
	start_relay(f, CH_A "," CH_MISSING "," CH_B, NULL);
	assert_int_equal(wait_log(f->dir, "msg=subscribed", 2, WAIT_MS), 0);
	publish(f, CH_A, 20);
	publish(f, CH_B, 20);
	assert_int_equal(wait_channel(f, CH_A, 20, WAIT_MS), 20);
	assert_int_equal(wait_channel(f, CH_B, 20, WAIT_MS), 20);
	/* At least two refused attempts, spaced by the back-off. */
	struct json_object *log = NULL;
	int first = -1, second = -1;
	for (long long end = now_ms() + WAIT_MS; now_ms() < end && second < 0;
	     sleep_ms(50)) {
		json_object_put(log);
		log = traffic(f);
		first = -1;
		second = -1;
		int n = (int)json_object_array_length(log);
		for (int i = 0; i < n && second < 0; i++) {
			struct json_object *e =
			    json_object_array_get_idx(log, i);
			if (strcmp(jstr(e, "kind"), "in") != 0 ||
			    strcmp(jstr(e, "subscription"), CH_MISSING) != 0)
				continue;
			if (first < 0)
				first = i;
			else
				second = i;
		}
	}
	assert_true(first >= 0 && second > first);
	assert_true(note_t(log, second) - note_t(log, first) >= 40);
	json_object_put(log);
	long pos = log_pos(f, "msg=\"subscribe failed", 1);
	assert_true(pos >= 0);
	assert_true(log_pos(f, "channel=" CH_MISSING, 1) >= 0);
	assert_true(log_pos(f, "does not exist", 1) >= 0);

	char url[256], resp[256];
	assert_int_equal(http_call("POST",
	                           mock_url(f,
	                                    "/_mock/declare?channel=%2Ftopic%"
	                                    "2FFaultMissing",
	                                    url, sizeof(url)),
	                           NULL, "", resp, sizeof(resp)),
	                 200);
	assert_int_equal(
	    wait_log(f->dir, "msg=subscribed channel=" CH_MISSING, 1, WAIT_MS),
	    0);
	publish(f, CH_MISSING, 5);
	publish(f, CH_A, 5);
	assert_int_equal(wait_channel(f, CH_MISSING, 5, WAIT_MS), 5);
	wait_channel(f, CH_A, 25, WAIT_MS);
	sleep_ms(100);
	stop_relay(f);
	expect_once(f, CH_MISSING, 5);
	expect_once(f, CH_A, 25);
	expect_once(f, CH_B, 20);
	f->ok = 1;
}

/* POSTs a bare Bayeux message (no token) to the CometD endpoint;
 * returns the HTTP status. */
static long
cometd_post(struct e2e_fixture *f, const char *channel)
{
	char url[256], body[256], resp[1024];
	const char *const hdr[] = {"Content-Type: application/json", NULL};
	snprintf(body, sizeof(body),
	         "[{\"channel\":\"%s\",\"clientId\":\"x\"}]", channel);
	return http_call("POST", mock_url(f, "/cometd/61.0", url, sizeof(url)),
	                 hdr, body, resp, sizeof(resp));
}

/* The fault plan's interface: validation, nth/count counting per meta
 * channel, windows, listing with states, clearing. */
static void
test_fault_plan_interface(void **state)
{
	struct e2e_fixture *f = *state;
	start_mock(f, NULL);
	char url[256], resp[4096];
	const char *bad[] = {
	    "{\"action\":\"explode\"}",
	    "{\"match\":\"/meta/nothing\",\"action\":\"drop\"}",
	    "{\"match\":\"token\",\"action\":\"unknown_client\"}",
	    "{\"match\":\"/meta/connect\",\"action\":\"handshake_denied\"}",
	    "{\"action\":\"delay\",\"ms\":-1}",
	    "{\"action\":\"drop\",\"nth\":0}",
	    "{\"action\":\"drop\",\"colour\":\"red\"}",
	    "{\"action\":\"drop\",\"nth\":true}",
	    "[1,2]",
	    "{\"nth\":2}",
	    "{\"action\":\"drop\"} trailing",
	    "",
	    "{}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		long st = http_call(
		    "POST", mock_url(f, "/_mock/fault", url, sizeof(url)), NULL,
		    bad[i], resp, sizeof(resp));
		if (st != 400 || strstr(resp, "\"error\"") == NULL)
			fail_msg("%s: %ld %s", bad[i], st, resp);
	}
	/* The 2nd and 3rd connect get 500; a handshake is not counted. */
	assert_int_equal(add_fault(f, "{\"match\":\"/meta/connect\",\"nth\":2,"
	                              "\"count\":2,\"action\":\"http_500\"}"),
	                 1);
	assert_int_equal(cometd_post(f, "/meta/connect"), 401);
	assert_int_equal(cometd_post(f, "/meta/handshake"), 401);
	assert_int_equal(cometd_post(f, "/meta/connect"), 500);
	assert_int_equal(cometd_post(f, "/meta/connect"), 500);
	assert_int_equal(cometd_post(f, "/meta/connect"), 401);
	/* A window: every subscribe in the next 400 ms gets 503. */
	assert_int_equal(add_fault(f,
	                           "{\"match\":\"/meta/subscribe\","
	                           "\"for_ms\":400,\"action\":\"http_503\"}"),
	                 2);
	assert_int_equal(cometd_post(f, "/meta/subscribe"), 503);
	assert_int_equal(cometd_post(f, "/meta/subscribe"), 503);
	struct json_object *list = get_json(f, "/_mock/faults");
	assert_int_equal(json_object_array_length(list), 2);
	struct json_object *r1 = json_object_array_get_idx(list, 0);
	struct json_object *r2 = json_object_array_get_idx(list, 1);
	assert_string_equal(jstr(r1, "state"), "done");
	assert_int_equal(jll(r1, "seen"), 3);
	assert_int_equal(jll(r1, "fired"), 2);
	assert_string_equal(jstr(r2, "state"), "active");
	assert_int_equal(jll(r2, "fired"), 2);
	assert_int_equal(jll(r2, "count"), 0);
	json_object_put(list);
	sleep_ms(450);
	assert_int_equal(cometd_post(f, "/meta/subscribe"), 401);
	list = get_json(f, "/_mock/faults");
	assert_string_equal(jstr(json_object_array_get_idx(list, 1), "state"),
	                    "done");
	json_object_put(list);
	assert_int_equal(stat_ll(f, "faults_fired"), 4);
	/* A drop closes the connection without any reply. */
	add_fault(f, "{\"action\":\"drop\"}");
	assert_int_equal(cometd_post(f, "/meta/connect"), 0);
	assert_int_equal(
	    http_call("DELETE", mock_url(f, "/_mock/faults", url, sizeof(url)),
	              NULL, NULL, resp, sizeof(resp)),
	    200);
	assert_non_null(strstr(resp, "\"cleared\":3"));
	list = get_json(f, "/_mock/faults");
	assert_int_equal(json_object_array_length(list), 0);
	json_object_put(list);
	assert_int_equal(cometd_post(f, "/meta/connect"), 401);
	assert_int_equal(
	    http_call("PUT", mock_url(f, "/_mock/faults", url, sizeof(url)),
	              NULL, NULL, resp, sizeof(resp)),
	    405);
	f->ok = 1;
}

/* Bad --fault and --state arguments are refused at start-up. */
static void
test_bad_flags_refused(void **state)
{
	struct e2e_fixture *f = *state;
	char bin[512], log[4200], path[4200];
	harness_bin("sfmock", bin, sizeof(bin));
	snprintf(log, sizeof(log), "%s/flags.log", f->dir);
	const char *specs[] = {"action=drop,nth=0", "nth=2", "action",
	                       "action=advice_none,match=token",
	                       "action=drop,bogus=1"};
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		const char *argv[] = {bin, "--fault", specs[i], NULL};
		struct proc p;
		assert_int_equal(proc_start(&p, argv, NULL, NULL, log), 0);
		assert_int_equal(proc_wait(&p, 5000), 64);
	}
	assert_true(file_contains(log, "--fault action=drop,nth=0: nth:"));

	/* A state file that is not one: refused, and left as it was. */
	snprintf(path, sizeof(path), "%s/state.jsonl", f->dir);
	FILE *s = fopen(path, "w");
	assert_non_null(s);
	fputs("{\"sfmock_state\":1}\n{\"ev\":\"/topic/Nope\",\"id\":1}\n", s);
	fclose(s);
	const char *argv[] = {bin, "--state", path, NULL};
	struct proc p;
	assert_int_equal(proc_start(&p, argv, NULL, NULL, log), 0);
	assert_int_not_equal(proc_wait(&p, 5000), 0);
	assert_true(file_contains(log, "state.jsonl:2: bad event record"));
	assert_true(file_contains(path, "/topic/Nope"));
	f->ok = 1;
}

/* sfmock killed (SIGKILL) or stopped (SIGTERM) and restarted with the
 * same --state on the same port: channels, replay ids, retained events
 * and tokens are all there; the relay only has to handshake again. */
static void
test_state_restart(void **state)
{
	struct e2e_fixture *f = *state;
	const int sig = *(const int *)f->param;
	char statef[4200], port[16];
	snprintf(statef, sizeof(statef), "%s/mock.state", f->dir);
	const char *flags[] = {"--state", statef, NULL};
	steady(f, flags, 30, NULL);
	publish(f, CH_A, 20);
	publish(f, CH_B, 20);
	wait_channel(f, CH_A, 50, WAIT_MS);
	assert_int_equal(proc_stop(&f->mock, sig, 5000),
	                 sig == SIGKILL ? 128 + SIGKILL : 0);

	snprintf(port, sizeof(port), "%d", f->port);
	char bin[512], log[4200];
	harness_bin("sfmock", bin, sizeof(bin));
	snprintf(log, sizeof(log), "%s/sfmock2.log", f->dir);
	const char *argv[] = {
	    bin,  "--port",  port,   "--channel",         CH_A,  "--channel",
	    CH_B, "--state", statef, "--connect-timeout", "300", NULL};
	assert_int_equal(proc_start(&f->mock, argv, NULL, NULL, log), 0);
	char line[256];
	assert_int_equal(proc_read_line(&f->mock, line, sizeof(line), 10000),
	                 0);
	struct json_object *st = get_json(f, "/_mock/stats"), *chs, *a;
	assert_true(json_object_object_get_ex(st, "channels", &chs));
	assert_true(json_object_object_get_ex(chs, CH_A, &a));
	assert_int_equal(jll(a, "latest_replay_id"), 50);
	assert_int_equal(jll(a, "published"), 50);
	assert_int_equal(jll(a, "retained"), 50);
	json_object_put(st);
	/* New events continue the numbering. */
	more_then_stop(f, 10, 60);
	/* The old token was still good: a new session, no new token. */
	assert_int_equal(stat_ll(f, "tokens_issued"), 0);
	assert_true(log_pos(f, "renewing the token", 1) < 0);
	assert_true(stat_ll(f, "handshakes") >= 1);
	expect_once(f, CH_A, 60);
	expect_once(f, CH_B, 60);
	f->ok = 1;
}

static int
setup(void **state)
{
	return e2e_setup(state, "faults");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, e2e_teardown)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A table's case as a cmocka test of its own name: the case is the
 * test's initial state, e2e_setup() hands it on as the fixture's param. */
static struct CMUnitTest
case_test(const char *name, CMUnitTestFunction fn, const void *param)
{
	struct CMUnitTest t = {name, fn, setup, e2e_teardown,
	                       (void *)(uintptr_t)param};
	return t;
}

int
main(void)
{
	static const int sigkill = SIGKILL, sigterm = SIGTERM;
	const struct CMUnitTest plain[] = {
	    T(test_fault_plan_interface),
	    T(test_bad_flags_refused),
	    T(test_advice_interval_honoured),
	    T(test_advice_none_ends_the_session),
	    T(test_invalid_replay_id_is_a_recorded_gap),
	    T(test_failed_subscribe_retried_beside_others),
	};
	struct CMUnitTest tests[ARRAY_LEN(plain) + ARRAY_LEN(fault_cases) + 2];
	size_t n = 0;

	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < ARRAY_LEN(plain); i++)
		tests[n++] = plain[i];
	for (size_t i = 0; i < ARRAY_LEN(fault_cases); i++)
		tests[n++] = case_test(fault_cases[i].name, run_fault_case,
		                       &fault_cases[i]);
	tests[n++] = case_test("test_state_survives_sigkill",
	                       test_state_restart, &sigkill);
	tests[n++] = case_test("test_state_survives_sigterm",
	                       test_state_restart, &sigterm);
	return cmocka_run_group_tests_name("e2e_faults", tests, NULL, NULL);
}
