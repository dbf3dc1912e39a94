/*
 * End to end, authentication: every flow against sfmock (which verifies
 * JWT assertions for real), the flow inferred from the variables set,
 * refused credentials (exit 77 with Salesforce's description, no secret
 * in any output), the static token that cannot be renewed, tokens that
 * expire mid-stream (nothing lost, nothing twice, one renewal per
 * expiry), a token endpoint that goes away during a renewal, and
 * `sfrelay --check`. Keys and certificates are made at run time.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "harness.h"

#define TOPIC "/topic/AuthAccounts"
#define TOPIC2 "/topic/AuthOther"
#define CLIENT_ID "sfmock-client-id"
#define CLIENT_SECRET "sfmock-client-secret"
#define USERNAME "relay@sfmock.test"
#define PASSWORD "sfmock-password"
#define REFRESH "5Aep861e2e-refresh-token"
/* Every access token sfmock issues starts with this. */
#define TOKEN_PREFIX "00Dxx0000001gPL!"

/* Made once: the connected app's key pair and a stranger's. */
struct keys {
	char dir[64];
	char *pem;            /* the private key, PEM text */
	char key_path[128];   /* the same, in a file */
	char cert_path[128];  /* its self-signed certificate */
	char pub_path[128];   /* its public key */
	char other_path[128]; /* the certificate of another key */
	char key_lines[3][80]; /* lines of the key's body: must never show */
};

/* Each test's initial state: where the keys are kept once made, and the
 * table case the test runs (NULL for the others). */
struct auth_case;
struct auth_arg {
	struct keys **keys;
	const struct auth_case *c;
};

struct fixture {
	struct e2e_fixture e; /* dir, mock, relay, port, out, err, ok */
	struct keys *keys;
	const struct auth_case *c; /* from struct auth_arg */
	struct proc fwd; /* the token endpoint's forwarder, when used */
	char base[64];
};

/* --- keys ----------------------------------------------------------- */

static char *
bio_text(BIO *b)
{
	char *data;
	long n = BIO_get_mem_data(b, &data);
	char *s = strndup(data, (size_t)n);
	BIO_free(b);
	assert_non_null(s);
	return s;
}

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
write_cert(EVP_PKEY *pkey, const char *path)
{
	X509 *x = X509_new();
	assert_non_null(x);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pkey);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
				   (const unsigned char *)"sfrelay e2e", -1,
				   -1, 0);
	X509_set_issuer_name(x, n);
	assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, x);
	X509_free(x);
	char *text = bio_text(b);
	write_text(path, text);
	free(text);
}

/* The keys, made once for the whole run (by the first test's setup,
 * where cmocka's assertions may fail). Owned: keys_free(). */
static struct keys *
keys_make(void)
{
	struct keys *k = calloc(1, sizeof(*k));
	assert_non_null(k);
	snprintf(k->dir, sizeof(k->dir), "/tmp/sfrelay-e2e-keys-XXXXXX");
	assert_non_null(mkdtemp(k->dir));
	EVP_PKEY *pkey = EVP_RSA_gen(2048), *other = EVP_RSA_gen(2048);
	assert_non_null(pkey);
	assert_non_null(other);
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL);
	k->pem = bio_text(b);
	snprintf(k->key_path, sizeof(k->key_path), "%s/server.key", k->dir);
	write_text(k->key_path, k->pem);
	chmod(k->key_path, 0600);
	snprintf(k->cert_path, sizeof(k->cert_path), "%s/server.crt", k->dir);
	write_cert(pkey, k->cert_path);
	snprintf(k->other_path, sizeof(k->other_path), "%s/other.crt",
		 k->dir);
	write_cert(other, k->other_path);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(b, pkey);
	char *pub = bio_text(b);
	snprintf(k->pub_path, sizeof(k->pub_path), "%s/server.pub", k->dir);
	write_text(k->pub_path, pub);
	free(pub);
	/* Lines 2, 10 and 20 of the key: fragments that must never show. */
	const char *p = k->pem;
	for (int line = 0, taken = 0; *p != '\0' && taken < 3; line++) {
		size_t n = strcspn(p, "\n");
		if ((line == 2 || line == 10 || line == 20) && n < 80) {
			memcpy(k->key_lines[taken], p, n);
			k->key_lines[taken++][n] = '\0';
		}
		p += n + (p[n] == '\n');
	}
	EVP_PKEY_free(pkey);
	EVP_PKEY_free(other);
	return k;
}

/* NULL is a no-op. */
static void
keys_free(struct keys *k)
{
	if (k == NULL)
		return;
	unlink(k->key_path);
	unlink(k->cert_path);
	unlink(k->pub_path);
	unlink(k->other_path);
	rmdir(k->dir);
	free(k->pem);
	free(k);
}

/* --- processes -------------------------------------------------------- */

static int
setup(void **state)
{
	const struct auth_arg *a = *state;
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	if (*a->keys == NULL)
		*a->keys = keys_make();
	f->keys = *a->keys;
	f->c = a->c;
	assert_int_equal(e2e_fixture_init(&f->e, "e2e-auth"), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	if (f->e.relay.pid > 0)
		proc_stop(&f->e.relay, SIGKILL, 5000);
	if (f->fwd.pid > 0)
		proc_stop(&f->fwd, SIGKILL, 5000);
	char state_dir[4200];
	snprintf(state_dir, sizeof(state_dir), "%s/state", f->e.dir);
	harness_rmdir(state_dir, !f->e.ok);
	harness_finish(&f->e.relay, &f->e.mock, f->e.dir, !f->e.ok);
	free(f);
	return 0;
}

/* sfmock with the test channels, the certificate and extra flags. */
static void
mock_start(struct fixture *f, const char *cert, const char *const *extra)
{
	const char *flags[32] = {"--channel", TOPIC, "--channel", TOPIC2,
				 "--refresh-token", REFRESH, "--log-level",
				 "debug"};
	size_t n = 8;
	if (cert != NULL) {
		flags[n++] = "--jwt-cert";
		flags[n++] = cert;
	}
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 30; i++)
		flags[n++] = extra[i];
	flags[n] = NULL;
	f->e.port = sfmock_start(&f->e.mock, f->e.dir, flags);
	assert_true(f->e.port > 0);
	snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d", f->e.port);
}

static char *
kv(const char *k, const char *v)
{
	size_t n = strlen(k) + strlen(v) + 2;
	char *s = malloc(n);
	assert_non_null(s);
	snprintf(s, n, "%s=%s", k, v);
	return s;
}

/*
 * Starts sfrelay (with --check when check is set) with vars ("K=V",
 * NULL-terminated; they win over the defaults: the mock's login URL,
 * TOPIC, a state dir, debug logs, 50 ms back-off). stdout goes to
 * relay.out, stderr to relay.err.
 */
static void
relay_run(struct fixture *f, int check, const char *const *vars)
{
	char bin[512], state[4200], login[128];
	harness_bin("sfrelay", bin, sizeof(bin));
	snprintf(state, sizeof(state), "SFRELAY_STATE_DIR=%s/state", f->e.dir);
	snprintf(login, sizeof(login), "SFDC_LOGIN_URL=%s", f->base);
	const char *defaults[] = {login, state, "SFRELAY_CHANNELS=" TOPIC,
				  "SFRELAY_LOG_LEVEL=debug",
				  "SFRELAY_BACKOFF_MIN=50ms"};
	const char *env[48];
	size_t n = 0;
	for (size_t i = 0; vars != NULL && vars[i] != NULL && n < 40; i++)
		env[n++] = vars[i];
	/* A default only for what vars leaves out: no name twice (valgrind
	 * does not keep the first of two). */
	size_t nvars = n;
	for (size_t d = 0; d < sizeof(defaults) / sizeof(defaults[0]); d++) {
		size_t len = strcspn(defaults[d], "=") + 1, i;
		for (i = 0; i < nvars; i++)
			if (strncmp(env[i], defaults[d], len) == 0)
				break;
		if (i == nvars)
			env[n++] = defaults[d];
	}
	env[n] = NULL;
	const char *argv[] = {bin, check ? "--check" : NULL, NULL};
	assert_int_equal(proc_start(&f->e.relay, argv, env, f->e.out, f->e.err),
	                 0);
}

static void
wait_subscribed(struct fixture *f, int n)
{
	if (wait_log(f->e.dir, "msg=subscribed", n, 15000) != 0)
		fail_msg("relay did not subscribe; see %s", f->e.err);
	sleep_ms(100); /* let the long poll be held */
}

/* Publishes count events on TOPIC (numbered by the mock from 1). */
static void
publish(struct fixture *f, int count)
{
	assert_int_equal(mock_publish(f->e.port, TOPIC, count), 200);
}

static long
stat_of(struct fixture *f, const char *key)
{
	char url[128], resp[8192];
	snprintf(url, sizeof(url), "%s/_mock/stats", f->base);
	assert_int_equal(http_call("GET", url, NULL, NULL, resp, sizeof(resp)),
			 200);
	struct json_object *o = json_tokener_parse(resp), *v;
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, key, &v));
	long n = (long)json_object_get_int64(v);
	json_object_put(o);
	return n;
}

/* Every TOPIC event 1..n is in relay.out exactly once, and nothing
 * else. */
static void
assert_exactly_once(struct fixture *f, int n)
{
	char *all = file_read(f->e.out, NULL);
	assert_non_null(all);
	int *seen = calloc((size_t)n + 1, sizeof(int));
	int lines = 0;
	for (char *save = NULL, *l = strtok_r(all, "\n", &save); l != NULL;
	     l = strtok_r(NULL, "\n", &save), lines++) {
		char *p = strstr(l, " sobject.Seq=");
		assert_non_null(p);
		int seq = atoi(p + strlen(" sobject.Seq="));
		if (seq < 1 || seq > n)
			fail_msg("unexpected event %d", seq);
		seen[seq]++;
	}
	for (int i = 1; i <= n; i++)
		if (seen[i] != 1)
			fail_msg("event %d delivered %d times", i, seen[i]);
	assert_int_equal(lines, n);
	free(seen);
	free(all);
}

/* No credential of any flow, no access token, no piece of the key in
 * what the relay wrote. */
static void
assert_no_secrets(struct fixture *f, const char *const *extra)
{
	const char *files[] = {f->e.out, f->e.err};
	const char *fixed[] = {CLIENT_SECRET, PASSWORD, REFRESH, TOKEN_PREFIX,
			       f->keys->key_lines[0], f->keys->key_lines[1],
			       f->keys->key_lines[2]};
	for (size_t i = 0; i < 2; i++) {
		for (size_t j = 0; j < sizeof(fixed) / sizeof(fixed[0]); j++)
			if (fixed[j][0] != '\0' &&
			    file_contains(files[i], fixed[j]))
				fail_msg("%s shows %s", files[i], fixed[j]);
		for (size_t j = 0; extra != NULL && extra[j] != NULL; j++)
			if (file_contains(files[i], extra[j]))
				fail_msg("%s shows %s", files[i], extra[j]);
	}
}

/* Runs the relay with vars, streams 20 events, stops it: every event
 * once, the flow as expected, one token. */
static void
stream_with(struct fixture *f, const char *const *vars, const char *flow,
	    const char *chosen_by)
{
	char want[64];
	relay_run(f, 0, vars);
	wait_subscribed(f, 1);
	publish(f, 12);
	publish(f, 8);
	assert_int_equal(wait_lines(f->e.dir, 20, 15000), 20);
	sleep_ms(200);
	assert_int_equal(proc_stop(&f->e.relay, SIGTERM, 20000), 0);
	assert_exactly_once(f, 20);
	snprintf(want, sizeof(want), "msg=authentication flow=%s chosen_by=%s",
		 flow, chosen_by);
	if (!file_contains(f->e.err, want))
		fail_msg("no \"%s\" in %s", want, f->e.err);
	assert_int_equal(stat_of(f, "tokens_issued"), 1);
	assert_no_secrets(f, NULL);
}

/* Gets a token from the mock the way an admin would hand one over. */
static void
fetch_token(struct fixture *f, char *token, size_t len)
{
	char url[128], resp[4096];
	snprintf(url, sizeof(url), "%s/services/oauth2/token", f->base);
	assert_int_equal(
		http_call("POST", url, NULL,
			  "grant_type=client_credentials&client_id=" CLIENT_ID
			  "&client_secret=" CLIENT_SECRET,
			  resp, sizeof(resp)),
		200);
	struct json_object *o = json_tokener_parse(resp), *v;
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "access_token", &v));
	snprintf(token, len, "%s", json_object_get_string(v));
	json_object_put(o);
}

/* The static token streams; once it is refused the relay exits 77 and
 * says it cannot be renewed. */
static void
test_static_token_refused_exits_77(void **state)
{
	struct fixture *f = *state;
	char token[256], url[128];
	mock_start(f, NULL, NULL);
	fetch_token(f, token, sizeof(token));
	char *tv = kv("SFDC_ACCESS_TOKEN", token);
	char *iv = kv("SFDC_INSTANCE_URL", f->base);
	const char *vars[] = {tv, iv, NULL};
	relay_run(f, 0, vars);
	wait_subscribed(f, 1);
	publish(f, 5);
	assert_int_equal(wait_lines(f->e.dir, 5, 10000), 5);
	assert_true(file_contains(f->e.err, "flow=token chosen_by=inferred"));
	snprintf(url, sizeof(url), "%s/_mock/revoke-tokens", f->base);
	assert_int_equal(http_call("POST", url, NULL, "", NULL, 0), 200);
	assert_int_equal(proc_wait(&f->e.relay, 10000), 77);
	assert_true(file_contains(f->e.err, "cannot be renewed"));
	assert_true(file_contains(f->e.err, "SFDC_ACCESS_TOKEN"));
	/* It never asked for another token. */
	assert_int_equal(stat_of(f, "tokens_issued"), 1);
	assert_exactly_once(f, 5);
	const char *extra[] = {token, NULL};
	assert_no_secrets(f, extra);
	free(tv);
	free(iv);
	f->e.ok = 1;
}

/* --- refused credentials --------------------------------------------------- */

/* The relay exits 77, stderr has Salesforce's error description, no
 * event line is written and no secret shows. */
static void
refused(struct fixture *f, const char *const *vars, const char *desc,
	const char *const *secrets)
{
	relay_run(f, 0, vars);
	assert_int_equal(proc_wait(&f->e.relay, 15000), 77);
	if (!file_contains(f->e.err, desc))
		fail_msg("no \"%s\" in %s", desc, f->e.err);
	assert_int_equal(file_count_lines(f->e.out), 0);
	assert_no_secrets(f, secrets);
}

/* --- each flow, as a table ------------------------------------------------ */

/* What the mock's connected app holds for JWT. */
enum app_cert {
	CERT_NONE,
	CERT_OWN,    /* the certificate of the relay's key */
	CERT_PUBKEY, /* the bare public key */
	CERT_OTHER,  /* another key's certificate */
};

/* How the relay is given its key. */
enum key_var {
	KEY_NONE,
	KEY_PEM,  /* SFDC_JWT_KEY, the PEM text */
	KEY_FILE, /* SFDC_JWT_KEY_FILE */
};

/*
 * One set of credentials and its outcome, by what the case sets:
 *   flow      the relay streams (stream_with(): every event once, the
 *             flow logged as chosen, one token, no secret);
 *   refusal   it is refused (refused(): exit 77 with Salesforce's
 *             description, no event line, no secret);
 *   channels  `sfrelay --check` with these channels fails (exit 1),
 *             printing want, showing no secret, and the mock's counters
 *             are then as stats says.
 */
struct auth_case {
	const char *name; /* the test's name */
	enum app_cert cert;
	enum key_var key;
	const char *vars[6];   /* the other settings, NULL-terminated */
	const char *flow;      /* streams: the flow logged ... */
	const char *chosen_by; /* ... and what chose it */
	const char *refusal;   /* or: refused with this description */
	const char *channels;  /* or: --check with these channels */
	const char *want[7];   /* its relay.out lines, in order (prefixes) */
	int anywhere;          /* or each somewhere, and no other line */
	struct {
		const char *key;
		long value;
	} stats[2];         /* mock counters afterwards (key NULL: none) */
	const char *also;   /* NULL, or another text relay.err must hold */
	const char *secret; /* NULL, or a setting that must never show */
};

static const struct auth_case auth_cases[] = {
    {.name = "test_jwt_key_in_variable",
     .cert = CERT_OWN,
     .key = KEY_PEM,
     .vars = {"SFDC_CLIENT_ID=" CLIENT_ID, "SFDC_USERNAME=" USERNAME},
     .flow = "jwt",
     .chosen_by = "inferred"},
    {.name = "test_jwt_key_file",
     .cert = CERT_PUBKEY,
     .key = KEY_FILE,
     .vars = {"SFDC_AUTH=jwt", "SFDC_CLIENT_ID=" CLIENT_ID,
              "SFDC_USERNAME=" USERNAME},
     .flow = "jwt",
     .chosen_by = "SFDC_AUTH"},
    {.name = "test_client_credentials",
     .vars = {"SFDC_AUTH=client_credentials", "SFDC_CLIENT_ID=" CLIENT_ID,
              "SFDC_CLIENT_SECRET=" CLIENT_SECRET},
     .flow = "client_credentials",
     .chosen_by = "SFDC_AUTH"},
    /* No secret: optional with this grant. */
    {.name = "test_refresh_token",
     .vars = {"SFDC_CLIENT_ID=" CLIENT_ID, "SFDC_REFRESH_TOKEN=" REFRESH},
     .flow = "refresh_token",
     .chosen_by = "inferred"},
    {.name = "test_password",
     .vars = {"SFDC_AUTH=password", "SFDC_CLIENT_ID=" CLIENT_ID,
              "SFDC_CLIENT_SECRET=" CLIENT_SECRET, "SFDC_USERNAME=" USERNAME,
              "SFDC_PASSWORD=" PASSWORD},
     .flow = "password",
     .chosen_by = "SFDC_AUTH"},
    /* The connected app holds another key's certificate. */
    {.name = "test_jwt_wrong_key_exits_77",
     .cert = CERT_OTHER,
     .key = KEY_PEM,
     .vars = {"SFDC_CLIENT_ID=" CLIENT_ID, "SFDC_USERNAME=" USERNAME},
     .refusal = "invalid_grant: invalid assertion"},
    {.name = "test_jwt_unapproved_user_exits_77",
     .cert = CERT_OWN,
     .key = KEY_FILE,
     .vars = {"SFDC_CLIENT_ID=" CLIENT_ID,
              "SFDC_USERNAME=someone.else@sfmock.test"},
     .refusal = "user hasn't approved this consumer",
     .also = "pre-authorized"},
    {.name = "test_wrong_secret_exits_77",
     .vars = {"SFDC_CLIENT_ID=" CLIENT_ID,
              "SFDC_CLIENT_SECRET=wrong-secret-0000"},
     .refusal = "invalid client credentials",
     .also = "flow=client_credentials",
     .secret = "wrong-secret-0000"},
    {.name = "test_wrong_refresh_token_exits_77",
     .vars = {"SFDC_CLIENT_ID=" CLIENT_ID, "SFDC_CLIENT_SECRET=" CLIENT_SECRET,
              "SFDC_REFRESH_TOKEN=5Aep-revoked-refresh-1111"},
     .refusal = "expired access/refresh token",
     .secret = "5Aep-revoked-refresh-1111"},
    /* --check runs that fail. */
    /* One session, and the check left it (/meta/disconnect). */
    {.name = "test_check_bad_channel",
     .cert = CERT_OWN,
     .key = KEY_FILE,
     .channels = TOPIC ",/topic/NoSuchTopic",
     .vars = {"SFDC_CLIENT_ID=" CLIENT_ID, "SFDC_USERNAME=" USERNAME},
     .want = {"ok   configuration: jwt flow",
              "ok   authentication: jwt flow as " USERNAME,
              "ok   streaming handshake: ",
              "ok   subscribe " TOPIC ": subscribed",
              "FAIL subscribe /topic/NoSuchTopic: 400::The channel you "
              "requested to subscribe to does not exist {/topic/NoSuchTopic}"},
     .stats = {{"handshakes", 1}, {"clients", 0}}},
    /* Each polled object's query runs once, with LIMIT 1. */
    {.name = "test_check_poll_queries",
     .channels = TOPIC,
     .vars = {"SFDC_CLIENT_ID=" CLIENT_ID, "SFDC_CLIENT_SECRET=" CLIENT_SECRET,
              "SFRELAY_POLL=SetupAuditTrail@1m,Nothing__c"},
     .want = {"ok   configuration: client_credentials flow (inferred from the "
              "variables set), 1 channel, 2 polled objects",
              "ok   authentication: client_credentials flow",
              "ok   streaming handshake: ",
              "ok   subscribe " TOPIC ": subscribed",
              "ok   poll SetupAuditTrail: query accepted",
              "FAIL poll Nothing__c: INVALID_TYPE: sObject type 'Nothing__c' "
              "is not supported."}},
    {.name = "test_check_bad_credentials",
     .channels = TOPIC,
     .vars = {"SFDC_CLIENT_ID=" CLIENT_ID,
              "SFDC_CLIENT_SECRET=not-the-secret-2222"},
     .want = {"ok   configuration: client_credentials flow",
              "FAIL authentication: token endpoint answered HTTP 400: "
              "invalid_client: invalid client credentials"},
     .secret = "not-the-secret-2222",
     .stats = {{"handshakes", 0}}},
    /* Every problem of the configuration, each naming its variable. */
    {.name = "test_check_bad_configuration",
     .channels = "/nowhere/X",
     .vars = {"SFDC_AUTH=password", "SFDC_CLIENT_ID=" CLIENT_ID,
              "SFDC_PASSWORD=" PASSWORD},
     .want = {"FAIL configuration: SFRELAY_CHANNELS: \"/nowhere/X\"",
              "FAIL configuration: SFDC_CLIENT_SECRET: required, not set",
              "FAIL configuration: SFDC_USERNAME: required, not set"},
     .anywhere = 1,
     .stats = {{"tokens_issued", 0}}},
};

/* Starts the mock holding cert for JWT; returns the variable giving the
 * relay its key (owned), or NULL for KEY_NONE. */
static char *
case_start(struct fixture *f, enum app_cert cert, enum key_var key)
{
	const char *certs[] = {NULL, f->keys->cert_path, f->keys->pub_path,
	                       f->keys->other_path};
	mock_start(f, certs[cert], NULL);
	if (key == KEY_PEM)
		return kv("SFDC_JWT_KEY", f->keys->pem);
	if (key == KEY_FILE)
		return kv("SFDC_JWT_KEY_FILE", f->keys->key_path);
	return NULL;
}

/* vars, then key when not NULL, into out (room for max, NULL-ended). */
static void
case_vars(const char *const *vars, const char *key, const char **out,
          size_t max)
{
	size_t n = 0;
	for (size_t i = 0; vars[i] != NULL && n + 2 < max; i++)
		out[n++] = vars[i];
	if (key != NULL)
		out[n++] = key;
	out[n] = NULL;
}

/* --- renewal ----------------------------------------------------------------- */

/*
 * Tokens live 600 ms while events are published without a pause for
 * about 4 s: every event arrives exactly once across the expiries, a new
 * token is fetched for each expiry (not one per request), and each
 * refusal led to one renewal.
 */
static void
test_token_expiry_mid_stream(void **state)
{
	struct fixture *f = *state;
	const char *flags[] = {"--token-ttl", "600", "--connect-timeout",
			       "300", NULL};
	mock_start(f, f->keys->cert_path, flags);
	char *key = kv("SFDC_JWT_KEY", f->keys->pem);
	const char *vars[] = {"SFDC_CLIENT_ID=" CLIENT_ID,
			      "SFDC_USERNAME=" USERNAME, key, NULL};
	long long born = now_ms();
	relay_run(f, 0, vars);
	wait_subscribed(f, 1);
	long long start = now_ms();
	int published = 0;
	while (now_ms() - start < 4000) {
		publish(f, 3);
		published += 3;
		sleep_ms(25);
	}
	long long elapsed = now_ms() - start;
	if ((int)wait_lines(f->e.dir, (size_t)published, 20000) < published)
		fail_msg("only %zu of %d events; see %s",
		         file_count_lines(f->e.out), published, f->e.dir);
	sleep_ms(300); /* a duplicate would show up now */
	assert_int_equal(proc_stop(&f->e.relay, SIGTERM, 20000), 0);
	long long lifetime = now_ms() - born;
	assert_exactly_once(f, published);

	long issued = stat_of(f, "tokens_issued");
	int refusals = file_count(f->e.err, "stream authentication refused");
	int renewals = file_count(f->e.err, "msg=authenticated");
	print_message("%d events, %lld ms, %ld tokens, %d refusals\n",
		      published, elapsed, issued, refusals);
	/* Renewed again and again, but only once a token has expired: a
	 * new one only after a refusal, and each lives 600 ms, so at most
	 * one per 600 ms of the relay's life (a slow relay, under valgrind
	 * say, gets fewer). One renewal per request would be dozens. */
	assert_true(issued >= 3);
	assert_true(issued <= 1 + lifetime / 600);
	/* Every token the mock issued went to one renewal the relay made. */
	assert_int_equal(renewals, issued);
	assert_true(refusals >= 1 && renewals <= refusals + 1);
	assert_no_secrets(f, NULL);
	free(key);
	f->e.ok = 1;
}

/*
 * A TCP forwarder in a child process, listening on lfd and relaying
 * each connection to the mock: the login URL points at it, so stopping
 * it takes the token endpoint away while the stream (at the instance
 * URL, the mock itself) stays.
 */
#define FWD_PAIRS 16

static void
forward_loop(int lfd, int port)
{
	int a[FWD_PAIRS], b[FWD_PAIRS], n = 0;
	char buf[16384];
	for (;;) {
		struct pollfd p[1 + 2 * FWD_PAIRS];
		p[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
		for (int i = 0; i < n; i++) {
			p[1 + 2 * i] = (struct pollfd){.fd = a[i], .events = POLLIN};
			p[2 + 2 * i] = (struct pollfd){.fd = b[i], .events = POLLIN};
		}
		if (poll(p, (nfds_t)(1 + 2 * n), -1) < 0)
			continue;
		for (int i = n - 1; i >= 0; i--) {
			for (int side = 0; side < 2; side++) {
				struct pollfd *q = &p[1 + 2 * i + side];
				if (!(q->revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				int from = side ? b[i] : a[i];
				int to = side ? a[i] : b[i];
				ssize_t r = read(from, buf, sizeof(buf));
				ssize_t w = r > 0 ? write(to, buf, (size_t)r) : -1;
				if (r <= 0 || w != r) {
					close(a[i]);
					close(b[i]);
					a[i] = a[n - 1];
					b[i] = b[n - 1];
					n--;
					break;
				}
			}
		}
		if ((p[0].revents & POLLIN) && n < FWD_PAIRS) {
			int c = accept(lfd, NULL, NULL);
			int t = socket(AF_INET, SOCK_STREAM, 0);
			struct sockaddr_in to = {.sin_family = AF_INET,
						 .sin_port = htons((uint16_t)port)};
			to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			if (c >= 0 && t >= 0 &&
			    connect(t, (struct sockaddr *)&to, sizeof(to)) == 0) {
				a[n] = c;
				b[n++] = t;
			} else {
				if (c >= 0)
					close(c);
				if (t >= 0)
					close(t);
			}
		}
	}
}

/* Starts the forwarder on listen_port (0: any) to the mock; returns the
 * port it listens on. */
static int
forwarder_start(struct fixture *f, int listen_port)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons((uint16_t)listen_port)};
	socklen_t len = sizeof(sin);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(lfd >= 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 16), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		forward_loop(lfd, f->e.port);
		_exit(0);
	}
	close(lfd);
	memset(&f->fwd, 0, sizeof(f->fwd));
	f->fwd.pid = pid;
	f->fwd.out_fd = -1;
	return ntohs(sin.sin_port);
}

static void
test_renewal_survives_network_failure(void **state)
{
	struct fixture *f = *state;
	const char *flags[] = {"--token-ttl", "1500", "--connect-timeout",
			       "300", NULL};
	mock_start(f, NULL, flags);
	int fport = forwarder_start(f, 0);
	char login[128];
	snprintf(login, sizeof(login), "SFDC_LOGIN_URL=http://127.0.0.1:%d",
		 fport);
	const char *vars[] = {login,
			      "SFDC_CLIENT_ID=" CLIENT_ID,
			      "SFDC_CLIENT_SECRET=" CLIENT_SECRET,
			      "SFRELAY_BACKOFF_MAX=800ms",
			      "SFRELAY_HTTP_TIMEOUT=2s",
			      NULL};
	relay_run(f, 0, vars);
	wait_subscribed(f, 1);
	publish(f, 10);
	assert_int_equal(wait_lines(f->e.dir, 10, 10000), 10);

	/* The token endpoint goes away; the token expires meanwhile. */
	assert_int_equal(proc_stop(&f->fwd, SIGKILL, 5000), 128 + SIGKILL);
	publish(f, 10);
	if (wait_log(f->e.dir, "token request failed", 3, 15000) != 0)
		fail_msg("no failed renewals; see %s", f->e.err);
	assert_true(file_contains(f->e.err, "stream retrying after back-off"));
	assert_true(f->e.relay.pid > 0);
	publish(f, 5);

	/* Back: the relay renews and catches up through replay. */
	assert_int_equal(forwarder_start(f, fport), fport);
	if ((int)wait_lines(f->e.dir, 25, 15000) < 25)
		fail_msg("no recovery; see %s", f->e.dir);
	publish(f, 5);
	assert_int_equal(wait_lines(f->e.dir, 30, 10000), 30);
	sleep_ms(300);
	assert_int_equal(proc_stop(&f->e.relay, SIGTERM, 20000), 0);
	assert_exactly_once(f, 30);
	assert_true(stat_of(f, "tokens_issued") >= 2);
	assert_no_secrets(f, NULL);
	f->e.ok = 1;
}

/* --- sfmock's token endpoint -------------------------------------------------- */

/* Appends the base64url form of n bytes (via OpenSSL's base64). */
static void
b64url_cat(char *out, size_t len, const void *data, size_t n)
{
	unsigned char *b = malloc(4 * n / 3 + 8);
	int m = EVP_EncodeBlock(b, data, (int)n);
	while (m > 0 && b[m - 1] == '=')
		m--;
	size_t o = strlen(out);
	for (int i = 0; i < m && o + 1 < len; i++)
		out[o++] = b[i] == '+' ? '-' : b[i] == '/' ? '_' : (char)b[i];
	out[o] = '\0';
	free(b);
}

/* A JWT with the given header and claims, signed RS256 by the test key. */
static void
make_jwt(struct fixture *f, const char *header, const char *claims, char *out,
	 size_t len)
{
	out[0] = '\0';
	b64url_cat(out, len, header, strlen(header));
	strcat(out, ".");
	b64url_cat(out, len, claims, strlen(claims));
	BIO *b = BIO_new_mem_buf(f->keys->pem, -1);
	EVP_PKEY *pkey = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_non_null(pkey);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[512];
	size_t siglen = sizeof(sig);
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL,
					    pkey),
			 1);
	assert_int_equal(EVP_DigestSign(ctx, sig, &siglen,
					(unsigned char *)out, strlen(out)),
			 1);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	strcat(out, ".");
	b64url_cat(out, len, sig, siglen);
}

/* POSTs a form to the token endpoint; returns the HTTP status, the
 * reply in resp. */
static long
token_post(struct fixture *f, const char *form, char *resp, size_t len)
{
	char url[128];
	snprintf(url, sizeof(url), "%s/services/oauth2/token", f->base);
	return http_call("POST", url, NULL, form, resp, len);
}

/* The mock refuses assertions the way Salesforce does, check by check. */
static void
test_mock_verifies_assertions(void **state)
{
	struct fixture *f = *state;
	mock_start(f, f->keys->cert_path, NULL);
	long long now = (long long)time(NULL);
	char own[64];
	snprintf(own, sizeof(own), "%s", f->base);
	struct {
		const char *header;
		const char *iss, *sub, *aud;
		long long exp;
		long status;
		const char *want;
	} cases[] = {
		{"{\"alg\":\"RS256\"}", CLIENT_ID, USERNAME,
		 "https://login.salesforce.com", now + 170, 200,
		 "\"access_token\""},
		{"{\"alg\":\"RS256\"}", CLIENT_ID, USERNAME,
		 "https://test.salesforce.com", now + 60, 200,
		 "\"access_token\""},
		{"{\"alg\":\"RS256\",\"typ\":\"JWT\"}", CLIENT_ID, USERNAME, own,
		 now + 60, 200, "\"access_token\""},
		{"{\"alg\":\"HS256\"}", CLIENT_ID, USERNAME, own, now + 60, 400,
		 "\"invalid assertion\""},
		{"{\"alg\":\"RS256\"}", "someone-else", USERNAME, own, now + 60,
		 400, "\"invalid_client_id\""},
		{"{\"alg\":\"RS256\"}", CLIENT_ID, USERNAME,
		 "https://evil.example.com", now + 60, 400,
		 "\"audience is invalid\""},
		{"{\"alg\":\"RS256\"}", CLIENT_ID, USERNAME, own, now - 5, 400,
		 "\"expired authorization code\""},
		{"{\"alg\":\"RS256\"}", CLIENT_ID, USERNAME, own, now + 3600, 400,
		 "\"invalid assertion\""},
		{"{\"alg\":\"RS256\"}", CLIENT_ID, "nobody@sfmock.test", own,
		 now + 60, 400, "\"user hasn't approved this consumer\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char claims[512], jwt[2048], form[2300], resp[2048];
		snprintf(claims, sizeof(claims),
			 "{\"iss\":\"%s\",\"sub\":\"%s\",\"aud\":\"%s\","
			 "\"exp\":%lld}",
			 cases[i].iss, cases[i].sub, cases[i].aud, cases[i].exp);
		make_jwt(f, cases[i].header, claims, jwt, sizeof(jwt));
		snprintf(form, sizeof(form),
			 "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-"
			 "type%%3Ajwt-bearer&assertion=%s",
			 jwt);
		long st = token_post(f, form, resp, sizeof(resp));
		if (st != cases[i].status || strstr(resp, cases[i].want) == NULL)
			fail_msg("case %zu: HTTP %ld %s", i, st, resp);
		/* A signature that does not match its content. */
		if (cases[i].status == 200) {
			char *dot = strrchr(form, '.');
			dot[1] = dot[1] == 'A' ? 'B' : 'A';
			assert_int_equal(token_post(f, form, resp, sizeof(resp)),
					 400);
			assert_non_null(strstr(resp, "\"invalid assertion\""));
		}
	}
	char resp[1024];
	assert_int_equal(token_post(f,
				    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3A"
				    "grant-type%3Ajwt-bearer&assertion=a.b",
				    resp, sizeof(resp)),
			 400);
	assert_non_null(strstr(resp, "\"invalid assertion\""));
	assert_int_equal(stat_of(f, "tokens_issued"), 3);
	f->e.ok = 1;
}

/* The other grants' refusals. */
static void
test_mock_grant_refusals(void **state)
{
	struct fixture *f = *state;
	mock_start(f, NULL, NULL);
	struct {
		const char *form;
		long status;
		const char *want;
	} cases[] = {
		{"grant_type=client_credentials&client_id=" CLIENT_ID
		 "&client_secret=" CLIENT_SECRET,
		 200, "\"access_token\""},
		{"grant_type=client_credentials&client_id=" CLIENT_ID, 400,
		 "\"invalid client credentials\""},
		{"grant_type=client_credentials&client_id=nope&client_secret="
		 CLIENT_SECRET,
		 400, "\"client identifier invalid\""},
		{"grant_type=refresh_token&client_id=" CLIENT_ID
		 "&refresh_token=" REFRESH,
		 200, "\"access_token\""},
		{"grant_type=refresh_token&client_id=" CLIENT_ID
		 "&client_secret=wrong&refresh_token=" REFRESH,
		 400, "\"invalid client credentials\""},
		{"grant_type=refresh_token&client_id=" CLIENT_ID
		 "&refresh_token=stale",
		 400, "\"expired access/refresh token\""},
		{"grant_type=authorization_code&client_id=" CLIENT_ID, 400,
		 "\"unsupported_grant_type\""},
		{"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-"
		 "bearer",
		 400, "\"invalid assertion\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char resp[1024];
		long st = token_post(f, cases[i].form, resp, sizeof(resp));
		if (st != cases[i].status || strstr(resp, cases[i].want) == NULL)
			fail_msg("case %zu: HTTP %ld %s", i, st, resp);
	}
	/* The mock's log never shows a secret either. */
	char log[4200];
	snprintf(log, sizeof(log), "%s/sfmock.log", f->e.dir);
	assert_false(file_contains(log, CLIENT_SECRET));
	assert_false(file_contains(log, REFRESH));
	assert_true(file_contains(log, "expired access/refresh token"));
	f->e.ok = 1;
}

/* --token-ttl: a token works, then REST and CometD refuse it as
 * Salesforce refuses an expired session. */
static void
test_mock_token_ttl(void **state)
{
	struct fixture *f = *state;
	static const char handshake[] =
	    "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
	    "\"supportedConnectionTypes\":[\"long-polling\"]}]";
	const char *flags[] = {"--token-ttl", "400", NULL};
	char token[256], auth[300], url[128], resp[2048];
	mock_start(f, NULL, flags);
	fetch_token(f, token, sizeof(token));
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	const char *hdr[] = {auth, "Content-Type: application/json", NULL};
	snprintf(url, sizeof(url), "%s/services/data/v61.0/sobjects/None__e",
		 f->base);
	/* Valid: past authentication, to the 404 of an unknown event. */
	assert_int_equal(http_call("POST", url, hdr, "{}", resp, sizeof(resp)),
			 404);
	sleep_ms(600);
	assert_int_equal(http_call("POST", url, hdr, "{}", resp, sizeof(resp)),
			 401);
	assert_non_null(strstr(resp, "INVALID_SESSION_ID"));
	snprintf(url, sizeof(url), "%s/cometd/61.0", f->base);
	assert_int_equal(
	    http_call("POST", url, hdr, handshake, resp, sizeof(resp)), 200);
	assert_non_null(strstr(resp, "403::Handshake denied"));
	assert_non_null(strstr(resp, "401::Authentication invalid"));
	/* A new token works again. */
	fetch_token(f, token, sizeof(token));
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	assert_int_equal(
	    http_call("POST", url, hdr, handshake, resp, sizeof(resp)), 200);
	assert_non_null(strstr(resp, "\"successful\":true"));
	f->e.ok = 1;
}

/* --- inferred flows and --check ------------------------------------------ */

/* Runs --check with vars; returns its exit status. */
static int
check_with(struct fixture *f, const char *channels, const char *const *vars)
{
	char chans[256];
	const char *all[16];
	size_t n = 0;
	snprintf(chans, sizeof(chans), "SFRELAY_CHANNELS=%s", channels);
	all[n++] = chans;
	for (size_t i = 0; vars != NULL && vars[i] != NULL && n < 15; i++)
		all[n++] = vars[i];
	all[n] = NULL;
	/* Each run's output on its own. */
	fclose(fopen(f->e.out, "w"));
	fclose(fopen(f->e.err, "w"));
	relay_run(f, 1, all);
	return proc_wait(&f->e.relay, 30000);
}

static void
assert_out_lines(struct fixture *f, const char *const *want)
{
	char *all = file_read(f->e.out, NULL);
	assert_non_null(all);
	size_t n = 0;
	for (char *save = NULL, *l = strtok_r(all, "\n", &save); l != NULL;
	     l = strtok_r(NULL, "\n", &save), n++) {
		if (want[n] == NULL)
			fail_msg("extra line: %s", l);
		if (strncmp(l, want[n], strlen(want[n])) != 0)
			fail_msg("line %zu: got \"%s\", want \"%s...\"", n + 1, l,
				 want[n]);
	}
	if (want[n] != NULL)
		fail_msg("missing line: %s", want[n]);
	free(all);
}

/* Each flow, inferred from the variables alone, passes every check. */
static void
test_check_inferred_flows(void **state)
{
	struct fixture *f = *state;
	char token[256];
	mock_start(f, f->keys->cert_path, NULL);
	fetch_token(f, token, sizeof(token));
	char *key = kv("SFDC_JWT_KEY", f->keys->pem);
	char *tv = kv("SFDC_ACCESS_TOKEN", token);
	char *iv = kv("SFDC_INSTANCE_URL", f->base);
	struct {
		const char *flow;
		const char *vars[5];
	} cases[] = {
		{"jwt", {"SFDC_CLIENT_ID=" CLIENT_ID, "SFDC_USERNAME=" USERNAME,
			 key, NULL}},
		{"client_credentials", {"SFDC_CLIENT_ID=" CLIENT_ID,
					"SFDC_CLIENT_SECRET=" CLIENT_SECRET,
					NULL}},
		{"refresh_token", {"SFDC_CLIENT_ID=" CLIENT_ID,
				   "SFDC_REFRESH_TOKEN=" REFRESH, NULL}},
		{"password", {"SFDC_CLIENT_ID=" CLIENT_ID,
			      "SFDC_CLIENT_SECRET=" CLIENT_SECRET,
			      "SFDC_USERNAME=" USERNAME,
			      "SFDC_PASSWORD=" PASSWORD, NULL}},
		{"token", {tv, iv, NULL}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char conf[128], auth[128];
		snprintf(conf, sizeof(conf),
			 "ok   configuration: %s flow (inferred from the "
			 "variables set), 2 channels",
			 cases[i].flow);
		snprintf(auth, sizeof(auth), "ok   authentication: %s flow as ",
			 cases[i].flow);
		const char *want[] = {conf,
				      auth,
				      "ok   streaming handshake: ",
				      "ok   subscribe " TOPIC ": subscribed",
				      "ok   subscribe " TOPIC2 ": subscribed",
				      NULL};
		int rc = check_with(f, TOPIC "," TOPIC2, cases[i].vars);
		if (rc != 0)
			fail_msg("%s: exit %d; see %s", cases[i].flow, rc,
			         f->e.dir);
		assert_out_lines(f, want);
		const char *extra[] = {token, NULL};
		assert_no_secrets(f, extra);
	}
	free(key);
	free(tv);
	free(iv);
	f->e.ok = 1;
}

/* --check as the case says: exit 1 and what it printed. */
static void
check_fails(struct fixture *f, const struct auth_case *c,
            const char *const *vars)
{
	assert_int_equal(check_with(f, c->channels, vars), 1);
	if (!c->anywhere) {
		assert_out_lines(f, c->want);
		return;
	}
	char *all = file_read(f->e.out, NULL);
	size_t n = 0;
	assert_non_null(all);
	for (; c->want[n] != NULL; n++)
		if (strstr(all, c->want[n]) == NULL)
			fail_msg("no \"%s\" in:\n%s", c->want[n], all);
	assert_int_equal(file_count_lines(f->e.out), n);
	free(all);
}

static void
run_auth_case(void **state)
{
	struct fixture *f = *state;
	const struct auth_case *c = f->c;
	const char *vars[8];
	const char *secrets[] = {c->secret, NULL};
	char *key = case_start(f, c->cert, c->key);
	case_vars(c->vars, key, vars, 8);
	if (c->flow != NULL) {
		stream_with(f, vars, c->flow, c->chosen_by);
	} else if (c->refusal != NULL) {
		refused(f, vars, c->refusal, secrets);
	} else {
		check_fails(f, c, vars);
		assert_no_secrets(f, secrets);
	}
	if (c->also != NULL && !file_contains(f->e.err, c->also))
		fail_msg("no \"%s\" in %s", c->also, f->e.err);
	for (size_t i = 0; i < 2 && c->stats[i].key != NULL; i++)
		assert_int_equal(stat_of(f, c->stats[i].key),
		                 c->stats[i].value);
	free(key);
	f->e.ok = 1;
}

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest plain[] = {
	    T(test_static_token_refused_exits_77),
	    T(test_mock_verifies_assertions),
	    T(test_mock_grant_refusals),
	    T(test_mock_token_ttl),
	    T(test_token_expiry_mid_stream),
	    T(test_renewal_survives_network_failure),
	    T(test_check_inferred_flows),
	};
#undef T
	struct keys *keys = NULL;
	struct auth_arg args[ARRAY_LEN(auth_cases) + ARRAY_LEN(plain)];
	struct CMUnitTest tests[ARRAY_LEN(args)];
	size_t n = 0;
	/* The table's cases first, in its order, then the others; each
	 * test's initial state is its auth_arg (so there is no group
	 * state, which cmocka would hand every test instead). */
	for (size_t i = 0; i < ARRAY_LEN(auth_cases); i++, n++) {
		args[n] = (struct auth_arg){&keys, &auth_cases[i]};
		tests[n] =
		    (struct CMUnitTest){auth_cases[i].name, run_auth_case,
		                        setup, teardown, &args[n]};
	}
	for (size_t i = 0; i < ARRAY_LEN(plain); i++, n++) {
		args[n] = (struct auth_arg){&keys, NULL};
		tests[n] = plain[i];
		tests[n].initial_state = &args[n];
	}
	int rc = cmocka_run_group_tests_name("e2e_auth", tests, NULL, NULL);
	keys_free(keys);
	return rc;
}
