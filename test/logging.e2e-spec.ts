import { ShutdownCoordinator } from '@app/streams';
import { Writable } from 'node:stream';
import { io } from 'socket.io-client';
import { postStream, readStream } from './support/sse-client';
import { eventually, startTestApp, type TestApp } from './support/test-app';

const CANARY = 'CANARY-4f9b2e';
const KEY = `key-${CANARY}`;

/** Every header a client or a proxy might send that must never be logged, each carrying the canary. */
const secretHeaders = {
  authorization: `Bearer ${KEY}`,
  'x-proxy-secret': `proxy-${CANARY}`,
  'proxy-authorization': `Basic ${CANARY}`,
  cookie: `session=${CANARY}`,
  'x-custom-token': CANARY,
};

/** The app's own JSON log lines, as it writes them. */
class CapturedLog extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
  get records(): Record<string, unknown>[] {
    return this.text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

describe('request logging is an allow-list', () => {
  let testApp: TestApp;
  const log = new CapturedLog();

  beforeAll(async () => {
    testApp = await startTestApp(
      { LOG_LEVEL: 'info', AUTH_MODE: 'api-key', AUTH_API_KEYS: KEY },
      { logDestination: log },
    );
  });
  afterAll(() => testApp.close());

  it('logs method, path, status, ids, user agent, lengths and duration, and no canary from any header or URL', async () => {
    const started = await postStream(
      testApp.url,
      { messages: [{ role: 'user', content: `[sim tokens=5] prompt ${CANARY}` }] },
      { headers: { ...secretHeaders, 'user-agent': 'log-test/1.0', 'x-request-id': 'req-log-test-1' } },
    );
    const streamId = started.headers.get('x-stream-id') as string;
    const resumeToken = started.headers.get('x-resume-token') as string;
    await readStream(
      await fetch(
        `${testApp.url}/api/completions/${streamId}/stream?resumeToken=${encodeURIComponent(resumeToken)}&x=${CANARY}`,
        { headers: { 'x-proxy-secret': `proxy-${CANARY}` } },
      ),
    );
    const timeRequest = await fetch(`${testApp.url}/api/time`, {
      headers: { 'x-api-key': `wrong-${CANARY}` },
    });
    const socket = io(`${testApp.url}/completions`, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      auth: { token: KEY },
      extraHeaders: secretHeaders,
    });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.close();
    // The start and the resume; /api/time is the clock probe, answered before request logging, never logged.
    await eventually(() => log.records.filter((record) => record.msg === 'request completed').length >= 2);
    expect(
      log.records.filter((record) => (record.req as { path?: string } | undefined)?.path === '/api/time'),
    ).toEqual([]);

    const leaks = log.text
      .split('\n')
      .filter((line) => line.includes(CANARY) || line.includes(resumeToken) || /headers/i.test(line));
    expect(leaks).toEqual([]);
    const startLine = log.records.find(
      (record) => (record.req as { id?: string } | undefined)?.id === 'req-log-test-1' && 'res' in record,
    );
    expect(startLine).toMatchObject({
      req: {
        id: 'req-log-test-1',
        method: 'POST',
        path: '/api/completions/stream',
        userAgent: 'log-test/1.0',
        contentLength: expect.any(Number),
      },
      res: { statusCode: 200, streamId },
      durationMs: expect.any(Number),
    });
    expect(Object.keys(startLine?.req as object).sort()).toEqual(
      ['contentLength', 'id', 'method', 'path', 'userAgent'].sort(),
    );
    expect(timeRequest.status).toBe(200);
    // Sized for a busy instance: a request line is a few hundred bytes, not kilobytes.
    expect(JSON.stringify(startLine).length).toBeLessThan(600);
  });

  it('logs a 5xx with its status and the error, still without headers', async () => {
    // A draining instance refuses new streams with 503 shutting_down: the plainest 5xx there is. Last, as it drains.
    await testApp.app.get(ShutdownCoordinator).beforeApplicationShutdown();
    const refused = await fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'req-log-test-503', ...secretHeaders },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(refused.status).toBe(503);

    await eventually(() =>
      log.records.some((record) => (record.req as { id?: string } | undefined)?.id === 'req-log-test-503'),
    ).catch(() => {
      throw new Error(`no log line for the request; the log: ${log.text}`);
    });
    const line = log.records.find(
      (record) => (record.req as { id?: string } | undefined)?.id === 'req-log-test-503',
    );
    expect(line).toMatchObject({
      msg: 'request errored',
      req: { method: 'POST', path: '/api/completions/stream' },
      res: { statusCode: 503 },
      err: { type: 'Error', message: 'failed with status code 503' },
    });
    expect(log.text).not.toContain(CANARY);
  });
});
