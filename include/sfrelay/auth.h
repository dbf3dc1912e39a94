#ifndef SFRELAY_AUTH_H
#define SFRELAY_AUTH_H

#include <stddef.h>

struct config;
struct evbuffer;
struct event_base;
struct http;

/*
 * OAuth 2.0 access tokens for REST and CometD, from
 * <SFDC_LOGIN_URL>/services/oauth2/token by the flow cfg->auth names:
 *
 *   jwt                 grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
 *                       and an RS256 assertion {iss: client id, sub:
 *                       username, aud: jwt_audience(login URL), exp: now
 *                       + 3 min}, signed with the configured private key
 *   client_credentials  client_id + client_secret
 *   refresh_token       client_id (+ client_secret when set) + refresh_token
 *   password            client_id + client_secret + username + password
 *                       followed by the security token
 *   token               no request: SFDC_ACCESS_TOKEN and
 *                       SFDC_INSTANCE_URL are the token; once refused it
 *                       cannot be renewed, and auth_get() reports
 *                       AUTH_PERMANENT with a message saying so
 *
 * REST and CometD go to the token response's instance_url.
 *
 * Renewal is single-flight: a client whose request was refused with a
 * 401 (any shape) calls auth_invalidate(auth, the token it used) and then
 * auth_get(). However many clients do so, one token request goes out and
 * every waiter is told when it ends; a client that saw the 401 of a token
 * already replaced gets the new token without another request. Retrying
 * after AUTH_TEMPORARY (network failure, 5xx, malformed reply) with a
 * back-off is the caller's part.
 *
 * Secrets (key, secret, password, refresh and access tokens, assertions)
 * never reach a log line or an error message; buffers that held them are
 * wiped before they are freed.
 */

struct auth;

enum auth_status {
	AUTH_OK = 0,
	AUTH_TEMPORARY, /* network, 5xx, malformed reply: try again later */
	AUTH_PERMANENT, /* credentials refused (invalid_grant, ...): exit 77 */
};

/* Told once per auth_get() call, always from the event loop. err is a
 * borrowed message when status != AUTH_OK: Salesforce's error and
 * error_description, and a hint about the likely cause when one is
 * known. */
typedef void auth_done_fn(void *arg, enum auth_status status,
			  const char *err);

/*
 * base, http and cfg are borrowed and must outlive the auth; cfg->auth
 * must be settled (config_load() succeeded). Returns NULL with a reason
 * in err when the JWT key cannot be loaded (naming SFDC_JWT_KEY or
 * SFDC_JWT_KEY_FILE) or memory ran out.
 */
struct auth *auth_new(struct event_base *base, struct http *http,
		      const struct config *cfg, char *err, size_t errlen);
/* Drops waiters without telling them. NULL is a no-op. */
void auth_free(struct auth *auth);

/*
 * Ensures a token: if one is held, cb runs on the next loop turn; else a
 * token request starts (or the running one is joined). Returns 0, or -1
 * when out of memory or the request cannot be built (cb never runs).
 */
int auth_get(struct auth *auth, auth_done_fn *cb, void *arg);
/* Removes every pending callback registered with this arg. */
void auth_cancel(struct auth *auth, void *arg);
/*
 * Forgets the held token if it is still `stale` (the one a request was
 * refused with), so the next auth_get() fetches a new one. Passing the
 * refused token keeps two callers that saw the same 401 from renewing
 * twice. With the static token flow this marks the token refused.
 */
void auth_invalidate(struct auth *auth, const char *stale);

/* The held token and instance URL, or NULL. Borrowed: valid until the
 * next auth_invalidate() or token renewal. Never log the token. */
const char *auth_access_token(const struct auth *auth);
const char *auth_instance_url(const struct auth *auth);
/* Token requests sent so far (tests, stats). */
unsigned long auth_requests(const struct auth *auth);

/*
 * Pure: decodes a token endpoint reply. On AUTH_OK sets *token and
 * *instance_url (owned by the caller; free()). Otherwise writes the reason
 * into err (Salesforce's error and error_description; never a secret).
 */
enum auth_status auth_parse_token(long http_status, const char *body,
				  size_t len, char **token,
				  char **instance_url, char *err,
				  size_t errlen);

/* Pure: a hint for a refused token request's error text (what to check
 * in the connected app or the settings), or NULL. Static storage. */
const char *auth_error_hint(const char *err);

/* Pure: appends the application/x-www-form-urlencoded form of s. */
int auth_form_escape(struct evbuffer *out, const char *s);

#endif /* SFRELAY_AUTH_H */
