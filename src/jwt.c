/*
 * JWT bearer assertions: RS256 over base64url(header).base64url(claims),
 * signed through OpenSSL's EVP interface.
 */
#include "sfrelay/jwt.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#define JWT_KEY_FILE_MAX (64 * 1024)

struct jwt_key {
	EVP_PKEY *pkey;
};

/* Does the n bytes at s contain needle? (memmem is not POSIX.) */
static int
contains(const char *s, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	for (size_t i = 0; k <= n && i <= n - k; i++)
		if (memcmp(s + i, needle, k) == 0)
			return 1;
	return 0;
}

/* The newest OpenSSL error as text (never key material), and a clean
 * error queue for whoever calls OpenSSL next. */
static void
openssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	if (e == 0)
		snprintf(buf, len, "no detail");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

/* Never let OpenSSL prompt on a terminal for a passphrase: a daemon has
 * none to give, and an encrypted key is a configuration error. */
static int
no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return -1;
}

/*
 * A key pasted on one line into a config var often arrives with "\n"
 * written as backslash and n. Returns a copy with those turned into
 * newlines (owned; wiped and freed by the caller), or NULL when the text
 * already has real newlines or no such escapes.
 */
static char *
unescape_newlines(const char *pem, size_t len, size_t *outlen)
{
	if (memchr(pem, '\n', len) != NULL || !contains(pem, len, "\\n"))
		return NULL;
	char *copy = malloc(len + 1);
	if (copy == NULL)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (pem[i] == '\\' && i + 1 < len && pem[i + 1] == 'n') {
			copy[o++] = '\n';
			i++;
		} else {
			copy[o++] = pem[i];
		}
	}
	copy[o] = '\0';
	*outlen = o;
	return copy;
}

/* Explains what the text is when it is not a usable private key. */
static void
diagnose(const char *pem, size_t len, char *err, size_t errlen)
{
	if (!contains(pem, len, "-----BEGIN "))
		snprintf(err, errlen,
			 "holds no PEM block: expected the whole private key "
			 "file, from -----BEGIN PRIVATE KEY----- to "
			 "-----END PRIVATE KEY-----");
	else if (contains(pem, len, "ENCRYPTED"))
		snprintf(err, errlen,
			 "is an encrypted private key: store it without a "
			 "passphrase (openssl pkey -in key.pem -out "
			 "plain.pem)");
	else if (contains(pem, len, "PRIVATE KEY-----"))
		snprintf(err, errlen, "is not a readable PEM private key");
	else if (contains(pem, len, "CERTIFICATE-----"))
		snprintf(err, errlen,
			 "holds a certificate, not the private key: the "
			 "certificate goes to the connected app, the private "
			 "key belongs here");
	else if (contains(pem, len, "PUBLIC KEY-----"))
		snprintf(err, errlen,
			 "holds a public key, not the private key");
	else
		snprintf(err, errlen,
			 "holds no PEM private key (expected -----BEGIN "
			 "PRIVATE KEY----- or -----BEGIN RSA PRIVATE "
			 "KEY-----)");
}

struct jwt_key *
jwt_key_from_pem(const char *pem, size_t len, char *err, size_t errlen)
{
	struct jwt_key *key = NULL;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	size_t ulen = 0;
	char *unescaped = NULL;

	if (len > JWT_KEY_FILE_MAX) {
		snprintf(err, errlen,
			 "is too long for a private key (%zu bytes)", len);
		return NULL;
	}
	unescaped = unescape_newlines(pem, len, &ulen);
	if (unescaped != NULL) {
		pem = unescaped;
		len = ulen;
	}
	if (!contains(pem, len, "PRIVATE KEY-----") ||
	    contains(pem, len, "ENCRYPTED")) {
		diagnose(pem, len, err, errlen);
		goto out;
	}
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	if (pkey == NULL) {
		char why[256];
		openssl_reason(why, sizeof(why));
		diagnose(pem, len, err, errlen);
		size_t used = strlen(err);
		if (used < errlen)
			snprintf(err + used, errlen - used, " (OpenSSL: %s)",
				 why);
		goto out;
	}
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
		snprintf(err, errlen,
			 "is a %s key; RS256 needs an RSA private key",
			 OBJ_nid2sn(EVP_PKEY_get_base_id(pkey)));
		goto out;
	}
	key = calloc(1, sizeof(*key));
	if (key == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	key->pkey = pkey;
	pkey = NULL;
out:
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	if (unescaped != NULL) {
		OPENSSL_cleanse(unescaped, ulen);
		free(unescaped);
	}
	ERR_clear_error();
	return key;
}

struct jwt_key *
jwt_key_from_file(const char *path, char *err, size_t errlen)
{
	struct jwt_key *key = NULL;
	struct stat st;
	char *buf = NULL;
	size_t n = 0;

	int fd = open(path, O_RDONLY | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "cannot be read: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "is not a regular file");
		goto out;
	}
	if (st.st_size > JWT_KEY_FILE_MAX) {
		snprintf(err, errlen,
			 "is too large for a private key (%lld bytes)",
			 (long long)st.st_size);
		goto out;
	}
	buf = malloc(JWT_KEY_FILE_MAX + 1);
	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t r = read(fd, buf + n, JWT_KEY_FILE_MAX + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "cannot be read: %s",
				 strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > JWT_KEY_FILE_MAX) {
			snprintf(err, errlen,
				 "is too large for a private key");
			goto out;
		}
	}
	key = jwt_key_from_pem(buf, n, err, errlen);
out:
	if (buf != NULL) {
		OPENSSL_cleanse(buf, n);
		free(buf);
	}
	close(fd);
	return key;
}

void
jwt_key_free(struct jwt_key *key)
{
	if (key == NULL)
		return;
	EVP_PKEY_free(key->pkey);
	free(key);
}

int
jwt_key_bits(const struct jwt_key *key)
{
	return EVP_PKEY_get_bits(key->pkey);
}

int
jwt_base64url(struct evbuffer *out, const void *data, size_t n)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				       "abcdefghijklmnopqrstuvwxyz"
				       "0123456789-_";
	const unsigned char *p = data;
	char quad[4];
	size_t i = 0;

	for (; i + 3 <= n; i += 3) {
		unsigned long v = (unsigned long)p[i] << 16 |
				  (unsigned long)p[i + 1] << 8 | p[i + 2];
		quad[0] = alphabet[(v >> 18) & 63];
		quad[1] = alphabet[(v >> 12) & 63];
		quad[2] = alphabet[(v >> 6) & 63];
		quad[3] = alphabet[v & 63];
		if (evbuffer_add(out, quad, 4) != 0)
			return -1;
	}
	if (n - i == 1) {
		unsigned long v = (unsigned long)p[i] << 16;
		quad[0] = alphabet[(v >> 18) & 63];
		quad[1] = alphabet[(v >> 12) & 63];
		return evbuffer_add(out, quad, 2);
	}
	if (n - i == 2) {
		unsigned long v = (unsigned long)p[i] << 16 |
				  (unsigned long)p[i + 1] << 8;
		quad[0] = alphabet[(v >> 18) & 63];
		quad[1] = alphabet[(v >> 12) & 63];
		quad[2] = alphabet[(v >> 6) & 63];
		return evbuffer_add(out, quad, 3);
	}
	return 0;
}

/* The claims as compact JSON; json-c escapes whatever the strings hold. */
static char *
claims_json(const struct jwt_claims *c)
{
	struct json_object *o = json_object_new_object();
	char *text = NULL;
	if (o == NULL)
		return NULL;
	if (json_object_object_add(o, "iss", json_object_new_string(c->iss)) ||
	    json_object_object_add(o, "sub", json_object_new_string(c->sub)) ||
	    json_object_object_add(o, "aud", json_object_new_string(c->aud)) ||
	    json_object_object_add(o, "exp", json_object_new_int64(c->exp)))
		goto out;
	const char *s = json_object_to_json_string_ext(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (s != NULL)
		text = strdup(s);
out:
	json_object_put(o);
	return text;
}

int
jwt_sign(const struct jwt_key *key, const struct jwt_claims *claims,
	 struct evbuffer *out, char *err, size_t errlen)
{
	static const char header[] = "{\"alg\":\"RS256\"}";
	struct evbuffer *tbs = evbuffer_new();
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *sig = NULL;
	size_t siglen = 0;
	char *body = claims_json(claims);
	int rc = -1;

	if (tbs == NULL || ctx == NULL || body == NULL ||
	    jwt_base64url(tbs, header, sizeof(header) - 1) != 0 ||
	    evbuffer_add(tbs, ".", 1) != 0 ||
	    jwt_base64url(tbs, body, strlen(body)) != 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	size_t n = evbuffer_get_length(tbs);
	const unsigned char *data = evbuffer_pullup(tbs, -1);
	if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key->pkey) != 1 ||
	    EVP_DigestSign(ctx, NULL, &siglen, data, n) != 1 ||
	    (sig = malloc(siglen)) == NULL ||
	    EVP_DigestSign(ctx, sig, &siglen, data, n) != 1) {
		char why[256];
		openssl_reason(why, sizeof(why));
		snprintf(err, errlen, "cannot sign the JWT assertion: %s",
			 why);
		goto out;
	}
	if (evbuffer_add(tbs, ".", 1) != 0 ||
	    jwt_base64url(tbs, sig, siglen) != 0 ||
	    evbuffer_add_buffer(out, tbs) != 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = 0;
out:
	free(sig);
	free(body);
	EVP_MD_CTX_free(ctx);
	if (tbs != NULL)
		evbuffer_free(tbs); /* emptied into out on success */
	return rc;
}

/* Does host (hlen bytes, any case) end with suffix? */
static int
host_ends(const char *host, size_t hlen, const char *suffix)
{
	size_t s = strlen(suffix);
	if (hlen < s)
		return 0;
	for (size_t i = 0; i < s; i++)
		if (tolower((unsigned char)host[hlen - s + i]) != suffix[i])
			return 0;
	return 1;
}

static int
host_is(const char *host, size_t hlen, const char *name)
{
	return hlen == strlen(name) && host_ends(host, hlen, name);
}

/* A sandbox's My Domain host: NAME--SANDBOX.sandbox.my.salesforce.com,
 * the older NAME--SANDBOX.my.salesforce.com, or an instance-named
 * NAME.csNN.my.salesforce.com. */
static int
sandbox_host(const char *host, size_t hlen)
{
	if (!host_ends(host, hlen, ".my.salesforce.com"))
		return 0;
	if (host_ends(host, hlen, ".sandbox.my.salesforce.com"))
		return 1;
	size_t label = hlen - strlen(".my.salesforce.com");
	for (size_t i = 0; i + 1 < label; i++)
		if (host[i] == '-' && host[i + 1] == '-')
			return 1;
	/* ".csNN" right before ".my.salesforce.com" */
	size_t d = label;
	while (d > 0 && isdigit((unsigned char)host[d - 1]))
		d--;
	return d < label && d >= 3 && tolower((unsigned char)host[d - 1]) == 's' &&
	       tolower((unsigned char)host[d - 2]) == 'c' && host[d - 3] == '.';
}

int
jwt_audience(const char *login_url, char *buf, size_t len)
{
	const char *aud = login_url;
	const char *p = strstr(login_url, "://");
	if (p != NULL) {
		const char *host = p + 3;
		size_t alen = strcspn(host, "/");
		size_t hlen = strcspn(host, ":/");
		int has_path = host[alen] == '/' && host[alen + 1] != '\0';
		if (has_path)
			aud = login_url;
		else if (host_is(host, hlen, "login.salesforce.com"))
			aud = "https://login.salesforce.com";
		else if (host_is(host, hlen, "test.salesforce.com") ||
			 sandbox_host(host, hlen))
			aud = "https://test.salesforce.com";
		else if (host_ends(host, hlen, ".salesforce.com"))
			aud = "https://login.salesforce.com";
	}
	size_t n = strlen(aud);
	while (n > 0 && aud[n - 1] == '/')
		n--;
	if (n + 1 > len)
		return -1;
	memcpy(buf, aud, n);
	buf[n] = '\0';
	return 0;
}
