import { type CompletionEvent, isTerminalEvent, type SimpleAck, type StartAck } from '@app/contracts';
import { seeded, expectWhole } from '../support/stream-checks';
import { EventSource } from 'eventsource';
import { io } from 'socket.io-client';
import { startRedisServer, type RedisServer, sharedDeployment } from '../support/redis-server';
import type { CompletionClient } from '../support/socket-client';
import { postStream, readStream, textOf } from '../support/sse-client';
import { eventually, startTestApp, type TestApp, whenReady } from '../support/test-app';

const ALICE = 'key-alice-5c1e';
const MALLORY = 'key-mallory-90ab';
const alice = { authorization: `Bearer ${ALICE}` };
const mallory = { authorization: `Bearer ${MALLORY}` };
const RETENTION_MS = 3000;
const GRACE_MS = 1000;

const random = seeded(Number(process.env.RESUME_SEED ?? 20261201));

/** Some answers outlive the cut (the resume continues live), some are over before it (replay only). */
function conversation(transport: string, index: number) {
  const text =
    `${transport} answer ${index}: ünïcödé ✓ 🚀 ${'shared words '.repeat(10 + Math.floor(random() * 20))}`.trim();
  const tps = index % 3 === 2 ? 400 : 25;
  return {
    streamId: `several-${transport}-${index}-${Math.floor(random() * 1e9)}`,
    expected: text,
    messages: [{ role: 'user' as const, content: `[sim echo tps=${tps}] ${text}` }],
  };
}

function socketOn(url: string, token: string): Promise<CompletionClient> {
  const socket: CompletionClient = io(`${url}/completions`, {
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    auth: { token },
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

/** Collects a stream's events on `socket` until its terminal one. */
function collectOn(socket: CompletionClient, streamId: string, events: CompletionEvent[]): Promise<void> {
  return new Promise((resolve) => {
    const listener = (event: CompletionEvent) => {
      if (event.streamId !== streamId) {
        return;
      }
      events.push(event);
      if (isTerminalEvent(event)) {
        socket.off('completion', listener);
        resolve();
      }
    };
    socket.on('completion', listener);
  });
}

/** Starts a POST stream and gives back its headers, the events so far, and a way to cut it. */
async function openStream(url: string, body: object, headers = alice) {
  const client = new AbortController();
  const response = await fetch(`${url}/api/completions/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: client.signal,
  });
  const events: CompletionEvent[] = [];
  let onEvent: (event: CompletionEvent) => void = () => undefined;
  const done = readStream(response, (event) => {
    events.push(event);
    onEvent(event);
  }).catch(() => undefined);
  return {
    response,
    events,
    done,
    streamId: response.headers.get('x-stream-id') as string,
    resumeToken: response.headers.get('x-resume-token') as string,
    /** Resolves once `check` holds for an event (or the stream ended). */
    until: (check: (event: CompletionEvent) => boolean) =>
      new Promise<void>((resolve) => {
        if (events.some(check) || events.some(isTerminalEvent)) {
          resolve();
          return;
        }
        onEvent = (event) => {
          if (check(event) || isTerminalEvent(event)) {
            resolve();
          }
        };
        void done.then(() => resolve());
      }),
    cut: () => client.abort(),
  };
}

describe('several instances on one Redis: resume, cancel, ownership and grace from any instance', () => {
  let redis: RedisServer;
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    redis = await startRedisServer();
    const env = {
      ...sharedDeployment(redis.url, `${ALICE},${MALLORY}`),
      STREAM_RESUME_GRACE_MS: String(GRACE_MS),
      STREAM_RETENTION_MS: String(RETENTION_MS),
    };
    a = await startTestApp(env);
    b = await startTestApp(env);
    await whenReady(a.url, b.url);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await redis?.close();
  });

  it('is ready on both instances, with Redis in the readiness check', async () => {
    for (const app of [a, b]) {
      const response = await fetch(`${app.url}/health/ready`);
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ info: { redis: { status: 'up' } } });
    }
  });

  it('SSE: started on A, cut at a random event, resumed on B with Last-Event-ID: the whole text, once', async () => {
    const run = async (index: number) => {
      const { streamId, expected, messages } = conversation('sse', index);
      const stream = await openStream(a.url, { messages, streamId });
      const cutAt = Math.floor(random() * 12);
      await stream.until((event) => event.seq >= cutAt);
      stream.cut();
      await stream.done;
      const events = [...stream.events];
      if (events.some(isTerminalEvent)) {
        return { events, expected };
      }
      const last = events.at(-1);
      const resumed = await readStream(
        await fetch(`${b.url}/api/completions/${streamId}/stream`, {
          headers: { ...alice, ...(last ? { 'last-event-id': String(last.seq) } : {}) },
        }),
      );
      expect(resumed.status).toBe(200);
      return { events: [...events, ...resumed.events], expected };
    };
    const results = await Promise.all(Array.from({ length: 9 }, (_, index) => run(index)));
    results.forEach(({ events, expected }) => expectWhole(events, expected));
  });

  it('EventSource: the resume token from A opens the stream on B', async () => {
    const run = async (index: number) => {
      const { streamId, expected, messages } = conversation('eventsource', index);
      const stream = await openStream(a.url, { messages, streamId });
      const cutAt = Math.floor(random() * 10);
      await stream.until((event) => event.seq >= cutAt);
      stream.cut();
      await stream.done;
      const events = [...stream.events];
      if (events.some(isTerminalEvent)) {
        return { events, expected };
      }
      const last = events.at(-1) as CompletionEvent;
      await new Promise<void>((resolve, reject) => {
        const source = new EventSource(
          `${b.url}/api/completions/${streamId}/stream?lastEventId=${last.seq}&resumeToken=${stream.resumeToken}`,
        );
        const onEvent = (message: Event & { data?: string }) => {
          if (message.data === undefined) {
            source.close();
            reject(new Error(`${streamId}: the resume on B failed after ${events.length} events`));
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
      });
      return { events, expected };
    };
    const results = await Promise.all(Array.from({ length: 6 }, (_, index) => run(index)));
    results.forEach(({ events, expected }) => expectWhole(events, expected));
  });

  it('Socket.IO: a socket on A is cut; completion:resume on a socket to B continues each stream', async () => {
    const onA = await socketOn(a.url, ALICE);
    const onB = await socketOn(b.url, ALICE);
    const runs = Array.from({ length: 6 }, (_, index) => {
      const { streamId, expected, messages } = conversation('socket', index);
      return { streamId, expected, messages, events: [] as CompletionEvent[] };
    });
    const cutAt = 2 + Math.floor(random() * 8);
    await new Promise<void>((resolve, reject) => {
      onA.on('completion', (event) => {
        runs.find((run) => run.streamId === event.streamId)?.events.push(event);
        if (
          runs.every((run) => (run.events.at(-1)?.seq ?? -1) >= cutAt || run.events.some(isTerminalEvent))
        ) {
          resolve();
        }
      });
      for (const run of runs) {
        onA.emit('completion:start', { messages: run.messages, streamId: run.streamId }, (ack: StartAck) => {
          if (!ack.ok) {
            reject(new Error(`start refused: ${ack.error.code}`));
          }
        });
      }
    });
    onA.disconnect();
    await Promise.all(
      runs
        .filter((run) => !run.events.some(isTerminalEvent))
        .map(async (run) => {
          const collected = collectOn(onB, run.streamId, run.events);
          const ack = await new Promise<SimpleAck>((resolve) =>
            onB.emit(
              'completion:resume',
              { streamId: run.streamId, lastSeq: run.events.at(-1)?.seq ?? -1 },
              resolve,
            ),
          );
          expect(ack).toEqual({ ok: true });
          await collected;
        }),
    );
    onB.disconnect();
    runs.forEach((run) => expectWhole(run.events, run.expected));
  });

  it('two listeners on B, the second joining far behind the first: both get every event once, in order', async () => {
    const expected = `two followers ✓ ${'behind words '.repeat(30)}`.trim();
    const stream = await openStream(a.url, {
      messages: [{ role: 'user', content: `[sim echo tps=40] ${expected}` }],
    });
    const first = readStream(
      await fetch(`${b.url}/api/completions/${stream.streamId}/stream`, { headers: alice }),
    );
    await stream.until((event) => event.seq >= 15);
    const second = readStream(
      await fetch(`${b.url}/api/completions/${stream.streamId}/stream`, {
        headers: { ...alice, 'last-event-id': '2' },
      }),
    );
    const [whole, behind] = await Promise.all([first, second]);
    await stream.done;

    expectWhole(whole.events, expected);
    expect(behind.events.map((event) => event.seq)).toEqual(whole.events.slice(3).map((event) => event.seq));
    expect(textOf(behind.events)).toBe(textOf(whole.events.slice(3)));
  });

  it('a follower whose pushed events are lost (its subscriber connection killed mid-stream) still gets each once, in order', async () => {
    const expected = `reconnected follower ✓ ${'pushed words '.repeat(40)}`.trim();
    const stream = await openStream(a.url, {
      messages: [{ role: 'user', content: `[sim echo tps=40] ${expected}` }],
    });
    const client = await redis.client();
    let killed: Promise<number> | undefined;
    const followed = await readStream(
      await fetch(`${b.url}/api/completions/${stream.streamId}/stream`, { headers: alice }),
      (event) => {
        if (event.seq === 10) {
          // Every subscriber (A's and B's): what is published until B has subscribed again is lost to it.
          killed = client.sendCommand<number>(['CLIENT', 'KILL', 'TYPE', 'pubsub']);
        }
      },
    );
    await stream.done;

    expect(await killed).toBeGreaterThanOrEqual(2);
    expectWhole(followed.events, expected);
  });

  it('a cancel on B aborts the upstream request on A at once', async () => {
    const abortedBefore = a.simulator.stats().aborted;
    const stream = await openStream(a.url, {
      messages: [{ role: 'user', content: '[sim tokens=400 tps=20] long' }],
    });
    await stream.until((event) => event.type === 'token');

    const cancelled = await fetch(`${b.url}/api/completions/${stream.streamId}`, {
      method: 'DELETE',
      headers: alice,
    });
    expect(cancelled.status).toBe(204);
    await stream.done;

    expect(stream.events.at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled' });
    await eventually(() => a.simulator.stats().aborted === abortedBefore + 1, 2000);
    expect(stream.events.filter((event) => event.type === 'token').length).toBeLessThan(100);
  });

  it('another principal gets 404 from the other instance, as for an unknown stream; a taken id is refused there', async () => {
    const stream = await openStream(a.url, {
      messages: [{ role: 'user', content: '[sim tokens=200 tps=20] mine' }],
      streamId: `owned-${Math.floor(random() * 1e9)}`,
    });
    await stream.until((event) => event.type === 'start');

    const resume = await fetch(`${b.url}/api/completions/${stream.streamId}/stream`, { headers: mallory });
    const cancel = await fetch(`${b.url}/api/completions/${stream.streamId}`, {
      method: 'DELETE',
      headers: mallory,
    });
    const unknown = await fetch(`${b.url}/api/completions/no-such-stream/stream`, { headers: alice });
    const socket = await socketOn(b.url, MALLORY);
    const socketResume = await new Promise<SimpleAck>((resolve) =>
      socket.emit('completion:resume', { streamId: stream.streamId, lastSeq: -1 }, resolve),
    );
    socket.disconnect();
    const taken = await postStream(
      b.url,
      { messages: [{ role: 'user', content: 'same id' }], streamId: stream.streamId },
      { headers: alice },
    );

    expect([resume.status, cancel.status, unknown.status]).toEqual([404, 404, 404]);
    expect(await resume.json()).toMatchObject({ code: 'not_found' });
    expect(socketResume).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(taken.status).toBe(400);
    stream.cut();
    await fetch(`${a.url}/api/completions/${stream.streamId}`, { method: 'DELETE', headers: alice });
  });

  it('the resume grace holds while a listener on another instance follows; it ends once nobody listens anywhere', async () => {
    // 40 tokens at 10/s: about 4 s, four times the grace, with nobody listening on A after the first token.
    const held = await openStream(a.url, {
      messages: [{ role: 'user', content: '[sim tokens=40 tps=10] held' }],
    });
    await held.until((event) => event.type === 'token');
    held.cut();
    await held.done;
    const followed = await readStream(
      await fetch(`${b.url}/api/completions/${held.streamId}/stream`, {
        headers: { ...alice, 'last-event-id': String(held.events.at(-1)?.seq) },
      }),
    );
    expect(followed.events.at(-1)).toMatchObject({ type: 'done', finishReason: 'stop' });

    const abortedBefore = a.simulator.stats().aborted;
    const dropped = await openStream(a.url, {
      messages: [{ role: 'user', content: '[sim tokens=400 tps=10] dropped' }],
    });
    await dropped.until((event) => event.type === 'token');
    dropped.cut();
    const elsewhere = new AbortController();
    const response = await fetch(`${b.url}/api/completions/${dropped.streamId}/stream`, {
      headers: alice,
      signal: elsewhere.signal,
    });
    const seenElsewhere: CompletionEvent[] = [];
    const reading = readStream(response, (event) => {
      seenElsewhere.push(event);
      if (seenElsewhere.filter((seen) => seen.type === 'token').length === 15) {
        elsewhere.abort();
      }
    }).catch(() => undefined);
    await reading;
    const leftAt = Date.now();
    expect(a.simulator.stats().aborted).toBe(abortedBefore);
    // Nobody listens anywhere now: the grace (1 s) plus at most a presence renewal (3 s), then A aborts upstream.
    await eventually(() => a.simulator.stats().aborted === abortedBefore + 1, GRACE_MS + 5000);
    expect(Date.now() - leftAt).toBeGreaterThanOrEqual(GRACE_MS - 50);
  });

  it('leaves no key of any stream once the retention has passed', async () => {
    const client = await redis.client();
    const streamKeys = async () => (await client.keys('llmgw:{*')).sort();
    const deadline = Date.now() + RETENTION_MS + 35_000;
    let left = await streamKeys();
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      left = await streamKeys();
    }
    expect(left).toEqual([]);
    expect(await client.keys('llmgw:instance:*')).toHaveLength(2);
  }, 60_000);
});
