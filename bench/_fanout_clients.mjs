// One subscriber process of bench/fanout.py with `--client node`: the same job, commands
// and report as bench/_fanout_clients.py (read its docstring), over Node's `ws` (the
// client graphql-ws uses in Node; permessage-deflate offered as browsers do unless the
// job says `compression: null`), speaking graphql-transport-ws by hand as the Python
// client does: a second strict client at full size, never a replacement for the Python
// client's figures. Tried as a lighter client, it is not one with permessage-deflate
// (about twice the Python client's CPU per event; bench/RESULTS.md). `ws` comes from
// tests/js (npm ci there).
import { createInterface } from 'node:readline';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/js/package.json', import.meta.url));
const WebSocket = require('ws');

const ERROR_SAMPLES = 5;
const emit = (message) => process.stdout.write(JSON.stringify(message) + '\n');

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();
async function command() {
  const { value, done } = await lines.next();
  return done ? null : JSON.parse(value);
}

class Samples {
  constructor() { this.data = new Float64Array(1 << 16); this.length = 0; }
  push(a, b) {
    if (this.length + 2 > this.data.length) {
      const grown = new Float64Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = a;
    this.data[this.length++] = b;
  }
}

const job = await command();
if (job === null) process.exit(1);
const devices = job.devices;
const stride = job.stride || 1;
const subs = [];
for (let i = job.first; i < job.first + job.count * stride; i += stride) {
  subs.push({ index: i, device: devices[i % devices.length], ws: null, ready: false,
    setupMs: 0, firstVersion: null, last: null, lastAt: 0, events: 0, snapshots: 0,
    coalesced: 0, backwards: 0, errors: 0, closed: null, convergedAt: null });
}
const samples = new Samples();
const maxMs = {};
const failures = [];
const errorSamples = [];
let finals = null;
let stoppedAt = 0;
let pending = 0;
let converged = null; // resolves when every subscriber holds its final version
let closing = false;
const sample = (text) => { if (errorSamples.length < ERROR_SAMPLES) errorSamples.push(text); };

function versionWritten(event) {
  if ('readings' in event) {
    const readings = event.readings;
    if (!readings || readings.length === 0) return [null, null];
    return [Number(readings[0].value), Date.parse(readings[0].time)];
  }
  const written = ((event.shadow || {}).reported || {}).writtenAtMs;
  return [event.version ?? null, typeof written === 'number' ? written : null];
}

function eventOf(message) {
  if (message.type !== 'next') return null;
  const payload = message.payload || {};
  if (payload.errors) return null;
  return (payload.data || {})[job.field] || null;
}

function onNext(sub, message, now) {
  const payload = message.payload || {};
  if (payload.errors) {
    sub.errors += 1;
    sample(`subscriber ${sub.index}: errors ${JSON.stringify(payload.errors).slice(0, 300)}`);
    return;
  }
  const event = (payload.data || {})[job.field] || {};
  const [version, written] = versionWritten(event);
  const kind = event.kind;
  const last = sub.last;
  if (kind === 'SNAPSHOT') {
    sub.snapshots += 1;
  } else {
    sub.events += 1;
    if (written !== null) {
      const ms = now * 1e3 - written;
      samples.push(now, ms);
      if (ms > (maxMs[sub.device] || 0)) maxMs[sub.device] = ms;
    }
  }
  if (version !== null) {
    if (last !== null) {
      if (version > last + 1) sub.coalesced += version - last - 1;
      else if (version <= last && (kind !== 'SNAPSHOT' || version < last)) sub.backwards += 1;
    }
    if (last === null || version > last) { sub.last = version; sub.lastAt = now; }
  }
  if (finals !== null && sub.convergedAt === null && sub.last === finals[sub.device]) {
    sub.convergedAt = sub.lastAt;
    pending -= 1;
    if (pending <= 0 && converged) converged();
  }
}

function open(sub) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const ws = new WebSocket(job.url, ['graphql-transport-ws'],
      { perMessageDeflate: job.compression === 'deflate' });
    sub.ws = ws;
    let state = 'ack';
    ws.on('open', () => ws.send(JSON.stringify(
      { type: 'connection_init', payload: { Authorization: `Bearer ${job.key}` } })));
    ws.on('message', (raw) => {
      const now = Date.now() / 1e3;
      const message = JSON.parse(raw.toString());
      if (state === 'ack') {
        if (message.type !== 'connection_ack') return reject(new Error(`expected connection_ack, got ${raw}`));
        state = 'snapshot';
        ws.send(JSON.stringify({ id: '1', type: 'subscribe',
          payload: { query: job.query, variables: { ids: [sub.device] } } }));
      } else if (state === 'snapshot') {
        const event = eventOf(message);
        if (!event || event.kind !== 'SNAPSHOT') {
          return reject(new Error(`expected a SNAPSHOT first, got ${String(raw).slice(0, 300)}`));
        }
        sub.setupMs = performance.now() - t0;
        sub.firstVersion = sub.last = versionWritten(event)[0];
        sub.lastAt = now;
        sub.snapshots = 1;
        sub.ready = true;
        state = 'live';
        resolve();
      } else if (message.type === 'next') {
        onNext(sub, message, now);
      } else if (message.type === 'ping') {
        ws.send('{"type":"pong"}');
      } else if (message.type !== 'pong') {
        sub.errors += 1;
        sample(`subscriber ${sub.index}: unexpected ${String(raw).slice(0, 300)}`);
      }
    });
    ws.on('error', (error) => {
      if (state !== 'live') reject(error);
      else if (!closing && sub.closed === null) sub.closed = `error: ${error.message}`;
    });
    ws.on('close', (code) => {
      if (state !== 'live') reject(new Error(`closed ${code} during setup`));
      else if (!closing && sub.closed === null) {
        sub.closed = `closed code=${code}`;
        sample(`subscriber ${sub.index}: ${sub.closed}`);
      }
    });
  });
}

async function openAll() {
  const started = performance.now();
  let next = 0;
  async function worker() {
    while (next < subs.length) {
      const sub = subs[next++];
      let timer;
      try {
        await Promise.race([open(sub), new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('step timeout')), job.step_timeout * 1e3);
        })]);
      } catch (error) {
        failures.push(`subscriber ${sub.index}: ${error.message}`);
        if (sub.ws) sub.ws.terminate();
        sub.ws = null;
      } finally {
        clearTimeout(timer);
      }
    }
  }
  await Promise.all(Array.from({ length: job.parallel }, worker));
  return (performance.now() - started) / 1e3;
}

async function converge(versions, stopped, within) {
  stoppedAt = stopped;
  finals = versions;
  pending = 0;
  for (const sub of subs) {
    if (sub.last !== null && sub.last === finals[sub.device]) sub.convergedAt = sub.lastAt;
    else if (sub.ws !== null && sub.closed === null) pending += 1;
  }
  const started = performance.now();
  if (pending > 0) {
    await new Promise((resolve) => {
      converged = resolve;
      setTimeout(resolve, within * 1e3);
    });
  }
  return (performance.now() - started) / 1e3;
}

function report(connectS, waitedS) {
  const connected = subs.filter((s) => s.ready);
  const laggards = connected.filter((s) => s.convergedAt === null).map((s) => ({
    index: s.index, device: s.device, last: s.last, final: finals[s.device] ?? null,
    closed: s.closed }));
  const sum = (f) => connected.reduce((total, s) => total + f(s), 0);
  writeFileSync(job.samples, Buffer.from(samples.data.buffer, 0, samples.length * 8));
  const cpu = process.cpuUsage();
  return {
    event: 'report',
    subscribers: subs.length,
    connected: connected.length,
    events: sum((s) => s.events),
    snapshots: sum((s) => s.snapshots),
    extra_snapshots: sum((s) => s.snapshots - 1),
    coalesced: sum((s) => s.coalesced),
    expected: sum((s) => (finals[s.device] || 0) - (s.firstVersion || 0)),
    backwards: sum((s) => s.backwards),
    errors: sum((s) => s.errors),
    closed: sum((s) => (s.closed !== null ? 1 : 0)),
    converged: sum((s) => (s.convergedAt !== null ? 1 : 0)),
    convergence_ms: connected.filter((s) => s.convergedAt !== null)
      .map((s) => Math.max(0, (s.convergedAt - stoppedAt) * 1e3)),
    laggards: laggards.slice(0, 20),
    laggard_count: laggards.length,
    ahead: sum((s) => (s.last !== null && s.last > (finals[s.device] ?? s.last) ? 1 : 0)),
    samples: samples.length / 2,
    max_ms_by_device: maxMs,
    connect_s: connectS,
    waited_s: waitedS,
    error_samples: errorSamples,
    cpu_s: (cpu.user + cpu.system) / 1e6,
    maxrss_kb: process.resourceUsage().maxRSS,
  };
}

const connectS = await openAll();
const setups = subs.filter((s) => s.ready).map((s) => Math.round(s.setupMs * 1e3) / 1e3);
emit({ event: 'ready', connected: setups.length, failed: failures.length,
  failures: failures.slice(0, ERROR_SAMPLES), setup_ms: setups, connect_s: connectS,
  nofile: null });
let waited = 0;
for (let cmd = await command(); cmd !== null; cmd = await command()) {
  if (cmd.cmd === 'final') {
    waited = await converge(cmd.versions, Number(cmd.stopped_at), Number(cmd.timeout));
    emit(report(connectS, waited));
  } else if (cmd.cmd === 'close') {
    break;
  }
}
closing = true;
for (const sub of subs) if (sub.ws) sub.ws.terminate();
process.exit(0);
