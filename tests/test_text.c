/* The shared text helpers: hex digits and UTF-8 encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sfrelay/text.h"

static void
test_hex_digit_every_byte(void **state)
{
	(void)state;
	for (int c = -1; c < 256; c++) {
		int want = -1;
		if (c >= '0' && c <= '9')
			want = c - '0';
		else if (c >= 'a' && c <= 'f')
			want = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			want = c - 'A' + 10;
		assert_int_equal(text_hex_digit(c), want);
	}
	/* A char holding a byte of 0x80 and up may be negative. */
	assert_int_equal(text_hex_digit((char)0xe9), -1);
}

static void
test_hex4(void **state)
{
	(void)state;
	assert_int_equal(text_hex4("0000"), 0);
	assert_int_equal(text_hex4("00e9"), 0xe9);
	assert_int_equal(text_hex4("D83d"), 0xd83d);
	assert_int_equal(text_hex4("ffff"), 0xffff);
	assert_int_equal(text_hex4("12g4"), -1);
	assert_int_equal(text_hex4("123 "), -1);
	assert_int_equal(text_hex4("\"abc"), -1);
}

struct utf8_case {
	unsigned long cp;
	const char *bytes;
};

static const struct utf8_case utf8_cases[] = {
    {0x00, ""}, /* NUL: one zero byte, checked by length below */
    {0x41, "A"},
    {0x7f, "\x7f"},
    {0x80, "\xc2\x80"},
    {0xe9, "\xc3\xa9"},
    {0x7ff, "\xdf\xbf"},
    {0x800, "\xe0\xa0\x80"},
    {0xfffd, "\xef\xbf\xbd"},
    {0xffff, "\xef\xbf\xbf"},
    {0x10000, "\xf0\x90\x80\x80"},
    {0x1f600, "\xf0\x9f\x98\x80"},
    {0x10ffff, "\xf4\x8f\xbf\xbf"},
    {0x110000, "\xef\xbf\xbd"}, /* out of range: U+FFFD */
    {0xffffffffUL, "\xef\xbf\xbd"},
};

static void
test_utf8_encode(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]);
	     i++) {
		const struct utf8_case *c = &utf8_cases[i];
		unsigned char out[4] = {0xaa, 0xaa, 0xaa, 0xaa};
		size_t n = text_utf8_encode(c->cp, out);
		size_t want = c->cp == 0 ? 1 : strlen(c->bytes);
		assert_int_equal(n, want);
		assert_memory_equal(out, c->cp == 0 ? "\0" : c->bytes, n);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hex_digit_every_byte),
	    cmocka_unit_test(test_hex4),
	    cmocka_unit_test(test_utf8_encode),
	};

	return cmocka_run_group_tests_name("text", tests, NULL, NULL);
}
