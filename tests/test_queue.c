/* The ordered queue: sequence numbers, sent cursor, cumulative acks and
 * the per-channel positions they report. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sfrelay/queue.h"

struct seen {
	char channel[8][64];
	char position[8][64];
	int n;
};

static void
record(void *arg, const char *channel, const char *position,
       const char *created)
{
	(void)created;
	struct seen *s = arg;
	assert_true(s->n < 8);
	snprintf(s->channel[s->n], 64, "%s", channel);
	snprintf(s->position[s->n], 64, "%s", position);
	s->n++;
}

static const char *
position_of(const struct seen *s, const char *channel)
{
	const char *p = NULL;
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->channel[i], channel) == 0)
			p = s->position[i];
	return p;
}

static void
test_sequence_and_sent_cursor(void **state)
{
	(void)state;
	struct queue *q = queue_new(100, 1 << 20);
	assert_int_equal(queue_push(q, "/topic/A", "1", NULL, "a1\n", 3), 1);
	assert_int_equal(queue_push(q, "/topic/B", "7", NULL, "b7\n", 3), 2);
	const char *line;
	size_t len;
	assert_int_equal(queue_next_unsent(q, &line, &len), 1);
	assert_memory_equal(line, "a1\n", 3);
	queue_mark_sent(q, 1);
	assert_int_equal(queue_next_unsent(q, &line, &len), 2);
	queue_mark_sent(q, 2);
	assert_int_equal(queue_next_unsent(q, &line, &len), 0);
	assert_int_equal(queue_lines(q), 2);
	assert_int_equal(queue_bytes(q), 6);
	queue_free(q);
}

static void
test_ack_reports_newest_position_per_channel(void **state)
{
	(void)state;
	struct queue *q = queue_new(100, 1 << 20);
	queue_push(q, "/topic/A", "10", NULL, "x\n", 2);
	queue_push(q, "/topic/B", "5", NULL, "x\n", 2);
	queue_push(q, "/topic/A", "12", NULL, "x\n", 2);
	queue_push(q, "/topic/B", "9", NULL, "x\n", 2);
	queue_push(q, "/topic/A", "15", NULL, "x\n", 2);
	struct seen s = {0};
	queue_ack(q, 3, record, &s);
	assert_int_equal(s.n, 2);
	assert_string_equal(position_of(&s, "/topic/A"), "12");
	assert_string_equal(position_of(&s, "/topic/B"), "5");
	assert_int_equal(queue_lines(q), 2);

	/* An ack that covers nothing new reports nothing. */
	memset(&s, 0, sizeof(s));
	queue_ack(q, 3, record, &s);
	assert_int_equal(s.n, 0);

	queue_ack(q, 5, record, &s);
	assert_string_equal(position_of(&s, "/topic/A"), "15");
	assert_string_equal(position_of(&s, "/topic/B"), "9");
	assert_int_equal(queue_lines(q), 0);
	assert_int_equal(queue_bytes(q), 0);
	queue_free(q);
}

static void
test_ack_of_unsent_entries_moves_cursor(void **state)
{
	(void)state;
	struct queue *q = queue_new(100, 1 << 20);
	queue_push(q, "c", "1", NULL, "l\n", 2);
	queue_push(q, "c", "2", NULL, "l\n", 2);
	queue_push(q, "c", "3", NULL, "l\n", 2);
	queue_ack(q, 2, NULL, NULL);
	const char *line;
	size_t len;
	assert_int_equal(queue_next_unsent(q, &line, &len), 3);
	queue_push(q, "c", "4", NULL, "l\n", 2);
	queue_mark_sent(q, 3);
	assert_int_equal(queue_next_unsent(q, &line, &len), 4);
	queue_free(q);
}

static void
test_full_by_lines_and_bytes(void **state)
{
	(void)state;
	struct queue *q = queue_new(2, 10);
	assert_false(queue_full(q));
	queue_push(q, "c", "1", NULL, "12345\n", 6);
	assert_false(queue_full(q));
	queue_push(q, "c", "2", NULL, "1\n", 2);
	assert_true(queue_full(q)); /* two lines */
	/* Pushing past the mark is accepted: a held event is never dropped. */
	assert_int_equal(queue_push(q, "c", "3", NULL, "123456789\n", 10), 3);
	queue_ack(q, 2, NULL, NULL);
	assert_true(queue_full(q)); /* 10 bytes */
	queue_ack(q, 3, NULL, NULL);
	assert_false(queue_full(q));
	queue_free(q);
}

/* "Low" (a connect may go ahead): under a quarter of both limits. */
static void
test_low_by_lines_and_bytes(void **state)
{
	(void)state;
	struct queue *q = queue_new(8, 400);
	assert_true(queue_low(q));
	queue_push(q, "c", "1", NULL, "1\n", 2);
	assert_true(queue_low(q)); /* 1 of 8 lines */
	queue_push(q, "c", "2", NULL, "2\n", 2);
	assert_false(queue_low(q)); /* 2 of 8 lines */
	queue_ack(q, 2, NULL, NULL);
	assert_true(queue_low(q));
	char big[100];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\n';
	queue_push(q, "c", "3", NULL, big, sizeof(big));
	assert_false(queue_low(q)); /* 100 of 400 bytes */
	assert_false(queue_full(q));
	queue_ack(q, 3, NULL, NULL);
	assert_true(queue_low(q));
	queue_free(q);
}

struct created_seen {
	char created[64];
};

static void
record_created(void *arg, const char *channel, const char *position,
	       const char *created)
{
	(void)channel;
	(void)position;
	struct created_seen *c = arg;
	snprintf(c->created, sizeof(c->created), "%s", created);
}

/* The creation time travels with the position (it names gaps later). */
static void
test_ack_reports_created_time(void **state)
{
	(void)state;
	struct queue *q = queue_new(10, 1 << 20);
	queue_push(q, "/topic/A", "1", "2026-11-26T19:27:53.000Z", "x\n", 2);
	queue_push(q, "/topic/A", "2", NULL, "x\n", 2);
	struct created_seen c = {"unset"};
	queue_ack(q, 1, record_created, &c);
	assert_string_equal(c.created, "2026-11-26T19:27:53.000Z");
	queue_ack(q, 2, record_created, &c);
	assert_string_equal(c.created, "");
	queue_free(q);
}

struct c0_seen {
	char pos[32];
	int calls;
};

static void
record_c0(void *arg, const char *channel, const char *position,
	  const char *created)
{
	(void)created;
	struct c0_seen *c0 = arg;
	c0->calls++;
	if (strcmp(channel, "/u/c0") == 0)
		snprintf(c0->pos, sizeof(c0->pos), "%s", position);
}

/* More channels in one ack than the position table holds: the newest
 * position of each channel must still be the last one reported. */
static void
test_many_channels_in_one_ack(void **state)
{
	(void)state;
	struct queue *q = queue_new(1000, 1 << 20);
	char ch[32], pos[32];
	for (int i = 0; i < 40; i++) {
		snprintf(ch, sizeof(ch), "/u/c%d", i);
		snprintf(pos, sizeof(pos), "%d", i);
		queue_push(q, ch, pos, NULL, "x\n", 2);
	}
	queue_push(q, "/u/c0", "100", NULL, "x\n", 2);
	struct c0_seen c0 = {"", 0};
	queue_ack(q, 41, record_c0, &c0);
	assert_string_equal(c0.pos, "100");
	assert_true(c0.calls >= 40);
	queue_free(q);
}


/* ---- the arena -------------------------------------------------------- */

/* Line k: its length and bytes follow from k alone, so any line can be
 * checked later without keeping a copy. Some are longer than a block. */
static size_t
line_len(uint64_t k)
{
	if (k % 997 == 0)
		return 100000 + (size_t)k; /* over the 64 KiB block */
	return 1 + (size_t)(k * 37 % 700);
}

static void
make_line(char *buf, uint64_t k, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		buf[i] = (char)('a' + (k + i) % 26);
	buf[n - 1] = '\n';
}

static int
line_ok(const char *line, uint64_t k, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (line[i] != (char)('a' + (k + i) % 26))
			return 0;
	return line[n - 1] == '\n';
}

struct last {
	char position[4][32];
	char created[4][32];
};

static int
channel_index(const char *channel)
{
	/* Two short channels and one too long to sit beside its entry. */
	if (strcmp(channel, "/topic/A") == 0)
		return 0;
	if (strcmp(channel, "/topic/B") == 0)
		return 1;
	if (strncmp(channel, "/topic/Long", 11) == 0 && strlen(channel) == 200)
		return 2;
	fail_msg("unexpected channel %s", channel);
	return -1;
}

static void
record_last(void *arg, const char *channel, const char *position,
	    const char *created)
{
	struct last *l = arg;
	int i = channel_index(channel);
	snprintf(l->position[i], 32, "%s", position);
	snprintf(l->created[i], 32, "%s", created);
}

/*
 * Lines of every size, pushed and acknowledged in uneven steps for long
 * enough to wrap the ring and recycle blocks many times: every line a
 * sink was given keeps its bytes, in place, until it is acknowledged,
 * and each ack reports the newest position of each channel.
 */
static void
test_lines_stay_in_place_until_acked(void **state)
{
	(void)state;
	enum { N = 6000, WINDOW = 400 };
	struct queue *q = queue_new(1000000, SIZE_MAX);
	const char **ptr = calloc(N + 1, sizeof(*ptr));
	char *buf = malloc(200000);
	char longch[201];
	assert_non_null(ptr);
	assert_non_null(buf);
	memset(longch, 'x', sizeof(longch) - 1);
	memcpy(longch, "/topic/Long", 11);
	longch[200] = '\0';
	const char *chans[3] = {"/topic/A", "/topic/B", longch};
	uint64_t pushed = 0, acked = 0;
	size_t bytes = 0;
	while (acked < N) {
		/* Push up to the window, send everything. */
		while (pushed < N && pushed - acked < WINDOW) {
			uint64_t k = ++pushed;
			size_t n = line_len(k);
			char pos[32], created[32];
			snprintf(pos, sizeof(pos), "%llu", (unsigned long long)k);
			snprintf(created, sizeof(created), "t%llu",
				 (unsigned long long)k);
			make_line(buf, k, n);
			assert_int_equal(queue_push(q, chans[k % 3], pos,
						    k % 5 ? created : NULL, buf,
						    n),
					 k);
			bytes += n;
		}
		const char *line;
		size_t len;
		uint64_t seq;
		while ((seq = queue_next_unsent(q, &line, &len)) != 0) {
			assert_int_equal(len, line_len(seq));
			ptr[seq] = line;
			queue_mark_sent(q, seq);
		}
		/* Everything sent and not acknowledged is intact. */
		for (uint64_t k = acked + 1; k <= pushed; k++)
			assert_true(line_ok(ptr[k], k, line_len(k)));
		assert_int_equal(queue_bytes(q), bytes);
		assert_int_equal(queue_lines(q), pushed - acked);
		uint64_t upto = acked + 1 + (acked * 7919 % 250);
		if (upto > pushed)
			upto = pushed;
		struct last l;
		memset(&l, 0, sizeof(l));
		queue_ack(q, upto, record_last, &l);
		/* The newest acked entry of each channel was reported. */
		for (int c = 0; c < 3; c++) {
			uint64_t newest = 0;
			for (uint64_t k = acked + 1; k <= upto; k++)
				if ((int)(k % 3) == c)
					newest = k;
			if (newest == 0) {
				assert_string_equal(l.position[c], "");
				continue;
			}
			char want[32];
			snprintf(want, sizeof(want), "%llu",
				 (unsigned long long)newest);
			assert_string_equal(l.position[c], want);
			if (newest % 5)
				snprintf(want, sizeof(want), "t%llu",
					 (unsigned long long)newest);
			else
				want[0] = '\0';
			assert_string_equal(l.created[c], want);
		}
		for (uint64_t k = acked + 1; k <= upto; k++)
			bytes -= line_len(k);
		acked = upto;
	}
	assert_int_equal(queue_lines(q), 0);
	assert_int_equal(queue_bytes(q), 0);
	assert_int_equal(queue_next_unsent(q, &(const char *){NULL},
					   &(size_t){0}),
			 0);
	free(buf);
	free(ptr);
	queue_free(q);
}

/* A line formatted in place: reserved, written, committed shorter than
 * the room; a reservation that is not committed leaves no trace. */
static void
test_reserve_and_commit(void **state)
{
	(void)state;
	struct queue *q = queue_new(100, 1 << 20);
	char *p = queue_reserve(q, "/topic/A", "1", "c1", 4096);
	assert_non_null(p);
	memcpy(p, "one\n", 4);
	assert_int_equal(queue_commit(q, 4), 1);

	/* Forgotten: nothing queued, the next line takes its place. */
	p = queue_reserve(q, "/topic/A", "2", NULL, 100);
	memcpy(p, "garbage", 7);
	assert_int_equal(queue_push(q, "/topic/A", "3", NULL, "three\n", 6), 2);
	assert_int_equal(queue_lines(q), 2);
	assert_int_equal(queue_bytes(q), 10);

	const char *line;
	size_t len;
	assert_int_equal(queue_next_unsent(q, &line, &len), 1);
	assert_int_equal(len, 4);
	assert_memory_equal(line, "one\n", 4);
	queue_mark_sent(q, 1);
	assert_int_equal(queue_next_unsent(q, &line, &len), 2);
	assert_int_equal(len, 6);
	assert_memory_equal(line, "three\n", 6);

	struct seen s = {0};
	queue_ack(q, 2, record, &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.position[0], "3");
	queue_free(q);
}

/* Room larger than a block gets a block of its own. */
static void
test_reserve_larger_than_a_block(void **state)
{
	(void)state;
	struct queue *q = queue_new(100, SIZE_MAX);
	size_t big = 300000;
	queue_push(q, "/topic/A", "1", NULL, "a\n", 2);
	char *p = queue_reserve(q, "/topic/A", "2", NULL, big);
	memset(p, 'z', big - 1);
	p[big - 1] = '\n';
	assert_int_equal(queue_commit(q, big), 2);
	queue_push(q, "/topic/A", "3", NULL, "c\n", 2);
	const char *line;
	size_t len;
	queue_mark_sent(q, 1);
	assert_int_equal(queue_next_unsent(q, &line, &len), 2);
	assert_int_equal(len, big);
	assert_int_equal(line[0], 'z');
	assert_int_equal(line[big - 1], '\n');
	struct seen s = {0};
	queue_ack(q, 3, record, &s);
	assert_string_equal(s.position[0], "3");
	assert_int_equal(queue_lines(q), 0);
	queue_free(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sequence_and_sent_cursor),
		cmocka_unit_test(test_ack_reports_newest_position_per_channel),
		cmocka_unit_test(test_ack_of_unsent_entries_moves_cursor),
		cmocka_unit_test(test_full_by_lines_and_bytes),
		cmocka_unit_test(test_low_by_lines_and_bytes),
		cmocka_unit_test(test_many_channels_in_one_ack),
		cmocka_unit_test(test_ack_reports_created_time),
		cmocka_unit_test(test_lines_stay_in_place_until_acked),
		cmocka_unit_test(test_reserve_and_commit),
		cmocka_unit_test(test_reserve_larger_than_a_block),
	};
	return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
