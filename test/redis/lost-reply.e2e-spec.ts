import { CuttingProxy } from '../support/cutting-proxy';
import {
  type RedisServer,
  sharedDeployment,
  startRedisServer,
  type TestRedisClient,
} from '../support/redis-server';
import { readStream } from '../support/sse-client';
import { expectWhole } from '../support/stream-checks';
import { eventually, startTestApp, type TestApp, whenReady } from '../support/test-app';

const KEY = 'key-lost-reply-61c0';
const auth = { authorization: `Bearer ${KEY}` };

/**
 * The running instance reaches Redis through a proxy that cuts its connections after a command has gone through
 * whole but before its reply came back: the append ran, the instance never heard. Its next append of the same
 * events must not fail on entries Redis has already (it did, for ever after: the stream's copy in Redis stalled,
 * and followers elsewhere waited for events that never came).
 */
describe('an append whose reply is lost: the stream in Redis goes on', () => {
  let redis: RedisServer;
  let proxy: CuttingProxy;
  let running: TestApp;
  let following: TestApp;
  let look: TestRedisClient;

  beforeAll(async () => {
    redis = await startRedisServer();
    const port = Number(new URL(redis.url).port);
    proxy = new CuttingProxy({ host: '127.0.0.1', port });
    const proxied = (await proxy.start()).replace('http://', 'redis://');
    running = await startTestApp(sharedDeployment(proxied, KEY));
    following = await startTestApp(sharedDeployment(redis.url, KEY));
    await whenReady(running.url, following.url);
    look = await redis.client();
  });
  afterAll(async () => {
    await Promise.all([running?.close(), following?.close()]);
    await proxy?.close();
    await redis?.close();
  });

  it('after replies lost mid-stream, a follower elsewhere gets the whole answer and Redis holds every event once', async () => {
    const text = `lost replies ✓ ${'appended twice words '.repeat(60)}`.trim();
    const response = await fetch(`${running.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ messages: [{ role: 'user', content: `[sim echo tps=150] ${text}` }] }),
    });
    const streamId = response.headers.get('x-stream-id') as string;
    let ownTokens = 0;
    const own = readStream(response, (event) => (ownTokens += event.type === 'token' ? 1 : 0));
    const followed = fetch(`${following.url}/api/completions/${streamId}/stream`, { headers: auth }).then(
      readStream,
    );
    // Appends go every 10 ms at this rate: the next reply on the cut connection is almost always an append's.
    // Three cuts, each once the instance has reconnected and appended again.
    for (const after of [20, 60, 100]) {
      await eventually(() => ownTokens >= after, 10_000);
      const before = proxy.cuts;
      proxy.cutOpenAfter(0);
      await eventually(() => proxy.cuts > before, 5000);
    }
    const [ownResult, followedResult] = await Promise.all([own, followed]);
    expectWhole(ownResult.events, text);
    expectWhole(followedResult.events, text);
    const keys = await look.keys('llmgw:{*}:events');
    expect(keys).toHaveLength(1);
    const entries = await look.xRange(keys[0], '-', '+');
    expect(entries.map((entry) => entry.id)).toEqual(ownResult.events.map((event) => `0-${event.seq + 1}`));
  }, 60_000);
});
