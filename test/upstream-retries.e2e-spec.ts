import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { postStream, textOf } from './support/sse-client';
import { startTestApp, type TestApp } from './support/test-app';

const user = (content: string) => ({ messages: [{ role: 'user' as const, content }] });

function chunk(content: string | null, finish: string | null = null): string {
  const delta = content === null ? {} : { content };
  return `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
}

/**
 * A scripted OpenAI-compatible upstream: each request gets the next behaviour of the script, and the server
 * records when every attempt arrived, so retries and their spacing can be checked.
 */
class ScriptedUpstream {
  attempts: number[] = [];
  private server: Server | undefined;

  constructor(private readonly script: ((response: import('node:http').ServerResponse) => void)[]) {}

  async start(): Promise<string> {
    this.server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        this.attempts.push(performance.now());
        const behaviour = this.script[Math.min(this.attempts.length - 1, this.script.length - 1)];
        behaviour(response);
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server?.address() as AddressInfo).port}/v1`;
  }

  close(): Promise<void> {
    this.server?.closeAllConnections();
    return new Promise((resolve) => this.server?.close(() => resolve()));
  }
}

const rateLimited = (retryAfterMs: number) => (response: import('node:http').ServerResponse) =>
  response
    .writeHead(429, { 'content-type': 'application/json', 'retry-after-ms': String(retryAfterMs) })
    .end(JSON.stringify({ error: { message: 'slow down', type: 'requests', code: 'rate_limit_exceeded' } }));

const streams =
  (...parts: string[]) =>
  (response: import('node:http').ServerResponse) => {
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    for (const part of parts) response.write(part);
    response.end();
  };

describe('upstream retries: before the first token only', () => {
  let upstream: ScriptedUpstream;
  let testApp: TestApp;

  afterEach(async () => {
    await testApp.close();
    await upstream.close();
  });

  async function start(script: ConstructorParameters<typeof ScriptedUpstream>[0]): Promise<void> {
    upstream = new ScriptedUpstream(script);
    const baseURL = await upstream.start();
    testApp = await startTestApp({
      OPENAI_BASE_URL: baseURL,
      OPENAI_API_KEY: 'test-key',
      OPENAI_MAX_RETRIES: '2',
    });
  }

  it('retries a 429 twice, waiting at least what retry-after-ms says, then streams', async () => {
    await start([
      rateLimited(150),
      rateLimited(150),
      streams(chunk('Hel'), chunk('lo'), chunk(null, 'stop'), 'data: [DONE]\n\n'),
    ]);

    const { events } = await postStream(testApp.url, user('hi'));

    expect(upstream.attempts).toHaveLength(3);
    // Timers never fire early: each retry came at least retry-after-ms after the refusal.
    expect(upstream.attempts[1] - upstream.attempts[0]).toBeGreaterThanOrEqual(145);
    expect(upstream.attempts[2] - upstream.attempts[1]).toBeGreaterThanOrEqual(145);
    expect(textOf(events)).toBe('Hello');
    expect(events.at(-1)).toMatchObject({ type: 'done', finishReason: 'stop' });
  });

  it('gives up after the configured retries with upstream_rate_limited and the upstream’s retry-after', async () => {
    await start([rateLimited(100)]);

    const { events } = await postStream(testApp.url, user('hi'));

    expect(upstream.attempts).toHaveLength(3);
    expect(events.at(-1)).toMatchObject({
      type: 'error',
      error: { code: 'upstream_rate_limited', retryable: true, retryAfterMs: 100 },
    });
  });

  it('never retries once a token has been sent: a drop mid-answer ends the stream', async () => {
    await start([
      (response) => {
        response.writeHead(200, { 'content-type': 'text/event-stream' });
        response.write(chunk('partial'));
        setTimeout(() => response.socket?.destroy(), 50);
      },
    ]);

    const { events } = await postStream(testApp.url, user('hi'));

    expect(upstream.attempts).toHaveLength(1);
    expect(textOf(events)).toBe('partial');
    expect(events.at(-1)).toMatchObject({
      type: 'error',
      error: { code: 'upstream_unavailable', retryable: true },
    });
  });
});
