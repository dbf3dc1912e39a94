#ifndef SFRELAY_LOG_H
#define SFRELAY_LOG_H

#include <stdarg.h>

/*
 * The relay's own diagnostics: one logfmt line per call on stderr,
 *   at=warn msg="connect failed" channel=/topic/X error="..."
 * never on the sink. Event lines go only through sinks.
 *
 * log_msg() takes the message and then key/value pairs as alternating
 * const char * arguments ending with NULL; every value is escaped with
 * format_logfmt_value(), so untrusted text cannot break a line. Values
 * registered with log_add_secret() are replaced by "[redacted]" wherever
 * they appear in a message or value, so a secret that reaches a log call
 * by mistake (inside a server's error text, say) is still not printed.
 *
 * The logger's settings (level, secrets) are process-wide and set during
 * start-up, before the event loop runs; it is not thread-safe.
 */

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
/* Parses "debug" | "info" | "warn" | "error". Returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *level);
/* Registers a secret (copied; ignored when shorter than 4 bytes), kept
 * until log_shutdown(): configuration secrets, passwords in URLs. */
void log_add_secret(const char *secret);
/* Registers an access token the same way; only the 8 newest tokens are
 * kept (a renewed or abandoned token is expired), so a relay that
 * renews for months neither stops hiding new tokens nor scans every line
 * for thousands of old ones. */
void log_add_token(const char *token);
/* Frees the registered secrets (at exit, for leak checkers). */
void log_shutdown(void);

void log_msg(enum log_level level, const char *msg, ...)
	__attribute__((sentinel));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Formats into a caller's buffer: for building a value with printf rules
 * (snprintf that always terminates). Returns buf. */
char *log_fmt(char *buf, unsigned long len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Quotes n bytes of user text for an error message: "..." with \" \\ and
 * \xNN escapes, so the text can neither end the quote nor break the line,
 * and cut after max bytes with "..." before the closing quote. Always
 * terminates buf (len > 0). Returns buf. Secrets are the caller's concern.
 */
char *log_quote(char *buf, unsigned long len, const char *s, unsigned long n,
                unsigned long max);

#endif /* SFRELAY_LOG_H */
