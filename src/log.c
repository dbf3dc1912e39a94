/*
 * The relay's diagnostics on stderr, one logfmt line per call. Values go
 * through format_logfmt_value() so a hostile server string cannot forge a
 * line, and registered secrets are masked before anything is written.
 */
#include "sfrelay/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "sfrelay/format.h"

/* Access tokens kept for redaction: the current one and a few it
 * replaced (a late error may still quote one); older ones are expired
 * and not worth a scan of every line. */
#define LOG_MAX_TOKENS 8
#define LOG_REDACTED "[redacted]"

/*
 * Process-wide logger settings: written during start-up only (level,
 * secrets), read afterwards. The one piece of state outside the event
 * loop's tree, because every module logs.
 */
static struct {
	enum log_level level;
	char **secrets; /* in the order registered */
	unsigned char *is_token;
	size_t nsecrets, cap;
} log_state = {LOG_INFO, NULL, NULL, 0, 0};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void
log_set_level(enum log_level level)
{
	log_state.level = level;
}

int
log_level_parse(const char *s, enum log_level *level)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]);
	     i++) {
		if (s != NULL && strcmp(s, level_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

/* Drops entry i, keeping the order of the rest. */
static void
drop_secret(size_t i)
{
	free(log_state.secrets[i]);
	memmove(log_state.secrets + i, log_state.secrets + i + 1,
		(log_state.nsecrets - i - 1) * sizeof(*log_state.secrets));
	memmove(log_state.is_token + i, log_state.is_token + i + 1,
		log_state.nsecrets - i - 1);
	log_state.nsecrets--;
}

static void
add_secret(const char *secret, int token)
{
	size_t ntokens = 0;

	if (secret == NULL || strlen(secret) < 4)
		return;
	for (size_t i = 0; i < log_state.nsecrets; i++) {
		if (strcmp(log_state.secrets[i], secret) == 0)
			return;
		ntokens += log_state.is_token[i];
	}
	if (token && ntokens == LOG_MAX_TOKENS) {
		for (size_t i = 0; i < log_state.nsecrets; i++) {
			if (log_state.is_token[i]) {
				drop_secret(i);
				break;
			}
		}
	}
	if (log_state.nsecrets == log_state.cap) {
		size_t cap = log_state.cap == 0 ? 8 : log_state.cap * 2;
		char **s = realloc(log_state.secrets, cap * sizeof(*s));
		if (s == NULL)
			abort();
		log_state.secrets = s;
		unsigned char *t = realloc(log_state.is_token, cap);
		if (t == NULL)
			abort();
		log_state.is_token = t;
		log_state.cap = cap;
	}
	char *copy = strdup(secret);
	if (copy == NULL)
		abort();
	log_state.secrets[log_state.nsecrets] = copy;
	log_state.is_token[log_state.nsecrets++] = (unsigned char)token;
}

void
log_add_secret(const char *secret)
{
	add_secret(secret, 0);
}

void
log_add_token(const char *token)
{
	add_secret(token, 1);
}

void
log_shutdown(void)
{
	while (log_state.nsecrets > 0)
		drop_secret(log_state.nsecrets - 1);
	free(log_state.secrets);
	free(log_state.is_token);
	log_state.secrets = NULL;
	log_state.is_token = NULL;
	log_state.cap = 0;
}

/* Finds the earliest registered secret in s[0..n). */
static const char *
find_secret(const char *s, size_t n, size_t *secret_len)
{
	const char *best = NULL;
	for (size_t i = 0; i < log_state.nsecrets; i++) {
		const char *sec = log_state.secrets[i];
		size_t sl = strlen(sec);
		for (size_t j = 0; j + sl <= n; j++) {
			if (best != NULL && s + j >= best)
				break;
			if (memcmp(s + j, sec, sl) == 0) {
				best = s + j;
				*secret_len = sl;
				break;
			}
		}
	}
	return best;
}

/* Appends one value with every registered secret replaced. */
static void
add_value(struct evbuffer *line, const char *v)
{
	size_t n = strlen(v);
	if (log_state.nsecrets == 0) {
		format_logfmt_value(line, v, n);
		return;
	}
	struct evbuffer *clean = evbuffer_new();
	if (clean == NULL)
		abort();
	const char *p = v;
	size_t left = n, sl = 0;
	const char *hit;
	while ((hit = find_secret(p, left, &sl)) != NULL) {
		evbuffer_add(clean, p, (size_t)(hit - p));
		evbuffer_add(clean, LOG_REDACTED, strlen(LOG_REDACTED));
		left -= (size_t)(hit - p) + sl;
		p = hit + sl;
	}
	evbuffer_add(clean, p, left);
	size_t cn = evbuffer_get_length(clean);
	const char *flat = (const char *)evbuffer_pullup(clean, -1);
	format_logfmt_value(line, flat != NULL ? flat : "", cn);
	evbuffer_free(clean);
}

static void
add_key(struct evbuffer *line, const char *key)
{
	evbuffer_add(line, " ", 1);
	/* Keys are our own literals; still keep the line well-formed. */
	for (const char *k = key; *k != '\0'; k++) {
		char c = (*k > ' ' && *k != '=' && *k != '"' && *k < 127)
				 ? *k
				 : '_';
		evbuffer_add(line, &c, 1);
	}
	evbuffer_add(line, "=", 1);
}

void
log_msg(enum log_level level, const char *msg, ...)
{
	if (level < log_state.level)
		return;
	struct evbuffer *line = evbuffer_new();
	if (line == NULL)
		abort();
	evbuffer_add_printf(line, "at=%s", level_names[level]);
	add_key(line, "msg");
	add_value(line, msg != NULL ? msg : "");

	va_list ap;
	va_start(ap, msg);
	const char *key;
	while ((key = va_arg(ap, const char *)) != NULL) {
		const char *val = va_arg(ap, const char *);
		add_key(line, key);
		add_value(line, val != NULL ? val : "");
	}
	va_end(ap);
	evbuffer_add(line, "\n", 1);

	/* One write per line so concurrent writers never interleave. */
	size_t n = evbuffer_get_length(line);
	const char *flat = (const char *)evbuffer_pullup(line, -1);
	while (flat != NULL && n > 0) {
		ssize_t w = write(STDERR_FILENO, flat, n);
		if (w <= 0)
			break;
		flat += w;
		n -= (size_t)w;
	}
	evbuffer_free(line);
}

char *
log_fmt(char *buf, unsigned long len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return buf;
}

char *
log_quote(char *buf, unsigned long len, const char *s, unsigned long n,
          unsigned long max)
{
	static const char hex[] = "0123456789abcdef";
	unsigned long o = 0, i;

	if (len < 3) {
		if (len > 0)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	/* Room for the widest escape (4), "..." (3), the quote and NUL. */
	for (i = 0; i < n && i < max && o + 9 <= len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 0xf];
		} else {
			buf[o++] = (char)c;
		}
	}
	if (i < n && o + 5 <= len) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}
