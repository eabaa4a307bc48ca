import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import type { createClient } from '@redis/client';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RedisModuleOptions } from './redis.module-definition';

function newClient(create: typeof createClient, url: string, queueWhileDown: boolean) {
  return create({
    url,
    disableOfflineQueue: !queueWhileDown,
    socket: { connectTimeout: 2000, reconnectStrategy: reconnectDelay },
  });
}

export type RedisClient = ReturnType<typeof newClient>;

const CLOSE_LIMIT_MS = 1000;

/** Reconnect waits: 50 ms doubling to 2 s, each shortened by up to a quarter so instances do not reconnect in step. */
export function reconnectDelay(retries: number): number {
  const ceiling = Math.min(50 * 2 ** retries, 2000);
  return Math.round(ceiling * (0.75 + Math.random() * 0.25));
}

/**
 * The process's Redis connection: one command connection (node-redis pipelines every command issued in a tick
 * onto it), plus dedicated ones for what must own a connection (a subscriber), all with the
 * same options. Connections reconnect forever with backoff; while one is down its commands fail at once
 * (`disableOfflineQueue`) instead of queueing, so callers can refuse work rather than hang.
 *
 * The client library is imported when the module starts, so a process without `REDIS_URL` never loads it.
 */
export class RedisConnection implements OnApplicationShutdown {
  private readonly logger = new Logger(RedisConnection.name);
  private readonly connections: RedisClient[] = [];
  private readonly drains: (() => Promise<void>)[] = [];
  /** The shared command connection. */
  readonly client: RedisClient;
  /** This process among the instances sharing the Redis (its lease, its cancel channel, its limit slots). */
  readonly instanceId = randomUUID();

  private constructor(
    private readonly options: RedisModuleOptions,
    private readonly create: typeof createClient,
  ) {
    this.client = this.open('commands');
  }

  /** Loads the client library and starts connecting; resolves at once, whether Redis answers or not. */
  static async open(options: RedisModuleOptions): Promise<RedisConnection> {
    const { createClient } = await import('@redis/client');
    return new RedisConnection(options, createClient);
  }

  /** True while the command connection is up (connected and handshaken). */
  get isReady(): boolean {
    return this.client.isReady;
  }

  /**
   * A connection of its own, for a subscriber; closed with the others at shutdown.
   * `queueWhileDown`: commands wait for the connection instead of failing (a subscription made at start).
   */
  dedicated(name: string, { queueWhileDown = false } = {}): RedisClient {
    return this.open(name, queueWhileDown);
  }

  /** Work that must reach Redis before the connections close (last events of drained streams). */
  beforeClose(drain: () => Promise<void>): void {
    this.drains.push(drain);
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all(this.drains.splice(0).map((drain) => drain()));
    // A connection that is up says QUIT (its replies come first); one that is down, or slow to close, is dropped:
    // shutting down must never wait for Redis.
    await Promise.all(
      this.connections.splice(0).map(async (client) => {
        if (client.isReady) {
          await Promise.race([
            client.close().catch(() => undefined),
            // Unreferenced: once the connection has closed, this wait must not hold the process open.
            sleep(CLOSE_LIMIT_MS, undefined, { ref: false }),
          ]);
        }
        if (client.isOpen) {
          client.destroy();
        }
      }),
    );
  }

  private open(name: string, queueWhileDown = false): RedisClient {
    const client = newClient(this.create, this.options.url, queueWhileDown);
    let down = false;
    // Without an 'error' listener a failed connection would throw; each outage is logged once, not per retry.
    client.on('error', (error: Error) => {
      if (!down) {
        down = true;
        this.logger.warn(`redis ${name} connection lost: ${error.message}`);
      }
    });
    client.on('ready', () => {
      if (down) {
        down = false;
        this.logger.log(`redis ${name} connection back`);
      }
    });
    // connect() resolves only once connected, retrying meanwhile: the process starts (not ready) with Redis down.
    client.connect().catch((error: unknown) => this.logger.error(`redis ${name}: ${String(error)}`));
    this.connections.push(client);
    return client;
  }
}
