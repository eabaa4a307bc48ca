import { type RedisConnection, RedisScript } from '@app/redis';
import { Logger } from '@nestjs/common';
import { LEASE_PREFIX } from './redis-stream-scripts';
import {
  type AdmissionDecision,
  type AdmissionRefusal,
  AdmissionUnavailableError,
  StreamAdmission,
  type StreamSlot,
} from './stream-admission';
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

/**
 * KEYS window; ARGV perMinute, windowMs, member: a resume takes a place in the same sliding minute as the
 * starts, and no concurrency slot. Returns {1} or {0, 'window', retryAfterMs}.
 */
const COUNT_RESUME = new RedisScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return { 0, 'window', math.max(1, tonumber(oldest[2]) + tonumber(ARGV[2]) - now) }
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return { 1 }
`);

/** KEYS slots; ARGV instance, slotsTtl: one more slot held here, unchecked (a stream taken over). */
const ADOPT = new RedisScript(`
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
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
export class RedisStreamAdmission extends StreamAdmission {
  private readonly logger = new Logger(RedisStreamAdmission.name);
  private sequence = 0;

  constructor(
    private readonly redis: RedisConnection,
    private readonly limits: StreamLimits,
  ) {
    super();
  }

  async admitStart(owner: string): Promise<AdmissionDecision> {
    const [slots, window] = keysOf(owner);
    const reply = await this.run(
      ACQUIRE,
      [slots, window],
      [
        this.redis.instanceId,
        String(this.limits.maxConcurrentStreams),
        String(this.limits.requestsPerMinute),
        String(WINDOW_MS),
        LEASE_PREFIX,
        String(SLOTS_TTL_MS),
        this.member(),
      ],
    );
    if (reply[0] !== 1) {
      return refusalOf(reply);
    }
    return { ok: true, slot: this.slotOf(slots) };
  }

  adopt(owner: string): StreamSlot {
    const [slots] = keysOf(owner);
    ADOPT.run(this.redis.client, [slots], [this.redis.instanceId, String(SLOTS_TTL_MS)]).catch(
      (error: unknown) => this.logger.warn(`a stream slot taken over was not counted: ${String(error)}`),
    );
    return this.slotOf(slots);
  }

  private slotOf(slots: string): StreamSlot {
    let held = true;
    return {
      release: () => {
        if (!held) {
          return;
        }
        held = false;
        // A release lost to an outage leaves this instance's count high until its slots expire
        // (SLOTS_TTL_MS) or it restarts: the limits err on the side of refusing, never of letting through.
        RELEASE.run(this.redis.client, [slots], [this.redis.instanceId, String(SLOTS_TTL_MS)]).catch(
          (error: unknown) => this.logger.warn(`a stream slot was not given back: ${String(error)}`),
        );
      },
    };
  }

  async admitResume(owner: string): Promise<{ ok: true } | AdmissionRefusal> {
    const reply = await this.run(
      COUNT_RESUME,
      [keysOf(owner)[1]],
      [String(this.limits.requestsPerMinute), String(WINDOW_MS), this.member()],
    );
    return reply[0] === 1 ? { ok: true } : refusalOf(reply);
  }

  private member(): string {
    this.sequence += 1;
    return `${this.redis.instanceId}:${this.sequence}`;
  }

  private async run(script: RedisScript, keys: string[], args: string[]): Promise<Reply> {
    if (!this.redis.client.isReady) {
      throw new AdmissionUnavailableError();
    }
    try {
      return (await script.run(this.redis.client, keys, args)) as Reply;
    } catch (error) {
      throw new AdmissionUnavailableError(error);
    }
  }
}

type Reply = [number, string?, number?];

function refusalOf(reply: Reply): AdmissionRefusal {
  return {
    ok: false,
    limit: reply[1] === 'concurrent' ? 'concurrent' : 'per_minute',
    retryAfterMs: Number(reply[2]),
  };
}

function keysOf(owner: string): [slots: string, window: string] {
  return [`llmgw:limits:{${owner}}:slots`, `llmgw:limits:{${owner}}:window`];
}
