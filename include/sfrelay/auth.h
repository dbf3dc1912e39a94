#ifndef SFRELAY_AUTH_H
#define SFRELAY_AUTH_H

#include <stddef.h>

struct config;
struct event_base;
struct http;

/*
 * OAuth 2.0 access tokens for REST and CometD. This version implements
 * the username-password flow (grant_type=password) against
 * <SFDC_LOGIN_URL>/services/oauth2/token.
 *
 * Requests for a token are single-flight: however many callers ask while
 * a token request is running, one request goes out and every waiter is
 * told when it ends.
 */

struct auth;

enum auth_status {
	AUTH_OK = 0,
	AUTH_TEMPORARY, /* network, 5xx, malformed reply: try again later */
	AUTH_PERMANENT, /* credentials refused (invalid_grant, ...): exit 77 */
};

/* Told once per auth_get() call, always from the event loop. err is a
 * borrowed message when status != AUTH_OK. */
typedef void auth_done_fn(void *arg, enum auth_status status,
			  const char *err);

/* base, http and cfg are borrowed and must outlive the auth. */
struct auth *auth_new(struct event_base *base, struct http *http,
		      const struct config *cfg);
/* Drops waiters without telling them. NULL is a no-op. */
void auth_free(struct auth *auth);

/*
 * Ensures a token: if one is held, cb runs on the next loop turn; else a
 * token request starts (or the running one is joined). Returns 0, or -1
 * when out of memory.
 */
int auth_get(struct auth *auth, auth_done_fn *cb, void *arg);
/* Removes every pending callback registered with this arg. */
void auth_cancel(struct auth *auth, void *arg);
/*
 * Forgets the held token if it is still `stale` (the one a request was
 * refused with), so the next auth_get() fetches a new one. Passing the
 * refused token keeps two callers that saw the same 401 from renewing
 * twice.
 */
void auth_invalidate(struct auth *auth, const char *stale);

/* The held token and instance URL, or NULL. Borrowed: valid until the
 * next auth_invalidate() or token renewal. Never log the token. */
const char *auth_access_token(const struct auth *auth);
const char *auth_instance_url(const struct auth *auth);

/*
 * Pure: decodes a token endpoint reply. On AUTH_OK sets *token and
 * *instance_url (owned by the caller; free()). Otherwise writes the reason
 * into err (Salesforce's error and error_description; never a secret).
 */
enum auth_status auth_parse_token(long http_status, const char *body,
				  size_t len, char **token,
				  char **instance_url, char *err,
				  size_t errlen);

/* Pure: appends the application/x-www-form-urlencoded form of s. */
struct evbuffer;
int auth_form_escape(struct evbuffer *out, const char *s);

#endif /* SFRELAY_AUTH_H */
