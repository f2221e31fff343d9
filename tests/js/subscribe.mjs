// Subscribes to shadowChanged with the graphql-ws reference client and prints each event
// as one JSON line on stdout, then exits after COUNT events (0 when they all arrived).
// Usage: node subscribe.mjs <ws-url> <api-key> <deviceId> [count=3]
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, key, deviceId, countArg = '3'] = process.argv.slice(2);
if (!url || !key || !deviceId) {
  console.error('usage: node subscribe.mjs <ws-url> <api-key> <deviceId> [count]');
  process.exit(2);
}
const count = Number(countArg);

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${key}` },
  retryAttempts: 0,
  lazy: true,
});

const query = `subscription($ids: [ID!]) {
  shadowChanged(deviceIds: $ids) { kind deviceId version shadow { version reported } }
}`;

// A safety net: the test bounds its own wait, but never leave a stray process behind.
const watchdog = setTimeout(() => {
  console.error('timed out waiting for events');
  process.exit(3);
}, 60_000);

let received = 0;
try {
  for await (const result of client.iterate({ query, variables: { ids: [deviceId] } })) {
    if (result.errors) {
      console.error(JSON.stringify(result.errors));
      process.exitCode = 4;
      break;
    }
    console.log(JSON.stringify(result.data.shadowChanged));
    received += 1;
    if (received >= count) break; // ends the subscription: the client sends `complete`
  }
} catch (err) {
  // A refused or broken connection rejects with its close event.
  const detail = err && err.code !== undefined ? `closed ${err.code} ${err.reason}` : String(err);
  console.error(detail);
  process.exitCode = 5;
} finally {
  await client.dispose();
  clearTimeout(watchdog);
}
