#ifndef SFRELAY_JWT_H
#define SFRELAY_JWT_H

#include <stddef.h>

struct evbuffer;

/*
 * Assertions for Salesforce's OAuth 2.0 JWT bearer flow (RFC 7523): a
 * compact JWS, base64url(header) "." base64url(claims) "." base64url(sig),
 * with the header {"alg":"RS256"}, the claims {iss, sub, aud, exp} and an
 * RSA PKCS#1 v1.5 SHA-256 signature made with OpenSSL's EVP interface by
 * the connected app's private key.
 *
 * Nothing here reads the clock or the environment: the caller passes the
 * expiry. Only jwt_key_from_file() touches the file system. Error
 * messages never contain key material, and do not name the variable the
 * key came from (the caller prefixes it).
 */

/* Salesforce wants exp no more than 3 minutes ahead. */
#define JWT_LIFETIME_MAX_S 180

/* A loaded RSA private key. Opaque: OpenSSL stays out of this header. */
struct jwt_key;

/*
 * Parses a PEM private key (PKCS#8 "BEGIN PRIVATE KEY" or PKCS#1 "BEGIN
 * RSA PRIVATE KEY"), as a Heroku config var holds it: real newlines, or
 * the two characters backslash-n when the key was pasted on one line.
 * Returns an owned key, or NULL with a reason in err: no PEM block, a
 * certificate or public key instead of the private key, an encrypted
 * key (never prompts for a passphrase), not RSA, or unreadable.
 */
struct jwt_key *jwt_key_from_pem(const char *pem, size_t len, char *err,
				 size_t errlen);
/* The same for a file (at most 64 KiB); the bytes read are wiped. */
struct jwt_key *jwt_key_from_file(const char *path, char *err, size_t errlen);
/* Frees the key (OpenSSL clears its private parts). NULL is a no-op. */
void jwt_key_free(struct jwt_key *key);
/* Size of the key's modulus in bits. */
int jwt_key_bits(const struct jwt_key *key);

struct jwt_claims {
	const char *iss; /* the connected app's consumer key */
	const char *sub; /* the user's username */
	const char *aud; /* see jwt_audience() */
	long long exp;   /* seconds since the epoch */
};

/*
 * Appends the signed assertion to out (about 500 bytes for a 2048-bit
 * key). Returns 0, or -1 with a reason in err (out unchanged). The
 * assertion is a credential until exp: wipe what holds it.
 */
int jwt_sign(const struct jwt_key *key, const struct jwt_claims *claims,
	     struct evbuffer *out, char *err, size_t errlen);

/* Appends the unpadded base64url encoding (RFC 4648 section 5) of n
 * bytes. Returns 0 or -1 (allocation). */
int jwt_base64url(struct evbuffer *out, const void *data, size_t n);

/*
 * The aud claim for a login URL (no trailing '/'):
 *   https://login.salesforce.com, https://test.salesforce.com -> itself;
 *   a sandbox My Domain (NAME--SANDBOX.sandbox.my.salesforce.com,
 *   NAME--SANDBOX.my.salesforce.com, *.cs<N>.my.salesforce.com)
 *                                           -> https://test.salesforce.com;
 *   any other *.salesforce.com host (a production My Domain)
 *                                           -> https://login.salesforce.com;
 *   a URL with a path (an Experience Cloud site), or any other host
 *                                           -> the login URL itself.
 * Writes it into buf. Returns 0, or -1 when it does not fit.
 */
int jwt_audience(const char *login_url, char *buf, size_t len);

#endif /* SFRELAY_JWT_H */
