import type { CompletionEvent, StartAck } from '@app/contracts';
import { io } from 'socket.io-client';
import { startRedisServer, type RedisServer, sharedDeployment } from '../support/redis-server';
import type { CompletionClient } from '../support/socket-client';
import { postStream, readStream, textOf } from '../support/sse-client';
import { startTestApp, type TestApp, whenReady } from '../support/test-app';

const KEY = 'key-outage-77c3';
const auth = { authorization: `Bearer ${KEY}` };

/** Polls an async condition; says what it last saw when time is up. */
async function until<T>(
  probe: () => Promise<T>,
  check: (value: T) => boolean,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await probe();
  while (!check(value)) {
    if (Date.now() > deadline) {
      throw new Error(`condition not met in ${timeoutMs} ms; last seen: ${JSON.stringify(value)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    value = await probe();
  }
  return value;
}

/** The promise's value, or a failure naming the step that never finished and what had been seen by then. */
async function within<T>(
  promise: Promise<T>,
  timeoutMs: number,
  step: string,
  seen: () => string,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${step}: not done in ${timeoutMs} ms; ${seen()}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const readiness = (app: TestApp) => fetch(`${app.url}/health/ready`).then((response) => response.status);

describe('Redis killed and restarted empty mid-run', () => {
  let redis: RedisServer;
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    redis = await startRedisServer();
    const env = {
      ...sharedDeployment(redis.url, KEY),
      STREAM_RESUME_GRACE_MS: '5000',
    };
    [a, b] = await Promise.all([startTestApp(env), startTestApp(env)]);
    // As a load balancer would: traffic only once both are ready (connected to Redis). Before that a start is
    // refused with a retryable 503, which is right, but not what this suite is about.
    await whenReady(a.url, b.url);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await redis?.close();
  });

  it('refuses new streams with a retryable 503 unavailable, keeps running ones local, and comes back by itself', async () => {
    const text = `outage survivor ✓ ${'word '.repeat(60)}`.trim();
    // A stream on A with its client on A, and one on A followed from B: then Redis goes away.
    const localEvents: CompletionEvent[] = [];
    let localLive: () => void = () => undefined;
    const localIsLive = new Promise<void>((resolve) => (localLive = resolve));
    const local = postStream(
      a.url,
      { messages: [{ role: 'user', content: `[sim echo tps=20] ${text}` }] },
      {
        headers: auth,
        onEvent: (event) => {
          localEvents.push(event);
          if (event.type === 'token') {
            localLive();
          }
        },
      },
    );
    const forgotten = await fetch(`${a.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ messages: [{ role: 'user', content: '[sim tokens=2000 tps=20] forgotten' }] }),
    });
    const forgottenId = forgotten.headers.get('x-stream-id') as string;
    void readStream(forgotten).catch(() => undefined);
    const followerEvents: CompletionEvent[] = [];
    const follower = readStream(
      await fetch(`${b.url}/api/completions/${forgottenId}/stream`, { headers: auth }),
      (event) => followerEvents.push(event),
    );
    let localStatus = 'no answer yet';
    void local.then(
      (result) => (localStatus = `${result.status} ${result.raw.slice(0, 200)}`),
      (error: unknown) => (localStatus = `failed: ${String(error)}`),
    );
    const seen = () =>
      `local (${localStatus}): ${localEvents.map((event) => `${event.seq}:${event.type}`).join(' ')}; ` +
      `follower: ${followerEvents.map((event) => `${event.seq}:${event.type}`).join(' ')}`;
    await within(localIsLive, 10_000, 'the local stream’s first token', seen);
    await until(
      async () => followerEvents.length,
      (count) => count > 2,
      5000,
    );

    await redis.kill();

    expect(
      await until(
        () => readiness(a),
        (status) => status === 503,
        5000,
      ),
    ).toBe(503);
    const refused = await fetch(`${a.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hello' }] }),
    });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await refused.json()).toMatchObject({ code: 'unavailable' });
    const socket: CompletionClient = io(`${b.url}/completions`, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      auth: { token: KEY },
    });
    const ack = await within(
      new Promise<StartAck>((resolve) =>
        socket.emit('completion:start', { messages: [{ role: 'user', content: 'hello' }] }, resolve),
      ),
      10_000,
      'the refused start’s ack',
      seen,
    );
    socket.disconnect();
    expect(ack).toMatchObject({ ok: false, error: { code: 'unavailable', retryAfterMs: 1000 } });
    const resumeRefused = await fetch(`${b.url}/api/completions/${forgottenId}/stream`, { headers: auth });
    expect(resumeRefused.status).toBe(503);

    // The local client is served from memory throughout.
    const whole = await within(local, 20_000, 'the local stream to its end', seen);
    expect({ last: whole.events.at(-1) }).toMatchObject({ last: { type: 'done', finishReason: 'stop' } });
    expect(textOf(whole.events)).toBe(text);

    await within(redis.restart(), 10_000, 'Redis to restart', seen);
    await until(
      () => Promise.all([readiness(a), readiness(b)]),
      (statuses) => statuses.every((s) => s === 200),
      10_000,
    );
    const again = await within(
      postStream(b.url, { messages: [{ role: 'user', content: '[sim echo] back' }] }, { headers: auth }),
      10_000,
      'a new stream once Redis is back',
      seen,
    );
    expect(again.events.at(-1)).toMatchObject({ type: 'done' });
    expect(textOf(again.events)).toBe('back');

    // Redis forgot the stream followed from B: its listener there ends cleanly, with one stream_lost.
    await within(follower, 20_000, 'the follower of the forgotten stream to its end', seen);
    const followed = followerEvents.map((event) => `${event.seq}:${event.type}`).join(' ');
    expect({
      terminals: followerEvents.filter((event) => event.type === 'error' || event.type === 'done').length,
      followed,
    }).toEqual({ terminals: 1, followed });
    expect(followerEvents.at(-1)).toMatchObject({
      type: 'error',
      error: { code: 'stream_lost', retryable: true },
    });
    await fetch(`${a.url}/api/completions/${forgottenId}`, { method: 'DELETE', headers: auth });
  }, 60_000);

  it('starts with Redis unreachable (not ready, refusing streams) and shuts down without waiting for it', async () => {
    const lonely = await startTestApp({
      REDIS_URL: 'redis://127.0.0.1:1',
      AUTH_MODE: 'api-key',
      AUTH_API_KEYS: KEY,
    });
    expect(await readiness(lonely)).toBe(503);
    const refused = await postStream(
      lonely.url,
      { messages: [{ role: 'user', content: 'hi' }] },
      { headers: auth },
    );
    expect(refused.status).toBe(503);

    const closing = Date.now();
    await lonely.close();
    expect(Date.now() - closing).toBeLessThan(3000);
  });
});
