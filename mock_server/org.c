#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "org.h"
#include "util.h"

#define ORG_NAME_MAX 200
#define ORG_RING_MIN 64

struct slot {
	char *text;
	size_t len;
	uint64_t seq; /* org-wide publish order */
};

struct org_channel {
	char *name;
	enum org_kind kind;
	char schema[23];
	int64_t latest;
	uint64_t published;
	/* Ring of retained events, oldest at head. It grows on demand up to
	 * the retention limit, so an idle channel costs almost nothing. */
	struct slot *ring;
	size_t cap;
	size_t count;
	size_t head;
};

struct org {
	struct org_config cfg;
	struct org_stats stats;
	struct util_rng rng;
	char instance_url[64];

	struct org_channel **channels;
	size_t nchannels;
	size_t channels_cap;
	uint64_t seq;
	struct evbuffer *scratch;

	char **tokens;
	int64_t *token_born; /* util_mono_ms() when each token was added */
	size_t ntokens;
	size_t tokens_cap;
	uint64_t token_serial;

	org_publish_hook *hook;
	void *hook_arg;
	const struct org_journal *journal;
	void *journal_arg;
};

struct org *
org_new(const struct org_config *cfg)
{
	struct org *org = calloc(1, sizeof(*org));

	if (org == NULL)
		return NULL;
	org->cfg = *cfg;
	org->scratch = evbuffer_new();
	if (org->scratch == NULL) {
		free(org);
		return NULL;
	}
	/* Ids, cookies and tokens only need to differ between runs. */
	util_rng_seed(&org->rng, (uint64_t)util_now_ms() ^
	                             ((uint64_t)getpid() << 32) ^
	                             (uint64_t)(uintptr_t)org);
	org_set_instance_url(org, cfg->port);
	return org;
}

static void
channel_free(struct org_channel *ch)
{
	size_t i;

	if (ch == NULL)
		return;
	for (i = 0; i < ch->count; i++)
		free(ch->ring[(ch->head + i) % ch->cap].text);
	free(ch->ring);
	free(ch->name);
	free(ch);
}

static void
tokens_clear(struct org *org)
{
	size_t i;

	for (i = 0; i < org->ntokens; i++)
		free(org->tokens[i]);
	org->ntokens = 0;
}

void
org_free(struct org *org)
{
	size_t i;

	if (org == NULL)
		return;
	for (i = 0; i < org->nchannels; i++)
		channel_free(org->channels[i]);
	free(org->channels);
	/* Not a revocation: the journal must not record one at exit. */
	tokens_clear(org);
	free(org->tokens);
	free(org->token_born);
	evbuffer_free(org->scratch);
	free(org);
}

const struct org_config *
org_config(const struct org *org)
{
	return &org->cfg;
}

struct org_stats *
org_stats(struct org *org)
{
	return &org->stats;
}

struct util_rng *
org_rng(struct org *org)
{
	return &org->rng;
}

void
org_set_instance_url(struct org *org, int port)
{
	snprintf(org->instance_url, sizeof(org->instance_url),
	         "http://127.0.0.1:%d", port);
}

const char *
org_instance_url(const struct org *org)
{
	return org->instance_url;
}

int
org_kind_of(const char *name, enum org_kind *kind)
{
	static const struct {
		const char *prefix;
		enum org_kind kind;
	} prefixes[] = {
	    {"/topic/", ORG_TOPIC},
	    {"/event/", ORG_EVENT},
	    {"/data/", ORG_DATA},
	    {"/u/", ORG_GENERIC},
	};
	size_t i, n = strlen(name);

	if (n > ORG_NAME_MAX)
		return -1;
	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t p = strlen(prefixes[i].prefix);
		const char *c;

		if (strncmp(name, prefixes[i].prefix, p) != 0 || n == p)
			continue;
		/* Names go into JSON and log lines unescaped: keep them to
		 * the characters Salesforce API names use. */
		for (c = name + p; *c != '\0'; c++) {
			if (!((*c >= 'a' && *c <= 'z') ||
			      (*c >= 'A' && *c <= 'Z') ||
			      (*c >= '0' && *c <= '9') || *c == '_' ||
			      *c == '.' || *c == '-'))
				return -1;
		}
		*kind = prefixes[i].kind;
		return 0;
	}
	return -1;
}

static void
make_schema(char *out, const char *name)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                          "abcdefghijklmnopqrstuvwxyz0123456789-_";
	struct util_rng r;
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	size_t i;

	for (; *name != '\0'; name++)
		h = (h ^ (unsigned char)*name) * UINT64_C(0x100000001b3);
	util_rng_seed(&r, h);
	for (i = 0; i < 22; i++)
		out[i] = tab[util_rng_below(&r, 64)];
	out[22] = '\0';
}

struct org_channel *
org_channel_declare(struct org *org, const char *name)
{
	struct org_channel *ch;
	enum org_kind kind;

	if (org_kind_of(name, &kind) != 0)
		return NULL;
	ch = org_channel_find(org, name, strlen(name));
	if (ch != NULL)
		return ch;
	if (org->nchannels == org->channels_cap) {
		size_t cap = org->channels_cap ? org->channels_cap * 2 : 8;
		struct org_channel **p =
		    realloc(org->channels, cap * sizeof(*p));

		if (p == NULL)
			return NULL;
		org->channels = p;
		org->channels_cap = cap;
	}
	ch = calloc(1, sizeof(*ch));
	if (ch == NULL)
		return NULL;
	ch->name = strdup(name);
	if (ch->name == NULL) {
		free(ch);
		return NULL;
	}
	ch->kind = kind;
	make_schema(ch->schema, name);
	org->channels[org->nchannels++] = ch;
	if (org->journal != NULL && org->journal->channel != NULL)
		org->journal->channel(org->journal_arg, ch);
	return ch;
}

struct org_channel *
org_channel_find(const struct org *org, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < org->nchannels; i++) {
		struct org_channel *ch = org->channels[i];

		if (strlen(ch->name) == len && memcmp(ch->name, name, len) == 0)
			return ch;
	}
	return NULL;
}

size_t
org_channel_count(const struct org *org)
{
	return org->nchannels;
}

struct org_channel *
org_channel_at(const struct org *org, size_t i)
{
	return i < org->nchannels ? org->channels[i] : NULL;
}

const char *
org_channel_name(const struct org_channel *ch)
{
	return ch->name;
}

enum org_kind
org_channel_kind(const struct org_channel *ch)
{
	return ch->kind;
}

const char *
org_channel_schema(const struct org_channel *ch)
{
	return ch->schema;
}

int64_t
org_channel_latest(const struct org_channel *ch)
{
	return ch->latest;
}

int64_t
org_channel_oldest(const struct org_channel *ch)
{
	return ch->latest - (int64_t)ch->count + 1;
}

uint64_t
org_channel_published(const struct org_channel *ch)
{
	return ch->published;
}

const char *
org_channel_event(const struct org_channel *ch, int64_t replay_id, size_t *len,
                  uint64_t *seq)
{
	const struct slot *s;
	int64_t oldest = org_channel_oldest(ch);

	if (replay_id < oldest || replay_id > ch->latest)
		return NULL;
	s = &ch->ring[(ch->head + (size_t)(replay_id - oldest)) % ch->cap];
	*len = s->len;
	if (seq != NULL)
		*seq = s->seq;
	return s->text;
}

/* Makes room for one more event; returns 0 or -1 (out of memory). */
static int
ring_reserve(struct org_channel *ch, size_t retention)
{
	struct slot *p;
	size_t cap, i;

	if (ch->count < ch->cap || ch->cap >= retention)
		return 0;
	cap = ch->cap ? ch->cap * 2 : ORG_RING_MIN;
	if (cap > retention)
		cap = retention;
	p = malloc(cap * sizeof(*p));
	if (p == NULL)
		return -1;
	/* Unwrap into the new array so the oldest event is at 0 again. */
	for (i = 0; i < ch->count; i++)
		p[i] = ch->ring[(ch->head + i) % ch->cap];
	free(ch->ring);
	ch->ring = p;
	ch->cap = cap;
	ch->head = 0;
	return 0;
}

/* Appends s to ch's ring (taking its text), dropping the oldest event
 * when the ring is at the retention limit. */
static void
ring_push(struct org_channel *ch, struct slot s)
{
	if (ch->count < ch->cap) {
		ch->ring[(ch->head + ch->count) % ch->cap] = s;
		ch->count++;
	} else {
		/* Full at the retention limit: the oldest event falls out,
		 * and a client whose cursor was behind it skips ahead. */
		free(ch->ring[ch->head].text);
		ch->ring[ch->head] = s;
		ch->head = (ch->head + 1) % ch->cap;
	}
}

/* A copy of text[0..n) with a terminating NUL, or NULL. */
static char *
text_dup(const char *text, size_t n)
{
	char *p = malloc(n + 1);

	if (p == NULL)
		return NULL;
	if (n > 0)
		memcpy(p, text, n);
	p[n] = '\0';
	return p;
}

int64_t
org_publish(struct org *org, struct org_channel *ch, org_build_fn *build,
            void *arg)
{
	struct slot s;
	int64_t id = ch->latest + 1;
	size_t n;

	evbuffer_drain(org->scratch, evbuffer_get_length(org->scratch));
	if (build(arg, org->scratch, ch, id, ch->published + 1,
	          util_now_ms()) != 0)
		return -1;
	if (ring_reserve(ch, org->cfg.retention) != 0)
		return -1;
	n = evbuffer_get_length(org->scratch);
	s.text = text_dup((const char *)evbuffer_pullup(org->scratch, -1), n);
	if (s.text == NULL)
		return -1;
	s.len = n;
	s.seq = ++org->seq;
	ring_push(ch, s);
	ch->latest = id;
	ch->published++;
	if (org->journal != NULL && org->journal->event != NULL)
		org->journal->event(org->journal_arg, ch, id, s.seq, s.text,
		                    s.len);
	if (org->hook != NULL)
		org->hook(org->hook_arg, ch);
	return id;
}

void
org_set_journal(struct org *org, const struct org_journal *j, void *arg)
{
	org->journal = j;
	org->journal_arg = arg;
}

void
org_commit(struct org *org)
{
	if (org->journal != NULL && org->journal->commit != NULL)
		org->journal->commit(org->journal_arg);
}

size_t
org_channel_trim(struct org *org, struct org_channel *ch, int64_t oldest)
{
	size_t n = 0;

	while (ch->count > 0 && org_channel_oldest(ch) < oldest) {
		free(ch->ring[ch->head].text);
		ch->ring[ch->head].text = NULL;
		ch->head = (ch->head + 1) % ch->cap;
		ch->count--;
		n++;
	}
	if (n > 0 && org->journal != NULL && org->journal->trim != NULL)
		org->journal->trim(org->journal_arg, ch);
	return n;
}

uint64_t
org_seq(const struct org *org)
{
	return org->seq;
}

void
org_restore_counters(struct org_channel *ch, int64_t latest, uint64_t published)
{
	ch->latest = latest;
	ch->published = published;
}

int
org_restore_event(struct org *org, struct org_channel *ch, int64_t replay_id,
                  uint64_t seq, const char *text, size_t len)
{
	struct slot s;

	if (replay_id <= ch->latest)
		return -1;
	if (ring_reserve(ch, org->cfg.retention) != 0)
		return -1;
	s.text = text_dup(text, len);
	if (s.text == NULL)
		return -1;
	s.len = len;
	s.seq = seq;
	/* Events older than a gap in replay ids are not retained: a ring
	 * holds consecutive ids only. */
	if (replay_id != ch->latest + 1)
		org_channel_trim(org, ch, replay_id);
	ring_push(ch, s);
	ch->latest = replay_id;
	ch->published++;
	if (seq > org->seq)
		org->seq = seq;
	return 0;
}

void
org_set_publish_hook(struct org *org, org_publish_hook *fn, void *arg)
{
	org->hook = fn;
	org->hook_arg = arg;
}

/* Remembers a copy of token. Returns 0 or -1. */
static int
token_add(struct org *org, const char *token)
{
	char *copy;

	if (org->ntokens == org->tokens_cap) {
		size_t cap = org->tokens_cap ? org->tokens_cap * 2 : 16;
		char **p = realloc(org->tokens, cap * sizeof(*p));
		int64_t *b;

		if (p == NULL)
			return -1;
		org->tokens = p;
		b = realloc(org->token_born, cap * sizeof(*b));
		if (b == NULL)
			return -1;
		org->token_born = b;
		org->tokens_cap = cap;
	}
	copy = strdup(token);
	if (copy == NULL)
		return -1;
	org->token_born[org->ntokens] = util_mono_ms();
	org->tokens[org->ntokens++] = copy;
	return 0;
}

int
org_token_issue(struct org *org, char *buf, size_t len)
{
	static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                            "abcdefghijklmnopqrstuvwxyz0123456789._";
	char rnd[64];

	util_rng_text(&org->rng, rnd, 48, alpha);
	/* The serial keeps tokens unique even if the generator repeats; the
	 * random part keeps them unique across restarts too. */
	snprintf(buf, len, "00Dxx0000001gPL!AQ%06llx%s",
	         (unsigned long long)++org->token_serial, rnd);
	if (token_add(org, buf) != 0)
		return -1;
	org->stats.tokens_issued++;
	if (org->journal != NULL && org->journal->token != NULL)
		org->journal->token(org->journal_arg, buf);
	return 0;
}

int
org_token_restore(struct org *org, const char *token)
{
	return org_token_valid(org, token) ? 0 : token_add(org, token);
}

size_t
org_token_count(const struct org *org)
{
	return org->ntokens;
}

const char *
org_token_at(const struct org *org, size_t i)
{
	return i < org->ntokens ? org->tokens[i] : NULL;
}

int
org_token_valid(const struct org *org, const char *token)
{
	size_t i;

	for (i = 0; i < org->ntokens; i++)
		if (strcmp(org->tokens[i], token) == 0)
			return org->cfg.token_ttl_ms <= 0 ||
			       util_mono_ms() - org->token_born[i] <
			           org->cfg.token_ttl_ms;
	return 0;
}

void
org_tokens_revoke(struct org *org)
{
	tokens_clear(org);
	if (org->journal != NULL && org->journal->revoke != NULL)
		org->journal->revoke(org->journal_arg);
}
