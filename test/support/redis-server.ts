import { createClient } from '@redis/client';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';

const REDIS_SERVER = process.env.REDIS_SERVER_PATH ?? '/usr/bin/redis-server';

function newClient(url: string) {
  return createClient({ url, socket: { reconnectStrategy: 100 } });
}

/** The test's own client (its type not the gateway's: the browser suites import this file, but not libs/). */
export type TestRedisClient = ReturnType<typeof newClient>;

export interface RedisServer {
  url: string;
  /** Everything the server printed, for a failure message. */
  output(): string;
  /** SIGKILL: the server vanishes with all its data (nothing is persisted). */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
  /** A plain client of the test's own, to look at keys. */
  client(): Promise<TestRedisClient>;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== 'object' || address === null) {
    throw new Error('no free port');
  }
  return address.port;
}

/**
 * A real `redis-server` (Debian's package) on a free loopback port, nothing persisted. A machine without it
 * fails here, naming the package: these suites never skip.
 */
export async function startRedisServer(): Promise<RedisServer> {
  if (!existsSync(REDIS_SERVER)) {
    throw new Error(
      `redis-server not found at ${REDIS_SERVER}: install the Debian package \`redis-server\` (apt-get install redis-server) or set REDIS_SERVER_PATH`,
    );
  }
  const port = await freePort();
  let child: ChildProcess | undefined;
  let output = '';
  const clients: TestRedisClient[] = [];

  const launch = async () => {
    const started = spawn(
      REDIS_SERVER,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--loglevel',
        'notice',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = started;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${output}`)), 10_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      };
      started.stdout?.on('data', onData);
      started.stderr?.on('data', onData);
      started.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}):\n${output}`));
      });
    });
    output = '';
    started.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  };

  const kill = async () => {
    const running = child;
    child = undefined;
    if (running && running.exitCode === null) {
      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGKILL');
      await exited;
    }
  };

  await launch();
  const url = `redis://127.0.0.1:${port}`;
  return {
    url,
    output: () => output,
    kill,
    restart: launch,
    client: async () => {
      const client = newClient(url);
      client.on('error', () => undefined);
      await client.connect();
      clients.push(client);
      return client;
    },
    close: async () => {
      await Promise.all(clients.map((client) => client.isOpen && client.destroy()));
      await kill();
    },
  };
}

/** What every instance of one deployment shares: the Redis, the API keys, and one resume secret. */
export function sharedDeployment(redisUrl: string, apiKeys: string): Record<string, string> {
  return {
    REDIS_URL: redisUrl,
    AUTH_MODE: 'api-key',
    AUTH_API_KEYS: apiKeys,
    AUTH_RESUME_SECRET: 'one-secret-for-every-instance-0123456789',
  };
}
