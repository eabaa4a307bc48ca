import { type CompletionEvent, isTerminalEvent, type SimpleAck, type StartAck } from '@app/contracts';
import { io } from 'socket.io-client';
import { expectWhole } from '../support/stream-checks';
import { startNginx, type Nginx } from '../support/nginx';
import { startRedisServer, type RedisServer, sharedDeployment } from '../support/redis-server';
import type { CompletionClient } from '../support/socket-client';
import { readStream } from '../support/sse-client';
import { startTestApp, type TestApp, whenReady } from '../support/test-app';

const KEY = 'key-nginx-1d7e';
const auth = { authorization: `Bearer ${KEY}` };

/** The resumes an instance has served, from its own /metrics. */
async function resumesServed(app: TestApp): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  return [...text.matchAll(/^llm_gateway_resumes_total\{[^}]*\} (\d+)/gm)].reduce(
    (sum, [, n]) => sum + Number(n),
    0,
  );
}

describe('behind the example nginx (docs/nginx.conf): round robin over two instances, no stickiness', () => {
  let redis: RedisServer;
  let apps: TestApp[];
  let nginx: Nginx;

  beforeAll(async () => {
    redis = await startRedisServer();
    const env = {
      ...sharedDeployment(redis.url, KEY),
      STREAM_RESUME_GRACE_MS: '10000',
    };
    apps = await Promise.all([startTestApp(env), startTestApp(env)]);
    await whenReady(...apps.map((app) => app.url));
    nginx = await startNginx(apps.map((app) => app.url));
  });
  afterAll(async () => {
    await nginx?.close();
    await Promise.all(apps?.map((app) => app.close()) ?? []);
    await redis?.close();
  });

  it('SSE: each stream cut and resumed through nginx, wherever the resume lands, is whole; resumes land on both', async () => {
    const before = await Promise.all(apps.map(resumesServed));
    const run = async (index: number) => {
      const expected = `through nginx ${index} ✓ ${'proxied words '.repeat(20)}`.trim();
      const client = new AbortController();
      const response = await fetch(`${nginx.url}/api/completions/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth },
        body: JSON.stringify({ messages: [{ role: 'user', content: `[sim echo tps=40] ${expected}` }] }),
        signal: client.signal,
      });
      expect(response.status).toBe(200);
      const streamId = response.headers.get('x-stream-id') as string;
      const events: CompletionEvent[] = [];
      await readStream(response, (event) => {
        events.push(event);
        if (event.seq === 3 + index) {
          client.abort();
        }
      }).catch(() => undefined);
      // Several resumes in turn, each a new request that round robin may send to either instance.
      while (!events.some(isTerminalEvent)) {
        const resume = new AbortController();
        const resumed = await fetch(`${nginx.url}/api/completions/${streamId}/stream`, {
          headers: { ...auth, 'last-event-id': String(events.at(-1)?.seq) },
          signal: resume.signal,
        });
        expect(resumed.status).toBe(200);
        let taken = 0;
        await readStream(resumed, (event) => {
          events.push(event);
          taken += 1;
          if (taken === 5) {
            resume.abort();
          }
        }).catch(() => undefined);
      }
      return { events, expected };
    };
    const results = await Promise.all([0, 1, 2, 3].map(run));
    results.forEach(({ events, expected }) => expectWhole(events, expected));
    const after = await Promise.all(apps.map(resumesServed));
    expect(after.map((count, index) => count - before[index] > 0)).toEqual([true, true]);
  });

  it('Socket.IO: websocket through nginx; a new socket (the other instance, by round robin) resumes the stream', async () => {
    const connect = () => {
      const socket: CompletionClient = io(`${nginx.url}/completions`, {
        transports: ['websocket'],
        forceNew: true,
        reconnection: false,
        auth: { token: KEY },
      });
      return new Promise<CompletionClient>((resolve, reject) => {
        socket.once('connect', () => resolve(socket));
        socket.once('connect_error', reject);
      });
    };
    const expected = `socket through nginx ✓ ${'proxied words '.repeat(20)}`.trim();
    const events: CompletionEvent[] = [];
    const first = await connect();
    let streamId = '';
    await new Promise<void>((resolve, reject) => {
      first.on('completion', (event) => {
        events.push(event);
        if (event.seq === 4) {
          resolve();
        }
      });
      first.emit(
        'completion:start',
        { messages: [{ role: 'user', content: `[sim echo tps=40] ${expected}` }] },
        (ack: StartAck) => (ack.ok ? (streamId = ack.streamId) : reject(new Error(ack.error.code))),
      );
    });
    first.disconnect();
    for (let attempt = 0; attempt < 20 && !events.some(isTerminalEvent); attempt += 1) {
      const next = await connect();
      const finished = new Promise<void>((resolve) => {
        next.on('completion', (event) => {
          events.push(event);
          if (isTerminalEvent(event)) {
            resolve();
          }
        });
        next.on('disconnect', () => resolve());
      });
      const ack = await new Promise<SimpleAck>((resolve) =>
        next.emit('completion:resume', { streamId, lastSeq: events.at(-1)?.seq ?? -1 }, resolve),
      );
      expect(ack).toEqual({ ok: true });
      await finished;
      next.disconnect();
    }
    expectWhole(events, expected);
  });

  it('a cancel through nginx stops the stream wherever it runs', async () => {
    const response = await fetch(`${nginx.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ messages: [{ role: 'user', content: '[sim tokens=2000 tps=20] cancel me' }] }),
    });
    const streamId = response.headers.get('x-stream-id') as string;
    const events: CompletionEvent[] = [];
    const reading = readStream(response, (event) => events.push(event));
    const statuses: number[] = [];
    // Two cancels in a row: round robin sends one to each instance; the first stops it, the second finds it done.
    for (const _ of [1, 2]) {
      statuses.push(
        (await fetch(`${nginx.url}/api/completions/${streamId}`, { method: 'DELETE', headers: auth })).status,
      );
    }
    await reading;
    expect(statuses).toEqual([204, 204]);
    expect(events.at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled' });
  });
});
