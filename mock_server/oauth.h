#ifndef SFMOCK_OAUTH_H
#define SFMOCK_OAUTH_H

#include <stddef.h>

struct evhttp_request;
struct org;

/*
 * POST /services/oauth2/token, the fake org's OAuth 2.0 token endpoint.
 * Form-encoded grants, checked as Salesforce does and refused with its
 * error codes and descriptions (HTTP 400, {"error","error_description"}):
 *
 *   password            client_id, client_secret, username, password +
 *                       security token
 *   client_credentials  client_id, client_secret
 *   refresh_token       client_id, refresh_token (= --refresh-token),
 *                       client_secret optional but checked when sent
 *   urn:ietf:params:oauth:grant-type:jwt-bearer
 *                       assertion: a compact JWS verified for real:
 *                       alg RS256, signature against --jwt-cert (a PEM
 *                       certificate or public key), iss = client id,
 *                       aud = https://login.salesforce.com,
 *                       https://test.salesforce.com or the mock's own
 *                       URL, exp in the future and at most 5 minutes
 *                       ahead, sub = username
 *
 * Every access token issued is new; with --token-ttl it expires (see
 * org_token_valid()). docs/sfmock.md lists every error.
 */

/* Answers req (a POST to the token path). org is borrowed. With
 * no_instance_url set, a success leaves out "instance_url" (the fault
 * no_instance_url). */
void oauth_token(struct org *org, struct evhttp_request *req,
                 int no_instance_url);

/* Checks at start-up that path holds a PEM certificate or public key
 * with an RSA key. Returns 0, or -1 with a reason in err. */
int oauth_check_cert(const char *path, char *err, size_t errlen);

#endif /* SFMOCK_OAUTH_H */
