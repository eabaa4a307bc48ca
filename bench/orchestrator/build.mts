/**
 * The bench runs the production build. It rebuilds (`npm run build:api`) when the build is missing or older than
 * any server source, or when asked with --build; otherwise it reuses it, so that CI, which has just built
 * everything, runs the smoke bench in well under a minute.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const GATEWAY_MAIN = 'dist/apps/api/main.js';
export const SIMULATOR_MAIN = 'dist/apps/simulator/main.js';
const SOURCES = ['apps/api', 'apps/simulator', 'libs', 'tsconfig.json', 'nest-cli.json', 'package-lock.json'];

async function newestMtime(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isDirectory()) return info.mtimeMs;
  const entries = await readdir(path, { recursive: true, withFileTypes: true });
  const times = await Promise.all(
    entries
      .filter((entry) => entry.isFile())
      .map(async (entry) => (await stat(join(entry.parentPath, entry.name))).mtimeMs),
  );
  return Math.max(info.mtimeMs, ...times);
}

/**
 * Webpack leaves an output it would write unchanged untouched, so a bundle's mtime can be older than a source edit
 * that changed nothing in it (a comment, a spec). The newest output, or the stamp of the bench's own last build,
 * is when the build was last known current.
 */
async function isStale(root: string, stamp: string): Promise<boolean> {
  const outputs = [GATEWAY_MAIN, SIMULATOR_MAIN].map((file) => join(root, file));
  if (!outputs.every((file) => existsSync(file))) return true;
  const built = Math.max(
    ...(await Promise.all(
      [...outputs, stamp].filter(existsSync).map(async (file) => (await stat(file)).mtimeMs),
    )),
  );
  const sources = await Promise.all(
    SOURCES.map((path) => join(root, path))
      .filter((path) => existsSync(path))
      .map(newestMtime),
  );
  return Math.max(...sources) > built;
}

export async function ensureBuilt(root: string, force: boolean, stampDir: string): Promise<void> {
  const stamp = join(stampDir, '.built-at');
  if (!force && !(await isStale(root, stamp))) {
    console.warn(
      `reusing the production build in dist/ (newer than every server source; --build forces one)`,
    );
    return;
  }
  console.warn('building the server: npm run build:api');
  await runNpm(root, ['run', 'build:api']);
  await mkdir(stampDir, { recursive: true });
  await writeFile(stamp, `${new Date().toISOString()}\n`);
}

/** Runs npm in `cwd`, its output on this process's; rejects unless it exits 0. */
export async function runNpm(cwd: string, args: string[]): Promise<void> {
  // Inside `npm run`, npm_execpath is npm's own CLI: run it on this Node rather than whichever npm is on PATH.
  const npm = process.env['npm_execpath'];
  const child = npm
    ? spawn(process.execPath, [npm, ...args], { cwd, stdio: ['ignore', 'inherit', 'inherit'] })
    : spawn('npm', args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`npm ${args.join(' ')} failed (${code}) in ${cwd}`);
}
