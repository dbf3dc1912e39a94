#ifndef SFRELAY_FORMAT_H
#define SFRELAY_FORMAT_H

#include <stddef.h>

#include "sfrelay/event.h"

struct evbuffer;

/*
 * event -> one log line. Pure: no I/O, no clock, no allocation that
 * outlives a call (apart from what it appends to the caller's evbuffer).
 *
 * A line always ends in exactly one '\n' and contains no other newline;
 * every byte of untrusted text is escaped, and invalid UTF-8 is replaced
 * by U+FFFD, so the output is always valid UTF-8.
 *
 * Header fields come first, in this order, each only when known:
 *   at=event src=stream|poll|backfill channel=<c> (object=<c> otherwise)
 *   id=<channel>:<position> replay_id=<position> (streams only)
 *   event_type=<t> created=<t>
 * then the payload flattened to dotted keys in document order:
 *   {"sobject":{"Id":"001","Name":"Acme"}} -> sobject.Id=001 sobject.Name="Acme"
 *   arrays use the index as key: {"a":[1,2]} -> a.0=1 a.1=2
 *   empty object / array: key={} / key=[]; null: key= ; "" : key=""
 *   numbers and booleans are written as their JSON text.
 * The three keys of the payload's "event" object that the header already
 * carries (event.replayId, event.type, event.createdDate) are not repeated.
 */

enum format_kind {
	FORMAT_LOGFMT, /* key=value pairs (default) */
	FORMAT_JSON,   /* one flat JSON object: the same keys, JSON types */
};

/*
 * Appends the line for ev to out. Returns 0. A payload that is not valid
 * JSON (or nests deeper than FORMAT_MAX_DEPTH) does not lose the event: the
 * line then carries the header, payload_error="<reason>" and the payload
 * text as one escaped value raw="...", and the function returns 1.
 * Returns -1 only when out cannot grow (allocation failure).
 */
#define FORMAT_MAX_DEPTH 64
int format_event(enum format_kind kind, const struct event *ev,
		 struct evbuffer *out);

/*
 * The same line written into buf (cap bytes, borrowed) instead of an
 * evbuffer, for a caller that owns the memory the line will live in (the
 * relay's queue). Returns as format_event() with *len the line's length,
 * or FORMAT_NO_ROOM when the line is longer than cap (buf then holds a
 * prefix of no use: format again with more room, or with format_event()).
 */
#define FORMAT_NO_ROOM (-2)
int format_event_mem(enum format_kind kind, const struct event *ev, char *buf,
		     size_t cap, size_t *len);

/*
 * Appends s (n bytes, any content) to out as one logfmt value: bare when
 * it is non-empty and holds no space, '=', '"', '\\' or control byte,
 * quoted and escaped otherwise (\\ \" \n \r \t, other controls \u00XX,
 * invalid UTF-8 bytes as U+FFFD). Used by every logfmt writer (log, stats).
 */
int format_logfmt_value(struct evbuffer *out, const char *s, size_t n);

/* Appends s as a JSON string literal (with quotes), same UTF-8 repair. */
int format_json_string(struct evbuffer *out, const char *s, size_t n);

/* Parses "json" / "logfmt" (case-sensitive). Returns 0 or -1. */
int format_kind_parse(const char *s, enum format_kind *kind);

#endif /* SFRELAY_FORMAT_H */
