import type { CompletionEvent } from '@app/contracts';
import { startRedisServer, type RedisServer, sharedDeployment } from '../support/redis-server';
import { readStream } from '../support/sse-client';
import { startTestApp, type TestApp, whenReady } from '../support/test-app';

const KEY = 'key-drain-3b9d';
const auth = { authorization: `Bearer ${KEY}` };

/** Reads a response's events, resolving `live` at the first token. */
function reading(response: Response) {
  const events: CompletionEvent[] = [];
  let live: () => void = () => undefined;
  const isLive = new Promise<void>((resolve) => (live = resolve));
  const done = readStream(response, (event) => {
    events.push(event);
    if (event.type === 'token') {
      live();
    }
  }).catch(() => undefined);
  void done.finally(() => live());
  return { events, isLive, done };
}

const start = (url: string, content: string) =>
  fetch(`${url}/api/completions/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth },
    body: JSON.stringify({ messages: [{ role: 'user', content }] }),
  });
const resume = (url: string, streamId: string) =>
  fetch(`${url}/api/completions/${streamId}/stream`, { headers: auth });

describe('SIGTERM drain across instances', () => {
  let redis: RedisServer;
  let draining: TestApp;
  let staying: TestApp;

  beforeAll(async () => {
    redis = await startRedisServer();
    const env = {
      ...sharedDeployment(redis.url, KEY),
      STREAM_RESUME_GRACE_MS: '5000',
      SHUTDOWN_GRACE_MS: '1000',
    };
    [draining, staying] = await Promise.all([startTestApp(env), startTestApp(env)]);
    await whenReady(draining.url, staying.url);
  });
  afterAll(async () => {
    await staying?.close();
    await redis?.close();
  });

  it('the drained instance ends its streams with shutting_down for listeners everywhere (nothing can continue them); its listeners to streams elsewhere resume there', async () => {
    const runningHere = await start(draining.url, '[sim tokens=2000 tps=20] here');
    const hereId = runningHere.headers.get('x-stream-id') as string;
    const runningElsewhere = await start(staying.url, '[sim tokens=2000 tps=20] elsewhere');
    const elsewhereId = runningElsewhere.headers.get('x-stream-id') as string;
    const ownClient = reading(runningHere);
    const elsewhereClient = reading(runningElsewhere);
    const followerElsewhere = reading(await resume(staying.url, hereId));
    const followerHere = reading(await resume(draining.url, elsewhereId));
    await Promise.all([ownClient, followerElsewhere, followerHere].map((listener) => listener.isLive));

    await draining.close();
    await Promise.all([ownClient.done, followerElsewhere.done, followerHere.done]);

    // A listener on the drained instance to a stream elsewhere is let go without a terminal event: its client
    // resumes on another instance, where the stream goes on.
    expect(followerHere.events.filter((event) => event.type === 'done' || event.type === 'error')).toEqual(
      [],
    );
    const lastSeen = followerHere.events.at(-1)?.seq ?? -1;
    const resumed = reading(
      await fetch(`${staying.url}/api/completions/${elsewhereId}/stream`, {
        headers: { ...auth, 'last-event-id': String(lastSeen) },
      }),
    );
    await resumed.isLive;
    expect(resumed.events[0]?.seq).toBe(lastSeen + 1);

    for (const listener of [ownClient, followerElsewhere]) {
      const seen = listener.events.map((event) => `${event.seq}:${event.type}`).join(' ');
      const terminals = listener.events.filter((event) => event.type === 'done' || event.type === 'error');
      expect({ terminals: terminals.length, seen }).toEqual({ terminals: 1, seen });
      expect(listener.events.at(-1)).toMatchObject({
        type: 'error',
        error: { code: 'shutting_down', retryable: true },
      });
    }
    // The same terminal event for the client on the drained instance and the follower elsewhere.
    expect(followerElsewhere.events.at(-1)).toEqual(ownClient.events.at(-1));

    // The stream running on the instance that stays goes on; its listener there never noticed.
    expect(elsewhereClient.events.some((event) => event.type === 'error' || event.type === 'done')).toBe(
      false,
    );
    const cancelled = await fetch(`${staying.url}/api/completions/${elsewhereId}`, {
      method: 'DELETE',
      headers: auth,
    });
    expect(cancelled.status).toBe(204);
    await Promise.all([elsewhereClient.done, resumed.done]);
    expect(elsewhereClient.events.at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled' });
  });
});
