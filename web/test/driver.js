// Drives the web client in Debian's Chromium (through playwright-core) for the end-to-end tests: started with a work folder, then commanded over stdin with one JSON object per line, answering each on stdout with one JSON line ({ok: true, ...} or {ok: false, error}).
//
// Usage: node driver.js CONFIG_JSON, where CONFIG_JSON names {work}. playwright-core is the one scripts/test
// installs for the VS Code tests (editors/vscode/test/e2e).

'use strict';

const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { createRequire } = require('node:module');

const e2e = path.join(__dirname, '..', '..', 'editors', 'vscode', 'test', 'e2e', 'package.json');
const { chromium } = createRequire(e2e)('playwright-core');

const CHROMIUM = process.env.CODECOLLAB_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function log(...args) {
  process.stderr.write(`[browser] ${args.join(' ')}\n`);
}

class Browser {
  constructor(config) {
    this.config = config;
  }

  async start() {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: run scripts/test (it installs Debian's chromium)`);
    }
    this.context = await chromium.launchPersistentContext(path.join(this.config.work, 'chromium'), {
      executablePath: CHROMIUM,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1280, height: 800 },
    });
    this.page = this.context.pages()[0] || (await this.context.newPage());
    this.page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') log(`console ${message.type()}: ${message.text()}`);
    });
    this.page.on('pageerror', (error) => log(`page error: ${error.message}`));
    return {};
  }

  async stop() {
    if (this.context) await this.context.close().catch(() => undefined);
  }

  /** Opens `url`; with `name`, sets the name the page joins as first (else the page asks). */
  async goto({ url, name }) {
    if (name !== undefined) {
      const origin = new URL(url).origin;
      await this.page.goto(`${origin}/`);
      await this.page.evaluate((n) => localStorage.setItem('codecollab:name', n), name);
    }
    const started = Date.now();
    await this.page.goto(url);
    const load = await this.page.evaluate(() => {
      const navigation = performance.getEntriesByType('navigation')[0];
      return navigation ? navigation.loadEventEnd : null;
    });
    return { ms: Date.now() - started, load };
  }

  /** Types into the name dialog and joins. */
  async joinAs({ name }) {
    await this.page.locator('#name').fill(name);
    await this.page.locator('#join button').click();
    return {};
  }

  /** What the page holds: the text of `path`, the active file, the connection, the role, the remote cursors. */
  async state({ path: file }) {
    return this.page.evaluate((f) => {
      const c = window.codecollab;
      if (!c) return { loaded: false };
      return {
        loaded: true,
        text: f ? c.text(f) : null,
        active: c.active(),
        connection: c.connection(),
        synced: c.synced(),
        role: c.role(),
        cursors: c.cursors(),
      };
    }, file || null);
  }

  /** The texts on screen: the connection badge, the ended dialog, the messages, the banner, the tabs, the people. */
  async screen() {
    const text = (selector) => this.page.locator(selector).allInnerTexts();
    return {
      connection: (await text('#connection')).join(''),
      ended: (await this.page.locator('#ended').isVisible()) ? (await text('#ended-reason')).join('') : null,
      messages: await text('#messages .message'),
      viewOnly: await this.page.locator('#view-only').isVisible(),
      tabs: await text('#tabs .tab'),
      people: await text('#people .person'),
      files: await text('#files .file'),
      carets: await text('.cc-caret-name'),
      editable: (await this.page.locator('.cm-content').getAttribute('contenteditable').catch(() => null)) === 'true',
    };
  }

  /** The text of the editor on screen (whatever tab it shows, deleted files included). */
  async editorText() {
    return { text: await this.page.evaluate(() => (window.codecollab ? window.codecollab.shownText() : null)) };
  }

  /** Whether an element matching `selector` is visible. */
  async visible({ selector }) {
    return { visible: await this.page.locator(selector).first().isVisible() };
  }

  /** Clicks a file in the tree. */
  async openFile({ path: file }) {
    await this.page.locator(`#files .file[data-path="${file}"]`).click();
    return {};
  }

  /** Clicks `follow` beside a person. */
  async follow({ name }) {
    await this.page.locator(`#people .person[data-name="${name}"] .follow`).click();
    return {};
  }

  /** Focuses the editor and moves the caret: `end` of the document, or `start`. */
  async caret({ to }) {
    await this.page.locator('.cm-content').click();
    await this.page.keyboard.press(to === 'start' ? 'Control+Home' : 'Control+End');
    return {};
  }

  /** Types `text` into the focused editor, key by key (`delay` ms apart). */
  async type({ text, delay }) {
    await this.page.keyboard.type(text, { delay: delay || 0 });
    return {};
  }

  /** Inserts `text` at the caret as one input (for characters a keyboard cannot type: CJK, emoji, ZWJ sequences). */
  async insert({ text }) {
    await this.page.keyboard.insertText(text);
    return {};
  }

  async press({ key }) {
    await this.page.keyboard.press(key);
    return {};
  }

  /** Bytes the page loaded (over the wire, compressed) and the time from navigation to an editable document. */
  async metrics() {
    return this.page.evaluate(() => {
      const resources = performance.getEntriesByType('resource');
      const navigation = performance.getEntriesByType('navigation')[0];
      return {
        transferred: resources.reduce((n, r) => n + r.encodedBodySize, 0) + (navigation ? navigation.encodedBodySize : 0),
        files: resources.map((r) => ({ name: r.name, encoded: r.encodedBodySize, decoded: r.decodedBodySize })),
      };
    });
  }

  /** Milliseconds from navigation to the first editable document, once there is one. */
  async readyAt() {
    return { ms: await this.page.evaluate(() => (window.codecollab ? window.codecollab.readyAt() : null)) };
  }

  /** Records the wall-clock time (ms since the epoch, sub-millisecond) of every keydown of `key`. */
  async markKeys({ key }) {
    await this.page.evaluate((k) => {
      window.__marks = [];
      document.addEventListener(
        'keydown',
        (event) => {
          if (event.key === k) window.__marks.push(performance.timeOrigin + performance.now());
        },
        true,
      );
    }, key);
    return {};
  }

  async marks() {
    return { marks: await this.page.evaluate(() => window.__marks || []) };
  }

  /** Types `${prefix}${k}${suffix}` for k in 0..count, one every `interval` ms, its keys `keyDelay` ms apart. */
  async typeMarkers({ prefix, suffix, count, interval, keyDelay }) {
    const started = Date.now();
    for (let k = 0; k < count; k++) {
      await this.page.keyboard.type(`${prefix}${k}${suffix}`, { delay: keyDelay || 0 });
      const next = started + (k + 1) * interval;
      const wait = next - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    return {};
  }

  /** How many spans of the shown document the syntax highlighter styled. */
  async highlighted() {
    return { count: await this.page.locator('.cm-content span[class^="ͼ"]').count() };
  }

  async screenshot({ file }) {
    await this.page.screenshot({ path: file });
    return { file };
  }
}

async function main() {
  const config = JSON.parse(process.argv[2]);
  const browser = new Browser(config);
  const reply = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
  let shuttingDown = false;
  const shutdown = async () => {
    if (!shuttingDown) {
      shuttingDown = true;
      await browser.stop();
      process.exit(0);
    }
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  try {
    reply({ ok: true, ...(await browser.start()) });
  } catch (error) {
    reply({ ok: false, error: String(error && error.stack ? error.stack : error) });
    await browser.stop();
    process.exit(1);
  }
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let request;
    try {
      request = JSON.parse(line);
      const handler = browser[request.op];
      if (typeof handler !== 'function' || request.op === 'start' || request.op === 'stop') {
        throw new Error(`unknown op ${request.op}`);
      }
      reply({ ok: true, ...(await handler.call(browser, request)) });
    } catch (error) {
      log(`op ${request && request.op} failed: ${error}`);
      if (browser.page) {
        await browser.page.screenshot({ path: path.join(config.work, 'failure.png') }).catch(() => undefined);
      }
      reply({ ok: false, error: String(error && error.message ? error.message : error) });
    }
  }
  await shutdown(); // stdin closed: the test is done (or died)
}

main();
