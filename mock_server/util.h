#ifndef SFMOCK_UTIL_H
#define SFMOCK_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct evhttp_request;
struct evkeyvalq;

/*
 * Small helpers shared by sfmock's modules: a seeded PRNG, clocks and
 * timestamps, form decoding, base64, JSON string escaping, and the one
 * place that sends an HTTP reply (and logs it).
 */

/* splitmix64: tiny, fast, good enough for ids and demo data. The state
 * lives in the caller's struct, so two generators never interfere. */
struct util_rng {
	uint64_t s;
};

void util_rng_seed(struct util_rng *rng, uint64_t seed);
uint64_t util_rng_next(struct util_rng *rng);
/* Uniform-ish value in [0, n); n > 0. */
uint64_t util_rng_below(struct util_rng *rng, uint64_t n);
/* Writes len characters drawn from alphabet (NUL-terminated) into buf and
 * a terminating NUL; buf must hold len + 1 bytes. */
void util_rng_text(struct util_rng *rng, char *buf, size_t len,
                   const char *alphabet);
/* Writes a version-4 UUID in text form (36 chars + NUL) into buf[37]. */
void util_rng_uuid(struct util_rng *rng, char *buf);

/* Wall clock in milliseconds since the epoch. */
int64_t util_now_ms(void);
/* Monotonic clock in milliseconds (for expiry and durations). */
int64_t util_mono_ms(void);
/* "2026-11-26T19:27:53.123Z" for epoch_ms into buf[32]. Returns buf. */
char *util_iso_ms(char *buf, size_t len, int64_t epoch_ms);

/*
 * Decodes an application/x-www-form-urlencoded string (n bytes, '+' is a
 * space, %XX an escaped byte) and appends each key/value to out with
 * evhttp_add_header(). A pair without '=' gets the value "". Returns 0, or
 * -1 on a bad escape, an escaped NUL, CR or LF, or an allocation failure;
 * on error out may hold the pairs decoded so far (the caller clears it).
 */
int util_form_parse(const char *s, size_t n, struct evkeyvalq *out);

/* Appends the standard base64 encoding of n bytes to out. */
int util_base64(struct evbuffer *out, const unsigned char *p, size_t n);

/* Appends s (NUL-terminated) as a JSON string literal, quotes included.
 * Bytes >= 0x80 are copied as they are. */
int util_json_str(struct evbuffer *out, const char *s);

/* Parses a decimal integer in [min, max] covering the whole string.
 * Returns 0 or -1. */
int util_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* The token of an "Authorization: Bearer <t>" or "OAuth <t>" header
 * (Salesforce takes both), borrowed from the request; NULL when there is
 * no such header or it is empty. */
const char *util_bearer(struct evhttp_request *req);

/* "POST", "GET", ... for a request (or "?"). */
const char *util_method(struct evhttp_request *req);

/*
 * Sends the reply: status code, Content-Type ctype (NULL for none), body
 * (borrowed; drained by the send; NULL for none). Logs one line at debug
 * level; when why is not NULL the line is a warning carrying why (a
 * client error worth seeing). After this call req is gone.
 */
void util_reply(struct evhttp_request *req, int code, const char *ctype,
                struct evbuffer *body, const char *why);

/* Replies with a literal JSON body (NUL-terminated text). */
void util_reply_text(struct evhttp_request *req, int code, const char *json,
                     const char *why);

#define UTIL_JSON_UTF8 "application/json;charset=UTF-8"

#endif /* SFMOCK_UTIL_H */
