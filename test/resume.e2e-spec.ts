import { type CompletionEvent, isTerminalEvent, type SimpleAck, type StartAck } from '@app/contracts';
import { seeded } from './support/stream-checks';
import { EventSource } from 'eventsource';
import { io } from 'socket.io-client';
import { CuttingProxy } from './support/cutting-proxy';
import { postStream, textOf } from './support/sse-client';
import type { CompletionClient } from './support/socket-client';
import { eventually, startTestApp, type TestApp } from './support/test-app';

const STREAMS = 10;

const random = seeded(Number(process.env.RESUME_SEED ?? 20261124));

/** Half the answers outlive a reconnection (so resume continues live), half are over before it (replay only). */
function conversation(transport: string, index: number) {
  const text =
    `${transport} answer ${index}: ünïcödé ✓ 🚀 ${'resumable words '.repeat(10 + Math.floor(random() * 20))}`.trim();
  const tps = index % 2 === 0 ? 15 : 200;
  return {
    streamId: `resume-${transport}-${index}-${Math.floor(random() * 1e9)}`,
    expected: text,
    messages: [{ role: 'user' as const, content: `[sim echo tps=${tps}] ${text}` }],
  };
}

/** Every event once, in order, from 0 to the terminal one, and the exact text. */
function expectWhole(events: CompletionEvent[], expected: string): void {
  expect(events.map((event) => event.seq)).toEqual(events.map((_, index) => index));
  expect(events.filter(isTerminalEvent)).toHaveLength(1);
  // The terminal event's type and, when it is one, the error it carried: what a failure needs to show.
  const last = events.at(-1);
  expect({ type: last?.type, error: last?.type === 'error' ? last.error : undefined }).toEqual({
    type: 'done',
    error: undefined,
  });
  expect(textOf(events)).toBe(expected);
}

describe('resume after connections cut at random points: the whole text, exactly once', () => {
  let testApp: TestApp;
  let proxy: CuttingProxy;
  let proxyUrl: string;

  beforeAll(async () => {
    testApp = await startTestApp({ SIMULATOR_PROFILE: 'fast', STREAM_RESUME_GRACE_MS: '20000' });
    const { hostname, port } = new URL(testApp.url);
    proxy = new CuttingProxy({ host: hostname, port: Number(port) });
    proxyUrl = await proxy.start();
  });
  afterAll(async () => {
    await proxy.close();
    await testApp.close();
  });

  it('SSE: the POST is cut, a real EventSource resumes, and when cut in turn reconnects by itself with Last-Event-ID', async () => {
    const cutsBefore = proxy.cuts;
    let automaticReconnects = 0;
    // Connections are cut by the network (the proxy, at random bytes) and by the client (at a random event).
    proxy.policy = () => (random() < 0.4 ? 200 + Math.floor(random() * 6000) : undefined);

    const run = async (index: number) => {
      const { streamId, expected, messages } = conversation('sse', index);
      const events: CompletionEvent[] = [];
      const client = new AbortController();
      const abortAt = Math.floor(random() * 6);
      // A cut POST rejects (the body broke off); what came before it is in `events`.
      await postStream(
        proxyUrl,
        { messages, streamId },
        {
          signal: client.signal,
          onEvent: (event) => {
            events.push(event);
            if (event.seq === abortAt) {
              client.abort();
            }
          },
        },
      ).catch(() => undefined);
      if (events.at(-1) && isTerminalEvent(events.at(-1) as CompletionEvent)) {
        return { expected, events };
      }
      const last = events.at(-1);
      await new Promise<void>((resolve, reject) => {
        // Cut before the start event: no Last-Event-ID, the stream replays from its start.
        const source = new EventSource(
          `${proxyUrl}/api/completions/${streamId}/stream${last ? `?lastEventId=${last.seq}` : ''}`,
        );
        // `event: error` (a stream's terminal error) and EventSource's own connection `error` share one name:
        // only the first carries data.
        const onEvent = (message: Event & { data?: string }) => {
          if (message.data === undefined) {
            if (source.readyState === EventSource.CLOSED) {
              reject(new Error(`stream ${streamId}: the resume was refused`));
            }
            // The connection broke: EventSource reconnects on its own, sending Last-Event-ID.
            automaticReconnects += 1;
            return;
          }
          const event = JSON.parse(message.data) as CompletionEvent;
          events.push(event);
          if (isTerminalEvent(event)) {
            source.close();
            resolve();
          }
        };
        for (const type of ['start', 'token', 'done', 'error']) {
          source.addEventListener(type, onEvent);
        }
        // Until one EventSource has had to reconnect by itself, each new one has its connection cut too.
        source.addEventListener('open', () => {
          if (automaticReconnects === 0) {
            proxy.cutOpenAfter(300 + Math.floor(random() * 3000));
          }
        });
      });
      return { expected, events };
    };

    const results = await Promise.all(Array.from({ length: STREAMS }, (_, index) => run(index)));
    proxy.policy = () => undefined;

    results.forEach(({ events, expected }) => expectWhole(events, expected));
    expect(proxy.cuts - cutsBefore).toBeGreaterThan(0);
    expect(automaticReconnects).toBeGreaterThan(0);
  }, 60_000);

  it('Socket.IO: the socket is cut at random points, reconnects, and completion:resume continues each stream', async () => {
    const cutsBefore = proxy.cuts;
    const socket: CompletionClient = io(`${proxyUrl}/completions`, {
      transports: ['websocket'],
      forceNew: true,
      reconnectionDelay: 50,
      reconnectionDelayMax: 200,
    });
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const streams = new Map(
      Array.from({ length: STREAMS }, (_, index) => {
        const stream = conversation('socket', index);
        return [stream.streamId, { ...stream, events: [] as CompletionEvent[] }];
      }),
    );
    socket.on('completion', (event) => streams.get(event.streamId)?.events.push(event));
    const acks = await Promise.all(
      [...streams.values()].map(
        ({ streamId, messages }) =>
          new Promise<StartAck>((resolve) =>
            socket.emit('completion:start', { messages, streamId }, resolve),
          ),
      ),
    );
    expect(acks.every((ack) => ack.ok)).toBe(true);

    let reconnects = 0;
    const resumeAcks: SimpleAck[] = [];
    socket.on('connect', () => {
      reconnects += 1;
      for (const { streamId, events } of streams.values()) {
        const last = events.at(-1);
        if (!last || !isTerminalEvent(last)) {
          socket.emit('completion:resume', { streamId, lastSeq: last?.seq ?? -1 }, (ack) =>
            resumeAcks.push(ack),
          );
        }
      }
    });
    let cutsLeft = 4;
    proxy.policy = () =>
      cutsLeft > 0 && random() < 0.5 ? (cutsLeft--, 500 + Math.floor(random() * 20_000)) : undefined;
    proxy.cutOpenAfter(200 + Math.floor(random() * 10_000));

    const finished = () =>
      [...streams.values()].every(
        ({ events }) => events.length > 0 && isTerminalEvent(events.at(-1) as CompletionEvent),
      );
    await eventually(finished, 45_000);
    socket.disconnect();
    proxy.policy = () => undefined;

    for (const { events, expected } of streams.values()) {
      expectWhole(events, expected);
    }
    expect(proxy.cuts - cutsBefore).toBeGreaterThanOrEqual(1);
    expect(reconnects).toBeGreaterThanOrEqual(1);
    expect(resumeAcks.every((ack) => ack.ok)).toBe(true);
  }, 60_000);
});
