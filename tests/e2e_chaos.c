/*
 * Chaos: 20,000 sequence-numbered events on three channels, published
 * in random batches while the relay is SIGKILLed at random moments (and
 * restarted), sfmock is restarted on the same port with --state (by
 * SIGTERM and by SIGKILL), and random faults are injected through the
 * fault plan. At the end:
 *   - every event's line was written at least once;
 *   - per channel, the order of first appearance is the publish order;
 *   - every duplicate is an event that was in flight at a kill: past the
 *     checkpoint file, but already written, when the relay was killed;
 *   - the checkpoint was never ahead of what had been written.
 *
 * Deterministic for a seed: CHAOS_SEED overrides the default; the seed
 * is printed first and again on failure. CHAOS_FAULTS, a comma-separated
 * list of fault actions, replaces the default mix (to tell apart which
 * fault a failure comes from).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

#define NCHAN 3
#define TOTAL_EVENTS 20000
#define STEPS 90
#define MIN_KILLS 12
#define MOCK_RESTARTS 3
#define MIN_FAULTS 36
#define DEFAULT_SEED 20261126u
#define TIME_LIMIT_MS 180000

static const char *const channels[NCHAN] = {
    "/topic/ChaosA",
    "/event/Chaos_B__e",
    "/data/AccountChangeEvent",
};
#define CHANNEL_LIST "/topic/ChaosA,/event/Chaos_B__e,/data/AccountChangeEvent"

/* Faults a real org can throw at a client without destroying events
 * (trim_retention does, by design, so it is not here). */
static const char *const default_faults[] = {
    "http_500",
    "http_503",
    "drop",
    "delay",
    "http_401",
    "auth_invalid",
    "expire_tokens",
    "unknown_client",
    "forget_clients",
    "handshake_denied",
    "concurrent_limit",
    "advice_retry",
    "advice_handshake",
    "advice_none",
    "malformed",
    "truncated",
    "drop_after",
};

/* A range of replay ids (lo, hi] of one channel written but not yet
 * checkpointed when the relay was killed. */
struct flight {
	int chan;
	long lo, hi;
};

struct chaos {
	char *dir;
	struct proc mock;
	struct proc relay;
	int port;
	uint64_t seed, rng;
	char out[4096], err[4096], ckpt[4096], statef[4096];
	long published[NCHAN];
	struct flight flights[4 * NCHAN * (MIN_KILLS + 8)];
	size_t nflights;
	/* Line tails a kill cut off: bytes [start, end) of relay.out, which
	 * the next run's first line follows directly. */
	struct {
		size_t start, end;
	} torn[MIN_KILLS + 8];
	size_t ntorn;
	long in_flight; /* lines past the checkpoint at the kills */
	int kills, mock_restarts, faults, fired, relay_exits;
	const char *fault_set[32];
	size_t nfault_set;
	char fault_buf[512];
	char why[512]; /* the first failure found, reported once freed */
	int ok;
};

/* Keeps the first failure; the caller fails once it has freed. */
static void note_failure(struct chaos *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
note_failure(struct chaos *c, const char *fmt, ...)
{
	va_list ap;
	int n;
	if (c->why[0] != '\0')
		return;
	n = snprintf(c->why, sizeof(c->why),
	             "seed %llu: ", (unsigned long long)c->seed);
	va_start(ap, fmt);
	vsnprintf(c->why + n, sizeof(c->why) - (size_t)n, fmt, ap);
	va_end(ap);
}

static void
fail_if_noted(struct chaos *c)
{
	if (c->why[0] != '\0')
		fail_msg("%s", c->why);
}

static uint64_t
rnd(struct chaos *c)
{
	uint64_t z = (c->rng += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static long
below(struct chaos *c, long n)
{
	return (long)(rnd(c) % (uint64_t)n);
}

static int
setup(void **state)
{
	struct chaos *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	const char *s = getenv("CHAOS_SEED");
	c->seed =
	    s != NULL && *s != '\0' ? strtoull(s, NULL, 10) : DEFAULT_SEED;
	c->rng = c->seed;
	c->dir = harness_tmpdir("chaos");
	assert_non_null(c->dir);
	snprintf(c->out, sizeof(c->out), "%s/relay.out", c->dir);
	snprintf(c->err, sizeof(c->err), "%s/relay.err", c->dir);
	snprintf(c->ckpt, sizeof(c->ckpt), "%s/state/checkpoints.json", c->dir);
	snprintf(c->statef, sizeof(c->statef), "%s/mock.state", c->dir);
	const char *set = getenv("CHAOS_FAULTS");
	if (set != NULL && *set != '\0') {
		snprintf(c->fault_buf, sizeof(c->fault_buf), "%s", set);
		char *save = NULL;
		for (char *p = strtok_r(c->fault_buf, ",", &save);
		     p != NULL && c->nfault_set < 32;
		     p = strtok_r(NULL, ",", &save))
			c->fault_set[c->nfault_set++] = p;
	}
	if (c->nfault_set == 0) {
		for (size_t i = 0;
		     i < sizeof(default_faults) / sizeof(default_faults[0]);
		     i++)
			c->fault_set[c->nfault_set++] = default_faults[i];
	}
	print_message("# chaos seed %llu (set CHAOS_SEED to replay)\n",
	              (unsigned long long)c->seed);
	*state = c;
	return 0;
}

static int
teardown(void **state)
{
	struct chaos *c = *state;
	if (!c->ok)
		print_message("# chaos FAILED with seed %llu\n",
		              (unsigned long long)c->seed);
	harness_finish(&c->relay, &c->mock, c->dir, !c->ok);
	free(c);
	return 0;
}

/* Starts sfmock on c->port (0 the first time) with the state file. */
static void
mock_up(struct chaos *c)
{
	char bin[512], log[4200], port[16];
	harness_bin("sfmock", bin, sizeof(bin));
	snprintf(log, sizeof(log), "%s/sfmock.log", c->dir);
	snprintf(port, sizeof(port), "%d", c->port);
	const char *argv[] = {bin,         "--port",
	                      port,        "--channel",
	                      channels[0], "--channel",
	                      channels[1], "--channel",
	                      channels[2], "--state",
	                      c->statef,   "--max-batch",
	                      "200",       "--connect-timeout",
	                      "500",       NULL};
	char line[256];
	int got = -1;
	/* The old socket may linger a moment after a kill. */
	for (int attempt = 0; attempt < 50 && got <= 0; attempt++) {
		assert_int_equal(proc_start(&c->mock, argv, NULL, NULL, log),
		                 0);
		if (proc_read_line(&c->mock, line, sizeof(line), 10000) == 0)
			sscanf(line, "sfmock listening on http://127.0.0.1:%d",
			       &got);
		if (got <= 0) {
			proc_stop(&c->mock, SIGKILL, 2000);
			sleep_ms(100);
		}
	}
	assert_true(got > 0);
	if (c->port == 0)
		c->port = got;
	assert_int_equal(got, c->port);
}

static void
relay_up(struct chaos *c)
{
	const char *env[] = {
	    "SFRELAY_BACKOFF_MIN=50ms",
	    "SFRELAY_BACKOFF_MAX=500ms",
	    "SFRELAY_CHECKPOINT_INTERVAL=100ms",
	    "SFRELAY_REPLAY_FROM=-2",
	    "SFRELAY_LOG_LEVEL=info",
	    NULL,
	};
	assert_int_equal(
	    relay_start(&c->relay, c->dir, c->port, CHANNEL_LIST, env), 0);
}

/* Usually lets the restarted relay subscribe before the chaos goes on,
 * so that most kills land mid-stream even when the relay starts slowly
 * (under valgrind); sometimes not, so that some land during start-up.
 * Faults may keep it from subscribing: the wait is bounded. */
static void
relay_settle(struct chaos *c, int before)
{
	if (below(c, 4) == 0)
		return;
	for (long long end = now_ms() + 5000;
	     now_ms() < end &&
	     file_count(c->err, "msg=subscribed") < before + NCHAN;
	     sleep_ms(10))
		;
}

/* Restarts the relay if it ended on its own (an exit is allowed, e.g.
 * 75 after advice reconnect=none; the dyno manager would restart it). */
static void
relay_check(struct chaos *c)
{
	int st;
	if (c->relay.pid > 0 &&
	    waitpid(c->relay.pid, &st, WNOHANG) == c->relay.pid) {
		c->relay.pid = 0;
		c->relay_exits++;
		print_message("# relay exited on its own (status %d); "
		              "restarted\n",
		              WIFEXITED(st) ? WEXITSTATUS(st)
		                            : 128 + WTERMSIG(st));
		relay_up(c);
	}
}

/* 1 when a line starting at off begins with a tail a kill cut off;
 * *skip gets the tail's length. */
static int
torn_at(const struct chaos *c, size_t off, size_t *skip)
{
	for (size_t i = 0; i < c->ntorn; i++) {
		if (c->torn[i].start == off) {
			*skip = c->torn[i].end - c->torn[i].start;
			return 1;
		}
	}
	return 0;
}

/*
 * The replay ids written per channel: for each line of relay.out, its
 * channel index and replay id. A line cut short by a kill (SIGKILL can
 * stop a write of several pages part way) is no line: the relay never
 * acknowledged it and writes it again; the next run's output follows it
 * on the same line, and is read from where the cut was. A line that is
 * not an event of the test channels, or whose Seq differs from its
 * replay id, is noted as a failure and skipped. Returns the number of
 * lines (arrays malloc'd).
 */
static size_t
read_lines(struct chaos *c, int **chan, long **ids)
{
	size_t len = 0, n = 0, cap = 1024, off = 0, skip;
	char *all = file_read(c->out, &len);
	*chan = malloc(cap * sizeof(int));
	*ids = malloc(cap * sizeof(long));
	assert_true(*chan != NULL && *ids != NULL);
	/* A kill may leave a partial last line; it is not a line yet. */
	while (len > 0 && all[len - 1] != '\n')
		all[--len] = '\0';
	for (; all != NULL && off < len; off += strlen(all + off) + 1) {
		char *l = all + off;
		char *nl = strchr(l, '\n');
		if (nl != NULL)
			*nl = '\0';
		if (torn_at(c, off, &skip))
			l += skip < strlen(l) ? skip : strlen(l);
		if (*l == '\0')
			continue;
		int k = -1;
		for (int i = 0; i < NCHAN; i++) {
			char want[128];
			snprintf(want, sizeof(want), " channel=%s ",
			         channels[i]);
			if (strstr(l, want) != NULL)
				k = i;
		}
		const char *r = strstr(l, " replay_id=");
		const char *s = strstr(l, ".Seq=");
		if (k < 0 || r == NULL || s == NULL) {
			note_failure(c, "unexpected line: %.200s", l);
			continue;
		}
		long id = atol(r + 11), seq = atol(s + 5);
		if (id != seq) {
			note_failure(c, "%s replay id %ld carries Seq %ld",
			             channels[k], id, seq);
			continue;
		}
		if (n == cap) {
			cap *= 2;
			*chan = realloc(*chan, cap * sizeof(int));
			*ids = realloc(*ids, cap * sizeof(long));
			assert_true(*chan != NULL && *ids != NULL);
		}
		(*chan)[n] = k;
		(*ids)[n] = id;
		n++;
	}
	free(all);
	return n;
}

/* The checkpointed replay id of channel i (0 when none). */
static long
checkpointed(struct chaos *c, int i)
{
	struct json_object *o = json_object_from_file(c->ckpt), *p, *e, *v;
	long pos = 0;
	if (o != NULL && json_object_object_get_ex(o, "positions", &p) &&
	    json_object_object_get_ex(p, channels[i], &e) &&
	    json_object_object_get_ex(e, "position", &v))
		pos = atol(json_object_get_string(v));
	json_object_put(o);
	return pos > 0 ? pos : 0;
}

/* SIGKILLs the relay and records what was in flight. */
static void
kill_relay(struct chaos *c)
{
	if (c->relay.pid <= 0)
		return;
	int st = proc_stop(&c->relay, SIGKILL, 5000);
	if (st != 128 + SIGKILL) {
		/* It had exited by itself just before. */
		c->relay_exits++;
	}
	c->kills++;
	int *chan;
	long *ids, written[NCHAN] = {0};
	size_t n = read_lines(c, &chan, &ids), len = 0;
	char *all = file_read(c->out, &len);
	if (all != NULL && len > 0 && all[len - 1] != '\n' &&
	    c->ntorn < sizeof(c->torn) / sizeof(c->torn[0])) {
		size_t start = len;
		while (start > 0 && all[start - 1] != '\n')
			start--;
		c->torn[c->ntorn].start = start;
		c->torn[c->ntorn].end = len;
		c->ntorn++;
	}
	free(all);
	for (size_t i = 0; i < n; i++)
		if (ids[i] > written[chan[i]])
			written[chan[i]] = ids[i];
	free(chan);
	free(ids);
	fail_if_noted(c);
	for (int i = 0; i < NCHAN; i++) {
		long saved = checkpointed(c, i);
		if (saved > written[i])
			fail_msg("seed %llu: checkpoint of %s at %ld is ahead "
			         "of the sink (%ld written)",
			         (unsigned long long)c->seed, channels[i],
			         saved, written[i]);
		if (written[i] > saved &&
		    c->nflights < sizeof(c->flights) / sizeof(c->flights[0])) {
			c->flights[c->nflights++] =
			    (struct flight){i, saved, written[i]};
			c->in_flight += written[i] - saved;
		}
	}
}

static long long
fired_now(struct chaos *c)
{
	char url[128], resp[4096];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_mock/stats", c->port);
	if (http_call("GET", url, NULL, NULL, resp, sizeof(resp)) != 200)
		return 0;
	const char *p = strstr(resp, "\"faults_fired\":");
	return p != NULL ? atoll(p + 15) : 0;
}

static void
restart_mock(struct chaos *c, int sig)
{
	c->fired += (int)fired_now(c);
	int st = proc_stop(&c->mock, sig, 10000);
	assert_int_equal(st, sig == SIGKILL ? 128 + SIGKILL : 0);
	c->mock_restarts++;
	/* Down for a moment: the relay meets refused connections. */
	sleep_ms((int)below(c, 300));
	mock_up(c);
}

/* A random fault rule, as JSON, into buf. */
static void
random_fault(struct chaos *c, char *buf, size_t len)
{
	const char *action = c->fault_set[below(c, (long)c->nfault_set)];
	const char *match = "/meta/connect";
	char extra[64] = "";
	if (strcmp(action, "handshake_denied") == 0 ||
	    strcmp(action, "concurrent_limit") == 0)
		match = "/meta/handshake";
	else if (strcmp(action, "http_500") == 0 ||
	         strcmp(action, "http_503") == 0 ||
	         strcmp(action, "drop") == 0 || strcmp(action, "delay") == 0) {
		static const char *const m[] = {
		    "/meta/connect",   "/meta/connect", "/meta/handshake",
		    "/meta/subscribe", "token",         "cometd"};
		match = m[below(c, 6)];
	} else if (strcmp(action, "http_401") == 0 ||
	           strcmp(action, "auth_invalid") == 0 ||
	           strcmp(action, "unknown_client") == 0) {
		match = below(c, 4) == 0 ? "/meta/subscribe" : "/meta/connect";
	}
	if (strcmp(action, "delay") == 0)
		snprintf(extra, sizeof(extra), ",\"ms\":%ld",
		         20 + below(c, 280));
	else if (strcmp(action, "advice_retry") == 0)
		snprintf(extra, sizeof(extra), ",\"interval\":%ld",
		         below(c, 200));
	snprintf(buf, len,
	         "{\"action\":\"%s\",\"match\":\"%s\",\"nth\":%ld,"
	         "\"count\":%ld%s}",
	         action, match, 1 + below(c, 3), 1 + below(c, 2), extra);
}

static void
inject_fault(struct chaos *c)
{
	char url[128], body[256], resp[512];
	random_fault(c, body, sizeof(body));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_mock/fault", c->port);
	long st = http_call("POST", url, NULL, body, resp, sizeof(resp));
	if (st != 200)
		fail_msg("seed %llu: fault %s refused: %ld %s",
		         (unsigned long long)c->seed, body, st, resp);
	c->faults++;
}

static void
publish_some(struct chaos *c, int steps_left)
{
	/* Spread what is left over the remaining steps, with noise. */
	for (int tries = 0; tries < NCHAN; tries++) {
		int i = (int)below(c, NCHAN);
		long target = TOTAL_EVENTS / NCHAN + (i < TOTAL_EVENTS % NCHAN);
		long left = target - c->published[i];
		if (left <= 0)
			continue;
		long n = steps_left <= 1 ? left
		                         : left * (50 + below(c, 150)) / 100 /
		                               steps_left * NCHAN;
		if (n < 1)
			n = 1;
		if (n > left)
			n = left;
		long st = 0;
		for (int a = 0; a < 3 && st != 200; a++)
			st = mock_publish(c->port, channels[i], (int)n);
		assert_int_equal(st, 200);
		c->published[i] += n;
		return;
	}
}

/* Publishes whatever is left, on every channel. */
static void
publish_rest(struct chaos *c)
{
	for (int i = 0; i < NCHAN; i++) {
		long target = TOTAL_EVENTS / NCHAN + (i < TOTAL_EVENTS % NCHAN);
		if (target > c->published[i]) {
			assert_int_equal(
			    mock_publish(c->port, channels[i],
			                 (int)(target - c->published[i])),
			    200);
			c->published[i] = target;
		}
	}
}

/* Picks k distinct steps out of n into mark (mark[s] += 1 each). */
static void
pick_steps(struct chaos *c, int *mark, int n, int k)
{
	for (int placed = 0, guard = 0; placed < k && guard < 100000; guard++) {
		int s = (int)below(c, n);
		if (mark[s] == 0) {
			mark[s] = 1;
			placed++;
		}
	}
}

static int
in_flight_at_kill(const struct chaos *c, int chan, long id)
{
	for (size_t i = 0; i < c->nflights; i++)
		if (c->flights[i].chan == chan && id > c->flights[i].lo &&
		    id <= c->flights[i].hi)
			return 1;
	return 0;
}

static void
test_chaos(void **state)
{
	struct chaos *c = *state;
	long long t0 = now_ms();
	int kill_at[STEPS] = {0}, restart_at[STEPS] = {0},
	    faults_at[STEPS] = {0};
	pick_steps(c, kill_at, STEPS, MIN_KILLS);
	/* Mock restarts away from the very start and end. */
	pick_steps(c, restart_at + 5, STEPS - 10, MOCK_RESTARTS);
	for (int k = 0; k < MIN_FAULTS; k++)
		faults_at[below(c, STEPS)]++;

	mock_up(c);
	relay_up(c);
	relay_settle(c, 0);
	for (int s = 0; s < STEPS; s++) {
		relay_check(c);
		for (int k = 0; k < faults_at[s]; k++)
			inject_fault(c);
		publish_some(c, STEPS - s);
		/* Let the relay get going, then maybe hit it mid-stream. */
		sleep_ms((int)below(c, 120));
		if (kill_at[s]) {
			kill_relay(c);
			if (below(c, 3) == 0)
				sleep_ms((int)below(c, 200));
			int before = file_count(c->err, "msg=subscribed");
			relay_up(c);
			relay_settle(c, before);
		}
		if (restart_at[s])
			restart_mock(c, c->mock_restarts % 2 == 0 ? SIGKILL
			                                          : SIGTERM);
	}
	publish_rest(c);

	/* Calm: no more faults; wait for every event. */
	char url[128], resp[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_mock/faults", c->port);
	assert_int_equal(
	    http_call("DELETE", url, NULL, NULL, resp, sizeof(resp)), 200);
	long target[NCHAN];
	for (int i = 0; i < NCHAN; i++)
		target[i] = c->published[i];
	int *chan = NULL;
	long *ids = NULL;
	size_t n = 0;
	int done = 0;
	for (long long end = now_ms() + 60000; !done && now_ms() < end;
	     sleep_ms(100)) {
		relay_check(c);
		long max[NCHAN] = {0};
		free(chan);
		free(ids);
		n = read_lines(c, &chan, &ids);
		for (size_t i = 0; i < n; i++)
			if (ids[i] > max[chan[i]])
				max[chan[i]] = ids[i];
		done = 1;
		for (int i = 0; i < NCHAN; i++)
			done &= max[i] >= target[i];
	}
	sleep_ms(300);
	c->fired += (int)fired_now(c);
	assert_int_equal(proc_stop(&c->relay, SIGTERM, 15000), 0);
	free(chan);
	free(ids);
	n = read_lines(c, &chan, &ids);

	/* At least once, first appearances in publish order, duplicates
	 * only from the kills. */
	long next[NCHAN], dups = 0, stray = 0;
	char *seen[NCHAN];
	for (int i = 0; i < NCHAN; i++) {
		next[i] = 1;
		seen[i] = calloc((size_t)target[i] + 2, 1);
		assert_non_null(seen[i]);
	}
	for (size_t k = 0; k < n; k++) {
		int i = chan[k];
		long id = ids[k];
		if (id < 1 || id > target[i]) {
			note_failure(c, "%s replay id %ld out of range",
			             channels[i], id);
			continue;
		}
		if (seen[i][id]) {
			dups++;
			if (!in_flight_at_kill(c, i, id)) {
				stray++;
				if (stray <= 5)
					print_message(
					    "# duplicate not in flight at "
					    "any kill: %s %ld (line %zu)\n",
					    channels[i], id, k + 1);
			}
			continue;
		}
		if (id != next[i])
			note_failure(c,
			             "%s: first appearance of %ld at line %zu, "
			             "expected %ld next",
			             channels[i], id, k + 1, next[i]);
		seen[i][id] = 1;
		next[i] = id > next[i] ? id + 1 : next[i] + 1;
	}
	for (int i = 0; i < NCHAN; i++) {
		long missing = 0;
		for (long id = 1; id <= target[i]; id++)
			missing += !seen[i][id];
		if (missing > 0)
			note_failure(c, "%s: %ld events never written",
			             channels[i], missing);
		if (missing > 0)
			print_message("# %s: %ld of %ld events never written\n",
			              channels[i], missing, target[i]);
		free(seen[i]);
	}
	free(chan);
	free(ids);
	long long wall = now_ms() - t0;
	print_message("# chaos: %d events on %d channels, %zu lines, %ld "
	              "duplicates (%ld lines were in flight at the kills), %d "
	              "relay kills (%zu cut a line short), %d relay exits, %d "
	              "sfmock restarts, %d faults injected (%d fired), %lld "
	              "ms\n",
	              TOTAL_EVENTS, NCHAN, n, dups, c->in_flight, c->kills,
	              c->ntorn, c->relay_exits, c->mock_restarts, c->faults,
	              c->fired, wall);
	fail_if_noted(c);
	assert_int_equal(stray, 0);
	assert_true(dups <= c->in_flight);
	assert_true(c->kills >= 10);
	assert_true(c->mock_restarts >= 2);
	assert_true(c->faults >= 30);
	assert_true(wall < TIME_LIMIT_MS);
	c->ok = 1;
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_chaos, setup, teardown),
	};
	return cmocka_run_group_tests_name("e2e_chaos", tests, NULL, NULL);
}
