#ifndef SFMOCK_QUERY_H
#define SFMOCK_QUERY_H

struct evhttp_request;
struct org;

/*
 * sfmock's REST query API, with its own record store and its own small
 * SOQL reader (it shares nothing with the relay's soql module, so a
 * misreading cannot hide on both sides of a test):
 *
 *   GET  /services/data/vXX.X/query?q=SOQL          first page
 *   GET  /services/data/vXX.X/query/<locator>-<n>   later pages
 *                                                   (nextRecordsUrl)
 *   POST /services/data/vXX.X/composite             up to 25 GET
 *        subrequests, at most 5 of them queries; counts as one call
 *   POST /_mock/records?object=O&count=N&time=ISO&step_ms=K
 *        inserts generated records (see docs/polling.md, "Testing")
 *   POST /_mock/api-usage?used=N&max=M              the usage the
 *        Sforce-Limit-Info header reports from now on
 *   GET  /_mock/query-stats                         counters as JSON
 *
 * SOQL subset: SELECT f[, f...] FROM Object [WHERE cond] [ORDER BY f
 * [ASC|DESC] [NULLS FIRST|LAST][, ...]] [LIMIT n]; fields may be paths
 * through a relationship (CreatedBy.Username) or FIELDS(STANDARD) (ALL
 * and CUSTOM need LIMIT 200 or less); conditions combine field op value
 * (= != <> < <= > >=, LIKE, [NOT] IN (...)) with AND, OR, NOT and
 * parentheses; values are 'strings' (backslash escapes), numbers,
 * true/false/null, dateTime literals (2026-11-26T19:20:01Z, with
 * milliseconds or an offset) and dates. Anything else gets Salesforce's
 * 400 MALFORMED_QUERY shape; an unknown object INVALID_TYPE, an unknown
 * field INVALID_FIELD. Pages hold 2,000 records; a result set is frozen
 * when the query runs (a cursor), as Salesforce's query locators are.
 * Every request under /services/data needs a valid token (401
 * INVALID_SESSION_ID otherwise) and every answer carries
 * Sforce-Limit-Info: api-usage=N/M; per-app-api-usage=...; a query, a
 * next page and a whole composite request each count one call.
 */

struct query;

/* org is borrowed and must outlive the handler. NULL when out of
 * memory. */
struct query *query_new(struct org *org);
void query_free(struct query *q);

/* Serves req and returns 1 when path is one of the above; returns 0 and
 * leaves req alone otherwise. */
int query_handle(struct query *q, struct evhttp_request *req, const char *path);

#endif /* SFMOCK_QUERY_H */
