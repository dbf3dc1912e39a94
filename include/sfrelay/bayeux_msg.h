#ifndef SFRELAY_BAYEUX_MSG_H
#define SFRELAY_BAYEUX_MSG_H

#include <stddef.h>

#include "sfrelay/event.h"

struct evbuffer;

/*
 * Bayeux wire format, Salesforce dialect: a pure decoder for response
 * bodies and builders for requests. No I/O, no clock.
 *
 * A response body is a JSON array of messages. Meta replies
 * (/meta/handshake, /meta/subscribe, /meta/connect, /meta/disconnect,
 * /meta/unsubscribe) and event messages may come in any order in the
 * same array.
 */

enum bayeux_reconnect {
	BAYEUX_RECONNECT_UNSET = 0,
	BAYEUX_RECONNECT_RETRY,
	BAYEUX_RECONNECT_HANDSHAKE,
	BAYEUX_RECONNECT_NONE,
};

struct bayeux_advice {
	enum bayeux_reconnect reconnect;
	long interval_ms;     /* -1 when absent */
	long timeout_ms;      /* -1 when absent */
	int multiple_clients; /* advice."multiple-clients": true */
};

enum bayeux_kind {
	BAYEUX_MSG_META, /* channel starts with /meta/ */
	BAYEUX_MSG_EVENT,
};

struct bayeux_msg {
	enum bayeux_kind kind;
	const char *channel; /* never NULL */

	/* Meta replies. Strings are NULL when absent. */
	int successful; /* 1 only when "successful": true */
	const char *client_id;
	const char *error;        /* "403::Unknown client" */
	const char *subscription; /* /meta/subscribe, /meta/unsubscribe */
	const char *failure_reason; /* ext.sfdc.failureReason */
	int has_advice;
	struct bayeux_advice advice;
	int replay_supported; /* handshake ext.replay == true */

	/* Event messages: ev.channel is the message's channel, ev.position
	 * the replayId as decimal text (data.event.replayId), ev.payload the
	 * JSON text of "data". created and event_type are derived per shape:
	 *   PushTopic /topic/X:  data.event.createdDate, data.event.type
	 *   generic /u/X:        data.event.createdDate
	 *   platform /event/X:   data.payload.CreatedDate
	 *   CDC /data/X:         data.payload.ChangeEventHeader.commitTimestamp
	 *                        (epoch ms -> ISO-8601), .changeType
	 * An event message without data or without a replayId is still
	 * returned (position "" ) so the caller can report it. ev.tape is
	 * set by the stream decoder (bayeux_stream.h) for an object payload,
	 * NULL from bayeux_decode(). */
	struct event ev;
};

struct bayeux_batch;

/*
 * Decodes one response body. Returns an owned batch (free with
 * bayeux_batch_free) or NULL with a reason in err when the body is not a
 * JSON array of objects with a string "channel". Every pointer inside the
 * messages is owned by the batch and valid until it is freed. Bodies
 * nested deeper than 64 levels (the outer array counts) and elements
 * whose "channel" is empty are rejected too.
 */
struct bayeux_batch *bayeux_decode(const char *body, size_t len, char *err,
				   size_t errlen);
size_t bayeux_batch_count(const struct bayeux_batch *b);
/* Borrowed; NULL when i >= count. */
const struct bayeux_msg *bayeux_batch_msg(const struct bayeux_batch *b,
					  size_t i);
void bayeux_batch_free(struct bayeux_batch *b);

/*
 * The last message of a complete response body, read from its end
 * without looking at the rest: tail is the body's last len bytes (the
 * whole body or a suffix of it). The message's extent is found by
 * walking back over strings and brackets (at most 4 KiB of it), then it
 * is decoded alone, strictly, as bayeux_decode() would. Returns an owned
 * one-message batch, or NULL when the tail does not end in a whole
 * object closing the array. For a glance at a long-poll reply's
 * /meta/connect message (servers put it last) before the events ahead
 * of it are decoded; it says nothing about the validity of the rest.
 */
struct bayeux_batch *bayeux_decode_last(const char *tail, size_t len);
/* The same for the first message of a body (body: its first len bytes),
 * found by walking forward over strings and brackets. */
struct bayeux_batch *bayeux_decode_first(const char *body, size_t len);

/* "403::Unknown client" -> 403; 0 when the text has no "NNN::" prefix. */
int bayeux_error_code(const char *error);

/* Request builders: append one JSON array to out. Return 0 or -1. */
int bayeux_build_handshake(struct evbuffer *out);
/*
 * One /meta/subscribe message per channel in one array. Each carries the
 * whole replay map ext.replay {channel: id}, keyed by channel without any
 * "?filter" suffix; ids are -1, -2 or a replayId as text.
 */
int bayeux_build_subscribe(struct evbuffer *out, const char *client_id,
			   const char *const *channels,
			   const char *const *replay_ids, size_t n);
int bayeux_build_connect(struct evbuffer *out, const char *client_id);
int bayeux_build_disconnect(struct evbuffer *out, const char *client_id);

#endif /* SFRELAY_BAYEUX_MSG_H */
