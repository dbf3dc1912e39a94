'use strict';
// Peer client for the benchmark: jsforce's own Streaming API client (Faye
// underneath). Logs in with the OAuth 2.0 username-password flow through
// loginUrl, subscribes with a replay position, prints every event as one
// line of JSON on stdout and exits after BENCH_EVENTS events (0: never).
//
// Environment: BENCH_LOGIN_URL, BENCH_CHANNELS (comma-separated),
// BENCH_EVENTS, BENCH_REPLAY (-2 or -1), SFDC_CLIENT_ID,
// SFDC_CLIENT_SECRET, SFDC_USERNAME, SFDC_PASSWORD.
const jsforce = require('jsforce');
const { StreamingExtension } = require('jsforce/api/streaming');

const env = process.env;
const loginUrl = env.BENCH_LOGIN_URL;
const channels = (env.BENCH_CHANNELS || '').split(',').filter(Boolean);
const want = Number(env.BENCH_EVENTS || 0);
const replay = Number(env.BENCH_REPLAY || -2);

function fail(what, err) {
  process.stderr.write(`jsforce-peer: ${what}: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
}

// jsforce's Replay extension writes a one-channel replay map into every
// subscribe; with several channels each subscribe needs the whole map.
function replayAll(map) {
  return {
    outgoing(message, callback) {
      if (message.channel === '/meta/subscribe') {
        message.ext = message.ext || {};
        message.ext.replay = map;
      }
      callback(message);
    },
  };
}

async function main() {
  const conn = new jsforce.Connection({
    oauth2: {
      loginUrl,
      clientId: env.SFDC_CLIENT_ID,
      clientSecret: env.SFDC_CLIENT_SECRET,
    },
    version: '61.0',
  });
  await conn.login(env.SFDC_USERNAME, env.SFDC_PASSWORD);
  let ext;
  if (channels.length === 1) {
    ext = new StreamingExtension.Replay(channels[0], replay);
  } else {
    const map = {};
    for (const c of channels) map[c] = replay;
    ext = replayAll(map);
  }
  const client = conn.streaming.createClient([ext]);
  let n = 0;
  for (const c of channels) {
    client.subscribe(c, (message) => {
      process.stdout.write(JSON.stringify(message) + '\n');
      if (want > 0 && ++n === want) {
        // Exit once the lines written so far have left: stdout on a
        // pipe may still hold some.
        process.stdout.write('', () => process.exit(0));
      }
    }).errback((err) => fail(`subscribe ${c}`, err));
  }
}

process.on('SIGTERM', () => process.exit(0));
main().catch((err) => fail('login', err));
