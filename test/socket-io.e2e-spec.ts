import type { CompletionEvent, SimpleAck, StartAck } from '@app/contracts';
import { postStream, textOf } from './support/sse-client';
import { type CompletionClient, connect, streamOver } from './support/socket-client';
import { eventually, startTestApp, type TestApp } from './support/test-app';

const user = (content: string) => ({ messages: [{ role: 'user' as const, content }] });

describe('Socket.IO transport (namespace /completions)', () => {
  let testApp: TestApp;
  let socket: CompletionClient;

  beforeAll(async () => {
    testApp = await startTestApp();
  });
  beforeEach(async () => {
    socket = await connect(testApp.url);
  });
  afterEach(() => {
    socket.disconnect();
  });
  afterAll(() => testApp.close());

  it('acks with the streamId before any event, then streams start, tokens and done in seq order', async () => {
    const { ack, events } = await streamOver(socket, user('Tell me about websockets.'));

    expect(ack).toEqual({ ok: true, streamId: expect.any(String) });
    expect(events.map((event) => event.seq)).toEqual(events.map((_, index) => index));
    expect(events[0]).toMatchObject({ type: 'start', seq: 0, model: 'simulator' });
    expect(events.at(-1)).toMatchObject({ type: 'done', finishReason: 'stop' });
  });

  it('streams the same events as SSE for the same request', async () => {
    const request = user('The same question on both transports.');
    const overSocket = await streamOver(socket, request);
    const overSse = await postStream(testApp.url, request);

    expect(textOf(overSocket.events)).toBe(textOf(overSse.events));
    expect(textOf(overSocket.events).length).toBeGreaterThan(50);
    const shape = (events: CompletionEvent[]) => events.map(({ type, seq }) => `${type}:${seq}`);
    expect(shape(overSocket.events)).toEqual(shape(overSse.events));
  });

  it('keeps multi-byte text byte for byte', async () => {
    const text = 'ünïcödé 🎉🎉 日本語テキスト\n\n```ts\nconst x = 1;\n```\r\n';
    const { events } = await streamOver(socket, user(`[sim echo]${text}`));

    expect(textOf(events)).toBe(text.trim());
  });

  it('runs many streams on one socket at once, each to its own terminal event', async () => {
    const prompts = Array.from({ length: 12 }, (_, index) => user(`[sim echo] stream number ${index} ✓`));
    const results = await Promise.all(prompts.map((prompt) => streamOver(socket, prompt)));

    results.forEach(({ events }, index) => {
      expect(textOf(events)).toBe(`stream number ${index} ✓`);
      expect(events.at(-1)?.type).toBe('done');
    });
    expect(new Set(results.map(({ ack }) => (ack.ok ? ack.streamId : ''))).size).toBe(12);
  });

  it.each([
    ['empty messages', { messages: [] }],
    ['an unknown field', { ...user('hi'), stream: true }],
    ['a string', 'hello'],
    ['nothing', undefined],
    ['a wrong type', { messages: 'hi' }],
  ])('refuses %s with an ack error, not an exception', async (_name, payload) => {
    const ack = await new Promise<StartAck>((resolve) =>
      // The payload is deliberately not a CompletionRequest.
      socket.emit('completion:start', payload as never, resolve),
    );

    expect(ack).toEqual({ ok: false, error: { code: 'invalid_request', message: expect.any(String) } });
    const { events } = await streamOver(socket, user('still serving'));
    expect(events.at(-1)?.type).toBe('done');
  });

  it('cancels on completion:cancel: done/cancelled, and the simulator sees the abort', async () => {
    const abortedBefore = testApp.simulator.stats().aborted;
    let cancelAck: Promise<SimpleAck> | undefined;
    const { events } = await streamOver(socket, user('[sim tokens=400 tps=40]'), (event, streamId) => {
      if (event.type === 'token' && event.seq === 3) {
        cancelAck = new Promise((resolve) => socket.emit('completion:cancel', { streamId }, resolve));
      }
    });

    expect(await cancelAck).toEqual({ ok: true });
    expect(events.at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled' });
    await eventually(() => testApp.simulator.stats().aborted > abortedBefore, 2000);
  });

  it('cancels a stream started over SSE (one registry for both transports)', async () => {
    let cancelAck: Promise<SimpleAck> | undefined;
    const { events } = await postStream(testApp.url, user('[sim tokens=400 tps=40]'), {
      onEvent: (event) => {
        if (event.type === 'token' && event.seq === 2) {
          cancelAck = new Promise((resolve) =>
            socket.emit('completion:cancel', { streamId: event.streamId }, resolve),
          );
        }
      },
    });

    expect(await cancelAck).toEqual({ ok: true });
    expect(events.at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled' });
  });

  it('answers not_found to a cancel of an unknown stream and invalid_request to a bad one', async () => {
    const unknown = await new Promise<SimpleAck>((resolve) =>
      socket.emit('completion:cancel', { streamId: 'nope' }, resolve),
    );
    const malformed = await new Promise<SimpleAck>((resolve) =>
      socket.emit('completion:cancel', { id: 1 } as never, resolve),
    );

    expect(unknown).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(malformed).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
  });

  it('aborts the upstream of every stream of a socket that disconnects (grace 0)', async () => {
    const abortedBefore = testApp.simulator.stats().aborted;
    const started = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<StartAck>((resolve) =>
            socket.emit('completion:start', user('[sim tokens=400 tps=40]'), resolve),
          ),
      ),
    );
    expect(started.every((ack) => ack.ok)).toBe(true);
    await eventually(() => testApp.simulator.stats().active >= 3, 2000);

    socket.disconnect();

    await eventually(() => testApp.simulator.stats().aborted >= abortedBefore + 3, 3000);
  });

  it('resumes after lastSeq with no gap and no duplicate', async () => {
    const { ack, events } = await streamOver(socket, user('[sim tokens=20]'));
    const streamId = ack.ok ? ack.streamId : '';
    const other = await connect(testApp.url);
    const replayed: CompletionEvent[] = [];
    other.on('completion', (event) => replayed.push(event));

    const resumeAck = await new Promise<SimpleAck>((resolve) =>
      other.emit('completion:resume', { streamId, lastSeq: 5 }, resolve),
    );
    await eventually(() => replayed.at(-1)?.type === 'done', 2000);
    other.disconnect();

    expect(resumeAck).toEqual({ ok: true });
    expect(replayed).toEqual(events.slice(6));
  });
});
