// Peer client for the benchmark: the CometD JavaScript client on Node.js
// (cometd + cometd-nodejs-client). Gets an access token with a plain OAuth
// 2.0 username-password POST, then handshakes with
// "Authorization: Bearer <token>", subscribes with the replay extension,
// prints every event as one line of JSON on stdout and exits after
// BENCH_EVENTS events (0: never).
//
// Environment: as jsforce-peer.cjs.
import { adapt } from 'cometd-nodejs-client';
import { CometD } from 'cometd';

const env = process.env;
const loginUrl = env.BENCH_LOGIN_URL;
const channels = (env.BENCH_CHANNELS || '').split(',').filter(Boolean);
const want = Number(env.BENCH_EVENTS || 0);
const replay = Number(env.BENCH_REPLAY || -2);

function fail(what, err) {
  process.stderr.write(`cometd-peer: ${what}: ${err && err.stack ? err.stack : JSON.stringify(err)}\n`);
  process.exit(1);
}

async function token() {
  const form = new URLSearchParams({
    grant_type: 'password',
    client_id: env.SFDC_CLIENT_ID,
    client_secret: env.SFDC_CLIENT_SECRET,
    username: env.SFDC_USERNAME,
    password: env.SFDC_PASSWORD,
  });
  const res = await fetch(`${loginUrl}/services/oauth2/token`, { method: 'POST', body: form });
  const body = await res.text();
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${body}`);
  return JSON.parse(body);
}

async function main() {
  const tok = await token();
  adapt();
  const cometd = new CometD();
  cometd.unregisterTransport('websocket');
  cometd.configure({
    url: `${tok.instance_url}/cometd/61.0`,
    requestHeaders: { Authorization: `Bearer ${tok.access_token}` },
    appendMessageTypeToURL: false,
  });
  const map = {};
  for (const c of channels) map[c] = replay;
  cometd.registerExtension('replay', {
    outgoing(message) {
      if (message.channel === '/meta/handshake') {
        message.ext = message.ext || {};
        message.ext.replay = true;
      } else if (message.channel === '/meta/subscribe') {
        message.ext = message.ext || {};
        message.ext.replay = map;
      }
      return message;
    },
  });
  let n = 0;
  cometd.handshake((reply) => {
    if (!reply.successful) fail('handshake', reply);
    for (const c of channels) {
      cometd.subscribe(c, (message) => {
        process.stdout.write(JSON.stringify(message) + '\n');
        if (want > 0 && ++n === want) {
          // Exit once the lines written so far have left: stdout on a
          // pipe may still hold some.
          process.stdout.write('', () => process.exit(0));
        }
      }, (sub) => {
        if (!sub.successful) fail(`subscribe ${c}`, sub);
      });
    }
  });
}

process.on('SIGTERM', () => process.exit(0));
main().catch((err) => fail('login', err));
