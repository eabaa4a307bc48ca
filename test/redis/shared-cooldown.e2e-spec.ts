import { RedisConnection } from '@app/redis';
import { RedisDeploymentHealth, UpstreamRouter } from '@app/upstreams';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScriptedDeployment } from '../../libs/upstreams/src/testing/scripted-deployment';
import { startRedisServer, type RedisServer, sharedDeployment } from '../support/redis-server';
import { eventually, startTestApp, type TestApp, whenReady } from '../support/test-app';

const KEY = 'key-cooldown-7d21';
const COOLDOWN_MS = 2000;
const RETRY_AFTER_MS = 1500;

/** One streamed answer through the gateway's `/v1`; the deployment that served it is the scripted ones' business. */
async function ask(app: TestApp, model = 'chat'): Promise<void> {
  const response = await fetch(`${app.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hello' }] }),
  });
  const text = await response.text();
  if (response.status !== 200 || !text.includes('[DONE]')) {
    throw new Error(`${app.url} answered ${response.status}: ${text.slice(0, 500)}`);
  }
}

function healthOf(app: TestApp): RedisDeploymentHealth {
  return app.app.get(UpstreamRouter).health as RedisDeploymentHealth;
}

describe('two instances on one Redis share a deployment’s cooldown', () => {
  let redis: RedisServer;
  let east: ScriptedDeployment;
  let west: ScriptedDeployment;
  let north: ScriptedDeployment;
  let a: TestApp;
  let b: TestApp;
  let solo: TestApp;
  let folder: string;
  let eastHealthy = false;

  beforeAll(async () => {
    redis = await startRedisServer();
    east = await ScriptedDeployment.start(() =>
      eastHealthy ? { kind: 'answer' } : { kind: 'status', status: 503 },
    );
    west = await ScriptedDeployment.start(() => ({ kind: 'answer' }));
    // Asks to be spared once, then answers.
    north = await ScriptedDeployment.start((index) =>
      index === 0
        ? { kind: 'status', status: 429, headers: { 'retry-after-ms': String(RETRY_AFTER_MS) } }
        : { kind: 'answer' },
    );
    folder = mkdtempSync(join(tmpdir(), 'shared-cooldown-'));
    const table = join(folder, 'upstreams.json');
    // `east` is the model's deployment, `west` its fallback for any failure: while east is put aside, west serves.
    writeFileSync(
      table,
      JSON.stringify({
        deployments: {
          east: { baseUrl: east.baseUrl, cooldownMs: COOLDOWN_MS, allowedFails: 1 },
          west: { baseUrl: west.baseUrl },
          north: { baseUrl: north.baseUrl },
        },
        models: {
          chat: {
            targets: [{ deployment: 'east', model: 'east-model' }],
            fallbacks: [{ deployment: 'west', model: 'west-model' }],
          },
          limited: {
            targets: [{ deployment: 'north', model: 'north-model' }],
            fallbacks: [{ deployment: 'west', model: 'west-model' }],
          },
        },
      }),
    );
    const env: Record<string, string> = { ...sharedDeployment(redis.url, KEY), UPSTREAMS_FILE: table };
    a = await startTestApp(env);
    b = await startTestApp(env);
    // The same gateway alone: its own view of the deployments' health, as every instance had before.
    const { REDIS_URL: _shared, ...alone } = env;
    solo = await startTestApp(alone);
    await whenReady(a.url, b.url, solo.url);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close(), solo?.close()]);
    await Promise.all([east?.stop(), west?.stop(), north?.stop(), redis?.close()]);
    rmSync(folder, { recursive: true, force: true });
  });

  it('A puts east aside; B never sends to it; after the cooldown one probe for both; then both give east its traffic back', async () => {
    const figures: Record<string, number> = {};
    // A: two failures in a row (allowedFails 1) put east aside; both requests are answered by west.
    await ask(a);
    await ask(a);
    figures.eastFromA = east.seen.length;
    expect(east.seen.length).toBe(2);
    await eventually(() => healthOf(b).coolingMs('east', Date.now()) > 0, COOLDOWN_MS);
    const client = await redis.client();
    expect(await client.pTTL('llmgw:deployment:{east}:cooling')).toBeGreaterThan(0);

    // B, during the cooldown: east is skipped from B's first request on.
    for (let index = 0; index < 6; index++) {
      await ask(b);
    }
    figures.eastFromB = east.seen.length - figures.eastFromA;
    // A third instance without Redis learns nothing: it pays its own two failures before it spares east.
    for (let index = 0; index < 6; index++) {
      await ask(solo);
    }
    figures.eastFromSolo = east.seen.length - figures.eastFromA - figures.eastFromB;
    const beforeProbes = east.seen.length;

    // Past the cooldown, A and B together, east still failing: one probe between them per cooldown, not one each.
    await eventually(
      () =>
        healthOf(a).coolingMs('east', Date.now()) === 0 && healthOf(b).coolingMs('east', Date.now()) === 0,
      COOLDOWN_MS * 2,
    );
    const startedAt = performance.now();
    let requests = 0;
    while (east.seen.length === beforeProbes || performance.now() - startedAt < COOLDOWN_MS / 2) {
      // At once on both: each instance's own view says a probe is due at the same moment.
      await Promise.all([ask(a), ask(b), ask(a), ask(b)]);
      requests += 4;
      if (performance.now() - startedAt > COOLDOWN_MS * 3) {
        throw new Error(`no probe reached east in ${requests} requests`);
      }
    }
    const probes = east.seen.slice(beforeProbes);
    const spacing = probes.slice(1).map((probe, index) => probe.at - probes[index].at);
    figures.probes = probes.length;
    figures.requestsWhileProbing = requests;
    // Every probe failed (503) and put east aside again for a whole cooldown, on both instances: probes come at
    // least a cooldown apart, whichever instance sends them.
    const seen = { probes: probes.length, spacing, requests };
    const onePerCooldown = probes.length >= 1 && spacing.every((ms) => ms >= COOLDOWN_MS - 50);
    expect(onePerCooldown ? 'one probe per cooldown' : seen).toBe('one probe per cooldown');

    // East heals: at the next cooldown's end one probe succeeds, and both instances send to east again.
    eastHealthy = true;
    const healedAt = east.seen.length;
    const servedByEast = async (app: TestApp) => {
      const before = east.seen.length;
      await ask(app);
      return east.seen.length > before && east.seen.at(-1)?.status === 200;
    };
    const deadline = performance.now() + COOLDOWN_MS * 4;
    const back = { a: false, b: false };
    while (!(back.a && back.b)) {
      back.a ||= await servedByEast(a);
      back.b ||= await servedByEast(b);
      if (performance.now() > deadline) {
        throw new Error(`east did not get its traffic back: ${JSON.stringify(back)}`);
      }
    }
    // Once back, east serves the next requests on both instances without another probe or failure.
    await ask(a);
    await ask(b);
    expect(east.seen.slice(healedAt).every((seen) => seen.status === 200)).toBe(true);
    expect(east.seen.slice(-2).map((seen) => seen.status)).toEqual([200, 200]);
    console.warn(`shared cooldown figures: ${JSON.stringify(figures)}`);
    expect(figures).toMatchObject({ eastFromA: 2, eastFromB: 0, eastFromSolo: 2 });
  });

  it('a 429 with Retry-After on A spares the deployment on B for that long, then B sends to it again', async () => {
    await ask(a, 'limited');
    expect(north.seen.map((seen) => seen.status)).toEqual([429]);
    await eventually(() => healthOf(b).waitMs('north', Date.now()) > 0, RETRY_AFTER_MS);
    const sparedUntil = performance.now() + healthOf(b).waitMs('north', Date.now());
    for (let index = 0; index < 4; index++) {
      await ask(b, 'limited');
    }
    const during = north.seen.length;
    // B made its requests within the wait (west served them): north heard nothing from B.
    expect({ during, inTime: performance.now() < sparedUntil }).toEqual({ during: 1, inTime: true });
    await eventually(() => healthOf(b).waitMs('north', Date.now()) === 0, RETRY_AFTER_MS * 2);
    await ask(b, 'limited');
    expect(north.seen.map((seen) => seen.status)).toEqual([429, 200]);
    expect(north.seen[1].at - north.seen[0].at).toBeGreaterThanOrEqual(RETRY_AFTER_MS - 50);
  });
});

describe('two views of deployment health on one Redis, without a gateway', () => {
  const policy = { cooldownMs: 30_000, allowedFails: 0 };
  const policies = new Map([['east', policy]]);
  const down = { rateLimited: false };
  const probeKey = 'llmgw:deployment:{east}:probe';
  let redis: RedisServer;
  let connections: RedisConnection[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
    connections = await Promise.all([
      RedisConnection.open({ url: redis.url }),
      RedisConnection.open({ url: redis.url }),
    ]);
  });
  afterAll(async () => {
    await Promise.all(connections.map((connection) => connection.onApplicationShutdown()));
    await redis?.close();
  });

  /**
   * A fresh view of the health on each connection, as two instances would have, each listening and with its first
   * read of Redis done: a read still under way could otherwise fold in a cooldown a test has just removed.
   */
  async function views(): Promise<RedisDeploymentHealth[]> {
    const fresh = connections.map((connection) => {
      const health = new RedisDeploymentHealth(connection, policies);
      health.onModuleInit();
      return health;
    });
    await Promise.all(fresh.map((health) => health.merged));
    return fresh;
  }

  /**
   * The moment the views are asked about: the cooldown's end, counted from now. A probe claim holds for a cooldown
   * from the moment Redis answers it, so the clock moves past now first: a claim won within this same millisecond
   * would end exactly at that moment, and be over when asked about it.
   */
  async function cooldownEnd(): Promise<number> {
    const now = Date.now();
    while (Date.now() <= now) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    return now + policy.cooldownMs;
  }

  it('a deployment put aside while Redis was away is told to the others once it is back', async () => {
    const [a, b] = await views();
    await eventually(() => connections.every((connection) => connection.isReady), 10_000);
    await redis.kill();
    await eventually(() => connections.every((connection) => !connection.isReady), 10_000);

    expect(a.failed('east', policy, down, false, Date.now())).toBe(true);
    expect(a.admit('east', Date.now())).toBe('cooling');
    expect(b.admit('east', Date.now())).toBe('go');

    await redis.restart();
    // Both back on Redis (an instance still reconnecting decides alone, and would probe on its own).
    await eventually(() => connections.every((connection) => connection.isReady), 10_000);
    await eventually(() => b.coolingMs('east', Date.now()) > 0, 10_000);
    const client = await redis.client();
    expect(await client.pTTL('llmgw:deployment:{east}:cooling')).toBeGreaterThan(25_000);
    expect(b.admit('east', Date.now())).toBe('cooling');

    // The cooldown is over (on Redis, its key expires; here, the views are asked about its end): A claims the one
    // probe, B keeps away from it, the probe succeeds, and B hears that east is back.
    await client.del('llmgw:deployment:{east}:cooling');
    const probeAt = await cooldownEnd();
    expect(a.admit('east', probeAt)).toBe('cooling');
    await eventually(() => a.admit('east', probeAt) === 'probe', 5000);
    expect(await client.get('llmgw:deployment:{east}:probe')).toBe(connections[0].instanceId);
    expect(b.admit('east', probeAt)).toBe('cooling');
    expect(a.succeeded('east', true)).toBe(true);
    await eventually(() => b.coolingMs('east', Date.now()) === 0 && b.admit('east', probeAt) === 'go', 5000);
    expect(await client.exists(['llmgw:deployment:{east}:cooling', 'llmgw:deployment:{east}:probe'])).toBe(0);
  });

  it('a probe given back unanswered, or answered 429, frees the claim for every instance at once, not at its TTL', async () => {
    const [a, b] = await views();
    const [aId, bId] = connections.map((connection) => connection.instanceId);
    const client = await redis.client();
    const claimHolder = async (expected: string | null) => {
      const deadline = Date.now() + 5000;
      let holder = await client.get(probeKey);
      while (holder !== expected && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        holder = await client.get(probeKey);
      }
      return { holder, ttl: await client.pTTL(probeKey) };
    };
    await eventually(() => connections.every((connection) => connection.isReady), 10_000);

    expect(a.failed('east', policy, down, false, Date.now())).toBe(true);
    await eventually(() => b.coolingMs('east', Date.now()) > 0);
    // Both views are asked about the cooldown's end (its key removed as its expiry would): A claims the one probe.
    await client.del('llmgw:deployment:{east}:cooling');
    const probeAt = await cooldownEnd();
    expect(a.admit('east', probeAt)).toBe('cooling');
    await eventually(() => a.peek('east', probeAt) === 'probe');
    expect(a.admit('east', probeAt)).toBe('probe');
    expect(await claimHolder(aId)).toMatchObject({ holder: aId });

    // A's probe ends unanswered (its client left): the claim goes now, not in 30 s, and B may claim it.
    a.released('east', true);
    expect(await claimHolder(null)).toEqual({ holder: null, ttl: -2 });
    expect(b.admit('east', probeAt)).toBe('cooling');
    await eventually(() => b.peek('east', probeAt) === 'probe');
    expect(b.admit('east', probeAt)).toBe('probe');
    expect(await claimHolder(bId)).toMatchObject({ holder: bId });

    // B's probe is answered 429: the wait is shared, and the claim goes too, for whoever probes after the wait.
    expect(b.failed('east', policy, { rateLimited: true, retryAfterMs: 1500 }, true, probeAt)).toBe(false);
    expect(await claimHolder(null)).toEqual({ holder: null, ttl: -2 });
    expect(await client.pTTL('llmgw:deployment:{east}:rate-limited')).toBeGreaterThan(1000);
    await eventually(() => a.waitMs('east', Date.now()) > 1000);
  });

  it('a read of Redis answered after this view claimed the probe does not put the deployment aside again', async () => {
    const client = await redis.client();
    await client.del(['llmgw:deployment:{east}:cooling', 'llmgw:deployment:{east}:rate-limited', probeKey]);
    // A on a connection of its own, so that a reconnection here is A's alone.
    const own = await RedisConnection.open({ url: redis.url });
    const a = new RedisDeploymentHealth(own, policies);
    const [b] = await views();
    const held: (() => void)[] = [];
    try {
      a.onModuleInit();
      await a.merged;
      expect(b.failed('east', policy, down, false, Date.now())).toBe(true);
      await eventually(() => a.coolingMs('east', Date.now()) > 0);

      // A's command connection drops and comes back (killed by Redis), and A reads the keys again; Redis answers
      // while east is still put aside, and the answer reaches A late (held here once read).
      const read = own.client.pTTL.bind(own.client);
      jest.spyOn(own.client, 'pTTL').mockImplementation(async (key) => {
        const ms = await read(key);
        await new Promise<void>((release) => held.push(release));
        return ms;
      });
      const ownId = await own.client.clientId();
      await client.sendCommand(['CLIENT', 'KILL', 'ID', String(ownId)]);
      await eventually(() => held.length === 2, 10_000);

      // Meanwhile the cooldown ends (its key removed as its expiry would), and A claims the one probe.
      await client.del('llmgw:deployment:{east}:cooling');
      const probeAt = await cooldownEnd();
      expect(a.admit('east', probeAt)).toBe('cooling');
      await eventually(() => a.peek('east', probeAt) === 'probe');
      expect(await client.get(probeKey)).toBe(own.instanceId);

      // The late answer, older than the claim, changes nothing: A still probes, and its claim is still in Redis.
      held.splice(0).forEach((release) => release());
      await a.merged;
      expect({ peek: a.peek('east', probeAt), holder: await client.get(probeKey) }).toEqual({
        peek: 'probe',
        holder: own.instanceId,
      });
      expect(a.admit('east', probeAt)).toBe('probe');
      expect(a.succeeded('east', true)).toBe(true);
      await eventually(() => b.admit('east', Date.now()) === 'go', 5000);
    } finally {
      held.splice(0).forEach((release) => release());
      jest.restoreAllMocks();
      await own.onApplicationShutdown();
    }
  });
});
