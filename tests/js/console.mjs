// Drives the gateway's fleet console (/console) in headless Chromium (puppeteer-core,
// Debian's chromium) and prints one JSON report on stdout for
// tests/http/test_console_browser.py to judge:
//   requests, foreign   every URL the page asked for; those not on the gateway's origin
//                       (aborted, and listed in foreign)
//   rows                the fleet table's device ids
//   shadowSeen          whether an outside updateShadow showed in the table within 1 s
//   chartSeen           whether a reading POSTed to /ingest showed on the chart within 1 s
//   conflict            the conflict panel's text after saving with a stale expectedVersion
//   errors              page errors and console errors
// usage: node console.mjs <chromium> <http://host:port> <api-key> <device-id> [screenshot-dir]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

const [executablePath, origin, key, deviceId, shots] = process.argv.slice(2);
const report = { requests: [], foreign: [], errors: [] };
const profile = mkdtempSync(join(tmpdir(), 'iotsphere-console-'));
const watchdog = setTimeout(() => { console.error('timed out'); process.exit(3); }, 150_000);
const WITHIN = 1000;  // ms: the bar for live updates

const gql = async (query, variables) => {
  const response = await fetch(`${origin}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
};

const browser = await puppeteer.launch({
  executablePath, headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--user-data-dir=${profile}`],
});
const own = new URL(origin);
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1366, height: 800 });  // a laptop screen
  await page.setRequestInterception(true);
  page.on('request', (request) => {
    const url = request.url();
    if (url.startsWith('data:')) { request.continue(); return; }
    report.requests.push(url);
    if (new URL(url).host === own.host) request.continue();
    else { report.foreign.push(url); request.abort(); }
  });
  page.on('pageerror', (error) => report.errors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') report.errors.push(message.text());
  });

  // The fleet table, with the dev key prefilled (a loopback browser).
  await page.goto(`${origin}/console`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('tr[data-device]', { timeout: 30_000 });
  report.rows = await page.$$eval('tr[data-device]', (rows) => rows.map((r) => r.dataset.device));
  await page.waitForFunction(() => document.getElementById('live').classList.contains('on'),
    { timeout: 30_000 });
  await new Promise((resolve) => setTimeout(resolve, 300));  // the snapshot settles

  // A shadow change made from outside the page shows in its row.
  const marker = Math.round(Math.random() * 1e6);
  const sent = Date.now();
  const update = await gql(`mutation($d: ID!, $r: JSON!) { updateShadow(deviceId: $d,
    reported: $r) { version } }`, { d: deviceId, r: { marker } });
  report.update = update;
  report.shadowSeen = await page.waitForFunction((id, text) => {
    const cell = document.querySelector(`tr[data-device="${id}"] td.shadow`);
    return cell && cell.textContent.includes(text);
  }, { timeout: WITHIN }, deviceId, String(marker)).then(() => true, () => false);
  report.shadowMs = Date.now() - sent;
  if (shots) await page.screenshot({ path: join(shots, 'console.png') });

  // The device page: the 24 h chart, then a reading posted to /ingest arrives on it.
  await page.goto(`${origin}/console#/device/${deviceId}`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#chart svg[data-points]', { timeout: 30_000 });
  report.points = await page.$eval('#chart svg', (svg) => Number(svg.dataset.points));
  await new Promise((resolve) => setTimeout(resolve, 500));  // the live tail's snapshot
  const value = 61.75;  // within the seeded range, so the screenshot reads well
  const metric = await page.$eval('#metric', (select) => select.value);
  const posted = Date.now();
  const ingest = await fetch(`${origin}/ingest`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-ndjson', Authorization: `Bearer ${key}` },
    body: JSON.stringify({ deviceId, metric, time: new Date().toISOString(), value }),
  });
  report.ingest = await ingest.json();
  report.chartSeen = await page.waitForFunction((v) => {
    const svg = document.querySelector('#chart svg');
    return svg && svg.dataset.lastValue === v;
  }, { timeout: WITHIN }, String(value)).then(() => true, () => false);
  report.chartMs = Date.now() - posted;
  if (shots) await page.screenshot({ path: join(shots, 'device.png'), fullPage: true });

  // A stale expectedVersion: someone else saves first; saving shows the conflict.
  await page.focus('#desired');
  await page.$eval('#desired', (area) => { area.value = '{"mode": "eco"}'; });
  await gql(`mutation($d: ID!) { updateShadow(deviceId: $d, desired: {mode: "boost"}) {
    version } }`, { d: deviceId });
  await page.click('#desired-form button[type=submit]');
  await page.waitForSelector('#conflict', { timeout: 10_000 }).catch(() => null);
  report.conflict = await page.$eval('#conflict', (el) => el.textContent).catch(() => null);
  if (shots) await page.screenshot({ path: join(shots, 'conflict.png'), fullPage: true });
  const after = await gql(`query($d: ID!) { shadow(deviceId: $d) { desired } }`, { d: deviceId });
  report.desiredAfter = after.data?.shadow?.desired ?? null;
} catch (error) {
  report.errors.push(`driver: ${error && error.stack ? error.stack : error}`);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(watchdog);
}
console.log(JSON.stringify(report));
