import { Upstream } from '../libs/completion/src/testing/upstream';
import { loadConfig } from '@app/config';
import type { LoggerService } from '@nestjs/common';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import OpenAI from 'openai';
import { createApp } from '../apps/api/src/create-app';
import { COMPLETION_WITH_USAGE } from './support/chunk-upstream';
import { startServerProcess } from './support/server-process';
import { eventually, startTestApp, type TestApp } from './support/test-app';

/**
 * Issue 23, items 1, 3, 4, 5, 9 and 10: what the `/v1` relay holds for a huge answer or a client that does not
 * read, what it counts, what `GET /v1/models` costs the upstream, a bad REDIS_URL, and anonymous IPv6 clients.
 */

const MiB = 1024 * 1024;
const PIECE = Buffer.alloc(MiB, 'a');

/** A non-streamed answer of `mib` MiB (chunked, no length: the gateway learns its size only by reading it). */
function sendJsonOf(response: ServerResponse, mib: number): void {
  response.on('error', () => undefined);
  response.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'req_big' });
  response.write('{"id":"chatcmpl-big","object":"chat.completion","choices":[],"pad":"');
  let sent = 0;
  const next = (): void => {
    while (sent < mib) {
      sent += 1;
      if (!response.write(PIECE)) {
        response.once('drain', next);
        return;
      }
    }
    response.end('"}');
  };
  next();
}

/** A stream that never ends: 1 KiB chunks, as fast as the gateway takes them. */
function sendEndlessStream(response: ServerResponse): void {
  response.on('error', () => undefined);
  response.writeHead(200, { 'content-type': 'text/event-stream' });
  const chunk = `data: ${JSON.stringify({
    id: 'c',
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta: { content: 'x'.repeat(1024) }, finish_reason: null }],
  })}\n\n`;
  const next = (): void => {
    while (!response.destroyed) {
      if (!response.write(chunk)) {
        response.once('drain', next);
        return;
      }
    }
  };
  next();
}

function kibOf(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1]);
}

/** A client that sends its request and then never reads a byte of the answer (so it never sees the close either). */
function neverReading(url: string, body: object): { destroy: () => void } {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  const text = JSON.stringify(body);
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
  );
  socket.pause();
  socket.on('error', () => undefined);
  return { destroy: () => socket.destroy() };
}

/** Polls an asynchronous check until it holds; fails with what it last saw. */
async function until(
  check: () => Promise<number>,
  wanted: (value: number) => boolean,
  what: string,
): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await check();
    if (wanted(value)) return;
    if (Date.now() > deadline) throw new Error(`${what}: still ${value} after 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function metricValue(url: string, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((candidate) => pattern.test(candidate));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

const nonStreamed = (content: string) => ({ model: 'm', messages: [{ role: 'user', content }] });

describe('item 1: a huge non-streamed answer is capped, never buffered whole (a server process, RSS from /proc)', () => {
  let upstream: Upstream;
  let server: Awaited<ReturnType<typeof startServerProcess>>;

  beforeAll(async () => {
    upstream = await Upstream.start((_request, response) => sendJsonOf(response, 64));
    server = await startServerProcess({
      OPENAI_BASE_URL: `${upstream.url}/v1`,
      OPENAI_API_KEY: 'sk-up',
      OPENAI_MAX_RETRIES: '0',
      LOG_LEVEL: 'silent',
    });
  });
  afterAll(async () => {
    await server.kill();
    await upstream.stop();
  });

  it('three 64 MiB answers at once: each a 502 in OpenAI’s shape, the peak RSS up by far less than one', async () => {
    const pid = server.child.pid as number;
    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
    // Warm the paths once, then measure the peak from here (clear_refs 5 resets VmHWM).
    await openai.chat.completions.create(nonStreamed('warm up') as never).catch(() => undefined);
    const before = kibOf(pid, 'VmRSS');
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    const errors = await Promise.all(
      [1, 2, 3].map((index) =>
        openai.chat.completions.create(nonStreamed(`big ${index}`) as never).then(
          () => undefined,
          (error: unknown) => error,
        ),
      ),
    );
    const peakGrowthMiB = (kibOf(pid, 'VmHWM') - before) / 1024;
    for (const error of errors) {
      expect(error).toBeInstanceOf(OpenAI.InternalServerError);
      expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
      expect((error as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({
        type: 'upstream_error',
        code: 'upstream_protocol',
      });
    }
    // 192 MiB were sent; the default cap (V1_MAX_RESPONSE_BYTES, 8 MiB) is all each may hold.
    expect({ peakGrowthMiB }).toEqual({ peakGrowthMiB: expect.any(Number) });
    expect(peakGrowthMiB).toBeLessThan(64);
  });
});

describe('items 1, 3, 5: clients that do not read, and what a non-streamed answer counts', () => {
  let upstream: Upstream;
  let testApp: TestApp;
  const entries: unknown[] = [];
  const logger: LoggerService = {
    log: (message: unknown) => entries.push(message),
    warn: (message: unknown) => entries.push(message),
    error: (message: unknown) => entries.push(message),
  };

  beforeAll(async () => {
    upstream = await Upstream.start((request, response, body) => {
      const content = (JSON.parse(body) as { messages: { content: string }[] }).messages[0].content;
      if (content === 'endless') return sendEndlessStream(response);
      if (content === 'large') return sendJsonOf(response, 24);
      response.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'req_usage' });
      response.end(JSON.stringify(COMPLETION_WITH_USAGE));
    });
    testApp = await startTestApp(
      {
        OPENAI_BASE_URL: `${upstream.url}/v1`,
        OPENAI_API_KEY: 'sk-up',
        RATE_LIMIT_CONCURRENT_STREAMS: '1',
        V1_WRITE_STALL_TIMEOUT_MS: '500',
        V1_MAX_RESPONSE_BYTES: String(32 * MiB),
      },
      { logger },
    );
  });
  afterAll(async () => {
    await testApp.close();
    await upstream.stop();
  });

  const dropped = () =>
    metricValue(testApp.url, /^llm_gateway_dropped_slow_clients_total\{transport="openai"\}/);

  it('item 3: a non-streamed answer’s usage reaches the log line and the token metrics', async () => {
    const tokens = () => metricValue(testApp.url, /^llm_gateway_tokens_total\{transport="openai",/);
    const reasoning = () =>
      metricValue(testApp.url, /^llm_gateway_reasoning_tokens_total\{transport="openai",/);
    const [tokensBefore, reasoningBefore] = [await tokens(), await reasoning()];
    const openai = new OpenAI({ baseURL: `${testApp.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const completion = await openai.chat.completions.create(nonStreamed('count me') as never);
    expect(completion).toMatchObject({ usage: { completion_tokens: 12 } });
    expect({
      tokens: (await tokens()) - tokensBefore,
      reasoning: (await reasoning()) - reasoningBefore,
    }).toEqual({
      tokens: 7,
      reasoning: 5,
    });
    expect(entries).toContainEqual(
      expect.objectContaining({
        transport: 'openai',
        stream: false,
        tokens: 7,
        reasoningTokens: 5,
        promptTokens: 40,
        completionTokens: 12,
      }),
    );
  });

  it('item 1: a client that never reads a 24 MiB answer is dropped at the write-stall deadline, its slot freed', async () => {
    const droppedBefore = await dropped();
    const client = neverReading(testApp.url, nonStreamed('large'));
    await until(dropped, (value) => value === droppedBefore + 1, 'dropped slow /v1 clients');
    client.destroy();
    // The one concurrency slot is free again.
    const openai = new OpenAI({ baseURL: `${testApp.url}/v1`, apiKey: 'x', maxRetries: 0 });
    await expect(openai.chat.completions.create(nonStreamed('after') as never)).resolves.toMatchObject({
      id: 'chatcmpl-usage',
    });
  });

  it('item 5: a stalled stream reader is dropped, its upstream request aborted and its slot freed', async () => {
    const droppedBefore = await dropped();
    const upstreamClosedBefore = upstream.closed.length;
    const client = neverReading(testApp.url, { ...nonStreamed('endless'), stream: true });
    await until(dropped, (value) => value === droppedBefore + 1, 'dropped slow /v1 clients');
    client.destroy();
    await eventually(() => upstream.closed.length > upstreamClosedBefore, 5000).catch(() => {
      throw new Error(
        `upstream connections: ${upstream.sockets.length} opened, ${upstream.closed.length} closed`,
      );
    });
    const openai = new OpenAI({ baseURL: `${testApp.url}/v1`, apiKey: 'x', maxRetries: 0 });
    await expect(openai.chat.completions.create(nonStreamed('after') as never)).resolves.toMatchObject({
      id: 'chatcmpl-usage',
    });
  });
});

describe('item 4: GET /v1/models is metered and cached', () => {
  let listings = 0;
  let upstream: Upstream;
  let testApp: TestApp;

  beforeAll(async () => {
    upstream = await Upstream.start((_request, response) => {
      listings += 1;
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ object: 'list', data: [{ id: 'm', object: 'model' }] }));
    });
    testApp = await startTestApp({
      OPENAI_BASE_URL: `${upstream.url}/v1`,
      OPENAI_API_KEY: 'sk-up',
      RATE_LIMIT_PER_MINUTE: '5',
    });
  });
  afterAll(async () => {
    await testApp.close();
    await upstream.stop();
  });

  it('a principal at its limit gets 429s for 100 calls, and the upstream is asked once in all', async () => {
    const openai = new OpenAI({ baseURL: `${testApp.url}/v1`, apiKey: 'x', maxRetries: 0 });
    for (let call = 0; call < 5; call += 1) {
      expect((await openai.models.list()).data.map((model) => model.id)).toEqual(['m']);
    }
    const outcomes = await Promise.all(
      Array.from({ length: 100 }, () =>
        openai.models.list().then(
          () => 'ok',
          (error: unknown) => (error instanceof OpenAI.RateLimitError ? 'rate_limited' : String(error)),
        ),
      ),
    );
    expect(new Set(outcomes)).toEqual(new Set(['rate_limited']));
    expect(listings).toBe(1);
  });
});

describe('item 9: a bad REDIS_URL stops the server with one line, never the password', () => {
  it.each([
    ['a database path that is not a number', 'redis://:hunter2-secret@127.0.0.1:6379/not-a-number'],
    ['a port that is not one', 'redis://:hunter2-secret@127.0.0.1:99999/0'],
  ])('%s', async (_case, url) => {
    const root = join(__dirname, '..');
    const child = spawn(
      process.execPath,
      ['--import', join(root, 'test/support/typescript-hooks.mjs'), join(root, 'apps/api/src/main.ts')],
      {
        cwd: tmpdir(),
        env: { PATH: process.env.PATH, PORT: '0', WEB_ROOT: '/nonexistent', REDIS_URL: url },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect({ code, output }).toEqual({
      code: 1,
      output: expect.stringMatching(/^Invalid configuration: REDIS_URL: [^\n]+\n$/),
    });
    expect(output).not.toContain('hunter2');
  });
});

describe('item 10: anonymous limits count IPv6 clients per /64 (ANONYMOUS_IPV6_PREFIX_LENGTH)', () => {
  const longStream = JSON.stringify({ messages: [{ role: 'user', content: '[sim tokens=400 tps=40]' }] });
  let cancel: AbortController;
  let testApp: TestApp | undefined;

  beforeEach(() => {
    cancel = new AbortController();
  });
  afterEach(async () => {
    cancel.abort();
    await testApp?.close();
  });

  const startAs = (url: string, forwardedFor?: string) =>
    fetch(`${url}/api/completions/stream`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}),
      },
      body: longStream,
      signal: cancel.signal,
    }).then((response) => response.status);

  it('behind a loopback proxy: a second address of one /64 shares its limits, another /64 does not', async () => {
    testApp = await startTestApp({
      TRUST_PROXY: 'loopback',
      RATE_LIMIT_CONCURRENT_STREAMS: '1',
      SIMULATOR_PROFILE: 'fast',
    });
    expect(await startAs(testApp.url, '2001:db8:1:2::a')).toBe(200);
    expect(await startAs(testApp.url, '2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe(429);
    expect(await startAs(testApp.url, '2001:db8:1:3::a')).toBe(200);
    // IPv4 stays per address, written plainly or IPv4-mapped.
    expect(await startAs(testApp.url, '192.0.2.7')).toBe(200);
    expect(await startAs(testApp.url, '::ffff:192.0.2.7')).toBe(429);
  });

  it('with ANONYMOUS_IPV6_PREFIX_LENGTH=128, each IPv6 address counts on its own', async () => {
    testApp = await startTestApp({
      TRUST_PROXY: 'loopback',
      RATE_LIMIT_CONCURRENT_STREAMS: '1',
      SIMULATOR_PROFILE: 'fast',
      ANONYMOUS_IPV6_PREFIX_LENGTH: '128',
    });
    expect(await startAs(testApp.url, '2001:db8:1:2::a')).toBe(200);
    expect(await startAs(testApp.url, '2001:db8:1:2::b')).toBe(200);
  });

  it('a client on ::1 itself (listening on IPv6 loopback) is one network: its second stream is refused', async () => {
    const config = loadConfig({
      PORT: '0',
      HOST: '::1',
      SIMULATOR_PROFILE: 'fast',
      OPENAI_MAX_RETRIES: '0',
      STREAM_RESUME_GRACE_MS: '0',
      WEB_ROOT: '/nonexistent',
      LOG_LEVEL: 'silent',
      RATE_LIMIT_CONCURRENT_STREAMS: '1',
    });
    const app = await createApp(config, { logger: false });
    await app.listen(0, '::1');
    const url = await app.getUrl();
    testApp = { app, url, simulator: undefined as never, close: () => app.close() };
    expect(url).toMatch(/^http:\/\/\[::1\]:/);
    expect(await startAs(url)).toBe(200);
    expect(await startAs(url)).toBe(429);
  });
});
