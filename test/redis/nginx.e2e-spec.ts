import { type CompletionEvent, isTerminalEvent, type SimpleAck, type StartAck } from '@app/contracts';
import { createParser } from 'eventsource-parser';
import { connect as connectHttp2 } from 'node:http2';
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

  it('TLS + HTTP/2: eight SSE streams on one HTTP/2 connection all stream at once, unbuffered', async () => {
    const session = connectHttp2(nginx.tlsUrl, { ca: nginx.certificate, servername: 'localhost' });
    const negotiated = await new Promise<string | false | undefined>((resolve, reject) => {
      session.once('connect', () => resolve(session.alpnProtocol));
      session.once('error', reject);
    });
    try {
      expect(negotiated).toBe('h2');
      /** One stream: every event with the time it arrived, relative to when the eight were sent. */
      const sent = performance.now();
      const stream = (index: number) =>
        new Promise<{ status: number; arrivals: { event: CompletionEvent; at: number }[] }>(
          (resolve, reject) => {
            const expected = `over h2 ${index} ${'multiplexed words '.repeat(10)}`.trim();
            const request = session.request({
              ':method': 'POST',
              ':path': '/api/completions/stream',
              'content-type': 'application/json',
              ...auth,
            });
            request.end(
              JSON.stringify({ messages: [{ role: 'user', content: `[sim echo tps=20] ${expected}` }] }),
            );
            const arrivals: { event: CompletionEvent; at: number }[] = [];
            let status = 0;
            const parser = createParser({
              onEvent: (message) =>
                arrivals.push({
                  event: JSON.parse(message.data) as CompletionEvent,
                  at: performance.now() - sent,
                }),
            });
            request.on('response', (headers) => (status = Number(headers[':status'])));
            request.setEncoding('utf8');
            request.on('data', (chunk: string) => parser.feed(chunk));
            request.on('end', () => resolve({ status, arrivals }));
            request.on('error', reject);
          },
        );
      const results = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map(stream));
      const firstTokens = results.map(
        ({ arrivals }) => arrivals.find(({ event }) => event.type === 'token')?.at,
      );
      const ends = results.map(({ arrivals }) => arrivals.at(-1)?.at ?? 0);
      const seen = JSON.stringify({ statuses: results.map(({ status }) => status), firstTokens, ends });
      expect({ statuses: results.map(({ status }) => status), seen }).toEqual({
        statuses: Array(8).fill(200),
        seen,
      });
      // About 30 tokens at 20/s: 1.5 s each. All at once, every stream's first token comes before any stream
      // ends; one after another, or buffered to the end by nginx, it would not.
      expect({
        streamingAtOnce: Math.max(...(firstTokens as number[])) < Math.min(...ends) - 500,
        seen,
      }).toEqual({
        streamingAtOnce: true,
        seen,
      });
      results.forEach(({ arrivals }, index) =>
        expectWhole(
          arrivals.map(({ event }) => event),
          `over h2 ${index} ${'multiplexed words '.repeat(10)}`.trim(),
        ),
      );
    } finally {
      session.close();
    }
  });

  it('TLS: Socket.IO over wss through the TLS port', async () => {
    const socket: CompletionClient = io(`${nginx.tlsUrl}/completions`, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      auth: { token: KEY },
      ca: nginx.certificate,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', reject);
      });
      const expected = 'over wss ✓ through nginx';
      const events: CompletionEvent[] = [];
      await new Promise<void>((resolve, reject) => {
        socket.on('completion', (event) => {
          events.push(event);
          if (isTerminalEvent(event)) resolve();
        });
        socket.emit(
          'completion:start',
          { messages: [{ role: 'user', content: `[sim echo tps=100] ${expected}` }] },
          (ack: StartAck) => (ack.ok ? undefined : reject(new Error(ack.error.code))),
        );
      });
      expectWhole(events, expected);
    } finally {
      socket.disconnect();
    }
  });
});
