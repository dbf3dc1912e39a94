/*
 * auth: the pure parts (token reply decoding, form encoding, hints), and
 * each flow against a token endpoint served on loopback by this test on
 * the same event loop: the request each flow sends, single-flight
 * renewal, refusals, network failures, the static token that cannot be
 * renewed, and no secret in the log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "sfrelay/auth.h"
#include "sfrelay/config.h"
#include "sfrelay/http.h"
#include "sfrelay/jwt.h"
#include "sfrelay/log.h"

/* --- pure parts ----------------------------------------------------- */

struct token_case {
	const char *name;
	long status;
	const char *body;
	enum auth_status want;
	const char *want_token;
	const char *want_url;
	const char *err_has;
};

static const struct token_case cases[] = {
	{"success", 200,
	 "{\"access_token\":\"00Dxx!AQ.tok\",\"instance_url\":"
	 "\"https://acme.my.salesforce.com/\",\"id\":\"https://login/id/1/2\","
	 "\"token_type\":\"Bearer\",\"issued_at\":\"1764185273000\","
	 "\"signature\":\"abc=\"}",
	 AUTH_OK, "00Dxx!AQ.tok", "https://acme.my.salesforce.com", NULL},
	{"invalid_grant", 400,
	 "{\"error\":\"invalid_grant\",\"error_description\":"
	 "\"authentication failure\"}",
	 AUTH_PERMANENT, NULL, NULL, "authentication failure"},
	{"invalid_client_id", 400,
	 "{\"error\":\"invalid_client_id\",\"error_description\":\"client "
	 "identifier invalid\"}",
	 AUTH_PERMANENT, NULL, NULL, "invalid_client_id"},
	{"invalid_client", 400,
	 "{\"error\":\"invalid_client\",\"error_description\":\"invalid "
	 "client credentials\"}",
	 AUTH_PERMANENT, NULL, NULL, "invalid client credentials"},
	{"unknown oauth error is temporary", 400,
	 "{\"error\":\"server_busy\",\"error_description\":\"later\"}",
	 AUTH_TEMPORARY, NULL, NULL, "server_busy"},
	{"5xx with invalid_grant is temporary", 503,
	 "{\"error\":\"invalid_grant\"}", AUTH_TEMPORARY, NULL, NULL, "503"},
	{"html error page", 502, "<html>bad gateway</html>", AUTH_TEMPORARY,
	 NULL, NULL, "not a JSON object"},
	{"truncated", 200, "{\"access_token\":\"x\",\"instance_u",
	 AUTH_TEMPORARY, NULL, NULL, "not a JSON object"},
	{"no instance_url", 200, "{\"access_token\":\"tok\"}", AUTH_TEMPORARY,
	 NULL, NULL, "instance_url"},
	{"instance_url not http", 200,
	 "{\"access_token\":\"tok\",\"instance_url\":\"ftp://x\"}",
	 AUTH_TEMPORARY, NULL, NULL, "instance_url"},
	{"empty token", 200,
	 "{\"access_token\":\"\",\"instance_url\":\"https://x\"}",
	 AUTH_TEMPORARY, NULL, NULL, "access_token"},
	{"token not a string", 200,
	 "{\"access_token\":5,\"instance_url\":\"https://x\"}", AUTH_TEMPORARY,
	 NULL, NULL, "access_token"},
	{"control bytes in the description", 400,
	 "{\"error\":\"invalid_grant\",\"error_description\":\"bad\\r\\nat=forged\"}",
	 AUTH_PERMANENT, NULL, NULL, "bad  at=forged"},
	{"array", 200, "[]", AUTH_TEMPORARY, NULL, NULL, "not a JSON object"},
	{"deep nesting", 200,
	 "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]"
	 "]]]]]]]]]]]]]]]]]}",
	 AUTH_TEMPORARY, NULL, NULL, "not a JSON object"},
};

static void
test_parse_token_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct token_case *c = &cases[i];
		char *tok = (char *)1, *url = (char *)1, err[256] = "";
		enum auth_status st =
			auth_parse_token(c->status, c->body, strlen(c->body),
					 &tok, &url, err, sizeof(err));
		print_message("case: %s\n", c->name);
		assert_int_equal(st, c->want);
		if (c->want == AUTH_OK) {
			assert_string_equal(tok, c->want_token);
			assert_string_equal(url, c->want_url);
		} else {
			assert_null(tok);
			assert_null(url);
			assert_non_null(strstr(err, c->err_has));
		}
		free(tok);
		free(url);
	}
}

static void
test_form_escape(void **state)
{
	(void)state;
	struct evbuffer *b = evbuffer_new();
	assert_int_equal(auth_form_escape(b, "a b&c=d+e/é~._-"), 0);
	size_t n = evbuffer_get_length(b);
	char *s = (char *)evbuffer_pullup(b, -1);
	const char *want = "a%20b%26c%3Dd%2Be%2F%C3%A9~._-";
	assert_int_equal(n, strlen(want));
	assert_memory_equal(s, want, n);
	evbuffer_free(b);
}

static void
test_error_hints(void **state)
{
	(void)state;
	static const char *const hint_cases[][2] = {
		{"invalid_grant: user hasn't approved this consumer",
		 "pre-authorized"},
		{"invalid_grant: invalid assertion", "SFDC_JWT_KEY"},
		{"invalid_grant: audience is invalid", "SFDC_LOGIN_URL"},
		{"invalid_grant: expired authorization code", "clock"},
		{"invalid_client_id: client identifier invalid", "SFDC_CLIENT_ID"},
		{"invalid_client: invalid client credentials",
		 "SFDC_CLIENT_SECRET"},
		{"invalid_grant: expired access/refresh token",
		 "SFDC_REFRESH_TOKEN"},
		{"invalid_grant: authentication failure", "SFDC_PASSWORD"},
		{"unsupported_grant_type: request not supported on this domain",
		 "My Domain"},
		{"invalid_grant: no client credentials user enabled", "Run As"},
	};
	for (size_t i = 0; i < sizeof(hint_cases) / sizeof(hint_cases[0]);
	     i++) {
		const char *h = auth_error_hint(hint_cases[i][0]);
		assert_non_null(h);
		assert_non_null(strstr(h, hint_cases[i][1]));
	}
	assert_null(auth_error_hint("server_busy: later"));
	assert_null(auth_error_hint(NULL));
}

/* --- a token endpoint on loopback ------------------------------------ */

#define MAX_SEEN 16

struct server {
	struct evhttp *http;
	int port;
	char url[64];
	/* What the next requests get: status and body (NULL: a token
	 * numbered by the request, so each token differs). */
	int status;
	const char *body;
	int hold; /* do not answer: the request stays in flight */
	struct evhttp_request *held;
	size_t nseen;
	char *seen[MAX_SEEN]; /* request bodies */
	char content_type[128];
};

#define OK_BODY                                                            \
	"{\"access_token\":\"00Dxx!token-%d\",\"instance_url\":\"%s\"}"

struct fixture;

/* A waiter: which fixture, which callback slot. */
struct slot {
	struct fixture *f;
	int i;
};

struct fixture {
	struct event_base *base;
	struct http *http;
	struct server srv;
	struct config cfg;
	struct auth *auth;
	struct keys *keys;
	/* callbacks */
	struct slot slots[8];
	int called[8];
	enum auth_status status[8];
	char err[8][1024];
};

struct keys {
	EVP_PKEY *pkey;
	char *pem;
};

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct server *s = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	char *body = malloc(n + 1);
	assert_non_null(body);
	evbuffer_copyout(in, body, n);
	body[n] = '\0';
	const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req),
					    "Content-Type");
	snprintf(s->content_type, sizeof(s->content_type), "%s",
		 ct != NULL ? ct : "");
	assert_true(s->nseen < MAX_SEEN);
	s->seen[s->nseen++] = body;
	assert_string_equal(evhttp_request_get_uri(req),
			    "/services/oauth2/token");
	if (s->hold) {
		s->held = req;
		return;
	}
	struct evbuffer *out = evbuffer_new();
	if (s->body == NULL)
		evbuffer_add_printf(out, OK_BODY, (int)s->nseen, s->url);
	else
		evbuffer_add(out, s->body, strlen(s->body));
	evhttp_send_reply(req, s->status, "x", out);
	evbuffer_free(out);
}

static int
server_start(struct event_base *base, struct server *s)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	s->http = evhttp_new(base);
	struct evhttp_bound_socket *b =
		evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
	assert_non_null(b);
	assert_int_equal(getsockname(evhttp_bound_socket_get_fd(b),
				     (struct sockaddr *)&sin, &len),
			 0);
	s->port = ntohs(sin.sin_port);
	snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
	s->status = 200;
	s->body = NULL;
	evhttp_set_gencb(s->http, on_request, s);
	return 0;
}

static void
server_free(struct server *s)
{
	if (s->http != NULL)
		evhttp_free(s->http);
	for (size_t i = 0; i < s->nseen; i++)
		free(s->seen[i]);
	memset(s, 0, sizeof(*s));
}

/* The value of one field of a form body (decoded), or NULL. Owned. */
static char *
form_value(const char *body, const char *key)
{
	struct evkeyvalq kv;
	char *out = NULL;
	kv.tqh_first = NULL;
	kv.tqh_last = &kv.tqh_first;
	if (evhttp_parse_query_str(body, &kv) == 0) {
		const char *v = evhttp_find_header(&kv, key);
		if (v != NULL)
			out = strdup(v);
	}
	evhttp_clear_headers(&kv);
	return out;
}

static void
assert_field(const char *body, const char *key, const char *want)
{
	char *v = form_value(body, key);
	if (want == NULL) {
		if (v != NULL)
			fail_msg("%s is sent (%s)", key, v);
		return;
	}
	if (v == NULL || strcmp(v, want) != 0)
		fail_msg("%s: got %s, want %s", key, v ? v : "(none)", want);
	free(v);
}

static char login_url[64], client_id[] = "3MVG9test.client",
	client_secret[] = "secret-client-AAAA", username[] = "relay@x.test",
	password[] = "pass word&+=", security_token[] = "TOKENtoken",
	refresh_token[] = "5Aep861refresh-BBBB", access_token[] =
	"00Dxx!static-access-CCCC", instance_url[] = "https://acme.my.salesforce.com",
	empty[] = "";

static int
group_setup(void **state)
{
	struct keys *k = calloc(1, sizeof(*k));
	assert_non_null(k);
	k->pkey = EVP_RSA_gen(1024);
	assert_non_null(k->pkey);
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, k->pkey, NULL, NULL, 0, NULL, NULL);
	char *data;
	long n = BIO_get_mem_data(b, &data);
	k->pem = strndup(data, (size_t)n);
	BIO_free(b);
	log_set_level(LOG_ERROR); /* the flows' info lines are noise here */
	*state = k;
	return 0;
}

static int
group_teardown(void **state)
{
	struct keys *k = *state;
	EVP_PKEY_free(k->pkey);
	free(k->pem);
	free(k);
	log_shutdown(); /* the tokens auth registered as secrets */
	return 0;
}

static int
setup(void **state)
{
	struct keys *k = *state;
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];
	assert_non_null(f);
	f->keys = k;
	for (int i = 0; i < 8; i++)
		f->slots[i] = (struct slot){f, i};
	f->base = event_base_new();
	struct http_opts o = {.timeout_ms = 5000};
	f->http = http_new(f->base, &o, err, sizeof(err));
	assert_non_null(f->http);
	server_start(f->base, &f->srv);
	snprintf(login_url, sizeof(login_url), "%s", f->srv.url);
	f->cfg.login_url = login_url;
	f->cfg.client_id = client_id;
	f->cfg.client_secret = client_secret;
	f->cfg.username = username;
	f->cfg.password = password;
	f->cfg.security_token = empty;
	f->cfg.refresh_token = refresh_token;
	f->cfg.access_token = access_token;
	f->cfg.instance_url = instance_url;
	f->cfg.jwt_key = k->pem;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	struct keys *k = f->keys;
	auth_free(f->auth);
	if (f->srv.held != NULL)
		evhttp_send_reply(f->srv.held, 500, "x", NULL);
	http_free(f->http);
	server_free(&f->srv);
	event_base_free(f->base);
	free(f);
	*state = k;
	return 0;
}

static void
new_auth(struct fixture *f, enum config_auth flow)
{
	char err[512];
	f->cfg.auth = flow;
	f->auth = auth_new(f->base, f->http, &f->cfg, err, sizeof(err));
	if (f->auth == NULL)
		fail_msg("auth_new: %s", err);
}

static void
on_done(void *arg, enum auth_status st, const char *err)
{
	struct slot *s = arg;
	struct fixture *f = s->f;
	f->called[s->i]++;
	f->status[s->i] = st;
	snprintf(f->err[s->i], sizeof(f->err[s->i]), "%s",
		 err != NULL ? err : "");
}

static void
get(struct fixture *f, int slot)
{
	assert_int_equal(auth_get(f->auth, on_done, &f->slots[slot]), 0);
}

/* Runs the loop until slot has been called (or 5 s pass). */
static void
run_until(struct fixture *f, int slot)
{
	long long deadline = (long long)time(NULL) + 5;
	while (f->called[slot] == 0 && (long long)time(NULL) <= deadline)
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	if (f->called[slot] == 0)
		fail_msg("slot %d never called", slot);
}

/* Turns the loop for ms milliseconds. */
static void
run_for(struct fixture *f, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
}

static void
test_client_credentials(void **state)
{
	struct fixture *f = *state;
	new_auth(f, CONFIG_AUTH_CLIENT_CREDENTIALS);
	assert_null(auth_access_token(f->auth));
	get(f, 0);
	run_until(f, 0);
	assert_int_equal(f->status[0], AUTH_OK);
	assert_int_equal(f->srv.nseen, 1);
	assert_string_equal(f->srv.content_type,
			    "application/x-www-form-urlencoded");
	const char *body = f->srv.seen[0];
	assert_field(body, "grant_type", "client_credentials");
	assert_field(body, "client_id", client_id);
	assert_field(body, "client_secret", client_secret);
	assert_field(body, "username", NULL);
	assert_field(body, "password", NULL);
	assert_string_equal(auth_access_token(f->auth), "00Dxx!token-1");
	assert_string_equal(auth_instance_url(f->auth), f->srv.url);
	assert_int_equal(auth_requests(f->auth), 1);
}

static void
test_refresh_token(void **state)
{
	struct fixture *f = *state;
	new_auth(f, CONFIG_AUTH_REFRESH_TOKEN);
	get(f, 0);
	run_until(f, 0);
	assert_int_equal(f->status[0], AUTH_OK);
	assert_field(f->srv.seen[0], "grant_type", "refresh_token");
	assert_field(f->srv.seen[0], "client_id", client_id);
	assert_field(f->srv.seen[0], "client_secret", client_secret);
	assert_field(f->srv.seen[0], "refresh_token", refresh_token);
	auth_free(f->auth);

	/* The secret is optional: without it, none is sent. */
	f->cfg.client_secret = NULL;
	new_auth(f, CONFIG_AUTH_REFRESH_TOKEN);
	get(f, 1);
	run_until(f, 1);
	assert_int_equal(f->status[1], AUTH_OK);
	assert_field(f->srv.seen[1], "client_secret", NULL);
	assert_field(f->srv.seen[1], "refresh_token", refresh_token);
}

static void
test_password(void **state)
{
	struct fixture *f = *state;
	f->cfg.security_token = security_token;
	new_auth(f, CONFIG_AUTH_PASSWORD);
	get(f, 0);
	run_until(f, 0);
	assert_int_equal(f->status[0], AUTH_OK);
	const char *body = f->srv.seen[0];
	assert_field(body, "grant_type", "password");
	assert_field(body, "client_id", client_id);
	assert_field(body, "client_secret", client_secret);
	assert_field(body, "username", username);
	char want[128];
	snprintf(want, sizeof(want), "%s%s", password, security_token);
	assert_field(body, "password", want);
	/* Escaped, not sent raw: '&', '+', '=' and ' ' in the password. */
	assert_null(strstr(body, password));
}

static void
test_jwt_bearer(void **state)
{
	struct fixture *f = *state;
	new_auth(f, CONFIG_AUTH_JWT);
	long long before = (long long)time(NULL);
	get(f, 0);
	run_until(f, 0);
	long long after = (long long)time(NULL);
	assert_int_equal(f->status[0], AUTH_OK);
	const char *body = f->srv.seen[0];
	assert_field(body, "grant_type",
		     "urn:ietf:params:oauth:grant-type:jwt-bearer");
	assert_field(body, "client_id", NULL);
	assert_field(body, "client_secret", NULL);
	assert_field(body, "password", NULL);
	char *a = form_value(body, "assertion");
	assert_non_null(a);

	/* Decode the claims with OpenSSL's base64 and check them. */
	char *d1 = strchr(a, '.'), *d2 = d1 != NULL ? strchr(d1 + 1, '.') : NULL;
	assert_non_null(d2);
	size_t n = (size_t)(d2 - d1 - 1);
	char *b64 = calloc(1, n + 4);
	for (size_t i = 0; i < n; i++)
		b64[i] = d1[1 + i] == '-' ? '+' : d1[1 + i] == '_' ? '/' : d1[1 + i];
	size_t m = n;
	while (m % 4 != 0)
		b64[m++] = '=';
	unsigned char claims[1024];
	int len = EVP_DecodeBlock(claims, (unsigned char *)b64, (int)m);
	assert_true(len > 0);
	claims[len] = '\0';
	struct json_object *o = json_tokener_parse((char *)claims);
	assert_non_null(o);
	struct json_object *v;
	assert_true(json_object_object_get_ex(o, "iss", &v));
	assert_string_equal(json_object_get_string(v), client_id);
	assert_true(json_object_object_get_ex(o, "sub", &v));
	assert_string_equal(json_object_get_string(v), username);
	/* A loopback login URL is its own audience. */
	assert_true(json_object_object_get_ex(o, "aud", &v));
	assert_string_equal(json_object_get_string(v), f->srv.url);
	assert_true(json_object_object_get_ex(o, "exp", &v));
	long long exp = json_object_get_int64(v);
	/* In the future, at most 3 minutes ahead. */
	assert_true(exp > after);
	assert_true(exp <= before + 180);
	assert_true(exp >= before + 170);
	json_object_put(o);

	/* The signature is the configured key's. */
	*d2 = '\0';
	size_t sn = strlen(d2 + 1);
	unsigned char sig[512];
	char *s64 = calloc(1, sn + 4);
	for (size_t i = 0; i < sn; i++)
		s64[i] = d2[1 + i] == '-' ? '+' : d2[1 + i] == '_' ? '/' : d2[1 + i];
	m = sn;
	while (m % 4 != 0)
		s64[m++] = '=';
	int slen = EVP_DecodeBlock(sig, (unsigned char *)s64, (int)m);
	slen -= (int)(m - sn);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL,
					      f->keys->pkey),
			 1);
	assert_int_equal(EVP_DigestVerify(ctx, sig, (size_t)slen,
					  (unsigned char *)a, strlen(a)),
			 1);
	EVP_MD_CTX_free(ctx);
	free(s64);
	free(b64);
	free(a);
}

/* However many clients ask, one request; the clients that saw the same
 * refused token share one renewal. */
static void
test_single_flight(void **state)
{
	struct fixture *f = *state;
	new_auth(f, CONFIG_AUTH_CLIENT_CREDENTIALS);
	for (int i = 0; i < 5; i++)
		get(f, i);
	for (int i = 0; i < 5; i++)
		run_until(f, i);
	assert_int_equal(f->srv.nseen, 1);
	for (int i = 0; i < 5; i++)
		assert_int_equal(f->status[i], AUTH_OK);
	char *old = strdup(auth_access_token(f->auth));

	/* Three clients get a 401 with the same token. */
	memset(f->called, 0, sizeof(f->called));
	for (int i = 0; i < 3; i++) {
		auth_invalidate(f->auth, old);
		get(f, i);
	}
	for (int i = 0; i < 3; i++)
		run_until(f, i);
	assert_int_equal(f->srv.nseen, 2);
	assert_int_equal(auth_requests(f->auth), 2);
	assert_string_equal(auth_access_token(f->auth), "00Dxx!token-2");
	for (int i = 0; i < 3; i++)
		assert_int_equal(f->called[i], 1);

	/* A late 401 for the old token does not renew again. */
	auth_invalidate(f->auth, old);
	assert_string_equal(auth_access_token(f->auth), "00Dxx!token-2");
	get(f, 5);
	run_until(f, 5);
	assert_int_equal(f->status[5], AUTH_OK);
	assert_int_equal(f->srv.nseen, 2);
	auth_invalidate(f->auth, NULL);
	assert_non_null(auth_access_token(f->auth));
	free(old);
}

/* A renewal already under way is joined, not duplicated. */
static void
test_join_inflight(void **state)
{
	struct fixture *f = *state;
	new_auth(f, CONFIG_AUTH_PASSWORD);
	f->srv.hold = 1;
	get(f, 0);
	run_for(f, 100);
	assert_int_equal(f->srv.nseen, 1);
	get(f, 1);
	get(f, 2);
	run_for(f, 100);
	assert_int_equal(f->srv.nseen, 1);
	assert_int_equal(f->called[0] + f->called[1] + f->called[2], 0);
	struct evbuffer *out = evbuffer_new();
	evbuffer_add_printf(out, OK_BODY, 7, f->srv.url);
	evhttp_send_reply(f->srv.held, 200, "OK", out);
	evbuffer_free(out);
	f->srv.held = NULL;
	for (int i = 0; i < 3; i++) {
		run_until(f, i);
		assert_int_equal(f->status[i], AUTH_OK);
	}
	assert_string_equal(auth_access_token(f->auth), "00Dxx!token-7");
}

static void
test_refusals_are_permanent(void **state)
{
	struct fixture *f = *state;
	static const char *const bodies[] = {
		"{\"error\":\"invalid_grant\",\"error_description\":\"user "
		"hasn't approved this consumer\"}",
		"{\"error\":\"invalid_client\",\"error_description\":\"invalid "
		"client credentials\"}",
	};
	new_auth(f, CONFIG_AUTH_JWT);
	f->srv.status = 400;
	for (int i = 0; i < 2; i++) {
		f->srv.body = bodies[i];
		get(f, i);
		run_until(f, i);
		assert_int_equal(f->status[i], AUTH_PERMANENT);
		assert_non_null(strstr(f->err[i], i == 0 ? "user hasn't approved "
							   "this consumer"
							 : "invalid client "
							   "credentials"));
		assert_non_null(strstr(f->err[i], "(hint: "));
		assert_null(auth_access_token(f->auth));
	}
}

/* Network failures and 5xx are temporary, and the next try works. */
static void
test_temporary_then_recovered(void **state)
{
	struct fixture *f = *state;
	new_auth(f, CONFIG_AUTH_REFRESH_TOKEN);
	f->srv.status = 503;
	f->srv.body = "<html>down</html>";
	get(f, 0);
	run_until(f, 0);
	assert_int_equal(f->status[0], AUTH_TEMPORARY);
	f->srv.status = 200;
	f->srv.body = NULL;
	get(f, 1);
	run_until(f, 1);
	assert_int_equal(f->status[1], AUTH_OK);
	assert_int_equal(auth_requests(f->auth), 2);
}

static void
test_connection_refused(void **state)
{
	struct fixture *f = *state;
	/* A port that was just free: bind, note it, close. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &len), 0);
	close(s);
	snprintf(login_url, sizeof(login_url), "http://127.0.0.1:%d",
		 ntohs(sin.sin_port));
	new_auth(f, CONFIG_AUTH_CLIENT_CREDENTIALS);
	get(f, 0);
	run_until(f, 0);
	assert_int_equal(f->status[0], AUTH_TEMPORARY);
	assert_non_null(strstr(f->err[0], "token request failed"));
	assert_null(auth_access_token(f->auth));
}

static void
test_static_token(void **state)
{
	struct fixture *f = *state;
	new_auth(f, CONFIG_AUTH_TOKEN);
	assert_string_equal(auth_access_token(f->auth), access_token);
	assert_string_equal(auth_instance_url(f->auth), instance_url);
	get(f, 0);
	run_until(f, 0);
	assert_int_equal(f->status[0], AUTH_OK);
	/* Another token's 401 does not touch it. */
	auth_invalidate(f->auth, "00Dxx!some-other-token");
	assert_string_equal(auth_access_token(f->auth), access_token);
	/* Its own 401: it cannot be renewed, and says so. */
	auth_invalidate(f->auth, access_token);
	assert_null(auth_access_token(f->auth));
	get(f, 1);
	get(f, 2);
	run_until(f, 1);
	run_until(f, 2);
	for (int i = 1; i <= 2; i++) {
		assert_int_equal(f->status[i], AUTH_PERMANENT);
		assert_non_null(strstr(f->err[i], "cannot be renewed"));
		assert_non_null(strstr(f->err[i], "SFDC_ACCESS_TOKEN"));
		assert_null(strstr(f->err[i], access_token));
	}
	assert_int_equal(f->srv.nseen, 0);
	assert_int_equal(auth_requests(f->auth), 0);
}

static void
test_cancel(void **state)
{
	struct fixture *f = *state;
	new_auth(f, CONFIG_AUTH_PASSWORD);
	get(f, 0);
	get(f, 1);
	auth_cancel(f->auth, &f->slots[0]);
	run_until(f, 1);
	run_for(f, 50);
	assert_int_equal(f->called[0], 0);
	assert_int_equal(f->called[1], 1);
}

static void
test_bad_key_named(void **state)
{
	struct fixture *f = *state;
	char err[512];
	char bad[] = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
	char missing[] = "/nonexistent/key.pem";
	f->cfg.auth = CONFIG_AUTH_JWT;
	f->cfg.jwt_key = bad;
	assert_null(auth_new(f->base, f->http, &f->cfg, err, sizeof(err)));
	assert_int_equal(strncmp(err, "SFDC_JWT_KEY: ", 14), 0);
	f->cfg.jwt_key = NULL;
	f->cfg.jwt_key_file = missing;
	assert_null(auth_new(f->base, f->http, &f->cfg, err, sizeof(err)));
	assert_int_equal(strncmp(err, "SFDC_JWT_KEY_FILE: ", 19), 0);
}

/* Every flow at debug level, a refusal included: the log never holds a
 * secret, the assertion or the access token. */
static void
test_no_secret_in_log(void **state)
{
	struct fixture *f = *state;
	char path[] = "/tmp/sfrelay-auth-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	log_set_level(LOG_DEBUG);
	f->cfg.security_token = security_token;
	enum config_auth flows[] = {CONFIG_AUTH_JWT, CONFIG_AUTH_PASSWORD,
				    CONFIG_AUTH_CLIENT_CREDENTIALS,
				    CONFIG_AUTH_REFRESH_TOKEN, CONFIG_AUTH_TOKEN};
	for (int i = 0; i < 5; i++) {
		new_auth(f, flows[i]);
		get(f, i);
		run_until(f, i);
		auth_free(f->auth);
		f->auth = NULL;
	}
	f->srv.status = 400;
	f->srv.body = "{\"error\":\"invalid_grant\",\"error_description\":"
		      "\"authentication failure\"}";
	new_auth(f, CONFIG_AUTH_PASSWORD);
	get(f, 5);
	run_until(f, 5);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	log_set_level(LOG_ERROR);

	char log[65536];
	ssize_t n = pread(fd, log, sizeof(log) - 1, 0);
	close(fd);
	unlink(path);
	assert_true(n > 0);
	log[n] = '\0';
	assert_non_null(strstr(log, "msg=authenticated"));
	assert_non_null(strstr(log, "flow=jwt"));
	const char *secrets[] = {client_secret, password, security_token,
				 refresh_token, access_token, "00Dxx!token-"};
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		if (strstr(log, secrets[i]) != NULL)
			fail_msg("%s is in the log", secrets[i]);
	/* Nor the assertion (its first part is the same for every JWT). */
	char *a = form_value(f->srv.seen[0], "assertion");
	assert_non_null(a);
	*strchr(a, '.') = '\0';
	assert_null(strstr(log, a));
	free(a);
	char line[128];
	const char *p = strchr(f->keys->pem, '\n') + 1;
	snprintf(line, sizeof(line), "%.40s", p);
	assert_null(strstr(log, line));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_token_table),
		cmocka_unit_test(test_form_escape),
		cmocka_unit_test(test_error_hints),
		cmocka_unit_test_setup_teardown(test_client_credentials, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_refresh_token, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_password, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jwt_bearer, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_single_flight, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_join_inflight, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_refusals_are_permanent,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_temporary_then_recovered,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_static_token, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_key_named, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_no_secret_in_log, setup,
						teardown),
	};
	return cmocka_run_group_tests_name("auth", tests, group_setup,
					   group_teardown);
}
