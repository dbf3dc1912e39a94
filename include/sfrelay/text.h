#ifndef SFRELAY_TEXT_H
#define SFRELAY_TEXT_H

#include <stddef.h>

/*
 * Small text helpers shared by the decoders and writers (the Bayeux
 * stream decoder, the formatter, URL handling). Pure functions: no
 * state, no allocation.
 */

/* The value of one hex digit (0-9, a-f, A-F), or -1. */
int text_hex_digit(int c);

/* The value of the four hex digits at s (as in a JSON \uXXXX escape),
 * 0 to 0xffff, or -1 when one of them is not a hex digit. s must have
 * four readable bytes. */
long text_hex4(const char *s);

/*
 * Writes the UTF-8 form of code point cp (at most 0x10ffff; surrogates
 * are the caller's business) into out and returns its length, 1 to 4.
 * A cp above 0x10ffff is written as U+FFFD.
 */
size_t text_utf8_encode(unsigned long cp, unsigned char out[4]);

#endif /* SFRELAY_TEXT_H */
