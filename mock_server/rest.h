#ifndef SFMOCK_REST_H
#define SFMOCK_REST_H

struct cometd;
struct evhttp_request;
struct fault_plan;
struct org;

/*
 * Everything that is not CometD:
 *   POST /services/oauth2/token             OAuth token endpoint (oauth.c)
 *   POST /services/data/vXX.X/sobjects/X__e publish a platform event
 *   POST /_mock/publish?channel=C&count=N   test publisher (no auth)
 *   GET  /_mock/stats                       counters as JSON
 *   POST /_mock/revoke-tokens               invalidate every token
 *   POST /_mock/drop-clients                forget every Bayeux client
 *   POST /_mock/fault, GET|DELETE /_mock/faults   the fault plan
 *   GET  /_mock/messages                    the CometD traffic log
 *   POST /_mock/declare?channel=C           declare a channel
 * and the Salesforce-style 404 for anything else.
 */

struct rest;

/* org and cd are borrowed and must outlive the handler. Returns NULL
 * when out of memory. */
struct rest *rest_new(struct org *org, struct cometd *cd);
void rest_free(struct rest *rest);

/* Handles any request that is not for /cometd. */
void rest_handle(struct rest *rest, struct evhttp_request *req);

/* The fault plan behind /_mock/fault and /_mock/faults; borrowed, NULL
 * for none. */
void rest_set_faults(struct rest *rest, struct fault_plan *plan);

#endif /* SFMOCK_REST_H */
