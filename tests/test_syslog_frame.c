/* The RFC 5424 / RFC 6587 framer: table-driven, plus the parser that
 * reads frames back the way a strict receiver does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "sfrelay/syslog_frame.h"

static char *
take(struct evbuffer *b, size_t *n)
{
	*n = evbuffer_get_length(b);
	char *s = malloc(*n + 1);
	evbuffer_remove(b, s, *n);
	s[*n] = '\0';
	return s;
}

static void
test_timestamps(void **state)
{
	(void)state;
	static const struct {
		int64_t sec;
		long usec;
		int rc;
		const char *want;
	} cases[] = {
		{0, 0, 0, "1970-01-01T00:00:00.000000Z"},
		{1795720073, 123456, 0, "2026-11-26T19:07:53.123456Z"},
		{951782400, 1, 0, "2000-02-29T00:00:00.000001Z"},  /* leap day */
		{4107542399, 999999, 0, "2100-02-28T23:59:59.999999Z"},
		{-1, 0, 0, "1969-12-31T23:59:59.000000Z"},
		{253402300799LL, 0, 0, "9999-12-31T23:59:59.000000Z"},
		{253402300800LL, 0, -1, "-"},
		{0, 1000000, -1, "-"},
		{0, -1, -1, "-"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[SYSLOG_TIMESTAMP_LEN + 1];
		int rc = syslog_timestamp(buf, sizeof(buf), cases[i].sec,
					  cases[i].usec);
		assert_int_equal(rc, cases[i].rc);
		assert_string_equal(buf, cases[i].want);
		if (rc == 0)
			assert_int_equal(strlen(buf), SYSLOG_TIMESTAMP_LEN);
	}
	char small[8];
	assert_int_equal(syslog_timestamp(small, sizeof(small), 0, 0), -1);
}

static void
test_frames(void **state)
{
	(void)state;
	char long_host[300], long_app[60], long_msgid[40];
	memset(long_host, 'h', sizeof(long_host) - 1);
	long_host[sizeof(long_host) - 1] = '\0';
	memset(long_app, 'a', sizeof(long_app) - 1);
	long_app[sizeof(long_app) - 1] = '\0';
	memset(long_msgid, 'm', sizeof(long_msgid) - 1);
	long_msgid[sizeof(long_msgid) - 1] = '\0';
	static const char ts[] = "2026-11-26T19:27:53.123456Z";
	struct {
		struct syslog_header h;
		const char *msg;
		int counted;
		const char *want; /* NULL: checked by parse below */
	} cases[] = {
		/* local0.info = 16*8+6 = 134 */
		{{16, 6, "web.1", "sfrelay", "4242", "event"},
		 "at=event id=x\n",
		 1,
		 "75 <134>1 2026-11-26T19:27:53.123456Z web.1 sfrelay 4242 "
		 "event - at=event id=x"},
		{{16, 6, "web.1", "sfrelay", "4242", "event"},
		 "at=event id=x",
		 0,
		 "<134>1 2026-11-26T19:27:53.123456Z web.1 sfrelay 4242 event "
		 "- at=event id=x"},
		/* kern.emerg: PRI 0; missing fields are NILVALUE. */
		{{0, 0, NULL, "", NULL, NULL},
		 "m",
		 1,
		 "44 <0>1 2026-11-26T19:27:53.123456Z - - - - - m"},
		/* Out-of-range facility/severity are clamped: 23*8+7. */
		{{99, 42, "h", "a", "p", "m"},
		 "x",
		 0,
		 "<191>1 2026-11-26T19:27:53.123456Z h a p m - x"},
		{{-3, -1, "h", "a", "p", "m"},
		 "",
		 0,
		 "<0>1 2026-11-26T19:27:53.123456Z h a p m - "},
		/* Spaces and non-ASCII in header fields become '_'. */
		{{1, 5, "my host", "s\xc3\xa9relay", "1\t2", "ev ent"},
		 "caf\xc3\xa9",
		 0,
		 "<13>1 2026-11-26T19:27:53.123456Z my_host s__relay 1_2 "
		 "ev_ent - caf\xc3\xa9"},
		/* Over-long fields are cut to their RFC lengths. */
		{{1, 6, long_host, long_app, "p", long_msgid}, "x", 1, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct evbuffer *b = evbuffer_new();
		evbuffer_add(b, "keep", 4); /* appends, never replaces */
		size_t mlen = strlen(cases[i].msg);
		long n = syslog_frame(b, &cases[i].h, ts, cases[i].msg, mlen,
				      cases[i].counted);
		assert_true(n > 0);
		assert_int_equal((size_t)n,
				 syslog_frame_len(&cases[i].h, ts, cases[i].msg,
						  mlen, cases[i].counted));
		size_t len;
		char *s = take(b, &len);
		assert_int_equal(len, (size_t)n + 4);
		assert_memory_equal(s, "keep", 4);
		if (cases[i].want != NULL) {
			assert_string_equal(s + 4, cases[i].want);
		} else {
			struct syslog_parsed p;
			assert_int_equal(
				syslog_frame_parse(s + 4, len - 4, &p), n);
			assert_int_equal(p.hostname_len, SYSLOG_HOSTNAME_MAX);
			assert_int_equal(p.app_name_len, SYSLOG_APP_NAME_MAX);
			assert_int_equal(p.msgid_len, SYSLOG_MSGID_MAX);
		}
		if (cases[i].counted) {
			/* The count is the length of the rest. */
			unsigned long count = strtoul(s + 4, NULL, 10);
			char *sp = strchr(s + 4, ' ');
			assert_int_equal(count, len - (size_t)(sp + 1 - s));
		}
		free(s);
		evbuffer_free(b);
	}
}

/* A frame written and read back gives the same fields. */
static void
test_round_trip(void **state)
{
	(void)state;
	struct syslog_header h = {23, 7, "dyno.web.1", "sfrelay", "77",
				  "stats"};
	const char *msgs[] = {"", "a", "at=stats count#sfrelay.events=3",
			      "spaces  inside   and \"quotes\"",
			      "{\"at\":\"event\",\"id\":\"x\"}"};
	struct evbuffer *b = evbuffer_new();
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
		assert_true(syslog_frame(b, &h, "2026-01-02T03:04:05.000006Z",
					 msgs[i], strlen(msgs[i]), 1) > 0);
	size_t len;
	char *s = take(b, &len);
	size_t off = 0;
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct syslog_parsed p;
		long n = syslog_frame_parse(s + off, len - off, &p);
		assert_true(n > 0);
		assert_int_equal(p.pri, 191);
		assert_int_equal(p.msg_len, strlen(msgs[i]));
		assert_memory_equal(p.msg, msgs[i], p.msg_len);
		assert_int_equal(p.hostname_len, strlen("dyno.web.1"));
		assert_memory_equal(p.msgid, "stats", 5);
		assert_memory_equal(p.procid, "77", 2);
		assert_int_equal(p.timestamp_len, SYSLOG_TIMESTAMP_LEN);
		off += (size_t)n;
	}
	assert_int_equal(off, len);
	free(s);
	evbuffer_free(b);
}

static void
test_parse_rejects(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		long want;
	} cases[] = {
		{"", 0},
		{"12", 0},                       /* count not finished */
		{"40 <1>1 ", 0},                 /* frame not complete */
		{"x <1>1 t h a p m - x", -1},     /* no count */
		{"05 <1>1 t", -1},               /* leading zero */
		{"3 abc", -1},                   /* no PRI */
		{"16 <192>1 t h a p m -", -1},   /* PRI over 191 */
		{"16 <01>1 t h a p m -", -1},    /* PRI leading zero */
		{"15 <1>2 t h a p m -", -1},     /* version 2 */
		{"14 <1>1 t h a p m", -1},       /* no SD */
		{"16 <1>1 t h a p m x", -1},     /* SD not NILVALUE */
		{"17 <1>1 t h  a p m -", -1},    /* empty field */
		{"17 <1>1 t h a p m -x", -1},    /* no space before MSG */
		{"16 <1>1 t h a p m -", 19},     /* empty MSG, no space */
		{"17 <1>1 t h a p m - ", 20},    /* empty MSG after a space */
		{"1234567890 <1>", -1},          /* absurd count */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct syslog_parsed p;
		long n = syslog_frame_parse(cases[i].in, strlen(cases[i].in),
					    &p);
		if (n != cases[i].want)
			fail_msg("case %zu \"%s\": got %ld want %ld", i,
				 cases[i].in, n, cases[i].want);
	}
}

static void
test_msgid_of_line(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		const char *want;
	} cases[] = {
		{"at=event src=stream id=x\n", "event"},
		{"at=stats count#sfrelay.events=1", "stats"},
		{"{\"at\":\"event\",\"src\":\"poll\"}\n", "event"},
		{"{\"at\":\"ev\\\"x\"}", "ev"},
		{"src=stream at=event", "-"},
		{"at=", "-"},
		{"", "-"},
		{"at=\xc3\xa9v", "__v"},
		{"at=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[SYSLOG_MSGID_MAX + 1];
		syslog_msgid_of_line(cases[i].line, strlen(cases[i].line), buf,
				     sizeof(buf));
		assert_string_equal(buf, cases[i].want);
	}
	char tiny[4];
	syslog_msgid_of_line("at=event", 8, tiny, sizeof(tiny));
	assert_string_equal(tiny, "eve");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timestamps),
		cmocka_unit_test(test_frames),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_msgid_of_line),
	};
	return cmocka_run_group_tests_name("syslog_frame", tests, NULL, NULL);
}
