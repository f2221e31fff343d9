// Subscribes to shadowChanged with the graphql-ws reference client and prints, as JSON lines
// on stdout, the socket's negotiated extensions ({"extensions": "permessage-deflate; ..."},
// ws offers permessage-deflate as browsers do) and then each event; exits after COUNT events
// (0 when they all arrived).
// Usage: node subscribe.mjs <ws-url> <api-key> <deviceId> [count=3]
// GRAPHQL_WS_CLIENT=graphql-ws-5 uses graphql-ws 5.10, the strict message validator GraphiQL
// 2.x bundles (it refuses a connection_ack whose payload is null); default: graphql-ws 6.
import WebSocket from 'ws';

const { createClient } = await import(process.env.GRAPHQL_WS_CLIENT || 'graphql-ws');

const [url, key, deviceId, countArg = '3'] = process.argv.slice(2);
if (!url || !key || !deviceId) {
  console.error('usage: node subscribe.mjs <ws-url> <api-key> <deviceId> [count]');
  process.exit(2);
}
const count = Number(countArg);

// The server's Sec-WebSocket-Extensions, with its parameters (ws's `extensions` names them
// only): printed once connected.
let negotiated = '';
class Recorded extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on('upgrade', (response) => {
      negotiated = response.headers['sec-websocket-extensions'] || '';
    });
  }
}

const client = createClient({
  url,
  webSocketImpl: Recorded,
  connectionParams: { Authorization: `Bearer ${key}` },
  retryAttempts: 0,
  lazy: true,
  on: { connected: () => console.log(JSON.stringify({ extensions: negotiated })) },
});

const query = `subscription($ids: [ID!]) {
  shadowChanged(deviceIds: $ids) { kind deviceId version shadow { version reported } }
}`;

// A safety net: the test bounds its own wait, but never leave a stray process behind.
const watchdog = setTimeout(() => {
  console.error('timed out waiting for events');
  process.exit(3);
}, 60_000);

// client.subscribe with a sink, as every 5.x and 6.x client has (iterate came in 5.12).
function events(payload) {
  const queue = [];
  let wake = null;
  const push = (item) => { queue.push(item); if (wake) { wake(); wake = null; } };
  const dispose = client.subscribe(payload, {
    next: (value) => push({ value }),
    error: (error) => push({ error }),
    complete: () => push({ done: true }),
  });
  return {
    dispose,
    async next() {
      while (queue.length === 0) await new Promise((resolve) => { wake = resolve; });
      const item = queue.shift();
      if (item.error) throw item.error;
      return item;
    },
  };
}

let received = 0;
const stream = events({ query, variables: { ids: [deviceId] } });
try {
  for (;;) {
    const { value: result, done } = await stream.next();
    if (done) break;
    if (result.errors) {
      console.error(JSON.stringify(result.errors));
      process.exitCode = 4;
      break;
    }
    console.log(JSON.stringify(result.data.shadowChanged));
    received += 1;
    if (received >= count) break;
  }
} catch (err) {
  // A refused or broken connection errors with its close event; a refused message (the
  // client's validator) with an Error.
  const detail = err && err.code !== undefined ? `closed ${err.code} ${err.reason}` : String(err);
  console.error(detail);
  process.exitCode = 5;
} finally {
  stream.dispose(); // ends the subscription: the client sends `complete`
  await client.dispose();
  clearTimeout(watchdog);
}
