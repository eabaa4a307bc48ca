import type { RedisClient } from '@app/redis';
import {
  APPEND,
  CANCEL,
  CLAIM,
  FOLLOW_CHANNEL_PREFIX,
  LEASE_PREFIX,
  OFFER,
  streamKeys,
  TAKE_OVER,
  WITHDRAW,
} from '../../libs/streams/src/redis-stream-scripts';
import { type RedisServer, startRedisServer, type TestRedisClient } from '../support/redis-server';

const CHANNEL = 'llmgw:handover-test';

/**
 * The scripts that move a stream between instances, on a real Redis, driven directly: exactly one taker however
 * many race, never a cancelled or ended stream, never from a live instance that did not offer it; the old owner's
 * appends refused once it is taken; an append resent after a lost reply is not refused for what Redis has.
 */
describe('take-over scripts: one owner at a time, decided in Redis', () => {
  let redis: RedisServer;
  let client: TestRedisClient;
  let streams = 0;
  const run = (script: { run: (...args: never[]) => Promise<unknown> }, keys: string[], args: string[]) =>
    (script.run as (client: RedisClient, keys: string[], args: string[]) => Promise<unknown>)(
      client as unknown as RedisClient,
      keys,
      args,
    );

  /** A running stream of `instance` with `events` appended; its keys. */
  async function running(instance: string, events = 3): Promise<string[]> {
    streams += 1;
    const keys = streamKeys(`take-over-${streams}`);
    const request = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], model: 'simulator' });
    expect(
      await run(CLAIM, [keys[0]], ['alice', instance, '30000', `id-${streams}`, request, 'sse', 'alice']),
    ).toBe(1);
    const pairs = Array.from({ length: events }, (_, seq) => [
      `0-${seq + 1}`,
      JSON.stringify({ type: seq === 0 ? 'start' : 'token', seq }),
    ]).flat();
    expect(await append(keys, instance, pairs, 1)).toEqual([1]);
    return keys;
  }

  function append(keys: string[], instance: string, pairs: string[], state = 0): Promise<unknown> {
    return run(APPEND, keys, [
      '2000',
      '30000',
      '20000',
      FOLLOW_CHANNEL_PREFIX,
      instance,
      String(state),
      String(pairs.length / 2),
      ...pairs,
    ]);
  }

  /** An instance alive, as its heartbeat keeps it. */
  const lease = (instance: string) =>
    client.sendCommand(['SET', `${LEASE_PREFIX}${instance}`, '1', 'PX', '10000']);

  const takeOver = (keys: string[], instance: string) =>
    run(TAKE_OVER, keys.slice(0, 2), [LEASE_PREFIX, instance, '1']) as Promise<unknown[]>;

  beforeAll(async () => {
    redis = await startRedisServer();
    client = await redis.client();
  });
  afterAll(() => redis?.close());

  it('an orphan (its lease gone) is taken by exactly one of ten racing instances, with its request and events', async () => {
    const keys = await running('dead');
    await Promise.all(Array.from({ length: 10 }, (_, index) => lease(`live-${index}`)));
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, index) => takeOver(keys, `live-${index}`)),
    );
    const taken = replies.filter((reply) => reply.length > 0);
    expect(taken).toHaveLength(1);
    const [owner, id, request, transport, limitKey, entries] = taken[0] as [
      string,
      string,
      string,
      string,
      string,
      unknown[],
    ];
    expect({ owner, id, transport, limitKey, entries: entries.length }).toEqual({
      owner: 'alice',
      id: expect.stringMatching(/^id-/),
      transport: 'sse',
      limitKey: 'alice',
      entries: 3,
    });
    expect(JSON.parse(request)).toMatchObject({ model: 'simulator' });
    const winner = `live-${replies.findIndex((reply) => reply.length > 0)}`;
    expect(await client.hGet(keys[0], 'instance')).toBe(winner);
    // The old owner's late appends are refused from now on; the new one's go in.
    expect(await append(keys, 'dead', ['0-4', '{"seq":3}'])).toEqual([-2]);
    expect(await append(keys, winner, ['0-4', '{"seq":3}'])).toEqual([1]);
  });

  it('a live instance’s stream is taken only once it offers it, and its withdrawal after the take fails', async () => {
    await Promise.all(['stopping', 'live', 'another'].map(lease));
    const keys = await running('stopping');
    expect(await takeOver(keys, 'live')).toEqual([]);
    const subscriber = client.duplicate();
    await subscriber.connect();
    const heard: string[] = [];
    await subscriber.subscribe(CHANNEL, (message) => heard.push(message));
    expect(await run(OFFER, [keys[0]], ['stopping', CHANNEL, 'offer'])).toBe(1);
    expect(await takeOver(keys, 'live')).toHaveLength(6);
    expect(await run(WITHDRAW, [keys[0]], ['stopping'])).toBe(0);
    expect(await takeOver(keys, 'another')).toEqual([]);
    await subscriber.destroy();
  });

  it('a cancelled stream is never taken, offered or not; a cancel after the take goes to the new owner', async () => {
    const cancelledFirst = await running('dead');
    expect(await run(CANCEL, [cancelledFirst[0]], [])).toEqual(['dead', '0']);
    expect(await takeOver(cancelledFirst, 'live')).toEqual([]);
    expect(await run(OFFER, [cancelledFirst[0]], ['dead', CHANNEL, 'offer'])).toBe(0);

    const takenFirst = await running('dead');
    expect(await takeOver(takenFirst, 'live')).toHaveLength(6);
    expect(await run(CANCEL, [takenFirst[0]], [])).toEqual(['live', '0']);
  });

  it('an ended stream is never taken', async () => {
    const keys = await running('dead');
    expect(await append(keys, 'dead', ['0-4', '{"type":"done","seq":3}'], 2)).toEqual([1]);
    expect(await takeOver(keys, 'live')).toEqual([]);
  });

  it('a batch sent again after a lost reply skips what Redis has and appends the rest', async () => {
    const keys = await running('owner', 3);
    const again = ['0-3', '{"seq":2}', '0-4', '{"seq":3}', '0-5', '{"seq":4}'];
    await expect(append(keys, 'owner', again)).rejects.toThrow(/equal or smaller/);
    expect(await append(keys, 'owner', again, 4)).toEqual([1]);
    const entries = await client.xRange(keys[1], '-', '+');
    expect(entries.map((entry) => entry.id)).toEqual(['0-1', '0-2', '0-3', '0-4', '0-5']);
  });
});
