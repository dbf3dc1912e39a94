/*
 * Shared by test_soql.c and test_backfill.c: a collector for the list
 * parsers' problem reports and evbuffer-to-string helpers. Header-only
 * (static inline), so each test program stays one .c file.
 */
#ifndef SFRELAY_TESTS_SOQL_FIXTURE_H
#define SFRELAY_TESTS_SOQL_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "sfrelay/soql.h"

/* Every message a soql_problem_fn received, one a line, and how many. */
struct problems {
	char text[4096];
	int n;
};

/* A soql_problem_fn: arg is a struct problems. */
static inline void
collect(void *arg, const char *msg)
{
	struct problems *p = arg;
	size_t used = strlen(p->text);
	snprintf(p->text + used, sizeof(p->text) - used, "%s\n", msg);
	p->n++;
}

/* pr holds exactly n reports, and want (NULL-terminated) is found in
 * them string by string. */
static inline void
check_problems(const struct problems *pr, int n, const char *const *want)
{
	if (pr->n != n)
		fail_msg("%d problems, want %d:\n%s", pr->n, n, pr->text);
	for (; *want != NULL; want++)
		if (strstr(pr->text, *want) == NULL)
			fail_msg("no \"%s\" in:\n%s", *want, pr->text);
}

/* count items "<pre>0<post>,<pre>1<post>,..." into buf, which must hold
 * them. */
static inline void
numbered_list(char *buf, size_t len, int count, const char *pre,
              const char *post)
{
	size_t o = 0;
	buf[0] = '\0';
	for (int i = 0; i < count; i++) {
		int k = snprintf(buf + o, len - o, "%s%s%d%s", i ? "," : "",
		                 pre, i, post);
		assert_true(k > 0 && (size_t)k < len - o);
		o += (size_t)k;
	}
}

/* A list setting's parser under test: parses text, frees what it
 * parsed, returns its return value and the number of entries in *n. */
typedef int list_parse_fn(const char *text, size_t *n, soql_problem_fn *problem,
                          void *arg);

/* The limit of a list setting: SOQL_MAX_OBJECTS items fit, one more is
 * one problem; without a problem callback a bad list is still refused. */
static inline void
check_list_limit(list_parse_fn *parse, const char *pre, const char *post)
{
	char many[2048];
	struct problems pr = {"", 0};
	size_t n = 99;

	numbered_list(many, sizeof(many), SOQL_MAX_OBJECTS + 1, pre, post);
	assert_int_equal(parse(many, &n, collect, &pr), -1);
	assert_int_equal(n, 0);
	check_problems(&pr, 1,
	               (const char *const[]){"has 33 items, at most 32", NULL});
	*strrchr(many, ',') = '\0';
	assert_int_equal(parse(many, &n, collect, &pr), 0);
	assert_int_equal(n, SOQL_MAX_OBJECTS);
	assert_int_equal(pr.n, 1);
	assert_int_equal(parse(",", &n, NULL, NULL), -1);
}

/* The buffer's text as a NUL-terminated heap string (drains it; the
 * caller frees the string). */
static inline char *
take(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	assert_non_null(s);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

/* take, then frees the buffer. */
static inline char *
take_free(struct evbuffer *b)
{
	char *s = take(b);
	evbuffer_free(b);
	return s;
}

#endif /* SFRELAY_TESTS_SOQL_FIXTURE_H */
