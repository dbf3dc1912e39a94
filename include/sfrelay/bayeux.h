#ifndef SFRELAY_BAYEUX_H
#define SFRELAY_BAYEUX_H

#include <stddef.h>
#include <stdint.h>

#include "sfrelay/event.h"

struct auth;
struct event_base;
struct http;

/*
 * The CometD / Bayeux long-polling client for Salesforce's Streaming API.
 * One client (one handshake, one cookie jar) serves every channel:
 *
 *   auth -> /meta/handshake -> /meta/subscribe (all channels, replay
 *   map) -> /meta/connect, again and again, as the server's advice says.
 *
 * Recovery: 403::Unknown client or advice reconnect=handshake ->
 * re-handshake and resubscribe every channel; 401 in any form -> a new
 * token, then handshake; network errors, 5xx and malformed replies ->
 * exponential back-off with full jitter. A channel is resubscribed from
 * the position the replay callback gives (the last acknowledged one).
 *
 * Hostile replies: a long poll is given up after the advised timeout
 * plus half of it (at least 5 s, at most 30 s more), so a connect that
 * is never answered, or a body that never ends, costs one retry; a
 * long-poll body is decoded as it streams in, one message of at most
 * 2 MiB at a time, and meta replies are refused beyond 1 MiB. An event
 * without a usable replayId (no "data", or a replayId that is not a
 * number) cannot be checkpointed: its reply is refused and replayed
 * from the checkpoint; if the replay brings it again it is dropped, with
 * an error logged.
 */

struct bayeux;

/* One event from the stream; ev and its strings are borrowed for the
 * call. */
typedef void bayeux_event_fn(void *arg, const struct event *ev);
/* The replay id to subscribe channel with ("-1", "-2" or a replayId).
 * The returned string is borrowed until the client's next callback. */
typedef const char *bayeux_replay_fn(void *arg, const char *channel);
/* 0 while the core cannot take more events (back-pressure): the client
 * then holds its next /meta/connect until this says 1. */
typedef int bayeux_ready_fn(void *arg);
/* Salesforce rejected the replay id `rejected` of channel (older than
 * its retention): events after it may be lost from the stream. The
 * client resubscribes the channel from opts.replay_invalid. */
typedef void bayeux_gap_fn(void *arg, const char *channel,
			   const char *rejected, const char *error);
/* channel is now subscribed, replaying from `from` ("-1", "-2", an id). */
typedef void bayeux_subscribed_fn(void *arg, const char *channel,
				  const char *from);
/* Unrecoverable (credentials refused): exit with code (77). */
typedef void bayeux_fatal_fn(void *arg, int code, const char *msg);
/* bayeux_stop() has finished. */
typedef void bayeux_stopped_fn(void *arg);

struct bayeux_callbacks {
	bayeux_event_fn *event;
	bayeux_replay_fn *replay; /* NULL: always "-1" */
	bayeux_ready_fn *ready;   /* NULL: always ready */
	/* 1 when the core is well ahead of its sink, so that the next
	 * connect may go out while a reply is still being decoded; NULL:
	 * as ready. (When the sink is the slowest part, fetching ahead only
	 * makes the queue longer.) */
	bayeux_ready_fn *keeping_up;
	bayeux_gap_fn *gap;       /* NULL: only logged */
	bayeux_subscribed_fn *subscribed; /* may be NULL */
	bayeux_fatal_fn *fatal;
	void *arg;
};

struct bayeux_opts {
	const char *api_version;      /* "61.0" */
	const char *const *channels;  /* borrowed; must outlive the client */
	size_t nchannels;
	long request_timeout_ms;      /* handshake, subscribe, disconnect */
	const char *replay_invalid;   /* "-2" (default) or "-1" */
	long backoff_min_ms;          /* 0: 1000 */
	long backoff_max_ms;          /* 0: 60000 */
	uint64_t seed;                /* for back-off jitter */
};

enum bayeux_state {
	BAYEUX_IDLE,
	BAYEUX_AUTHENTICATING,
	BAYEUX_HANDSHAKING,
	BAYEUX_SUBSCRIBING,
	BAYEUX_CONNECTED, /* a /meta/connect is in flight or due */
	BAYEUX_BACKOFF,
	BAYEUX_STOPPING,
	BAYEUX_STOPPED,
};

/* base, http, auth, opts->channels borrowed; cbs copied. */
struct bayeux *bayeux_new(struct event_base *base, struct http *http,
			  struct auth *auth, const struct bayeux_opts *opts,
			  const struct bayeux_callbacks *cbs);
/* Cancels everything without callbacks. NULL is a no-op. */
void bayeux_free(struct bayeux *b);

/* Begins authenticating and handshaking. Returns 0 or -1. */
int bayeux_start(struct bayeux *b);
/*
 * Stops asking for events: cancels the running request, sends
 * /meta/disconnect if a session exists, then calls done from the loop.
 * No event callback runs after this call.
 */
void bayeux_stop(struct bayeux *b, bayeux_stopped_fn *done, void *arg);

enum bayeux_state bayeux_state(const struct bayeux *b);
/* Number of successful handshakes so far (tests, stats). */
unsigned long bayeux_handshakes(const struct bayeux *b);
/* Long polls that went out while the reply before them was still being
 * decoded, and were kept (tests, stats). */
unsigned long bayeux_connects_ahead(const struct bayeux *b);

#endif /* SFRELAY_BAYEUX_H */
