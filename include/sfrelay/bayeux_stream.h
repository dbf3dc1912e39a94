#ifndef SFRELAY_BAYEUX_STREAM_H
#define SFRELAY_BAYEUX_STREAM_H

#include <stddef.h>

#include "sfrelay/bayeux_msg.h"

/*
 * Streaming decoder for Bayeux response bodies: the hot-path counterpart
 * of bayeux_decode(). Pure: no I/O, no clock.
 *
 * The body (a JSON array of messages) is fed in chunks split anywhere, as
 * the bytes come off the wire. Each array element is handed to a callback
 * as one struct bayeux_msg as soon as its last byte has arrived, in body
 * order. Only the element in progress is ever buffered, and only when it
 * straddles two chunks; an element longer than max_msg_bytes fails the
 * body before more than max_msg_bytes of it are held. No parse tree is
 * built for events: "data" is handed on as a slice of the original text.
 *
 * The messages carry the same fields bayeux_decode() gives for the same
 * element, with these differences (see also tests/test_bayeux_stream.c):
 *
 *  - Strict RFC 8259 throughout. The stream refuses whatever json-c lets
 *    through even in strict mode: NaN, Infinity, -Infinity, numbers with
 *    leading zeros ("00", "-01", "00.5"), an empty fraction ("1.",
 *    "1.e5") or an empty integer part ("-.5"), raw control bytes
 *    (0x01-0x1f) inside strings, single-quoted object keys. bayeux_decode
 *    screens out the odd numbers and literals itself; where it still
 *    takes a body that is not strict JSON (raw control bytes in a string,
 *    for one), the stream refuses it. So a payload slice is always strict
 *    JSON text.
 *  - Left as json-c does: bytes 0x80-0xff in strings are not checked as
 *    UTF-8 (the formatter repairs them), and any \uXXXX escape is
 *    accepted, lone surrogates included. A string field the decoder
 *    extracts decodes a lone or unpaired surrogate to U+FFFD, exactly as
 *    json-c does, so channel, created and event_type match byte for byte.
 *  - ev.payload is the original text of "data" (bayeux_decode gives
 *    json-c's re-serialization): the same JSON value, not the same bytes.
 *  - An integer replayId outside int64/uint64 is kept digit for digit;
 *    json-c clamps it (99999999999999999999 -> "18446744073709551615").
 *    "-0" becomes "0" in both.
 *  - All or nothing no more: the messages before a bad element have
 *    been delivered by the time the body fails (bayeux_decode gives none
 *    for a bad body). A caller that must not act on part of a bad body
 *    has to hold what it gets until bayeux_stream_finish() returns 0.
 *  - Error texts name the byte offset in the body and are the same
 *    however the body is cut into chunks. An element's shape error
 *    ("element 3 is not a JSON object") is reported when that element
 *    arrives, before later bytes are seen: a body with both a shape error
 *    and a later syntax error fails on the first one here.
 *
 * Meta replies (channel "/meta/...") are small and rare: they are decoded
 * by bayeux_decode() itself, so every meta rule is the one in
 * bayeux_msg.c. The nesting limit is bayeux_decode's: 64 levels counting
 * the outer array, a scalar counting as a level.
 */

struct bayeux_stream;

/*
 * Called once per decoded message, in body order, from inside
 * bayeux_stream_feed(). msg and everything it points to (strings, the
 * payload slice, which may point into the caller's chunk) are borrowed
 * for the duration of the call only: copy what must outlive it. Return 0
 * to go on, -1 to stop: feed then returns -1 with the error "stopped by
 * callback". The callback must not call bayeux_stream_feed(), _finish()
 * or _reset() on the same stream (they return -1 / do nothing); it may
 * call bayeux_stream_free(), which is then deferred until feed returns
 * (feed returns -1 and the stream must not be used again).
 */
typedef int bayeux_stream_fn(void *arg, const struct bayeux_msg *msg);

/*
 * A decoder for one body at a time. max_msg_bytes bounds one array
 * element (from its '{' to its '}'), and so the decoder's memory: about
 * twice that at most, whatever the size of the body. fn is called with
 * arg for each message. Returns an owned decoder (free with
 * bayeux_stream_free) or NULL when fn is NULL, max_msg_bytes is 0 or
 * above SIZE_MAX / 4, or memory is short.
 */
struct bayeux_stream *bayeux_stream_new(size_t max_msg_bytes,
                                        bayeux_stream_fn *fn, void *arg);
/* NULL is a no-op. See bayeux_stream_fn for a call from the callback. */
void bayeux_stream_free(struct bayeux_stream *s);

/*
 * Feeds the next len bytes of the body, split at any point (len 0 is
 * fine). data is borrowed for the call. Every message completed by these
 * bytes is delivered before the call returns. Returns 0, or -1 when the
 * body is malformed, an element exceeds max_msg_bytes, the callback
 * stopped, or memory is short; bayeux_stream_errstr() then says what and
 * at which byte offset of the body. After -1 every further call returns
 * -1 until bayeux_stream_reset().
 */
int bayeux_stream_feed(struct bayeux_stream *s, const char *data, size_t len);

/*
 * End of the body. Returns 0 when the bytes fed were exactly one complete
 * JSON array (whitespace allowed around it), else -1: "empty body",
 * "truncated JSON body", a syntax error already present in a cut-off last
 * element, or the error of an earlier failed feed. Delivers nothing; a
 * check that may be repeated.
 */
int bayeux_stream_finish(struct bayeux_stream *s);

/* The last error, "" when none. Borrowed: valid until the next call on
 * s. */
const char *bayeux_stream_errstr(const struct bayeux_stream *s);

/*
 * Prepares s for a new body: clears the error, the count and any partial
 * element. Buffers are kept for reuse without reallocating, except one
 * that an unusually large element grew beyond 64 KiB, which is released
 * so that a single big message does not pin memory for good.
 */
void bayeux_stream_reset(struct bayeux_stream *s);

/* Messages delivered for the current body (one whose callback asked to
 * stop included). */
size_t bayeux_stream_count(const struct bayeux_stream *s);

/*
 * Bytes currently allocated for buffering (the partial element and the
 * decoded strings of one message), for tests and stats: never more than
 * about 2 x max_msg_bytes. Not counted: the payload's token tape handed
 * on with each event (json_tape.h), at most 192 KiB whatever the size.
 */
size_t bayeux_stream_buffer_capacity(const struct bayeux_stream *s);

#endif /* SFRELAY_BAYEUX_STREAM_H */
