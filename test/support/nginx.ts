import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const NGINX = process.env.NGINX_PATH ?? '/usr/sbin/nginx';
const OPENSSL = process.env.OPENSSL_PATH ?? '/usr/bin/openssl';
// From the repository root, where npm runs every suite: Jest (CommonJS) and the browser suites (ES modules,
// which have no __dirname) both load this file.
const EXAMPLE = 'docs/nginx.conf';

export interface Nginx {
  /** The plain HTTP/1.1 port. */
  url: string;
  /** The TLS port: HTTP/2 unless started with `http2: false`. */
  tlsUrl: string;
  /** The self-signed certificate made for this run (PEM), for a client to trust. */
  certificate: string;
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

export interface NginxOptions {
  /** false: the TLS port speaks HTTP/1.1 only, as a deployment without HTTP/2 would. Default true. */
  http2?: boolean;
  /** A change to the example for one test (a misconfigured proxy, say); it must change something. */
  edit?: (config: string) => string;
}

/** A self-signed certificate for 127.0.0.1 and localhost, made now, valid for a day. */
async function makeCertificate(dir: string): Promise<{ crt: string; key: string }> {
  if (!existsSync(OPENSSL)) {
    throw new Error(
      `openssl not found at ${OPENSSL}: install the Debian package \`openssl\` (apt-get install openssl) or set OPENSSL_PATH`,
    );
  }
  const crt = join(dir, 'gateway.crt');
  const key = join(dir, 'gateway.key');
  await promisify(execFile)(OPENSSL, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout',
    key,
    '-out',
    crt,
  ]);
  return { crt, key };
}

/**
 * Debian's nginx running docs/nginx.conf, the example deployment, as it ships: only the upstream addresses, the
 * listen ports and the certificate's paths are replaced (the certificate made now with openssl), and its files
 * kept in a temporary directory. Missing: a clear failure naming the package, never a skip.
 */
export async function startNginx(upstreams: string[], options: NginxOptions = {}): Promise<Nginx> {
  if (!existsSync(NGINX)) {
    throw new Error(
      `nginx not found at ${NGINX}: install the Debian package \`nginx\` (apt-get install nginx) or set NGINX_PATH`,
    );
  }
  const dir = await mkdtemp(join(tmpdir(), 'gateway-nginx-'));
  const port = await freePort();
  const tlsPort = await freePort();
  const certificate = await makeCertificate(dir);
  const example = await readFile(EXAMPLE, 'utf8');
  const servers = upstreams.map((upstream) => `server ${new URL(upstream).host};`).join('\n    ');
  const templated = example
    .replace(/server 127\.0\.0\.1:3001;\s*server 127\.0\.0\.1:3002;/, servers)
    .replace('listen 8080;', `listen 127.0.0.1:${port};`)
    .replace(
      'listen 8443 ssl http2;',
      `listen 127.0.0.1:${tlsPort} ssl${options.http2 === false ? '' : ' http2'};`,
    )
    .replace('/etc/nginx/tls/gateway.crt', certificate.crt)
    .replace('/etc/nginx/tls/gateway.key', certificate.key)
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
  if (
    !templated.includes(servers) ||
    [port, tlsPort].some((listening) => !templated.includes(`listen 127.0.0.1:${listening}`)) ||
    templated.includes('/etc/nginx/tls/')
  ) {
    throw new Error(
      'docs/nginx.conf no longer has the upstream, listen and certificate lines this test replaces',
    );
  }
  const config = options.edit ? options.edit(templated) : templated;
  if (options.edit && config === templated) throw new Error('the edit of docs/nginx.conf changed nothing');
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
    tlsUrl: `https://127.0.0.1:${tlsPort}`,
    certificate: await readFile(certificate.crt, 'utf8'),
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
