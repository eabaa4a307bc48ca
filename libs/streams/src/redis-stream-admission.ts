import { type RedisConnection, RedisScript } from '@app/redis';
import { LEASE_PREFIX } from './redis-stream-scripts';
import type { Admission, StreamAdmission } from './stream-admission';
import type { StreamLimits } from './streams.constants';

const WINDOW_MS = 60_000;
/** The slot counts of an owner outlive its last start or end by this much; streams are far shorter. */
const SLOTS_TTL_MS = 60 * 60_000;

/**
 * KEYS slots (hash: instance → streams running there), window (sorted set of starts, scored by Redis's clock);
 * ARGV instance, maxConcurrent, perMinute, windowMs, leasePrefix, slotsTtl, member.
 * Slots held by an instance whose lease has lapsed (it died) are dropped before counting.
 * Returns {1} or {0, 'concurrent' | 'window', retryAfterMs}.
 */
const ACQUIRE = new RedisScript(`
local slots = redis.call('HGETALL', KEYS[1])
local running = 0
for i = 1, #slots, 2 do
  if slots[i] == ARGV[1] or redis.call('EXISTS', ARGV[5] .. slots[i]) == 1 then
    running = running + tonumber(slots[i + 1])
  else
    redis.call('HDEL', KEYS[1], slots[i])
  end
end
if running >= tonumber(ARGV[2]) then return { 0, 'concurrent', 1000 } end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]))
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return { 0, 'window', math.max(1, tonumber(oldest[2]) + tonumber(ARGV[4]) - now) }
end
redis.call('ZADD', KEYS[2], now, ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return { 1 }
`);

/** KEYS slots; ARGV instance, slotsTtl. */
const RELEASE = new RedisScript(`
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`);

/**
 * The limits counted across every instance on one Redis, atomically: a burst of starts on several instances
 * at once gets exactly the allowed number through (one Lua script decides each). The per-minute window is a
 * sliding log of start times on Redis's clock, so no boundary lets twice the limit through; concurrency is
 * counted per instance, so the slots of an instance that died (its lease lapsed) are given back by
 * themselves. Throws when Redis cannot be reached: the caller refuses with `unavailable`.
 */
export class RedisStreamAdmission implements StreamAdmission {
  private sequence = 0;

  constructor(
    private readonly redis: RedisConnection,
    private readonly limits: StreamLimits,
  ) {}

  async tryAcquire(owner: string): Promise<Admission> {
    const [slots, window] = keysOf(owner);
    this.sequence += 1;
    const reply = (await ACQUIRE.run(
      this.redis.client,
      [slots, window],
      [
        this.redis.instanceId,
        String(this.limits.maxConcurrentStreams),
        String(this.limits.requestsPerMinute),
        String(WINDOW_MS),
        LEASE_PREFIX,
        String(SLOTS_TTL_MS),
        `${this.redis.instanceId}:${this.sequence}`,
      ],
    )) as [number, string?, number?];
    if (reply[0] === 1) {
      return { ok: true };
    }
    const retryAfterMs = Number(reply[2]);
    return reply[1] === 'concurrent'
      ? {
          ok: false,
          code: 'rate_limited',
          message: `At most ${this.limits.maxConcurrentStreams} streams may run at once; wait for one to end.`,
          retryAfterMs,
        }
      : {
          ok: false,
          code: 'rate_limited',
          message: `At most ${this.limits.requestsPerMinute} streams may start per minute.`,
          retryAfterMs,
        };
  }

  async release(owner: string): Promise<void> {
    await RELEASE.run(this.redis.client, [keysOf(owner)[0]], [this.redis.instanceId, String(SLOTS_TTL_MS)]);
  }
}

function keysOf(owner: string): [slots: string, window: string] {
  return [`llmgw:limits:{${owner}}:slots`, `llmgw:limits:{${owner}}:window`];
}
