import type { StartAck } from '@app/contracts';
import { StreamRegistry } from '@app/streams';
import { io } from 'socket.io-client';
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
