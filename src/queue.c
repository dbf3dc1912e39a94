/*
 * The queue as a ring of fixed-size entries over an arena of byte blocks.
 *
 * Every event would otherwise cost a malloc and a free of its own; here a
 * line and its channel, position and creation time are appended to the
 * current block, and the entry (in a ring indexed by sequence number)
 * points into it. Blocks are released in the order they were filled,
 * once every entry in them is acknowledged, and a few are kept for reuse,
 * so a steady stream allocates nothing and the heap does not grow and
 * shrink (page faults) with every connect response. Nothing moves while
 * it is queued: a line stays where it was written until its ack, which
 * lets a sink keep pointers instead of copies (sink.h).
 */
#include "sfrelay/queue.h"

#include <stdlib.h>
#include <string.h>

/* Big enough that the block header and the unused tail are noise, small
 * enough that an idle relay holds little. */
#define BLOCK_SIZE (64u * 1024u)
/* Blocks kept for reuse after they empty: the working set of a 1 MB
 * connect response, so bursts of that size allocate nothing. */
#define SPARE_BLOCKS 16

struct block {
	struct block *next; /* the next newer block */
	size_t cap;         /* bytes of data */
	size_t used;
	size_t live; /* entries pointing into this block */
	char data[];
};

/* Channel, position and creation time of an entry fit its slot in the
 * common case; longer ones go to the block, in front of the line. Kept
 * out of the block, they leave consecutive lines adjacent, which a sink
 * can write in one piece. */
#define META_INLINE 80

struct entry {
	uint64_t seq;
	const char *line;
	size_t len;
	struct block *blk;
	const char *ext; /* channel, position, created in the block, or NULL */
	size_t poff, coff; /* offsets of position and created */
	char meta[META_INLINE];
};

struct queue {
	struct entry *ring;
	size_t cap;        /* ring slots, a power of two */
	size_t head;       /* slot of the oldest entry */
	uint64_t head_seq; /* its sequence number (next_seq when empty) */
	uint64_t next_seq;
	uint64_t unsent; /* first sequence number not handed to the sink */
	size_t lines, bytes;
	size_t max_lines, max_bytes;
	struct block *oldest, *current; /* the chain of blocks in use */
	struct block *spare;            /* emptied blocks kept for reuse */
	size_t nspare;
	/* The open reservation (queue_reserve): the line's room in current. */
	char *res_line;
	size_t res_max;
};

/* An entry's strings: in its slot, or in the block (never moved). */
static const char *
meta_base(const struct entry *e)
{
	return e->ext != NULL ? e->ext : e->meta;
}

static const char *
entry_channel(const struct entry *e)
{
	return meta_base(e);
}

static const char *
entry_position(const struct entry *e)
{
	return meta_base(e) + e->poff;
}

static const char *
entry_created(const struct entry *e)
{
	return meta_base(e) + e->coff;
}

struct queue *
queue_new(size_t max_lines, size_t max_bytes)
{
	struct queue *q = calloc(1, sizeof(*q));
	if (q == NULL)
		return NULL;
	q->cap = 64;
	q->ring = malloc(q->cap * sizeof(*q->ring));
	if (q->ring == NULL) {
		free(q);
		return NULL;
	}
	q->next_seq = q->head_seq = q->unsent = 1;
	q->max_lines = max_lines;
	q->max_bytes = max_bytes;
	return q;
}

static void
free_chain(struct block *b)
{
	while (b != NULL) {
		struct block *next = b->next;
		free(b);
		b = next;
	}
}

void
queue_free(struct queue *q)
{
	if (q == NULL)
		return;
	free_chain(q->oldest);
	free_chain(q->spare);
	free(q->ring);
	free(q);
}

static struct entry *
slot(const struct queue *q, uint64_t seq)
{
	return &q->ring[(q->head + (size_t)(seq - q->head_seq)) & (q->cap - 1)];
}

/* Doubles the ring, unwrapping it so the oldest entry is at slot 0. */
static void
ring_grow(struct queue *q)
{
	size_t cap = q->cap * 2;
	struct entry *ring = malloc(cap * sizeof(*ring));
	if (ring == NULL)
		abort(); /* out of memory is fatal by design (STYLE.md) */
	size_t first = q->cap - q->head;
	if (first > q->lines)
		first = q->lines;
	memcpy(ring, q->ring + q->head, first * sizeof(*ring));
	memcpy(ring + first, q->ring, (q->lines - first) * sizeof(*ring));
	free(q->ring);
	q->ring = ring;
	q->cap = cap;
	q->head = 0;
}

/* A block with at least need bytes of data: a spare when one is big
 * enough, else a new one. */
static struct block *
block_get(struct queue *q, size_t need)
{
	struct block *b;
	if (need <= BLOCK_SIZE && q->spare != NULL) {
		b = q->spare;
		q->spare = b->next;
		q->nspare--;
	} else {
		size_t cap = need > BLOCK_SIZE ? need : BLOCK_SIZE;
		b = malloc(sizeof(*b) + cap);
		if (b == NULL)
			abort(); /* out of memory is fatal by design */
		b->cap = cap;
	}
	b->next = NULL;
	b->used = 0;
	b->live = 0;
	return b;
}

/* A block emptied by acks: kept for reuse (standard size only) or freed. */
static void
block_put(struct queue *q, struct block *b)
{
	if (b->cap == BLOCK_SIZE && q->nspare < SPARE_BLOCKS) {
		b->next = q->spare;
		q->spare = b;
		q->nspare++;
	} else {
		free(b);
	}
}

/* need contiguous bytes at the end of the current block. */
static char *
arena_room(struct queue *q, size_t need)
{
	struct block *b = q->current;
	if (b != NULL && b->live == 0)
		b->used = 0; /* everything in it was acknowledged */
	if (b == NULL || b->cap - b->used < need) {
		b = block_get(q, need);
		if (q->current != NULL)
			q->current->next = b;
		else
			q->oldest = b;
		q->current = b;
	}
	return b->data + b->used;
}

char *
queue_reserve(struct queue *q, const char *channel, const char *position,
	      const char *created, size_t max)
{
	if (created == NULL)
		created = "";
	if (q->lines == q->cap)
		ring_grow(q);
	struct entry *e = &q->ring[(q->head + q->lines) & (q->cap - 1)];
	size_t cl = strlen(channel) + 1, pl = strlen(position) + 1;
	size_t tl = strlen(created) + 1;
	size_t meta = cl + pl + tl;
	char *m, *p;
	if (meta <= sizeof(e->meta)) {
		m = e->meta;
		e->ext = NULL;
		p = arena_room(q, max);
	} else {
		m = arena_room(q, meta + max);
		e->ext = m;
		p = m + meta;
	}
	memcpy(m, channel, cl);
	memcpy(m + cl, position, pl);
	memcpy(m + cl + pl, created, tl);
	e->poff = cl;
	e->coff = cl + pl;
	q->res_line = p;
	q->res_max = max;
	return p;
}

uint64_t
queue_commit(struct queue *q, size_t len)
{
	if (q->res_line == NULL || len > q->res_max)
		abort(); /* a caller's bug: no reservation, or overrun */
	struct block *b = q->current;
	struct entry *e = &q->ring[(q->head + q->lines) & (q->cap - 1)];
	e->seq = q->next_seq++;
	e->line = q->res_line;
	e->len = len;
	e->blk = b;
	b->used = (size_t)(q->res_line + len - b->data);
	b->live++;
	q->res_line = NULL;
	q->lines++;
	q->bytes += len;
	return e->seq;
}

uint64_t
queue_push(struct queue *q, const char *channel, const char *position,
	   const char *created, const char *line, size_t len)
{
	char *p = queue_reserve(q, channel, position, created, len);
	memcpy(p, line, len);
	return queue_commit(q, len);
}

uint64_t
queue_next_unsent(struct queue *q, const char **line, size_t *len)
{
	if (q->unsent >= q->next_seq)
		return 0;
	const struct entry *e = slot(q, q->unsent);
	*line = e->line;
	*len = e->len;
	return e->seq;
}

void
queue_mark_sent(struct queue *q, uint64_t seq)
{
	if (seq >= q->unsent)
		q->unsent = seq + 1 < q->next_seq ? seq + 1 : q->next_seq;
}

/*
 * The last acked entry of each channel wins; report each channel once per
 * ack. Channels are few, so a small table beats a hash. Should a batch
 * span more channels than the table holds, it is reported and reused:
 * a channel then hears twice, oldest position first, which is harmless.
 */
#define QUEUE_ACK_SLOTS 32
static void
report_positions(const struct queue *q, uint64_t upto, queue_position_fn *fn,
		 void *arg)
{
	const struct entry *slots[QUEUE_ACK_SLOTS];
	size_t n = 0;
	for (uint64_t seq = q->head_seq; seq <= upto; seq++) {
		const struct entry *e = slot(q, seq);
		size_t i = 0;
		while (i < n &&
		       strcmp(entry_channel(slots[i]), entry_channel(e)) != 0)
			i++;
		if (i == n && n == QUEUE_ACK_SLOTS) {
			for (size_t j = 0; j < n; j++)
				fn(arg, entry_channel(slots[j]),
				   entry_position(slots[j]),
				   entry_created(slots[j]));
			n = i = 0;
		}
		slots[i] = e;
		if (i == n)
			n++;
	}
	for (size_t j = 0; j < n; j++)
		fn(arg, entry_channel(slots[j]), entry_position(slots[j]),
		   entry_created(slots[j]));
}

void
queue_ack(struct queue *q, uint64_t upto, queue_position_fn *fn, void *arg)
{
	if (upto >= q->next_seq)
		upto = q->next_seq - 1;
	if (upto < q->head_seq)
		return;
	if (fn != NULL)
		report_positions(q, upto, fn, arg);
	if (q->unsent <= upto)
		q->unsent = upto + 1;
	while (q->head_seq <= upto) {
		struct entry *e = &q->ring[q->head];
		e->blk->live--;
		q->bytes -= e->len;
		q->lines--;
		q->head = (q->head + 1) & (q->cap - 1);
		q->head_seq++;
	}
	/* Blocks empty from the oldest on; the current one stays (it is
	 * rewound by its next use). */
	while (q->oldest != q->current && q->oldest->live == 0) {
		struct block *b = q->oldest;
		q->oldest = b->next;
		block_put(q, b);
	}
}

size_t
queue_lines(const struct queue *q)
{
	return q->lines;
}

size_t
queue_bytes(const struct queue *q)
{
	return q->bytes;
}

int
queue_full(const struct queue *q)
{
	return q->lines >= q->max_lines || q->bytes >= q->max_bytes;
}

int
queue_low(const struct queue *q)
{
	return q->lines < q->max_lines / 4 && q->bytes < q->max_bytes / 4;
}
