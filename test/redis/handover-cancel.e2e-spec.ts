import type { CompletionEvent } from '@app/contracts';
import { startRedisServer, type RedisServer, sharedDeployment } from '../support/redis-server';
import { readStream } from '../support/sse-client';
import { eventually, startTestApp, type TestApp, whenReady } from '../support/test-app';

const KEY = 'key-handover-cancel-5d3a';
const auth = { authorization: `Bearer ${KEY}` };

/** How long after the stopping instance begins its handover the cancel is sent: before, with, and after it. */
const CANCEL_DELAYS_MS = [0, 2, 10];

/**
 * A handover races a client's cancel: the stopping instance offers the stream while the client cancels it on the
 * other instance. Whichever reaches Redis first, the cancel wins: the stream ends with one `done`/`cancelled`, and
 * nothing continues the answer after it.
 */
describe('a handover racing a client cancel', () => {
  let redis: RedisServer;
  let staying: TestApp;
  const env = () => ({
    ...sharedDeployment(redis.url, KEY),
    STREAM_RESUME_GRACE_MS: '30000',
    STREAM_RETENTION_MS: '30000',
  });

  beforeAll(async () => {
    redis = await startRedisServer();
    staying = await startTestApp(env());
    await whenReady(staying.url);
  });
  afterAll(async () => {
    await staying?.close();
    await redis?.close();
  });

  it.each(CANCEL_DELAYS_MS)(
    'cancel %i ms into the handover: the cancel wins, nothing continues',
    async (delayMs) => {
      const stopping = await startTestApp(env());
      await whenReady(stopping.url);
      const started = await fetch(`${stopping.url}/api/completions/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth },
        body: JSON.stringify({
          messages: [{ role: 'user', content: `[sim tokens=2000 tps=50] race ${delayMs}` }],
        }),
      });
      const streamId = started.headers.get('x-stream-id') as string;
      void readStream(started).catch(() => undefined);
      const events: CompletionEvent[] = [];
      const followed = fetch(`${staying.url}/api/completions/${streamId}/stream`, { headers: auth }).then(
        (response) => readStream(response, (event) => events.push(event)),
      );
      await eventually(() => events.filter((event) => event.type === 'token').length >= 5, 10_000);

      const closed = stopping.close();
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      const cancelled = await fetch(`${staying.url}/api/completions/${streamId}`, {
        method: 'DELETE',
        headers: auth,
      });
      expect(cancelled.status).toBe(204);
      await Promise.all([closed, followed]);

      const seen = events.map((event) => `${event.seq}:${event.type}`).join(' ');
      const terminals = events.filter((event) => event.type === 'done' || event.type === 'error');
      expect({ terminals: terminals.length, seen }).toEqual({ terminals: 1, seen });
      expect(events.at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled' });
      expect(events.map((event) => event.seq)).toEqual(events.map((_, index) => index));

      // Nothing runs on after the cancel: a replay later has the same events, the same single terminal one last.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const replay = await readStream(
        await fetch(`${staying.url}/api/completions/${streamId}/stream`, { headers: auth }),
      );
      expect(replay.events).toEqual(events);
    },
  );
});
