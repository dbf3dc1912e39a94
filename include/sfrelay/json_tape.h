#ifndef SFRELAY_JSON_TAPE_H
#define SFRELAY_JSON_TAPE_H

#include <stddef.h>
#include <stdint.h>

/*
 * A JSON value's tokens, in document order, as a scanner that has already
 * validated the text found them: the Bayeux stream decoder records one
 * for each event payload while it checks the message, so the formatter
 * can write the line without scanning the payload a second time (the
 * "one scan" of DESIGN.md's performance budget).
 *
 * Data only, no functions: the producer (bayeux_stream.c) owns the token
 * array and reuses it for the next message; a consumer borrows it for the
 * duration of the call that hands it over, exactly like the payload text
 * it indexes (struct event).
 *
 * Shape: a value is one token, or for a container an OBJ/ARR token, its
 * contents and an END token; an object's contents alternate KEY and value.
 * Offsets and lengths count bytes of the payload text; a string token
 * covers the raw body between its quotes (escapes not undone).
 */

enum json_tok_type {
	JSON_TOK_OBJ = 1, /* '{' */
	JSON_TOK_ARR,     /* '[' */
	JSON_TOK_END,     /* the '}' or ']' closing the innermost container */
	JSON_TOK_KEY,     /* an object member's name */
	JSON_TOK_STR,     /* a string value */
	JSON_TOK_NUM,     /* a number, as written */
	JSON_TOK_TRUE,
	JSON_TOK_FALSE,
	JSON_TOK_NULL,
};

/* What a string token's raw body holds; 0 for plain printable ASCII
 * without space or '='. Exact for unescaped strings; an escaped one may
 * carry more than it needs (consumers take their careful path for it). */
enum {
	JSON_STR_SPACE = 1,   /* ' ' or '=' */
	JSON_STR_ODD = 2,     /* DEL or a byte of 0x80 and up */
	JSON_STR_ESCAPED = 4, /* at least one backslash escape */
};

struct json_tok {
	uint32_t off;  /* of the token's first byte (a string: after '"') */
	uint32_t len;  /* bytes (a string: its raw body) */
	uint8_t type;  /* enum json_tok_type */
	uint8_t flags; /* strings: JSON_STR_* */
};

/* The tokens of one payload: tok[0] is its first token, n in all. */
struct json_tape {
	const struct json_tok *tok;
	size_t n;
};

#endif /* SFRELAY_JSON_TAPE_H */
