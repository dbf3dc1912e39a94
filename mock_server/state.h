#ifndef SFMOCK_STATE_H
#define SFMOCK_STATE_H

#include <stddef.h>

struct event_base;
struct org;

/*
 * --state FILE: the org's retention buffers survive a restart of sfmock,
 * even by SIGKILL. The file holds the channels (replayId counter,
 * published count), every retained event, the issued tokens and
 * retention trims.
 *
 * It is a journal of JSON lines: on open the file is loaded, then
 * rewritten compactly (temp file, fsync, rename, fsync of the directory)
 * and reopened for appending. Every change is appended as one line.
 * Events are buffered and written with one write(2) when the publisher
 * calls org_commit() (rest.c does, before it answers the publish
 * request) or within 50 ms (other publishers); tokens, trims and
 * revocations are written at once. So an event whose publish request
 * was answered is in the file: killing sfmock loses none of them. The
 * appends are not fsync'ed: a power cut may lose the tail. A clean exit
 * compacts and fsyncs. docs/sfmock.md describes the format.
 */

struct state;

/*
 * Loads path into org (when it exists; channels it names are declared),
 * compacts it and starts following org's changes. base and org are
 * borrowed and must outlive the state. Returns NULL with a message in
 * err when the file cannot be read or written, or is not a valid state
 * file (a corrupt file is never silently replaced).
 */
struct state *state_open(struct event_base *base, struct org *org,
                         const char *path, char *err, size_t errlen);
/* Writes what is buffered now. Returns 0 or -1 (logged). */
int state_sync(struct state *st);
/* Stops following the org, writes the file compactly and durably, and
 * frees st. NULL is a no-op. */
void state_close(struct state *st);

#endif /* SFMOCK_STATE_H */
