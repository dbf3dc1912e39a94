/* The ordered queue: sequence numbers, sent cursor, cumulative acks and
 * the per-channel positions they report. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sequence_and_sent_cursor),
		cmocka_unit_test(test_ack_reports_newest_position_per_channel),
		cmocka_unit_test(test_ack_of_unsent_entries_moves_cursor),
		cmocka_unit_test(test_full_by_lines_and_bytes),
		cmocka_unit_test(test_many_channels_in_one_ack),
		cmocka_unit_test(test_ack_reports_created_time),
	};
	return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
