#ifndef SFRELAY_SYSLOG_FRAME_H
#define SFRELAY_SYSLOG_FRAME_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/*
 * RFC 5424 messages in RFC 6587 octet-counted frames, as the syslog sink
 * writes them to a TCP/TLS drain and the Logplex sink POSTs them
 * (application/logplex-1 bodies are the same frames back to back):
 *
 *   LEN SP "<" PRI ">1" SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID
 *       SP MSGID SP "-" SP MSG
 *
 * Pure: bytes in, bytes out; no I/O, no clock (the caller passes the
 * time).
 *
 * Choices the RFCs leave open:
 * - STRUCTURED-DATA is always "-", so no PARAM-VALUE escaping arises.
 * - MSG is sent as MSG-ANY, without the UTF-8 BOM: the relay's lines
 *   are valid UTF-8 already (format.h), Logplex and Heroku drains do not
 *   expect a BOM, and receivers that keep it would show it as junk at the
 *   start of every message.
 * - A trailing '\n' of the line is not part of MSG (octet counting
 *   delimits the frame); any other byte of MSG is sent as it is.
 * - Header fields are PRINTUSASCII (33..126) only: other bytes become
 *   '_', an empty or missing field becomes "-" (NILVALUE), and each is
 *   cut to its RFC length (HOSTNAME 255, APP-NAME 48, PROCID 128,
 *   MSGID 32).
 * - TIMESTAMP is UTC with microseconds: 2026-11-26T19:27:53.123456Z.
 */

#define SYSLOG_HOSTNAME_MAX 255
#define SYSLOG_APP_NAME_MAX 48
#define SYSLOG_PROCID_MAX 128
#define SYSLOG_MSGID_MAX 32
#define SYSLOG_TIMESTAMP_LEN 27 /* without the NUL */

/* Severities used by the relay. */
#define SYSLOG_SEV_WARNING 4
#define SYSLOG_SEV_NOTICE 5
#define SYSLOG_SEV_INFO 6

struct syslog_header {
	int facility;         /* 0..23 (clamped) */
	int severity;         /* 0..7 (clamped) */
	const char *hostname; /* NULL or "": "-" */
	const char *app_name;
	const char *procid;
	const char *msgid;
};

/*
 * Writes the TIMESTAMP for sec (Unix time, UTC) and usec (0..999999) into
 * buf, which must hold SYSLOG_TIMESTAMP_LEN + 1 bytes. Returns 0, or -1
 * for a year outside 0..9999 or usec out of range (buf then holds "-").
 */
int syslog_timestamp(char *buf, size_t len, int64_t sec, long usec);

/*
 * Appends one frame for msg (len bytes, one line) to out. timestamp is
 * the text from syslog_timestamp() (or "-"). With counted != 0 the
 * message is prefixed by its decimal length and a space (RFC 6587 octet
 * counting); without, the bare RFC 5424 message is appended. Returns
 * the number of bytes appended, or -1 (out unchanged) when out cannot
 * grow.
 */
long syslog_frame(struct evbuffer *out, const struct syslog_header *h,
		  const char *timestamp, const char *msg, size_t len,
		  int counted);

/* Length of the frame syslog_frame() would append (same arguments). */
size_t syslog_frame_len(const struct syslog_header *h, const char *timestamp,
			const char *msg, size_t len, int counted);

/*
 * The MSGID for a relay line: the value of its leading `at=` field
 * (logfmt) or "at" member (JSON), e.g. "event" or "stats", written into
 * buf (at most SYSLOG_MSGID_MAX bytes + NUL); "-" when the line has
 * none. Returns buf.
 */
char *syslog_msgid_of_line(const char *line, size_t len, char *buf,
			   size_t buflen);

/* One parsed frame; pointers into the parsed buffer (not terminated). */
struct syslog_parsed {
	int pri;
	const char *timestamp, *hostname, *app_name, *procid, *msgid, *sd,
		*msg;
	size_t timestamp_len, hostname_len, app_name_len, procid_len,
		msgid_len, sd_len, msg_len;
};

/*
 * Reads one octet-counted frame at the start of buf (n bytes) into p:
 * the reverse of syslog_frame() with counted=1, strict about the header
 * shape (as a receiver must be). Returns the bytes consumed, 0 when buf
 * holds only the start of a frame, or -1 when it is not a valid frame.
 */
long syslog_frame_parse(const char *buf, size_t n, struct syslog_parsed *p);

#endif /* SFRELAY_SYSLOG_FRAME_H */
