import { REDIS_REGISTRY_TIMINGS } from '@app/streams';
import { APPEND, FOLLOW_CHANNEL_PREFIX } from '../../libs/streams/src/redis-stream-scripts';
import {
  type RedisServer,
  sharedDeployment,
  startRedisServer,
  type TestRedisClient,
} from '../support/redis-server';
import { readStream } from '../support/sse-client';
import { expectWhole, seeded } from '../support/stream-checks';
import { eventually, startTestApp, type TestApp, whenReady } from '../support/test-app';

const ALICE = 'key-alice-7d2f';
const alice = { authorization: `Bearer ${ALICE}` };
const random = seeded(Number(process.env.RESUME_SEED ?? 20261202));

function answer(index: number, tps: number) {
  const text = `answer ${index} ✓ ${'batched words '.repeat(30 + Math.floor(random() * 30))}`.trim();
  return { text, messages: [{ role: 'user' as const, content: `[sim echo tps=${tps}] ${text}` }] };
}

function start(url: string, messages: { role: 'user'; content: string }[]) {
  return fetch(`${url}/api/completions/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...alice },
    body: JSON.stringify({ messages }),
  });
}

/**
 * What the running instance sends Redis, as Redis itself sees it (`MONITOR`): its streams' events in rounds at
 * most every `appendIntervalMs` however fast they publish, and a publish to followers only for a followed stream.
 */
describe('append rounds: how a running instance writes its events to Redis', () => {
  let redis: RedisServer;
  let monitor: TestRedisClient;
  let a: TestApp;
  let b: TestApp;
  /** Each command Redis ran meanwhile, as MONITOR prints it: its time in seconds first. */
  const seen: string[] = [];
  const appendTimes = () =>
    seen.filter((line) => line.includes(`"EVALSHA" "${APPEND.sha}"`)).map((line) => parseFloat(line));
  const followPublishes = () =>
    seen.filter((line) => line.includes('"PUBLISH"') && line.includes(`"${FOLLOW_CHANNEL_PREFIX}`));

  beforeAll(async () => {
    redis = await startRedisServer();
    const env = sharedDeployment(redis.url, ALICE);
    a = await startTestApp(env);
    b = await startTestApp(env);
    await whenReady(a.url, b.url);
    monitor = await redis.client();
    await monitor.monitor((line: string) => seen.push(line));
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await redis?.close();
  });

  it('fast streams nobody follows: every event goes to Redis, in rounds at most every appendIntervalMs, and nothing is published', async () => {
    seen.length = 0;
    const answers = Array.from({ length: 4 }, (_, index) => answer(index, 400));
    const results = await Promise.all(
      answers.map(async ({ messages }) => readStream(await start(a.url, messages))),
    );
    results.forEach((result, index) => expectWhole(result.events, answers[index].text));
    const events = results.reduce((sum, result) => sum + result.events.length, 0);
    // Each event, the terminal ones included, is added to its stream's log (the last round lands after the
    // clients have read their last event): a resume elsewhere finds them all.
    const xadds = () => seen.filter((line) => line.includes('lua]') && line.includes('"XADD"')).length;
    await eventually(() => xadds() >= events).catch(() => undefined);
    expect(xadds()).toBe(events);

    const rounds = appendTimes();
    const spanMs = (rounds[rounds.length - 1] - rounds[0]) * 1000;
    // Slack: Node's timers count whole milliseconds from a loop time that can be one behind (a round may start
    // after 9 ms and a bit), Redis sees each call after its trip, and the span's ends fall anywhere. Without the
    // interval a round follows each reply at once: 155 calls over 418 ms here, against 48 allowed.
    const allowed = Math.floor(spanMs / (REDIS_REGISTRY_TIMINGS.appendIntervalMs - 1)) + 2;
    const seenRounds = `${events} events in ${rounds.length} append calls over ${spanMs.toFixed(0)} ms`;
    expect({ seenRounds, atMost: allowed, within: rounds.length <= allowed }).toEqual({
      seenRounds,
      atMost: allowed,
      within: true,
    });
    expect(followPublishes()).toEqual([]);
  });

  it('a stream followed from another instance: its appends are published to the follower, which gets it whole', async () => {
    seen.length = 0;
    const { text, messages } = answer(100, 40);
    const response = await start(a.url, messages);
    const streamId = response.headers.get('x-stream-id') as string;
    const [own, followed] = await Promise.all([
      readStream(response),
      fetch(`${b.url}/api/completions/${streamId}/stream`, { headers: alice }).then(readStream),
    ]);
    expectWhole(own.events, text);
    expectWhole(followed.events, text);
    expect(followPublishes().length).toBeGreaterThan(0);
  });
});
