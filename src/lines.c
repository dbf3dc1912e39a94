/*
 * Redaction and splitting of formatted lines (see lines.h). Both walk
 * the line as fields with a small tokenizer for exactly the grammar
 * format.c writes, and copy untouched bytes through as they are.
 */
#include "sfrelay/lines.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

struct lines_redact {
	size_t n;
	char **pats;
};

/* One field of a line: [start, end) is "key=value" or "\"key\":value";
 * key excludes JSON quotes; val is the value as written. */
struct field {
	const char *start, *end;
	const char *key;
	size_t klen;
	const char *val;
	size_t vlen;
};

struct fields {
	struct field *f;
	size_t n, cap;
};

static const char *const header_keys[] = {
	"at", "src", "channel", "object", "id", "replay_id", "event_type",
	"created", "part", NULL,
};

static int
is_header(const char *k, size_t n)
{
	for (const char *const *h = header_keys; *h != NULL; h++)
		if (strlen(*h) == n && memcmp(*h, k, n) == 0)
			return 1;
	return 0;
}

/* ---- tokenizer ---------------------------------------------------------- */

static int
fields_add(struct fields *fs, const struct field *f)
{
	if (fs->n == fs->cap) {
		size_t cap = fs->cap ? fs->cap * 2 : 32;
		struct field *g = realloc(fs->f, cap * sizeof(*g));
		if (g == NULL)
			return -1;
		fs->f = g;
		fs->cap = cap;
	}
	fs->f[fs->n++] = *f;
	return 0;
}

/* End of a quoted string starting at s[i] == '"': index after the closing
 * quote, or 0 when it does not close. */
static size_t
quoted_end(const char *s, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return 0;
}

/* Returns 0, 1 (not the grammar) or -1 (out of memory). */
static int
tokenize_logfmt(const char *s, size_t n, struct fields *fs)
{
	size_t i = 0;
	while (i < n) {
		struct field f = {.start = s + i, .key = s + i};
		while (i < n && s[i] != '=' && s[i] != ' ' && s[i] != '"')
			i++;
		if (i >= n || s[i] != '=' || s + i == f.key)
			return 1;
		f.klen = (size_t)(s + i - f.key);
		i++;
		f.val = s + i;
		if (i < n && s[i] == '"') {
			size_t e = quoted_end(s, n, i);
			if (e == 0)
				return 1;
			i = e;
		} else {
			while (i < n && s[i] != ' ' && s[i] != '"')
				i++;
		}
		f.vlen = (size_t)(s + i - f.val);
		f.end = s + i;
		if (fields_add(fs, &f) != 0)
			return -1;
		if (i < n) {
			if (s[i] != ' ' || i + 1 == n)
				return 1;
			i++;
		}
	}
	return 0;
}

static int
tokenize_json(const char *s, size_t n, struct fields *fs)
{
	size_t i = 0;
	if (n < 2 || s[0] != '{' || s[n - 1] != '}')
		return 1;
	i = 1;
	n--; /* the closing brace */
	if (i == n)
		return 0;
	while (i < n) {
		struct field f = {.start = s + i};
		if (s[i] != '"')
			return 1;
		size_t e = quoted_end(s, n, i);
		if (e == 0 || e >= n || s[e] != ':')
			return 1;
		f.key = s + i + 1;
		f.klen = e - i - 2;
		i = e + 1;
		f.val = s + i;
		if (i < n && s[i] == '"') {
			e = quoted_end(s, n, i);
			if (e == 0)
				return 1;
			i = e;
		} else if (i + 1 < n && (s[i] == '{' || s[i] == '[')) {
			/* format.c writes only empty containers. */
			if (s[i + 1] != (s[i] == '{' ? '}' : ']'))
				return 1;
			i += 2;
		} else {
			while (i < n && s[i] != ',' && s[i] != '"' &&
			       s[i] != '{' && s[i] != '[')
				i++;
		}
		f.vlen = (size_t)(s + i - f.val);
		if (f.vlen == 0)
			return 1;
		f.end = s + i;
		if (fields_add(fs, &f) != 0)
			return -1;
		if (i < n) {
			if (s[i] != ',' || i + 1 == n)
				return 1;
			i++;
		}
	}
	return 0;
}

static int
tokenize(enum format_kind kind, const char *s, size_t n, struct fields *fs)
{
	fs->n = 0;
	/* The formatter never writes a raw newline inside a line. */
	if (memchr(s, '\n', n) != NULL)
		return 1;
	return kind == FORMAT_JSON ? tokenize_json(s, n, fs)
				   : tokenize_logfmt(s, n, fs);
}

/* ---- redaction ---------------------------------------------------------- */

static unsigned char
lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* Glob with '*' and '?', ASCII case-insensitive, iterative backtracking. */
static int
glob_match(const char *p, const char *s, size_t n)
{
	const char *star = NULL;
	size_t i = 0, mark = 0;
	while (i < n) {
		if (*p == '*') {
			star = p++;
			mark = i;
		} else if (*p != '\0' &&
			   (*p == '?' || lower((unsigned char)*p) ==
						 lower((unsigned char)s[i]))) {
			p++;
			i++;
		} else if (star != NULL) {
			p = star + 1;
			i = ++mark;
		} else {
			return 0;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

struct lines_redact *
lines_redact_new(const char *const *patterns, size_t n)
{
	struct lines_redact *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->pats = calloc(n > 0 ? n : 1, sizeof(char *));
	if (r->pats == NULL) {
		free(r);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (patterns[i] == NULL || patterns[i][0] == '\0' ||
		    (r->pats[i] = strdup(patterns[i])) == NULL) {
			lines_redact_free(r);
			return NULL;
		}
		r->n++;
	}
	return r;
}

void
lines_redact_free(struct lines_redact *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->pats[i]);
	free(r->pats);
	free(r);
}

int
lines_redact_match(const struct lines_redact *r, const char *key, size_t n)
{
	if (r == NULL || is_header(key, n))
		return 0;
	const char *last = key;
	for (size_t i = 0; i < n; i++)
		if (key[i] == '.')
			last = key + i + 1;
	size_t ln = (size_t)(key + n - last);
	for (size_t i = 0; i < r->n; i++)
		if (glob_match(r->pats[i], key, n) ||
		    (last != key && glob_match(r->pats[i], last, ln)))
			return 1;
	return 0;
}

int
lines_redact_line(const struct lines_redact *r, enum format_kind kind,
		  const char *line, size_t len, struct evbuffer *out)
{
	struct fields fs = {0};
	size_t body = len > 0 && line[len - 1] == '\n' ? len - 1 : len;
	int rc = tokenize(kind, line, body, &fs);
	int count = 0;
	if (rc < 0)
		goto oom;
	const char *copied = line;
	const char *repl = kind == FORMAT_JSON ? "\"" LINES_REDACTED "\""
					       : LINES_REDACTED;
	for (size_t i = 0; rc == 0 && i < fs.n; i++) {
		const struct field *f = &fs.f[i];
		if (!lines_redact_match(r, f->key, f->klen))
			continue;
		if (evbuffer_add(out, copied, (size_t)(f->val - copied)) != 0 ||
		    evbuffer_add(out, repl, strlen(repl)) != 0)
			goto oom;
		copied = f->val + f->vlen;
		count++;
	}
	if (evbuffer_add(out, copied, (size_t)(line + len - copied)) != 0)
		goto oom;
	free(fs.f);
	return count;
oom:
	free(fs.f);
	return -1;
}

/* ---- splitting ---------------------------------------------------------- */

/* Room kept in every part for the part field: " part=K/N" or
 * ",\"part\":\"K/N\"" with K and N of up to 10 digits. */
#define PART_RESERVE 32
/* A value piece smaller than this starts a new part instead. */
#define MIN_PIECE 16

struct splitter {
	enum format_kind kind;
	const struct field *header;
	size_t nheader;
	size_t budget; /* body bytes a part may hold */
	size_t used;   /* body bytes in the current part */
	unsigned k, n; /* current part, total (0 while counting) */
	struct evbuffer *part;
	lines_part_fn *fn;
	void *arg;
	int failed;
};

static void
part_open(struct splitter *sp)
{
	char pf[48];
	int json = sp->kind == FORMAT_JSON;
	sp->k++;
	sp->used = 0;
	if (sp->n == 0)
		return; /* counting */
	evbuffer_add(sp->part, json ? "{" : "", json ? 1 : 0);
	for (size_t i = 0; i < sp->nheader; i++) {
		const struct field *f = &sp->header[i];
		if (i > 0)
			evbuffer_add(sp->part, json ? "," : " ", 1);
		evbuffer_add(sp->part, f->start, (size_t)(f->end - f->start));
	}
	if (json)
		snprintf(pf, sizeof(pf), ",\"part\":\"%u/%u\"", sp->k, sp->n);
	else
		snprintf(pf, sizeof(pf), " part=%u/%u", sp->k, sp->n);
	evbuffer_add(sp->part, pf, strlen(pf));
}

static void
part_close(struct splitter *sp)
{
	if (sp->n == 0 || sp->failed)
		return;
	if (sp->kind == FORMAT_JSON)
		evbuffer_add(sp->part, "}", 1);
	evbuffer_add(sp->part, "\n", 1);
	size_t len = evbuffer_get_length(sp->part);
	const char *p = (const char *)evbuffer_pullup(sp->part, -1);
	if (p == NULL || sp->fn(sp->arg, p, len, sp->k, sp->n) != 0)
		sp->failed = 1;
	evbuffer_drain(sp->part, len);
}

static void
put(struct splitter *sp, const void *s, size_t n)
{
	if (sp->n != 0 && evbuffer_add(sp->part, s, n) != 0)
		sp->failed = 1;
	sp->used += n;
}

/* Length of the escape or UTF-8 sequence at s[i] (at least 1). */
static size_t
unit_len(const char *s, size_t n, size_t i)
{
	unsigned char c = (unsigned char)s[i];
	size_t l = 1;
	if (c == '\\')
		l = i + 1 < n && s[i + 1] == 'u' ? 6 : 2;
	else if (c >= 0xf0)
		l = 4;
	else if (c >= 0xe0)
		l = 3;
	else if (c >= 0xc0)
		l = 2;
	return i + l <= n ? l : n - i;
}

/* Writes a value too long for any part as pieces, each in quotes (or
 * bare for a bare logfmt value), under the field's key. */
static void
put_pieces(struct splitter *sp, const struct field *f)
{
	int json = sp->kind == FORMAT_JSON;
	int quoted = f->vlen >= 2 && f->val[0] == '"';
	const char *c = f->val + (quoted ? 1 : 0);
	size_t cn = f->vlen - (quoted ? 2 : 0);
	int q = quoted || json; /* JSON pieces are always strings */
	/* key, separator and the quotes around a piece */
	size_t over = (json ? f->klen + 3 : f->klen + 1) + (q ? 2 : 0) + 1;
	size_t i = 0;
	if (over + MIN_PIECE > sp->budget) {
		sp->failed = 1; /* a key longer than a part: cannot split */
		return;
	}
	while (i < cn) {
		if (sp->used > 0 && sp->used + over + MIN_PIECE > sp->budget) {
			part_close(sp);
			part_open(sp);
		}
		size_t room = sp->budget - sp->used - over;
		size_t e = i;
		while (e < cn) {
			size_t u = unit_len(c, cn, e);
			if (e + u - i > room)
				break;
			e += u;
		}
		if (e == i)
			e = i + unit_len(c, cn, i);
		put(sp, json ? "," : " ", 1);
		if (json)
			put(sp, "\"", 1);
		put(sp, f->key, f->klen);
		put(sp, json ? "\":" : "=", json ? 2 : 1);
		if (q)
			put(sp, "\"", 1);
		put(sp, c + i, e - i);
		if (q)
			put(sp, "\"", 1);
		i = e;
	}
}

static void
run_split(struct splitter *sp, const struct field *body, size_t nbody)
{
	sp->k = 0;
	part_open(sp);
	for (size_t i = 0; i < nbody && !sp->failed; i++) {
		const struct field *f = &body[i];
		size_t fl = (size_t)(f->end - f->start) + 1;
		if (sp->used + fl <= sp->budget) {
			put(sp, sp->kind == FORMAT_JSON ? "," : " ", 1);
			put(sp, f->start, fl - 1);
			continue;
		}
		if (sp->used > 0 && fl <= sp->budget) {
			part_close(sp);
			part_open(sp);
			put(sp, sp->kind == FORMAT_JSON ? "," : " ", 1);
			put(sp, f->start, fl - 1);
			continue;
		}
		put_pieces(sp, f);
	}
	part_close(sp);
}

int
lines_split(enum format_kind kind, const char *line, size_t len, size_t max,
	    lines_part_fn *fn, void *arg)
{
	size_t body = len > 0 && line[len - 1] == '\n' ? len - 1 : len;
	if (body <= max) {
		if (body < len)
			return fn(arg, line, len, 1, 1) == 0 ? 1 : -1;
		char *copy = malloc(len + 1);
		if (copy == NULL)
			return -1;
		memcpy(copy, line, len);
		copy[len] = '\n';
		int rc = fn(arg, copy, len + 1, 1, 1);
		free(copy);
		return rc == 0 ? 1 : -1;
	}
	struct fields fs = {0};
	int rc = -1;
	if (tokenize(kind, line, body, &fs) != 0)
		goto out;
	size_t nh = 0;
	while (nh < fs.n && is_header(fs.f[nh].key, fs.f[nh].klen))
		nh++;
	size_t hlen = kind == FORMAT_JSON ? 2 : 0;
	for (size_t i = 0; i < nh; i++)
		hlen += (size_t)(fs.f[i].end - fs.f[i].start) + 1;
	/* Room for the header, the part field and a key with a piece. */
	if (hlen + PART_RESERVE + 128 > max)
		goto out;
	struct splitter sp = {
		.kind = kind,
		.header = fs.f,
		.nheader = nh,
		.budget = max - hlen - PART_RESERVE,
		.fn = fn,
		.arg = arg,
	};
	run_split(&sp, fs.f + nh, fs.n - nh); /* counts */
	sp.n = sp.k;
	if ((sp.part = evbuffer_new()) == NULL)
		goto out;
	run_split(&sp, fs.f + nh, fs.n - nh);
	evbuffer_free(sp.part);
	if (!sp.failed)
		rc = (int)sp.n;
out:
	free(fs.f);
	return rc;
}
