/*
 * jwt: assertions decoded back and verified with the public key through
 * OpenSSL, base64url against OpenSSL's base64, key loading (every kind of
 * wrong key gives a reason and never echoes key material), audiences.
 * Keys are generated at run time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "sfrelay/config.h"
#include "sfrelay/jwt.h"

/* Small keys keep the valgrind run short; the code has no size rule. */
#define TEST_KEY_BITS 1024

struct keys {
	EVP_PKEY *pkey;
	char *pkcs8;  /* -----BEGIN PRIVATE KEY----- */
	char *pkcs1;  /* -----BEGIN RSA PRIVATE KEY----- */
	char *pub;    /* -----BEGIN PUBLIC KEY----- */
	char *cert;   /* -----BEGIN CERTIFICATE----- */
	char *crypt;  /* -----BEGIN ENCRYPTED PRIVATE KEY----- */
	char *ec;     /* an EC private key */
	char dir[64]; /* temp dir for key files */
};

static char *
bio_text(BIO *b)
{
	char *data;
	long n = BIO_get_mem_data(b, &data);
	char *s = malloc((size_t)n + 1);
	assert_non_null(s);
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	BIO_free(b);
	return s;
}

static char *
self_signed(EVP_PKEY *pkey)
{
	X509 *x = X509_new();
	BIO *b = BIO_new(BIO_s_mem());
	assert_non_null(x);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pkey);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)"sfrelay test", -1,
				   -1, 0);
	X509_set_issuer_name(x, name);
	assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);
	assert_int_equal(PEM_write_bio_X509(b, x), 1);
	X509_free(x);
	return bio_text(b);
}

static int
group_setup(void **state)
{
	struct keys *k = calloc(1, sizeof(*k));
	BIO *b;
	assert_non_null(k);
	k->pkey = EVP_RSA_gen(TEST_KEY_BITS);
	assert_non_null(k->pkey);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, k->pkey, NULL, NULL, 0, NULL, NULL);
	k->pkcs8 = bio_text(b);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey_traditional(b, k->pkey, NULL, NULL, 0, NULL,
					     NULL);
	k->pkcs1 = bio_text(b);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(b, k->pkey);
	k->pub = bio_text(b);
	k->cert = self_signed(k->pkey);
	static char passphrase[] = "passphrase";
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PKCS8PrivateKey(b, k->pkey, EVP_aes_128_cbc(), NULL, 0,
				      NULL, passphrase);
	k->crypt = bio_text(b);
	EVP_PKEY *ec = EVP_EC_gen("P-256");
	assert_non_null(ec);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, ec, NULL, NULL, 0, NULL, NULL);
	k->ec = bio_text(b);
	EVP_PKEY_free(ec);
	snprintf(k->dir, sizeof(k->dir), "/tmp/sfrelay-jwt-XXXXXX");
	assert_non_null(mkdtemp(k->dir));
	*state = k;
	return 0;
}

static int
group_teardown(void **state)
{
	struct keys *k = *state;
	EVP_PKEY_free(k->pkey);
	free(k->pkcs8);
	free(k->pkcs1);
	free(k->pub);
	free(k->cert);
	free(k->crypt);
	free(k->ec);
	rmdir(k->dir);
	free(k);
	return 0;
}

/* --- base64url ----------------------------------------------------- */

static char *
b64url(const void *p, size_t n)
{
	struct evbuffer *b = evbuffer_new();
	assert_int_equal(jwt_base64url(b, p, n), 0);
	size_t len = evbuffer_get_length(b);
	char *s = malloc(len + 1);
	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	return s;
}

static void
test_base64url_vectors(void **state)
{
	(void)state;
	/* RFC 4648 section 10, unpadded. */
	static const char *const vec[][2] = {
		{"", ""},         {"f", "Zg"},         {"fo", "Zm8"},
		{"foo", "Zm9v"},  {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"},
		{"foobar", "Zm9vYmFy"},
	};
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		char *s = b64url(vec[i][0], strlen(vec[i][0]));
		assert_string_equal(s, vec[i][1]);
		free(s);
	}
	/* The two characters that differ from standard base64. */
	static const unsigned char odd[] = {0xfb, 0xff, 0xbf};
	char *s = b64url(odd, sizeof(odd));
	assert_string_equal(s, "-_-_");
	free(s);
}

/* Every length 0..96 of pseudo-random bytes against OpenSSL's encoder,
 * translated to the URL alphabet without padding. */
static void
test_base64url_matches_openssl(void **state)
{
	(void)state;
	unsigned char data[96];
	unsigned char std[200] = {0};
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < sizeof(data); i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		data[i] = (unsigned char)x;
	}
	for (size_t n = 0; n <= sizeof(data); n++) {
		int len = EVP_EncodeBlock(std, data, (int)n);
		while (len > 0 && std[len - 1] == '=')
			len--;
		for (int i = 0; i < len; i++)
			std[i] = std[i] == '+' ? '-' : std[i] == '/' ? '_' : std[i];
		std[len] = '\0';
		char *s = b64url(data, n);
		assert_string_equal(s, (char *)std);
		free(s);
	}
}

/* --- assertions ---------------------------------------------------- */

/* Decodes one base64url part with OpenSSL (independently of jwt.c). */
static char *
decode_part(const char *p, size_t n)
{
	char *std = calloc(1, n + 4);
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		std[m++] = p[i] == '-' ? '+' : p[i] == '_' ? '/' : p[i];
	while (m % 4 != 0)
		std[m++] = '=';
	unsigned char *out = malloc(m + 1);
	int len = EVP_DecodeBlock(out, (unsigned char *)std, (int)m);
	assert_true(len >= 0);
	/* EVP_DecodeBlock counts the padding's zero bytes. */
	for (size_t i = n; i % 4 != 0; i++)
		len--;
	out[len] = '\0';
	free(std);
	return (char *)out;
}

struct parsed {
	char *header;
	char *claims;
	unsigned char *sig;
	size_t sig_len;
	char *signed_part;
};

static void
parse_assertion(const char *a, struct parsed *p)
{
	const char *d1 = strchr(a, '.');
	assert_non_null(d1);
	const char *d2 = strchr(d1 + 1, '.');
	assert_non_null(d2);
	assert_null(strchr(d2 + 1, '.'));
	for (const char *c = a; *c != '\0'; c++)
		assert_true(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
				   "rstuvwxyz0123456789-_.",
				   *c) != NULL);
	p->header = decode_part(a, (size_t)(d1 - a));
	p->claims = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
	char *sig = decode_part(d2 + 1, strlen(d2 + 1));
	p->sig_len = (strlen(d2 + 1) * 3) / 4;
	p->sig = (unsigned char *)sig;
	p->signed_part = strndup(a, (size_t)(d2 - a));
}

static void
parsed_free(struct parsed *p)
{
	free(p->header);
	free(p->claims);
	free(p->sig);
	free(p->signed_part);
}

static int
verifies(EVP_PKEY *pub, const char *data, const unsigned char *sig,
	 size_t sig_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) ==
			 1 &&
		 EVP_DigestVerify(ctx, sig, sig_len,
				  (const unsigned char *)data,
				  strlen(data)) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

static EVP_PKEY *
public_of(const struct keys *k)
{
	BIO *b = BIO_new_mem_buf(k->pub, -1);
	EVP_PKEY *pub = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_non_null(pub);
	return pub;
}

static char *
sign(const struct jwt_key *key, const struct jwt_claims *c)
{
	char err[256] = "";
	struct evbuffer *b = evbuffer_new();
	assert_int_equal(jwt_sign(key, c, b, err, sizeof(err)), 0);
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

static void
test_assertion_round_trip(void **state)
{
	struct keys *k = *state;
	char err[256];
	struct jwt_key *key =
		jwt_key_from_pem(k->pkcs8, strlen(k->pkcs8), err, sizeof(err));
	assert_non_null(key);
	assert_int_equal(jwt_key_bits(key), TEST_KEY_BITS);
	struct jwt_claims c = {
		.iss = "3MVG9consumer.key",
		.sub = "relay@example.com",
		.aud = "https://login.salesforce.com",
		.exp = 1764185453,
	};
	char *a = sign(key, &c);
	struct parsed p;
	parse_assertion(a, &p);
	assert_string_equal(p.header, "{\"alg\":\"RS256\"}");

	struct json_object *o = json_tokener_parse(p.claims);
	assert_non_null(o);
	struct json_object *v;
	assert_true(json_object_object_get_ex(o, "iss", &v));
	assert_string_equal(json_object_get_string(v), c.iss);
	assert_true(json_object_object_get_ex(o, "sub", &v));
	assert_string_equal(json_object_get_string(v), c.sub);
	assert_true(json_object_object_get_ex(o, "aud", &v));
	assert_string_equal(json_object_get_string(v), c.aud);
	assert_true(json_object_object_get_ex(o, "exp", &v));
	assert_true(json_object_is_type(v, json_type_int));
	assert_int_equal(json_object_get_int64(v), c.exp);
	assert_int_equal(json_object_object_length(o), 4);
	json_object_put(o);

	/* RS256 with the matching public key; any change breaks it. */
	EVP_PKEY *pub = public_of(k);
	assert_int_equal(p.sig_len, TEST_KEY_BITS / 8);
	assert_true(verifies(pub, p.signed_part, p.sig, p.sig_len));
	p.signed_part[strlen(p.signed_part) - 1] ^= 1;
	assert_false(verifies(pub, p.signed_part, p.sig, p.sig_len));
	p.signed_part[strlen(p.signed_part) - 1] ^= 1;
	p.sig[0] ^= 0x80;
	assert_false(verifies(pub, p.signed_part, p.sig, p.sig_len));
	EVP_PKEY_free(pub);
	parsed_free(&p);
	free(a);

	/* The PKCS#1 form of the same key signs identically (RS256 is
	 * deterministic). */
	struct jwt_key *key1 =
		jwt_key_from_pem(k->pkcs1, strlen(k->pkcs1), err, sizeof(err));
	assert_non_null(key1);
	char *a8 = sign(key, &c), *a1 = sign(key1, &c);
	assert_string_equal(a8, a1);
	free(a8);
	free(a1);
	jwt_key_free(key1);
	jwt_key_free(key);
}

/* Claims are JSON-escaped, whatever they hold. */
static void
test_assertion_escapes_claims(void **state)
{
	struct keys *k = *state;
	char err[256];
	struct jwt_key *key =
		jwt_key_from_pem(k->pkcs8, strlen(k->pkcs8), err, sizeof(err));
	assert_non_null(key);
	struct jwt_claims c = {
		.iss = "a\"b\\c",
		.sub = "line\nbreak\x01",
		.aud = "https://acme.my.site.com/customers",
		.exp = 0,
	};
	char *a = sign(key, &c);
	struct parsed p;
	parse_assertion(a, &p);
	struct json_object *o = json_tokener_parse(p.claims);
	assert_non_null(o);
	struct json_object *v;
	assert_true(json_object_object_get_ex(o, "iss", &v));
	assert_string_equal(json_object_get_string(v), c.iss);
	assert_true(json_object_object_get_ex(o, "sub", &v));
	assert_string_equal(json_object_get_string(v), c.sub);
	assert_true(json_object_object_get_ex(o, "aud", &v));
	assert_string_equal(json_object_get_string(v), c.aud);
	/* No escaped slashes: the aud is written as it is. */
	assert_non_null(strstr(p.claims, "https://acme.my.site.com"));
	json_object_put(o);
	parsed_free(&p);
	free(a);
	jwt_key_free(key);
}

static void
test_lifetime_bound(void **state)
{
	(void)state;
	/* Salesforce: exp no more than 3 minutes ahead. */
	assert_true(JWT_LIFETIME_MAX_S > 0 && JWT_LIFETIME_MAX_S <= 180);
}

/* --- keys ---------------------------------------------------------- */

/* A line of base64 from the middle of a PEM text: key material. */
static void
middle_line(const char *pem, char *out, size_t len)
{
	const char *p = strchr(pem, '\n');
	assert_non_null(p);
	p = strchr(p + 1, '\n'); /* the second line of the body */
	assert_non_null(p);
	p++;
	size_t n = strcspn(p, "\n");
	assert_true(n > 16 && n < len);
	memcpy(out, p, n);
	out[n] = '\0';
}

static void
test_key_forms_accepted(void **state)
{
	struct keys *k = *state;
	char err[256];

	/* One line, with the two characters \n where newlines were (how a
	 * key pasted into a single-line config var often arrives). */
	size_t n = strlen(k->pkcs8);
	char *escaped = malloc(2 * n + 1);
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (k->pkcs8[i] == '\n') {
			escaped[o++] = '\\';
			escaped[o++] = 'n';
		} else {
			escaped[o++] = k->pkcs8[i];
		}
	}
	escaped[o] = '\0';
	/* CRLF line ends. */
	char *crlf = malloc(2 * n + 1);
	o = 0;
	for (size_t i = 0; i < n; i++) {
		if (k->pkcs8[i] == '\n')
			crlf[o++] = '\r';
		crlf[o++] = k->pkcs8[i];
	}
	crlf[o] = '\0';
	const char *forms[] = {k->pkcs8, k->pkcs1, escaped, crlf};
	struct jwt_key *ref =
		jwt_key_from_pem(k->pkcs8, strlen(k->pkcs8), err, sizeof(err));
	assert_non_null(ref);
	struct jwt_claims c = {"iss", "sub", "aud", 42};
	char *want = sign(ref, &c);
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		struct jwt_key *key = jwt_key_from_pem(
			forms[i], strlen(forms[i]), err, sizeof(err));
		if (key == NULL)
			fail_msg("form %zu refused: %s", i, err);
		char *got = sign(key, &c);
		assert_string_equal(got, want);
		free(got);
		jwt_key_free(key);
	}
	free(want);
	jwt_key_free(ref);
	free(escaped);
	free(crlf);
}

static void
test_key_refusals(void **state)
{
	struct keys *k = *state;
	char truncated[200];
	snprintf(truncated, sizeof(truncated), "%.150s", k->pkcs8);
	strcat(truncated, "\n-----END PRIVATE KEY-----\n");
	char both[8192];
	snprintf(both, sizeof(both), "%s%s", k->cert, k->pub);
	struct {
		const char *pem;
		const char *want;
	} cases[] = {
		{"", "holds no PEM block"},
		{"not a key at all", "holds no PEM block"},
		{k->cert, "holds a certificate, not the private key"},
		{k->pub, "holds a public key, not the private key"},
		{both, "holds a certificate"},
		{k->crypt, "is an encrypted private key"},
		{k->ec, "RS256 needs an RSA private key"},
		{truncated, "is not a readable PEM private key (OpenSSL: "},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[512] = "";
		struct jwt_key *key = jwt_key_from_pem(
			cases[i].pem, strlen(cases[i].pem), err, sizeof(err));
		if (key != NULL)
			fail_msg("case %zu accepted", i);
		if (strstr(err, cases[i].want) == NULL)
			fail_msg("case %zu: %s", i, err);
		/* Never a piece of the key in the reason. */
		if (cases[i].pem[0] == '-') {
			char line[128];
			middle_line(cases[i].pem, line, sizeof(line));
			assert_null(strstr(err, line));
		}
	}
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
test_key_files(void **state)
{
	struct keys *k = *state;
	char path[128], err[512];

	snprintf(path, sizeof(path), "%s/key.pem", k->dir);
	write_file(path, k->pkcs8);
	struct jwt_key *key = jwt_key_from_file(path, err, sizeof(err));
	assert_non_null(key);
	jwt_key_free(key);

	write_file(path, k->cert);
	assert_null(jwt_key_from_file(path, err, sizeof(err)));
	assert_non_null(strstr(err, "holds a certificate"));

	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i < 70 * 1024; i++)
		fputc('A', f);
	fclose(f);
	assert_null(jwt_key_from_file(path, err, sizeof(err)));
	assert_non_null(strstr(err, "too large"));
	unlink(path);

	assert_null(jwt_key_from_file(path, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot be read"));
	assert_null(jwt_key_from_file(k->dir, err, sizeof(err)));
	assert_non_null(strstr(err, "not a regular file"));
}

/* The variable a key problem is reported under, through config_load. */
static void
test_config_names_the_key_variable(void **state)
{
	struct keys *k = *state;
	char path[128], kv[8192], fv[256], err[4096];
	struct config cfg;

	snprintf(path, sizeof(path), "%s/cert.pem", k->dir);
	write_file(path, k->cert);
	snprintf(kv, sizeof(kv), "SFDC_JWT_KEY=%s", k->pub);
	const char *env1[] = {"SFDC_CLIENT_ID=id", "SFDC_USERNAME=u@x.test",
			      "SFRELAY_CHANNELS=/topic/A", kv, NULL};
	assert_int_equal(config_load(&cfg, env1, err, sizeof(err)), -1);
	assert_int_equal(strncmp(err, "SFDC_JWT_KEY: holds a public key", 32),
			 0);

	snprintf(fv, sizeof(fv), "SFDC_JWT_KEY_FILE=%s", path);
	const char *env2[] = {"SFDC_CLIENT_ID=id", "SFDC_USERNAME=u@x.test",
			      "SFRELAY_CHANNELS=/topic/A", fv, NULL};
	assert_int_equal(config_load(&cfg, env2, err, sizeof(err)), -1);
	assert_int_equal(strncmp(err, "SFDC_JWT_KEY_FILE: \"", 20), 0);
	assert_non_null(strstr(err, "holds a certificate"));

	/* A good key in either variable loads, and the flow is jwt. */
	write_file(path, k->pkcs8);
	snprintf(kv, sizeof(kv), "SFDC_JWT_KEY=%s", k->pkcs8);
	const char *const *envs[] = {env1, env2};
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(config_load(&cfg, envs[i], err, sizeof(err)),
				 0);
		assert_int_equal(cfg.auth, CONFIG_AUTH_JWT);
		assert_true(cfg.auth_inferred);
		config_clear(&cfg);
	}
	unlink(path);
}

/* --- audience ------------------------------------------------------ */

static void
test_audience(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
		{"https://login.salesforce.com", "https://login.salesforce.com"},
		{"https://LOGIN.salesforce.com", "https://login.salesforce.com"},
		{"https://test.salesforce.com", "https://test.salesforce.com"},
		{"https://acme.my.salesforce.com", "https://login.salesforce.com"},
		{"https://acme.my.salesforce.com:443",
		 "https://login.salesforce.com"},
		{"https://acme--uat.sandbox.my.salesforce.com",
		 "https://test.salesforce.com"},
		{"https://acme--uat.my.salesforce.com",
		 "https://test.salesforce.com"},
		{"https://acme.cs42.my.salesforce.com",
		 "https://test.salesforce.com"},
		{"https://acme.my.site.com/customers",
		 "https://acme.my.site.com/customers"},
		{"https://acme.my.salesforce.com/sso",
		 "https://acme.my.salesforce.com/sso"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"https://login.salesforce.com.evil.test",
		 "https://login.salesforce.com.evil.test"},
		{"https://notsalesforce.com", "https://notsalesforce.com"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char aud[256];
		assert_int_equal(jwt_audience(cases[i][0], aud, sizeof(aud)), 0);
		if (strcmp(aud, cases[i][1]) != 0)
			fail_msg("%s -> %s, want %s", cases[i][0], aud,
				 cases[i][1]);
	}
	char tiny[8];
	assert_int_equal(jwt_audience("https://login.salesforce.com", tiny,
				      sizeof(tiny)),
			 -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64url_vectors),
		cmocka_unit_test(test_base64url_matches_openssl),
		cmocka_unit_test(test_assertion_round_trip),
		cmocka_unit_test(test_assertion_escapes_claims),
		cmocka_unit_test(test_lifetime_bound),
		cmocka_unit_test(test_key_forms_accepted),
		cmocka_unit_test(test_key_refusals),
		cmocka_unit_test(test_key_files),
		cmocka_unit_test(test_config_names_the_key_variable),
		cmocka_unit_test(test_audience),
	};
	return cmocka_run_group_tests_name("jwt", tests, group_setup,
					   group_teardown);
}
