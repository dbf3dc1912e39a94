#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "sfrelay/log.h"
#include "sfrelay/text.h"

#include "util.h"

void
util_rng_seed(struct util_rng *rng, uint64_t seed)
{
	rng->s = seed;
}

uint64_t
util_rng_next(struct util_rng *rng)
{
	uint64_t z;

	rng->s += UINT64_C(0x9e3779b97f4a7c15);
	z = rng->s;
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

uint64_t
util_rng_below(struct util_rng *rng, uint64_t n)
{
	/* The modulo bias is irrelevant for ids and demo data. */
	return util_rng_next(rng) % n;
}

void
util_rng_text(struct util_rng *rng, char *buf, size_t len, const char *alphabet)
{
	size_t n = strlen(alphabet);
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = alphabet[util_rng_below(rng, n)];
	buf[len] = '\0';
}

void
util_rng_uuid(struct util_rng *rng, char *buf)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	size_t i, o = 0;
	uint64_t a = util_rng_next(rng), c = util_rng_next(rng);

	for (i = 0; i < 8; i++) {
		b[i] = (unsigned char)(a >> (8 * i));
		b[8 + i] = (unsigned char)(c >> (8 * i));
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[o++] = '-';
		buf[o++] = hex[b[i] >> 4];
		buf[o++] = hex[b[i] & 0x0f];
	}
	buf[o] = '\0';
}

int64_t
util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *
util_iso_ms(char *buf, size_t len, int64_t epoch_ms)
{
	time_t secs = (time_t)(epoch_ms / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	         tm.tm_min, tm.tm_sec, (int)(epoch_ms % 1000));
	return buf;
}


/* Decodes s[0..n) into a new NUL-terminated string, or NULL when the
 * text is malformed or decodes to a byte a header value cannot hold. */
static char *
form_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	size_t i, o = 0;

	if (out == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi, lo;

			if (i + 2 >= n) {
				free(out);
				return NULL;
			}
			hi = text_hex_digit(s[i + 1]);
			lo = text_hex_digit(s[i + 2]);
			if (hi < 0 || lo < 0) {
				free(out);
				return NULL;
			}
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (c == '\0' || c == '\r' || c == '\n') {
			free(out);
			return NULL;
		}
		out[o++] = c;
	}
	out[o] = '\0';
	return out;
}

int
util_form_parse(const char *s, size_t n, struct evkeyvalq *out)
{
	size_t i = 0;

	while (i < n) {
		size_t end = i, eq;
		char *key, *val;
		int rc;

		while (end < n && s[end] != '&')
			end++;
		eq = i;
		while (eq < end && s[eq] != '=')
			eq++;
		if (end > i) {
			key = form_decode(s + i, eq - i);
			val = eq < end ? form_decode(s + eq + 1, end - eq - 1)
			               : form_decode("", 0);
			rc = (key != NULL && val != NULL)
			         ? evhttp_add_header(out, key, val)
			         : -1;
			free(key);
			free(val);
			if (rc != 0)
				return -1;
		}
		i = end + 1;
	}
	return 0;
}

int
util_base64(struct evbuffer *out, const unsigned char *p, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                          "abcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;
	char q[4];

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v =
		    (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		q[0] = tab[v >> 18];
		q[1] = tab[(v >> 12) & 63];
		q[2] = tab[(v >> 6) & 63];
		q[3] = tab[v & 63];
		if (evbuffer_add(out, q, 4) != 0)
			return -1;
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		q[0] = tab[v >> 18];
		q[1] = tab[(v >> 12) & 63];
		q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		q[3] = '=';
		if (evbuffer_add(out, q, 4) != 0)
			return -1;
	}
	return 0;
}

int
util_json_str(struct evbuffer *out, const char *s)
{
	const char *run = s;
	int rc = 0;

	rc |= evbuffer_add(out, "\"", 1);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		rc |= evbuffer_add(out, run, (size_t)(s - run));
		switch (c) {
		case '"':
			rc |= evbuffer_add(out, "\\\"", 2);
			break;
		case '\\':
			rc |= evbuffer_add(out, "\\\\", 2);
			break;
		case '\n':
			rc |= evbuffer_add(out, "\\n", 2);
			break;
		case '\r':
			rc |= evbuffer_add(out, "\\r", 2);
			break;
		case '\t':
			rc |= evbuffer_add(out, "\\t", 2);
			break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			rc |= evbuffer_add(out, esc, 6);
		}
		run = s + 1;
	}
	rc |= evbuffer_add(out, run, (size_t)(s - run));
	rc |= evbuffer_add(out, "\"", 1);
	return rc == 0 ? 0 : -1;
}

int
util_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0' || *s == ' ' || *s == '+')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = (int64_t)v;
	return 0;
}

const char *
util_bearer(struct evhttp_request *req)
{
	const char *h = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Authorization");

	if (h == NULL)
		return NULL;
	if (strncasecmp(h, "Bearer ", 7) == 0)
		h += 7;
	else if (strncasecmp(h, "OAuth ", 6) == 0)
		h += 6;
	else
		return NULL;
	while (*h == ' ')
		h++;
	return *h != '\0' ? h : NULL;
}

const char *
util_method(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return "?";
	}
}

void
util_reply(struct evhttp_request *req, int code, const char *ctype,
           struct evbuffer *body, const char *why)
{
	char status[16], bytes[32];
	const char *uri = evhttp_request_get_uri(req);

	if (ctype != NULL)
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "Content-Type", ctype);
	snprintf(status, sizeof(status), "%d", code);
	snprintf(bytes, sizeof(bytes), "%zu",
	         body != NULL ? evbuffer_get_length(body) : (size_t)0);
	if (why != NULL)
		log_warn("client error", "method", util_method(req), "path",
		         uri != NULL ? uri : "", "status", status, "error", why,
		         NULL);
	else
		log_debug("request", "method", util_method(req), "path",
		          uri != NULL ? uri : "", "status", status, "bytes",
		          bytes, NULL);
	evhttp_send_reply(req, code, NULL, body);
}

void
util_reply_text(struct evhttp_request *req, int code, const char *json,
                const char *why)
{
	struct evbuffer *body = evbuffer_new();

	if (body == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	if (evbuffer_add(body, json, strlen(json)) != 0) {
		evbuffer_free(body);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	util_reply(req, code, UTIL_JSON_UTF8, body, why);
	evbuffer_free(body);
}
