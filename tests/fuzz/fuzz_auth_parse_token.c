/*
 * Fuzz harness for the token reply decoder, auth_parse_token() (auth.h).
 *
 * Input: bytes 0-1 the HTTP status (big-endian, so 200 and 400 are easy
 * for the fuzzer to reach and every value up to 65535 is possible), the
 * rest the reply body.
 *
 * Invariants, each an abort() (after a message) when broken:
 *   - the result is one of the three enum values;
 *   - AUTH_OK: token and instance_url are set and non-empty (they are
 *     freed here, so a leak shows up under LeakSanitizer); err is not
 *     read;
 *   - otherwise: token and instance_url are NULL, and err is terminated
 *     inside its buffer, non-empty, and free of control bytes (< 0x20):
 *     the message reaches a log line and an operator's terminal, and the
 *     server's error text is untrusted.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfrelay/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HARNESS "auth_parse_token"

/* Reports which promise broke, then aborts: libFuzzer records the input. */
static void broken(const char *what) __attribute__((noreturn));

static void
broken(const char *what)
{
	fprintf(stderr, "%s: invariant broken: %s\n", HARNESS, what);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	char unset[] = "unset";
	char *token = unset, *url = unset;
	enum auth_status st;
	const char *end;
	char *body;
	long status;

	if (size < 2)
		return 0;
	status = (long)data[0] << 8 | data[1];
	data += 2;
	size -= 2;

	/* A private copy: no terminator, so a read past len is caught. */
	body = malloc(size > 0 ? size : 1);
	if (body == NULL)
		abort();
	if (size > 0)
		memcpy(body, data, size);
	memset(err, 'x', sizeof(err));

	st = auth_parse_token(status, body, size, &token, &url, err,
	                      sizeof(err));
	switch (st) {
	case AUTH_OK:
		if (token == NULL || url == NULL || token[0] == '\0' ||
		    url[0] == '\0')
			broken("AUTH_OK without a non-empty token and "
			       "instance_url");
		free(token);
		free(url);
		break;
	case AUTH_TEMPORARY:
	case AUTH_PERMANENT:
		if (token != NULL || url != NULL)
			broken("failure leaves token or instance_url set");
		end = memchr(err, '\0', sizeof(err));
		if (end == NULL || end == err)
			broken("err is empty or not terminated");
		for (const char *p = err; p < end; p++)
			if ((unsigned char)*p < 0x20)
				broken("err holds a control byte");
		break;
	default:
		broken("auth_parse_token() returned an unknown status");
	}
	free(body);
	return 0;
}
