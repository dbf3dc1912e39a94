/* Replay policy helpers (see replay.h). */
#include "sfrelay/replay.h"

#include <stdio.h>
#include <string.h>

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static long long
days_from_civil(long long y, unsigned m, unsigned d)
{
	y -= m <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long long)doe - 719468;
}

static int
digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Parses the zone suffix at p: "Z", "+hh:mm", "+hhmm", "-..." */
static int
zone_offset_ms(const char *p, long long *off)
{
	int hh, mm;
	*off = 0;
	if (strcmp(p, "Z") == 0)
		return 0;
	if ((p[0] != '+' && p[0] != '-') || digits(p + 1, 2, &hh) != 0)
		return -1;
	const char *q = p + 3;
	if (*q == ':')
		q++;
	if (digits(q, 2, &mm) != 0 || q[2] != '\0')
		return -1;
	*off = ((long long)hh * 60 + mm) * 60000 * (p[0] == '-' ? -1 : 1);
	return 0;
}

int
replay_iso_to_ms(const char *s, long long *ms)
{
	int y, mo, d, h, mi, sec, frac = 0;
	if (s == NULL || strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' ||
	    digits(s + 5, 2, &mo) || s[7] != '-' || digits(s + 8, 2, &d) ||
	    s[10] != 'T' || digits(s + 11, 2, &h) || s[13] != ':' ||
	    digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60)
		return -1;
	const char *p = s + 19;
	if (*p == '.') {
		int n = 0, scale = 100;
		for (p++; *p >= '0' && *p <= '9'; p++, n++) {
			frac += (*p - '0') * scale;
			scale /= 10;
		}
		if (n == 0)
			return -1;
	}
	long long off;
	if (zone_offset_ms(p, &off) != 0)
		return -1;
	long long days = days_from_civil(y, (unsigned)mo, (unsigned)d);
	*ms = ((days * 24 + h) * 60 + mi) * 60000LL + sec * 1000LL + frac -
	      off;
	return 0;
}

void
replay_ms_to_iso(long long ms, char *buf, size_t len)
{
	long long days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
	long long rem = ms - days * 86400000;
	/* civil_from_days */
	long long z = days + 719468;
	long long era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	long long y = (long long)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;
	y += m <= 2;
	snprintf(buf, len, "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%03lldZ", y, m,
		 d, rem / 3600000, rem / 60000 % 60, rem / 1000 % 60,
		 rem % 1000);
}

int
replay_before_marker(const char *position, const char *since,
		     const char *created)
{
	long long since_ms, created_ms;
	if (position == NULL || strcmp(position, REPLAY_MARKER_POSITION) != 0 ||
	    since == NULL || created == NULL ||
	    replay_iso_to_ms(since, &since_ms) != 0 ||
	    replay_iso_to_ms(created, &created_ms) != 0)
		return 0;
	return created_ms < since_ms - REPLAY_MARKER_MARGIN_MS;
}
