import { connect, type Socket } from 'node:net';
import { startTestApp, type TestApp } from './support/test-app';

interface Outcome {
  /** The status line the server answered with, or `closed` when it closed without one. */
  answer: string;
  /** From the first byte sent to the server's answer or close. */
  afterMs: number;
  /** Bytes of the body the client had sent by then. */
  bodyBytesSent: number;
}

/**
 * A client on a raw socket that sends the request head, then its body one byte a second (or the head
 * itself that slowly, with `trickleHead`), and reports how the server ended it.
 */
function trickle(
  url: string,
  head: string,
  options: { bodyLength: number; trickleHead?: boolean },
): Promise<Outcome> {
  const { hostname, port } = new URL(url);
  const socket: Socket = connect(Number(port), hostname);
  const startedAt = Date.now();
  let sent = 0;
  let received = '';
  const pending = options.trickleHead ? head : 'x'.repeat(options.bodyLength);
  if (!options.trickleHead) socket.write(head);
  const timer = setInterval(() => {
    if (sent < pending.length && socket.writable) {
      socket.write(pending[sent]);
      sent += 1;
    }
  }, 1000);
  return new Promise((resolve) => {
    const finish = () => {
      clearInterval(timer);
      socket.destroy();
      resolve({
        answer: /^HTTP\/1\.1 \d{3}/.exec(received)?.[0] ?? 'closed',
        afterMs: Date.now() - startedAt,
        bodyBytesSent: options.trickleHead ? 0 : sent,
      });
    };
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
      if (received.includes('\r\n\r\n')) finish();
    });
    socket.on('close', finish);
    socket.on('error', finish);
  });
}

const post = (length: number, extra = '') =>
  `POST /api/completions/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
  `Content-Length: ${length}\r\n${extra}\r\n`;

describe('slow requests: deliberate timeouts, and authentication before the body is read', () => {
  let testApp: TestApp;
  afterEach(() => testApp.close());

  it('answers 408 to a body trickled a byte a second once HTTP_REQUEST_TIMEOUT_MS has passed', async () => {
    testApp = await startTestApp({ HTTP_REQUEST_TIMEOUT_MS: '2000', HTTP_HEADERS_TIMEOUT_MS: '1000' });
    const outcome = await trickle(testApp.url, post(100), { bodyLength: 100 });

    expect(outcome).toMatchObject({ answer: 'HTTP/1.1 408' });
    // Checked each second: cut between the limit and a second and a bit after it.
    expect(outcome.afterMs).toBeGreaterThanOrEqual(2000);
    expect(outcome.afterMs).toBeLessThan(4500);
  });

  it('answers 408 to headers trickled a byte a second once HTTP_HEADERS_TIMEOUT_MS has passed', async () => {
    testApp = await startTestApp({ HTTP_REQUEST_TIMEOUT_MS: '5000', HTTP_HEADERS_TIMEOUT_MS: '1000' });
    const outcome = await trickle(testApp.url, post(10), { bodyLength: 0, trickleHead: true });

    expect(outcome).toMatchObject({ answer: 'HTTP/1.1 408' });
    expect(outcome.afterMs).toBeLessThan(3500);
  });

  it('refuses a request without credentials before reading its body', async () => {
    testApp = await startTestApp({
      AUTH_MODE: 'api-key',
      AUTH_API_KEYS: 'a-key-0123456789',
      HTTP_REQUEST_TIMEOUT_MS: '20000',
    });
    // A 200 KB body of which almost nothing will have arrived: the answer cannot have waited for it.
    const outcome = await trickle(testApp.url, post(200_000), { bodyLength: 200_000 });

    expect(outcome).toMatchObject({ answer: 'HTTP/1.1 401' });
    expect(outcome.bodyBytesSent).toBeLessThan(5);
    const notJson = await fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: 'not json at all',
    });
    expect(notJson.status).toBe(401);
  });
});
