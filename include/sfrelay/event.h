#ifndef SFRELAY_EVENT_H
#define SFRELAY_EVENT_H

#include <stddef.h>

struct json_tape;

/*
 * The normalized event: what a source (the Bayeux stream, later the SOQL
 * poller) hands to the core. Every pointer is borrowed from the source for
 * the duration of the call that passes the event; the core copies what it
 * keeps (in practice: the formatted line).
 */

enum event_source {
	EVENT_SRC_STREAM, /* a CometD channel: /topic, /event, /data, /u */
	EVENT_SRC_POLL,   /* a SOQL-polled object */
	EVENT_SRC_BACKFILL, /* a record queried to fill a stream's replay gap */
};

struct event {
	enum event_source src;
	/* "/topic/AccountWatch" for streams, "SetupAuditTrail" for polls.
	 * NUL-terminated, never NULL. */
	const char *channel;
	/* The position, kept as Salesforce gave it ("1234"), used in the id
	 * "<channel>:<position>". For streams the replayId, for polls the
	 * record Id. NUL-terminated, never NULL (may be ""). */
	const char *position;
	/* "created", "updated", ... (PushTopic type, CDC changeType), or NULL. */
	const char *event_type;
	/* ISO-8601 UTC creation time ("2026-11-26T19:27:53.000Z"), or NULL. */
	const char *created;
	/* Raw JSON text of the payload object (a Bayeux message's "data", a
	 * SOQL record). Not NUL-terminated: a slice of payload_len bytes.
	 * The formatter flattens it into dotted keys. */
	const char *payload;
	size_t payload_len;
	/* Optional, may be NULL: the payload's tokens, when the source has
	 * already scanned and validated it (json_tape.h); the formatter
	 * then does not scan the text again. Borrowed like payload. */
	const struct json_tape *tape;
};

#endif /* SFRELAY_EVENT_H */
