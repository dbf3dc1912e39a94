/*
 * tlsfloor: the least memory a process can have that is ready to open one
 * verified TLS connection with the OpenSSL the relay links (through
 * libcurl and libpq). It initialises the library, makes a client context
 * and loads the CA bundle, as libcurl does before any HTTPS request, and
 * prints its high-water resident set after each step:
 *
 *   tlsfloor [CA_FILE]     (default: Debian's bundle)
 *
 *   step=loaded hwm_kb=... anon_kb=... file_kb=...
 *   step=init ...
 *   step=context ...
 *   step=ca_bundle ...
 *
 * It does nothing else: no HTTP, no JSON, no event loop, no buffers. The
 * benchmark prints its last line next to the relay's peak RSS, because no
 * change in the relay can take the relay below it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#define DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"

/* The kB value of a "Name:   N kB" line of /proc/self/status, or -1. */
static long
status_kb(const char *name)
{
	char line[256];
	size_t n = strlen(name);
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, name, n) == 0 && line[n] == ':') {
			kb = strtol(line + n + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

static void
report(const char *step)
{
	printf("step=%s hwm_kb=%ld anon_kb=%ld file_kb=%ld\n", step,
	       status_kb("VmHWM"), status_kb("RssAnon"), status_kb("RssFile"));
}

int
main(int argc, char **argv)
{
	const char *ca = argc > 1 ? argv[1] : DEFAULT_CA;
	SSL_CTX *ctx;

	report("loaded");
	if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1) {
		fprintf(stderr, "tlsfloor: OpenSSL failed to initialise\n");
		return 1;
	}
	report("init");
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		fprintf(stderr, "tlsfloor: no TLS client context\n");
		return 1;
	}
	report("context");
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
		fprintf(stderr, "tlsfloor: cannot load the CA bundle %s\n", ca);
		SSL_CTX_free(ctx);
		return 1;
	}
	report("ca_bundle");
	SSL_CTX_free(ctx);
	return 0;
}
