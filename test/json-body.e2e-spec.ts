import { type ProblemDetails, REQUEST_LIMITS } from '@app/contracts';
import { once } from 'node:events';
import { connect } from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync, zstdCompressSync } from 'node:zlib';
import { postStream } from './support/sse-client';
import { startTestApp, type TestApp } from './support/test-app';

const request = { messages: [{ role: 'user', content: '[sim tokens=2] hi' }] };

/**
 * The JSON body reader (libs/auth/src/json-body.ts, Express's body-parser after the guards) through the real server: what it accepts, and each refusal as
 * the problem+json the contract names.
 */
describe('reading a JSON body', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await startTestApp();
  });
  afterAll(() => testApp.close());

  async function refusal(response: Response): Promise<[number, string, string]> {
    const problem = (await response.json()) as ProblemDetails;
    return [response.status, problem.code, problem.detail ?? ''];
  }

  /** What `curl -X POST -H 'content-type: application/json' <url>` sends: no body, and no header saying so. */
  async function bareCurlPost(path: string): Promise<[string, unknown]> {
    const { port } = new URL(testApp.url);
    const socket = connect(Number(port), '127.0.0.1');
    await once(socket, 'connect');
    socket.end(
      `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        'Content-Type: application/json\r\nConnection: close\r\n\r\n',
    );
    let answer = '';
    socket.setEncoding('utf8').on('data', (text: string) => (answer += text));
    await once(socket, 'close');
    const [head, body] = answer.split('\r\n\r\n');
    return [head.split('\r\n')[0], JSON.parse(body)];
  }

  it('400 "no body" for a POST with neither Content-Length nor Transfer-Encoding, as bare curl sends it', async () => {
    const [statusLine, problem] = await bareCurlPost('/api/completions/stream');

    expect(statusLine).toBe('HTTP/1.1 400 Bad Request');
    expect(problem).toMatchObject({
      code: 'invalid_request',
      detail: 'The request has no body: send the JSON body, with Content-Type: application/json.',
    });
  });

  it("the same on the OpenAI-compatible surface, in OpenAI's error shape", async () => {
    const [statusLine, error] = await bareCurlPost('/v1/chat/completions');

    expect(statusLine).toBe('HTTP/1.1 400 Bad Request');
    expect(error).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_request' } });
  });

  it('an empty body (Content-Length: 0) is what the validation refuses, as before', async () => {
    const [status, code] = await refusal(
      await fetch(`${testApp.url}/api/completions/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '',
      }),
    );

    expect([status, code]).toEqual([400, 'invalid_request']);
  });

  it('takes the body gzip, deflate, br or zstd compressed', async () => {
    const json = Buffer.from(JSON.stringify(request));
    const compressors = {
      gzip: gzipSync,
      deflate: deflateSync,
      br: brotliCompressSync,
      zstd: zstdCompressSync,
    };
    const answers = [];
    for (const [encoding, compress] of Object.entries(compressors)) {
      const response = await fetch(`${testApp.url}/api/completions/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': encoding },
        body: compress(json),
      });
      const text = await response.text();
      answers.push([encoding, response.status, text.includes('event: done')]);
    }

    expect(answers).toEqual(Object.keys(compressors).map((encoding) => [encoding, 200, true]));
  });

  it('takes a UTF-8 body with a byte-order mark, and a charset=utf-8 one', async () => {
    const withMark = await postStream(testApp.url, `\ufeff${JSON.stringify(request)}`);
    const withCharset = await postStream(testApp.url, JSON.stringify(request), {
      headers: { 'content-type': 'Application/JSON; charset=UTF-8' },
    });

    expect([withMark.status, withMark.events.at(-1)?.type]).toEqual([200, 'done']);
    expect([withCharset.status, withCharset.events.at(-1)?.type]).toEqual([200, 'done']);
  });

  it('takes JSON in UTF-16 when the charset says so (body-parser decodes it)', async () => {
    const response = await fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-16le' },
      body: Buffer.from(JSON.stringify(request), 'utf16le'),
    });
    const text = await response.text();

    expect([response.status, text.includes('event: done')]).toEqual([200, true]);
  });

  it('415 for a Content-Encoding it does not know', async () => {
    const [status, code] = await refusal(
      await fetch(`${testApp.url}/api/completions/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'compress' },
        body: JSON.stringify(request),
      }),
    );

    expect([status, code]).toEqual([415, 'unsupported_media_type']);
  });

  it('413 for a body over the limit once decompressed, however small compressed', async () => {
    const inflated = JSON.stringify({
      messages: [{ role: 'user', content: 'x'.repeat(REQUEST_LIMITS.maxBodyBytes) }],
    });
    const compressed = gzipSync(inflated);
    const answer = await refusal(
      await fetch(`${testApp.url}/api/completions/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body: compressed,
      }),
    );

    expect(compressed.length).toBeLessThan(REQUEST_LIMITS.maxBodyBytes / 10);
    expect(answer).toEqual([413, 'payload_too_large', 'The request body is larger than the server accepts.']);
  });

  it('413 for a chunked body (no Content-Length) that grows over the limit', async () => {
    const chunk = new TextEncoder().encode(`{"messages":[{"role":"user","content":"${'x'.repeat(1024)}`);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += chunk.length;
        if (sent > REQUEST_LIMITS.maxBodyBytes * 2) {
          controller.close();
        } else {
          controller.enqueue(chunk);
        }
      },
    });
    const response = await fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      duplex: 'half',
    } as RequestInit);
    const [status, code] = await refusal(response);

    expect([status, code]).toEqual([413, 'payload_too_large']);
  });

  it('400 for a body that is JSON but neither an object nor an array', async () => {
    const answer = await refusal(
      await fetch(`${testApp.url}/api/completions/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: ' "messages"',
      }),
    );

    expect(answer).toEqual([400, 'invalid_request', 'The request body is not valid JSON.']);
  });
});
