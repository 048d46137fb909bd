// Unit tests of finding the daemon: the setting, then the bundled binary, then PATH, each checked with --version.

import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { DAEMON_NAME, locate } from '../../src/daemon';

function fakeDaemon(dir: string, output: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, DAEMON_NAME);
  fs.writeFileSync(file, `#!/bin/sh\necho '${output}'\n`, { mode: 0o755 });
  return file;
}

function scratch(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'codecollab-unit-'));
}

test('the setting wins over the bundled daemon and PATH', async () => {
  const dir = scratch();
  const configured = fakeDaemon(path.join(dir, 'custom'), 'codecollab-daemon 9.9.9');
  fakeDaemon(path.join(dir, 'ext', 'bin'), 'codecollab-daemon 0.0.1');
  const found = await locate(configured, path.join(dir, 'ext'), { PATH: '' });
  assert.deepEqual(found, { path: configured, version: 'codecollab-daemon 9.9.9', source: 'setting' });
});

test('the bundled daemon comes before PATH', async () => {
  const dir = scratch();
  const bundled = fakeDaemon(path.join(dir, 'ext', 'bin'), 'codecollab-daemon 0.1.0');
  fakeDaemon(path.join(dir, 'path'), 'codecollab-daemon 0.0.1');
  const found = await locate(undefined, path.join(dir, 'ext'), { PATH: path.join(dir, 'path') });
  assert.equal(found.path, bundled);
  assert.equal(found.source, 'bundled');
});

test('PATH is the last resort', async () => {
  const dir = scratch();
  const onPath = fakeDaemon(path.join(dir, 'path'), 'codecollab-daemon 0.1.0');
  const found = await locate(null, path.join(dir, 'ext'), { PATH: `/nonexistent:${path.join(dir, 'path')}` });
  assert.deepEqual(found, { path: onPath, version: 'codecollab-daemon 0.1.0', source: 'PATH' });
});

test('a missing or wrong daemon gives an actionable error', async () => {
  const dir = scratch();
  await assert.rejects(locate(undefined, dir, { PATH: '' }), /not found.*codecollab\.daemon\.path/s);
  await assert.rejects(locate(path.join(dir, 'nope'), dir, { PATH: '' }), /not an executable file/);
  const impostor = fakeDaemon(path.join(dir, 'other'), 'something-else 1.0');
  await assert.rejects(locate(impostor, dir, { PATH: '' }), /does not look like codecollab-daemon/);
});
