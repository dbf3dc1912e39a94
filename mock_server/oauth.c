/*
 * The token endpoint. JWT assertions are verified with OpenSSL directly
 * (own base64url decoder, own claim checks): nothing here comes from the
 * relay's jwt module, so a bug there cannot be mirrored here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "sfrelay/log.h"

#include "oauth.h"
#include "org.h"
#include "util.h"

#define OAUTH_JWT_GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"
/* How far ahead exp may be; Salesforce asks for 3 minutes, and a little
 * clock skew is tolerated. */
#define OAUTH_EXP_AHEAD_MAX_S 300
#define OAUTH_ASSERTION_MAX 16384

/* A refusal: the OAuth error code and Salesforce's description. */
struct refusal {
	const char *error;
	const char *desc;
};

static void
oauth_error(struct evhttp_request *req, const struct refusal *r)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "error", json_object_new_string(r->error));
	json_object_object_add(o, "error_description",
	                       json_object_new_string(r->desc));
	/* The description is the warning's reason: it says which check
	 * refused the request. */
	util_reply_text(
	    req, 400,
	    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	                                          JSON_C_TO_STRING_NOSLASHESCAPE),
	    r->desc);
	json_object_put(o);
}

static int
password_ok(const struct org_config *cfg, const char *given)
{
	size_t p = strlen(cfg->password), t = strlen(cfg->security_token);

	return strlen(given) == p + t &&
	       strncmp(given, cfg->password, p) == 0 &&
	       strcmp(given + p, cfg->security_token) == 0;
}

/* Loads the RSA public key from a PEM certificate or public key file.
 * Returns it (owned) or NULL with a reason in err. */
static EVP_PKEY *
load_public_key(const char *path, char *err, size_t errlen)
{
	BIO *bio = BIO_new_file(path, "r");
	EVP_PKEY *pkey = NULL;
	X509 *cert;

	if (bio == NULL) {
		snprintf(err, errlen, "%s cannot be read", path);
		ERR_clear_error();
		return NULL;
	}
	cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (cert != NULL) {
		pkey = X509_get_pubkey(cert);
		X509_free(cert);
	} else if (BIO_reset(bio) == 0) {
		pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	}
	BIO_free(bio);
	ERR_clear_error();
	if (pkey == NULL) {
		snprintf(err, errlen,
		         "%s holds no PEM certificate or public key", path);
		return NULL;
	}
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
		snprintf(err, errlen, "%s: not an RSA key", path);
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

int
oauth_check_cert(const char *path, char *err, size_t errlen)
{
	EVP_PKEY *pkey = load_public_key(path, err, errlen);

	EVP_PKEY_free(pkey);
	return pkey != NULL ? 0 : -1;
}

static int
b64url_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Decodes n bytes of unpadded base64url into out (room for n bytes).
 * Returns the decoded length, or -1 on a bad character or length. */
static long
b64url_decode(const char *s, size_t n, unsigned char *out)
{
	unsigned long acc = 0;
	int bits = 0;
	long o = 0;
	size_t i;

	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		int v = b64url_value(s[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned long)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)((acc >> bits) & 0xff);
		}
	}
	/* Leftover bits must be zero (a canonical encoding). */
	if (bits > 0 && (acc & ((1ul << bits) - 1)) != 0)
		return -1;
	return o;
}

/* Decodes one base64url part as a JSON object. Owned, or NULL. */
static struct json_object *
part_json(const char *s, size_t n)
{
	unsigned char *buf = malloc(n + 1);
	struct json_object *o = NULL;
	long len;

	if (buf == NULL)
		return NULL;
	len = b64url_decode(s, n, buf);
	if (len >= 0) {
		struct json_tokener *tok = json_tokener_new();

		if (tok != NULL) {
			o = json_tokener_parse_ex(tok, (const char *)buf,
			                          (int)len);
			if (o != NULL &&
			    (json_tokener_get_parse_end(tok) != (size_t)len ||
			     !json_object_is_type(o, json_type_object))) {
				json_object_put(o);
				o = NULL;
			}
			json_tokener_free(tok);
		}
	}
	free(buf);
	return o;
}

static const char *
claim_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* RS256: RSA PKCS#1 v1.5 over SHA-256 of "header.claims". */
static int
signature_ok(const char *path, const char *signed_part, size_t signed_len,
             const char *sig64, size_t sig64_len)
{
	char err[256];
	EVP_PKEY *pkey = load_public_key(path, err, sizeof(err));
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *sig = malloc(sig64_len + 1);
	long siglen = sig != NULL ? b64url_decode(sig64, sig64_len, sig) : -1;
	int ok = 0;

	if (pkey == NULL)
		log_warn("cannot load --jwt-cert", "error", err, NULL);
	if (pkey != NULL && ctx != NULL && siglen > 0 &&
	    EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
	    EVP_DigestVerify(ctx, sig, (size_t)siglen,
	                     (const unsigned char *)signed_part,
	                     signed_len) == 1)
		ok = 1;
	ERR_clear_error();
	free(sig);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return ok;
}

/* An audience the mock answers to: Salesforce's two login servers and
 * its own URL. */
static int
audience_ok(struct org *org, const char *aud)
{
	return strcmp(aud, "https://login.salesforce.com") == 0 ||
	       strcmp(aud, "https://test.salesforce.com") == 0 ||
	       strcmp(aud, org_instance_url(org)) == 0;
}

/*
 * Checks a JWT bearer assertion. Returns NULL when it is good (*sub then
 * borrows the user name from the org config), else the refusal.
 */
static const struct refusal *
check_assertion(struct org *org, const char *a, const char **sub)
{
	static const struct refusal bad = {"invalid_grant",
	                                   "invalid assertion"};
	static const struct refusal client = {"invalid_client_id",
	                                      "client identifier invalid"};
	static const struct refusal audience = {"invalid_grant",
	                                        "audience is invalid"};
	static const struct refusal expired = {"invalid_grant",
	                                       "expired authorization code"};
	static const struct refusal user = {
	    "invalid_grant", "user hasn't approved this consumer"};
	const struct org_config *cfg = org_config(org);
	const struct refusal *r = &bad;
	struct json_object *header = NULL, *claims = NULL, *v;
	const char *dot1, *dot2, *alg, *iss, *aud, *s;
	int64_t now = util_now_ms() / 1000, exp;

	dot1 = a != NULL ? strchr(a, '.') : NULL;
	dot2 = dot1 != NULL ? strchr(dot1 + 1, '.') : NULL;
	if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL ||
	    strlen(a) > OAUTH_ASSERTION_MAX)
		goto out;
	header = part_json(a, (size_t)(dot1 - a));
	claims = part_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	alg = header != NULL ? claim_str(header, "alg") : NULL;
	if (claims == NULL || alg == NULL || strcmp(alg, "RS256") != 0)
		goto out;
	iss = claim_str(claims, "iss");
	if (iss == NULL || strcmp(iss, cfg->client_id) != 0) {
		r = &client;
		goto out;
	}
	if (cfg->jwt_cert == NULL) {
		log_warn("JWT refused: sfmock runs without --jwt-cert", NULL);
		goto out;
	}
	if (!signature_ok(cfg->jwt_cert, a, (size_t)(dot2 - a), dot2 + 1,
	                  strlen(dot2 + 1)))
		goto out;
	aud = claim_str(claims, "aud");
	if (aud == NULL || !audience_ok(org, aud)) {
		r = &audience;
		goto out;
	}
	if (!json_object_object_get_ex(claims, "exp", &v) ||
	    !json_object_is_type(v, json_type_int)) {
		goto out;
	}
	exp = json_object_get_int64(v);
	if (exp <= now) {
		r = &expired;
		goto out;
	}
	if (exp > now + OAUTH_EXP_AHEAD_MAX_S)
		goto out;
	s = claim_str(claims, "sub");
	if (s == NULL || strcmp(s, cfg->username) != 0) {
		r = &user;
		goto out;
	}
	*sub = cfg->username;
	r = NULL;
out:
	json_object_put(header);
	json_object_put(claims);
	return r;
}

/* Checks the grant. Returns NULL when it is good (*who names the user or
 * client for the log), else the refusal. */
static const struct refusal *
check_grant(struct org *org, struct evkeyvalq *form, const char **who)
{
	static const struct refusal unsupported = {"unsupported_grant_type",
	                                           "grant type not supported"};
	static const struct refusal client = {"invalid_client_id",
	                                      "client identifier invalid"};
	static const struct refusal secret = {"invalid_client",
	                                      "invalid client credentials"};
	static const struct refusal login = {"invalid_grant",
	                                     "authentication failure"};
	static const struct refusal refresh = {"invalid_grant",
	                                       "expired access/refresh token"};
	const struct org_config *cfg = org_config(org);
	const char *grant = evhttp_find_header(form, "grant_type");
	const char *id = evhttp_find_header(form, "client_id");
	const char *sec = evhttp_find_header(form, "client_secret");
	int is_password, is_cc, is_refresh;

	if (grant != NULL && strcmp(grant, OAUTH_JWT_GRANT) == 0)
		return check_assertion(
		    org, evhttp_find_header(form, "assertion"), who);
	is_password = grant != NULL && strcmp(grant, "password") == 0;
	is_cc = grant != NULL && strcmp(grant, "client_credentials") == 0;
	is_refresh = grant != NULL && strcmp(grant, "refresh_token") == 0;
	if (!is_password && !is_cc && !is_refresh)
		return &unsupported;
	if (id == NULL || strcmp(id, cfg->client_id) != 0)
		return &client;
	/* The secret is optional for a refresh, checked when sent. */
	if ((sec == NULL && !is_refresh) ||
	    (sec != NULL && strcmp(sec, cfg->client_secret) != 0))
		return &secret;
	if (is_refresh) {
		const char *t = evhttp_find_header(form, "refresh_token");

		if (t == NULL || strcmp(t, cfg->refresh_token) != 0)
			return &refresh;
		*who = cfg->username;
	} else if (is_password) {
		const char *user = evhttp_find_header(form, "username");
		const char *pass = evhttp_find_header(form, "password");

		if (user == NULL || pass == NULL ||
		    strcmp(user, cfg->username) != 0 || !password_ok(cfg, pass))
			return &login;
		*who = cfg->username;
	} else {
		/* The connected app's run-as user. */
		*who = cfg->username;
	}
	return NULL;
}

void
oauth_token(struct org *org, struct evhttp_request *req, int no_instance_url)
{
	static const struct refusal malformed = {"invalid_request",
	                                         "malformed request body"};
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct evkeyvalq form;
	struct evbuffer *out = NULL;
	const struct refusal *r;
	const char *who = NULL, *grant;
	unsigned char sig[32];
	char token[160];
	int64_t now;
	size_t i;

	form.tqh_first = NULL;
	form.tqh_last = &form.tqh_first;
	if (util_form_parse((const char *)evbuffer_pullup(in, -1),
	                    evbuffer_get_length(in), &form) != 0) {
		oauth_error(req, &malformed);
		goto done;
	}
	r = check_grant(org, &form, &who);
	if (r != NULL) {
		oauth_error(req, r);
		goto done;
	}
	out = evbuffer_new();
	if (out == NULL || org_token_issue(org, token, sizeof(token)) != 0) {
		evhttp_send_error(req, 500, NULL);
		goto done;
	}
	now = util_now_ms();
	for (i = 0; i < sizeof(sig); i++)
		sig[i] = (unsigned char)util_rng_next(org_rng(org));
	evbuffer_add_printf(out, "{\"access_token\":\"%s\",", token);
	if (!no_instance_url)
		evbuffer_add_printf(out, "\"instance_url\":\"%s\",",
		                    org_instance_url(org));
	evbuffer_add_printf(out,
	                    "\"id\":\"%s/id/00Dxx0000001gPLEAY/"
	                    "005xx000001X8UzAAK\",\"token_type\":\"Bearer\","
	                    "\"issued_at\":\"%lld\",\"signature\":\"",
	                    org_instance_url(org), (long long)now);
	util_base64(out, sig, sizeof(sig));
	evbuffer_add(out, "\"}", 2);
	grant = evhttp_find_header(&form, "grant_type");
	log_info("token issued", "grant", grant, "username", who, NULL);
	util_reply(req, 200, UTIL_JSON_UTF8, out, NULL);
done:
	if (out != NULL)
		evbuffer_free(out);
	evhttp_clear_headers(&form);
}
