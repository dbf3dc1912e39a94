#ifndef SFRELAY_SOQL_H
#define SFRELAY_SOQL_H

#include <stddef.h>

struct evbuffer;

/*
 * SOQL for the poller and the backfill. Pure: no I/O, no clock, no
 * environment; every function works on the bytes it is given.
 *
 *  1. What to query: the SFRELAY_POLL item syntax -> struct soql_spec.
 *  2. Query text: SELECT <fields> FROM <object> WHERE <time> >= <literal>
 *     ... ORDER BY <time>, Id, with SOQL datetime literals, and its
 *     URL form for ?q=.
 *  3. REST replies: a query page ({totalSize, done, nextRecordsUrl,
 *     records}) and a composite reply decoded into slices of the body
 *     (records stay raw JSON text), Salesforce error bodies, and the
 *     Sforce-Limit-Info header.
 *  4. The high-water mark: a time plus the ids already seen at exactly
 *     that time, its checkpoint text, and the boundary rule that decides
 *     whether a record is new.
 *
 * Syntax of one poll item (docs/polling.md has the full story):
 *
 *   Object[:TimeField][@interval][(field, field, ...)][[condition]]
 *
 *   SetupAuditTrail@60s
 *   LoginHistory@5m(Id, UserId, LoginTime, Status, SourceIp)
 *   Account:SystemModstamp@2m(Id, Name)[Industry = 'Banking']
 *
 * Items are separated by commas; commas inside (), [] or '...' do not
 * separate. The interval is a number with s, m or h, from 1s to 24h
 * (default 60s). Built-in time fields and field lists exist for
 * SetupAuditTrail (CreatedDate), LoginHistory (LoginTime), EventLogFile
 * (CreatedDate) and, for the backfill only, the event monitoring big
 * objects (LoginEvent, ApiEvent, ...: EventDate, de-duplicated on
 * EventIdentifier); any other object defaults to LastModifiedDate and
 * FIELDS(STANDARD). A field list always gets the id and time fields
 * added when it lacks them. The condition is SOQL, ANDed (in
 * parentheses) with the time window; its quotes and parentheses must
 * balance.
 */

/* Most objects in SFRELAY_POLL (and mappings in SFRELAY_BACKFILL). */
#define SOQL_MAX_OBJECTS 32
/* Default poll interval when an item has none. */
#define SOQL_DEFAULT_INTERVAL_MS 60000L
#define SOQL_MIN_INTERVAL_MS 1000L
#define SOQL_MAX_INTERVAL_MS (24L * 3600 * 1000)

/* What to query for one object. All strings owned (soql_spec_clear). */
struct soql_spec {
	char *object;     /* "SetupAuditTrail" */
	char *time_field; /* "CreatedDate" */
	char *id_field;   /* "Id"; "EventIdentifier" for big objects */
	char *fields;     /* SELECT list as sent: "Id, Action, CreatedDate" */
	char *where;      /* the user's condition, or NULL */
	long interval_ms; /* 0 when the item had none and none was wanted */
	int big;          /* event monitoring big object: filter on the
	                     time field only, no ORDER BY, de-duplicate on
	                     id_field */
};

/* Reports one problem (a complete sentence fragment without the
 * variable's name, e.g. "item 2 \"Foo@1x\": ..."). msg borrowed. */
typedef void soql_problem_fn(void *arg, const char *msg);

/*
 * Parses one item (len bytes at text, surrounding blanks allowed) into
 * out, filling in the built-in defaults. want_interval 0 refuses an
 * "@interval" (backfill mappings have none). Returns 0, or -1 with the
 * reason in err (out is then cleared).
 */
int soql_spec_parse(const char *text, size_t len, int want_interval,
                    struct soql_spec *out, char *err, size_t errlen);
void soql_spec_clear(struct soql_spec *spec);
/* Deep copy. Returns 0 or -1 (out of memory; dst cleared). */
int soql_spec_copy(struct soql_spec *dst, const struct soql_spec *src);
/* The built-in spec of a big object ("LoginEvent"), or -1 when object is
 * not one. out owned by the caller. */
int soql_spec_big_object(const char *object, struct soql_spec *out);

/*
 * Calls fn for each top-level comma-separated item of text (commas inside
 * (), [] or '...' do not split; item texts are not trimmed). index counts
 * from 1. Stops at and returns fn's first non-zero return, else 0.
 */
typedef int soql_item_fn(void *arg, const char *item, size_t len, size_t index);
int soql_split(const char *text, soql_item_fn *fn, void *arg);

/*
 * Checks one item of a list for soql_list_parse: len bytes at item (not
 * NUL-terminated, trimmed of blanks, never empty; borrowed for the call).
 * Returns 0 to accept it, or -1 with the reason, a NUL-terminated phrase
 * without the item itself ("object listed twice"), written into why
 * (whylen bytes).
 */
typedef int soql_list_item_fn(void *arg, const char *item, size_t len,
                              char *why, size_t whylen);

/*
 * The comma-separated settings (SFRELAY_POLL, SFRELAY_BACKFILL): splits
 * text as soql_split does (NULL is the empty text), trims each item of
 * blanks and calls item for every non-empty one. Reported through
 * problem (NULL: not reported), one call each:
 *
 *   item 2 is empty (two commas in a row, or a comma at an end)
 *   item 3 "Acc\"x@1m": <why>           (an item that item refused)
 *   has 33 items, at most 32            (more than max items)
 *
 * Items are numbered from 1 and quoted with log_quote (escaped, cut at
 * 48 bytes); messages hold no control byte and, as for every
 * soql_problem_fn, leave naming the setting to the caller. item runs for
 * the items beyond max too, so that all their problems are reported: it
 * bounds its own storage. Returns 0 when every item was accepted and
 * there are at most max, else -1.
 */
int soql_list_parse(const char *text, size_t max, soql_list_item_fn *item,
                    void *arg, soql_problem_fn *problem, void *problem_arg);

/*
 * SFRELAY_POLL: every item parsed; each bad item, a repeated object, a
 * big object (polling needs ORDER BY) and more than SOQL_MAX_OBJECTS
 * items are reported through problem (NULL: not reported). Returns 0
 * with *specs (owned; soql_specs_free) and *n, or -1 (nothing
 * returned).
 */
int soql_poll_parse(const char *text, struct soql_spec **specs, size_t *n,
                    soql_problem_fn *problem, void *arg);
void soql_specs_free(struct soql_spec *specs, size_t n);

/* "2026-11-26T19:20:01Z", or "2026-11-26T19:20:01.250Z" when the
 * milliseconds are not zero. len >= 32. */
void soql_datetime(long long ms, char *buf, size_t len);

/*
 * Appends the poll query for spec from since_ms on:
 *   SELECT <fields> FROM <object> WHERE <time> >= <since>
 *   [AND (<where>)] ORDER BY <time>, <id>
 * Returns 0 or -1 (allocation failure).
 */
int soql_build_since(struct evbuffer *out, const struct soql_spec *spec,
                     long long since_ms);
/*
 * Appends the bounded query of a window [from_ms, to_ms] (backfill):
 * like soql_build_since with "AND <time> <= <to>"; for a big object no
 * user condition and no ORDER BY (Salesforce allows neither).
 */
int soql_build_window(struct evbuffer *out, const struct soql_spec *spec,
                      long long from_ms, long long to_ms);
/* Appends s URL-encoded for a query parameter (space as '+'). */
int soql_url_escape(struct evbuffer *out, const char *s, size_t n);
/*
 * Appends a composite request body with allOrNone false and one GET
 * subrequest per url (referenceIds "r0", "r1", ...). At most 25 urls.
 */
int soql_build_composite(struct evbuffer *out, const char *const *urls,
                         size_t n);

/* One record of a page: its raw JSON object text, a slice of the body. */
struct soql_record {
	const char *text;
	size_t len;
};

/* A decoded query page. Slices point into the body given to the decoder
 * and live as long as it. */
struct soql_page {
	long long total_size; /* -1 when absent */
	int done;
	char *next_url; /* owned; "/services/data/..." or NULL when done */
	struct soql_record *records; /* owned array of slices */
	size_t nrecords;
};

/*
 * Decodes a query reply. Returns 0, or -1 with the reason in err
 * (malformed JSON, missing "done" or "records", a record that is not an
 * object, done false without a usable nextRecordsUrl). Nesting is
 * limited to 64 levels. page is cleared first; soql_page_clear frees.
 */
int soql_page_decode(const char *body, size_t len, struct soql_page *page,
                     char *err, size_t errlen);
void soql_page_clear(struct soql_page *page);

/*
 * A top-level string member of a record, looked up ignoring case (SOQL
 * names are case-insensitive), decoded into buf. Returns 0 when found, 1
 * when absent or null, -1 when not a string, longer than len - 1 or
 * malformed.
 */
int soql_record_string(const struct soql_record *rec, const char *name,
                       char *buf, size_t len);
/*
 * Appends the record as compact JSON without its "attributes" members
 * (at any depth: relationship and subquery objects carry them too) and
 * without the top-level members named in drop (ignoring case). first,
 * when not NULL, is JSON member text ("\"k\":\"v\"") written as the
 * first member. Returns 0, or -1 when the record is malformed or out
 * cannot grow.
 */
int soql_record_payload(const struct soql_record *rec, const char *const *drop,
                        size_t ndrop, const char *first, struct evbuffer *out);

/* One subresponse of a composite reply. body is a slice of the reply. */
struct soql_sub {
	char ref[32]; /* referenceId ("" when missing or too long) */
	long status;  /* httpStatusCode, 0 when missing */
	const char *body;
	size_t len;
};

/* Decodes {"compositeResponse":[...]}. Returns 0 with *subs (owned;
 * free()) and *n, or -1 with err. */
int soql_composite_decode(const char *body, size_t len, struct soql_sub **subs,
                          size_t *n, char *err, size_t errlen);

/*
 * Reads a Salesforce error body ([{"message":..,"errorCode":..}], or one
 * such object) into code and msg (whitespace runs folded to one space,
 * so the message is one line). Returns 0, or -1 when the body is not
 * one (code and msg are then "").
 */
int soql_error_parse(const char *body, size_t len, char *code, size_t codelen,
                     char *msg, size_t msglen);

/*
 * Sforce-Limit-Info: "api-usage=25/15000", other fields may precede or
 * follow ("api-usage=25/15000; per-app-api-usage=17/250(appName=x)").
 * Returns 0 with *used and *max, or -1 when there is no well-formed
 * api-usage field (max must be positive).
 */
int soql_limit_info(const char *header, long long *used, long long *max);

/*
 * The high-water mark of a polled object: the newest time seen and the
 * ids of the records seen at exactly that time. A query asks for
 * "time >= mark" in (time, id) order; the mark then decides, record by
 * record, what is new. Checkpoint text form:
 *
 *   2026-11-26T19:20:01.000Z|0Ymxx0000000001AAA,0Ymxx0000000002AAA
 *
 * (always milliseconds and Z; ids in ascending byte order; nothing after
 * '|' when no record was seen at that time). An id is made of letters,
 * digits, '-' and '_', at most 64 bytes.
 */
struct soql_mark;

enum soql_verdict {
	SOQL_NEW = 0, /* emit it: the mark now includes it */
	SOQL_SEEN,    /* at the mark's time and already seen: skip */
	SOQL_OLDER,   /* before the mark: skip */
	SOQL_BAD,     /* id not representable in the mark: skip */
	SOQL_NOMEM,
};

/* An unset mark. NULL when out of memory. */
struct soql_mark *soql_mark_new(void);
void soql_mark_free(struct soql_mark *m);
/* Sets the mark to ms with no ids (a first run's start). */
void soql_mark_reset(struct soql_mark *m, long long ms);
/* Replaces the mark with the parsed text. Returns 0, or -1 (m unchanged)
 * when the text is not the form above. */
int soql_mark_parse(struct soql_mark *m, const char *text);
/* Appends the text form. Returns 0, or -1 when unset. */
int soql_mark_format(const struct soql_mark *m, struct evbuffer *out);
int soql_mark_is_set(const struct soql_mark *m);
long long soql_mark_time(const struct soql_mark *m);
size_t soql_mark_count(const struct soql_mark *m);
/* Copies src into dst. Returns 0 or -1 (out of memory; dst unset). */
int soql_mark_copy(struct soql_mark *dst, const struct soql_mark *src);
/*
 * The boundary rule: a record (time ms, id) against the mark. NEW
 * advances the mark (a later time replaces it: ms with {id}; the same
 * time adds id). An unset mark takes any record.
 */
enum soql_verdict soql_mark_offer(struct soql_mark *m, long long ms,
                                  const char *id);

#endif /* SFRELAY_SOQL_H */
