import { startNginx, type Nginx } from '../support/nginx';
import { startRedisServer, type RedisServer, sharedDeployment } from '../support/redis-server';
import { startServerProcess, type ServerProcess } from '../support/server-process';
import { readStream } from '../support/sse-client';
import { eventually, startTestApp, type TestApp, whenReady } from '../support/test-app';
import {
  answerOf,
  type FollowedStream,
  longestGap,
  percentile,
  shapeOf,
  socketStream,
  sseStream,
} from './handover-clients';

const KEY = 'key-handover-rolling-8a1f';
const auth = { authorization: `Bearer ${KEY}` };
const STREAMS = 200;

const env = (redisUrl: string, port = '0') => ({
  ...sharedDeployment(redisUrl, KEY),
  PORT: port,
  STREAM_RESUME_GRACE_MS: '30000',
  STREAM_RETENTION_MS: '60000',
  SHUTDOWN_GRACE_MS: '10000',
  LLM_PROVIDER: 'simulator',
  SIMULATOR_PROFILE: 'instant',
  LOG_LEVEL: 'silent',
  RATE_LIMIT_PER_MINUTE: '100000',
  RATE_LIMIT_CONCURRENT_STREAMS: '1000',
  RATE_LIMIT_LISTENERS_PER_PRINCIPAL: '1000',
});

/**
 * Every fourth stream is a reasoning model's (its thinking long enough that handovers land in it too); the answers
 * echo the prompt, so the text expected is known, and the reasoning is the uninterrupted run's (see `reference`).
 */
function request(index: number) {
  const reasoning = index % 4 === 3;
  const text = `rolling ${index} ✓ ünïcödé 🚀 ${'handed over words '.repeat(60)}`.trim();
  return {
    text,
    reasoning,
    body: {
      model: reasoning ? 'simulator-reasoning' : undefined,
      messages: [
        { role: 'user' as const, content: `[sim echo tps=8${reasoning ? ' think=40' : ''}] ${text}` },
      ],
    },
  };
}

/**
 * A rolling restart of both instances behind the example nginx, one after the other: SIGTERM (each running stream is
 * handed to the other instance, which continues it), then the same instance again on the same port. 200 live streams
 * over SSE and Socket.IO, their clients reconnecting through nginx as real ones do: every stream is one whole
 * answer, byte for byte the uninterrupted one.
 */
describe('a rolling restart of both instances behind nginx, with 200 live streams', () => {
  let redis: RedisServer;
  let instances: ServerProcess[];
  let nginx: Nginx;
  /** One more gateway, alone (no Redis, never restarted): the uninterrupted runs of the reasoning streams. */
  let reference: TestApp;

  beforeAll(async () => {
    redis = await startRedisServer();
    instances = await Promise.all([startServerProcess(env(redis.url)), startServerProcess(env(redis.url))]);
    await whenReady(...instances.map((instance) => instance.url));
    nginx = await startNginx(instances.map((instance) => instance.url));
    reference = await startTestApp({ AUTH_MODE: 'api-key', AUTH_API_KEYS: KEY });
  }, 90_000);
  afterAll(async () => {
    await nginx?.close();
    await Promise.all(instances?.map((instance) => instance.kill()) ?? []);
    await reference?.close();
    await redis?.close();
  });

  /** SIGTERM, resolved once the process has exited; then the same instance again, on the same port. */
  async function restart(index: number): Promise<{ exitCode: number | null; stoppedInMs: number }> {
    const stopping = instances[index];
    const exited = new Promise<number | null>((resolve) => stopping.child.once('exit', resolve));
    const signalledAt = Date.now();
    stopping.child.kill('SIGTERM');
    const exitCode = await exited;
    const stoppedInMs = Date.now() - signalledAt;
    instances[index] = await startServerProcess(env(redis.url, new URL(stopping.url).port));
    await whenReady(instances[index].url);
    return { exitCode, stoppedInMs };
  }

  it('every stream completes, its text and reasoning those of the uninterrupted answer; the longest gap', async () => {
    const requests = Array.from({ length: STREAMS }, (_, index) => request(index));
    const references = requests.map(async ({ body, reasoning }) =>
      reasoning
        ? answerOf(
            (
              await readStream(
                await fetch(`${reference.url}/api/completions/stream`, {
                  method: 'POST',
                  headers: { 'content-type': 'application/json', ...auth },
                  body: JSON.stringify(body),
                }),
              )
            ).events,
          ).reasoning
        : '',
    );
    const viaNginx = () => nginx.url;
    const streams: FollowedStream[] = await Promise.all(
      requests.map(({ body }, index) =>
        index % 2 === 0 ? sseStream(viaNginx, body, auth) : socketStream(viaNginx, body, KEY),
      ),
    );
    await eventually(() => streams.every((stream) => stream.events.length >= 3), 30_000);

    const first = await restart(0);
    const second = await restart(1);
    await Promise.all(streams.map((stream) => stream.done));

    const expectedReasoning = await Promise.all(references);
    streams.forEach((stream, index) => {
      const shape = shapeOf(stream.events);
      expect({ stream: index, shape }).toEqual({ stream: index, shape: 'whole' });
      expect(answerOf(stream.events)).toEqual({
        text: requests[index].text,
        reasoning: expectedReasoning[index],
      });
    });
    // Both instances drained cleanly, and streams moved: each a handover event per instance it left.
    expect([first.exitCode, second.exitCode]).toEqual([0, 0]);
    const handovers = streams.map((stream) => stream.events.filter((event) => event.type === 'route').length);
    expect(handovers.filter((count) => count > 0).length).toBeGreaterThan(STREAMS / 2);

    const gaps = streams.map(longestGap);
    const figures = {
      longestGapMs: Math.max(...gaps),
      p50OfLongestMs: percentile(gaps, 50),
      p99OfLongestMs: percentile(gaps, 99),
      stoppedInMs: [first.stoppedInMs, second.stoppedInMs],
      reconnects: streams.reduce((sum, stream) => sum + stream.connections - 1, 0),
    };
    console.warn(`rolling restart, ${STREAMS} streams: ${JSON.stringify(figures)}`);
  }, 180_000);
});
