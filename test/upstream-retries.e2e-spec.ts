import type { CompletionEvent, ErrorEvent } from '@app/contracts';
import type { LoggerService } from '@nestjs/common';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { postStream, textOf } from './support/sse-client';
import { connect, streamOver } from './support/socket-client';
import { startTestApp, type TestApp } from './support/test-app';

/** What the upstream does with one request. */
type Reply =
  | { kind: 'fail'; status: number; headers?: Record<string, string> }
  | { kind: 'stream'; chunks: string[] }
  /** Sends the first chunk, then the socket is destroyed: a failure after the first token. */
  | { kind: 'drop-after-first'; chunks: string[] }
  /** Sends the first chunk, then an `error` object inside the stream, as OpenAI does when it gives up mid-answer. */
  | { kind: 'error-after-first'; chunks: string[] };

interface Attempt {
  at: number;
  retryCount: string | undefined;
  prompt: string;
}

/**
 * A small OpenAI-compatible upstream on loopback that answers each conversation (told apart by its
 * prompt) from a script: fail N times, then stream. It records when each attempt arrived.
 */
class ScriptedUpstream {
  readonly received: Attempt[] = [];
  private readonly scripts = new Map<string, Reply[]>();
  private server: Server | undefined;
  private nextId = 1;

  script(prompt: string, replies: Reply[]): void {
    this.scripts.set(prompt, [...replies]);
  }

  attempts(prompt: string): Attempt[] {
    return this.received.filter((request) => request.prompt === prompt);
  }

  async start(): Promise<string> {
    this.server = createServer((request, response) => void this.answer(request, response));
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
  }

  close(): Promise<void> {
    this.server?.closeAllConnections();
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private async answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let body = '';
    for await (const chunk of request) {
      body += String(chunk);
    }
    response.setHeader('x-request-id', `req_scripted_${this.nextId++}`);
    if (request.url?.endsWith('/models')) {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ object: 'list', data: [] }));
      return;
    }
    const { messages } = JSON.parse(body) as { messages: { content: string }[] };
    const prompt = messages.at(-1)?.content ?? '';
    this.received.push({
      at: performance.now(),
      retryCount: request.headers['x-stainless-retry-count'] as string | undefined,
      prompt,
    });
    const reply = this.scripts.get(prompt)?.shift() ?? { kind: 'fail', status: 400 };
    if (reply.kind === 'fail') {
      response.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
      response.end(JSON.stringify({ error: { message: 'scripted failure', type: 'server_error' } }));
      return;
    }
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    const data = (value: unknown) => response.write(`data: ${JSON.stringify(value)}\n\n`);
    const chunk = (delta: object, finishReason: string | null = null) =>
      data({
        id: 'chatcmpl-scripted',
        object: 'chat.completion.chunk',
        created: 0,
        model: 'scripted',
        choices: [{ index: 0, delta, finish_reason: finishReason }],
      });
    chunk({ role: 'assistant', content: '' });
    if (reply.kind !== 'stream') {
      chunk({ content: reply.chunks[0] });
      // Let the token reach the gateway before the failure.
      await new Promise((resolve) => setTimeout(resolve, 50));
      if (reply.kind === 'drop-after-first') {
        response.socket?.destroy();
      } else {
        data({ error: { message: 'The server had an error while processing your request.' } });
        response.end();
      }
      return;
    }
    for (const text of reply.chunks) {
      chunk({ content: text });
    }
    chunk({}, 'stop');
    response.end('data: [DONE]\n\n');
  }
}

/** Keeps what the app logs, to read the upstream request ids back. */
class CapturingLogger implements LoggerService {
  readonly entries: unknown[] = [];
  log(message: unknown): void {
    this.entries.push(message);
  }
  warn(message: unknown): void {
    this.entries.push(message);
  }
  error(message: unknown): void {
    this.entries.push(message);
  }
}

const ANSWER = ['Retries ', 'happen ', 'before ', 'the first token ', 'only. ✓'];
const user = (content: string) => ({ messages: [{ role: 'user' as const, content }] });
const gaps = (attempts: Attempt[]) =>
  attempts.slice(1).map((attempt, index) => attempt.at - attempts[index].at);
const lastOf = (events: CompletionEvent[]) => events.at(-1) as CompletionEvent;

// Timers never fire early, so waits are checked from below only: a loaded machine makes them longer, never shorter.
describe('upstream retries: bounded, jittered, honouring retry-after, and only before the first token', () => {
  const upstream = new ScriptedUpstream();
  const logger = new CapturingLogger();
  let testApp: TestApp;

  beforeAll(async () => {
    const baseURL = await upstream.start();
    testApp = await startTestApp(
      {
        OPENAI_BASE_URL: baseURL,
        OPENAI_API_KEY: 'sk-scripted-secret',
        OPENAI_MODEL: 'scripted',
        OPENAI_MAX_RETRIES: '2',
      },
      { logger },
    );
  });
  afterAll(async () => {
    await testApp.close();
    await upstream.close();
  });

  it('fails with 503 and 500, then streams: the client sees one clean answer, the upstream three attempts', async () => {
    const prompt = 'two failures then an answer';
    upstream.script(prompt, [
      { kind: 'fail', status: 503 },
      { kind: 'fail', status: 500 },
      { kind: 'stream', chunks: ANSWER },
    ]);

    const { events } = await postStream(testApp.url, user(prompt));

    expect(textOf(events)).toBe(ANSWER.join(''));
    expect(lastOf(events)).toMatchObject({ type: 'done', finishReason: 'stop' });
    const attempts = upstream.attempts(prompt);
    expect(attempts).toHaveLength(3);
    // The router's exponential backoff (the SDK's policy): 0.5 s, then 1 s, each shortened by at most 25 % of jitter.
    const [first, second] = gaps(attempts);
    expect(first).toBeGreaterThanOrEqual(370);
    expect(second).toBeGreaterThanOrEqual(740);
    expect(second).toBeGreaterThan(first);
  });

  it('jitters the backoff: concurrent streams that fail at once do not retry in step', async () => {
    const prompts = Array.from({ length: 6 }, (_, index) => `one failure, stream ${index}`);
    prompts.forEach((prompt) =>
      upstream.script(prompt, [
        { kind: 'fail', status: 502 },
        { kind: 'stream', chunks: ANSWER },
      ]),
    );

    const results = await Promise.all(prompts.map((prompt) => postStream(testApp.url, user(prompt))));

    expect(results.every(({ events }) => textOf(events) === ANSWER.join(''))).toBe(true);
    const delays = prompts.map((prompt) => gaps(upstream.attempts(prompt))[0]);
    delays.forEach((delay) => expect(delay).toBeGreaterThanOrEqual(370));
    // Without jitter they would all wait 500 ms; with it, up to 125 ms less, drawn per request.
    expect(Math.max(...delays) - Math.min(...delays)).toBeGreaterThan(5);
  });

  it('waits what retry-after-ms says (over retry-after), and retry-after in seconds when that is all there is', async () => {
    upstream.script('rate limited in ms', [
      { kind: 'fail', status: 429, headers: { 'retry-after-ms': '1300', 'retry-after': '0' } },
      { kind: 'stream', chunks: ANSWER },
    ]);
    upstream.script('rate limited in s', [
      { kind: 'fail', status: 429, headers: { 'retry-after': '1' } },
      { kind: 'stream', chunks: ANSWER },
    ]);

    const [inMs, inSeconds] = await Promise.all([
      postStream(testApp.url, user('rate limited in ms')),
      postStream(testApp.url, user('rate limited in s')),
    ]);

    expect(textOf(inMs.events)).toBe(ANSWER.join(''));
    expect(textOf(inSeconds.events)).toBe(ANSWER.join(''));
    expect(gaps(upstream.attempts('rate limited in ms'))[0]).toBeGreaterThanOrEqual(1295);
    expect(gaps(upstream.attempts('rate limited in s'))[0]).toBeGreaterThanOrEqual(995);
  });

  it('gives up after OPENAI_MAX_RETRIES: three attempts, then the contract error with the upstream’s retry hint', async () => {
    const refusal = { kind: 'fail' as const, status: 429, headers: { 'retry-after-ms': '200' } };
    const down = { kind: 'fail' as const, status: 503, headers: { 'retry-after-ms': '100' } };
    upstream.script('always rate limited', [refusal, refusal, refusal, { kind: 'stream', chunks: ANSWER }]);
    upstream.script('always down', [down, down, down, { kind: 'stream', chunks: ANSWER }]);
    const socket = await connect(testApp.url);

    const [limited, unavailable] = await Promise.all([
      postStream(testApp.url, user('always rate limited')),
      streamOver(socket, user('always down')),
    ]);
    socket.disconnect();

    expect(upstream.attempts('always rate limited')).toHaveLength(3);
    expect(upstream.attempts('always down')).toHaveLength(3);
    expect((lastOf(limited.events) as ErrorEvent).error).toEqual({
      code: 'upstream_rate_limited',
      message: expect.any(String),
      retryable: true,
      retryAfterMs: 200,
    });
    expect((lastOf(unavailable.events) as ErrorEvent).error).toMatchObject({
      code: 'upstream_unavailable',
      retryable: true,
    });
    expect(limited.events.filter((event) => event.type === 'token')).toHaveLength(0);
  });

  it('does not retry a refusal (401): one attempt, upstream_rejected, no secret in the event', async () => {
    upstream.script('refused', [
      { kind: 'fail', status: 401 },
      { kind: 'stream', chunks: ANSWER },
    ]);

    const { events } = await postStream(testApp.url, user('refused'));

    expect(upstream.attempts('refused')).toHaveLength(1);
    expect((lastOf(events) as ErrorEvent).error).toMatchObject({
      code: 'upstream_rejected',
      retryable: false,
    });
    expect(JSON.stringify(events)).not.toContain('sk-scripted-secret');
  });

  it.each([
    ['the connection drops', 'drop-after-first' as const],
    ['the upstream reports an error inside the stream', 'error-after-first' as const],
  ])(
    'never retries after the first token: %s → one attempt, the token kept, then upstream_interrupted',
    async (_name, kind) => {
      const prompt = `after the first token: ${kind}`;
      upstream.script(prompt, [
        { kind, chunks: ANSWER },
        { kind: 'stream', chunks: ANSWER },
      ]);

      const { events } = await postStream(testApp.url, user(prompt));

      expect(upstream.attempts(prompt)).toHaveLength(1);
      expect(textOf(events)).toBe(ANSWER[0]);
      // (v1.2) A deployment named only by OPENAI_BASE_URL declares no continuation: the answer cannot be carried on,
      // and the client is told it was cut, never given half an answer as whole.
      expect((lastOf(events) as ErrorEvent).error).toMatchObject({
        code: 'upstream_interrupted',
        retryable: true,
      });
    },
  );

  it('logs the upstream request id of each stream with the stream id, and never the prompt or the key', async () => {
    upstream.script('log my request id', [{ kind: 'stream', chunks: ANSWER }]);
    upstream.script('log my refusal', [{ kind: 'fail', status: 400 }]);

    const { headers } = await postStream(testApp.url, user('log my request id'));
    await postStream(testApp.url, user('log my refusal'));

    expect(logger.entries).toContainEqual(
      expect.objectContaining({
        streamId: headers.get('x-stream-id'),
        upstreamRequestId: expect.stringMatching(/^req_scripted_\d+$/),
      }),
    );
    expect(logger.entries).toContainEqual(
      expect.objectContaining({ upstreamRequestId: expect.stringMatching(/^req_scripted_/), status: 400 }),
    );
    expect(JSON.stringify(logger.entries)).not.toMatch(/log my (request id|refusal)/);
    expect(JSON.stringify(logger.entries)).not.toContain('sk-scripted-secret');
  });
});
