#ifndef SFRELAY_LINES_H
#define SFRELAY_LINES_H

#include <stddef.h>

#include "sfrelay/format.h"

struct evbuffer;

/*
 * What the relay does to a formatted line before it is queued: redaction
 * of chosen fields, and splitting of a line too long for the sink into
 * self-describing parts. Pure: bytes in, bytes out, no I/O, no clock.
 *
 * Both work on the grammar format.h writes: logfmt fields `key=value`
 * separated by one space (a value bare, or quoted with \\ \" \n \r \t
 * \u00XX escapes), or one flat JSON object. A line of another shape is
 * left as it is (redaction) or refused (splitting returns -1).
 *
 * Header fields are never redacted and are repeated in every part:
 * at, src, channel, object, id, replay_id, event_type, created.
 */

/* ---- redaction ---------------------------------------------------------- */

struct lines_redact;

/*
 * Compiles patterns (copied): each a field name or a glob (`*` any run
 * of bytes, `?` one byte), matched case-insensitively against the whole
 * dotted key and against its last segment, so "Password" hits
 * sobject.Password and "*token*" hits payload.Session_Token__c. Returns
 * NULL on allocation failure or when a pattern is empty.
 */
struct lines_redact *lines_redact_new(const char *const *patterns, size_t n);
void lines_redact_free(struct lines_redact *r);
/* 1 when key (n bytes) matches a pattern and is not a header field. */
int lines_redact_match(const struct lines_redact *r, const char *key,
		       size_t n);

/*
 * Appends line (len bytes, with or without its final '\n') to out with the
 * value of every matching field replaced by [redacted] (logfmt: bare,
 * JSON: the string "[redacted]"); the '\n' is kept as it was. Returns the
 * number of fields redacted (0: out got the line unchanged), or -1 when
 * out cannot grow.
 */
int lines_redact_line(const struct lines_redact *r, enum format_kind kind,
		      const char *line, size_t len, struct evbuffer *out);

#define LINES_REDACTED "[redacted]"

/* ---- splitting ---------------------------------------------------------- */

/*
 * Told of each part in order: part (plen bytes, ending in '\n'), its
 * number k (1-based) of n. The text is borrowed for the call. Returns 0,
 * or -1 to stop.
 */
typedef int lines_part_fn(void *arg, const char *part, size_t plen,
			  unsigned k, unsigned n);

/*
 * Splits a line whose length (without '\n') is over max into parts of
 * at most max bytes (without '\n'). Every part repeats the header fields,
 * carries part=k/n (JSON: "part":"k/n") after them, then as many of the
 * remaining fields, in order, as fit. A value too long for one part is
 * cut (never inside an escape or a UTF-8 sequence) and continues in the
 * next part under the same key: concatenating a key's values in part
 * order restores it. A line within max is passed through as its only
 * part (k = n = 1, no part field).
 *
 * Returns the number of parts, or -1 (fn not called) when the line is not
 * in the formatter's grammar or max leaves no room for the header
 * (LINES_MIN_MAX is always enough for the formatter's header of a
 * channel name under 256 bytes), or when fn returns -1.
 */
#define LINES_MIN_MAX 1024
int lines_split(enum format_kind kind, const char *line, size_t len,
		size_t max, lines_part_fn *fn, void *arg);

#endif /* SFRELAY_LINES_H */
