// Runs graphql-http's GraphQL-over-HTTP server audits against a live gateway and prints
// one JSON array of results on stdout (tests/http/test_graphql_http.py reads it).
// usage: node audit.mjs http://127.0.0.1:PORT/graphql API_KEY
import { auditServer } from 'graphql-http';

const [url, key] = process.argv.slice(2);

// Every audit request carries the key: the gateway answers 401 to anything without one.
function fetchWithKey(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${key}`);
  return fetch(input, { ...init, headers });
}

const results = await auditServer({ url, fetchFn: fetchWithKey });
const report = [];
for (const result of results) {
  const entry = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    entry.reason = result.reason;
    entry.httpStatus = result.response.status;
    entry.contentType = result.response.headers.get('content-type');
    try {
      entry.body = (await result.response.text()).slice(0, 500);
    } catch {
      entry.body = null; // the audit already read it
    }
  }
  report.push(entry);
}
process.stdout.write(JSON.stringify(report) + '\n');
