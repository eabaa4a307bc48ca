import { request as httpRequest } from 'node:http';
import { WebSocket } from 'ws';
import { startTestApp, type TestApp } from './support/test-app';

interface Answer {
  status: number;
  contentType: string | undefined;
  code: string | undefined;
}

/** A raw HTTP request with the Host header we choose (fetch does not let a page, or us, set it). */
function send(url: string, path: string, host: string, method = 'GET', body?: string): Promise<Answer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      { hostname, port, path, method, headers: { host, 'content-type': 'application/json' } },
      (response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          // A streaming answer (SSE) would not end: its first bytes say enough.
          if (response.headers['content-type']?.startsWith('text/event-stream')) response.destroy();
        });
        const done = () =>
          resolve({
            status: response.statusCode ?? 0,
            contentType: response.headers['content-type']?.split(';')[0],
            code: text.startsWith('{') ? (JSON.parse(text) as { code?: string }).code : undefined,
          });
        response.on('end', done);
        response.on('close', done);
      },
    );
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

/** A WebSocket upgrade to Engine.IO with the Host header we choose: `open`, or the refusal's status. */
function upgrade(url: string, host: string): Promise<string> {
  const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, {
    headers: { host },
  });
  return new Promise((resolve) => {
    socket.once('open', () => {
      socket.close();
      resolve('open');
    });
    socket.once('unexpected-response', (_request, response) => {
      resolve(`${response.statusCode}:${response.headers['content-type']}`);
      socket.terminate();
    });
    socket.once('error', (error) => resolve(`error:${error.message}`));
  });
}

const body = JSON.stringify({ messages: [{ role: 'user', content: '[sim tokens=3]' }] });

describe('Host checking against ALLOWED_HOSTS (DNS rebinding)', () => {
  let testApp: TestApp;
  afterEach(() => testApp.close());

  it('on loopback by default: serves the loopback names and refuses any other, on both transports', async () => {
    testApp = await startTestApp();
    const port = new URL(testApp.url).port;
    const hosts = [
      `localhost:${port}`,
      `127.0.0.1:${port}`,
      `[::1]:${port}`,
      `evil.example:${port}`,
      'evil.example',
    ];
    const seen: Record<string, unknown> = {};
    for (const host of hosts) {
      seen[host] = {
        sse: (await send(testApp.url, '/api/completions/stream', host, 'POST', body)).status,
        polling: (await send(testApp.url, '/socket.io/?EIO=4&transport=polling', host)).status,
        websocket: await upgrade(testApp.url, host),
      };
    }

    const served = { sse: 200, polling: 200, websocket: 'open' };
    const refused = { sse: 403, polling: 403, websocket: '403:application/problem+json' };
    expect(seen).toEqual({
      [`localhost:${port}`]: served,
      [`127.0.0.1:${port}`]: served,
      [`[::1]:${port}`]: served,
      [`evil.example:${port}`]: refused,
      'evil.example': refused,
    });
  });

  it('answers a refusal with 403 forbidden problem+json, before the body is read', async () => {
    testApp = await startTestApp();

    expect(
      await send(testApp.url, '/api/completions/stream', 'evil.example', 'POST', 'not even json'),
    ).toEqual({
      status: 403,
      contentType: 'application/problem+json',
      code: 'forbidden',
    });
    expect(await send(testApp.url, '/socket.io/?EIO=4&transport=polling', 'evil.example')).toMatchObject({
      contentType: 'application/problem+json',
      code: 'forbidden',
    });
  });

  it('serves exactly the names given in ALLOWED_HOSTS, and probes whatever Host they send', async () => {
    testApp = await startTestApp({ ALLOWED_HOSTS: 'gateway.example.com, other.example:8443' });
    const statuses = await Promise.all(
      [
        'gateway.example.com',
        'GATEWAY.example.com.:3000',
        'other.example:8443',
        'other.example:9',
        'localhost',
      ].map(async (host) => (await send(testApp.url, '/api/time', host)).status),
    );
    const probe = await send(testApp.url, '/health/live', '10.1.2.3:3000');

    expect(statuses).toEqual([200, 200, 200, 403, 403]);
    expect(probe.status).toBe(200);
  });
});
