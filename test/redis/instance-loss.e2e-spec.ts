import type { CompletionEvent } from '@app/contracts';
import { startRedisServer, type RedisServer, sharedDeployment } from '../support/redis-server';
import { startServerProcess, type ServerProcess } from '../support/server-process';
import { readStream } from '../support/sse-client';
import { startTestApp, type TestApp, whenReady } from '../support/test-app';
import { withoutContinuation } from '../support/upstream-table';

const KEY = 'key-loss-4f2a';
const auth = { authorization: `Bearer ${KEY}` };
const LOST_WITHIN_MS = 15_000;

// No deployment can continue an answer, so the lost instance's streams end as they did before handover.
const NO_CONTINUATION = withoutContinuation();
const env = (redisUrl: string) => ({
  ...sharedDeployment(redisUrl, KEY),
  ...NO_CONTINUATION,
  STREAM_RESUME_GRACE_MS: '30000',
  STREAM_RETENTION_MS: '30000',
  LLM_PROVIDER: 'simulator',
  SIMULATOR_PROFILE: 'instant',
  LOG_LEVEL: 'silent',
  RATE_LIMIT_PER_MINUTE: '10000',
  RATE_LIMIT_CONCURRENT_STREAMS: '1000',
});

/**
 * Follows a stream on `url` from `afterSeq`, collecting events (with when each came) until the terminal one. It is
 * live once a token made after `liveAfterTs` (the running instance's clock) has come through Redis.
 */
function follow(url: string, streamId: string, afterSeq: number, liveAfterTs: number) {
  const events: { event: CompletionEvent; at: number }[] = [];
  let live: () => void = () => undefined;
  const isLive = new Promise<void>((resolve) => (live = resolve));
  const done = fetch(`${url}/api/completions/${streamId}/stream`, {
    headers: { ...auth, ...(afterSeq >= 0 ? { 'last-event-id': String(afterSeq) } : {}) },
  }).then((response) => {
    if (response.status !== 200) {
      throw new Error(`the resume was refused: ${response.status}`);
    }
    return readStream(response, (event) => {
      events.push({ event, at: Date.now() });
      if (event.type === 'token' && event.ts > liveAfterTs) {
        live();
      }
    });
  });
  // A follower that never goes live fails the test instead of hanging it.
  void done.finally(() => live());
  return { events, isLive, done };
}

describe('an instance killed with SIGKILL mid-stream: listeners elsewhere get one stream_lost', () => {
  let redis: RedisServer;
  let running: ServerProcess;
  let other: TestApp;

  beforeAll(async () => {
    redis = await startRedisServer();
    [running, other] = await Promise.all([startServerProcess(env(redis.url)), startTestApp(env(redis.url))]);
    await whenReady(running.url, other.url);
  }, 60_000);
  afterAll(async () => {
    await running?.kill();
    await other?.close();
    await redis?.close();
  });

  it('followers on the other instance end with one retryable stream_lost within 15 s; a later resume replays up to it', async () => {
    // Three long streams on the instance to be killed, each followed live from the other one.
    const started = await Promise.all(
      [1, 2, 3].map(async (index) => {
        const controller = new AbortController();
        const response = await fetch(`${running.url}/api/completions/stream`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...auth },
          body: JSON.stringify({
            messages: [{ role: 'user', content: `[sim tokens=2000 tps=20] ${index}` }],
          }),
          signal: controller.signal,
        });
        expect(response.status).toBe(200);
        const streamId = response.headers.get('x-stream-id') as string;
        void readStream(response).catch(() => undefined);
        return streamId;
      }),
    );
    // One nobody follows when the instance dies: only a later resume sees its end.
    const unfollowed = await fetch(`${running.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ messages: [{ role: 'user', content: '[sim tokens=2000 tps=20] alone' }] }),
    });
    const unfollowedId = unfollowed.headers.get('x-stream-id') as string;
    let unfollowedStarted: (ts: number) => void = () => undefined;
    const unfollowedStartTs = new Promise<number>((resolve) => (unfollowedStarted = resolve));
    void readStream(unfollowed, (event) => {
      if (event.type === 'start') unfollowedStarted(event.ts);
    }).catch(() => undefined);

    // Appends go to Redis in rounds that carry every local stream's new events, in order: once a token made after
    // the unfollowed stream's start has reached a follower, that start is in Redis too. Only then is it a stream
    // whose instance died (else it would be one Redis never knew: the last round is what a SIGKILL loses).
    const startTs = await unfollowedStartTs;
    const followers = started.map((streamId) => ({ streamId, ...follow(other.url, streamId, -1, startTs) }));
    await Promise.all(followers.map((follower) => follower.isLive));

    await running.kill();
    const killedAt = Date.now();
    await Promise.all(followers.map((follower) => follower.done));

    for (const follower of followers) {
      const seen = follower.events.map(({ event }) => `${event.seq}:${event.type}`).join(' ');
      const terminals = follower.events.filter(
        ({ event }) => event.type === 'done' || event.type === 'error',
      );
      expect({ terminals: terminals.length, seen }).toEqual({ terminals: 1, seen });
      const last = follower.events.at(-1) as { event: CompletionEvent; at: number };
      expect(last.event).toMatchObject({
        type: 'error',
        error: { code: 'stream_lost', retryable: true },
      });
      expect(last.at - killedAt).toBeLessThan(LOST_WITHIN_MS);
      expect(follower.events.map(({ event }) => event.seq)).toEqual(follower.events.map((_, index) => index));

      // A later resume from the start: the same events, up to and with that same terminal event.
      const replay = await readStream(
        await fetch(`${other.url}/api/completions/${follower.streamId}/stream`, { headers: auth }),
      );
      expect(replay.events).toEqual(follower.events.map(({ event }) => event));
    }

    const late = await readStream(
      await fetch(`${other.url}/api/completions/${unfollowedId}/stream`, { headers: auth }),
    );
    // On failure, what the late resume got: its first and last events and how many.
    const got = { first: late.events[0], last: late.events.at(-1), count: late.events.length };
    expect(got).toMatchObject({ first: { type: 'start', seq: 0 } });
    expect(late.events.filter((event) => event.type === 'error')).toHaveLength(1);
    expect(got).toMatchObject({ last: { type: 'error', error: { code: 'stream_lost' } } });
    expect(late.events.map((event) => event.seq)).toEqual(late.events.map((_, index) => index));
  }, 60_000);
});
