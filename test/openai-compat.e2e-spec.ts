import { AuthError, type AuthStrategy, AuthStrategyName, type Credentials, type Principal } from '@app/auth';
import { Injectable, type LoggerService } from '@nestjs/common';
import { REASONING_MODEL_NAME } from '@app/simulator';
import { StreamRegistry } from '@app/streams';
import { createParser } from 'eventsource-parser';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { rejection } from './support/openai-errors';
import { ChunkUpstream, chunkOf, usageChunk } from './support/chunk-upstream';
import { postStream } from './support/sse-client';
import { eventually, startTestApp, type TestApp } from './support/test-app';

const GATEWAY_KEY = 'gw-client-key';
const UPSTREAM_KEY = 'sk-upstream-secret-key';
const apiKeyAuth = { AUTH_MODE: 'api-key', AUTH_API_KEYS: GATEWAY_KEY };

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

const clientOf = (testApp: TestApp, apiKey = GATEWAY_KEY) =>
  new OpenAI({ baseURL: `${testApp.url}/v1`, apiKey, maxRetries: 0 });

/** The `data:` payloads of a raw SSE body, `[DONE]` included, with a real SSE parser. */
function dataOf(body: string): string[] {
  const data: string[] = [];
  const parser = createParser({ onEvent: (message) => data.push(message.data) });
  parser.feed(body);
  return data;
}

/** A chunk without what differs between two responses to one request (the id and time of the completion). */
function comparable(chunk: Record<string, unknown>): Record<string, unknown> {
  const { id: _id, created: _created, ...rest } = chunk;
  return rest;
}

async function rawPost(
  testApp: TestApp,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${testApp.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${GATEWAY_KEY}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

describe('/v1 with the simulator, the official openai SDK as the client', () => {
  let testApp: TestApp;
  let openai: OpenAI;
  let direct: OpenAI;
  const logger = new CapturingLogger();

  beforeAll(async () => {
    testApp = await startTestApp(
      // A short idle timeout: one test here stalls the upstream mid-stream.
      { ...apiKeyAuth, SIMULATOR_PROFILE: 'fast', UPSTREAM_IDLE_TIMEOUT_MS: '500' },
      { logger },
    );
    openai = clientOf(testApp);
    direct = new OpenAI({
      baseURL: testApp.simulator.baseUrl,
      apiKey: 'x',
      maxRetries: 0,
      defaultHeaders: { ...testApp.simulator.headers },
    });
  });
  afterAll(() => testApp.close());

  it('streams: the default model filled in, every chunk as the simulator sent it, usage, then [DONE]', async () => {
    const request = {
      messages: [{ role: 'user' as const, content: '[sim echo] héllo wörld 🚀 日本語\nline two' }],
      stream: true as const,
      stream_options: { include_usage: true },
    };
    const stream = await openai.chat.completions.create(
      // No model: the gateway fills in its default (the SDK's types insist on one).
      request as typeof request & { model: string },
    );
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('')).toBe(
      'héllo wörld 🚀 日本語\nline two',
    );
    expect(chunks.every((chunk) => chunk.model === 'simulator')).toBe(true);
    expect(chunks.at(-1)?.usage?.completion_tokens_details).toEqual(
      expect.objectContaining({ reasoning_tokens: 0 }),
    );

    // Byte for byte, each data payload is the upstream's (id and created aside): nothing dropped, nothing added.
    const viaGateway = dataOf(await (await rawPost(testApp, request)).text());
    const upstream = await direct.chat.completions.create({ ...request, model: 'simulator' }).asResponse();
    const fromUpstream = dataOf(await upstream.text());
    expect(viaGateway.at(-1)).toBe('[DONE]');
    expect(viaGateway.length).toBe(fromUpstream.length);
    expect(viaGateway.slice(0, -1).map((data) => comparable(JSON.parse(data)))).toEqual(
      fromUpstream.slice(0, -1).map((data) => comparable(JSON.parse(data))),
    );
  });

  it('answers a non-streamed request with the upstream JSON', async () => {
    const messages = [{ role: 'user' as const, content: '[sim tokens=9] not streamed' }];
    const completion = await openai.chat.completions.create({ messages, model: 'simulator-instant' });
    const reference = await direct.chat.completions.create({ messages, model: 'simulator-instant' });
    expect(completion.object).toBe('chat.completion');
    expect(comparable(completion as never)).toEqual(comparable(reference as never));
  });

  it('lists the upstream models', async () => {
    const models = await openai.models.list();
    expect(models.data.map((model) => model.id)).toEqual(
      expect.arrayContaining(['simulator', REASONING_MODEL_NAME]),
    );
  });

  it('relays reasoning in both field styles, exactly', async () => {
    for (const [content, field] of [
      ['[sim think=6 tokens=3] reasoning_content style', 'reasoning_content'],
      ['[sim reasoning=reasoning think=6 tokens=3] reasoning style', 'reasoning'],
    ] as const) {
      const messages = [{ role: 'user' as const, content }];
      const read = async (client: OpenAI) => {
        const deltas: Record<string, unknown>[] = [];
        const stream = await client.chat.completions.create({
          model: REASONING_MODEL_NAME,
          messages,
          stream: true,
        });
        for await (const chunk of stream) if (chunk.choices[0]) deltas.push(chunk.choices[0].delta as never);
        return deltas;
      };
      const deltas = await read(openai);
      expect(deltas.filter((delta) => typeof delta[field] === 'string')).toHaveLength(6);
      expect(deltas).toEqual(await read(direct));
    }
  });

  it('a client that aborts mid-stream aborts the upstream at once', async () => {
    const abortedBefore = testApp.simulator.stats().aborted;
    const stream = await openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content: '[sim tokens=500 tps=20] abort me' }],
      stream: true,
    });
    let seen = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) seen += 1;
      if (seen === 2) {
        stream.controller.abort();
        break;
      }
    }
    await eventually(() => testApp.simulator.stats().aborted > abortedBefore, 3000).catch(() => {
      throw new Error(`simulator stats after the abort: ${JSON.stringify(testApp.simulator.stats())}`);
    });
  });

  it('refusals raise the SDK errors: AuthenticationError, BadRequestError, NotFoundError', async () => {
    const unauthenticated = await rejection(
      clientOf(testApp, 'wrong-key').chat.completions.create({
        model: 'simulator',
        messages: [{ role: 'user', content: 'hi' }],
      }),
    );
    expect(unauthenticated).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(unauthenticated.error).toMatchObject({ type: 'authentication_error', code: 'unauthorized' });

    const noMessages = await rejection(openai.chat.completions.create({ model: 'simulator' } as never));
    expect(noMessages).toBeInstanceOf(OpenAI.BadRequestError);
    expect(noMessages.error).toMatchObject({ type: 'invalid_request_error', param: 'messages' });

    const upstreamRefusal = await rejection(
      openai.chat.completions.create({
        model: 'simulator',
        messages: [{ role: 'user', content: '[sim fault=bad_request]' }],
      }),
    );
    expect(upstreamRefusal).toBeInstanceOf(OpenAI.BadRequestError);
    expect(upstreamRefusal.error).toMatchObject({ code: 'upstream_rejected' });
    // The upstream's own text is never relayed: it can quote the key.
    expect(JSON.stringify(upstreamRefusal.error)).not.toContain('simulator was asked');

    const unknownModel = await rejection(
      openai.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(unknownModel).toBeInstanceOf(OpenAI.NotFoundError);
    expect(JSON.stringify(unknownModel.error)).not.toContain('no-such-model');
  });

  it('the upstream refusing the gateway key is a 502, not the client’s AuthenticationError', async () => {
    const error = await rejection(
      openai.chat.completions.create({
        model: 'simulator',
        messages: [{ role: 'user', content: '[sim fault=unauthorized]' }],
      }),
    );
    expect(error).toBeInstanceOf(OpenAI.InternalServerError);
    expect(error.status).toBe(502);
    expect(JSON.stringify(error.error)).not.toContain('Incorrect API key');
  });

  it('an upstream 429 is a RateLimitError with its retry-after', async () => {
    const error = await rejection(
      openai.chat.completions.create({
        model: 'simulator',
        messages: [{ role: 'user', content: '[sim fault=rate_limit retry_after_ms=2500]' }],
      }),
    );
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(error.headers?.get('retry-after')).toBe('3');
    expect(error.headers?.get('retry-after-ms')).toBe('2500');
  });

  it('an upstream that breaks off mid-stream ends the stream with an error the SDK raises', async () => {
    const stream = await openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content: '[sim fault=drop after=3]' }],
      stream: true,
    });
    const contents: string[] = [];
    const reading = (async () => {
      for await (const chunk of stream) contents.push(chunk.choices[0]?.delta.content ?? '');
    })();
    const error = await rejection(reading);
    // (v1.2) One attempt allowed here, so nothing continues the answer: the message names the original fault.
    expect(error.message).toContain('the connection to the model was lost');
    expect(error.message).toContain('no deployment could continue it');
    expect(contents.filter((text) => text !== '')).toHaveLength(3);
  });

  it('an upstream that goes silent mid-stream is cut at the idle timeout, with an error the SDK raises', async () => {
    const stream = await openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content: '[sim fault=stall after=2]' }],
      stream: true,
    });
    const abortedBefore = testApp.simulator.stats().aborted;
    const error = await rejection(
      (async () => {
        for await (const chunk of stream) void chunk;
      })(),
    );
    expect(error.message).toContain('the model stopped sending tokens');
    // The silent upstream request is aborted, not left hanging.
    await eventually(() => testApp.simulator.stats().aborted > abortedBefore, 3000).catch(() => {
      throw new Error(`simulator stats after the timeout: ${JSON.stringify(testApp.simulator.stats())}`);
    });
  });

  it('a body that is not JSON is an OpenAI-shaped 415', async () => {
    const response = await rawPost(testApp, 'messages=hi', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(response.status).toBe(415);
    expect(await response.json()).toMatchObject({
      error: { type: 'invalid_request_error', code: 'unsupported_media_type' },
    });
  });

  it('bad JSON and an oversized body are OpenAI-shaped 400 and 413', async () => {
    const badJson = await rawPost(testApp, '{"messages": [');
    expect(badJson.status).toBe(400);
    expect(await badJson.json()).toEqual({
      error: {
        message: expect.any(String),
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_request',
      },
    });
    const huge = await rawPost(testApp, { messages: [{ role: 'user', content: 'x'.repeat(300 * 1024) }] });
    expect(huge.status).toBe(413);
    expect(await huge.json()).toMatchObject({ error: { code: 'payload_too_large' } });
  });

  it('metrics count /v1 as transport="openai"; logs carry ids and counts, never the prompt or a key', async () => {
    await openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content: '[sim tokens=4] secret prompt' }],
    });
    const metrics = await (await fetch(`${testApp.url}/metrics`)).text();
    const lines = metrics.split('\n').filter((line) => line.includes('transport="openai"'));
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^llm_gateway_streams_total\{transport="openai",provider="simulator",outcome="done"\} [1-9]/,
        ),
        expect.stringMatching(/^llm_gateway_cancellations_total\{transport="openai"\} [1-9]/),
        expect.stringMatching(
          /^llm_gateway_reasoning_tokens_total\{transport="openai",provider="simulator"\} [1-9]/,
        ),
      ]),
    );
    const ended = logger.entries.filter(
      (entry) =>
        typeof entry === 'object' && entry !== null && 'upstreamRequestId' in entry && 'tokens' in entry,
    );
    expect(ended).toContainEqual(
      expect.objectContaining({
        transport: 'openai',
        requestId: expect.any(String),
        upstreamRequestId: expect.stringMatching(/^req_/),
        outcome: 'done',
      }),
    );
    const logged = JSON.stringify(logger.entries);
    expect(logged).not.toContain('secret prompt');
    expect(logged).not.toContain(GATEWAY_KEY);
  });
});

describe('/v1 against a scripted upstream: tools, streamed tool calls, vendor fields, the key kept', () => {
  const upstream = new ChunkUpstream();
  let testApp: TestApp;
  const toolChunks = [
    chunkOf({ role: 'assistant', content: null, reasoning_content: 'The user wants the weather.' }),
    chunkOf({
      tool_calls: [
        { index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '' } },
      ],
    }),
    chunkOf({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
    chunkOf({ tool_calls: [{ index: 0, function: { arguments: '"Zürich"}' } }] }, null, {
      provider_specific: { cache: 'hit', nested: [1, null, 'ü'] },
    }),
    chunkOf({}, 'tool_calls'),
    usageChunk({
      prompt_tokens: 40,
      completion_tokens: 12,
      total_tokens: 52,
      completion_tokens_details: { reasoning_tokens: 6 },
    }),
  ];

  beforeAll(async () => {
    upstream.reply('weather?', { kind: 'chunks', chunks: toolChunks });
    upstream.reply('weather, end apart', { kind: 'chunks', chunks: toolChunks, endAfterDoneMs: 20 });
    upstream.reply('weather, not streamed', {
      kind: 'json',
      status: 200,
      body: {
        id: 'chatcmpl-x',
        object: 'chat.completion',
        choices: [
          {
            index: 0,
            finish_reason: 'tool_calls',
            message: {
              role: 'assistant',
              content: null,
              tool_calls: [
                { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: '{}' } },
              ],
            },
          },
        ],
        vendor_extra: true,
      },
    });
    testApp = await startTestApp({
      ...apiKeyAuth,
      OPENAI_BASE_URL: await upstream.start(),
      OPENAI_API_KEY: UPSTREAM_KEY,
      OPENAI_MODEL: 'scripted-model',
    });
  });
  afterAll(async () => {
    await testApp.close();
    await upstream.close();
  });

  const tools = [
    {
      type: 'function' as const,
      function: {
        name: 'get_weather',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    },
  ];

  it('passes the body as it is, with the default model and the upstream key; relays the tool-call deltas', async () => {
    const body = {
      messages: [{ role: 'user', content: 'weather?' }],
      tools,
      tool_choice: 'auto',
      response_format: { type: 'text' },
      stream: true,
      stream_options: { include_usage: true },
      top_k: 5,
      vendor: { anything: ['goes', 1] },
    };
    const response = await rawPost(testApp, body);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(response.headers.get('x-upstream-request-id')).toMatch(/^req_chunk_upstream_/);
    const text = await response.text();
    expect(dataOf(text)).toEqual([...toolChunks.map((chunk) => JSON.stringify(chunk)), '[DONE]']);

    const received = upstream.received.at(-1);
    // `user` is the gateway's pseudonym of the principal, never the client's (docs/auth.md, "/v1 request policy").
    expect(received?.body).toEqual({ ...body, model: 'scripted-model', user: expect.stringMatching(/^gw-/) });
    expect(received?.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(text).not.toContain(UPSTREAM_KEY);
    expect(JSON.stringify([...response.headers])).not.toContain(UPSTREAM_KEY);
  });

  it('after [DONE] the rest of the upstream body is read out, not cut, so its connection is kept', async () => {
    const before = upstream.cutAnswers;
    for (let index = 0; index < 5; index += 1) {
      const stream = await clientOf(testApp).chat.completions.create({
        model: 'scripted-model',
        messages: [{ role: 'user', content: 'weather, end apart' }],
        tools,
        stream: true,
      });
      let chunks = 0;
      for await (const _ of stream) chunks += 1;
      expect(chunks).toBe(toolChunks.length);
    }
    // A body cut after [DONE] closes the connection under the answer's end, and the next stream opens a new one.
    await upstream.settled();
    expect(upstream.cutAnswers - before).toBe(0);
  });

  it('the SDK assembles the streamed tool call', async () => {
    const runner = clientOf(testApp).chat.completions.stream({
      model: 'scripted-model',
      messages: [{ role: 'user', content: 'weather?' }],
      tools,
    });
    const completion = await runner.finalChatCompletion();
    expect(completion.choices[0].finish_reason).toBe('tool_calls');
    expect(completion.choices[0].message.tool_calls).toEqual([
      { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Zürich"}' } },
    ]);
  });

  it('a non-streamed tool call comes back as the upstream JSON, vendor fields included', async () => {
    const completion = await clientOf(testApp).chat.completions.create({
      model: 'scripted-model',
      messages: [{ role: 'user', content: 'weather, not streamed' }],
      tools,
    });
    expect(completion).toMatchObject({ vendor_extra: true });
    expect(completion.choices[0].message.tool_calls?.[0]).toMatchObject({ id: 'call_2' });
  });
});

describe('/v1 limits: one principal’s streams count across the three surfaces', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await startTestApp({
      ...apiKeyAuth,
      RATE_LIMIT_CONCURRENT_STREAMS: '1',
      SIMULATOR_PROFILE: 'fast',
    });
  });
  afterAll(() => testApp.close());

  it('an open /v1 stream takes the one place: SSE is refused, then /v1 again while an SSE stream runs', async () => {
    const openai = clientOf(testApp);
    const stream = await openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content: '[sim tokens=400 tps=50] hold the place' }],
      stream: true,
    });
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    const refused = await postStream(
      testApp.url,
      { messages: [{ role: 'user', content: 'hi' }] },
      { headers: { authorization: `Bearer ${GATEWAY_KEY}` } },
    );
    expect({ status: refused.status, body: refused.raw }).toMatchObject({ status: 429 });
    stream.controller.abort();
    await iterator.next().catch(() => undefined);
    // The relay's place is freed when it ends, which follows the client's abort.
    const registry = testApp.app.get(StreamRegistry);
    await eventually(() => registry.running === 0);

    const sse = new AbortController();
    let firstToken!: () => void;
    const streaming = new Promise<void>((resolve) => (firstToken = resolve));
    const running = postStream(
      testApp.url,
      { messages: [{ role: 'user', content: '[sim tokens=400 tps=50] SSE holds the place' }] },
      {
        headers: { authorization: `Bearer ${GATEWAY_KEY}` },
        signal: sse.signal,
        onEvent: (event) => event.type === 'token' && firstToken(),
      },
    ).catch(() => undefined);
    await streaming;
    const error = await rejection(
      openai.chat.completions.create({
        model: 'simulator',
        messages: [{ role: 'user', content: 'refused while SSE runs' }],
      }),
    );
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(error.headers?.get('retry-after')).toBe('1');
    expect(error.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limited' });
    sse.abort();
    await running;
  });
});

describe('unknown paths under /api and /v1 answer 404 JSON, even with the web client served', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    const webRoot = mkdtempSync(join(tmpdir(), 'web-root-'));
    writeFileSync(join(webRoot, 'index.html'), '<!doctype html><title>client</title>');
    testApp = await startTestApp({ WEB_ROOT: webRoot });
  });
  afterAll(() => testApp.close());

  it.each([
    [
      'GET',
      '/v1/nope',
      'application/json',
      { error: expect.objectContaining({ code: 'not_found', type: 'not_found_error' }) },
    ],
    [
      'POST',
      '/v1/completions',
      'application/json',
      { error: expect.objectContaining({ code: 'not_found' }) },
    ],
    ['GET', '/v1', 'application/json', { error: expect.objectContaining({ code: 'not_found' }) }],
    [
      'GET',
      '/api/nope',
      'application/problem+json',
      expect.objectContaining({ code: 'not_found', status: 404 }),
    ],
    ['GET', '/api', 'application/problem+json', expect.objectContaining({ code: 'not_found' })],
  ])('%s %s', async (method, path, type, body) => {
    const response = await fetch(`${testApp.url}${path}`, { method });
    const text = await response.text();
    expect({ status: response.status, type: response.headers.get('content-type'), text }).toMatchObject({
      status: 404,
      type: expect.stringContaining(type),
    });
    expect(JSON.parse(text)).toEqual(body);
  });

  it('the client’s own routes still get the page', async () => {
    const response = await fetch(`${testApp.url}/some/client/route`);
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('<title>client</title>');
  });
});

describe('/v1 at shutdown', () => {
  it('a relay still running when the shutdown grace ends gets an error the SDK raises, not a cut', async () => {
    const testApp = await startTestApp({ SHUTDOWN_GRACE_MS: '200', SIMULATOR_PROFILE: 'fast' });
    const openai = clientOf(testApp);
    const stream = await openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content: '[sim tokens=2000 tps=20] outlive the grace' }],
      stream: true,
    });
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    const closing = testApp.close();
    const error = await rejection(
      (async () => {
        for (;;) {
          if ((await iterator.next()).done) return;
        }
      })(),
    );
    await closing;
    expect(error.message).toContain('The server is restarting; retry the request.');
  });
});

/** Knows every key, lets only one in: the other is a known principal without access (403). */
@Injectable()
@AuthStrategyName('gatekeeper')
class GatekeeperStrategy implements AuthStrategy {
  async authenticate(credentials: Credentials): Promise<Principal> {
    if (credentials.bearer === 'allowed-key') {
      return { id: 'allowed', strategy: 'gatekeeper' };
    }
    throw new AuthError('forbidden', 'This key may not use the model.');
  }
}

describe('/v1 with a strategy that forbids', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await startTestApp({ AUTH_MODE: 'gatekeeper' }, { authStrategies: [GatekeeperStrategy] });
  });
  afterAll(() => testApp.close());

  it('a forbidden principal gets the SDK’s PermissionDeniedError; the allowed one streams', async () => {
    const request = { model: 'simulator', messages: [{ role: 'user' as const, content: '[sim tokens=3]' }] };
    const forbidden = await rejection(clientOf(testApp, 'other-key').chat.completions.create(request));
    expect(forbidden).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(forbidden.error).toMatchObject({ type: 'permission_error', code: 'forbidden' });
    const completion = await clientOf(testApp, 'allowed-key').chat.completions.create(request);
    expect(completion.choices[0].finish_reason).toBe('stop');
  });
});

describe('/v1 first-token timeout', () => {
  it('a model that never answers is a 504 once UPSTREAM_FIRST_TOKEN_TIMEOUT_MS has passed, its request aborted', async () => {
    const testApp = await startTestApp({ UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: '300' });
    try {
      const abortedBefore = testApp.simulator.stats().aborted;
      const error = await rejection(
        clientOf(testApp).chat.completions.create({
          model: 'simulator',
          messages: [{ role: 'user', content: '[sim fault=stall]' }],
        }),
      );
      expect(error).toBeInstanceOf(OpenAI.InternalServerError);
      expect({ status: error.status, error: error.error }).toMatchObject({
        status: 504,
        error: { type: 'upstream_error', code: 'upstream_timeout' },
      });
      await eventually(() => testApp.simulator.stats().aborted > abortedBefore, 3000).catch(() => {
        throw new Error(`simulator stats after the timeout: ${JSON.stringify(testApp.simulator.stats())}`);
      });
    } finally {
      await testApp.close();
    }
  });
});
