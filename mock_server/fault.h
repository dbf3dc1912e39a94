#ifndef SFMOCK_FAULT_H
#define SFMOCK_FAULT_H

#include <stddef.h>
#include <stdint.h>

struct cometd;
struct evbuffer;
struct event_base;
struct evhttp_request;
struct org;

/*
 * The fault plan: rules that make sfmock misbehave on purpose, so the
 * relay's recovery paths can be driven from a test. A rule names which
 * requests it watches (every CometD POST, the POSTs carrying a given meta
 * channel, the token endpoint or the REST API), which of them it hits
 * (the nth and the count after it, and/or a time window), and what it
 * does to them. Rules come from --fault flags (text form) and from
 * POST /_mock/fault (JSON form); docs/sfmock.md lists the fields.
 *
 * Every request the router gets passes fault_intercept() first. Actions
 * fall in four groups:
 *   - before processing: drop the connection, answer 500 or 503, hold
 *     the request (delay) and then go on;
 *   - side effects, then normal processing: expire every token, forget
 *     every client, trim retention;
 *   - in place of processing the matched messages: the Bayeux error
 *     replies (401 shapes, 403::Unknown client, the concurrent user
 *     limit), and HTTP 401 for the whole request;
 *   - after processing: a malformed or truncated body, the connection
 *     closed instead of the reply, or the connect reply's advice changed;
 *     and the hostile replies: a body of any size generated as it is
 *     sent (one huge message, or the real reply behind a sea of
 *     whitespace), nesting deeper than any parser should follow, a body
 *     that trickles forever, huge headers, events whose replayId is not
 *     a number or that have no "data", a token reply without
 *     instance_url. A request that is never answered (hang) is held
 *     before processing.
 * The last two groups are carried out by the CometD endpoint, which asks
 * fault_current() for the verdict on the request it is handling.
 */

enum fault_action {
	FAULT_NONE = 0,
	FAULT_DROP,
	FAULT_HTTP_500,
	FAULT_HTTP_503,
	FAULT_DELAY,
	FAULT_EXPIRE_TOKENS,
	FAULT_FORGET_CLIENTS,
	FAULT_TRIM_RETENTION,
	FAULT_HTTP_401,
	FAULT_AUTH_INVALID,
	FAULT_HANDSHAKE_DENIED,
	FAULT_UNKNOWN_CLIENT,
	FAULT_CONCURRENT_LIMIT,
	FAULT_MALFORMED,
	FAULT_TRUNCATED,
	FAULT_DROP_AFTER,
	FAULT_ADVICE_RETRY,
	FAULT_ADVICE_HANDSHAKE,
	FAULT_ADVICE_NONE,
	/* Hostile replies (see docs/sfmock.md, "Hostile replies"). */
	FAULT_HANG,
	FAULT_HUGE_BODY,
	FAULT_HUGE_PADDING,
	FAULT_DEEP_NESTING,
	FAULT_TRICKLE,
	FAULT_HUGE_HEADERS,
	FAULT_REPLAY_ID_STRING,
	FAULT_EVENT_NO_DATA,
	FAULT_NO_INSTANCE_URL,
};

/* What a request matches: bits for the meta channels its messages are
 * on, and for the endpoints that are not CometD. */
#define FAULT_M_HANDSHAKE 0x01u
#define FAULT_M_SUBSCRIBE 0x02u
#define FAULT_M_UNSUBSCRIBE 0x04u
#define FAULT_M_CONNECT 0x08u
#define FAULT_M_DISCONNECT 0x10u
#define FAULT_M_OTHER 0x20u /* any other CometD message, or none parsed */
#define FAULT_M_COMETD 0x3fu
#define FAULT_M_TOKEN 0x40u
#define FAULT_M_REST 0x80u

/* The verdict on one request for the CometD endpoint: the action that
 * replaces or alters its reply (FAULT_NONE when none), the messages it
 * applies to (FAULT_M_* bits), and its parameters. */
struct fault_hit {
	enum fault_action action;
	unsigned match;
	int64_t interval_ms; /* FAULT_ADVICE_RETRY */
	int64_t bytes;       /* FAULT_HUGE_BODY, _PADDING, _HEADERS */
	int64_t depth;       /* FAULT_DEEP_NESTING */
	int64_t ms;          /* FAULT_TRICKLE: one byte every ms */
	int rule;            /* the rule's id, for logs */
};

struct fault_plan;

/* base, org and cd are borrowed and must outlive the plan. Returns NULL
 * when out of memory. */
struct fault_plan *fault_plan_new(struct event_base *base, struct org *org,
                                  struct cometd *cd);
/* Forgets the rules and cancels held requests (their connections are
 * left to evhttp_free(), which must run after this). NULL is a no-op. */
void fault_plan_free(struct fault_plan *plan);

/*
 * Adds a rule from its text form ("action=http_503,match=/meta/connect,
 * nth=3") or its JSON form (an object with the same fields). Returns the
 * new rule's id (1, 2, ...), or -1 with a message in err naming the bad
 * field. Windows (after_ms, for_ms) count from this call.
 */
int fault_plan_add_text(struct fault_plan *plan, const char *spec, char *err,
                        size_t errlen);
int fault_plan_add_json(struct fault_plan *plan, const char *json, size_t len,
                        char *err, size_t errlen);
/* Checks a text-form rule without a plan (for the command line).
 * Returns 0, or -1 with a message in err. */
int fault_spec_check(const char *spec, char *err, size_t errlen);
/* Removes every rule; returns how many there were. Requests already
 * held by a delay still complete. */
size_t fault_plan_clear(struct fault_plan *plan);
/* Appends the rules, with their counters and states, as a JSON array. */
int fault_plan_list(const struct fault_plan *plan, struct evbuffer *out);
/* How many times rules fired since start. */
uint64_t fault_plan_fired(const struct fault_plan *plan);

/*
 * The router's hook, called first for every request with the router's
 * own callback. Returns 0 when the plan has nothing for req (the caller
 * goes on), or 1 when it took req: answered it, dropped it, held it
 * (route is called later), or ran route itself with a verdict in force
 * for fault_current(). route must call fault_intercept again, which
 * then returns 0 for that request.
 */
typedef void fault_route_fn(struct evhttp_request *req, void *arg);
int fault_intercept(struct fault_plan *plan, struct evhttp_request *req,
                    fault_route_fn *route, void *arg);
/* The verdict in force for req, or NULL. Borrowed for the duration of
 * the route call; copy it to keep it. plan may be NULL. */
const struct fault_hit *fault_current(const struct fault_plan *plan,
                                      const struct evhttp_request *req);
/* Closes req's connection without a reply, from the event loop (safe to
 * call from inside a request callback). */
void fault_drop_later(struct fault_plan *plan, struct evhttp_request *req);

/* "http_503", ... ("none" for FAULT_NONE). */
const char *fault_action_name(enum fault_action a);

#endif /* SFMOCK_FAULT_H */
