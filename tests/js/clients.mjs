// Real frontend clients from npm against a live gateway (tests/http/test_real_clients.py).
// Each mode prints JSON lines on stdout and exits 0 when it is done.
//
//   node clients.mjs sse <http-url> <key> <deviceId> [count]       graphql-sse, distinct connections
//   node clients.mjs multipart <http-url> <key> <deviceId> [count] Apollo Client 4, multipart subscription
//   node clients.mjs apollo-cache <http-url> <key> <deviceId>      Apollo Client 4: a mutation's result updates the cache
//   node clients.mjs urql-pages <http-url> <key>                   urql: an ordered, filtered page forward, then back
//   node clients.mjs apollo-live-cache <http-url> <key> <deviceId> [count]
//                                          Apollo Client 4: shadowChanged events update a watched query
//                                          through the normalized cache (leaves after `count` versions)
//
// Subscription modes print one line per event ({kind, deviceId, version}) and leave after
// `count`; the test makes the changes between events.
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { Client as UrqlClient, cacheExchange, fetchExchange } from '@urql/core';
import { createClient as createSseClient } from 'graphql-sse';

const [mode, url, key, deviceId, countArg = '3'] = process.argv.slice(2);
const count = Number(countArg);
const headers = { Authorization: `Bearer ${key}` };
const SUB = `subscription($ids: [ID!]) {
  shadowChanged(deviceIds: $ids) { kind deviceId version shadow { id reported } } }`;

const watchdog = setTimeout(() => {
  console.error('timed out');
  process.exit(3);
}, 60_000);
// urql aborts the fetch of an operation it has finished with (toPromise takes the first
// result); Node reports that abort as an unhandled AbortError. Nothing was lost.
process.on('unhandledRejection', (error) => {
  if (error?.name !== 'AbortError') fail(error);
});
process.on('uncaughtException', (error) => {
  if (error?.name !== 'AbortError') fail(error);
});
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
const done = () => { clearTimeout(watchdog); process.exit(0); };
const fail = (error) => { console.error(error); process.exit(1); };

async function sse() {
  const client = createSseClient({ url, headers, retryAttempts: 0 });
  let seen = 0;
  client.subscribe({ query: SUB, variables: { ids: [deviceId] } }, {
    next: ({ data, errors }) => {
      if (errors) fail(errors);
      const e = data.shadowChanged;
      print({ kind: e.kind, deviceId: e.deviceId, version: e.version });
      if (++seen === count) done();
    },
    error: fail,
    complete: () => {},
  });
}

function apollo(fetchImpl = fetch) {
  return new ApolloClient({
    link: new HttpLink({ uri: url, headers, fetch: fetchImpl }),
    cache: new InMemoryCache(),
  });
}

async function multipart() {
  let seen = 0;
  apollo().subscribe({ query: gql(SUB), variables: { ids: [deviceId] } }).subscribe({
    next: ({ data, error }) => {
      if (error) fail(error);
      const e = data.shadowChanged;
      print({ kind: e.kind, deviceId: e.deviceId, version: e.version });
      if (++seen === count) done();
    },
    error: fail,
  });
}

async function apolloCache() {
  const client = apollo();
  const READ = gql`query($id: ID!) { device(id: $id) { id name shadow { id version desired } } }`;
  const first = await client.query({ query: READ, variables: { id: deviceId } });
  print({ before: first.data.device.shadow });
  // The mutation's result carries Shadow.id: Apollo merges it into the cached Shadow:<id>.
  await client.mutate({
    mutation: gql`mutation($d: ID!) { updateShadow(deviceId: $d, desired: {fan: "high"}) {
      id version desired } }`,
    variables: { d: deviceId },
  });
  const cached = client.readQuery({ query: READ, variables: { id: deviceId } });
  print({ cached: cached.device.shadow });
  done();
}

async function apolloLiveCache() {
  // Every request the client sends, by operation name: the watched query must be fetched
  // once; what follows reaches it through the cache only.
  const sent = {};
  const counting = (input, init) => {
    const name = JSON.parse(init.body).operationName ?? '(anonymous)';
    sent[name] = (sent[name] ?? 0) + 1;
    return fetch(input, init);
  };
  const client = apollo(counting);
  const READ = gql`query DeviceShadow($id: ID!) {
    device(id: $id) { id name shadow { id version reported } } }`;
  // The event carries the Shadow with its id: Apollo writes it to Shadow:<id>, which the
  // watched query's Device:<id>.shadow points to (multipart subscription over HttpLink).
  const LIVE = gql`subscription ShadowLive($ids: [ID!]) {
    shadowChanged(deviceIds: $ids) { kind deviceId version shadow { id version reported } } }`;
  let last = null;
  let versions = 0; // distinct versions the watched query showed; `count` ends the run
  let subscribed = false;
  client.watchQuery({ query: READ, variables: { id: deviceId }, fetchPolicy: 'cache-first' })
    .subscribe({
      next: ({ data, dataState }) => {
        if (dataState !== 'complete') return;
        const shadow = data.device.shadow;
        if (last !== null && shadow.version === last) return;
        last = shadow.version;
        print({ watched: shadow, sent: { ...sent } });
        if (++versions === count) done();
        if (!subscribed) {
          subscribed = true;
          client.subscribe({ query: LIVE, variables: { ids: [deviceId] } }).subscribe({
            next: ({ data: event, error }) => {
              if (error) fail(error);
              if (event.shadowChanged.kind === 'SNAPSHOT') print({ ready: true });
            },
            error: fail,
          });
        }
      },
      error: fail,
    });
}

async function urqlPages() {
  const client = new UrqlClient({
    url, exchanges: [cacheExchange, fetchExchange], fetchOptions: { headers },
  });
  const PAGE = `query($first: Int, $after: String, $last: Int, $before: String) {
    devices(first: $first, after: $after, last: $last, before: $before,
            orderBy: {field: NAME, direction: DESC},
            filter: {or: [{status: [ACTIVE]}, {lastSeenAt: {never: true}}]}) {
      totalCount edges { cursor node { id name } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`;
  const forward = [];
  let after = null;
  for (;;) {
    const { data, error } = await client.query(PAGE, { first: 2, after }).toPromise();
    if (error) fail(error);
    forward.push(...data.devices.edges.map((e) => e.node.name));
    if (!data.devices.pageInfo.hasNextPage) break;
    after = data.devices.pageInfo.endCursor;
  }
  const backward = [];
  let before = null;
  for (;;) {
    const { data, error } = await client.query(PAGE, { last: 2, before }).toPromise();
    if (error) fail(error);
    backward.unshift(...data.devices.edges.map((e) => e.node.name));
    if (!data.devices.pageInfo.hasPreviousPage) break;
    before = data.devices.pageInfo.startCursor;
  }
  print({ forward, backward });
  done();
}

const modes = {
  sse, multipart, 'apollo-cache': apolloCache, 'urql-pages': urqlPages,
  'apollo-live-cache': apolloLiveCache,
};
if (!modes[mode] || !url) {
  console.error('usage: node clients.mjs <sse|multipart|apollo-cache|urql-pages> <url> <key> [deviceId] [count]');
  process.exit(2);
}
modes[mode]().catch(fail);
