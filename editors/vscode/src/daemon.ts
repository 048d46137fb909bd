// Finds the codecollab-daemon binary (setting, then bundled, then PATH) and checks it with `--version`.

import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

export const DAEMON_NAME = process.platform === 'win32' ? 'codecollab-daemon.exe' : 'codecollab-daemon';

export interface Located {
  path: string;
  version: string;
  source: 'setting' | 'bundled' | 'PATH';
}

export class DaemonNotFound extends Error {}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function onPath(env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, DAEMON_NAME))) {
      return path.join(dir, DAEMON_NAME);
    }
  }
  return undefined;
}

/** Runs `binary --version`; resolves to its first line, e.g. `codecollab-daemon 0.1.0`. */
export function version(binary: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binary, ['--version'], { timeout: 10_000 }, (error, stdout, stderr) => {
      if (error) {
        reject(new DaemonNotFound(`${binary} --version failed: ${stderr.trim() || error.message}`));
        return;
      }
      const line = stdout.split('\n')[0].trim();
      if (!line.startsWith('codecollab-daemon')) {
        reject(new DaemonNotFound(`${binary} does not look like codecollab-daemon (--version printed "${line}")`));
        return;
      }
      resolve(line);
    });
  });
}

/**
 * The daemon to run: `configured` (the `codecollab.daemon.path` setting) if set, else the one bundled in
 * `extensionDir/bin`, else `codecollab-daemon` on PATH. Each candidate must answer `--version`.
 */
export async function locate(
  configured: string | null | undefined,
  extensionDir: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Located> {
  if (configured) {
    const resolved = configured.startsWith('~/') ? path.join(env.HOME ?? '', configured.slice(2)) : configured;
    if (!isExecutable(resolved)) {
      throw new DaemonNotFound(
        `codecollab.daemon.path is set to "${configured}", which is not an executable file. ` +
          'Fix the setting, or clear it to use the bundled daemon.',
      );
    }
    return { path: resolved, version: await version(resolved), source: 'setting' };
  }
  const bundled = path.join(extensionDir, 'bin', DAEMON_NAME);
  if (isExecutable(bundled)) {
    return { path: bundled, version: await version(bundled), source: 'bundled' };
  }
  const found = onPath(env);
  if (found) {
    return { path: found, version: await version(found), source: 'PATH' };
  }
  throw new DaemonNotFound(
    'codecollab-daemon was not found: this build of the extension does not bundle it and it is not on PATH. ' +
      'Install it (`cargo install --path daemon` in the CodeCollab repository) or set codecollab.daemon.path.',
  );
}
