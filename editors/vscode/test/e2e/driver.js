// Drives a real VS Code workbench (code-server in Debian's Chromium, through playwright-core) for the end-to-end
// tests: started with a folder and settings, then commanded over stdin with one JSON object per line, answering each
// on stdout with one JSON line ({ok: true, ...} or {ok: false, error}).
//
// Usage: node driver.js CONFIG_JSON, where CONFIG_JSON names {folder, vsix, settings, work}.

'use strict';

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');

/** The text of every notification shown: toasts, and the notification center's rows when it is open. */
const NOTIFICATION_MESSAGES =
  '.notification-toast .notification-list-item-message, .notifications-center .notification-list-item-message';

const CODE_SERVER = path.join(__dirname, 'node_modules', '.bin', 'code-server');
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

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The quick input box (input box or quick pick) whose title contains `title`. */
function quickInput(page, title) {
  return page.locator('.quick-input-widget', { has: page.locator('.quick-input-title', { hasText: title }) });
}

function log(...args) {
  process.stderr.write(`[driver] ${args.join(' ')}\n`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(url);
      if (response.status < 500) {
        return;
      }
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      throw new Error(`code-server did not answer at ${url} within ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

class Workbench {
  constructor(config) {
    this.config = config;
    this.codeServer = undefined;
    this.browser = undefined;
    this.page = undefined;
  }

  async start() {
    const { work, folder, vsix, settings, home } = this.config;
    // As a user (`home`): code-server's own folders under that home, where the user installed the extension and
    // wrote their settings; the settings given here (what makes a headless workbench predictable) go under theirs.
    // Otherwise a fresh profile in `work`, with the extension installed into it from `vsix`.
    const userData = home ? path.join(home, '.local/share/code-server') : path.join(work, 'user-data');
    const extensions = path.join(userData, 'extensions');
    const settingsFile = path.join(userData, 'User', 'settings.json');
    const own = home && fs.existsSync(settingsFile) ? JSON.parse(fs.readFileSync(settingsFile, 'utf8')) : {};
    fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
    fs.writeFileSync(settingsFile, JSON.stringify({ ...settings, ...own }, null, 2));
    if (!fs.existsSync(CODE_SERVER)) {
      throw new Error(`${CODE_SERVER} is missing: run scripts/test (it installs the VS Code test tools)`);
    }
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: run scripts/test (it installs Debian's chromium)`);
    }
    const common = ['--user-data-dir', userData, '--extensions-dir', extensions];
    if (!home) {
      execFileSync(CODE_SERVER, [...common, '--install-extension', vsix], { stdio: ['ignore', 'ignore', 'inherit'] });
    }
    const port = await freePort();
    const args = [
      ...common,
      '--auth',
      'none',
      '--bind-addr',
      `127.0.0.1:${port}`,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      '--ignore-last-opened',
      folder,
    ];
    const logFile = fs.openSync(path.join(work, 'code-server.log'), 'a');
    this.codeServer = spawn(CODE_SERVER, args, {
      stdio: ['ignore', logFile, logFile],
      env: { ...process.env, ...(home ? { HOME: home } : {}), ...(this.config.env || {}) },
      detached: true,
    });
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, 60_000);
    // A persistent context over a new, empty profile directory: Playwright passes it as --user-data-dir.
    this.browser = await chromium.launchPersistentContext(path.join(work, 'chromium'), {
      executablePath: CHROMIUM,
      args: CHROMIUM_FLAGS,
      headless: true,
      viewport: { width: 1400, height: 900 },
    });
    this.page = this.browser.pages()[0] || (await this.browser.newPage());
    this.page.setDefaultTimeout(30_000);
    await this.page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(folder)}`);
    await this.page.waitForSelector('.monaco-workbench', { timeout: 60_000 });
    await this.page.waitForSelector('.explorer-viewlet', { timeout: 60_000 });
    await this.page.waitForSelector('.part.statusbar', { timeout: 60_000 });
    return { port };
  }

  async stop() {
    await this.browser?.close().catch(() => undefined);
    if (this.codeServer && this.codeServer.exitCode === null) {
      try {
        process.kill(-this.codeServer.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  }

  /** Runs a command from the command palette by its title, e.g. "CodeCollab: Share Folder". */
  async palette({ title }) {
    const page = this.page;
    const deadline = Date.now() + 60_000;
    for (;;) {
      await page.keyboard.press('F1');
      const input = page.locator('.quick-input-widget input');
      await input.waitFor({ state: 'visible' });
      await input.fill(`>${title}`);
      // The row whose label is exactly the title: fuzzy matching also lists others ("File: Save" finds
      // "File: Compare Active File with Saved"), recently used ones first.
      const row = page
        .locator('.quick-input-list .monaco-list-row')
        .filter({ has: page.locator('.label-name', { hasText: new RegExp(`^${escapeRegExp(title)}$`) }) })
        .first();
      try {
        await row.waitFor({ state: 'visible', timeout: 5_000 });
        await row.click();
        return {};
      } catch (error) {
        // Right after start the extension's commands may not be registered yet: close the palette, try again.
        await page.keyboard.press('Escape');
        if (Date.now() > deadline) {
          throw error;
        }
      }
    }
  }

  /**
   * Types into the quick input box (an input box or a quick pick) whose title contains `title`, then Enter. The
   * title matters: right after a palette command the palette's own box may still be on screen.
   */
  async input({ text, title }) {
    const input = quickInput(this.page, title).locator('input');
    await input.waitFor({ state: 'visible' });
    await input.fill(text);
    await this.page.keyboard.press('Enter');
    return {};
  }

  /** The labels of the quick pick whose title contains `title`, once it shows; then closes it with Escape. */
  async quickPick({ title }) {
    const widget = quickInput(this.page, title);
    await widget.locator('.quick-input-list .monaco-list-row').first().waitFor({ state: 'visible' });
    const labels = await widget.locator('.quick-input-list .monaco-list-row .label-name').allInnerTexts();
    await this.page.keyboard.press('Escape');
    return { labels };
  }

  /**
   * Waits for a notification whose text matches `pattern` (a regular expression), as a toast or in the notification
   * center (where VS Code moves toasts it hides); returns its text.
   */
  async notification({ pattern, timeoutMs = 30_000 }) {
    const { text, centerOpened } = await this.findNotification(pattern, timeoutMs);
    await this.closeCenter(centerOpened);
    return { text };
  }

  /** Clicks the button labelled `action` on the notification whose text matches `pattern`; returns its text. */
  async notificationAction({ pattern, action, timeoutMs = 30_000 }) {
    const { text, centerOpened } = await this.findNotification(pattern, timeoutMs);
    const regex = new RegExp(pattern);
    const toast = this.page
      .locator('.notification-toast, .notifications-center .monaco-list-row')
      .filter({ has: this.page.locator('.notification-list-item-message', { hasText: regex }), visible: true })
      .first();
    await toast.locator('.monaco-button', { hasText: action }).first().click();
    await this.closeCenter(centerOpened);
    return { text };
  }

  /**
   * Waits for a notification matching `pattern` as a toast, then in the notification center (opened if a toast
   * is not seen within 2 s: VS Code hides toasts after a while, a warning with buttons too, and on a loaded
   * machine one can be gone before it is looked for). Says whether it opened the center.
   */
  async findNotification(pattern, timeoutMs) {
    const regex = new RegExp(pattern);
    const start = Date.now();
    const deadline = start + timeoutMs;
    let centerOpened = false;
    for (;;) {
      // Visible ones only: a hidden notification center keeps its messages in the page.
      const texts = await this.page.locator(NOTIFICATION_MESSAGES).filter({ visible: true }).allInnerTexts();
      const hit = texts.find((t) => regex.test(t));
      if (hit) {
        return { text: hit, centerOpened };
      }
      if (!centerOpened && Date.now() - start > 2_000) {
        if (!(await this.page.locator('.notifications-center.visible').count())) {
          await this.palette({ title: 'Notifications: Show Notifications' });
          centerOpened = true;
        }
        continue;
      }
      if (Date.now() > deadline) {
        throw new Error(`no notification matching /${pattern}/; seen: ${JSON.stringify(texts)}`);
      }
      await this.page.waitForTimeout(100);
    }
  }

  /**
   * Hides the notification center if `opened` (by `findNotification`): left open, it holds the keyboard focus
   * and covers part of the editor, and the keys a test sends next (Control+S, typing) would go to it.
   */
  async closeCenter(opened) {
    if (opened && (await this.page.locator('.notifications-center.visible').count())) {
      await this.palette({ title: 'Notifications: Hide Notifications' });
      await this.page.locator('.notifications-center.visible').waitFor({ state: 'detached' });
    }
  }

  /** Picks the row labelled exactly `label` in the quick pick whose title contains `title`. */
  async pick({ title, label }) {
    const widget = quickInput(this.page, title);
    const row = widget
      .locator('.quick-input-list .monaco-list-row')
      .filter({ has: this.page.locator('.label-name', { hasText: new RegExp(`^${escapeRegExp(label)}$`) }) })
      .first();
    await row.waitFor({ state: 'visible' });
    await row.click();
    return {};
  }

  /** Opens a file by clicking it in the Explorer (the reliable way; Ctrl+P was not). */
  async open({ name }) {
    const page = this.page;
    const row = page.locator(`.explorer-folders-view .monaco-list-row[aria-label="${name}"]`).first();
    for (let attempt = 0; ; attempt++) {
      try {
        await row.waitFor({ state: 'visible', timeout: 5_000 });
        break;
      } catch (error) {
        if (attempt >= 6) {
          throw error;
        }
        // A file written by the daemon may not be listed yet: ask the Explorer to look again.
        await this.palette({ title: 'File: Refresh Explorer' });
      }
    }
    await row.click();
    await page.locator(`.tabs-container .tab.active[aria-label*="${name}"]`).waitFor({ state: 'visible' });
    await page.locator('.editor-instance .monaco-editor .view-lines').first().waitFor({ state: 'visible' });
    return {};
  }

  /** Renames `name` (a file at the top of the folder) to `to` in the Explorer, as a user does: select, F2, type. */
  async renameInExplorer({ name, to }) {
    const page = this.page;
    await page.locator(`.explorer-folders-view .monaco-list-row[aria-label="${name}"]`).first().click();
    await page.keyboard.press('F2');
    const input = page.locator('.explorer-folders-view .monaco-inputbox input');
    await input.waitFor({ state: 'visible' });
    await input.fill(to);
    await page.keyboard.press('Enter');
    await page.locator(`.explorer-folders-view .monaco-list-row[aria-label="${to}"]`).first().waitFor({ state: 'visible' });
    return {};
  }

  /** Deletes `name` (a file at the top of the folder) in the Explorer: select, Delete, and yes to the permanent
   * deletion VS Code asks about (the test settings turn the trash off). */
  async deleteInExplorer({ name }) {
    const page = this.page;
    const row = page.locator(`.explorer-folders-view .monaco-list-row[aria-label="${name}"]`).first();
    await row.click();
    await page.keyboard.press('Delete');
    await page.locator('.monaco-dialog-box .monaco-button', { hasText: /^Delete$/ }).first().click();
    await row.waitFor({ state: 'detached' });
    return {};
  }

  /** Focuses the active editor's text and moves the caret with `keys` (e.g. "Control+End"), if given. */
  async focus({ keys }) {
    await this.page.locator('.editor-instance .monaco-editor .view-lines').first().click();
    for (const key of keys || []) {
      await this.page.keyboard.press(key);
    }
    return {};
  }

  /** Types `text` at full speed (`delay` ms between keys, default 0) into whatever has focus. */
  async type({ text, delay = 0 }) {
    const started = Date.now();
    for (const segment of text.split(/(\n)/)) {
      if (segment === '\n') {
        await this.page.keyboard.press('Enter', { delay });
      } else if (segment) {
        await this.page.keyboard.type(segment, { delay });
      }
    }
    return { ms: Date.now() - started };
  }

  /** The process group of code-server, which its extension host and the daemons it starts belong to. */
  async processGroup() {
    return { pgid: this.codeServer.pid };
  }

  /**
   * Saves the active editor as its user would (focus its text, Control+S; a notification center opened to find a
   * message may hold the focus) and waits until its tab is no longer marked dirty, so the file is on disk.
   */
  async save() {
    await this.focus({ keys: ['Control+s'] });
    await this.page.locator('.tabs-container .tab.active:not(.dirty)').first().waitFor({ state: 'visible' });
    return {};
  }

  async press({ key }) {
    await this.page.keyboard.press(key);
    return {};
  }

  /** The names shown beside remote carets in the visible editors (decorations' ::after content). */
  async decorations() {
    const names = await this.page.evaluate(() => {
      const found = new Set();
      for (const el of document.querySelectorAll('.monaco-editor .view-lines span, .monaco-editor .view-overlays div')) {
        const content = getComputedStyle(el, '::after').content;
        if (content && content !== 'none' && content !== 'normal') {
          found.add(content.replace(/^"|"$/g, ''));
        }
      }
      return [...found];
    });
    return { names };
  }

  /** The lines the active editor shows, top to bottom (for a short file: all of it; read-only editors can't save). */
  async visibleText() {
    const text = await this.page.evaluate(() => {
      const editor = document.querySelector('.editor-instance .monaco-editor .view-lines');
      const lines = [...(editor ? editor.querySelectorAll('.view-line') : [])];
      lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
      return lines.map((line) => line.textContent.replace(/\u00a0/g, ' ')).join('\n');
    });
    return { text };
  }

  /**
   * Whether the active editor is read-only: VS Code then badges its tab with a lock (a file decoration icon badge;
   * the tests turn git off, the only other source of such badges).
   */
  async readOnly() {
    const badges = await this.page
      .locator('.tabs-container .tab.active .monaco-icon-label[class*="monaco-decoration-iconBadge"]')
      .count();
    return { readOnly: badges > 0 };
  }

  /** The labels of every editor tab, in every group, in order. */
  async tabs() {
    const labels = await this.page
      .locator('.tabs-container .tab')
      .evaluateAll((tabs) => tabs.map((tab) => tab.getAttribute('aria-label') || ''));
    return { labels };
  }

  /** The label of the active editor tab. */
  async activeTab() {
    const label = await this.page.locator('.tabs-container .tab.active').first().getAttribute('aria-label');
    return { label: label || '' };
  }

  /** Where the active editor's caret is, from VS Code's own status bar item ("Ln 3, Col 7"), 1-based. */
  async caret() {
    const texts = await this.page.locator('.statusbar-item').allInnerTexts();
    const found = texts.map((t) => /Ln (\d+), Col (\d+)/.exec(t)).find(Boolean);
    return found ? { line: Number(found[1]), column: Number(found[2]) } : {};
  }

  /** The text of the status bar item that belongs to CodeCollab. */
  async status() {
    const texts = await this.page.locator('.statusbar-item').allInnerTexts();
    return { text: texts.find((t) => t.includes('CodeCollab')) || '' };
  }

  async screenshot({ file }) {
    await this.page.screenshot({ path: file });
    return { file };
  }
}

async function main() {
  const config = JSON.parse(process.argv[2]);
  const bench = new Workbench(config);
  const reply = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
  let shuttingDown = false;
  const shutdown = async () => {
    if (!shuttingDown) {
      shuttingDown = true;
      await bench.stop();
      process.exit(0);
    }
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  try {
    reply({ ok: true, ...(await bench.start()) });
  } catch (error) {
    reply({ ok: false, error: String(error && error.stack ? error.stack : error) });
    await bench.stop();
    process.exit(1);
  }
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) {
      continue;
    }
    let request;
    try {
      request = JSON.parse(line);
      const handler = bench[request.op];
      if (typeof handler !== 'function' || request.op === 'start' || request.op === 'stop') {
        throw new Error(`unknown op ${request.op}`);
      }
      reply({ ok: true, ...(await handler.call(bench, request)) });
    } catch (error) {
      log(`op ${request && request.op} failed: ${error}`);
      if (bench.page && config.work) {
        await bench.page.screenshot({ path: path.join(config.work, 'failure.png') }).catch(() => undefined);
      }
      reply({ ok: false, error: String(error && error.message ? error.message : error) });
    }
  }
  await shutdown(); // stdin closed: the test is done (or died)
}

main();
