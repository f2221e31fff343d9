// The fleet console: plain JavaScript over the gateway's public GraphQL API only
// (POST /graphql with the user's key; live updates over the SSE transport, graphql-sse's
// distinct connections mode). No library, no CDN: everything is served by the gateway.
'use strict';

const config = JSON.parse(document.getElementById('console-config').textContent);
const app = document.getElementById('app');
const liveBadge = document.getElementById('live');
let key = config.key || sessionStorage.getItem('iotsphere-key') || '';
let stopLive = [];  // the current view's open streams

const esc = (text) => String(text ?? '').replace(/[&<>"']/g,
  (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const ago = (iso) => {
  if (!iso) return 'never';
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
};

async function gql(query, variables = {}) {
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/graphql-response+json',
      Authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
}

// One subscription over SSE: `event: next` frames until `event: complete`; reconnects
// (with a fresh SNAPSHOT, as the protocol promises) when the stream drops.
function subscribe(query, variables, onData) {
  const controller = new AbortController();
  let stopped = false;
  const run = async () => {
    while (!stopped) {
      try {
        const response = await fetch('/graphql', {
          method: 'POST', signal: controller.signal,
          headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream',
            Authorization: `Bearer ${key}` },
          body: JSON.stringify({ query, variables }),
        });
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        liveBadge.classList.add('on');
        liveBadge.textContent = 'live';
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (\w+)/m.exec(frame);
            const data = /^data: (.*)$/m.exec(frame);
            if (event && event[1] === 'next' && data) onData(JSON.parse(data[1]));
          }
        }
      } catch (error) {
        if (stopped) return;
      }
      liveBadge.classList.remove('on');
      liveBadge.textContent = 'reconnecting';
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  };
  run();
  return () => { stopped = true; controller.abort(); };
}

// -- the fleet table ----------------------------------------------------------------

const FLEET = `query($first: Int, $orderBy: DeviceOrder, $filter: DeviceFilter) {
  devices(first: $first, orderBy: $orderBy, filter: $filter) {
    totalCount
    edges { node { id name type status lastSeenAt asset { name } shadow { version reported } } }
  }
  fleetOverview(filter: $filter) { total byStatus { status count } }
}`;
const SHADOWS = `subscription {
  shadowChanged { kind deviceId version shadow { version reported } } }`;
const fleetState = { orderBy: 'NAME', direction: 'ASC', status: '', search: '' };

function shadowText(shadow) {
  return shadow ? `v${shadow.version} ${JSON.stringify(shadow.reported)}` : '—';
}

async function showFleet() {
  app.innerHTML = `
    <div class="counts" id="counts" aria-live="polite"></div>
    <form class="controls" id="controls">
      <label>Search name <input id="search" value="${esc(fleetState.search)}"></label>
      <label>Status <select id="status">
        ${['', 'PROVISIONED', 'ACTIVE', 'SUSPENDED', 'DECOMMISSIONED'].map((s) =>
          `<option value="${s}" ${s === fleetState.status ? 'selected' : ''}>${s || 'any'}</option>`).join('')}
      </select></label>
      <label>Order by <select id="order">
        ${['NAME', 'STATUS', 'TYPE', 'LAST_SEEN_AT', 'CREATED_AT'].map((o) =>
          `<option ${o === fleetState.orderBy ? 'selected' : ''}>${o}</option>`).join('')}
      </select></label>
      <label>Direction <select id="direction">
        ${['ASC', 'DESC'].map((d) => `<option ${d === fleetState.direction ? 'selected' : ''}>${d}</option>`).join('')}
      </select></label>
      <button type="submit">Apply</button>
    </form>
    <table><caption class="muted" id="caption"></caption>
      <thead><tr><th>Name</th><th>Status</th><th>Type</th><th>Asset</th><th>Last seen</th>
        <th>Shadow (reported)</th></tr></thead>
      <tbody id="rows"><tr><td colspan="6" class="muted">Loading…</td></tr></tbody></table>`;
  document.getElementById('controls').addEventListener('submit', (event) => {
    event.preventDefault();
    fleetState.search = document.getElementById('search').value.trim();
    fleetState.status = document.getElementById('status').value;
    fleetState.orderBy = document.getElementById('order').value;
    fleetState.direction = document.getElementById('direction').value;
    loadFleet();
  });
  await loadFleet();
  stopLive.push(subscribe(SHADOWS, {}, (result) => {
    const event = result.data && result.data.shadowChanged;
    if (!event) return;
    const row = document.querySelector(`tr[data-device="${CSS.escape(event.deviceId)}"]`);
    if (!row) return;
    const cell = row.querySelector('td.shadow');
    const text = shadowText(event.shadow);
    if (cell.textContent !== text) {
      cell.textContent = text;
      cell.dataset.version = event.version ?? '';
      if (event.kind !== 'SNAPSHOT') {
        row.classList.remove('flash');
        void row.offsetWidth;  // restarts the animation
        row.classList.add('flash');
      }
    }
  }));
}

async function loadFleet() {
  const filter = {};
  if (fleetState.status) filter.status = [fleetState.status];
  if (fleetState.search) filter.search = fleetState.search;
  const body = await gql(FLEET, { first: 100, orderBy: { field: fleetState.orderBy,
    direction: fleetState.direction }, filter: Object.keys(filter).length ? filter : null });
  const rows = document.getElementById('rows');
  if (!body.data) {
    rows.innerHTML = `<tr><td colspan="6" class="error">${esc(body.errors?.[0]?.message)}</td></tr>`;
    return;
  }
  const { devices, fleetOverview } = body.data;
  document.getElementById('counts').innerHTML =
    `<div class="count"><b>${fleetOverview.total}</b>devices</div>` +
    fleetOverview.byStatus.map((s) =>
      `<div class="count"><b>${s.count}</b>${esc(s.status.toLowerCase())}</div>`).join('');
  document.getElementById('caption').textContent =
    `${devices.edges.length} of ${devices.totalCount} shown`;
  rows.innerHTML = devices.edges.map(({ node: d }) => `
    <tr data-device="${esc(d.id)}">
      <td><a href="#/device/${esc(d.id)}">${esc(d.name)}</a></td>
      <td><span class="status ${esc(d.status)}">${esc(d.status)}</span></td>
      <td>${esc(d.type)}</td><td>${esc(d.asset?.name ?? '—')}</td>
      <td title="${esc(d.lastSeenAt ?? '')}">${ago(d.lastSeenAt)}</td>
      <td class="shadow" data-version="${d.shadow?.version ?? ''}">${esc(shadowText(d.shadow))}</td>
    </tr>`).join('') || '<tr><td colspan="6" class="muted">No device matches.</td></tr>';
}

// -- the device page ------------------------------------------------------------------

const DEVICE = `query($id: ID!) {
  device(id: $id) { id name type status lastSeenAt asset { name }
    latest { metric time value } shadow { version reported desired delta } }
}`;
const SERIES = `query($id: ID!, $metric: String!, $from: DateTime!) {
  device(id: $id) { telemetry(metric: $metric, from: $from, bucket: "5m", aggregate: AVG) {
    points { time value } } }
}`;
const TAIL = `subscription($ids: [ID!]!, $metrics: [String!]) {
  telemetryChanged(deviceIds: $ids, metrics: $metrics) { kind readings { metric time value } } }`;
const UPDATE = `mutation($id: ID!, $desired: JSON!, $expected: Int) {
  updateShadow(deviceId: $id, desired: $desired, expectedVersion: $expected) {
    version reported desired delta } }`;

function drawChart(container, points) {
  const w = 900, h = 240, pad = 36;
  const data = points.filter((p) => p.value !== null);
  if (!data.length) { container.innerHTML = '<p class="muted">No readings in 24 h.</p>'; return; }
  const xs = data.map((p) => Date.parse(p.time));
  const ys = data.map((p) => p.value);
  const x0 = Math.min(...xs), x1 = Math.max(Date.now(), ...xs);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (t) => pad + ((t - x0) / (x1 - x0 || 1)) * (w - 2 * pad);
  const sy = (v) => h - pad + 8 - ((v - y0) / (y1 - y0)) * (h - 2 * pad);
  const path = data.map((p, i) => `${i ? 'L' : 'M'}${sx(xs[i]).toFixed(1)},${sy(p.value).toFixed(1)}`).join('');
  const last = data[data.length - 1];
  container.innerHTML = `
    <svg viewBox="0 0 ${w} ${h}" role="img" aria-label="24 hour chart"
         data-points="${data.length}" data-last-value="${last.value}" data-last-time="${esc(last.time)}">
      <line class="axis" x1="${pad}" y1="${h - pad + 8}" x2="${w - pad}" y2="${h - pad + 8}"/>
      <text x="${pad}" y="${h - 6}">${esc(new Date(x0).toLocaleString())}</text>
      <text x="${w - pad}" y="${h - 6}" text-anchor="end">now</text>
      <text x="4" y="${sy(y1) + 4}">${y1.toFixed(1)}</text>
      <text x="4" y="${sy(y0) + 4}">${y0.toFixed(1)}</text>
      <path class="line" d="${path}"/>
      <circle class="tail" cx="${sx(xs[xs.length - 1])}" cy="${sy(last.value)}" r="4"/>
      <text x="${w - pad}" y="16" text-anchor="end" id="last-value">last ${last.value} at ${esc(new Date(last.time).toLocaleTimeString())}</text>
    </svg>`;
}

async function showDevice(id) {
  const from = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  const body = await gql(DEVICE, { id });
  const d = body.data?.device;
  if (!d) { app.innerHTML = `<p class="error">${esc(body.errors?.[0]?.message ?? 'Not found')}</p>`; return; }
  const metrics = (d.latest || []).map((r) => r.metric);
  const metric = metrics[0];
  app.innerHTML = `
    <p><a href="#/">← Fleet</a></p>
    <div class="panel"><h2>${esc(d.name)}</h2>
      <span class="status ${esc(d.status)}">${esc(d.status)}</span> · ${esc(d.type)} ·
      ${esc(d.asset?.name ?? 'no asset')} · last seen <span title="${esc(d.lastSeenAt ?? '')}">${ago(d.lastSeenAt)}</span></div>
    <div class="panel chart"><h2>24 h of <select id="metric" aria-label="Metric">
      ${metrics.map((m) => `<option>${esc(m)}</option>`).join('')}</select>
      <span class="muted">(5-minute averages, then live readings)</span></h2>
      <div id="chart"><p class="muted">${metric ? 'Loading…' : 'No readings yet.'}</p></div></div>
    <div class="grid">
      <div class="panel"><h2>Shadow <span class="muted" id="shadow-version"></span></h2>
        <h3 class="muted">Reported</h3><pre id="reported"></pre>
        <h3 class="muted">Delta (desired, not yet reported)</h3><pre id="delta"></pre></div>
      <form class="panel" id="desired-form"><h2>Desired state</h2>
        <label>Desired (JSON merge patch)<textarea id="desired"></textarea></label>
        <label>Expected version <input id="expected" type="number" min="0"></label>
        <p><button type="submit">Save desired state</button></p>
        <div id="save-result" role="status" aria-live="polite"></div></form>
    </div>`;
  const showShadow = (shadow) => {
    document.getElementById('shadow-version').textContent = shadow ? `version ${shadow.version}` : 'none yet';
    document.getElementById('reported').textContent = JSON.stringify(shadow?.reported ?? {}, null, 2);
    document.getElementById('delta').textContent = JSON.stringify(shadow?.delta ?? {}, null, 2);
  };
  showShadow(d.shadow);
  document.getElementById('desired').value = JSON.stringify(d.shadow?.desired ?? {}, null, 2);
  document.getElementById('expected').value = d.shadow?.version ?? '';
  stopLive.push(subscribe(`subscription($ids: [ID!]) { shadowChanged(deviceIds: $ids) {
      version shadow { version reported desired delta } } }`, { ids: [id] }, (result) => {
    const event = result.data?.shadowChanged;
    if (event) showShadow(event.shadow);
  }));
  document.getElementById('desired-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const out = document.getElementById('save-result');
    let desired;
    try { desired = JSON.parse(document.getElementById('desired').value); } catch (error) {
      out.innerHTML = `<div class="conflict">Not JSON: ${esc(error.message)}</div>`; return;
    }
    const expectedText = document.getElementById('expected').value;
    const result = await gql(UPDATE, { id, desired,
      expected: expectedText === '' ? null : Number(expectedText) });
    const error = result.errors?.[0];
    if (error && error.extensions?.code === 'VERSION_CONFLICT') {
      const current = await gql(DEVICE, { id });
      const now = current.data?.device?.shadow;
      out.innerHTML = `<div class="conflict" id="conflict"><strong>Conflict:</strong> you edited
        version ${esc(expectedText)}, but the shadow is at version ${esc(now?.version)} now.
        Nothing was saved. Review the current state and save again.
        <pre>${esc(JSON.stringify(now?.desired ?? {}, null, 2))}</pre>
        <button type="button" id="take-current">Use version ${esc(now?.version)}</button></div>`;
      document.getElementById('take-current').addEventListener('click', () => {
        document.getElementById('expected').value = now?.version ?? '';
        out.innerHTML = '';
      });
    } else if (error) {
      out.innerHTML = `<div class="conflict">${esc(error.extensions?.code)}: ${esc(error.message)}</div>`;
    } else {
      const shadow = result.data.updateShadow;
      document.getElementById('expected').value = shadow.version;
      out.innerHTML = `<div class="saved">Saved: version ${shadow.version}.</div>`;
      showShadow(shadow);
    }
  });
  if (!metric) return;
  let points = [];
  const chart = document.getElementById('chart');
  const loadSeries = async (name) => {
    stopLive.filter((s) => s.tail).forEach((s) => s());
    const series = await gql(SERIES, { id, metric: name, from });
    points = series.data?.device?.telemetry?.points ?? [];
    drawChart(chart, points);
    const stop = subscribe(TAIL, { ids: [id], metrics: [name] }, (result) => {
      const reading = result.data?.telemetryChanged?.readings?.find((r) => r.metric === name);
      if (!reading) return;
      const lastTime = points.length ? Date.parse(points[points.length - 1].time) : 0;
      if (Date.parse(reading.time) <= lastTime && result.data.telemetryChanged.kind !== 'SNAPSHOT') return;
      if (Date.parse(reading.time) > lastTime) points.push({ time: reading.time, value: reading.value });
      drawChart(chart, points);
    });
    stop.tail = true;
    stopLive.push(stop);
  };
  document.getElementById('metric').addEventListener('change', (e) => loadSeries(e.target.value));
  await loadSeries(metric);
}

// -- routing ----------------------------------------------------------------------------

function route() {
  stopLive.forEach((stop) => stop());
  stopLive = [];
  const match = /^#\/device\/([\w-]+)/.exec(location.hash);
  if (!key) { showKeyForm(); return; }
  if (match) showDevice(match[1]); else showFleet();
}

function showKeyForm() {
  app.innerHTML = `<form class="panel" id="key-form"><h2>API key</h2>
    <label>Your key (kept in this tab only)<input id="key" autocomplete="off" size="60"></label>
    <p><button type="submit">Open the console</button></p></form>`;
  document.getElementById('key').focus();
  document.getElementById('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    key = document.getElementById('key').value.trim();
    sessionStorage.setItem('iotsphere-key', key);
    route();
  });
}

window.addEventListener('hashchange', route);
route();
