import { RedisConnection } from '@app/redis';
import { type AdmissionDecision, RedisStreamAdmission, type StreamLimits } from '@app/streams';
import { startRedisServer, type RedisServer, type TestRedisClient } from '../support/redis-server';

/** Resolves once the connection is ready; fails with what Redis printed otherwise. */
async function ready(connection: RedisConnection, redis: RedisServer): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!connection.isReady) {
    if (Date.now() > deadline) {
      throw new Error(`no connection to Redis:\n${redis.output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('limits across instances, one Lua script per start: no burst gets past them', () => {
  let redis: RedisServer;
  let keys: TestRedisClient;
  let first: RedisConnection;
  let second: RedisConnection;

  beforeAll(async () => {
    redis = await startRedisServer();
    keys = await redis.client();
    [first, second] = await Promise.all([
      RedisConnection.open({ url: redis.url }),
      RedisConnection.open({ url: redis.url }),
    ]);
    await Promise.all([ready(first, redis), ready(second, redis)]);
    // The leases the stream registry's heartbeat keeps: both instances are alive.
    for (const connection of [first, second]) {
      await keys.set(`llmgw:instance:${connection.instanceId}`, '1', { PX: 60_000 });
    }
  });
  afterAll(async () => {
    await Promise.all([first?.onApplicationShutdown(), second?.onApplicationShutdown()]);
    await redis?.close();
  });

  const limitsOf = (requestsPerMinute: number, maxConcurrentStreams: number): StreamLimits => ({
    requestsPerMinute,
    maxConcurrentStreams,
    maxListenersPerStream: 4,
    maxListenersPerPrincipal: 40,
  });
  const burst = (owner: string, perInstance: number, limits: StreamLimits) => {
    const admissions = [first, second].map((connection) => new RedisStreamAdmission(connection, limits));
    return Promise.all(
      admissions.flatMap((admission) =>
        Array.from({ length: perInstance }, () => admission.admitStart(owner)),
      ),
    );
  };
  const granted = (results: AdmissionDecision[]) => results.filter((result) => result.ok).length;

  it('60 starts at once on two instances, 20 concurrent allowed: exactly 20 run; a released slot lets one more in', async () => {
    const limits = limitsOf(1000, 20);
    const results = await burst('alice', 30, limits);

    expect(granted(results)).toBe(20);
    expect(results.filter((result) => !result.ok)).toEqual(
      Array.from({ length: 40 }, () => ({ ok: false, limit: 'concurrent', retryAfterMs: 1000 })),
    );

    const held = results.filter((result) => result.ok);
    held.slice(0, 3).forEach((result) => result.slot.release());
    // Releases are sent without waiting: wait until Redis counts them (17 held), never for a fixed time.
    const held17 = async () => {
      const counts = await keys.hVals('llmgw:limits:{alice}:slots');
      return counts.reduce((sum, count) => sum + Number(count), 0) === 17;
    };
    for (const deadline = Date.now() + 5000; !(await held17());) {
      if (Date.now() > deadline) throw new Error('the three released slots were never given back');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(granted(await burst('alice', 5, limits))).toBe(3);
  });

  it('60 starts at once, 25 per minute allowed: exactly 25, the rest told when a place frees up', async () => {
    const results = await burst('bob', 30, limitsOf(25, 1000));

    expect(granted(results)).toBe(25);
    for (const refused of results.filter((result) => !result.ok)) {
      expect(refused.retryAfterMs).toBeGreaterThan(59_000);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(60_000);
      expect(refused.limit).toBe('per_minute');
    }
    // A resume takes a place in the same minute: none is left.
    expect(await new RedisStreamAdmission(first, limitsOf(25, 1000)).admitResume('bob')).toMatchObject({
      ok: false,
      limit: 'per_minute',
    });
  });

  it('gives back the slots of an instance that died (its lease lapsed)', async () => {
    const limits = limitsOf(1000, 2);
    const onSecond = new RedisStreamAdmission(second, limits);
    const onFirst = new RedisStreamAdmission(first, limits);
    expect(await Promise.all([onSecond.admitStart('carol'), onSecond.admitStart('carol')])).toEqual([
      expect.objectContaining({ ok: true }),
      expect.objectContaining({ ok: true }),
    ]);
    expect(await onFirst.admitStart('carol')).toMatchObject({ ok: false, limit: 'concurrent' });

    await keys.del(`llmgw:instance:${second.instanceId}`);

    expect(await onFirst.admitStart('carol')).toMatchObject({ ok: true });
  });

  it('keeps its keys bounded: each has a TTL', async () => {
    const limitKeys = await keys.keys('llmgw:limits:*');
    expect(limitKeys.length).toBeGreaterThan(0);
    for (const key of limitKeys) {
      expect(await keys.pTTL(key)).toBeGreaterThan(0);
    }
  });
});
