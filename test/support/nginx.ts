import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const NGINX = process.env.NGINX_PATH ?? '/usr/sbin/nginx';
// From the repository root, where npm runs every suite: Jest (CommonJS) and the browser suites (ES modules,
// which have no __dirname) both load this file.
const EXAMPLE = 'docs/nginx.conf';

export interface Nginx {
  url: string;
  output(): string;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== 'object' || address === null) {
    throw new Error('no free port');
  }
  return address.port;
}

/**
 * Debian's nginx running docs/nginx.conf, the example deployment, as it ships: only the upstream addresses and
 * the listen port are replaced, and its files kept in a temporary directory. Missing: a clear failure naming the
 * package, never a skip.
 */
export async function startNginx(upstreams: string[]): Promise<Nginx> {
  if (!existsSync(NGINX)) {
    throw new Error(
      `nginx not found at ${NGINX}: install the Debian package \`nginx\` (apt-get install nginx) or set NGINX_PATH`,
    );
  }
  const dir = await mkdtemp(join(tmpdir(), 'gateway-nginx-'));
  const port = await freePort();
  const example = await readFile(EXAMPLE, 'utf8');
  const servers = upstreams.map((upstream) => `server ${new URL(upstream).host};`).join('\n    ');
  const config = example
    .replace(/server 127\.0\.0\.1:3001;\s*server 127\.0\.0\.1:3002;/, servers)
    .replace('listen 8080;', `listen 127.0.0.1:${port};`)
    .replace(
      'http {',
      [
        'http {',
        '  access_log off;',
        ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(
          (kind) => `  ${kind}_temp_path ${join(dir, kind)};`,
        ),
      ].join('\n'),
    );
  if (config === example || !config.includes(servers)) {
    throw new Error('docs/nginx.conf no longer has the upstream and listen lines this test replaces');
  }
  const running = process.getuid?.() === 0 ? 'user root;\n' : '';
  await writeFile(join(dir, 'nginx.conf'), `${running}pid ${join(dir, 'nginx.pid')};\n${config}`);
  let output = '';
  const child: ChildProcess = spawn(
    NGINX,
    ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off;'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`nginx exited (${child.exitCode}):\n${output}`);
    }
    const up = await fetch(`${url}/health/live`).then(
      (response) => response.ok,
      () => false,
    );
    if (up) {
      break;
    }
    if (Date.now() > deadline) {
      throw new Error(`nginx did not answer on ${url}:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url,
    output: () => output,
    close: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
