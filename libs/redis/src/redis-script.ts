import { createHash } from 'node:crypto';
import type { RedisClient } from './redis-connection';

/**
 * A Lua script run by its SHA1 (`EVALSHA`), sent whole (`EVAL`) only when Redis does not know it yet (after a
 * restart, or the first time): a check and an update that must be one step, in one round trip.
 */
export class RedisScript {
  /** Its SHA1, as Redis names it (`EVALSHA`, and what `MONITOR` shows). */
  readonly sha: string;

  constructor(private readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(client: RedisClient, keys: readonly string[], args: readonly string[]): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await client.sendCommand(['EVALSHA', this.sha, ...tail]);
    } catch (error) {
      if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
        return client.sendCommand(['EVAL', this.source, ...tail]);
      }
      throw error;
    }
  }
}
