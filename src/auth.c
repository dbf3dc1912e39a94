/*
 * OAuth 2.0 token handling. Waiters queue up behind one token request so
 * a burst of 401s produces one renewal, not one per caller.
 */
#include "sfrelay/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <json-c/json.h>

#include "sfrelay/config.h"
#include "sfrelay/http.h"
#include "sfrelay/log.h"

struct auth_waiter {
	auth_done_fn *cb;
	void *arg;
	struct auth_waiter *next;
};

struct auth {
	struct event_base *base;
	struct http *http;
	const struct config *cfg;
	char *token;
	char *instance_url;
	struct http_request *inflight;
	struct auth_waiter *waiters;
	/* Waiters told on the next loop turn (token already held). */
	struct event *notify;
	enum auth_status last_status;
	char last_err[256];
};

static void notify_all(evutil_socket_t fd, short what, void *arg);

struct auth *
auth_new(struct event_base *base, struct http *http, const struct config *cfg)
{
	struct auth *auth = calloc(1, sizeof(*auth));
	if (auth == NULL)
		return NULL;
	auth->base = base;
	auth->http = http;
	auth->cfg = cfg;
	auth->notify = event_new(base, -1, 0, notify_all, auth);
	if (auth->notify == NULL) {
		free(auth);
		return NULL;
	}
	return auth;
}

static void
clear_token(struct auth *auth)
{
	if (auth->token != NULL) {
		memset(auth->token, 0, strlen(auth->token));
		free(auth->token);
	}
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
	event_free(auth->notify);
	clear_token(auth);
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
	if (tok != NULL && len <= 1024 * 1024)
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
	if (auth->last_status == AUTH_OK) {
		log_add_secret(auth->token);
		log_info("authenticated", "instance_url", auth->instance_url,
			 NULL);
	}
	notify_all(-1, 0, auth);
}

static int
add_field(struct evbuffer *b, const char *name, const char *value, int first)
{
	if (!first && evbuffer_add(b, "&", 1) != 0)
		return -1;
	if (evbuffer_add_printf(b, "%s=", name) < 0)
		return -1;
	return auth_form_escape(b, value);
}

static struct http_request *
password_request(struct auth *auth)
{
	const struct config *cfg = auth->cfg;
	char url[1024];
	snprintf(url, sizeof(url), "%s/services/oauth2/token", cfg->login_url);
	struct http_request *req = http_request_new("POST", url);
	struct evbuffer *form = evbuffer_new();
	if (req == NULL || form == NULL)
		goto fail;
	int rc = add_field(form, "grant_type", "password", 1);
	rc |= add_field(form, "client_id", cfg->client_id, 0);
	rc |= add_field(form, "client_secret", cfg->client_secret, 0);
	rc |= add_field(form, "username", cfg->username, 0);
	rc |= add_field(form, "password", cfg->password, 0);
	rc |= auth_form_escape(form, cfg->security_token);
	if (rc != 0)
		goto fail;
	size_t n = evbuffer_get_length(form);
	unsigned char *flat = evbuffer_pullup(form, -1);
	rc = http_request_body(req, flat, n);
	memset(flat, 0, n); /* the form holds the password */
	if (rc != 0 || http_request_header(req, "Content-Type",
					   "application/x-www-form-urlencoded") !=
			       0 ||
	    http_request_header(req, "Accept", "application/json") != 0)
		goto fail;
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
	if (auth->token != NULL) {
		auth->last_status = AUTH_OK;
		event_active(auth->notify, EV_TIMEOUT, 0);
		return 0;
	}
	if (auth->inflight != NULL)
		return 0;
	struct http_request *req = password_request(auth);
	if (req == NULL)
		goto fail;
	auth->inflight = req;
	if (http_submit(auth->http, req, on_token_reply, auth) != 0) {
		auth->inflight = NULL;
		goto fail;
	}
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
	if (auth->token != NULL && stale != NULL &&
	    strcmp(auth->token, stale) == 0)
		clear_token(auth);
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
