/* A singly linked FIFO with a "sent" cursor. */
#include "sfrelay/queue.h"

#include <stdlib.h>
#include <string.h>

struct entry {
	struct entry *next;
	uint64_t seq;
	size_t len;      /* line length */
	char *channel;   /* points into data */
	char *position;  /* points into data */
	char *created;   /* points into data */
	char data[];     /* line, channel\0, position\0, created\0 */
};

struct queue {
	struct entry *head, *tail;
	struct entry *unsent; /* first entry not handed to the sink */
	uint64_t next_seq;
	size_t lines, bytes;
	size_t max_lines, max_bytes;
};

struct queue *
queue_new(size_t max_lines, size_t max_bytes)
{
	struct queue *q = calloc(1, sizeof(*q));
	if (q == NULL)
		return NULL;
	q->next_seq = 1;
	q->max_lines = max_lines;
	q->max_bytes = max_bytes;
	return q;
}

void
queue_free(struct queue *q)
{
	if (q == NULL)
		return;
	while (q->head != NULL) {
		struct entry *e = q->head;
		q->head = e->next;
		free(e);
	}
	free(q);
}

uint64_t
queue_push(struct queue *q, const char *channel, const char *position,
	   const char *created, const char *line, size_t len)
{
	if (created == NULL)
		created = "";
	size_t cl = strlen(channel) + 1, pl = strlen(position) + 1;
	size_t tl = strlen(created) + 1;
	struct entry *e = malloc(sizeof(*e) + len + cl + pl + tl);
	if (e == NULL)
		abort(); /* out of memory is fatal by design (STYLE.md) */
	e->next = NULL;
	e->seq = q->next_seq++;
	e->len = len;
	memcpy(e->data, line, len);
	e->channel = e->data + len;
	memcpy(e->channel, channel, cl);
	e->position = e->channel + cl;
	memcpy(e->position, position, pl);
	e->created = e->position + pl;
	memcpy(e->created, created, tl);
	if (q->tail != NULL)
		q->tail->next = e;
	else
		q->head = e;
	q->tail = e;
	if (q->unsent == NULL)
		q->unsent = e;
	q->lines++;
	q->bytes += len;
	return e->seq;
}

uint64_t
queue_next_unsent(struct queue *q, const char **line, size_t *len)
{
	if (q->unsent == NULL)
		return 0;
	*line = q->unsent->data;
	*len = q->unsent->len;
	return q->unsent->seq;
}

void
queue_mark_sent(struct queue *q, uint64_t seq)
{
	while (q->unsent != NULL && q->unsent->seq <= seq)
		q->unsent = q->unsent->next;
}

/*
 * The last acked entry of each channel wins; report each channel once per
 * ack. Channels are few, so a small table beats a hash. Should a batch
 * span more channels than the table holds, it is reported and reused:
 * a channel then hears twice, oldest position first, which is harmless.
 */
#define QUEUE_ACK_SLOTS 32
static void
report_positions(struct entry *acked, struct entry *stop,
		 queue_position_fn *fn, void *arg)
{
	struct entry *slot[QUEUE_ACK_SLOTS];
	size_t n = 0;
	for (struct entry *e = acked; e != stop; e = e->next) {
		size_t i = 0;
		while (i < n && strcmp(slot[i]->channel, e->channel) != 0)
			i++;
		if (i == n && n == QUEUE_ACK_SLOTS) {
			for (size_t j = 0; j < n; j++)
				fn(arg, slot[j]->channel, slot[j]->position,
				   slot[j]->created);
			n = i = 0;
		}
		slot[i] = e;
		if (i == n)
			n++;
	}
	for (size_t j = 0; j < n; j++)
		fn(arg, slot[j]->channel, slot[j]->position, slot[j]->created);
}

void
queue_ack(struct queue *q, uint64_t upto, queue_position_fn *fn, void *arg)
{
	struct entry *first = q->head, *e = q->head;
	while (e != NULL && e->seq <= upto)
		e = e->next;
	if (e == first)
		return;
	if (fn != NULL)
		report_positions(first, e, fn, arg);
	/* Never let the sent cursor point at a freed entry. */
	if (q->unsent != NULL && q->unsent->seq <= upto)
		q->unsent = e;
	while (q->head != e) {
		struct entry *dead = q->head;
		q->head = dead->next;
		q->lines--;
		q->bytes -= dead->len;
		free(dead);
	}
	if (q->head == NULL)
		q->tail = NULL;
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
