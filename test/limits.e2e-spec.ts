import type { SimpleAck, StartAck } from '@app/contracts';
import { StreamRegistry } from '@app/streams';
import { io } from 'socket.io-client';
import { postStream, readStream } from './support/sse-client';
import { type CompletionClient, connect } from './support/socket-client';
import { eventually, startTestApp, type TestApp } from './support/test-app';

/** Long enough to be running still when the whole burst has been answered. */
const longStream = { messages: [{ role: 'user' as const, content: '[sim tokens=400 tps=40]' }] };

/** How many were accepted, and the refusal codes of the rest, e.g. `{ ok: 20, rate_limited: 40 }`. */
function tally(outcomes: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const outcome of outcomes) {
    counts[outcome] = (counts[outcome] ?? 0) + 1;
  }
  return counts;
}

function startAll(socket: CompletionClient, count: number): Promise<StartAck[]> {
  // Emitted in one tick: the client sends them back to back (one websocket frame each, or batched into one
  // long-polling POST), and the server handles them interleaved.
  return Promise.all(
    Array.from(
      { length: count },
      () => new Promise<StartAck>((resolve) => socket.emit('completion:start', longStream, resolve)),
    ),
  );
}

describe('concurrency limit under a burst (RATE_LIMIT_CONCURRENT_STREAMS=20)', () => {
  let testApp: TestApp;

  beforeEach(async () => {
    testApp = await startTestApp({ RATE_LIMIT_CONCURRENT_STREAMS: '20', RATE_LIMIT_PER_MINUTE: '1000' });
  });
  afterEach(() => testApp.close());

  it('admits exactly 20 of 60 completion:start emitted at once on one websocket', async () => {
    const socket = await connect(testApp.url);
    const acks = await startAll(socket, 60);
    socket.disconnect();

    expect(tally(acks.map((ack) => (ack.ok ? 'ok' : ack.error.code)))).toEqual({ ok: 20, rate_limited: 40 });
  });

  it('admits exactly 20 of 60 completion:start sent over long-polling', async () => {
    const socket: CompletionClient = io(`${testApp.url}/completions`, {
      transports: ['polling'],
      forceNew: true,
      reconnection: false,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', reject);
    });
    const acks = await startAll(socket, 60);
    socket.disconnect();

    expect(tally(acks.map((ack) => (ack.ok ? 'ok' : ack.error.code)))).toEqual({ ok: 20, rate_limited: 40 });
  });

  it('admits exactly 20 of 60 SSE starts sent at once, and frees the slots when they end', async () => {
    const cancel = new AbortController();
    const post = () =>
      fetch(`${testApp.url}/api/completions/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(longStream),
        signal: cancel.signal,
      });
    const responses = await Promise.all(Array.from({ length: 60 }, post));
    const statuses = tally(responses.map((response) => String(response.status)));
    cancel.abort();

    expect(statuses).toEqual({ '200': 20, '429': 40 });
    // The aborted streams end (grace 0) and give their slots back: a new burst gets 20 again.
    const registry = testApp.app.get(StreamRegistry);
    await eventually(() => registry.running === 0);
    const socket = await connect(testApp.url);
    const acks = await startAll(socket, 21);
    socket.disconnect();
    expect(tally(acks.map((ack) => (ack.ok ? 'ok' : ack.error.code)))).toEqual({ ok: 20, rate_limited: 1 });
  });
});

describe('resumes are metered (contract v1.1)', () => {
  let testApp: TestApp;

  afterEach(() => testApp.close());

  const resume = (streamId: string, signal?: AbortSignal) =>
    fetch(`${testApp.url}/api/completions/${streamId}/stream`, {
      headers: { 'last-event-id': '0' },
      signal,
    });

  it('counts every resume toward RATE_LIMIT_PER_MINUTE, on both transports together', async () => {
    testApp = await startTestApp({ RATE_LIMIT_PER_MINUTE: '6' });
    const started = await postStream(testApp.url, {
      messages: [{ role: 'user', content: '[sim tokens=50]' }],
    });
    const streamId = started.headers.get('x-stream-id') as string;

    const replays = await Promise.all(Array.from({ length: 3 }, () => resume(streamId).then(readStream)));
    const socket = await connect(testApp.url);
    const socketAcks: SimpleAck[] = [];
    for (let index = 0; index < 3; index += 1) {
      socketAcks.push(
        await new Promise<SimpleAck>((resolve) =>
          socket.emit('completion:resume', { streamId, lastSeq: 0 }, resolve),
        ),
      );
    }
    socket.disconnect();
    const refused = await resume(streamId);
    const refusedStart = await postStream(testApp.url, longStream);

    expect({
      replays: replays.map((replay) => `${replay.status}:${replay.events.length}`),
      socket: socketAcks.map((ack) => (ack.ok ? 'ok' : ack.error.code)),
    }).toEqual({
      replays: Array(3).fill(`200:${started.events.length - 1}`),
      socket: ['ok', 'ok', 'rate_limited'],
    });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await refused.json()).toMatchObject({ code: 'rate_limited' });
    expect(refusedStart.status).toBe(429);
  });

  it('caps the clients following one stream (RATE_LIMIT_LISTENERS_PER_STREAM=3, the start included)', async () => {
    testApp = await startTestApp({ RATE_LIMIT_LISTENERS_PER_STREAM: '3' });
    const cancel = new AbortController();
    const streamId = 'followed-by-many';
    const start = await fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...longStream, streamId }),
      signal: cancel.signal,
    });
    const followers = await Promise.all(Array.from({ length: 5 }, () => resume(streamId, cancel.signal)));
    const statuses = followers.map((response) => response.status).sort();
    cancel.abort();

    expect([start.status, ...statuses]).toEqual([200, 200, 200, 429, 429, 429]);
  });

  it('caps the clients following one principal (RATE_LIMIT_LISTENERS_PER_PRINCIPAL=4), and frees places as they go', async () => {
    testApp = await startTestApp({
      RATE_LIMIT_LISTENERS_PER_PRINCIPAL: '4',
      RATE_LIMIT_LISTENERS_PER_STREAM: '10',
    });
    const socket = await connect(testApp.url);
    const [first, second] = await startAll(socket, 2);
    const ids = [first, second].map((ack) => (ack.ok ? ack.streamId : ''));
    const cancel = new AbortController();
    const followers = await Promise.all([0, 1, 0, 1].map((index) => resume(ids[index], cancel.signal)));
    cancel.abort();
    // Each aborted follower gives its place back once its response has closed.
    const registry = testApp.app.get(StreamRegistry);
    await eventually(
      () => registry.listenerCount(ids[0], 'anonymous') + registry.listenerCount(ids[1], 'anonymous') === 2,
    );
    const afterLeaving = await resume(ids[0]);
    const ack = await new Promise<SimpleAck>((resolve) =>
      socket.emit('completion:resume', { streamId: ids[1], lastSeq: 0 }, resolve),
    );
    socket.disconnect();
    await afterLeaving.body?.cancel();

    expect(followers.map((response) => response.status).sort()).toEqual([200, 200, 429, 429]);
    expect(afterLeaving.status).toBe(200);
    expect(ack).toMatchObject({ ok: true });
  });
});
