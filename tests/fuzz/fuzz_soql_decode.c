/*
 * Fuzz harness for the SOQL reply decoders and text parsers (soql.h):
 * query pages, composite replies, error bodies, Sforce-Limit-Info, the
 * checkpoint text of a high-water mark and the poll item syntax. All of
 * it is untrusted: replies come from the network, the rest from the
 * environment or the state file.
 *
 * Input: byte 0 picks the decoder (its low 3 bits), the rest is its
 * input.
 *
 * Invariants, each an abort() (after a message) when broken:
 *   - a decoded page: every record slice lies inside the input and is an
 *     object ('{' ... '}'); nextRecordsUrl is set exactly when done is
 *     false, and is a /services/data/ path; each record's payload copy
 *     (without "attributes") parses as a JSON object with json-c; a
 *     string read from a record is terminated inside its buffer;
 *   - a composite reply: every body slice lies inside the input;
 *   - an error body: code and message are terminated and hold no
 *     control byte (they reach a log line);
 *   - Sforce-Limit-Info: used >= 0 and max > 0 when accepted;
 *   - a mark that parses formats to text that parses to the same text;
 *   - a poll item that parses builds a query that starts with SELECT.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "sfrelay/soql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HARNESS "soql_decode"

static void broken(const char *what) __attribute__((noreturn));

static void
broken(const char *what)
{
	fprintf(stderr, "%s: invariant broken: %s\n", HARNESS, what);
	abort();
}

static int
inside(const char *p, size_t n, const char *base, size_t size)
{
	return p >= base && p + n <= base + size;
}

static void
check_text(const char *s, size_t cap)
{
	if (memchr(s, '\0', cap) == NULL)
		broken("text not terminated");
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20)
			broken("control byte in text");
}

static void
fuzz_page(const char *in, size_t n)
{
	struct soql_page page;
	char err[128], buf[64];
	if (soql_page_decode(in, n, &page, err, sizeof(err)) != 0) {
		check_text(err, sizeof(err));
		if (page.records != NULL || page.next_url != NULL)
			broken("failed decode left state");
		return;
	}
	if ((page.next_url == NULL) != (page.done != 0))
		broken("nextRecordsUrl and done disagree");
	if (page.next_url != NULL &&
	    strncmp(page.next_url, "/services/data/", 15) != 0)
		broken("nextRecordsUrl not a /services/data/ path");
	struct evbuffer *b = evbuffer_new();
	for (size_t i = 0; i < page.nrecords; i++) {
		const struct soql_record *r = &page.records[i];
		if (!inside(r->text, r->len, in, n) || r->len < 2 ||
		    r->text[0] != '{' || r->text[r->len - 1] != '}')
			broken("record slice");
		if (soql_record_string(r, "Id", buf, sizeof(buf)) == 0 &&
		    memchr(buf, '\0', sizeof(buf)) == NULL)
			broken("record string not terminated");
		const char *drop[] = {"Id", "CreatedDate"};
		if (soql_record_payload(r, drop, 2, "\"k\":1", b) != 0)
			broken("payload of a decoded record failed");
		struct json_tokener *tok = json_tokener_new_ex(200);
		size_t len = evbuffer_get_length(b);
		struct json_object *o = json_tokener_parse_ex(
		    tok, (const char *)evbuffer_pullup(b, -1), (int)len);
		if (o == NULL || !json_object_is_type(o, json_type_object))
			broken("payload is not a JSON object");
		json_object_put(o);
		json_tokener_free(tok);
		evbuffer_drain(b, len);
	}
	evbuffer_free(b);
	soql_page_clear(&page);
}

static void
fuzz_composite(const char *in, size_t n)
{
	struct soql_sub *subs;
	size_t k;
	char err[128];
	if (soql_composite_decode(in, n, &subs, &k, err, sizeof(err)) != 0) {
		check_text(err, sizeof(err));
		return;
	}
	for (size_t i = 0; i < k; i++) {
		if (subs[i].body != NULL &&
		    !inside(subs[i].body, subs[i].len, in, n))
			broken("subresponse body slice");
		check_text(subs[i].ref, sizeof(subs[i].ref));
	}
	free(subs);
}

static void
fuzz_error(const char *in, size_t n)
{
	char code[32], msg[128];
	soql_error_parse(in, n, code, sizeof(code), msg, sizeof(msg));
	check_text(code, sizeof(code));
	check_text(msg, sizeof(msg));
}

static void
fuzz_text(int which, const char *s)
{
	long long used, max;
	struct soql_mark *m, *m2;
	struct evbuffer *a, *b;
	struct soql_spec spec;
	char err[256];
	switch (which) {
	case 3:
		if (soql_limit_info(s, &used, &max) == 0 &&
		    (used < 0 || max <= 0))
			broken("limit info out of range");
		break;
	case 4:
		m = soql_mark_new();
		m2 = soql_mark_new();
		a = evbuffer_new();
		b = evbuffer_new();
		if (soql_mark_parse(m, s) == 0) {
			if (soql_mark_format(m, a) != 0 ||
			    evbuffer_add(a, "", 1) != 0)
				broken("a parsed mark does not format");
			const char *t = (const char *)evbuffer_pullup(a, -1);
			if (soql_mark_parse(m2, t) != 0 ||
			    soql_mark_format(m2, b) != 0 ||
			    evbuffer_add(b, "", 1) != 0 ||
			    strcmp(t, (const char *)evbuffer_pullup(b, -1)) !=
			        0)
				broken("mark text does not round-trip");
		}
		soql_mark_free(m);
		soql_mark_free(m2);
		evbuffer_free(a);
		evbuffer_free(b);
		break;
	default:
		if (soql_spec_parse(s, strlen(s), which == 5, &spec, err,
		                    sizeof(err)) == 0) {
			a = evbuffer_new();
			if (soql_build_since(a, &spec, 0) != 0 ||
			    evbuffer_get_length(a) < 7 ||
			    memcmp(evbuffer_pullup(a, 7), "SELECT ", 7) != 0)
				broken("a parsed item builds no query");
			evbuffer_free(a);
			soql_spec_clear(&spec);
		} else {
			check_text(err, sizeof(err));
		}
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int which = data[0] & 7;
	const char *in = (const char *)data + 1;
	size_t n = size - 1;
	if (which == 0 || which == 7) {
		fuzz_page(in, n);
	} else if (which == 1) {
		fuzz_composite(in, n);
	} else if (which == 2) {
		fuzz_error(in, n);
	} else {
		char *s = malloc(n + 1);
		if (s == NULL)
			return 0;
		memcpy(s, in, n);
		s[n] = '\0';
		fuzz_text(which, s);
		free(s);
	}
	return 0;
}
