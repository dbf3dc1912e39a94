/*
 * format: one event -> one log line, logfmt or flat JSON.
 *
 * The payload is never turned into a json-c tree. A one-pass
 * recursive-descent scanner walks the raw JSON text, validates it and
 * writes each leaf the moment it meets it, so every payload byte is looked
 * at about once (DESIGN.md, "Performance budget"). The line is staged in a
 * stack buffer and reaches the caller's evbuffer in one append, not one
 * append per token.
 *
 * How this file reads the parts of format.h that leave room:
 *
 * - Header: id= and replay_id= are written only when the position is not
 *   "" (an id "<channel>:" identifies nothing); event_type= and created=
 *   only when not NULL, for polls too.
 * - The event.replayId / event.type / event.createdDate skip applies to the
 *   members of the payload's top-level "event" object, and only to the ones
 *   the header really carries: replayId when the header has replay_id= (a
 *   stream with a position), type when event_type is set, createdDate when
 *   created is set. The value is then redundant; otherwise it is kept, so
 *   nothing is lost when a source could not fill the header.
 * - A payload whose top level is not an object (a generic-streaming string,
 *   an array, a number) is written under the key "data": data="hello",
 *   data.0=1, data=[]. A top-level {} adds no keys.
 * - Keys: the path segments joined with '.'. An empty segment becomes '_'
 *   in both formats. In logfmt every key byte outside printable ASCII, and
 *   space, '=' and '"', becomes '_' (byte by byte, so "é" gives "__"); in
 *   JSON keys keep their text, escaped like any JSON string.
 * - "Control byte" means C0 (0x00-0x1f), DEL and the C1 range
 *   U+0080-U+009F: all are written as \u00XX (except \n \r \t), in values
 *   and JSON strings alike, and force quotes in logfmt. U+0085 is a newline
 *   to some readers, and a line must stay one line.
 * - The scanner follows RFC 8259 except that raw control bytes inside
 *   strings are accepted (they are escaped on output anyway): an event is
 *   worth more than the strictness. A lone or unpaired surrogate escape
 *   decodes to U+FFFD; a raw byte that does not start a valid UTF-8
 *   sequence (overlong forms, surrogates and values above U+10FFFF
 *   included) becomes one U+FFFD per byte.
 * - The error line quotes raw= always (raw="{"), so the payload is visibly
 *   one value; payload_error= carries the reason and the byte offset.
 * - out is appended to once, at the end, so on failure (-1) it is left
 *   exactly as it was.
 */
#include "sfrelay/format.h"
#include "sfrelay/json_tape.h"
#include "sfrelay/text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#endif

/* The few helpers of the per-token path, where a call costs more than
 * the work. */
#if defined(__GNUC__)
#define HOT static inline __attribute__((always_inline))
#else
#define HOT static inline
#endif

/* Stack staging sizes: a typical event line fits in LINE_STACK and needs
 * no heap at all; longer ones spill (see struct sbuf). */
#define LINE_STACK 4096
#define VALUE_STACK 1024
#define KEY_STACK 256
#define TMP_STACK 512

static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */

/* ---- byte buffers ----------------------------------------------------- */

/*
 * A byte buffer that starts on the caller's stack. Without spilling it
 * grows on the heap (key path, decoded strings). A line spills instead:
 * when the stack part is full it moves into a private evbuffer, created on
 * first use, so a long line costs no large copy. The caller's evbuffer is
 * touched once, by sbuf_finish(), and so is never left with half a line.
 * After a failed allocation every write is dropped and failed stays set,
 * so callers check once at the end.
 */
struct sbuf {
	char *p;
	size_t len;
	size_t cap;
	char *heap;
	int spills; /* SB_GROW, SB_SPILL or SB_FIXED */
	struct evbuffer *spill;
	int failed;
	int overflow; /* SB_FIXED: the content did not fit */
};

enum {
	SB_GROW,  /* grows on the heap */
	SB_SPILL, /* moves into an evbuffer when full */
	SB_FIXED, /* the caller's memory only: overflow when full */
};

static void
sbuf_init(struct sbuf *sb, char *stack, size_t cap, int spills)
{
	sb->p = stack;
	sb->len = 0;
	sb->cap = cap;
	sb->heap = NULL;
	sb->spills = spills;
	sb->spill = NULL;
	sb->failed = 0;
	sb->overflow = 0;
}

static void
sbuf_release(struct sbuf *sb)
{
	free(sb->heap);
	sb->heap = NULL;
	if (sb->spill != NULL)
		evbuffer_free(sb->spill);
	sb->spill = NULL;
}

/* Appends s to the spill evbuffer, creating it on first use. */
static int
sbuf_spill(struct sbuf *sb, const void *s, size_t n)
{
	if (sb->spill == NULL && (sb->spill = evbuffer_new()) == NULL)
		goto fail;
	if (evbuffer_add(sb->spill, s, n) != 0)
		goto fail;
	return 0;
fail:
	sb->failed = 1;
	return -1;
}

static int
sbuf_grow(struct sbuf *sb, size_t need)
{
	size_t cap = sb->cap;
	char *p;

	while (cap - sb->len < need) {
		if (cap > SIZE_MAX / 2) {
			sb->failed = 1;
			return -1;
		}
		cap *= 2;
	}
	if (sb->heap != NULL) {
		p = realloc(sb->heap, cap);
	} else {
		p = malloc(cap);
		if (p != NULL)
			memcpy(p, sb->p, sb->len);
	}
	if (p == NULL) {
		sb->failed = 1;
		return -1;
	}
	sb->heap = p;
	sb->p = p;
	sb->cap = cap;
	return 0;
}

static void
sbuf_put_slow(struct sbuf *sb, const char *s, size_t n)
{
	if (sb->failed)
		return;
	if (sb->spills == SB_FIXED) {
		sb->overflow = 1;
		sb->failed =
		    1; /* drops every later write: checked at the end */
		return;
	}
	if (sb->spills == SB_GROW) {
		if (sbuf_grow(sb, n) != 0)
			return;
	} else {
		if (sbuf_spill(sb, sb->p, sb->len) != 0)
			return;
		sb->len = 0;
		if (n > sb->cap) {
			/* Too big to stage: no point copying it twice. */
			(void)sbuf_spill(sb, s, n);
			return;
		}
	}
	memcpy(sb->p + sb->len, s, n);
	sb->len += n;
}

/*
 * Most pieces of a line are a few bytes long (keys, numbers, short
 * values), and a call to memcpy() costs more than copying them: up to
 * 32 bytes are moved as two or four overlapping words, the sizes met most
 * often tested first.
 */
HOT void
copy_short(char *d, const char *s, size_t n)
{
	uint64_t a, b, c, e;
	uint32_t x, y;

	if (n >= 8 && n <= 16) {
		memcpy(&a, s, 8);
		memcpy(&b, s + n - 8, 8);
		memcpy(d, &a, 8);
		memcpy(d + n - 8, &b, 8);
	} else if (n >= 4 && n < 8) {
		memcpy(&x, s, 4);
		memcpy(&y, s + n - 4, 4);
		memcpy(d, &x, 4);
		memcpy(d + n - 4, &y, 4);
	} else if (n > 16 && n <= 32) {
		/* All four loads before any store: s and d never overlap
		 * here, but the compiler cannot know. */
		memcpy(&a, s, 8);
		memcpy(&b, s + 8, 8);
		memcpy(&c, s + n - 16, 8);
		memcpy(&e, s + n - 8, 8);
		memcpy(d, &a, 8);
		memcpy(d + 8, &b, 8);
		memcpy(d + n - 16, &c, 8);
		memcpy(d + n - 8, &e, 8);
	} else if (n < 4) {
		for (size_t i = 0; i < n; i++)
			d[i] = s[i];
	} else {
		memcpy(d, s, n);
	}
}

/* copy_short() for a writer that keeps its own cursor. */
HOT char *
put_bytes(char *d, const void *s, size_t n)
{
	copy_short(d, s, n);
	return d + n;
}

/*
 * Where a writer that knows its worst case (need bytes) may store
 * without a check per piece, or NULL when the room is not there (it then
 * takes the checked path, which overflows, spills or grows as the
 * buffer does). sbuf_commit() ends the run at d.
 */
HOT char *
sbuf_reserve(struct sbuf *sb, size_t need)
{
	return need <= sb->cap - sb->len ? sb->p + sb->len : NULL;
}

HOT void
sbuf_commit(struct sbuf *sb, const char *d)
{
	sb->len = (size_t)(d - sb->p);
}

HOT void
sbuf_put(struct sbuf *sb, const void *s, size_t n)
{
	if (n <= sb->cap - sb->len) {
		copy_short(sb->p + sb->len, s, n);
		sb->len += n;
		return;
	}
	sbuf_put_slow(sb, s, n);
}

HOT void
sbuf_putc(struct sbuf *sb, char c)
{
	if (sb->len < sb->cap)
		sb->p[sb->len++] = c;
	else
		sbuf_put_slow(sb, &c, 1);
}

/* Inlined so that the length of a literal is known at compile time. */
HOT void
sbuf_puts(struct sbuf *sb, const char *s)
{
	sbuf_put(sb, s, strlen(s));
}

/* Forgets everything written so far (the payload turned out invalid). */
static void
sbuf_rewind(struct sbuf *sb)
{
	sb->len = 0;
	/* In the caller's memory only an overflow fails a buffer, and what
	 * overflowed is gone now: the error line gets a fresh chance. */
	if (sb->spills == SB_FIXED)
		sb->overflow = sb->failed = 0;
	if (sb->spill != NULL &&
	    evbuffer_drain(sb->spill, evbuffer_get_length(sb->spill)) != 0)
		sb->failed = 1;
}

/* Appends the whole content to out in one step: all or nothing. */
static int
sbuf_finish(struct sbuf *sb, struct evbuffer *out)
{
	if (sb->failed)
		return -1;
	if (sb->spill == NULL)
		return evbuffer_add(out, sb->p, sb->len) == 0 ? 0 : -1;
	if (sb->len > 0 && sbuf_spill(sb, sb->p, sb->len) != 0)
		return -1;
	sb->len = 0;
	/* Relinks the spill's chains into out; nothing is copied. */
	return evbuffer_add_buffer(out, sb->spill) == 0 ? 0 : -1;
}

/* ---- escaping --------------------------------------------------------- */

/* Byte classes, as bits so a scan can OR together what a string holds. */
enum {
	B_PLAIN = 0, /* copied as is everywhere */
	B_QUOTE = 1, /* space, '=': copied, but a logfmt value needs quotes */
	B_ESC = 2,   /* '"', '\\', C0, DEL: escaped */
	B_HIGH = 4,  /* 0x80-0xff: checked as UTF-8 */
	B_STOP = 8,  /* '"', '\\': where a JSON string scan stops */
	S_ESCAPED = 16, /* not a byte class: the string has \ escapes */
};
#define B_SPECIAL (B_ESC | B_HIGH)

/* clang-format off */
#define ROW(c) c, c, c, c, c, c, c, c, c, c, c, c, c, c, c, c
static const unsigned char byte_class[256] = {
	ROW(B_ESC),
	ROW(B_ESC),
	/* 0x20: ' ' ! " # $ % & ' ( ) * + , - . / */
	B_QUOTE, B_PLAIN, B_ESC | B_STOP, B_PLAIN,
	B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN,
	B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN,
	/* 0x30: 0-9 : ; < = > ? */
	B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN,
	B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_QUOTE, B_PLAIN, B_PLAIN,
	ROW(B_PLAIN),
	/* 0x50: P-Z [ \ ] ^ _ */
	B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN,
	B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN,
	B_ESC | B_STOP, B_PLAIN, B_PLAIN, B_PLAIN,
	ROW(B_PLAIN),
	/* 0x70: p-z { | } ~ DEL */
	B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN,
	B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_PLAIN, B_ESC,
	ROW(B_HIGH), ROW(B_HIGH), ROW(B_HIGH), ROW(B_HIGH),
	ROW(B_HIGH), ROW(B_HIGH), ROW(B_HIGH), ROW(B_HIGH),
};
#undef ROW
/* clang-format on */

/*
 * Length (2-4) of the well-formed UTF-8 sequence at s, or 0 when s[0]
 * does not start one (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF). s[0] >= 0x80.
 */
static size_t
utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0;
	if (s[0] < 0xe0) {
		len = 2;
	} else if (s[0] < 0xf0) {
		len = 3;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f;
	} else {
		len = 4;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* U+0080-U+009F, the C1 controls, encoded as C2 80 - C2 9F. */
static int
is_c1(const unsigned char *s, size_t len)
{
	return len == 2 && s[0] == 0xc2 && s[1] <= 0x9f;
}

static void
put_u00xx(struct sbuf *sb, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};

	sbuf_put(sb, e, sizeof(e));
}

static void
put_escape_byte(struct sbuf *sb, unsigned char c)
{
	switch (c) {
	case '"':
		sbuf_put(sb, "\\\"", 2);
		break;
	case '\\':
		sbuf_put(sb, "\\\\", 2);
		break;
	case '\n':
		sbuf_put(sb, "\\n", 2);
		break;
	case '\r':
		sbuf_put(sb, "\\r", 2);
		break;
	case '\t':
		sbuf_put(sb, "\\t", 2);
		break;
	default:
		put_u00xx(sb, c);
		break;
	}
}

/*
 * Word-at-a-time classification, the inner loop of the payload scan and of
 * every header value. For a byte b, (w ^ b*ONES) has a zero byte where w
 * holds b; (v - ONES) & ~v & HIGHS is non-zero when v has a zero byte, and
 * (w - n*ONES) & ~w & HIGHS when w has a byte below n (n <= 0x80). Only
 * "is there one" is asked, which these answer exactly; where exactly is
 * left to the byte loop that follows.
 */
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

static inline uint64_t
has_byte(uint64_t w, unsigned char b)
{
	uint64_t v = w ^ (ONES * b);

	return (v - ONES) & ~v & HIGHS;
}

/*
 * From s[i], the index of the first '"' or '\\' (B_STOP) in s[0, n), or n;
 * the classes of the bytes passed over are ORed into *flags. Description
 * fields and the like are long runs of plain text: eight bytes a step.
 */
static inline size_t
scan_plain(const unsigned char *s, size_t i, size_t n, unsigned *flags)
{
	unsigned f = *flags, c;
	uint64_t w, stop, odd;

#if defined(__SSE2__) && defined(__GNUC__)
	/* Sixteen bytes a step where the machine has SSE2 (every x86-64):
	 * the byte masks are exact, so the bytes before the first stop are
	 * classified without a byte loop. */
	const __m128i q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
	const __m128i c1f = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f);
	const __m128i sp = _mm_set1_epi8(' '), eq = _mm_set1_epi8('=');
	while (n - i >= 16) {
		__m128i v =
		    _mm_loadu_si128((const __m128i *)(const void *)(s + i));
		unsigned m_stop = (unsigned)_mm_movemask_epi8(
		    _mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)));
		unsigned m_odd = (unsigned)_mm_movemask_epi8(
		    _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, c1f), v),
		                 _mm_cmpeq_epi8(v, del)));
		m_odd |= (unsigned)_mm_movemask_epi8(v); /* 0x80 and up */
		unsigned m_q = (unsigned)_mm_movemask_epi8(
		    _mm_or_si128(_mm_cmpeq_epi8(v, sp), _mm_cmpeq_epi8(v, eq)));
		unsigned below =
		    m_stop != 0 ? (m_stop & (~m_stop + 1)) - 1 : 0xffffu;
		if (m_odd & below) {
			for (c = 0; c < 16 && !(byte_class[s[i + c]] & B_STOP);
			     c++)
				f |= byte_class[s[i + c]];
		} else if (m_q & below) {
			f |= B_QUOTE;
		}
		if (m_stop != 0) {
			*flags = f;
			return i + (size_t)__builtin_ctz(m_stop);
		}
		i += 16;
	}
#endif
	while (n - i >= 8) {
		memcpy(&w, s + i, sizeof(w));
		stop = has_byte(w, '"') | has_byte(w, '\\');
		/* Below 0x20, or 0x7f and up (w + ONES carries 0x7f into the
		 * high bit; a carry out of a 0xff byte only adds a flag next
		 * to a true one): the byte table sorts these out. */
		odd = ((w - ONES * 0x20) & ~w & HIGHS) |
		      ((w | (w + ONES)) & HIGHS);
		if (stop != 0) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			/* The lowest flag is exact (a borrow only flags bytes
			 * above a true hit), and so is "any flag below it":
			 * most strings end here, without a byte loop. */
			uint64_t below = (stop & (~stop + 1)) - 1;

			if (!(odd & below)) {
				if (!(f & B_QUOTE) &&
				    ((has_byte(w, ' ') | has_byte(w, '=')) &
				     below))
					f |= B_QUOTE;
				i += (size_t)__builtin_ctzll(stop) >> 3;
				*flags = f;
				return i;
			}
#endif
			break;
		}
		if (odd) {
			for (c = 0; c < 8; c++)
				f |= byte_class[s[i + c]];
		} else if (!(f & B_QUOTE) &&
		           (has_byte(w, ' ') | has_byte(w, '='))) {
			f |= B_QUOTE;
		}
		i += 8;
	}
	while (i < n && !((c = byte_class[s[i]]) & B_STOP)) {
		f |= c;
		i++;
	}
	*flags = f;
	return i;
}

#if defined(__SSE2__) && defined(__GNUC__)
/* The bytes of v that are not B_PLAIN, as a movemask: up to ' ' (space,
 * C0), '"', '=', '\\', DEL and up. */
static inline unsigned
mask_not_plain(__m128i v)
{
	__m128i m = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(' ')), v);

	m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('"')));
	m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('=')));
	m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
	m = _mm_or_si128(
	    m, _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x7f)), v));
	return (unsigned)_mm_movemask_epi8(m);
}

/*
 * Whether all of s (n >= 4 bytes) is B_PLAIN: header values (channel,
 * position, timestamp) almost always are, and then the byte loop of
 * classify() is not needed. Short ones are gathered into one vector from
 * two overlapping loads, long ones end with an overlapping step, so no
 * byte outside s is read.
 */
static int
all_plain(const unsigned char *s, size_t n)
{
	uint32_t x, y;
	unsigned m = 0;
	size_t i;

	if (n < 8) {
		memcpy(&x, s, 4);
		memcpy(&y, s + n - 4, 4);
		/* Only the low 8 bytes are loaded; the zeros above are not
		 * part of s. */
		return (mask_not_plain(
		            _mm_unpacklo_epi32(_mm_cvtsi32_si128((int)x),
		                               _mm_cvtsi32_si128((int)y))) &
		        0xffu) == 0;
	}
	if (n < 16)
		return mask_not_plain(_mm_unpacklo_epi64(
		           _mm_loadl_epi64((const __m128i *)(const void *)s),
		           _mm_loadl_epi64(
		               (const __m128i *)(const void *)(s + n - 8)))) ==
		       0;
	for (i = 0; i + 16 <= n; i += 16)
		m |= mask_not_plain(
		    _mm_loadu_si128((const __m128i *)(const void *)(s + i)));
	return (m | mask_not_plain(_mm_loadu_si128(
	                (const __m128i *)(const void *)(s + n - 16)))) == 0;
}
#else
static int
all_plain(const unsigned char *s, size_t n)
{
	(void)s;
	(void)n;
	return 0; /* the byte loop decides */
}
#endif

/* The classes of all bytes of s (B_STOP bytes count as B_ESC). */
static unsigned
classify(const unsigned char *s, size_t n)
{
	unsigned flags = 0;
	size_t i;

	if (n >= 4 && all_plain(s, n))
		return 0;
	/* Header values (a channel, a position, a timestamp) are short:
	 * the table costs less than setting up the wide scan. */
	if (n < 32) {
		for (i = 0; i < n; i++)
			flags |= byte_class[s[i]];
		return flags & ~(unsigned)B_STOP;
	}
	if (scan_plain(s, 0, n, &flags) < n)
		flags |= B_ESC;
	return flags;
}

/*
 * Writes s as the inside of a quoted string (logfmt or JSON, same rules):
 * quote, backslash and control characters escaped, invalid UTF-8 bytes
 * replaced. Runs of bytes that need nothing go out in one put.
 */
static void
put_escaped(struct sbuf *sb, const unsigned char *s, size_t n)
{
	size_t i = 0, run = 0, len;
	unsigned char c;

	for (;;) {
		while (i < n && !(byte_class[s[i]] & B_SPECIAL))
			i++;
		if (i >= n)
			break;
		c = s[i];
		len = 0;
		if (byte_class[c] & B_HIGH) {
			len = utf8_seq_len(s + i, n - i);
			if (len > 0 && !is_c1(s + i, len)) {
				i += len;
				continue;
			}
		}
		sbuf_put(sb, s + run, i - run);
		if (byte_class[c] & B_ESC) {
			put_escape_byte(sb, c);
			i++;
		} else if (len == 0) {
			sbuf_put(sb, replacement, 3);
			i++;
		} else {
			put_u00xx(sb, s[i + 1]);
			i += 2;
		}
		run = i;
	}
	sbuf_put(sb, s + run, n - run);
}

static int
logfmt_needs_quotes(const unsigned char *s, size_t n)
{
	size_t i;

	if (n == 0)
		return 1;
	for (i = 0; i < n; i++) {
		if (byte_class[s[i]] & (B_QUOTE | B_ESC))
			return 1;
		if (s[i] == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 &&
		    s[i + 1] <= 0x9f)
			return 1;
	}
	return 0;
}

static void
put_quoted(struct sbuf *sb, const unsigned char *s, size_t n)
{
	sbuf_putc(sb, '"');
	put_escaped(sb, s, n);
	sbuf_putc(sb, '"');
}

static void
put_logfmt_value(struct sbuf *sb, const unsigned char *s, size_t n)
{
	if (logfmt_needs_quotes(s, n))
		put_quoted(sb, s, n);
	else
		put_escaped(sb, s, n); /* only repairs UTF-8 here */
}

/* Plain text (no escape, no UTF-8 to check) is copied as it is; the
 * rest takes the general path. */
static void
put_value_classified(struct sbuf *sb, enum format_kind kind, const char *s,
                     size_t n, unsigned flags)
{
	if (flags & B_SPECIAL) {
		if (kind == FORMAT_JSON)
			put_quoted(sb, (const unsigned char *)s, n);
		else
			put_logfmt_value(sb, (const unsigned char *)s, n);
	} else if (kind == FORMAT_LOGFMT && n > 0 && !(flags & B_QUOTE)) {
		sbuf_put(sb, s, n);
	} else {
		sbuf_putc(sb, '"');
		sbuf_put(sb, s, n);
		sbuf_putc(sb, '"');
	}
}

static void
put_value(struct sbuf *sb, enum format_kind kind, const char *s, size_t n)
{
	put_value_classified(sb, kind, s, n,
	                     classify((const unsigned char *)s, n));
}

/* One key segment: '_' when empty; in logfmt unsafe bytes become '_'. */
static void
put_key_segment(struct sbuf *sb, enum format_kind kind, const char *seg,
                size_t n)
{
	const unsigned char *s = (const unsigned char *)seg;
	size_t i, run = 0;

	if (n == 0) {
		sbuf_putc(sb, '_');
		return;
	}
	if (kind == FORMAT_JSON) {
		put_escaped(sb, s, n);
		return;
	}
	for (i = 0; i < n; i++) {
		if (s[i] > 0x20 && s[i] < 0x7f && s[i] != '=' && s[i] != '"')
			continue;
		sbuf_put(sb, s + run, i - run);
		sbuf_putc(sb, '_');
		run = i + 1;
	}
	sbuf_put(sb, s + run, n - run);
}

/* ---- the payload scanner ---------------------------------------------- */

/* A scanned JSON string: its raw body and what its bytes need. */
struct jstr {
	size_t start;
	size_t n;
	unsigned flags;
};

struct parser {
	const unsigned char *s;
	size_t pos;
	size_t len;
	int depth; /* open containers */
	int quiet; /* > 0 inside a skipped member: validate, write nothing */
	const char *err;
	size_t err_pos;
	enum format_kind kind;
	const struct event *ev;
	struct sbuf *line;
	struct sbuf *key; /* current key path, already escaped */
	struct sbuf *tmp; /* decoded string scratch */
};

/* parse_value flag: the value is the payload's top-level "event" member. */
#define IN_TOP_EVENT 1

static int parse_value(struct parser *ps, int flags);

static int
fail(struct parser *ps, const char *reason)
{
	if (ps->err == NULL) {
		ps->err = reason;
		ps->err_pos = ps->pos;
	}
	return -1;
}

static void
skip_ws(struct parser *ps)
{
	const unsigned char *s = ps->s;
	size_t i = ps->pos;

	while (i < ps->len &&
	       (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	ps->pos = i;
}

/* Skips whitespace; fails at the end of input. Returns the next byte. */
HOT int
peek(struct parser *ps)
{
	/* Salesforce sends compact JSON: usually no whitespace at all. */
	if (ps->pos < ps->len && ps->s[ps->pos] > ' ')
		return ps->s[ps->pos];
	skip_ws(ps);
	if (ps->pos >= ps->len)
		return fail(ps, "unexpected end of input");
	return ps->s[ps->pos];
}

/* Writes the separator and the current key, ready for a value. */
static void
emit_key(struct parser *ps)
{
	struct sbuf *l = ps->line;

	if (ps->kind == FORMAT_JSON) {
		sbuf_put(l, ",\"", 2);
		sbuf_put(l, ps->key->p, ps->key->len);
		sbuf_put(l, "\":", 2);
	} else {
		sbuf_putc(l, ' ');
		sbuf_put(l, ps->key->p, ps->key->len);
		sbuf_putc(l, '=');
	}
}

/* A leaf written as its JSON text: numbers, booleans, {} and []. */
static void
emit_text(struct parser *ps, const void *text, size_t n)
{
	if (ps->quiet)
		return;
	emit_key(ps);
	sbuf_put(ps->line, text, n);
}

static const char *string_text(struct parser *ps, const struct jstr *js,
                               size_t *n);

/* A string value, after its key. */
static void
emit_string_value(struct parser *ps, const struct jstr *js)
{
	const char *text;
	size_t n;

	if (js->flags & (B_SPECIAL | S_ESCAPED)) {
		text = string_text(ps, js, &n);
		put_value(ps->line, ps->kind, text, n);
	} else if (ps->kind == FORMAT_LOGFMT && js->n > 0 &&
	           !(js->flags & B_QUOTE)) {
		/* The common case: nothing to escape, nothing to quote. */
		sbuf_put(ps->line, ps->s + js->start, js->n);
	} else {
		sbuf_putc(ps->line, '"');
		sbuf_put(ps->line, ps->s + js->start, js->n);
		sbuf_putc(ps->line, '"');
	}
}

static void
emit_string(struct parser *ps, const struct jstr *js)
{
	if (ps->quiet)
		return;
	emit_key(ps);
	emit_string_value(ps, js);
}

/* flags: the byte classes the scan saw in seg; B_PLAIN for safe text. */
static void
key_push(struct parser *ps, const char *seg, size_t n, unsigned flags)
{
	if (ps->key->len > 0)
		sbuf_putc(ps->key, '.');
	if (n > 0 && !(flags & (B_QUOTE | B_SPECIAL | S_ESCAPED)))
		sbuf_put(ps->key, seg, n);
	else
		put_key_segment(ps->key, ps->kind, seg, n);
}

static void
key_push_index(struct parser *ps, size_t idx)
{
	char digits[24];
	size_t i = sizeof(digits);

	do {
		digits[--i] = (char)('0' + idx % 10);
		idx /= 10;
	} while (idx > 0);
	key_push(ps, digits + i, sizeof(digits) - i, B_PLAIN);
}

/* Value of 4 hex digits at s, or -1. */
static long
hex4(const unsigned char *s)
{
	return text_hex4((const char *)s);
}

static void
put_utf8(struct sbuf *sb, unsigned long cp)
{
	unsigned char u[4];
	size_t n = text_utf8_encode(cp, u);

	sbuf_put(sb, u, n < sizeof(u) ? n : sizeof(u));
}

/*
 * Decodes the \uXXXX escape whose hex digits start at s[*i] (already
 * validated). A high surrogate takes the low one that follows; anything
 * unpaired becomes U+FFFD.
 */
static unsigned long
decode_u_escape(const unsigned char *s, size_t n, size_t *i)
{
	unsigned long cp = (unsigned long)hex4(s + *i);
	long lo;

	*i += 4;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return 0xfffd;
	if (cp < 0xd800 || cp > 0xdbff)
		return cp;
	if (n - *i < 6 || s[*i] != '\\' || s[*i + 1] != 'u')
		return 0xfffd;
	lo = hex4(s + *i + 2);
	if (lo < 0xdc00 || lo > 0xdfff)
		return 0xfffd; /* the next escape is decoded on its own */
	*i += 6;
	return 0x10000 + ((cp - 0xd800) << 10) + ((unsigned long)lo - 0xdc00);
}

static unsigned char
simple_escape(unsigned char c)
{
	switch (c) {
	case 'b':
		return '\b';
	case 'f':
		return '\f';
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 't':
		return '\t';
	default:
		return c; /* '"', '\\', '/' */
	}
}

/* Decodes the body of a string that scan_string() validated. */
static void
decode_string(struct sbuf *sb, const unsigned char *s, size_t n)
{
	size_t i = 0, run = 0;
	unsigned char c;

	while (i < n) {
		if (s[i] != '\\') {
			i++;
			continue;
		}
		sbuf_put(sb, s + run, i - run);
		c = s[i + 1];
		i += 2;
		if (c == 'u') {
			put_utf8(sb, decode_u_escape(s, n, &i));
		} else {
			c = simple_escape(c);
			sbuf_put(sb, &c, 1);
		}
		run = i;
	}
	sbuf_put(sb, s + run, n - run);
}

static int
scan_escape(struct parser *ps)
{
	const unsigned char *s = ps->s;

	ps->pos++; /* the backslash */
	if (ps->pos >= ps->len)
		return fail(ps, "unexpected end of input");
	switch (s[ps->pos]) {
	case '"':
	case '\\':
	case '/':
	case 'b':
	case 'f':
	case 'n':
	case 'r':
	case 't':
		ps->pos++;
		return 0;
	case 'u':
		if (ps->len - ps->pos < 5 || hex4(s + ps->pos + 1) < 0)
			return fail(ps, "invalid unicode escape");
		ps->pos += 5;
		return 0;
	default:
		return fail(ps, "invalid escape");
	}
}

/*
 * Scans the string whose opening quote is at ps->pos. On success the raw
 * body is s[js->start, js->start + js->n) and js->flags holds the classes
 * of its bytes (plus S_ESCAPED), so plain strings skip all further work.
 */
static int
scan_string(struct parser *ps, struct jstr *js)
{
	const unsigned char *s = ps->s;
	size_t i = ps->pos + 1, len = ps->len;
	unsigned flags = 0;

	js->start = i;
	for (;;) {
		i = scan_plain(s, i, len, &flags);
		ps->pos = i;
		if (i >= len)
			return fail(ps, "unterminated string");
		if (s[i] == '"')
			break;
		flags |= S_ESCAPED;
		if (scan_escape(ps) != 0)
			return -1;
		i = ps->pos;
	}
	js->n = i - js->start;
	js->flags = flags;
	ps->pos = i + 1;
	return 0;
}

/* The decoded text of a scanned string: the raw slice when it has no
 * escapes, else the decoding in ps->tmp (valid until the next string). */
static const char *
string_text(struct parser *ps, const struct jstr *js, size_t *n)
{
	if (!(js->flags & S_ESCAPED)) {
		*n = js->n;
		return (const char *)ps->s + js->start;
	}
	ps->tmp->len = 0;
	decode_string(ps->tmp, ps->s + js->start, js->n);
	*n = ps->tmp->len;
	return ps->tmp->p;
}

static int
parse_string(struct parser *ps)
{
	struct jstr js;

	if (scan_string(ps, &js) != 0)
		return -1;
	emit_string(ps, &js);
	return 0;
}

static void
skip_digits(struct parser *ps)
{
	const unsigned char *s = ps->s;
	size_t i = ps->pos;

	while (i < ps->len && s[i] >= '0' && s[i] <= '9')
		i++;
	ps->pos = i;
}

/* Consumes at least one digit. */
static int
need_digits(struct parser *ps)
{
	size_t at = ps->pos;

	skip_digits(ps);
	return ps->pos > at ? 0 : fail(ps, "invalid number");
}

static int
parse_number(struct parser *ps)
{
	const unsigned char *s = ps->s;
	size_t start = ps->pos;

	if (s[ps->pos] == '-')
		ps->pos++;
	if (ps->pos < ps->len && s[ps->pos] == '0')
		ps->pos++;
	else if (need_digits(ps) != 0)
		return -1;
	if (ps->pos < ps->len && s[ps->pos] == '.') {
		ps->pos++;
		if (need_digits(ps) != 0)
			return -1;
	}
	if (ps->pos < ps->len && (s[ps->pos] == 'e' || s[ps->pos] == 'E')) {
		ps->pos++;
		if (ps->pos < ps->len &&
		    (s[ps->pos] == '+' || s[ps->pos] == '-'))
			ps->pos++;
		if (need_digits(ps) != 0)
			return -1;
	}
	emit_text(ps, s + start, ps->pos - start);
	return 0;
}

static int
parse_literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);

	if (ps->len - ps->pos < n || memcmp(ps->s + ps->pos, word, n) != 0)
		return fail(ps, "invalid literal");
	ps->pos += n;
	if (ps->quiet)
		return 0;
	if (ps->kind == FORMAT_LOGFMT && word[0] == 'n')
		emit_text(ps, "", 0); /* null: key= */
	else
		emit_text(ps, word, n);
	return 0;
}

/* Opens a container; the error points at the bracket one level too deep. */
static int
enter(struct parser *ps)
{
	if (ps->depth >= FORMAT_MAX_DEPTH)
		return fail(ps, "nesting too deep");
	ps->depth++;
	ps->pos++;
	return 0;
}

/* After a member or element: 1 at the closing byte, 0 after a comma. */
static int
next_item(struct parser *ps, char close, const char *reason)
{
	int c = peek(ps);

	if (c < 0)
		return -1;
	ps->pos++;
	if (c == ',')
		return 0;
	if (c == close)
		return 1;
	ps->pos--;
	return fail(ps, reason);
}

/*
 * Whether a member of the top-level "event" object repeats a header field
 * (see the comment at the top of the file).
 */
static int
header_carries(const struct parser *ps, const char *k, size_t n)
{
	const struct event *ev = ps->ev;

	if (n == 8 && memcmp(k, "replayId", 8) == 0)
		return ev->src == EVENT_SRC_STREAM && ev->position[0] != '\0';
	if (n == 4 && memcmp(k, "type", 4) == 0)
		return ev->event_type != NULL;
	if (n == 11 && memcmp(k, "createdDate", 11) == 0)
		return ev->created != NULL;
	return 0;
}

/* One "key": value member; flags are the enclosing object's. */
static int
parse_member(struct parser *ps, int flags)
{
	size_t n, saved = ps->key->len;
	struct jstr js;
	int rc, skip = 0, child = 0;
	const char *k;

	if (peek(ps) != '"')
		return fail(ps, "expected a string key");
	if (scan_string(ps, &js) != 0)
		return -1;
	if (peek(ps) != ':')
		return fail(ps, "expected ':'");
	ps->pos++;
	if (!ps->quiet) {
		k = string_text(ps, &js, &n);
		if (flags & IN_TOP_EVENT)
			skip = header_carries(ps, k, n);
		else if (ps->depth == 1 && n == 5 && memcmp(k, "event", 5) == 0)
			child = IN_TOP_EVENT;
		key_push(ps, k, n, js.flags);
	}
	ps->quiet += skip;
	rc = parse_value(ps, child);
	ps->quiet -= skip;
	ps->key->len = saved;
	return rc;
}

static int
parse_object(struct parser *ps, int flags)
{
	int rc;

	if (enter(ps) != 0)
		return -1;
	if (peek(ps) == '}') {
		ps->pos++;
		/* The top-level object has no key of its own. */
		if (ps->key->len > 0)
			emit_text(ps, "{}", 2);
	} else {
		do {
			if (parse_member(ps, flags) != 0)
				return -1;
			rc = next_item(ps, '}', "expected ',' or '}'");
		} while (rc == 0);
		if (rc < 0)
			return -1;
	}
	ps->depth--;
	return 0;
}

static int
parse_array(struct parser *ps)
{
	size_t idx = 0, saved = ps->key->len;
	int rc;

	if (enter(ps) != 0)
		return -1;
	if (peek(ps) == ']') {
		ps->pos++;
		emit_text(ps, "[]", 2);
		ps->depth--;
		return 0;
	}
	do {
		if (!ps->quiet)
			key_push_index(ps, idx++);
		rc = parse_value(ps, 0);
		ps->key->len = saved;
		if (rc != 0)
			return -1;
		rc = next_item(ps, ']', "expected ',' or ']'");
	} while (rc == 0);
	if (rc < 0)
		return -1;
	ps->depth--;
	return 0;
}

static int
parse_value(struct parser *ps, int flags)
{
	int c = peek(ps);

	switch (c) {
	case -1:
		return -1;
	case '{':
		return parse_object(ps, flags);
	case '[':
		return parse_array(ps);
	case '"':
		return parse_string(ps);
	case 't':
		return parse_literal(ps, "true");
	case 'f':
		return parse_literal(ps, "false");
	case 'n':
		return parse_literal(ps, "null");
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return parse_number(ps);
		return fail(ps, "unexpected character");
	}
}

static int
parse_payload(struct parser *ps)
{
	skip_ws(ps);
	if (ps->pos >= ps->len)
		return fail(ps, "empty payload");
	if (ps->s[ps->pos] != '{')
		key_push(ps, "data", 4, B_PLAIN);
	if (parse_value(ps, 0) != 0)
		return -1;
	skip_ws(ps);
	if (ps->pos < ps->len)
		return fail(ps, "trailing data after the payload");
	return 0;
}

/* ---- the payload from its tape ----------------------------------------- */

/*
 * When the source hands over the payload's tokens (json_tape.h) the
 * payload was scanned and validated already: the walk below writes the
 * same keys and values as parse_value() without looking at the text
 * again, except to copy it. It trusts the tape only as far as it checks
 * it: a token out of place or out of bounds makes it return -1, and the
 * caller then formats from the text, so a faulty tape costs time, never
 * a wrong or lost line.
 */
struct walk {
	const struct json_tok *t;   /* the next token */
	const struct json_tok *end; /* past the last */
};

static int walk_value(struct parser *ps, struct walk *w, int flags);

/* A string token as the scanner's struct jstr, flags in format's terms. */
HOT void
tok_jstr(const struct json_tok *k, struct jstr *js)
{
	unsigned f = 0;

	if (k->flags & JSON_STR_SPACE)
		f |= B_QUOTE;
	if (k->flags & JSON_STR_ODD)
		f |= B_HIGH;
	if (k->flags & JSON_STR_ESCAPED)
		f |= S_ESCAPED;
	js->start = k->off;
	js->n = k->len;
	js->flags = f;
}

/* The next token, bounds checked; NULL when there is none or it lies
 * outside the payload. */
HOT const struct json_tok *
walk_next(struct parser *ps, struct walk *w)
{
	const struct json_tok *k;

	if (w->t == w->end)
		return NULL;
	k = w->t++;
	if ((uint64_t)k->off + k->len > ps->len)
		return NULL;
	return k;
}

/*
 * The separator and key of a leaf whose last segment seg (n > 0 bytes)
 * needs no escaping, written straight into the line: the key path is
 * not extended and cut back for every leaf, the commonest case.
 */
static void
emit_leaf_key(struct parser *ps, const char *seg, size_t n)
{
	struct sbuf *l = ps->line;
	size_t kl = ps->key->len;
	char *d;

	if (kl + n + 5 > l->cap - l->len) { /* the general path */
		key_push(ps, seg, n, B_PLAIN);
		emit_key(ps);
		ps->key->len = kl;
		return;
	}
	d = l->p + l->len;
	if (ps->kind == FORMAT_JSON) {
		*d++ = ',';
		*d++ = '"';
	} else {
		*d++ = ' ';
	}
	if (kl > 0) {
		copy_short(d, ps->key->p, kl);
		d += kl;
		*d++ = '.';
	}
	copy_short(d, seg, n);
	d += n;
	if (ps->kind == FORMAT_JSON) {
		*d++ = '"';
		*d++ = ':';
	} else {
		*d++ = '=';
	}
	l->len = (size_t)(d - l->p);
}

/* The value of a scalar token (its key already written); -1 for a
 * token that is not a scalar. */
static int
put_scalar(struct parser *ps, const struct json_tok *k)
{
	struct jstr js;

	switch (k->type) {
	case JSON_TOK_STR:
		tok_jstr(k, &js);
		emit_string_value(ps, &js);
		return 0;
	case JSON_TOK_NUM:
		sbuf_put(ps->line, ps->s + k->off, k->len);
		return 0;
	case JSON_TOK_TRUE:
		sbuf_put(ps->line, "true", 4);
		return 0;
	case JSON_TOK_FALSE:
		sbuf_put(ps->line, "false", 5);
		return 0;
	case JSON_TOK_NULL:
		if (ps->kind == FORMAT_JSON) /* logfmt: key= */
			sbuf_put(ps->line, "null", 4);
		return 0;
	default:
		return -1;
	}
}

/*
 * What every leaf of an object starts with: the separator and the
 * object's key path with its '.', " sobject." or ",\"sobject.". Built
 * once per object, so a leaf copies one piece instead of three. A path
 * longer than this takes the general path.
 */
#define LEAD_MAX 64

struct lead {
	size_t n; /* 0: none (the leaves take the general path) */
	char p[LEAD_MAX];
};

static void
lead_build(const struct parser *ps, struct lead *ld)
{
	size_t kl = ps->key->len;
	char *d = ld->p;

	ld->n = 0;
	if (kl + 3 > LEAD_MAX)
		return;
	/* A short lead is copied as 16 bytes (put_leaves_fast): no
	 * undefined bytes in the line, even past its end. */
	memset(ld->p, 0, 16);
	if (ps->kind == FORMAT_JSON) {
		*d++ = ',';
		*d++ = '"';
	} else {
		*d++ = ' ';
	}
	if (kl > 0) {
		memcpy(d, ps->key->p, kl);
		d += kl;
		*d++ = '.';
	}
	ld->n = (size_t)(d - ld->p);
}

/*
 * Copies n bytes (at most 16) as one 16-byte move, which costs less than
 * choosing among sizes: the caller guarantees that 16 bytes may be read
 * at s and written at d. The bytes past n are overwritten by whatever
 * follows, or lie past the end of the line.
 */
HOT char *
put_16(char *d, const void *s, size_t n)
{
	memcpy(d, s, 16);
	return d + n;
}

/* A piece of the payload (off, n) at d: one 16-byte move when it is
 * short and the payload has 16 bytes from off, copy_short() otherwise. */
HOT char *
put_piece(char *d, const struct parser *ps, size_t off, size_t n)
{
	if (n <= 16 && off + 16 <= ps->len)
		return put_16(d, ps->s + off, n);
	return put_bytes(d, (const char *)ps->s + off, n);
}

/* Room a leaf of the fast path needs beyond its bytes: a 16-byte move
 * may store that far past its piece. */
#define LEAF_SLACK 16

/*
 * A run of members each of whose key (a KEY with a plain non-empty
 * name) is followed by a scalar with nothing to escape: every
 * "key=value" written straight into the line, the cursor kept in a
 * register and the length stored once for the run. Stops at the first
 * member that is not one of those, or that the line lacks the room for
 * (the general path then deals with it), having taken it not. Returns 0,
 * or -1 for a token out of bounds. json is a constant at each call, so
 * each format gets a loop of its own.
 */
HOT int
put_leaves_fast(struct parser *ps, struct walk *w, const struct lead *ld,
                int json)
{
	/* Padded so that a 16-byte move from any literal stays inside. */
	static const char lit[32] = "truefalsenull";
	struct sbuf *l = ps->line;
	const struct json_tok *k = w->t, *end = w->end;
	char *d = l->p + l->len, *lim = l->p + l->cap;
	uint64_t plen = ps->len;
	size_t ln = ld->n, fixed = ln + 4 + LEAF_SLACK, vn;
	int rc = 0;
	unsigned q;

	for (; end - k >= 2; k += 2) {
		const struct json_tok *v = k + 1;
		const char *val;
		size_t kn = k->len;

		/* A KEY token with no flags: type and flags as one test. */
		if ((k->type | (unsigned)k->flags << 8) != JSON_TOK_KEY ||
		    kn == 0)
			break;
		vn = v->len;
		if (v->type == JSON_TOK_STR) {
			if (v->flags & (JSON_STR_ODD | JSON_STR_ESCAPED))
				break;
			q = (unsigned)json | (vn == 0) |
			    (v->flags & JSON_STR_SPACE);
			val = NULL;
		} else if (v->type == JSON_TOK_NUM) {
			q = 0;
			val = NULL;
		} else if (v->type == JSON_TOK_TRUE) {
			q = 0;
			val = lit;
			vn = 4;
		} else if (v->type == JSON_TOK_FALSE) {
			q = 0;
			val = lit + 4;
			vn = 5;
		} else if (v->type == JSON_TOK_NULL) {
			q = 0;
			val = lit + 9;
			vn = json ? 4 : 0; /* logfmt: key= */
		} else {
			break;
		}
		if ((uint64_t)k->off + kn > plen ||
		    (uint64_t)v->off + v->len > plen) {
			rc = -1;
			break;
		}
		/* lead, key, "\":" or "=", value, two quotes. */
		if ((size_t)(lim - d) < fixed + kn + vn)
			break;
		d = ln <= 16 ? put_16(d, ld->p, ln) : put_bytes(d, ld->p, ln);
		d = put_piece(d, ps, k->off, kn);
		if (json)
			*d++ = '"';
		*d++ = json ? ':' : '=';
		/* The quotes stored always, kept only when wanted. */
		*d = '"';
		d += q;
		if (val != NULL)
			d = put_16(d, val, vn);
		else
			d = put_piece(d, ps, v->off, vn);
		*d = '"';
		d += q;
	}
	l->len = (size_t)(d - l->p);
	w->t = k;
	return rc;
}

/* The members of an object whose OBJ token was just taken. */
static int
walk_object(struct parser *ps, struct walk *w, int flags)
{
	const struct json_tok *k;
	struct jstr js;
	struct lead ld;
	size_t n, saved;
	int skip, child, rc;
	const char *key;

	ps->depth++;
	ld.n = 0;
	if (!ps->quiet && !(flags & IN_TOP_EVENT))
		lead_build(ps, &ld);
	for (;;) {
		/* Entered only where a leaf may start: the next member's
		 * value is a scalar (not an object, array or the END). */
		if (ld.n > 0 && w->end - w->t >= 2 &&
		    w->t[1].type >= JSON_TOK_STR) {
			rc = ps->kind == FORMAT_JSON
			         ? put_leaves_fast(ps, w, &ld, 1)
			         : put_leaves_fast(ps, w, &ld, 0);
			if (rc < 0)
				return -1;
		}
		k = walk_next(ps, w);
		if (k == NULL)
			return -1;
		if (k->type == JSON_TOK_END)
			break;
		if (k->type != JSON_TOK_KEY)
			return -1;
		tok_jstr(k, &js);
		if ((flags & IN_TOP_EVENT) && !ps->quiet && js.flags == 0 &&
		    w->t < w->end && w->t->type >= JSON_TOK_STR &&
		    w->t->type <= JSON_TOK_NULL &&
		    header_carries(ps, (const char *)ps->s + js.start, js.n)) {
			/* A scalar the header already carries: passed over
			 * without the key path or a quiet walk. */
			if (walk_next(ps, w) == NULL)
				return -1;
			continue;
		}
		if (!ps->quiet && !(flags & IN_TOP_EVENT) && js.flags == 0 &&
		    js.n > 0 && w->t < w->end && w->t->type >= JSON_TOK_STR) {
			/* A plain key with a scalar value. */
			emit_leaf_key(ps, (const char *)ps->s + js.start, js.n);
			k = walk_next(ps, w);
			if (k == NULL || put_scalar(ps, k) != 0)
				return -1;
			continue;
		}
		saved = ps->key->len;
		skip = child = 0;
		if (!ps->quiet) {
			key = string_text(ps, &js, &n);
			if (flags & IN_TOP_EVENT)
				skip = header_carries(ps, key, n);
			else if (ps->depth == 1 && n == 5 &&
			         memcmp(key, "event", 5) == 0)
				child = IN_TOP_EVENT;
			if (!skip) /* a quiet value writes no key */
				key_push(ps, key, n, js.flags);
		}
		ps->quiet += skip;
		if (walk_value(ps, w, child) != 0)
			return -1;
		ps->quiet -= skip;
		ps->key->len = saved;
	}
	ps->depth--;
	return 0;
}

static int
walk_array(struct parser *ps, struct walk *w)
{
	size_t idx = 0, saved = ps->key->len;

	ps->depth++;
	while (w->t < w->end && w->t->type != JSON_TOK_END) {
		if (!ps->quiet)
			key_push_index(ps, idx++);
		if (walk_value(ps, w, 0) != 0)
			return -1;
		ps->key->len = saved;
	}
	if (walk_next(ps, w) == NULL) /* the END */
		return -1;
	ps->depth--;
	return 0;
}

static int
walk_value(struct parser *ps, struct walk *w, int flags)
{
	const struct json_tok *k = walk_next(ps, w);

	if (k == NULL)
		return -1;
	switch (k->type) {
	case JSON_TOK_STR:
	case JSON_TOK_NUM:
	case JSON_TOK_TRUE:
	case JSON_TOK_FALSE:
	case JSON_TOK_NULL:
		if (ps->quiet)
			return 0;
		emit_key(ps);
		return put_scalar(ps, k);
	case JSON_TOK_OBJ:
		if (w->t < w->end && w->t->type == JSON_TOK_END) {
			w->t++;
			/* The top-level object has no key of its own. */
			if (ps->key->len > 0)
				emit_text(ps, "{}", 2);
			return 0;
		}
		return walk_object(ps, w, flags);
	case JSON_TOK_ARR:
		if (w->t < w->end && w->t->type == JSON_TOK_END) {
			w->t++;
			emit_text(ps, "[]", 2);
			return 0;
		}
		return walk_array(ps, w);
	default:
		return -1;
	}
}

/* The payload from its tape: 0, or -1 when the tape does not describe
 * an object payload in full (the caller then scans the text). */
static int
walk_payload(struct parser *ps, const struct json_tape *tape)
{
	struct walk w;

	if (tape->tok == NULL || tape->n == 0)
		return -1;
	w.t = tape->tok;
	w.end = tape->tok + tape->n;
	if (w.t->type != JSON_TOK_OBJ || w.t->off != 0)
		return -1;
	if (walk_value(ps, &w, 0) != 0 || w.t != w.end)
		return -1;
	return 0;
}

/* ---- the line --------------------------------------------------------- */

/* Writes " name=" (logfmt) or ",\"name\":" (JSON); name needs no escaping. */
HOT void
put_field_name(struct sbuf *l, enum format_kind kind, const char *name)
{
	if (kind == FORMAT_JSON) {
		sbuf_put(l, ",\"", 2);
		sbuf_puts(l, name);
		sbuf_put(l, "\":", 2);
	} else {
		sbuf_putc(l, ' ');
		sbuf_puts(l, name);
		sbuf_putc(l, '=');
	}
}

/* A header value: its text, length and byte classes, found once. */
struct hval {
	const char *s; /* NULL: the field is absent */
	size_t n;
	unsigned f;
};

static void
hval_set(struct hval *h, const char *s)
{
	h->s = s;
	h->n = s != NULL ? strlen(s) : 0;
	h->f = h->n > 0 ? classify((const unsigned char *)s, h->n) : 0;
}

/* " name=" or ",\"name\":" at d, unchecked; name needs no escaping. */
HOT char *
put_name_at(char *d, enum format_kind kind, const char *name, size_t n)
{
	if (kind == FORMAT_JSON) {
		*d++ = ',';
		*d++ = '"';
		d = put_bytes(d, name, n);
		*d++ = '"';
		*d++ = ':';
	} else {
		*d++ = ' ';
		d = put_bytes(d, name, n);
		*d++ = '=';
	}
	return d;
}

/* A value with nothing to escape (no B_SPECIAL) at d, unchecked, quoted
 * exactly when put_value_classified() would quote it. */
HOT char *
put_plain_at(char *d, enum format_kind kind, const char *s, size_t n,
             unsigned f)
{
	int q = kind == FORMAT_JSON || n == 0 || (f & B_QUOTE);

	if (q)
		*d++ = '"';
	d = put_bytes(d, s, n);
	if (q)
		*d++ = '"';
	return d;
}

/* What put_header_fast() writes besides the four values (twice for the
 * channel and the position): the longest set of names, quotes and
 * separators, rounded up. */
#define HEADER_FIXED 128

/*
 * The header in one run of unchecked stores, for the usual event whose
 * header values need no escaping and whose line has room for the worst
 * case. Returns -1, having written nothing, when that is not so.
 */
static int
put_header_fast(struct sbuf *l, enum format_kind kind, int src,
                const struct hval *ch, const struct hval *pos,
                const struct hval *type, const struct hval *created)
{
	/* By format, then by src (stream, poll, backfill). */
	/* clang-format off */
#define LIT(s) {s, sizeof(s) - 1}
	static const struct {
		const char *s;
		size_t n;
	} lead[2][3] = {
	    {LIT("at=event src=stream channel="),
	     LIT("at=event src=poll object="),
	     LIT("at=event src=backfill object=")},
	    {LIT("{\"at\":\"event\",\"src\":\"stream\",\"channel\":"),
	     LIT("{\"at\":\"event\",\"src\":\"poll\",\"object\":"),
	     LIT("{\"at\":\"event\",\"src\":\"backfill\",\"object\":")},
	};
#undef LIT
	/* clang-format on */
	int k = kind == FORMAT_JSON;
	char *d;

	if ((ch->f | pos->f | type->f | created->f) & B_SPECIAL)
		return -1;
	d = sbuf_reserve(l, HEADER_FIXED + 2 * (ch->n + pos->n) + type->n +
	                        created->n);
	if (d == NULL)
		return -1;
	d = put_bytes(d, lead[k][src].s, lead[k][src].n);
	d = put_plain_at(d, kind, ch->s, ch->n, ch->f);
	if (pos->n > 0) {
		/* "<channel>:<position>": ':' is plain, never empty. */
		int q = k || ((ch->f | pos->f) & B_QUOTE);

		d = put_name_at(d, kind, "id", 2);
		if (q)
			*d++ = '"';
		d = put_bytes(d, ch->s, ch->n);
		*d++ = ':';
		d = put_bytes(d, pos->s, pos->n);
		if (q)
			*d++ = '"';
		if (src == 0) {
			d = put_name_at(d, kind, "replay_id", 9);
			d = put_plain_at(d, kind, pos->s, pos->n, pos->f);
		}
	}
	if (type->s != NULL) {
		d = put_name_at(d, kind, "event_type", 10);
		d = put_plain_at(d, kind, type->s, type->n, type->f);
	}
	if (created->s != NULL) {
		d = put_name_at(d, kind, "created", 7);
		d = put_plain_at(d, kind, created->s, created->n, created->f);
	}
	sbuf_commit(l, d);
	return 0;
}

/*
 * The header. Every event of a stream has the same channel and a
 * position of digits, so each string is classified once and id= (the
 * two joined by ':', which is plain) reuses both classes instead of
 * being assembled and classified again.
 */
static void
put_header(struct sbuf *l, struct sbuf *tmp, enum format_kind kind,
           const struct event *ev)
{
	static const char *const src_name[3] = {"stream", "poll", "backfill"};
	int stream = ev->src == EVENT_SRC_STREAM;
	int src = stream ? 0 : ev->src == EVENT_SRC_BACKFILL ? 2 : 1;
	struct hval ch, pos, type, created;

	hval_set(&ch, ev->channel);
	hval_set(&pos, ev->position);
	hval_set(&type, ev->event_type);
	hval_set(&created, ev->created);
	if (put_header_fast(l, kind, src, &ch, &pos, &type, &created) == 0)
		return;
	if (kind == FORMAT_JSON) {
		sbuf_puts(l, "{\"at\":\"event\",\"src\":\"");
		sbuf_puts(l, src_name[src]);
		sbuf_putc(l, '"');
	} else {
		sbuf_puts(l, "at=event src=");
		sbuf_puts(l, src_name[src]);
	}
	put_field_name(l, kind, stream ? "channel" : "object");
	put_value_classified(l, kind, ch.s, ch.n, ch.f);
	if (pos.n > 0) {
		put_field_name(l, kind, "id");
		if (!((ch.f | pos.f) & (B_SPECIAL | B_QUOTE))) {
			/* Both plain (never empty together: pos.n > 0). */
			if (kind == FORMAT_JSON)
				sbuf_putc(l, '"');
			sbuf_put(l, ch.s, ch.n);
			sbuf_putc(l, ':');
			sbuf_put(l, pos.s, pos.n);
			if (kind == FORMAT_JSON)
				sbuf_putc(l, '"');
		} else {
			tmp->len = 0;
			sbuf_put(tmp, ch.s, ch.n);
			sbuf_putc(tmp, ':');
			sbuf_put(tmp, pos.s, pos.n);
			put_value(l, kind, tmp->p, tmp->len);
		}
		if (stream) {
			put_field_name(l, kind, "replay_id");
			put_value_classified(l, kind, pos.s, pos.n, pos.f);
		}
	}
	if (type.s != NULL) {
		put_field_name(l, kind, "event_type");
		put_value_classified(l, kind, type.s, type.n, type.f);
	}
	if (created.s != NULL) {
		put_field_name(l, kind, "created");
		put_value_classified(l, kind, created.s, created.n, created.f);
	}
}

static void
put_error_fields(struct sbuf *l, enum format_kind kind, const struct parser *ps)
{
	char reason[96];
	int n;

	n = snprintf(reason, sizeof(reason), "%s at byte %zu", ps->err,
	             ps->err_pos);
	if (n < 0 || (size_t)n >= sizeof(reason))
		n = n < 0 ? 0 : (int)sizeof(reason) - 1;
	put_field_name(l, kind, "payload_error");
	put_value(l, kind, reason, (size_t)n);
	put_field_name(l, kind, "raw");
	put_quoted(l, ps->s, ps->len);
}

/* The event with a NULL-free view of its strings (defensive: the contract
 * says channel and position are never NULL). */
static void
event_sanitize(const struct event *in, struct event *ev)
{
	*ev = *in;
	if (ev->channel == NULL)
		ev->channel = "";
	if (ev->position == NULL)
		ev->position = "";
	if (ev->payload == NULL) {
		ev->payload = "";
		ev->payload_len = 0;
	}
}

static int
write_event(struct sbuf *line, struct sbuf *key, struct sbuf *tmp,
            enum format_kind kind, const struct event *ev)
{
	struct parser ps = {
	    .s = (const unsigned char *)ev->payload,
	    .len = ev->payload_len,
	    .kind = kind,
	    .ev = ev,
	    .line = line,
	    .key = key,
	    .tmp = tmp,
	};
	int rc = 0;

	put_header(line, tmp, kind, ev);
	if (ev->tape != NULL) {
		if (walk_payload(&ps, ev->tape) == 0)
			goto done;
		/* Not a tape to trust: start over from the text. */
		sbuf_rewind(line);
		key->len = 0;
		ps.depth = 0;
		ps.quiet = 0;
		put_header(line, tmp, kind, ev);
	}
	if (parse_payload(&ps) != 0) {
		/* Drop the half-written payload; keep the event. */
		rc = 1;
		sbuf_rewind(line);
		put_header(line, tmp, kind, ev);
		put_error_fields(line, kind, &ps);
	}
done:
	if (kind == FORMAT_JSON)
		sbuf_putc(line, '}');
	sbuf_putc(line, '\n');
	return key->failed || tmp->failed ? -1 : rc;
}

int
format_event(enum format_kind kind, const struct event *event,
             struct evbuffer *out)
{
	char line_stack[LINE_STACK], key_stack[KEY_STACK], tmp_stack[TMP_STACK];
	struct sbuf line, key, tmp;
	struct event ev;
	int rc;

	if (event == NULL || out == NULL)
		return -1; /* a caller's bug, but not worth a crash */
	event_sanitize(event, &ev);
	sbuf_init(&line, line_stack, sizeof(line_stack), SB_SPILL);
	sbuf_init(&key, key_stack, sizeof(key_stack), SB_GROW);
	sbuf_init(&tmp, tmp_stack, sizeof(tmp_stack), SB_GROW);
	rc = write_event(&line, &key, &tmp, kind, &ev);
	if (rc >= 0 && sbuf_finish(&line, out) != 0)
		rc = -1;
	sbuf_release(&tmp);
	sbuf_release(&key);
	sbuf_release(&line);
	return rc;
}

int
format_event_mem(enum format_kind kind, const struct event *event, char *buf,
                 size_t cap, size_t *len)
{
	char key_stack[KEY_STACK], tmp_stack[TMP_STACK];
	struct sbuf line, key, tmp;
	struct event ev;
	int rc;

	if (event == NULL || buf == NULL || len == NULL)
		return -1;
	event_sanitize(event, &ev);
	sbuf_init(&line, buf, cap, SB_FIXED);
	sbuf_init(&key, key_stack, sizeof(key_stack), SB_GROW);
	sbuf_init(&tmp, tmp_stack, sizeof(tmp_stack), SB_GROW);
	rc = write_event(&line, &key, &tmp, kind, &ev);
	if (line.overflow)
		rc = FORMAT_NO_ROOM;
	else if (line.failed)
		rc = -1;
	*len = line.len;
	sbuf_release(&tmp);
	sbuf_release(&key);
	return rc;
}

/* Appends s to out through put (put_logfmt_value or put_quoted). */
static int
append_value(struct evbuffer *out, const char *s, size_t n,
             void (*put)(struct sbuf *, const unsigned char *, size_t))
{
	char stack[VALUE_STACK];
	struct sbuf sb;
	int rc;

	if (out == NULL)
		return -1;
	if (s == NULL) {
		s = "";
		n = 0;
	}
	sbuf_init(&sb, stack, sizeof(stack), SB_SPILL);
	put(&sb, (const unsigned char *)s, n);
	rc = sbuf_finish(&sb, out);
	sbuf_release(&sb);
	return rc;
}

int
format_logfmt_value(struct evbuffer *out, const char *s, size_t n)
{
	return append_value(out, s, n, put_logfmt_value);
}

int
format_json_string(struct evbuffer *out, const char *s, size_t n)
{
	return append_value(out, s, n, put_quoted);
}

int
format_kind_parse(const char *s, enum format_kind *kind)
{
	if (s == NULL || kind == NULL)
		return -1;
	if (strcmp(s, "logfmt") == 0)
		*kind = FORMAT_LOGFMT;
	else if (strcmp(s, "json") == 0)
		*kind = FORMAT_JSON;
	else
		return -1;
	return 0;
}
