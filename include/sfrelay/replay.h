#ifndef SFRELAY_REPLAY_H
#define SFRELAY_REPLAY_H

#include <stddef.h>

/*
 * Replay policy helpers. Pure: no I/O, no clock (callers pass times).
 *
 * The subscription-start marker. A channel that has never delivered an
 * event starts with replay id -1 ("new events only"), and Salesforce does
 * not say which replay id "now" is. If the relay were killed before its
 * first acknowledgement, a restart with -1 would silently skip whatever
 * was published meanwhile. So on that first subscribe the relay stores
 * the marker position "-2" with the subscribe time as its creation time;
 * a restart then replays everything retained (-2) and drops only events
 * created before the marker (less a clock-skew margin), which the user
 * asked not to see.
 */

#define REPLAY_MARKER_POSITION "-2"
/* Events up to this much older than the marker are still delivered:
 * Salesforce's clock and ours may disagree. */
#define REPLAY_MARKER_MARGIN_MS (5 * 60 * 1000)

/* "2026-11-26T19:27:53.000Z" (fraction optional, 'Z' or "+0000"/"+00:00"
 * offsets accepted) -> milliseconds since the epoch. Returns 0 or -1. */
int replay_iso_to_ms(const char *iso, long long *ms);
/* Milliseconds since the epoch -> "YYYY-MM-DDTHH:MM:SS.mmmZ" (len >= 25). */
void replay_ms_to_iso(long long ms, char *buf, size_t len);

/*
 * 1 when an event created at `created` must be dropped because its
 * channel's checkpoint is the start marker (position "-2" with time
 * `since`) and the event predates it by more than the margin. Unknown
 * or unparsable times never drop anything.
 */
int replay_before_marker(const char *position, const char *since,
			 const char *created);

#endif /* SFRELAY_REPLAY_H */
