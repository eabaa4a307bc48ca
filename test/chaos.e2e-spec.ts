import type { CompletionEvent } from '@app/contracts';
import { seeded } from './support/stream-checks';
import { StreamRegistry } from '@app/streams';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { postStream, readStream, textOf } from './support/sse-client';
import { type CompletionClient, connect, streamOver } from './support/socket-client';
import { eventually, startTestApp, type TestApp } from './support/test-app';

const STREAMS = 2000;
const BATCH = 100;
const RETENTION_MS = 400;
const GRACE_MS = 300;

function heapAfterGc(): number {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
  return process.memoryUsage().heapUsed;
}

type Outcome = { kind: string; expected?: string; events: CompletionEvent[] };

describe('chaos: 2,000 streams with random cancels, disconnects, resumes and upstream faults', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await startTestApp({
      SIMULATOR_PROFILE: 'fast',
      STREAM_RESUME_GRACE_MS: String(GRACE_MS),
      STREAM_RETENTION_MS: String(RETENTION_MS),
    });
  });
  afterAll(() => testApp.close());

  it('leaves nothing running, nothing retained past retention, and every completed stream exact', async () => {
    const random = seeded(Number(process.env.CHAOS_SEED ?? 20261124));
    const heapBefore = heapAfterGc();
    const sockets: CompletionClient[] = await Promise.all(
      Array.from({ length: 4 }, () => connect(testApp.url)),
    );
    const outcomes: Outcome[] = [];

    const one = async (index: number): Promise<Outcome> => {
      const text = `chaos ${index} ü ${'word '.repeat(Math.floor(random() * 30))}`.trim();
      const echo = { messages: [{ role: 'user' as const, content: `[sim echo tps=400] ${text}` }] };
      const slow = { messages: [{ role: 'user' as const, content: '[sim tokens=200 tps=100]' }] };
      const socket = sockets[index % sockets.length];
      const roll = random();
      if (roll < 0.3) {
        return { kind: 'sse', expected: text, events: (await postStream(testApp.url, echo)).events };
      }
      if (roll < 0.55) {
        return { kind: 'socket', expected: text, events: (await streamOver(socket, echo)).events };
      }
      if (roll < 0.65) {
        const { events } = await postStream(testApp.url, slow, {
          onEvent: (event) => {
            if (event.type === 'token' && event.seq === 2) {
              void fetch(`${testApp.url}/api/completions/${event.streamId}`, { method: 'DELETE' });
            }
          },
        });
        return { kind: 'sse-cancel', events };
      }
      if (roll < 0.72) {
        const { events } = await streamOver(socket, slow, (event, streamId) => {
          if (event.type === 'token' && event.seq === 2) {
            socket.emit('completion:cancel', { streamId }, () => undefined);
          }
        });
        return { kind: 'socket-cancel', events };
      }
      if (roll < 0.85) {
        // Drop the connection at a random point, resume within the grace: the whole text, exactly once.
        const controller = new AbortController();
        const cut = 1 + Math.floor(random() * 5);
        const first = await postStream(testApp.url, echo, {
          signal: controller.signal,
          onEvent: (event) => event.seq === cut && controller.abort(),
        }).catch(() => undefined);
        const seen = first?.events ?? [];
        return { kind: 'sse-resume', expected: text, events: await resumeAfter(seen, testApp.url, echo) };
      }
      if (roll < 0.92) {
        const fault = random() < 0.5 ? '[sim fault=drop after=2]' : '[sim fault=server_error]';
        return {
          kind: 'fault',
          events: (await postStream(testApp.url, { messages: [{ role: 'user', content: fault }] })).events,
        };
      }
      // Vanish without resuming: the grace expires and the upstream is aborted.
      const controller = new AbortController();
      await postStream(testApp.url, slow, {
        signal: controller.signal,
        onEvent: (event) => event.seq === 1 && controller.abort(),
      }).catch(() => undefined);
      return { kind: 'vanish', events: [] };
    };

    for (let start = 0; start < STREAMS; start += BATCH) {
      outcomes.push(
        ...(await Promise.all(Array.from({ length: BATCH }, (_, offset) => one(start + offset)))),
      );
    }
    sockets.forEach((socket) => socket.disconnect());

    const registry = testApp.app.get(StreamRegistry);
    await eventually(() => testApp.simulator.stats().active === 0, 10_000);
    await eventually(() => registry.size === 0, GRACE_MS + RETENTION_MS + 10_000);

    const wrongText = outcomes.filter(
      (outcome) =>
        outcome.expected !== undefined &&
        (textOf(outcome.events) !== outcome.expected || outcome.events.at(-1)?.type !== 'done'),
    );
    const unterminated = outcomes.filter(
      (outcome) =>
        outcome.kind !== 'vanish' && !['done', 'error'].includes(outcome.events.at(-1)?.type ?? ''),
    );
    const cancels = outcomes.filter((outcome) => outcome.kind.endsWith('-cancel'));
    const heapGrowth = heapAfterGc() - heapBefore;
    const kinds = outcomes.reduce<Record<string, number>>(
      (counts, { kind }) => ({ ...counts, [kind]: (counts[kind] ?? 0) + 1 }),
      {},
    );
    process.stderr.write(
      `chaos: ${JSON.stringify(kinds)}; heap growth ${(heapGrowth / 1e6).toFixed(1)} MB\n`,
    );

    expect(outcomes).toHaveLength(STREAMS);
    // How each wrong stream ended (its terminal event's type, or the error it carried), not only which it was.
    expect(
      wrongText.map(({ kind, expected, events }) => {
        const last = events.at(-1);
        return { kind, expected, ended: last?.type === 'error' ? last.error.code : last?.type };
      }),
    ).toEqual([]);
    expect(unterminated.map(({ kind }) => kind)).toEqual([]);
    expect(cancels.every(({ events }) => events.at(-1)?.type === 'done')).toBe(true);
    expect(heapGrowth).toBeLessThan(64 * 1024 * 1024);
  }, 120_000);
});

/** Resumes after the last event seen (or from the start), as a client that lost its connection does. */
async function resumeAfter(
  seen: CompletionEvent[],
  baseUrl: string,
  request: { messages: { role: 'user'; content: string }[] },
): Promise<CompletionEvent[]> {
  const streamId = seen[0]?.streamId;
  if (!streamId) {
    // Cut before the start event arrived: nothing to resume, start over.
    return (await postStream(baseUrl, request)).events;
  }
  const lastSeq = seen.at(-1)?.seq ?? -1;
  const response = await fetch(`${baseUrl}/api/completions/${streamId}/stream`, {
    headers: { 'last-event-id': String(lastSeq) },
  });
  return [...seen, ...(await readStream(response)).events];
}
