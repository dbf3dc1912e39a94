/*
 * OAuth 2.0 token handling. Waiters queue up behind one token request so
 * a burst of 401s produces one renewal, not one per caller.
 */
#include "sfrelay/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <json-c/json.h>

#include "sfrelay/config.h"
#include "sfrelay/http.h"
#include "sfrelay/jwt.h"
#include "sfrelay/log.h"

#define JWT_GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"
/* The largest token reply parsed (real ones are well under 2 KiB). */
#define AUTH_MAX_REPLY (1024u * 1024u)

struct auth_waiter {
	auth_done_fn *cb;
	void *arg;
	struct auth_waiter *next;
};

struct auth {
	struct event_base *base;
	struct http *http;
	const struct config *cfg;
	struct jwt_key *key; /* jwt flow */
	char audience[512];  /* jwt flow: the aud claim */
	char *token;
	char *instance_url;
	int static_refused; /* token flow: Salesforce refused the token */
	unsigned long requests;
	struct http_request *inflight;
	struct auth_waiter *waiters;
	/* Waiters told on the next loop turn (token already held). */
	struct event *notify;
	enum auth_status last_status;
	char last_err[512];
};

static void notify_all(evutil_socket_t fd, short what, void *arg);

/* Wipes and frees a string that held a secret. */
static void
free_secret(char *p)
{
	if (p == NULL)
		return;
	volatile char *v = p;
	while (*v != '\0')
		*v++ = '\0';
	free(p);
}

/* The static token flow: the configured token is the held one. */
static int
hold_static_token(struct auth *auth)
{
	auth->token = strdup(auth->cfg->access_token);
	auth->instance_url = strdup(auth->cfg->instance_url);
	return auth->token != NULL && auth->instance_url != NULL ? 0 : -1;
}

static void clear_token(struct auth *auth);

struct auth *
auth_new(struct event_base *base, struct http *http, const struct config *cfg,
	 char *err, size_t errlen)
{
	char why[384];
	struct auth *auth = calloc(1, sizeof(*auth));
	if (auth == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	auth->base = base;
	auth->http = http;
	auth->cfg = cfg;
	auth->notify = event_new(base, -1, 0, notify_all, auth);
	if (auth->notify == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	switch (cfg->auth) {
	case CONFIG_AUTH_JWT:
		auth->key = cfg->jwt_key != NULL
				    ? jwt_key_from_pem(cfg->jwt_key,
						       strlen(cfg->jwt_key), why,
						       sizeof(why))
				    : jwt_key_from_file(cfg->jwt_key_file, why,
							sizeof(why));
		if (auth->key == NULL) {
			snprintf(err, errlen, "%s: %s",
				 cfg->jwt_key != NULL ? "SFDC_JWT_KEY"
						      : "SFDC_JWT_KEY_FILE",
				 why);
			goto fail;
		}
		if (jwt_audience(cfg->login_url, auth->audience,
				 sizeof(auth->audience)) != 0) {
			snprintf(err, errlen, "SFDC_LOGIN_URL: too long");
			goto fail;
		}
		break;
	case CONFIG_AUTH_TOKEN:
		if (hold_static_token(auth) != 0) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		break;
	case CONFIG_AUTH_CLIENT_CREDENTIALS:
	case CONFIG_AUTH_REFRESH_TOKEN:
	case CONFIG_AUTH_PASSWORD:
		break;
	case CONFIG_AUTH_NONE:
	default:
		snprintf(err, errlen, "SFDC_AUTH: no authentication flow");
		goto fail;
	}
	/* The list ends at the first NULL key: what a flow does not use is
	 * left out. */
	log_info("authentication", "flow", config_auth_name(cfg->auth),
		 "chosen_by", cfg->auth_inferred ? "inferred" : "SFDC_AUTH",
		 cfg->auth != CONFIG_AUTH_TOKEN ? "login_url" : NULL,
		 cfg->login_url, cfg->auth == CONFIG_AUTH_JWT ? "jwt_aud" : NULL,
		 auth->audience, NULL);
	if (cfg->auth == CONFIG_AUTH_PASSWORD)
		log_warn("the username-password flow is blocked by default in "
			 "orgs created since Summer '23; prefer SFDC_AUTH=jwt",
			 NULL);
	if (cfg->auth == CONFIG_AUTH_TOKEN)
		log_warn("a static access token cannot be renewed: the relay "
			 "stops (status 77) once Salesforce refuses it",
			 NULL);
	return auth;
fail:
	auth_free(auth);
	return NULL;
}

static void
clear_token(struct auth *auth)
{
	free_secret(auth->token);
	free(auth->instance_url);
	auth->token = NULL;
	auth->instance_url = NULL;
}

void
auth_free(struct auth *auth)
{
	if (auth == NULL)
		return;
	if (auth->inflight != NULL)
		http_cancel(auth->http, auth->inflight);
	while (auth->waiters != NULL) {
		struct auth_waiter *w = auth->waiters;
		auth->waiters = w->next;
		free(w);
	}
	if (auth->notify != NULL)
		event_free(auth->notify);
	clear_token(auth);
	jwt_key_free(auth->key);
	free(auth);
}

/* Tells every waiter the last outcome. A callback may call auth_get()
 * again (that waiter joins a fresh list), so detach the list first. */
static void
notify_all(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct auth *auth = arg;
	/* A deferred notice that a renewal overtook: the reply tells all. */
	if (fd == -1 && what != 0 && auth->inflight != NULL)
		return;
	struct auth_waiter *w = auth->waiters;
	auth->waiters = NULL;
	enum auth_status st = auth->last_status;
	char err[sizeof(auth->last_err)];
	memcpy(err, auth->last_err, sizeof(err));
	while (w != NULL) {
		struct auth_waiter *next = w->next;
		w->cb(w->arg, st, st == AUTH_OK ? NULL : err);
		free(w);
		w = next;
	}
}

int
auth_form_escape(struct evbuffer *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
			    c == '_' || c == '~';
		char enc[3] = {'%', hex[c >> 4], hex[c & 15]};
		if (evbuffer_add(out, plain ? (const char *)p : enc,
				 plain ? 1 : 3) != 0)
			return -1;
	}
	return 0;
}

static const char *
json_str(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* OAuth errors that no retry will fix. */
static int
is_permanent_error(const char *code)
{
	static const char *const permanent[] = {
		"invalid_grant", "invalid_client", "invalid_client_id",
		"unsupported_grant_type", "invalid_request", "unauthorized_client",
	};
	for (size_t i = 0; i < sizeof(permanent) / sizeof(permanent[0]); i++)
		if (strcmp(code, permanent[i]) == 0)
			return 1;
	return 0;
}

/* Server text goes into our messages: keep it to one printable line. */
static void
flatten_controls(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

enum auth_status
auth_parse_token(long http_status, const char *body, size_t len, char **token,
		 char **instance_url, char *err, size_t errlen)
{
	enum auth_status st = AUTH_TEMPORARY;
	*token = NULL;
	*instance_url = NULL;
	struct json_tokener *tok = json_tokener_new_ex(16);
	struct json_object *o = NULL;
	if (tok != NULL && len <= AUTH_MAX_REPLY)
		o = json_tokener_parse_ex(tok, body, (int)len);
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen,
			 "token endpoint answered HTTP %ld with a body that "
			 "is not a JSON object",
			 http_status);
		goto out;
	}
	const char *e = json_str(o, "error");
	if (http_status != 200 || e != NULL) {
		const char *d = json_str(o, "error_description");
		snprintf(err, errlen, "token endpoint answered HTTP %ld: %s: %s",
			 http_status, e != NULL ? e : "error",
			 d != NULL ? d : "(no description)");
		if (e != NULL && is_permanent_error(e) && http_status < 500)
			st = AUTH_PERMANENT;
		goto out;
	}
	const char *t = json_str(o, "access_token");
	const char *u = json_str(o, "instance_url");
	if (t == NULL || *t == '\0' || u == NULL ||
	    (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0)) {
		snprintf(err, errlen, "token reply lacks %s",
			 t == NULL || *t == '\0' ? "access_token"
						 : "a valid instance_url");
		goto out;
	}
	*token = strdup(t);
	*instance_url = strdup(u);
	if (*token == NULL || *instance_url == NULL) {
		free(*token);
		free(*instance_url);
		*token = *instance_url = NULL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	size_t ul = strlen(*instance_url);
	while (ul > 0 && (*instance_url)[ul - 1] == '/')
		(*instance_url)[--ul] = '\0';
	st = AUTH_OK;
out:
	if (st != AUTH_OK && errlen > 0)
		flatten_controls(err);
	json_object_put(o);
	json_tokener_free(tok);
	return st;
}

/* Refusals whose cause is usually in the connected app or the settings,
 * by a fragment of Salesforce's error text. */
static const struct {
	const char *fragment;
	const char *hint;
} hints[] = {
	{"user hasn't approved this consumer",
	 "the user is not pre-authorized: in the connected app's policies "
	 "set Permitted Users to \"Admin approved users are pre-authorized\" "
	 "and add the user's profile or a permission set"},
	{"invalid assertion",
	 "the JWT was refused: SFDC_JWT_KEY must be the private key of the "
	 "certificate uploaded to the connected app (Use digital "
	 "signatures)"},
	{"audience is invalid",
	 "the aud claim follows SFDC_LOGIN_URL: use https://login.salesforce."
	 "com, https://test.salesforce.com or the org's My Domain URL"},
	{"expired authorization code",
	 "the JWT's exp was refused: check this machine's clock"},
	{"client identifier invalid",
	 "check SFDC_CLIENT_ID (the consumer key; a new connected app can "
	 "take minutes to become usable)"},
	{"invalid client credentials",
	 "check SFDC_CLIENT_SECRET (the consumer secret)"},
	{"request not supported on this domain",
	 "this grant needs SFDC_LOGIN_URL set to the org's My Domain URL"},
	{"no client credentials user enabled",
	 "enable the client credentials flow and set its Run As user in the "
	 "connected app"},
	{"expired access/refresh token",
	 "SFDC_REFRESH_TOKEN was revoked or has expired: authorize the "
	 "connected app again for a new one"},
	{"authentication failure",
	 "check SFDC_USERNAME, SFDC_PASSWORD and SFDC_SECURITY_TOKEN; the "
	 "username-password flow may also be blocked in this org: prefer "
	 "SFDC_AUTH=jwt"},
};

const char *
auth_error_hint(const char *err)
{
	for (size_t i = 0; err != NULL && i < sizeof(hints) / sizeof(hints[0]);
	     i++)
		if (strstr(err, hints[i].fragment) != NULL)
			return hints[i].hint;
	return NULL;
}

static void
on_token_reply(void *arg, const struct http_response *resp)
{
	struct auth *auth = arg;
	auth->inflight = NULL;
	clear_token(auth);
	if (!resp->transport_ok) {
		auth->last_status = AUTH_TEMPORARY;
		snprintf(auth->last_err, sizeof(auth->last_err),
			 "token request failed: %s", resp->error);
	} else {
		auth->last_status = auth_parse_token(
			resp->status, resp->body, resp->body_len, &auth->token,
			&auth->instance_url, auth->last_err,
			sizeof(auth->last_err));
	}
	const char *hint = auth->last_status == AUTH_PERMANENT
				   ? auth_error_hint(auth->last_err)
				   : NULL;
	if (hint != NULL) {
		size_t n = strlen(auth->last_err);
		snprintf(auth->last_err + n, sizeof(auth->last_err) - n,
			 " (hint: %s)", hint);
	}
	if (auth->last_status == AUTH_OK) {
		log_add_token(auth->token);
		log_info("authenticated", "flow",
			 config_auth_name(auth->cfg->auth), "instance_url",
			 auth->instance_url, NULL);
	}
	notify_all(-1, 0, auth);
}

static int
add_field(struct evbuffer *b, const char *name, const char *value)
{
	if (evbuffer_get_length(b) > 0 && evbuffer_add(b, "&", 1) != 0)
		return -1;
	if (evbuffer_add_printf(b, "%s=", name) < 0)
		return -1;
	return auth_form_escape(b, value);
}

/* Appends a signed assertion for now + 3 minutes; the buffer that held
 * it is wiped. */
static int
add_assertion(struct auth *auth, struct evbuffer *form)
{
	char err[384];
	const struct config *cfg = auth->cfg;
	struct jwt_claims claims = {
		.iss = cfg->client_id,
		.sub = cfg->username,
		.aud = auth->audience,
		.exp = (long long)time(NULL) + JWT_LIFETIME_MAX_S,
	};
	struct evbuffer *jwt = evbuffer_new();
	int rc = -1;
	if (jwt == NULL)
		return -1;
	if (jwt_sign(auth->key, &claims, jwt, err, sizeof(err)) != 0) {
		log_error("cannot build the JWT assertion", "error", err, NULL);
		goto out;
	}
	size_t n = evbuffer_get_length(jwt);
	char *text = (char *)evbuffer_pullup(jwt, -1);
	/* base64url and dots, all unreserved: added as they are. */
	rc = add_field(form, "assertion", "");
	if (rc == 0)
		rc = evbuffer_add(form, text, n);
	memset(text, 0, n);
out:
	evbuffer_free(jwt);
	return rc;
}

/* The form of the configured grant. */
static int
build_form(struct auth *auth, struct evbuffer *form)
{
	const struct config *cfg = auth->cfg;
	int rc = 0;

	switch (cfg->auth) {
	case CONFIG_AUTH_JWT:
		rc |= add_field(form, "grant_type", JWT_GRANT);
		rc |= add_assertion(auth, form);
		break;
	case CONFIG_AUTH_CLIENT_CREDENTIALS:
		rc |= add_field(form, "grant_type", "client_credentials");
		rc |= add_field(form, "client_id", cfg->client_id);
		rc |= add_field(form, "client_secret", cfg->client_secret);
		break;
	case CONFIG_AUTH_REFRESH_TOKEN:
		rc |= add_field(form, "grant_type", "refresh_token");
		rc |= add_field(form, "client_id", cfg->client_id);
		if (cfg->client_secret != NULL)
			rc |= add_field(form, "client_secret",
					cfg->client_secret);
		rc |= add_field(form, "refresh_token", cfg->refresh_token);
		break;
	case CONFIG_AUTH_PASSWORD:
		rc |= add_field(form, "grant_type", "password");
		rc |= add_field(form, "client_id", cfg->client_id);
		rc |= add_field(form, "client_secret", cfg->client_secret);
		rc |= add_field(form, "username", cfg->username);
		rc |= add_field(form, "password", cfg->password);
		rc |= auth_form_escape(form, cfg->security_token);
		break;
	case CONFIG_AUTH_TOKEN:
	case CONFIG_AUTH_NONE:
	default:
		rc = -1;
		break;
	}
	return rc != 0 ? -1 : 0;
}

static struct http_request *
token_request(struct auth *auth)
{
	char url[1024];
	snprintf(url, sizeof(url), "%s/services/oauth2/token",
		 auth->cfg->login_url);
	struct http_request *req = http_request_new("POST", url);
	struct evbuffer *form = evbuffer_new();
	if (req == NULL || form == NULL)
		goto fail;
	int rc = build_form(auth, form);
	size_t n = evbuffer_get_length(form);
	unsigned char *flat = evbuffer_pullup(form, -1);
	if (rc == 0)
		rc = http_request_body(req, flat, n);
	if (flat != NULL)
		memset(flat, 0, n); /* the form holds the credentials */
	if (rc != 0 || http_request_header(req, "Content-Type",
					   "application/x-www-form-urlencoded") !=
			       0 ||
	    http_request_header(req, "Accept", "application/json") != 0)
		goto fail;
	/* A token reply is a few hundred bytes: refuse a huge one before
	 * it is buffered, not after. */
	http_request_max_body(req, AUTH_MAX_REPLY);
	evbuffer_free(form);
	return req;
fail:
	if (form != NULL)
		evbuffer_free(form);
	http_request_free(req);
	return NULL;
}

int
auth_get(struct auth *auth, auth_done_fn *cb, void *arg)
{
	struct auth_waiter *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->cb = cb;
	w->arg = arg;
	w->next = auth->waiters;
	auth->waiters = w;
	if (auth->token != NULL || auth->static_refused) {
		auth->last_status =
			auth->token != NULL ? AUTH_OK : AUTH_PERMANENT;
		if (auth->token == NULL)
			snprintf(auth->last_err, sizeof(auth->last_err),
				 "Salesforce refused SFDC_ACCESS_TOKEN (it "
				 "expired or was revoked), and a static access "
				 "token cannot be renewed: set a new "
				 "SFDC_ACCESS_TOKEN, or use a renewable flow "
				 "(SFDC_AUTH=jwt, client_credentials or "
				 "refresh_token)");
		event_active(auth->notify, EV_TIMEOUT, 0);
		return 0;
	}
	if (auth->inflight != NULL)
		return 0;
	struct http_request *req = token_request(auth);
	if (req == NULL)
		goto fail;
	auth->inflight = req;
	auth->requests++;
	if (http_submit(auth->http, req, on_token_reply, auth) != 0) {
		auth->inflight = NULL;
		goto fail;
	}
	log_debug("token requested", "flow", config_auth_name(auth->cfg->auth),
		  NULL);
	return 0;
fail:
	auth->waiters = w->next;
	free(w);
	return -1;
}

void
auth_cancel(struct auth *auth, void *arg)
{
	struct auth_waiter **pp = &auth->waiters;
	while (*pp != NULL) {
		if ((*pp)->arg == arg) {
			struct auth_waiter *dead = *pp;
			*pp = dead->next;
			free(dead);
		} else {
			pp = &(*pp)->next;
		}
	}
}

void
auth_invalidate(struct auth *auth, const char *stale)
{
	if (auth->token == NULL || stale == NULL ||
	    strcmp(auth->token, stale) != 0)
		return;
	clear_token(auth);
	if (auth->cfg->auth == CONFIG_AUTH_TOKEN)
		auth->static_refused = 1;
}

unsigned long
auth_requests(const struct auth *auth)
{
	return auth->requests;
}

const char *
auth_access_token(const struct auth *auth)
{
	return auth->token;
}

const char *
auth_instance_url(const struct auth *auth)
{
	return auth->instance_url;
}
