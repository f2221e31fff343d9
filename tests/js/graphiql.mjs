// Drives the gateway's GraphiQL page in headless Chromium over the DevTools protocol
// (puppeteer-core, no bundled browser) and prints one JSON report on stdout for
// tests/http/test_graphiql_browser.py to judge:
//   requests    every URL the page asked for (each one was let through only if it was
//               the gateway's own origin; anything else was aborted and listed in foreign)
//   headers     the headers editor's text as the page opened (the prefilled key)
//   explorer    whether the Explorer plugin's panel opened and listed the Query fields
//   query       the response pane after running a typed query
//   events      subscription events the response pane showed, in order
//   errors      page errors and console errors
// usage: node graphiql.mjs <chromium> <http://host:port> <api-key> <device-id> <query>
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

const [executablePath, origin, key, deviceId, typedQuery] = process.argv.slice(2);
const report = { requests: [], foreign: [], errors: [], events: [] };
const profile = mkdtempSync(join(tmpdir(), 'iotsphere-chromium-'));
const watchdog = setTimeout(() => {
  console.error('timed out');
  process.exit(3);
}, 120_000);

const browser = await puppeteer.launch({
  executablePath,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--user-data-dir=${profile}`,
  ],
});

const own = new URL(origin);
const isOwn = (url) => {
  const u = new URL(url);
  return u.host === own.host && ['http:', 'ws:'].includes(u.protocol);
};

try {
  const page = await browser.newPage();
  await page.setRequestInterception(true);
  page.on('request', (request) => {
    const url = request.url();
    if (url.startsWith('data:')) { // inlined fonts: nothing leaves the page
      request.continue();
      return;
    }
    report.requests.push(url);
    if (isOwn(url)) {
      request.continue();
    } else {
      report.foreign.push(url);
      request.abort();
    }
  });
  // WebSockets bypass request interception: watch them over the DevTools protocol.
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  cdp.on('Network.webSocketCreated', ({ url }) => {
    report.requests.push(url);
    if (!isOwn(url)) report.foreign.push(url);
  });
  page.on('pageerror', (error) => report.errors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') {
      const where = message.location() && message.location().url;
      report.errors.push(where ? `${message.text()} (${where})` : message.text());
    }
  });

  await page.goto(`${origin}/graphql`, { waitUntil: 'networkidle0' });
  await page.waitForSelector('.graphiql-query-editor .CodeMirror');

  const editorText = (selector) => page.evaluate((s) => {
    const element = document.querySelector(s);
    return element && element.CodeMirror ? element.CodeMirror.getValue() : null;
  }, selector);
  // The variables and headers editors (one of them hidden).
  report.tools = await page.evaluate(() => Array.from(
    document.querySelectorAll('.graphiql-editor-tool .CodeMirror'),
    (element) => element.CodeMirror.getValue(),
  ));

  // The Explorer: its sidebar button opens a panel listing the root fields.
  const explorerButton = await page.$('button[aria-label="Show GraphiQL Explorer"]');
  if (explorerButton) {
    await explorerButton.click();
    await page.waitForSelector('.graphiql-explorer-root', { timeout: 10_000 }).catch(() => null);
    report.explorer = await page.evaluate(() => {
      const root = document.querySelector('.graphiql-explorer-root');
      return root ? root.textContent : null;
    });
  }

  // Typed as a user types: the editor's own key handling (brackets closed as typed are
  // stepped over) and GraphiQL's debounced parse of the operation, then the Run button.
  const run = async (text) => {
    await page.click('.graphiql-query-editor .CodeMirror');
    await page.keyboard.down('Control');
    await page.keyboard.press('KeyA');
    await page.keyboard.up('Control');
    await page.keyboard.press('Backspace');
    await page.keyboard.type(text);
    await page.keyboard.press('Escape'); // closes an autocompletion list, if one opened
    report.typed = report.typed || [];
    report.typed.push(await editorText('.graphiql-query-editor .CodeMirror'));
    await new Promise((resolve) => setTimeout(resolve, 500));
    await page.click('.graphiql-execute-button');
  };
  const response = () => editorText('.graphiql-response .CodeMirror');
  const waitForResponse = async (test, timeout = 30_000) => {
    const deadline = Date.now() + timeout;
    for (;;) {
      const text = await response();
      if (text && test(text)) return text;
      if (Date.now() > deadline) return text;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  // A query typed into the editor.
  await run(typedQuery);
  report.query = await waitForResponse((text) => text.includes('"data"') || text.includes('"errors"'));

  // A subscription: the page shows the SNAPSHOT, then an UPDATED event after a mutation
  // made outside the page.
  await run(`subscription { shadowChanged(deviceIds: ["${deviceId}"]) { kind deviceId version } }`);
  const seen = (text, kind) => text && text.includes(`"kind": "${kind}"`);
  const snapshot = await waitForResponse((text) => seen(text, 'SNAPSHOT'));
  report.events.push(snapshot);
  if (seen(snapshot, 'SNAPSHOT')) {
    const outside = await fetch(`${origin}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({
        query: 'mutation($d: ID!) { updateShadow(deviceId: $d, reported: {fromOutside: true}) { version } }',
        variables: { d: deviceId },
      }),
    });
    report.mutation = await outside.json();
    report.events.push(await waitForResponse((text) => seen(text, 'UPDATED')));
  }
} catch (error) {
  report.errors.push(`driver: ${error && error.stack ? error.stack : error}`);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(watchdog);
}
process.stdout.write(JSON.stringify(report) + '\n');
