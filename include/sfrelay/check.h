#ifndef SFRELAY_CHECK_H
#define SFRELAY_CHECK_H

#include <stdio.h>

/*
 * `sfrelay --check`: the first thing to run on a new set-up
 * (`heroku run -- sfrelay --check`). In order:
 *
 *   configuration        config_load() of env (every problem, one line
 *                        each); nothing else runs unless it passes
 *   authentication       one token request by the configured flow;
 *                        nothing else runs unless it passes
 *   streaming handshake  /meta/handshake at <instance_url>/cometd/<version>
 *                        (when channels are configured)
 *   subscribe <channel>  one line per channel, after a good handshake
 *                        (replay -1: nothing is replayed, no checkpoint
 *                        is read or written), then a /meta/disconnect
 *   poll <object>        one line per SFRELAY_POLL object: its poll
 *                        query over the last day with LIMIT 1
 *   database             with SFRELAY_CHECKPOINT=postgres: a connection
 *                        to DATABASE_URL and one query (server version,
 *                        TLS on or off); no table is read or written
 *
 * Each check prints one line on out: "ok   <check>: <detail>" or
 * "FAIL <check>: <reason>". Salesforce's error text is shown as it came,
 * on one line, with every configured secret replaced by "[redacted]".
 * The relay's own diagnostics still go to stderr (warnings and worse,
 * unless SFRELAY_LOG_LEVEL=debug).
 *
 * Runs its own event loop and HTTP client and releases everything
 * before it returns (libcurl and libevent global state included), so
 * it is called instead of the relay, never beside it. env is an
 * environ-style array (borrowed). Returns the exit status: 0 when every
 * check passed, 1 otherwise.
 */
int check_run(const char *const *env, FILE *out);

#endif /* SFRELAY_CHECK_H */
