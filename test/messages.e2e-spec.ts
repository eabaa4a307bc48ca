import type { ConnectErrorData } from '@app/contracts';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import { postStream } from './support/sse-client';
import { startTestApp, type TestApp } from './support/test-app';

const ROOT = join(__dirname, '..');

/** The server as production starts it, with `env`; what it printed once it exited. */
async function startAndExit(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !/^(OPENAI_|AUTH_|LLM_|STREAM_|SHUTDOWN_|RATE_)/.test(name),
    ),
  );
  const child = spawn(
    process.execPath,
    ['--import', join(ROOT, 'test/support/typescript-hooks.mjs'), join(ROOT, 'apps/api/src/main.ts')],
    { cwd: tmpdir(), env: { ...inherited, PORT: '0', WEB_ROOT: '/nonexistent', ...env }, stdio: 'pipe' },
  );
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stderr };
}

/** A loopback port nothing listens on: an upstream that is down. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('each message says what is true', () => {
  it('AUTH_API_KEYS=,, stops the server with the one-line configuration error, no stack trace', async () => {
    const { code, stderr } = await startAndExit({ AUTH_MODE: 'api-key', AUTH_API_KEYS: ',,' });

    expect({ code, lines: stderr.trim().split('\n') }).toEqual({
      code: 1,
      lines: ['Invalid configuration: AUTH_API_KEYS: AUTH_MODE=api-key needs at least one key'],
    });
  }, 30_000);

  describe('on a running server', () => {
    let testApp: TestApp;
    afterEach(() => testApp.close());

    it('reports readiness as unavailable, not shutting_down, when the upstream is down', async () => {
      testApp = await startTestApp({ OPENAI_BASE_URL: `http://127.0.0.1:${await closedPort()}/v1` });
      const ready = await fetch(`${testApp.url}/health/ready`);

      expect(ready.status).toBe(503);
      expect(ready.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(await ready.json()).toMatchObject({ code: 'unavailable', detail: 'Not ready: upstream down.' });
    });

    it('says a bad path encoding is the path, and a bad body the body', async () => {
      testApp = await startTestApp();
      const badPath = await fetch(`${testApp.url}/api/completions/%E0%A4%A/stream`);
      const badBody = await fetch(`${testApp.url}/api/completions/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"messages": [',
      });

      expect([badPath.status, ((await badPath.json()) as { detail: string }).detail]).toEqual([
        400,
        'The URL path is not validly percent-encoded.',
      ]);
      expect([badBody.status, ((await badBody.json()) as { detail: string }).detail]).toEqual([
        400,
        'The request body is not valid JSON.',
      ]);
    });

    it('refuses a body that does not decompress as 400 invalid_request, not 500 internal', async () => {
      testApp = await startTestApp();
      const answers = [];
      for (const encoding of ['gzip', 'deflate', 'br']) {
        const response = await fetch(`${testApp.url}/api/completions/stream`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-encoding': encoding },
          body: 'not compressed at all',
        });
        const problem = (await response.json()) as { code: string; detail: string };
        answers.push([
          encoding,
          response.status,
          response.headers.get('content-type'),
          problem.code,
          problem.detail,
        ]);
      }

      expect(answers).toEqual(
        ['gzip', 'deflate', 'br'].map((encoding) => [
          encoding,
          400,
          'application/problem+json; charset=utf-8',
          'invalid_request',
          'The request body could not be read.',
        ]),
      );
    });

    it('tells a Socket.IO client without a key where Socket.IO credentials go, not HTTP headers', async () => {
      testApp = await startTestApp({ AUTH_MODE: 'api-key', AUTH_API_KEYS: 'a-key-0123456789' });
      const socket = io(`${testApp.url}/completions`, {
        transports: ['websocket'],
        forceNew: true,
        reconnection: false,
      });
      const error = await new Promise<Error & { data?: ConnectErrorData }>((resolve) =>
        socket.once('connect_error', resolve),
      );
      socket.close();

      expect({ code: error.data?.code, message: error.message }).toEqual({
        code: 'unauthorized',
        message: 'An API key is required in the handshake: io(url, { auth: { token: key } }).',
      });
    });

    it('answers 204 to DELETE of a finished stream, as the OpenAPI document now says', async () => {
      testApp = await startTestApp();
      const finished = await postStream(testApp.url, {
        messages: [{ role: 'user', content: '[sim tokens=2]' }],
      });
      const streamId = finished.headers.get('x-stream-id') as string;
      const cancelled = await fetch(`${testApp.url}/api/completions/${streamId}`, { method: 'DELETE' });
      const document = (await (await fetch(`${testApp.url}/api/docs-json`)).json()) as {
        paths: Record<string, { delete?: { responses: Record<string, { description: string }> } }>;
      };
      const responses = document.paths['/api/completions/{streamId}'].delete?.responses;

      expect(cancelled.status).toBe(204);
      expect(responses?.['204'].description).toMatch(/finished/);
      expect(responses?.['404'].description).not.toMatch(/finished/);
    });
  });
});
