#ifndef SFMOCK_ORG_H
#define SFMOCK_ORG_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct util_rng;

/*
 * The fake org's state: its settings, its channels (each with a replayId
 * counter and a retention ring of serialized event messages), the access
 * tokens it issued, and the counters /_mock/stats reports. No I/O: the
 * HTTP endpoints (cometd.c, rest.c) and the demo generator work on it.
 */

enum org_kind {
	ORG_TOPIC,   /* /topic/X: PushTopic */
	ORG_EVENT,   /* /event/X: platform event, event monitoring */
	ORG_DATA,    /* /data/X: Change Data Capture */
	ORG_GENERIC, /* /u/X: generic streaming */
};

/* Settings, filled by the command line. Strings are borrowed for the
 * org's lifetime (they point into argv). */
struct org_config {
	int port;
	int demo;
	int demo_rate; /* demo events per second */
	const char *client_id;
	const char *client_secret;
	const char *username;
	const char *password;
	const char *security_token; /* appended to the password */
	const char *refresh_token;  /* accepted by the refresh_token grant */
	const char *jwt_cert;       /* PEM certificate or public key: JWTs */
	int64_t token_ttl_ms;       /* access tokens expire; 0: never */
	int64_t connect_timeout_ms; /* long-poll hold, advice.timeout */
	int64_t client_expiry_ms;   /* forget clients idle this long */
	size_t retention;           /* events kept per channel */
	size_t max_batch;           /* events in one connect response */
};

/* Counters for /_mock/stats; the endpoints update them in place. */
struct org_stats {
	uint64_t handshakes;
	uint64_t connects;
	uint64_t subscribes;
	uint64_t tokens_issued;
	uint64_t api_calls;
	uint64_t clients; /* current number of Bayeux clients */
};

struct org;
struct org_channel;

/* Returns a new org (cfg is copied; its strings are borrowed), or NULL
 * when out of memory. */
struct org *org_new(const struct org_config *cfg);
void org_free(struct org *org);

const struct org_config *org_config(const struct org *org);
struct org_stats *org_stats(struct org *org);
/* The org's generator for ids, cookies and tokens (seeded from the clock
 * and pid: not reproducible, unlike the demo's). Borrowed. */
struct util_rng *org_rng(struct org *org);

/* Set once the listener is bound: "http://127.0.0.1:PORT". */
void org_set_instance_url(struct org *org, int port);
const char *org_instance_url(const struct org *org);

/* Classifies a channel name by its prefix. Returns 0, or -1 when the name
 * is not "/topic/X", "/event/X", "/data/X" or "/u/X" with X made of
 * [A-Za-z0-9_.-] (at most 200 bytes). */
int org_kind_of(const char *name, enum org_kind *kind);

/* Declares a channel (a second declaration returns the first one).
 * Returns the channel, owned by the org until org_free, or NULL when the
 * name is invalid (see org_kind_of) or memory ran out. */
struct org_channel *org_channel_declare(struct org *org, const char *name);
/* Looks a channel up by the first len bytes of name. Borrowed or NULL. */
struct org_channel *org_channel_find(const struct org *org, const char *name,
                                     size_t len);
size_t org_channel_count(const struct org *org);
struct org_channel *org_channel_at(const struct org *org, size_t i);

const char *org_channel_name(const struct org_channel *ch);
enum org_kind org_channel_kind(const struct org_channel *ch);
/* A fixed 22-character schema id derived from the name. */
const char *org_channel_schema(const struct org_channel *ch);
/* Highest replayId published so far, 0 when none. */
int64_t org_channel_latest(const struct org_channel *ch);
/* Lowest replayId still retained; latest + 1 when nothing is retained. */
int64_t org_channel_oldest(const struct org_channel *ch);
uint64_t org_channel_published(const struct org_channel *ch);
/*
 * The serialized message of event replay_id, borrowed until the next
 * publish on this channel, or NULL when it is not retained. *len gets its
 * length, *seq (if not NULL) the org-wide publish order number, which
 * lets a reader merge several channels oldest first.
 */
const char *org_channel_event(const struct org_channel *ch, int64_t replay_id,
                              size_t *len, uint64_t *seq);

/*
 * Writes one event's whole Bayeux message into out (empty on entry), for
 * the given replayId; seq counts the events published on this channel
 * (1 for the first), now_ms is the publish time. Returns 0 or -1.
 */
typedef int org_build_fn(void *arg, struct evbuffer *out,
                         const struct org_channel *ch, int64_t replay_id,
                         uint64_t seq, int64_t now_ms);

/*
 * Publishes one event on ch: assigns the next replayId, lets build write
 * the message text, stores a copy in the retention ring (dropping the
 * oldest when it is full) and calls the publish hook. Returns the new
 * replayId, or -1 (nothing published) when build fails or memory ran out.
 */
int64_t org_publish(struct org *org, struct org_channel *ch,
                    org_build_fn *build, void *arg);

/* Called after every publish (must not publish itself). One hook; NULL
 * removes it. */
typedef void org_publish_hook(void *arg, struct org_channel *ch);
void org_set_publish_hook(struct org *org, org_publish_hook *fn, void *arg);

/*
 * The journal: told about every change of the org's durable state, so a
 * state file can follow it (state.c). Any member may be NULL. Strings
 * and channels are borrowed for the call. commit is called by
 * org_commit(): whoever published a batch calls it before acknowledging
 * the batch to its client.
 */
struct org_journal {
	void (*channel)(void *arg, const struct org_channel *ch);
	void (*event)(void *arg, const struct org_channel *ch,
	              int64_t replay_id, uint64_t seq, const char *text,
	              size_t len);
	void (*trim)(void *arg, const struct org_channel *ch);
	void (*token)(void *arg, const char *token);
	void (*revoke)(void *arg);
	void (*commit)(void *arg);
};

/* One journal; NULL removes it. j is borrowed until removed. */
void org_set_journal(struct org *org, const struct org_journal *j, void *arg);
/* Tells the journal that a batch of changes is complete. */
void org_commit(struct org *org);

/*
 * Drops ch's retained events older than replay id `oldest` (as if
 * retention had expired them); a cursor behind them skips ahead. Returns
 * how many were dropped.
 */
size_t org_channel_trim(struct org *org, struct org_channel *ch,
                        int64_t oldest);

/* Org-wide publish order number of the newest event (0 when none). */
uint64_t org_seq(const struct org *org);

/*
 * Restoring saved state (before serving). org_restore_counters sets the
 * channel's latest replayId and published count as they were before its
 * first retained event; org_restore_event then appends one retained
 * event, whose replay_id must be above latest. Returns 0, or -1 (replay
 * id not increasing, out of memory). Neither calls the publish hook nor
 * the journal.
 */
void org_restore_counters(struct org_channel *ch, int64_t latest,
                          uint64_t published);
int org_restore_event(struct org *org, struct org_channel *ch,
                      int64_t replay_id, uint64_t seq, const char *text,
                      size_t len);
/* Remembers token (copied) as issued. Returns 0 or -1. */
int org_token_restore(struct org *org, const char *token);
size_t org_token_count(const struct org *org);
/* The i-th valid token, borrowed until tokens change. */
const char *org_token_at(const struct org *org, size_t i);

/* Issues a new access token into buf (at least 128 bytes) and remembers
 * it. Returns 0 or -1 (out of memory). */
int org_token_issue(struct org *org, char *buf, size_t len);
/* 1 when token was issued, not revoked and (with --token-ttl) not
 * expired; 0 otherwise. */
int org_token_valid(const struct org *org, const char *token);
/* Forgets every issued token (as an admin revoking sessions would). */
void org_tokens_revoke(struct org *org);

#endif /* SFMOCK_ORG_H */
