#include "sfrelay/bayeux_stream.h"
#include "sfrelay/json_tape.h"
#include "sfrelay/text.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#endif

/*
 * Two cooperating scanners.
 *
 * The element parser validates one array element (strict RFC 8259) and,
 * in the same pass, notes where the few members an event needs sit in
 * the text: top-level "channel" and "data", and inside data the event and
 * payload members the created time, type and replayId come from. Nothing
 * is copied or decoded until the element is known to be good, and then
 * only those few strings. It runs directly on the caller's chunk whenever
 * the element lies wholly inside it, which is the common case: no copy.
 *
 * When an element straddles chunks, a lighter boundary scanner (string,
 * escape and bracket tracking only, resumable byte by byte) finds its
 * end while the bytes are copied into the one buffer; the element parser
 * then runs over the buffer. So each byte is parsed once, and only the
 * bytes of the straddling element are copied and scanned twice.
 *
 * Object members are matched the way json-c stores them, since meta
 * replies go through json-c and events must agree with it: a repeated key
 * keeps its last value, a key is compared after unescaping and cut at its
 * first U+0000, and \u escapes (surrogates too) decode exactly as in
 * json_tokener.c.
 */

/* json-c's limit in bayeux_msg.c: 64 levels, the outer array counting as
 * one and every value (scalars too) as one more than its container. */
#define MAX_LEVELS 64

/* Buffers larger than this are released by bayeux_stream_reset(). */
#define RETAIN_BYTES (64 * 1024)

/* Initial size of the element buffer once one is needed. */
#define BUF_MIN 4096

/* The most tokens recorded for one payload (12 bytes each): a payload
 * with more is formatted from its text, as every payload once was. */
#define TAPE_MAX_TOKENS 16384

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" and its NUL. */
#define ISO_LEN 25

enum body_state {
	BODY_START,   /* before the '[' */
	BODY_FIRST,   /* after '[': an element or ']' */
	BODY_NEXT,    /* after ',': an element */
	BODY_ELEMENT, /* inside an element that straddles chunks */
	BODY_AFTER,   /* after an element: ',' or ']' */
	BODY_DONE,    /* after the closing ']': whitespace only */
	BODY_FAILED,
};

/* What the element parser found: a full element, the end of the bytes it
 * was given before the end of the element, or an error. */
enum scan_rc {
	SCAN_OK,
	SCAN_MORE,
	SCAN_ERR,
};

enum vtype {
	V_ABSENT = 0,
	V_NULL,
	V_STRING,
	V_INT,   /* a number without fraction or exponent */
	V_OTHER, /* any other number, true, false, object, array */
};

/* Where a value sits in the element text: p/n cover the whole value (a
 * string's quotes included); esc tells whether a string holds a '\\'. */
struct span {
	const char *p;
	size_t n;
	enum vtype t;
	int esc;
};

/* The members an event needs; each is the last one of its name. */
struct fields {
	struct span channel;
	struct span data;
	/* Below data.event: */
	struct span ev_replay;  /* replayId */
	struct span ev_created; /* createdDate */
	struct span ev_type;    /* type */
	/* Below data.payload: */
	struct span pl_created; /* CreatedDate */
	struct span hd_ts;      /* ChangeEventHeader.commitTimestamp */
	struct span hd_type;    /* ChangeEventHeader.changeType */
};

/* Which object the parser is in, as far as the wanted members go. */
enum ctx {
	CTX_SKIP,
	CTX_TOP,
	CTX_DATA,
	CTX_EVENT,
	CTX_PAYLOAD,
	CTX_HEADER,
};

/* The tokens of the last "data" object of the element being scanned
 * (json_tape.h), kept across messages so that the array is reused. */
struct tape_buf {
	struct json_tok *tok;
	size_t n;
	size_t cap;
	const char *base; /* the object's '{' */
	int ok;           /* tok holds all of it */
};

struct cursor {
	struct tape_buf *tape; /* NULL: record nothing */
	const char *p;
	const char *end;
	enum scan_rc rc;
	const char *err_at;
	const char *why;
	struct fields f;
};

struct bayeux_stream {
	bayeux_stream_fn *fn;
	void *arg;
	size_t max_msg;
	enum body_state state;
	size_t off;      /* body bytes fed before the current chunk */
	size_t count;    /* messages delivered */
	size_t elem_off; /* body offset of the buffered element */

	/* Boundary scanner state of the buffered element. */
	size_t depth;
	int in_str;
	int esc;

	/* buf[0] is '[' so that a buffered meta element followed by ']' is
	 * a body bayeux_decode() takes as is; the element starts at buf+1. */
	char *buf;
	size_t len;
	size_t cap;

	/* Decoded strings of the message being delivered. */
	char *scratch;
	size_t scratch_cap;

	struct tape_buf tape;
	struct json_tape tape_view;

	int in_callback;
	int free_later;
	char iso[ISO_LEN];
	char err[256];
};

/* ---- errors ------------------------------------------------------------ */

static int fail(struct bayeux_stream *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records the body's error; every later call fails with it. */
static int
fail(struct bayeux_stream *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	s->state = BODY_FAILED;
	return -1;
}

/* ---- element parser ---------------------------------------------------- */

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* For the few helpers of the element scanner's inner loop, where a call
 * per string costs more than scanning the string. */
#if defined(__GNUC__)
#define HOT static inline __attribute__((always_inline))
#else
#define HOT static inline
#endif

static int
is_ws(char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* Salesforce bodies are compact: the first test usually ends it. */
HOT const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && (unsigned char)*p <= ' ' && is_ws(*p))
		p++;
	return p;
}

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int
is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * Word-at-a-time search. For a byte value b, (w ^ b*ONES) has a zero byte
 * where w holds b, and (v - ONES) & ~v & HIGHS flags zero bytes of v;
 * (w - n*ONES) & ~w & HIGHS flags bytes below n (n <= 0x80). A borrow
 * can only flag bytes above a true hit, so the lowest flag is exact: on a
 * little-endian machine its byte index is the count of trailing zero bits
 * / 8. Elsewhere the flagged word is searched byte by byte.
 */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) &&                            \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FIRST_FLAG(p, hit) ((p) + (__builtin_ctzll(hit) >> 3))
#else
#define FIRST_FLAG(p, hit) (p)
#endif

HOT uint64_t
flag_byte(uint64_t w, unsigned char b)
{
	uint64_t v = w ^ (ONES * b);

	return (v - ONES) & ~v & HIGHS;
}

/*
 * The first byte of [p, end) that is not plain string text: '"', '\\' or
 * a control byte. Strings are most of a payload, hence the wide steps.
 * On the way it ORs into *cls what the formatter will want to know of the
 * bytes passed over (JSON_STR_SPACE, JSON_STR_ODD), so that it need not
 * look at a plain string's bytes again.
 */
HOT const char *
string_run(const char *p, const char *end, unsigned *cls)
{
	unsigned f = 0;
	unsigned char b;

#if defined(__SSE2__) && defined(__GNUC__)
	/* Sixteen bytes a step where the machine has SSE2 (every x86-64): a
	 * byte stops the run when it is '"', '\\' or at most 0x1f as an
	 * unsigned value (so bytes of 0x80 and up, UTF-8, stay plain). The
	 * classes count only below the first stop: they must be exact. */
	const __m128i quote = _mm_set1_epi8('"');
	const __m128i bslash = _mm_set1_epi8('\\');
	const __m128i c1f = _mm_set1_epi8(0x1f);
	const __m128i sp = _mm_set1_epi8(' '), eq = _mm_set1_epi8('=');
	const __m128i del = _mm_set1_epi8(0x7f);

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
		    _mm_or_si128(_mm_cmpeq_epi8(v, quote),
		                 _mm_cmpeq_epi8(v, bslash)),
		    _mm_cmpeq_epi8(_mm_min_epu8(v, c1f), v)));
		unsigned m_sp = (unsigned)_mm_movemask_epi8(
		    _mm_or_si128(_mm_cmpeq_epi8(v, sp), _mm_cmpeq_epi8(v, eq)));
		unsigned m_odd =
		    (unsigned)_mm_movemask_epi8(v) |
		    (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, del));
		unsigned below = m != 0 ? (m & (~m + 1)) - 1 : 0xffffu;

		if (m_sp & below)
			f |= JSON_STR_SPACE;
		if (m_odd & below)
			f |= JSON_STR_ODD;
		if (m != 0) {
			*cls |= f;
			return p + __builtin_ctz(m);
		}
		p += 16;
	}
#endif
	/* The rest (the end of a chunk; everything without SSE2). */
	for (; p < end; p++) {
		b = (unsigned char)*p;
		if (b < 0x20 || b == '"' || b == '\\')
			break;
		if (b == ' ' || b == '=')
			f |= JSON_STR_SPACE;
		else if (b >= 0x7f)
			f |= JSON_STR_ODD;
	}
	*cls |= f;
	return p;
}

/* Notes an error; the scanners then return NULL. */
static const char *
bad(struct cursor *c, const char *at, const char *why)
{
	c->rc = SCAN_ERR;
	c->err_at = at;
	c->why = why;
	return NULL;
}

static const char *
more(struct cursor *c)
{
	c->rc = SCAN_MORE;
	return NULL;
}

/*
 * The string literal whose opening quote is at p: returns the byte after
 * its closing quote (NULL: see c->rc), sets *esc when it holds an escape
 * and *cls to the JSON_STR_* classes of its raw body.
 */
HOT const char *
scan_string(struct cursor *c, const char *p, int *esc, unsigned *cls)
{
	const char *end = c->end;
	int i;

	*esc = 0;
	*cls = 0;
	for (p++;; p++) {
		p = string_run(p, end, cls);
		if (p == end)
			return more(c);
		if (*p == '"')
			return p + 1;
		if (*p != '\\')
			return bad(c, p,
			           "unescaped control character in string");
		*esc = 1;
		*cls |= JSON_STR_ESCAPED;
		if (++p == end)
			return more(c);
		switch (*p) {
		case '"':
		case '\\':
		case '/':
		case 'b':
		case 'f':
		case 'n':
		case 'r':
		case 't':
			break;
		case 'u':
			for (i = 1; i <= 4; i++) {
				if (p + i == end)
					return more(c);
				if (!is_hex(p[i]))
					return bad(c, p + i,
					           "invalid \\u escape");
			}
			p += 4;
			break;
		default:
			return bad(c, p, "invalid escape in string");
		}
	}
}

/* RFC 8259 number at p; *is_int when it has no fraction and no
 * exponent. Returns the byte after it (NULL: see c->rc). */
HOT const char *
scan_number(struct cursor *c, const char *p, int *is_int)
{
	const char *end = c->end;

	*is_int = 1;
	if (*p == '-' && ++p == end)
		return more(c);
	if (*p == '0') {
		p++;
	} else if (*p >= '1' && *p <= '9') {
		while (++p < end && is_digit(*p))
			;
	} else {
		return bad(c, p, "invalid number");
	}
	if (p == end)
		return more(c);
	if (*p == '.') {
		*is_int = 0;
		if (++p == end)
			return more(c);
		if (!is_digit(*p))
			return bad(c, p, "invalid number (no digit after '.')");
		while (++p < end && is_digit(*p))
			;
		if (p == end)
			return more(c);
	}
	if (*p == 'e' || *p == 'E') {
		*is_int = 0;
		if (++p == end)
			return more(c);
		if ((*p == '+' || *p == '-') && ++p == end)
			return more(c);
		if (!is_digit(*p))
			return bad(c, p, "invalid number (empty exponent)");
		while (++p < end && is_digit(*p))
			;
		if (p == end)
			return more(c);
	}
	/* Whatever follows must end the value; name the common mistakes
	 * (leading zero, "1.", hex) here rather than as a missing comma. */
	if (is_digit(*p) || *p == '.' || *p == 'e' || *p == 'E' || *p == 'x' ||
	    *p == 'X' || *p == '+' || *p == '-')
		return bad(c, p, "invalid number");
	return p;
}

static const char *
scan_literal(struct cursor *c, const char *p, const char *word, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p + i == c->end)
			return more(c);
		if (p[i] != word[i])
			return bad(c, p + i, "invalid literal");
	}
	return p + n;
}

/* Appends the UTF-8 form of cp to out[*o..cap), dropping what does not
 * fit. */
static void
put_utf8(char *out, size_t *o, size_t cap, unsigned cp)
{
	unsigned char b[4];
	size_t n = text_utf8_encode(cp, b);

	for (size_t i = 0; i < n && *o < cap; i++)
		out[(*o)++] = (char)b[i];
}

/*
 * Decodes the body of a validated string literal (no quotes) into out,
 * at most cap bytes; returns the bytes written. Surrogates follow
 * json-c: a high one followed by an escaped low one is a pair; any other
 * surrogate becomes U+FFFD and decoding resumes right after it. The
 * result is never longer than the input.
 */
static size_t
unescape(const char *p, size_t n, char *out, size_t cap)
{
	size_t i = 0, o = 0;
	long cp, lo;

	while (i < n && o < cap) {
		if (p[i] != '\\') {
			out[o++] = p[i++];
			continue;
		}
		switch (p[i + 1]) {
		case 'b':
			out[o++] = '\b';
			break;
		case 'f':
			out[o++] = '\f';
			break;
		case 'n':
			out[o++] = '\n';
			break;
		case 'r':
			out[o++] = '\r';
			break;
		case 't':
			out[o++] = '\t';
			break;
		case 'u':
			cp = text_hex4(p + i + 2);
			i += 6;
			if (cp >= 0xd800 && cp <= 0xdbff && i + 6 <= n &&
			    p[i] == '\\' && p[i + 1] == 'u' &&
			    (lo = text_hex4(p + i + 2)) >= 0xdc00 && lo <= 0xdfff) {
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
				i += 6;
			} else if (cp < 0 || (cp >= 0xd800 && cp <= 0xdfff)) {
				cp = 0xfffd;
			}
			put_utf8(out, &o, cap, (unsigned)cp);
			continue;
		default: /* '"', '\\', '/' */
			out[o++] = p[i + 1];
			break;
		}
		i += 2;
	}
	return o;
}

/*
 * Whether the key (a string span holding an escape) is word as json-c
 * sees keys: unescaped and cut at its first U+0000.
 */
static int
escaped_key_is(const struct span *k, const char *word, size_t wn)
{
	char tmp[32];
	size_t got;

	got = unescape(k->p + 1, k->n - 2, tmp, wn + 1);
	if (got < wn || memcmp(tmp, word, wn) != 0)
		return 0;
	return got == wn || tmp[wn] == '\0';
}

/* The plain case inline, where a compare with a constant length is a
 * couple of loads: members are matched for every key of the few objects
 * an event is searched in. */
#define KEY_IS(k, lit)                                                         \
	((k)->esc ? escaped_key_is((k), (lit), sizeof(lit) - 1)                \
	          : (k)->n == sizeof(lit) + 1 &&                               \
	                memcmp((k)->p + 1, (lit), sizeof(lit) - 1) == 0)

static void
clear_data_fields(struct fields *f)
{
	memset(&f->ev_replay, 0, sizeof(f->ev_replay));
	memset(&f->ev_created, 0, sizeof(f->ev_created));
	memset(&f->ev_type, 0, sizeof(f->ev_type));
	memset(&f->pl_created, 0, sizeof(f->pl_created));
	memset(&f->hd_ts, 0, sizeof(f->hd_ts));
	memset(&f->hd_type, 0, sizeof(f->hd_type));
}

/*
 * The members an event is searched for, by the context of the object
 * they are in: where to note a member's value (*cap) or which members to
 * look for if it is an object. A repeated key replaces what its earlier
 * value contributed, as json-c keeps only the last.
 *
 * Written once and expanded twice, so that the reference scanner and the
 * fast path cannot come to want different members: IS(lit) is how each
 * compares the key with a literal (member() below, fast_member() with
 * the fast path). The expansion sits in a switch on ctx and may return.
 */
#define MEMBER_CHOICES(IS)                                                     \
	case CTX_TOP:                                                          \
		if (IS("channel")) {                                           \
			*cap = &f->channel;                                    \
		} else if (IS("data")) {                                       \
			clear_data_fields(f);                                  \
			*cap = &f->data;                                       \
			return CTX_DATA;                                       \
		}                                                              \
		break;                                                         \
	case CTX_DATA:                                                         \
		if (IS("event")) {                                             \
			memset(&f->ev_replay, 0, sizeof(f->ev_replay));        \
			memset(&f->ev_created, 0, sizeof(f->ev_created));      \
			memset(&f->ev_type, 0, sizeof(f->ev_type));            \
			return CTX_EVENT;                                      \
		}                                                              \
		if (IS("payload")) {                                           \
			memset(&f->pl_created, 0, sizeof(f->pl_created));      \
			memset(&f->hd_ts, 0, sizeof(f->hd_ts));                \
			memset(&f->hd_type, 0, sizeof(f->hd_type));            \
			return CTX_PAYLOAD;                                    \
		}                                                              \
		break;                                                         \
	case CTX_EVENT:                                                        \
		if (IS("replayId"))                                            \
			*cap = &f->ev_replay;                                  \
		else if (IS("createdDate"))                                    \
			*cap = &f->ev_created;                                 \
		else if (IS("type"))                                           \
			*cap = &f->ev_type;                                    \
		break;                                                         \
	case CTX_PAYLOAD:                                                      \
		if (IS("CreatedDate")) {                                       \
			*cap = &f->pl_created;                                 \
		} else if (IS("ChangeEventHeader")) {                          \
			memset(&f->hd_ts, 0, sizeof(f->hd_ts));                \
			memset(&f->hd_type, 0, sizeof(f->hd_type));            \
			return CTX_HEADER;                                     \
		}                                                              \
		break;                                                         \
	case CTX_HEADER:                                                       \
		if (IS("commitTimestamp"))                                     \
			*cap = &f->hd_ts;                                      \
		else if (IS("changeType"))                                     \
			*cap = &f->hd_type;                                    \
		break;                                                         \
	case CTX_SKIP:                                                         \
		break;

/* MEMBER_CHOICES() for the reference scanner: any key, escaped or not. */
static enum ctx
member(struct fields *f, enum ctx ctx, const struct span *key,
       struct span **cap)
{
#define REF_IS(lit) KEY_IS(key, lit)
	*cap = NULL;
	switch (ctx) {
		MEMBER_CHOICES(REF_IS)
	}
#undef REF_IS
	return CTX_SKIP;
}

/* ---- the payload tape ------------------------------------------------- */

/*
 * Room for more tokens when the scanner's write pointer tk has reached
 * the end of the array: returns the new write pointer (and *lim, the new
 * end), or NULL when the tape is full or memory short. A full tape is
 * given up, not an error: the payload is then formatted from its text.
 */
static struct json_tok *
tape_more(struct tape_buf *t, struct json_tok *tk, struct json_tok **lim)
{
	size_t used = t->tok != NULL ? (size_t)(tk - t->tok) : 0;
	size_t cap = t->cap > 0 ? t->cap * 2 : 256;
	struct json_tok *tok;

	if (used < t->cap) { /* first use in this element */
		*lim = t->tok + t->cap;
		return tk;
	}
	if (cap > TAPE_MAX_TOKENS)
		goto give_up;
	tok = realloc(t->tok, cap * sizeof(*tok));
	if (tok == NULL)
		goto give_up;
	t->tok = tok;
	t->cap = cap;
	*lim = tok + cap;
	return tok + used;
give_up:
	t->ok = 0;
	return NULL;
}

/* An open container of the element being scanned. */
struct frame {
	const char *start; /* its opening bracket */
	struct span *cap;  /* where to note it once closed, or NULL */
	enum ctx ctx;      /* which of its members to note (objects) */
	int is_obj;
};

/*
 * Scans the element (an object) at p up to c->end: validates it and
 * notes the wanted members in c->f. Returns SCAN_OK with c->p just past
 * it, SCAN_MORE when the bytes end first, or SCAN_ERR.
 *
 * One loop with an explicit stack rather than recursive descent: this is
 * the hot path, and keeping the position in a local and the string scan
 * inline matters more here than anywhere else. The element sits in the
 * outer array, so with n containers of its own open, a value is at level
 * n + 2, which must not pass MAX_LEVELS.
 */
/*
 * While the "data" object is scanned its tokens go on the tape: rec is
 * the stack index of its frame then, -1 otherwise (and after a full tape).
 */
#define RECORD(at_, len_, type_, flags_)                                       \
	do {                                                                   \
		if (rec < 0)                                                   \
			break;                                                 \
		if (tk == tk_lim &&                                            \
		    (tk = tape_more(c->tape, tk, &tk_lim)) == NULL) {          \
			rec = -1;                                              \
			break;                                                 \
		}                                                              \
		tk->off = (uint32_t)((at_) - tbase);                           \
		tk->len = (uint32_t)(len_);                                    \
		tk->type = (uint8_t)(type_);                                   \
		tk->flags = (uint8_t)(flags_);                                 \
		tk++;                                                          \
	} while (0)

static enum scan_rc
scan_element(struct cursor *c, const char *p)
{
	struct frame st[MAX_LEVELS];
	const char *end = c->end, *start, *tbase = NULL;
	struct json_tok *tk = NULL, *tk_lim = NULL; /* the tape's write end */
	struct span key, *cap = NULL;
	enum ctx ctx = CTX_TOP;
	enum vtype t;
	int n = 0, flag, rec = -1;
	unsigned cls = 0, tt;

	if (c->tape != NULL) {
		c->tape->n = 0;
		c->tape->ok = 0;
	}

value:
	/* A value at p; cap and ctx say what to note about it. */
	if (p == end)
		return SCAN_MORE;
	if (n + 2 > MAX_LEVELS) {
		bad(c, p, "nesting too deep");
		return SCAN_ERR;
	}
	start = p;
	if (cap == &c->f.data && c->tape != NULL) {
		/* The last "data" is the payload: record it afresh. */
		c->tape->n = 0;
		c->tape->ok = *p == '{' && (size_t)(end - p) < UINT32_MAX;
		if (c->tape->ok) {
			tbase = c->tape->base = p;
			rec = n;
			tk = tk_lim = c->tape->tok; /* tape_more() sets tk_lim */
		}
	}
	switch (*p) {
	case '"':
		p = scan_string(c, p, &flag, &cls);
		t = V_STRING;
		if (p != NULL)
			RECORD(start + 1, (size_t)(p - start) - 2,
			       JSON_TOK_STR, cls);
		break;
	case '{':
	case '[':
		st[n].start = p;
		st[n].cap = cap;
		st[n].ctx = ctx;
		st[n].is_obj = *p == '{';
		RECORD(p, 1, st[n].is_obj ? JSON_TOK_OBJ : JSON_TOK_ARR, 0);
		n++;
		p = skip_ws(p + 1, end);
		if (p == end)
			return SCAN_MORE;
		if (*p == (st[n - 1].is_obj ? '}' : ']')) {
			p++;
			goto close;
		}
		if (st[n - 1].is_obj)
			goto key;
		cap = NULL;
		ctx = CTX_SKIP;
		goto value;
	case 't':
		p = scan_literal(c, p, "true", 4);
		t = V_OTHER;
		flag = 0;
		tt = JSON_TOK_TRUE;
		goto leaf;
	case 'f':
		p = scan_literal(c, p, "false", 5);
		t = V_OTHER;
		flag = 0;
		tt = JSON_TOK_FALSE;
		goto leaf;
	case 'n':
		p = scan_literal(c, p, "null", 4);
		t = V_NULL;
		flag = 0;
		tt = JSON_TOK_NULL;
		goto leaf;
	case 'N':
	case 'I':
		bad(c, p, "NaN and Infinity are not JSON");
		return SCAN_ERR;
	default:
		if (*p != '-' && !is_digit(*p)) {
			bad(c, p, "unexpected character");
			return SCAN_ERR;
		}
		p = scan_number(c, p, &flag);
		t = flag ? V_INT : V_OTHER;
		flag = 0;
		tt = JSON_TOK_NUM;
	leaf:
		if (p != NULL)
			RECORD(start, (size_t)(p - start), tt, 0);
		break;
	}
	if (p == NULL)
		return c->rc;
	if (cap != NULL) {
		cap->p = start;
		cap->n = (size_t)(p - start);
		cap->t = t;
		cap->esc = flag;
	}
	goto next;

close:
	/* p just past the closing bracket of st[n - 1]; only a container
	 * leads here, so n > 0 (said for the compiler's bounds check). */
	if (n <= 0)
		return SCAN_ERR;
	n--;
	if (rec >= 0) {
		RECORD(p - 1, 1, JSON_TOK_END, 0);
		if (n == rec) { /* the payload is complete */
			rec = -1;
			c->tape->n = (size_t)(tk - c->tape->tok);
		}
	}
	if (st[n].cap != NULL) {
		st[n].cap->p = st[n].start;
		st[n].cap->n = (size_t)(p - st[n].start);
		st[n].cap->t = V_OTHER;
		st[n].cap->esc = 0;
	}
	if (n == 0) {
		c->p = p;
		return SCAN_OK;
	}

next:
	/* After a value inside st[n - 1]. */
	p = skip_ws(p, end);
	if (p == end)
		return SCAN_MORE;
	if (st[n - 1].is_obj) {
		if (*p == '}') {
			p++;
			goto close;
		}
		if (*p != ',') {
			bad(c, p, "expected ',' or '}' in object");
			return SCAN_ERR;
		}
		p = skip_ws(p + 1, end);
		if (p == end)
			return SCAN_MORE;
		goto key;
	}
	if (*p == ']') {
		p++;
		goto close;
	}
	if (*p != ',') {
		bad(c, p, "expected ',' or ']' in array");
		return SCAN_ERR;
	}
	p = skip_ws(p + 1, end);
	if (p == end)
		return SCAN_MORE;
	if (*p == ']') {
		bad(c, p, "trailing comma in array");
		return SCAN_ERR;
	}
	cap = NULL;
	ctx = CTX_SKIP;
	goto value;

key:
	/* p at the name of a member of st[n - 1]. */
	if (*p != '"') {
		bad(c, p,
		    *p == '}' ? "trailing comma in object"
		              : "object key is not a double-quoted string");
		return SCAN_ERR;
	}
	key.p = p;
	key.t = V_STRING;
	p = scan_string(c, p, &key.esc, &cls);
	if (p == NULL)
		return c->rc;
	key.n = (size_t)(p - key.p);
	RECORD(key.p + 1, key.n - 2, JSON_TOK_KEY, cls);
	p = skip_ws(p, end);
	if (p == end)
		return SCAN_MORE;
	if (*p != ':') {
		bad(c, p, "expected ':' after object key");
		return SCAN_ERR;
	}
	p = skip_ws(p + 1, end);
	cap = NULL;
	ctx = CTX_SKIP;
	if (st[n - 1].ctx != CTX_SKIP)
		ctx = member(&c->f, st[n - 1].ctx, &key, &cap);
	goto value;
}

/* ---- fast path ---------------------------------------------------------- */

/*
 * scan_element() above is the reference: it alone decides what is an
 * error, what needs more bytes and what every message says. scan_fast()
 * walks the same grammar over the same bytes, faster, for the common
 * case only (no backslash in any string, no error, the whole element in
 * [p, c->end)). Whenever it meets anything else it gives up, and the
 * element is scanned again from its first byte by scan_element(), so
 * the fast path changes speed, never results. Build with
 * -DBAYEUX_CHECK_FAST to have every element it accepts scanned by both
 * and compared (the fuzz harnesses do): any difference aborts.
 *
 * Why it is faster. The reference pays, for every value and every key,
 * for what a bad or cut element needs: an end check before each byte,
 * error texts, escape decoding set-up, a depth check per value, the
 * container kind read back from its stack frame. The fast walk assumes
 * the common element (compact, plain ASCII text, in one chunk) and makes
 * each of those checks only where that assumption fails:
 *
 *  - A string is searched 16 bytes a step with two masks per step,
 *      stop   '"', '\\', or a byte outside 0x20-0x7e,
 *      space  ' ' or '=' (JSON_STR_SPACE),
 *    one range compare standing for both "control byte" and "0x7f and
 *    up". The lowest stop bit is the string's end in the common case; a
 *    byte of 0x7f or above there is text (JSON_STR_ODD) and the search
 *    goes on after it; a '\\' or a control byte sends the element to the
 *    reference. The last 19 bytes of the chunk are searched byte by byte.
 *  - A string must leave room after it for what a good element needs
 *    (its '}' after a value; ':', a value and '}' after a key), so the
 *    byte after it is read without an end check.
 *  - Whitespace is looked for only where the expected byte is not found.
 *  - The depth is checked once per container, for the deepest value it
 *    could hold; the innermost container's kind and context are locals.
 *
 * The second round (callgrind, on events of the benchmark's shape:
 * about 4,850 instructions an event for the fast path before, 3,900
 * after) went after the cost of the walk itself rather than the search:
 *
 *  - Registers. Most of the difference was locals spilled to the stack
 *    and loaded back on every token. The string classes no longer have
 *    their address passed to an out-of-line call (a copy does), nor
 *    does the tape's write end; the innermost container's kind and
 *    context are one int (IN_ARRAY, or the object's ctx); and all the
 *    hot end checks compare with `safe` (FAST_SLACK before the end), so
 *    end itself is used only near the end of the bytes (AT_END()).
 *    That one compare per 16-byte step also covers the room a string
 *    must leave after it, which had a check of its own.
 *  - Recording. A token is written the same way inside the payload and
 *    outside it (into a small sink on the stack), so the "recording?"
 *    test is made only when the write end is reached, not per token.
 *  - Keys. The wanted keys are matched inline (fast_member()), by length
 *    and then two or three word compares (plain_is()), not by a call per
 *    key of a searched object that then called memcmp().
 *  - Numbers. A positive integer followed by ',', '}' or ']' is scanned
 *    inline; any other number goes to scan_number() from its first byte.
 *  - After a ',' in an object, a '"' goes straight to the key.
 *
 * Tried and left out: passing the search's byte patterns in as
 * variables so that they stay in registers for the whole walk (the
 * compiler reloads them per string anyway, or spills them: no better or
 * worse), and a number scan out of line (no change). Reserving the tape
 * once for the whole payload, to drop the capacity test per token, needs
 * a bound known in advance: a token can take a single byte ("[[]]" is
 * four), so the bound is the bytes left in the chunk, up to 16384 tokens
 * (192 KiB) for a 16 KiB chunk, kept for the stream's life; two compares
 * per token did not seem worth that memory.
 *
 * Classifying the element ahead of the walk in 64-byte blocks (stage 1
 * of simdjson) was tried first and measured no better on the benchmark
 * events: the walk still visits every token, and the blocks cost what
 * the per-string set-up costs. The per-string search is the simpler.
 */
#if defined(__SSE2__) && defined(__GNUC__)
#define HAVE_SCAN_FAST 1

/* The two masks of the 16 bytes at q, as bits 0-15. */
HOT void
classify16(const char *q, unsigned *stops, unsigned *space)
{
	const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)q);
	__m128i stop, sp;

	/* v + 0x60 maps 0x20-0x7e onto -128..-34 as signed bytes and
	 * every other byte above that: one compare for the range. */
	stop = _mm_or_si128(
	    _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
	                 _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
	    _mm_cmpgt_epi8(_mm_add_epi8(v, _mm_set1_epi8(0x60)),
	                   _mm_set1_epi8(-34)));
	sp = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(' ')),
	                  _mm_cmpeq_epi8(v, _mm_set1_epi8('=')));
	*stops = (unsigned)_mm_movemask_epi8(stop);
	*space = (unsigned)_mm_movemask_epi8(sp);
}

/*
 * The rest of a string, at q, in the last FAST_SLACK bytes of the chunk:
 * byte by byte, the same classes. Returns the closing quote or NULL.
 */
static const char *
fast_string_tail(const char *q, const char *end, unsigned *f)
{
	unsigned char b;

	for (; q < end; q++) {
		b = (unsigned char)*q;
		if (b == '"')
			return q;
		if (b < 0x20 || b == '\\')
			return NULL;
		if (b == ' ' || b == '=')
			*f |= JSON_STR_SPACE;
		else if (b >= 0x7f)
			*f |= JSON_STR_ODD;
	}
	return NULL;
}

/* How far before the end of the bytes a 16-byte step may start: 16 bytes
 * read, and the 3 a key needs after its closing quote. */
#define FAST_SLACK 19

/*
 * The string literal whose opening quote is at p, without escapes:
 * returns the byte after its closing quote and sets *cls, or returns
 * NULL when the reference must judge it: an escape, a control byte, the
 * end of the bytes, or fewer than `after` bytes after the closing quote
 * (a good element has at least its '}' after a value, and ':', a value
 * and '}' after a key, so the caller need not look for the end there).
 *
 * safe is the last byte a 16-byte step may start at, FAST_SLACK before
 * end (or the element's first byte when there are fewer): one pointer
 * compare per step then stands for both "16 bytes readable" and "room
 * after the closing quote", since a quote found in a step starting at or
 * before safe lies at least 4 bytes before end. Past safe the string is
 * finished byte by byte, with both checks made in full.
 */
HOT const char *
fast_string(const char *p, const char *safe, const char *end,
            ptrdiff_t after, unsigned *cls)
{
	const char *q = p + 1;
	unsigned stop, space, f = 0, tf;

	for (;;) {
		if (q > safe)
			goto tail;
		classify16(q, &stop, &space);
		if (stop == 0) {
			if (space != 0)
				f |= JSON_STR_SPACE;
			q += 16;
			continue;
		}
		/* stop ^ (stop - 1): the bits up to the lowest stop; that
		 * one itself is never a space. */
		if (space & (stop ^ (stop - 1)))
			f |= JSON_STR_SPACE;
		q += __builtin_ctz(stop);
		if (*q == '"')
			break;
		if ((unsigned char)*q < 0x7f)
			return NULL;
		f |= JSON_STR_ODD;
		q++;
	}
	*cls = f;
	return q + 1;

tail:
	/* A copy, so that f itself never has its address taken and can
	 * stay in a register. */
	tf = f;
	q = fast_string_tail(q, end, &tf);
	if (q == NULL || end - q <= after)
		return NULL;
	*cls = tf;
	return q + 1;
}

/*
 * Whether the n bytes at k are the ln bytes at lit (a literal, at least 4
 * bytes long: every wanted key is). Inlined with a constant ln, this is a
 * length compare and two or three word compares, the last one
 * overlapping the one before; memcmp() would be a call per key.
 */
HOT int
plain_is(const char *k, size_t n, const char *lit, size_t ln)
{
	uint64_t a, b;
	uint32_t x, y;
	size_t i;

	if (n != ln)
		return 0;
	if (ln < 8) {
		memcpy(&x, k, 4);
		memcpy(&y, lit, 4);
		if (x != y)
			return 0;
		memcpy(&x, k + ln - 4, 4);
		memcpy(&y, lit + ln - 4, 4);
		return x == y;
	}
	for (i = 0; i + 8 < ln; i += 8) {
		memcpy(&a, k + i, 8);
		memcpy(&b, lit + i, 8);
		if (a != b)
			return 0;
	}
	memcpy(&a, k + ln - 8, 8);
	memcpy(&b, lit + ln - 8, 8);
	return a == b;
}

#define PLAIN_IS(k, n, lit) plain_is((k), (n), (lit), sizeof(lit) - 1)

/*
 * member() for a plain key (the n bytes at k, no escape), inline: the
 * fast walk calls it for every key of the objects an event is searched
 * in, and a call there also costs the string search its constants, which
 * live in registers a call may clobber. The same MEMBER_CHOICES().
 */
HOT enum ctx
fast_member(struct fields *f, enum ctx ctx, const char *k, size_t n,
            struct span **cap)
{
#define FAST_IS(lit) PLAIN_IS(k, n, lit)
	switch (ctx) {
		MEMBER_CHOICES(FAST_IS)
	}
#undef FAST_IS
	return CTX_SKIP;
}

/*
 * scan_element()'s walk with fast_string() for scan_string(): returns 1
 * when the element is good (c->p, c->f and the tape exactly as the
 * reference leaves them), 0 when the reference must scan it. The labels
 * are the reference's; every error and every "more bytes" of the
 * reference is a plain "not mine" here. The liberties taken only ever
 * give up more often: the depth is checked when a container opens, for
 * the deepest value it could hold; whitespace is looked for only where
 * the expected byte is not found (compact JSON is the common case); the
 * innermost container's kind and context are kept in a local; the data
 * object's tape is set up where its key is matched; a number that is not
 * a plain positive integer, or one that runs into the last FAST_SLACK
 * bytes, is scanned again by scan_number().
 */
/* Tokens outside the payload go here, rewound when full (see FAST_RECORD). */
#define SINK_TOKENS 8

/*
 * RECORD without its "recording?" test: outside the payload tk points
 * into a small sink on the stack, whose contents nobody reads, so every
 * token is stored the same way and the test moves to the rare moment the
 * write end is reached: then the tape grows while the payload is
 * recorded (a full tape stops the recording), and the sink is rewound
 * otherwise.
 */
#define FAST_RECORD(at_, len_, type_, flags_)                                  \
	do {                                                                   \
		if (tk == tk_lim) {                                            \
			struct json_tok *lim_ = NULL;                          \
			if (rec >= 0 &&                                        \
			    (tk = tape_more(c->tape, tk, &lim_)) != NULL) {    \
				tk_lim = lim_;                                 \
			} else {                                               \
				rec = -1;                                      \
				tk = sink;                                     \
				tk_lim = sink + SINK_TOKENS;                   \
			}                                                      \
		}                                                              \
		tk->off = (uint32_t)((at_) - tbase);                           \
		tk->len = (uint32_t)(len_);                                    \
		tk->type = (uint8_t)(type_);                                   \
		tk->flags = (uint8_t)(flags_);                                 \
		tk++;                                                          \
	} while (0)

/* scan_fast()'s frame: in is the object's ctx, or IN_ARRAY, so that the
 * innermost container's kind and context take one register. */
#define IN_ARRAY (-1)

struct fast_frame {
	const char *start;
	struct span *cap;
	int in;
};

/* Whether p (at most end) is end: exact, given safe < end, and the one
 * compare made in the common case is with safe, so that end itself is
 * needed only near the end of the bytes. p_ is evaluated twice: no side
 * effects in it. */
#define AT_END(p_) ((p_) > safe && (p_) == end)

static int
scan_fast(struct cursor *c, const char *p)
{
	struct fast_frame st[MAX_LEVELS];
	struct json_tok sink[SINK_TOKENS];
	const char *end = c->end, *start, *kend, *tbase = p, *safe = p;
	struct json_tok *tk = sink, *tk_lim = sink + SINK_TOKENS;
	struct span *cap = NULL;
	enum ctx ctx = CTX_TOP;
	enum vtype t;
	int n = 0, flag, rec = -1, in = IN_ARRAY;
	unsigned cls = 0, tt;

	if (c->tape != NULL) {
		c->tape->n = 0;
		c->tape->ok = 0;
	}
	/* An element is an object (element_start() made sure). */
	if (p == end || *p != '{' || (size_t)(end - p) >= UINT32_MAX)
		return 0;
	if (end - p > FAST_SLACK)
		safe = end - FAST_SLACK;

value:
	/* p < end, at a value; cap and ctx say what to note about it. */
	start = p;
	if (*p == '"') {
		p = fast_string(p, safe, end, 1, &cls);
		if (p == NULL)
			return 0;
		FAST_RECORD(start + 1, (size_t)(p - start) - 2, JSON_TOK_STR,
		            cls);
		if (cap != NULL) {
			cap->p = start;
			cap->n = (size_t)(p - start);
			cap->t = V_STRING;
			cap->esc = 0;
		}
		goto next_byte;
	}
	switch (*p) {
	case '{':
	case '[':
		/* Its values are at level n + 3 at most. */
		if (n + 3 > MAX_LEVELS)
			return 0;
		st[n].start = p;
		st[n].cap = cap;
		st[n].in = in = *p == '{' ? (int)ctx : IN_ARRAY;
		FAST_RECORD(p, 1, in != IN_ARRAY ? JSON_TOK_OBJ : JSON_TOK_ARR,
		            0);
		n++;
		if (AT_END(p + 1))
			return 0;
		p++;
		if ((unsigned char)*p <= ' ') {
			p = skip_ws(p, end);
			if (p == end)
				return 0;
		}
		if (*p == (in != IN_ARRAY ? '}' : ']')) {
			p++;
			goto close;
		}
		if (in != IN_ARRAY)
			goto key;
		cap = NULL;
		ctx = CTX_SKIP;
		goto value;
	case 't':
		p = scan_literal(c, p, "true", 4);
		t = V_OTHER;
		tt = JSON_TOK_TRUE;
		break;
	case 'f':
		p = scan_literal(c, p, "false", 5);
		t = V_OTHER;
		tt = JSON_TOK_FALSE;
		break;
	case 'n':
		p = scan_literal(c, p, "null", 4);
		t = V_NULL;
		tt = JSON_TOK_NULL;
		break;
	default:
		tt = JSON_TOK_NUM;
		/* The common number, a positive integer followed by the end
		 * of its container or a comma, inline; anything else from
		 * its first byte again by scan_number(). */
		if (*p >= '1' && *p <= '9') {
			while (++p <= safe && is_digit(*p))
				;
			if (p <= safe &&
			    (*p == ',' || *p == '}' || *p == ']')) {
				t = V_INT;
				break;
			}
			p = start;
		}
		if (*p != '-' && !is_digit(*p))
			return 0;
		p = scan_number(c, p, &flag);
		t = flag ? V_INT : V_OTHER;
		break;
	}
	if (p == NULL)
		return 0;
	FAST_RECORD(start, (size_t)(p - start), tt, 0);
	if (cap != NULL) {
		cap->p = start;
		cap->n = (size_t)(p - start);
		cap->t = t;
		cap->esc = 0;
	}
	goto next;

close:
	/* p just past the closing bracket of st[n - 1]; n > 0. */
	if (n <= 0)
		return 0;
	n--;
	FAST_RECORD(p - 1, 1, JSON_TOK_END, 0);
	if (n == rec) { /* the payload is complete */
		rec = -1;
		c->tape->n = (size_t)(tk - c->tape->tok);
		tk = sink;
		tk_lim = sink + SINK_TOKENS;
	}
	if (st[n].cap != NULL) {
		st[n].cap->p = st[n].start;
		st[n].cap->n = (size_t)(p - st[n].start);
		st[n].cap->t = V_OTHER;
		st[n].cap->esc = 0;
	}
	if (n == 0) {
		c->p = p;
		return 1;
	}
	in = st[n - 1].in;

next:
	/* After a value inside st[n - 1]. */
	if (AT_END(p))
		return 0;
next_byte:
	/* The same, p < end. */
	if ((unsigned char)*p <= ' ') {
		p = skip_ws(p, end);
		if (p == end)
			return 0;
	}
	if (*p == ',') {
		if (AT_END(p + 1))
			return 0;
		p++;
		/* The next member's name, straight after the comma. */
		if (*p == '"' && in != IN_ARRAY)
			goto key_quote;
		if ((unsigned char)*p <= ' ') {
			p = skip_ws(p, end);
			if (p == end)
				return 0;
		}
		if (in != IN_ARRAY)
			goto key;
		if (*p == ']')
			return 0;
		cap = NULL;
		ctx = CTX_SKIP;
		goto value;
	}
	if (*p != (in != IN_ARRAY ? '}' : ']'))
		return 0;
	p++;
	goto close;

key:
	/* p < end, at the name of a member of st[n - 1]. */
	if (*p != '"')
		return 0;
key_quote:
	start = p;
	p = fast_string(p, safe, end, 3, &cls);
	if (p == NULL)
		return 0;
	FAST_RECORD(start + 1, (size_t)(p - start) - 2, JSON_TOK_KEY, cls);
	kend = p;
	if (*p != ':') {
		p = skip_ws(p, end);
		if (p == end || *p != ':' || p + 1 == end)
			return 0;
	}
	/* p + 1 < end: fast_string() made sure, or the line above. */
	if ((unsigned char)*++p <= ' ') {
		p = skip_ws(p, end);
		if (p == end)
			return 0;
	}
	cap = NULL;
	ctx = CTX_SKIP;
	if (in != CTX_SKIP) {
		ctx = fast_member(&c->f, (enum ctx)in, start + 1,
		                  (size_t)(kend - start) - 2, &cap);
		if (ctx == CTX_DATA && c->tape != NULL) {
			/* The last "data" is the payload: record it afresh. */
			c->tape->n = 0;
			c->tape->ok = *p == '{';
			if (c->tape->ok) {
				tbase = c->tape->base = p;
				rec = n;
				/* tape_more() when it holds nothing yet. */
				tk = tk_lim = c->tape->tok;
				if (tk != NULL)
					tk_lim = tk + c->tape->cap;
			}
		}
	}
	goto value;
}
#endif /* __SSE2__ && __GNUC__ */

#if defined(BAYEUX_CHECK_FAST) && defined(HAVE_SCAN_FAST)
static void check_failed(const char *what) __attribute__((noreturn));

static void
check_failed(const char *what)
{
	fprintf(stderr, "bayeux_stream: fast path differs: %s\n", what);
	abort();
}

static int
span_same(const struct span *a, const struct span *b)
{
	return a->p == b->p && a->n == b->n && a->t == b->t && a->esc == b->esc;
}

/*
 * The element at p was accepted by scan_fast() into c, which held f0
 * before: scans it again with the reference, into a tape of its own,
 * and aborts on the first difference.
 */
static void
check_fast(const struct cursor *c, const char *p, const struct fields *f0)
{
	const struct span *fa = &c->f.channel, *fb;
	struct tape_buf t = {0};
	struct cursor r;
	size_t i;

	memset(&r, 0, sizeof(r));
	r.tape = c->tape != NULL ? &t : NULL;
	r.end = c->end;
	r.f = *f0;
	if (scan_element(&r, p) != SCAN_OK)
		check_failed("the reference does not accept the element");
	if (r.p != c->p)
		check_failed("end of the element");
	for (fb = &r.f.channel, i = 0; i < sizeof(r.f) / sizeof(*fa); i++)
		if (!span_same(&fa[i], &fb[i]))
			check_failed("a member span");
	if (c->tape != NULL) {
		if (t.ok != c->tape->ok || t.n != c->tape->n)
			check_failed("tape state");
		if (t.ok && t.base != c->tape->base)
			check_failed("tape base");
		for (i = 0; t.ok && i < t.n; i++)
			if (t.tok[i].off != c->tape->tok[i].off ||
			    t.tok[i].len != c->tape->tok[i].len ||
			    t.tok[i].type != c->tape->tok[i].type ||
			    t.tok[i].flags != c->tape->tok[i].flags)
				check_failed("a tape token");
	}
	free(t.tok);
}
#endif

/*
 * The element scan callers use: the fast path when it takes the
 * element, else the reference from the element's first byte, on the
 * cursor as it was handed in.
 */
static enum scan_rc
scan_any(struct cursor *c, const char *p)
{
#ifdef HAVE_SCAN_FAST
	const struct fields f0 = c->f;
	const char *base0 = c->tape != NULL ? c->tape->base : NULL;

	if (scan_fast(c, p)) {
#ifdef BAYEUX_CHECK_FAST
		check_fast(c, p, &f0);
#endif
		return SCAN_OK;
	}
	c->f = f0;
	c->rc = SCAN_OK;
	c->err_at = NULL;
	c->why = NULL;
	if (c->tape != NULL)
		c->tape->base = base0;
#endif
	return scan_element(c, p);
}

/* ---- boundary scanner --------------------------------------------------- */

/* The first '"' or '\\' in [p, end), or end. */
static const char *
quote_or_backslash(const char *p, const char *end)
{
	uint64_t w, hit;

	while (end - p >= 8) {
		memcpy(&w, p, sizeof(w));
		hit = flag_byte(w, '"') | flag_byte(w, '\\');
		if (hit != 0) {
			p = FIRST_FLAG(p, hit);
			break;
		}
		p += 8;
	}
	while (p < end && *p != '"' && *p != '\\')
		p++;
	return p;
}

/*
 * Resumes the search for the end of the buffered element at *pp, up to
 * end. Returns 1 with *pp just past the element's closing bracket, 0 with
 * *pp at end when the element goes on, or -1 with *pp at a bracket that
 * nests deeper than any valid element can (so a run of '[' is refused
 * early instead of being buffered).
 */
static int
boundary(struct bayeux_stream *s, const char **pp, const char *end)
{
	const char *p = *pp;

	while (p < end) {
		if (s->in_str) {
			if (s->esc) {
				s->esc = 0;
				p++;
				continue;
			}
			p = quote_or_backslash(p, end);
			if (p == end)
				break;
			if (*p == '\\')
				s->esc = 1;
			else
				s->in_str = 0;
			p++;
			continue;
		}
		switch (*p) {
		case '"':
			s->in_str = 1;
			break;
		case '{':
		case '[':
			/* The element is level 2; its brackets may reach 64. */
			if (++s->depth > MAX_LEVELS - 1) {
				*pp = p;
				return -1;
			}
			break;
		case '}':
		case ']':
			if (--s->depth == 0) {
				*pp = p + 1;
				return 1;
			}
			break;
		default:
			break;
		}
		p++;
	}
	*pp = p;
	return 0;
}

/* ---- buffers ------------------------------------------------------------ */

/* Makes buf hold at least need bytes. The cap keeps the bound of the
 * header: an element never needs more than max_msg plus the wrapping. */
static int
buf_reserve(struct bayeux_stream *s, size_t need)
{
	size_t cap, limit = s->max_msg + 3;
	char *p;

	if (need <= s->cap)
		return 0;
	cap = s->cap < BUF_MIN ? BUF_MIN : s->cap;
	while (cap < need && cap <= SIZE_MAX / 2)
		cap *= 2;
	if (cap > limit)
		cap = limit;
	if (cap < need)
		cap = need;
	p = realloc(s->buf, cap);
	if (p == NULL)
		return -1;
	s->buf = p;
	s->cap = cap;
	return 0;
}

static int
scratch_reserve(struct bayeux_stream *s, size_t need)
{
	size_t cap;
	char *p;

	if (need <= s->scratch_cap)
		return 0;
	cap = need < 256 ? 256 : need;
	if (cap < s->scratch_cap * 2 && s->scratch_cap * 2 <= s->max_msg + 8)
		cap = s->scratch_cap * 2;
	p = realloc(s->scratch, cap);
	if (p == NULL)
		return -1;
	s->scratch = p;
	s->scratch_cap = cap;
	return 0;
}

/* ---- message building --------------------------------------------------- */

/* Decodes a string span into scratch at *used; NULL when sp is not a
 * string. *len gets the decoded length. */
static const char *
take_string(struct bayeux_stream *s, size_t *used, const struct span *sp,
            size_t *len)
{
	char *out = s->scratch + *used;
	size_t n;

	if (sp->t != V_STRING)
		return NULL;
	n = sp->n - 2;
	if (sp->esc)
		n = unescape(sp->p + 1, n, out, n);
	else
		memcpy(out, sp->p + 1, n);
	out[n] = '\0';
	*used += n + 1;
	if (len != NULL)
		*len = n;
	return out;
}

static int
is_signed_digits(const char *s, size_t len)
{
	size_t i = s[0] == '-' ? 1 : 0;

	if (i == len)
		return 0;
	for (; i < len; i++) {
		if (!is_digit(s[i]))
			return 0;
	}
	return 1;
}

/* The replayId as text: an integer as written ("-0" as json-c prints it),
 * a string when it is all digits after an optional '-', else "". */
static const char *
replay_text(struct bayeux_stream *s, size_t *used, const struct span *sp)
{
	const char *t;
	size_t n;
	char *out;

	if (sp->t == V_INT) {
		if (sp->n == 2 && sp->p[0] == '-' && sp->p[1] == '0')
			return "0";
		out = s->scratch + *used;
		memcpy(out, sp->p, sp->n);
		out[sp->n] = '\0';
		*used += sp->n + 1;
		return out;
	}
	t = take_string(s, used, sp, &n);
	if (t == NULL || !is_signed_digits(t, n))
		return "";
	return t;
}

/* Milliseconds of a JSON integer; -1 when it does not fit in int64, which
 * puts it outside the years a timestamp can be written for anyway. */
static int
int_millis(const struct span *sp, int64_t *ms)
{
	const char *p = sp->p, *end = sp->p + sp->n;
	int neg = 0;
	uint64_t v = 0, d, lim;

	if (*p == '-') {
		neg = 1;
		p++;
	}
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; p < end; p++) {
		d = (uint64_t)(*p - '0');
		if (v > (lim - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (neg)
		*ms = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	else
		*ms = (int64_t)v;
	return 0;
}

/* Days from 0000-01-01 to January 1st of year y (proleptic Gregorian;
 * year 0 is a leap year), for 0 <= y. */
static int64_t
days_before_year(int64_t y)
{
	return 365 * y + (y + 3) / 4 - (y + 99) / 100 + (y + 399) / 400;
}

static void
put_digits(char *out, int64_t v, int width)
{
	while (width-- > 0) {
		out[width] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* Epoch milliseconds as "YYYY-MM-DDTHH:MM:SS.mmmZ"; -1 outside the years
 * 0000-9999, which have no such form. */
static int
iso_from_millis(int64_t ms, char out[ISO_LEN])
{
	/* 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z */
	static const int64_t lo = INT64_C(-62167219200000);
	static const int64_t hi = INT64_C(253402300799999);
	static const int cum[13] = {0,   31,  59,  90,  120, 151, 181,
	                            212, 243, 273, 304, 334, 365};
	int64_t t, day, y, doy, sod;
	int m, leap;

	if (ms < lo || ms > hi)
		return -1;
	t = ms - lo; /* milliseconds since 0000-01-01, never negative */
	day = t / 86400000;
	sod = t % 86400000;
	/* An estimate of the year, then the exact one by stepping. */
	y = day * 400 / 146097;
	while (y > 0 && days_before_year(y) > day)
		y--;
	while (days_before_year(y + 1) <= day)
		y++;
	doy = day - days_before_year(y);
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	for (m = 0; m < 11; m++) {
		int next = cum[m + 1] + (leap && m + 1 >= 2 ? 1 : 0);

		if (doy < next)
			break;
	}
	doy -= cum[m] + (leap && m >= 2 ? 1 : 0);

	memcpy(out, "0000-00-00T00:00:00.000Z", ISO_LEN);
	put_digits(out, y, 4);
	put_digits(out + 5, m + 1, 2);
	put_digits(out + 8, doy + 1, 2);
	put_digits(out + 11, sod / 3600000, 2);
	put_digits(out + 14, sod / 60000 % 60, 2);
	put_digits(out + 17, sod / 1000 % 60, 2);
	put_digits(out + 20, sod % 1000, 3);
	return 0;
}

static int
has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Runs the callback; -1 when it stopped or freed the stream. */
static int
call_back(struct bayeux_stream *s, const struct bayeux_msg *m)
{
	int rc;

	s->count++;
	s->in_callback = 1;
	rc = s->fn(s->arg, m);
	s->in_callback = 0;
	if (s->free_later)
		return -1;
	if (rc != 0)
		return fail(s, "stopped by callback");
	return 0;
}

/* A meta reply goes through bayeux_decode() as a one-element body.
 * in_buf: the element is already at s->buf + 1. */
static int
deliver_meta(struct bayeux_stream *s, const char *elem, size_t n, int in_buf)
{
	struct bayeux_batch *b;
	char jerr[160];
	int rc;

	if (!in_buf) {
		if (buf_reserve(s, n + 3) < 0)
			return fail(s, "out of memory (element %zu)", s->count);
		memcpy(s->buf + 1, elem, n);
	}
	s->buf[0] = '[';
	s->buf[n + 1] = ']';
	b = bayeux_decode(s->buf, n + 2, jerr, sizeof(jerr));
	if (b == NULL)
		return fail(s, "element %zu (byte %zu): %s", s->count,
		            s->elem_off, jerr);
	rc = call_back(s, bayeux_batch_msg(b, 0));
	bayeux_batch_free(b);
	return rc;
}

/*
 * Turns a parsed element (n bytes at elem, at body offset s->elem_off;
 * in_buf when that is s->buf + 1) into a message and hands it on.
 */
static int
deliver(struct bayeux_stream *s, const char *elem, size_t n,
        const struct fields *f, int in_buf)
{
	const struct span *list[] = {&f->channel,    &f->ev_replay,
	                             &f->ev_created, &f->ev_type,
	                             &f->pl_created, &f->hd_type};
	struct bayeux_msg m;
	const char *ch;
	size_t i, used = 0, need = 0, chlen = 0;
	int64_t ms;

	if (f->channel.t == V_ABSENT || f->channel.t == V_NULL)
		return fail(s, "element %zu has no \"channel\" (byte %zu)",
		            s->count, s->elem_off);
	if (f->channel.t != V_STRING)
		return fail(s,
		            "element %zu: \"channel\" is not a string "
		            "(byte %zu)",
		            s->count, s->elem_off);
	for (i = 0; i < sizeof(list) / sizeof(list[0]); i++)
		need += list[i]->n + 1;
	if (scratch_reserve(s, need) < 0)
		return fail(s, "out of memory (element %zu)", s->count);
	ch = take_string(s, &used, &f->channel, &chlen);
	if (chlen == 0)
		return fail(s, "element %zu: \"channel\" is empty (byte %zu)",
		            s->count, s->elem_off);
	if (memchr(ch, '\0', chlen) != NULL)
		return fail(s,
		            "element %zu: \"channel\" holds a NUL (byte %zu)",
		            s->count, s->elem_off);
	if (has_prefix(ch, "/meta/"))
		return deliver_meta(s, elem, n, in_buf);

	memset(&m, 0, sizeof(m));
	m.kind = BAYEUX_MSG_EVENT;
	m.channel = ch;
	m.advice.interval_ms = -1;
	m.advice.timeout_ms = -1;
	m.ev.src = EVENT_SRC_STREAM;
	m.ev.channel = ch;
	if (f->data.t != V_ABSENT && f->data.t != V_NULL) {
		m.ev.payload = f->data.p;
		m.ev.payload_len = f->data.n;
		if (s->tape.ok && s->tape.n > 0 && s->tape.base == f->data.p) {
			s->tape_view.tok = s->tape.tok;
			s->tape_view.n = s->tape.n;
			m.ev.tape = &s->tape_view;
		}
	} else {
		m.ev.payload = "{}";
		m.ev.payload_len = 2;
	}
	m.ev.position = replay_text(s, &used, &f->ev_replay);
	if (has_prefix(ch, "/topic/")) {
		m.ev.created = take_string(s, &used, &f->ev_created, NULL);
		m.ev.event_type = take_string(s, &used, &f->ev_type, NULL);
	} else if (has_prefix(ch, "/u/")) {
		m.ev.created = take_string(s, &used, &f->ev_created, NULL);
	} else if (has_prefix(ch, "/event/")) {
		m.ev.created = take_string(s, &used, &f->pl_created, NULL);
	} else if (has_prefix(ch, "/data/")) {
		if (f->hd_ts.t == V_INT && int_millis(&f->hd_ts, &ms) == 0 &&
		    iso_from_millis(ms, s->iso) == 0)
			m.ev.created = s->iso;
		m.ev.event_type = take_string(s, &used, &f->hd_type, NULL);
	}
	return call_back(s, &m);
}

/* ---- body framing -------------------------------------------------------- */

static int
is_value_start(char c)
{
	return c == '[' || c == '"' || c == '-' || is_digit(c) || c == 't' ||
	       c == 'f' || c == 'n';
}

/* Parses the element at [elem, end) in one go (in_buf: see deliver).
 * Returns 0 delivered, -1 failed, 1 when the bytes ran out first. */
static int
parse_and_deliver(struct bayeux_stream *s, const char *elem, const char *end,
                  int in_buf, const char **after)
{
	struct cursor c;
	enum scan_rc rc;

	memset(&c, 0, sizeof(c));
	c.tape = &s->tape;
	c.end = end;
	rc = scan_any(&c, elem);
	if (rc == SCAN_MORE)
		return 1;
	if (rc == SCAN_ERR)
		return fail(s, "invalid JSON at byte %zu: %s",
		            s->elem_off + (size_t)(c.err_at - elem), c.why);
	*after = c.p;
	return deliver(s, elem, (size_t)(c.p - elem), &c.f, in_buf);
}

/*
 * Before the buffered element fails for want of an end (body over, size
 * limit, bracket depth), the element parser looks at what is buffered:
 * when those bytes already hold a syntax error, that error is the one
 * reported, as it would have been had the same bytes come in one chunk.
 * Returns -1 after reporting it, 0 when there is none.
 */
static int
buffered_error(struct bayeux_stream *s)
{
	struct cursor c;

	memset(&c, 0, sizeof(c));
	c.end = s->buf + 1 + s->len;
	if (s->len == 0 || scan_element(&c, s->buf + 1) != SCAN_ERR)
		return 0;
	return fail(s, "invalid JSON at byte %zu: %s",
	            s->elem_off + (size_t)(c.err_at - (s->buf + 1)), c.why);
}

static int
too_big(struct bayeux_stream *s)
{
	return fail(s,
	            "element %zu at byte %zu is larger than max_msg_bytes "
	            "(%zu)",
	            s->count, s->elem_off, s->max_msg);
}

/* Appends bytes of the straddling element to the buffer. */
static int
buffer_add(struct bayeux_stream *s, const char *p, size_t n)
{
	if (buf_reserve(s, 1 + s->len + n + 2) < 0)
		return fail(s, "out of memory (element %zu)", s->count);
	memcpy(s->buf + 1 + s->len, p, n);
	s->len += n;
	return 0;
}

/*
 * An element starts at *pp (base: the chunk start). Parses it in place
 * when the chunk holds all of it; otherwise starts buffering it.
 */
static int
element_start(struct bayeux_stream *s, const char *base, const char **pp,
              const char *end)
{
	const char *q = *pp, *lim, *after = NULL;
	size_t avail = (size_t)(end - q);
	int rc;

	s->elem_off = s->off + (size_t)(q - base);
	if (*q != '{') {
		if (is_value_start(*q))
			return fail(s,
			            "element %zu is not a JSON object "
			            "(byte %zu)",
			            s->count, s->elem_off);
		return fail(s, "invalid JSON at byte %zu: unexpected character",
		            s->elem_off);
	}
	lim = avail > s->max_msg ? q + s->max_msg : end;
	rc = parse_and_deliver(s, q, lim, 0, &after);
	if (rc <= 0) {
		if (rc == 0) {
			*pp = after;
			s->state = BODY_AFTER;
		}
		return rc;
	}
	if (avail >= s->max_msg)
		return too_big(s);
	/* The chunk ends inside a valid prefix: find where the scan stands
	 * and keep the bytes. The bracket depth was checked by the parser. */
	s->depth = 0;
	s->in_str = 0;
	s->esc = 0;
	s->len = 0;
	after = q;
	(void)boundary(s, &after, end);
	if (buffer_add(s, q, avail) < 0)
		return -1;
	*pp = end;
	s->state = BODY_ELEMENT;
	return 0;
}

/* More bytes of a buffered element at *pp. */
static int
element_more(struct bayeux_stream *s, const char *base, const char **pp,
             const char *end)
{
	const char *q = *pp, *stop = *pp, *after = NULL;
	size_t room = s->max_msg - s->len;
	const char *lim = (size_t)(end - q) > room ? q + room : end;
	int done, rc;

	done = boundary(s, &stop, lim);
	if (done < 0) {
		/* Keep the offending bracket too: the parser reports it, or
		 * an error before it. */
		if (buffer_add(s, q, (size_t)(stop + 1 - q)) < 0)
			return -1;
		if (buffered_error(s) < 0)
			return -1;
		return fail(s, "invalid JSON at byte %zu: nesting too deep",
		            s->off + (size_t)(stop - base));
	}
	if (buffer_add(s, q, (size_t)(stop - q)) < 0)
		return -1;
	*pp = stop;
	if (!done) {
		if (s->len >= s->max_msg)
			return buffered_error(s) < 0 ? -1 : too_big(s);
		return 0;
	}
	rc = parse_and_deliver(s, s->buf + 1, s->buf + 1 + s->len, 1, &after);
	if (rc > 0)
		return fail(s,
		            "invalid JSON at byte %zu: unexpected end of "
		            "element",
		            s->elem_off + s->len);
	if (rc < 0)
		return -1;
	s->len = 0;
	s->state = BODY_AFTER;
	return 0;
}

/*
 * One byte of the array around the elements (whitespace already skipped),
 * at body offset at. Returns 0, 1 when an element starts at it, or -1.
 */
static int
frame(struct bayeux_stream *s, char c, size_t at)
{
	switch (s->state) {
	case BODY_START:
		if (c == '[') {
			s->state = BODY_FIRST;
			return 0;
		}
		if (c == '{' || is_value_start(c))
			return fail(s, "body is not a JSON array (byte %zu)",
			            at);
		return fail(s, "invalid JSON at byte %zu: unexpected character",
		            at);
	case BODY_FIRST:
		if (c != ']')
			return 1;
		s->state = BODY_DONE;
		return 0;
	case BODY_NEXT:
		if (c != ']')
			return 1;
		return fail(
		    s, "invalid JSON at byte %zu: trailing comma in array", at);
	case BODY_AFTER:
		if (c == ',' || c == ']') {
			s->state = c == ',' ? BODY_NEXT : BODY_DONE;
			return 0;
		}
		return fail(s,
		            "invalid JSON at byte %zu: expected ',' or ']' "
		            "after element %zu",
		            at, s->count - 1);
	case BODY_DONE:
		return fail(s, "invalid JSON at byte %zu: trailing data", at);
	case BODY_ELEMENT:
	case BODY_FAILED:
		break;
	}
	return -1;
}

/* ---- public ------------------------------------------------------------- */

struct bayeux_stream *
bayeux_stream_new(size_t max_msg_bytes, bayeux_stream_fn *fn, void *arg)
{
	struct bayeux_stream *s;

	/* The buffer holds the element plus three bytes of wrapping. */
	if (fn == NULL || max_msg_bytes == 0 || max_msg_bytes > SIZE_MAX / 4)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->fn = fn;
	s->arg = arg;
	s->max_msg = max_msg_bytes;
	s->state = BODY_START;
	return s;
}

static void
release(struct bayeux_stream *s)
{
	free(s->buf);
	free(s->scratch);
	free(s->tape.tok);
	free(s);
}

void
bayeux_stream_free(struct bayeux_stream *s)
{
	if (s == NULL)
		return;
	if (s->in_callback) {
		s->free_later = 1;
		return;
	}
	release(s);
}

int
bayeux_stream_feed(struct bayeux_stream *s, const char *data, size_t len)
{
	const char *p = data, *end;
	int rc = 0;

	if (s == NULL || s->in_callback)
		return -1;
	if (s->state == BODY_FAILED)
		return -1;
	if (len == 0)
		return 0;
	if (data == NULL)
		return fail(s, "no data");
	end = data + len;
	while (p < end && rc == 0) {
		if (s->state == BODY_ELEMENT) {
			rc = element_more(s, data, &p, end);
			continue;
		}
		p = skip_ws(p, end);
		if (p == end)
			break;
		rc = frame(s, *p, s->off + (size_t)(p - data));
		if (rc > 0)
			rc = element_start(s, data, &p, end);
		else
			p++;
	}
	if (s->free_later) {
		release(s);
		return -1;
	}
	if (rc != 0)
		return -1;
	s->off += len;
	return 0;
}

int
bayeux_stream_finish(struct bayeux_stream *s)
{
	if (s == NULL || s->in_callback)
		return -1;
	switch (s->state) {
	case BODY_DONE:
		return 0;
	case BODY_FAILED:
		return -1;
	case BODY_START:
		return fail(s, "empty body");
	case BODY_ELEMENT:
		if (buffered_error(s) < 0)
			return -1;
		return fail(s, "truncated JSON body (%zu bytes)", s->off);
	default:
		return fail(s, "truncated JSON body (%zu bytes)", s->off);
	}
}

const char *
bayeux_stream_errstr(const struct bayeux_stream *s)
{
	return s == NULL ? "no stream" : s->err;
}

void
bayeux_stream_reset(struct bayeux_stream *s)
{
	if (s == NULL || s->in_callback)
		return;
	s->state = BODY_START;
	s->off = 0;
	s->count = 0;
	s->elem_off = 0;
	s->depth = 0;
	s->in_str = 0;
	s->esc = 0;
	s->len = 0;
	s->err[0] = '\0';
	if (s->cap > RETAIN_BYTES) {
		free(s->buf);
		s->buf = NULL;
		s->cap = 0;
	}
	if (s->scratch_cap > RETAIN_BYTES) {
		free(s->scratch);
		s->scratch = NULL;
		s->scratch_cap = 0;
	}
	if (s->tape.cap * sizeof(*s->tape.tok) > RETAIN_BYTES) {
		free(s->tape.tok);
		s->tape.tok = NULL;
		s->tape.cap = 0;
	}
	s->tape.n = 0;
	s->tape.ok = 0;
}

size_t
bayeux_stream_count(const struct bayeux_stream *s)
{
	return s == NULL ? 0 : s->count;
}

size_t
bayeux_stream_buffer_capacity(const struct bayeux_stream *s)
{
	return s == NULL ? 0 : s->cap + s->scratch_cap;
}
