import type { SimpleAck, StartAck } from '@app/contracts';
import fc from 'fast-check';
import { connect as connectTcp } from 'node:net';
import { postStream } from './support/sse-client';
import { type CompletionClient, connect, streamOver } from './support/socket-client';
import { startTestApp, type TestApp } from './support/test-app';

/** Values a careless or hostile client might send where a CompletionRequest belongs. */
const hostileValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.string(),
    fc.string({ unit: 'binary' }),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(
      fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor', 'messages', 'role')),
      tie('value'),
      {
        maxKeys: 4,
      },
    ),
  ),
}));

const almostRequest = fc.record(
  {
    messages: fc.oneof(
      fc.array(fc.record({ role: fc.string(), content: fc.oneof(fc.string(), fc.integer()) }), {
        maxLength: 3,
      }),
      fc.constant([]),
      fc.constant(Array.from({ length: 5000 }, () => ({ role: 'user', content: 'x' }))),
      hostileValue.value,
    ),
    model: fc.oneof(fc.string(), fc.integer(), fc.constant('x'.repeat(10_000))),
    temperature: fc.oneof(fc.double(), fc.string()),
    maxTokens: fc.oneof(fc.integer(), fc.double()),
    streamId: fc.oneof(fc.string(), fc.constant('../../etc/passwd'), fc.constant('a'.repeat(100))),
    extra: hostileValue.value,
  },
  { requiredKeys: [] },
);

/** The response status, read to the end; undefined when fetch itself refuses to send the headers (undici's own checks). */
async function sent(url: string, init: RequestInit): Promise<number | undefined> {
  try {
    const response = await fetch(url, init);
    await response.text();
    return response.status;
  } catch (error) {
    if ((error as { cause?: { code?: string } }).cause?.code === 'UND_ERR_INVALID_ARG') {
      return undefined;
    }
    throw error;
  }
}

describe('fuzz: malformed input is always a refusal, never a 5xx or a crash', () => {
  let testApp: TestApp;
  let socket: CompletionClient;

  beforeAll(async () => {
    testApp = await startTestApp();
    socket = await connect(testApp.url);
  });
  afterAll(async () => {
    socket.disconnect();
    await testApp.close();
  });

  it('HTTP bodies: a 4xx problem+json for every malformed body', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(almostRequest, hostileValue.value), async (body) => {
        const response = await fetch(`${testApp.url}/api/completions/stream`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body) ?? 'undefined',
        });
        const text = await response.text();
        if (response.status === 200) {
          // A body that happens to be valid must stream to its end.
          return text.includes('event: done') || text.includes('event: error');
        }
        return (
          response.status >= 400 &&
          response.status < 500 &&
          response.headers.get('content-type')?.startsWith('application/problem+json') === true
        );
      }),
      { numRuns: 150 },
    );
  });

  it('HTTP: raw bytes, invalid UTF-8, deep nesting, odd content types and headers', async () => {
    const cases: { body: Buffer | string; type: string; headers?: Record<string, string> }[] = [
      { body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), type: 'application/json' },
      { body: Buffer.from([0xc3, 0x28, 0xa0, 0xa1]), type: 'application/json; charset=utf-8' },
      { body: '{"messages":[{"role":"user","content":"hi"}]}', type: 'application/json; charset=latin-7' },
      { body: `${'{"messages":['.repeat(5000)}"x"${']}'.repeat(5000)}`, type: 'application/json' },
      { body: '[]'.repeat(100_000), type: 'application/json' },
      { body: 'messages=hi', type: 'application/x-www-form-urlencoded' },
      { body: '{}', type: 'application/json', headers: { authorization: 'Bearer ' + 'x'.repeat(6000) } },
      { body: '{}', type: 'application/json', headers: { 'last-event-id': '-1' } },
    ];
    for (const { body, type, headers } of cases) {
      const response = await fetch(`${testApp.url}/api/completions/stream`, {
        method: 'POST',
        headers: { 'content-type': type, ...headers },
        body,
      });
      await response.text();
      // The content type names the case when it fails.
      expect({ type, refused: response.status >= 400 && response.status < 500 }).toEqual({
        type,
        refused: true,
      });
    }
  });

  it('HTTP: a request line the parser rejects does not take the server down', async () => {
    const { port } = new URL(testApp.url);
    await new Promise<void>((resolve) => {
      const raw = connectTcp(Number(port), '127.0.0.1', () =>
        raw.end('POST /api/completions/stream HTTP/1.1\r\nContent-Length: nope\r\n\r\n'),
      );
      raw.on('close', () => resolve());
      raw.on('error', () => resolve());
      raw.resume();
    });
  });

  it('Socket.IO payloads: an ack error for every malformed one, for start, cancel and resume', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('completion:start', 'completion:cancel', 'completion:resume'),
        fc.oneof(almostRequest, hostileValue.value),
        async (event, payload) => {
          const ack = await new Promise<StartAck | SimpleAck>((resolve) =>
            // Deliberately not the typed payload.
            socket.emit(event as 'completion:cancel', payload as never, resolve),
          );
          if (ack.ok) {
            return event === 'completion:start';
          }
          return ['invalid_request', 'not_found'].includes(ack.error.code);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('HTTP headers: Last-Event-ID, X-Request-Id, Authorization and Content-Type of any shape are a 4xx at worst', async () => {
    const { headers } = await postStream(testApp.url, { messages: [{ role: 'user', content: 'resume me' }] });
    const known = headers.get('x-stream-id') as string;
    // What fetch can send at all: header values are Latin-1 without CR, LF or NUL.
    const headerValue = fc.oneof(
      fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((code) => String.fromCharCode(code)) }),
      fc.constantFrom('-1', '1e3', '0x10', '99999999999999999999', ' 3', '3 ', '', '\u00ff'.repeat(4000)),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        headerValue,
        headerValue,
        headerValue,
        headerValue,
        async (knownStream, lastEventId, requestId, authorization, contentType) => {
          const statuses = await Promise.all([
            sent(`${testApp.url}/api/completions/${knownStream ? known : 'no-such-stream'}/stream`, {
              headers: { 'last-event-id': lastEventId, 'x-request-id': requestId, authorization },
            }),
            sent(`${testApp.url}/api/completions/stream`, {
              method: 'POST',
              headers: { 'content-type': contentType, 'x-request-id': requestId },
              body: '{"messages":[{"role":"user","content":"hi"}]}',
            }),
          ]);
          return statuses.every(
            (status) => status === undefined || status === 200 || (status >= 400 && status < 500),
          );
        },
      ),
      { numRuns: 100 },
    );
  });

  it('Socket.IO: a flood of 3,000 malformed messages without waiting gets 3,000 ack errors, and the socket lives on', async () => {
    const payloads = fc.sample(hostileValue.value, { numRuns: 3000, seed: 7 });
    const acks = await Promise.all(
      payloads.map(
        (payload, index) =>
          new Promise<StartAck | SimpleAck>((resolve) =>
            socket.emit(
              (['completion:cancel', 'completion:resume'] as const)[index % 2],
              payload as never,
              resolve,
            ),
          ),
      ),
    );

    expect(
      acks.filter((ack) => !ack.ok && ['invalid_request', 'not_found'].includes(ack.error.code)),
    ).toHaveLength(3000);
    expect(socket.connected).toBe(true);
  });

  it('keeps serving normal requests on both transports afterwards', async () => {
    const overHttp = await postStream(testApp.url, { messages: [{ role: 'user', content: 'still there?' }] });
    const overSocket = await streamOver(socket, { messages: [{ role: 'user', content: 'still there?' }] });

    expect(overHttp.events.at(-1)?.type).toBe('done');
    expect(overSocket.events.at(-1)?.type).toBe('done');
  });
});
