// Imported for their side effects: composing the whole app, as main.ts does, must not load the client.
import '../../../apps/api/src/app.module';
import '@app/health';
import '@app/streams';
import { RedisConnection, reconnectDelay } from './redis-connection';

let mockClientLoaded = false;
jest.mock('@redis/client', () => {
  mockClientLoaded = true;
  return jest.requireActual('@redis/client');
});

describe('RedisConnection', () => {
  it('is not loaded by a process without REDIS_URL: composing the app imports no Redis client', () => {
    expect(mockClientLoaded).toBe(false);
  });

  it('loads the client when opened, and closes at once while Redis is unreachable', async () => {
    const connection = await RedisConnection.open({ url: 'redis://127.0.0.1:1' });

    expect(mockClientLoaded).toBe(true);
    expect(connection.isReady).toBe(false);
    const closing = Date.now();
    await connection.onApplicationShutdown();
    expect(Date.now() - closing).toBeLessThan(1000);
  });

  it('reconnects with a backoff from 50 ms doubling to 2 s, shortened by up to a quarter', () => {
    for (let retries = 0; retries < 12; retries += 1) {
      const ceiling = Math.min(50 * 2 ** retries, 2000);
      const delays = Array.from({ length: 50 }, () => reconnectDelay(retries));
      expect(Math.max(...delays)).toBeLessThanOrEqual(ceiling);
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(Math.floor(ceiling * 0.75));
    }
  });
});
