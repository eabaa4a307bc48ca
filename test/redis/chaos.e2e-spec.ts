import { type CompletionEvent, type CompletionRequest, isTerminalEvent, type StartAck } from '@app/contracts';
import { seeded } from '../support/stream-checks';
import { io } from 'socket.io-client';
import { startRedisServer, type RedisServer, sharedDeployment } from '../support/redis-server';
import { startServerProcess, type ServerProcess } from '../support/server-process';
import type { CompletionClient } from '../support/socket-client';
import { readStream, textOf } from '../support/sse-client';
import { eventually, startTestApp, type TestApp, whenReady } from '../support/test-app';

const STREAMS = Number(process.env.CHAOS_STREAMS ?? 2000);
const BATCH = 100;
const KEY = 'key-chaos-8e21';
const auth = { authorization: `Bearer ${KEY}` };

interface Outcome {
  index: number;
  kind: string;
  origin: 'killed' | 'kept';
  expected?: string;
  events: CompletionEvent[];
}

describe('chaos on two instances: 2,000 streams, cancels, vanishing clients, resumes anywhere, one instance killed', () => {
  let redis: RedisServer;
  let killed: ServerProcess;
  let kept: TestApp;

  beforeAll(async () => {
    redis = await startRedisServer();
    const env = {
      ...sharedDeployment(redis.url, KEY),
      // The default: a resume arrives well within it even on a loaded machine (0.3 s and 2 s both cancelled some
      // streams before their resume, on another instance or, with this process's event loop busy, on this one).
      STREAM_RESUME_GRACE_MS: '5000',
      STREAM_RETENTION_MS: '2000',
      UPSTREAM_IDLE_TIMEOUT_MS: '10000',
      SIMULATOR_PROFILE: 'fast',
      RATE_LIMIT_PER_MINUTE: '100000',
      RATE_LIMIT_CONCURRENT_STREAMS: '10000',
      // One principal follows hundreds of streams at once here; the caps have their own suite (limits).
      RATE_LIMIT_LISTENERS_PER_PRINCIPAL: '10000',
    };
    [killed, kept] = await Promise.all([
      startServerProcess({ ...env, LLM_PROVIDER: 'simulator', LOG_LEVEL: 'silent' }),
      startTestApp(env),
    ]);
    await whenReady(killed.url, kept.url);
  }, 60_000);
  afterAll(async () => {
    await killed?.kill();
    await kept?.close();
    await redis?.close();
  });

  it('streams on the surviving instance complete exactly; those on the killed one are continued there (or end with stream_lost); no upstream left open', async () => {
    const random = seeded(Number(process.env.CHAOS_SEED ?? 20261201));
    let killedAlive = true;
    let tokensFromKilled = 0;
    let killing: Promise<void> | undefined;
    const urlOf = (origin: Outcome['origin']) => (origin === 'killed' ? killed.url : kept.url);
    /** A live instance at random, for a resume or a cancel. */
    const anywhere = () => (killedAlive && random() < 0.5 ? killed.url : kept.url);

    const socketTo = (url: string) => {
      const socket: CompletionClient = io(`${url}/completions`, {
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
    const sockets = {
      killed: await Promise.all([1, 2].map(() => socketTo(killed.url))),
      kept: await Promise.all([1, 2].map(() => socketTo(kept.url))),
    };

    const watch = (origin: Outcome['origin'], events: CompletionEvent[]) => (event: CompletionEvent) => {
      events.push(event);
      if (origin === 'killed' && event.type === 'token') {
        tokensFromKilled += 1;
      }
    };

    /** POSTs a stream; `cutAt`: the client drops the connection at that seq. Never throws. */
    const sse = async (
      url: string,
      body: object,
      onEvent: (event: CompletionEvent) => void,
      cutAt?: number,
    ) => {
      const controller = new AbortController();
      try {
        const response = await fetch(`${url}/api/completions/stream`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...auth },
          body: JSON.stringify(body),
          signal: controller.signal,
        });
        await readStream(response, (event) => {
          onEvent(event);
          if (event.seq === cutAt) {
            controller.abort();
          }
        });
      } catch {
        // Cut by the client, or the instance died: what came before is in the events.
      }
    };

    const overSocket = (
      socket: CompletionClient,
      body: CompletionRequest,
      onEvent: (event: CompletionEvent) => void,
    ) =>
      new Promise<string | undefined>((resolve) => {
        let streamId: string | undefined;
        const early: CompletionEvent[] = [];
        const listener = (event: CompletionEvent) => {
          if (streamId === undefined) {
            early.push(event);
            return;
          }
          if (event.streamId === streamId) {
            onEvent(event);
            if (isTerminalEvent(event)) {
              finish();
            }
          }
        };
        const finish = () => {
          socket.off('completion', listener);
          socket.off('disconnect', finish);
          resolve(streamId);
        };
        socket.on('completion', listener);
        socket.once('disconnect', finish);
        socket.emit('completion:start', body, (ack: StartAck) => {
          if (!ack.ok) {
            finish();
            return;
          }
          streamId = ack.streamId;
          early.filter((event) => event.streamId === streamId).forEach(listener);
        });
      });

    /** Follows a stream to its end from `url` after the events already seen; on a refused resume, from the survivor. */
    const refusedResumes: string[] = [];
    const resume = async (url: string, streamId: string, events: CompletionEvent[]) => {
      for (const target of [url, kept.url]) {
        try {
          const last = events.at(-1);
          const response = await fetch(`${target}/api/completions/${streamId}/stream`, {
            headers: { ...auth, ...(last ? { 'last-event-id': String(last.seq) } : {}) },
          });
          if (response.status === 200) {
            await readStream(response, (event) => events.push(event));
            return;
          }
          refusedResumes.push(`${streamId} on ${target === kept.url ? 'kept' : 'other'}: ${response.status}`);
        } catch {
          // That instance is gone: try the survivor.
        }
      }
    };

    const one = async (index: number): Promise<Outcome> => {
      const origin: Outcome['origin'] = killedAlive && random() < 0.5 ? 'killed' : 'kept';
      const url = urlOf(origin);
      const text = `chaos ${index} ü ${'word '.repeat(Math.floor(random() * 30))}`.trim();
      const streamId = `chaos-${index}-${Math.floor(random() * 1e9)}`;
      const echo: CompletionRequest = {
        streamId,
        messages: [{ role: 'user', content: `[sim echo tps=200] ${text}` }],
      };
      const slow = { streamId, messages: [{ role: 'user', content: '[sim tokens=200 tps=100]' }] };
      const events: CompletionEvent[] = [];
      const onEvent = watch(origin, events);
      const roll = random();
      let kind: string;
      let expected: string | undefined = text;
      if (roll < 0.3) {
        kind = 'sse';
        await sse(url, echo, onEvent);
      } else if (roll < 0.5) {
        kind = 'socket';
        await overSocket(sockets[origin][index % 2], echo, onEvent);
      } else if (roll < 0.65) {
        kind = 'cancel-anywhere';
        expected = undefined;
        let cancelled = false;
        await sse(url, slow, (event) => {
          onEvent(event);
          if (event.type === 'token' && !cancelled) {
            cancelled = true;
            const cancel = (target: string) =>
              fetch(`${target}/api/completions/${streamId}`, { method: 'DELETE', headers: auth });
            void cancel(anywhere()).catch(() => cancel(kept.url).catch(() => undefined));
          }
        });
      } else if (roll < 0.88) {
        kind = 'resume-anywhere';
        await sse(url, echo, onEvent, 1 + Math.floor(random() * 8));
        if (!events.some(isTerminalEvent)) {
          await resume(anywhere(), streamId, events);
        }
      } else {
        kind = 'vanish';
        await sse(
          url,
          { streamId, messages: [{ role: 'user', content: '[sim tokens=2000 tps=100]' }] },
          onEvent,
          1,
        );
        return { index, kind, origin, events };
      }
      if (!events.some(isTerminalEvent)) {
        // The instance died under the client: the survivor tells how the stream ended.
        await resume(kept.url, streamId, events);
      }
      return { index, kind, origin, expected, events };
    };

    const outcomes: Outcome[] = [];
    let killedAt = 0;
    for (let start = 0; start < STREAMS; start += BATCH) {
      const batch = Promise.all(Array.from({ length: BATCH }, (_, offset) => one(start + offset)));
      if (start === Math.floor(STREAMS / BATCH / 2) * BATCH) {
        // Mid-run, mid-batch: once the streams on the doomed instance are flowing, SIGKILL it.
        const flowing = tokensFromKilled + 50;
        killing = eventually(() => tokensFromKilled >= flowing, 20_000).then(async () => {
          killedAlive = false;
          await killed.kill();
          killedAt = Date.now();
        });
      }
      outcomes.push(...(await batch));
      await killing;
    }
    Object.values(sockets)
      .flat()
      .forEach((socket) => socket.disconnect());

    const describeOutcome = (outcome: Outcome) =>
      `#${outcome.index} ${outcome.kind} on ${outcome.origin}: ${JSON.stringify(textOf(outcome.events))} for ${JSON.stringify(outcome.expected)}: ${outcome.events.map((event) => `${event.seq}:${event.type}${event.type === 'error' ? `(${event.error.code})` : ''}${event.type === 'done' ? `(${event.finishReason})` : ''}`).join(' ')}`;
    const followed = outcomes.filter((outcome) => outcome.kind !== 'vanish');
    const terminals = (outcome: Outcome) => outcome.events.filter(isTerminalEvent);
    const notOneTerminal = followed.filter((outcome) => terminals(outcome).length !== 1);
    const inOrder = (outcome: Outcome) => outcome.events.every((event, index) => event.seq === index);
    const outOfOrder = followed.filter((outcome) => !inOrder(outcome));
    const keptWrong = followed.filter(
      (outcome) =>
        outcome.origin === 'kept' &&
        (outcome.expected === undefined
          ? !(outcome.events.at(-1)?.type === 'done')
          : outcome.events.at(-1)?.type !== 'done' || textOf(outcome.events) !== outcome.expected),
    );
    const killedWrong = followed.filter((outcome) => {
      const last = outcome.events.at(-1);
      if (outcome.origin !== 'killed') {
        return false;
      }
      if (last?.type === 'error') {
        return last.error.code !== 'stream_lost';
      }
      return (
        last?.type !== 'done' ||
        (outcome.expected !== undefined && textOf(outcome.events) !== outcome.expected)
      );
    });
    const lost = followed.filter((outcome) => {
      const last = outcome.events.at(-1);
      return last?.type === 'error' && last.error.code === 'stream_lost';
    });
    // Taken over by the survivor after the kill (issue 20): a `route` event, reason `handover`, then the rest.
    const continued = followed.filter((outcome) =>
      outcome.events.some((event) => event.type === 'route' && event.reason === 'handover'),
    );
    const cancelsKept = followed.filter(
      (outcome) =>
        outcome.origin === 'kept' &&
        outcome.kind === 'cancel-anywhere' &&
        outcome.events.at(-1)?.type === 'done' &&
        (outcome.events.at(-1) as { finishReason: string }).finishReason === 'cancelled',
    );
    const problems = [...notOneTerminal, ...outOfOrder, ...keptWrong, ...killedWrong]
      .slice(0, 10)
      .map(describeOutcome);

    expect({ problems, refusedResumes: problems.length > 0 ? refusedResumes : [] }).toEqual({
      problems: [],
      refusedResumes: [],
    });
    expect(killedAt).toBeGreaterThan(0);
    // Streams were running on the killed instance: each continued on the survivor, or lost (a client of the killed
    // instance that held events Redis never got: see docs/operations.md, "Handover").
    expect(continued.length + lost.length).toBeGreaterThan(0);
    expect(cancelsKept.length).toBeGreaterThan(0);
    await eventually(() => kept.simulator.stats().active === 0, 15_000);
    const kinds = outcomes.reduce<Record<string, number>>((counts, outcome) => {
      const key = `${outcome.kind}@${outcome.origin}`;
      counts[key] = (counts[key] ?? 0) + 1;
      return counts;
    }, {});
    console.warn(
      `chaos on two instances: ${JSON.stringify(kinds)}; continued ${continued.length}, stream_lost ${lost.length}`,
    );
  }, 180_000);
});
