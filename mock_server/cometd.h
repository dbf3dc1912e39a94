#ifndef SFMOCK_COMETD_H
#define SFMOCK_COMETD_H

struct evbuffer;
struct event_base;
struct evhttp_request;
struct fault_hit;
struct fault_plan;
struct org;

/*
 * The CometD endpoint, POST /cometd/<version>: Bayeux long polling as
 * Salesforce serves it (handshake, subscribe with the replay extension,
 * connect held until events arrive or the timeout passes, disconnect),
 * with its clients, their cookies and subscription cursors.
 *
 * It registers itself as the org's publish hook, so every publish wakes
 * the held connects that have something to deliver (after the current
 * callback returns, so a burst goes out in one response).
 */

struct cometd;

/* base and org are borrowed and must outlive the endpoint. Returns NULL
 * when out of memory. */
struct cometd *cometd_new(struct event_base *base, struct org *org);
/* Forgets every client; held requests are left to evhttp_free(), which
 * must run after this. */
void cometd_free(struct cometd *cd);

/* Handles a request whose path starts with "/cometd". */
void cometd_handle(struct cometd *cd, struct evhttp_request *req);

/* Forgets every client, answering held connects with 403::Unknown client
 * (what a server restart looks like to a client). Returns how many. */
unsigned cometd_drop_clients(struct cometd *cd);

/* Answers every held connect with 401::Authentication invalid (what a
 * revoked session looks like); call after org_tokens_revoke(). */
void cometd_sessions_revoked(struct cometd *cd);

/* The fault plan whose verdicts (fault_current) the endpoint carries
 * out; borrowed, NULL for none. */
void cometd_set_faults(struct cometd *cd, struct fault_plan *plan);
/* That plan (borrowed), or NULL: other endpoints read their verdicts
 * from it. */
struct fault_plan *cometd_faults(struct cometd *cd);
/* Answers req (any endpoint) with the streamed hostile body of hit
 * (huge_body, huge_padding, deep_nesting or trickle) around an empty
 * array, status 200. */
void cometd_send_hostile(struct cometd *cd, struct evhttp_request *req,
                         const struct fault_hit *hit);

/*
 * The traffic log, for tests: the last 4096 entries, each a message the
 * endpoint received (its channel, clientId, and for a subscribe the
 * subscription and the replay id it asked for), a fault rule that fired
 * (noted by the fault plan), or a reply a fault altered. Times are ms
 * since the endpoint started, on a monotonic clock.
 */
void cometd_note_fault(struct cometd *cd, const char *channel,
                       const char *action, int rule);
/* Appends the log as a JSON array, oldest first. Returns 0 or -1. */
int cometd_traffic_json(const struct cometd *cd, struct evbuffer *out);

#endif /* SFMOCK_COMETD_H */
