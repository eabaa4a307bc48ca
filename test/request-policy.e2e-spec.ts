import { AuthError, type AuthStrategy, AuthStrategyName, type Credentials, type Principal } from '@app/auth';
import { type CompletionRequest, type StartAck } from '@app/contracts';
import { REASONING_MODEL_NAME } from '@app/simulator';
import { Injectable, type LoggerService } from '@nestjs/common';
import OpenAI from 'openai';
import { rejection } from './support/openai-errors';
import { ChunkUpstream, COMPLETION_WITH_USAGE } from './support/chunk-upstream';
import { type CompletionClient, connect } from './support/socket-client';
import { postStream } from './support/sse-client';
import { startTestApp, type TestApp } from './support/test-app';

/**
 * Issue 23, items 2, 6, 7 and 11: one request policy on SSE, Socket.IO and `/v1` (caps, the model allow-lists,
 * the identity and cost fields), JSON nesting and charsets where bodies are read, and the upstream's request id.
 */

/** `wide` may use every model the deployment allows; `narrow` only the simulator's default one (and the scripted one). */
@Injectable()
@AuthStrategyName('listed')
class ListedStrategy implements AuthStrategy {
  async authenticate(credentials: Credentials): Promise<Principal> {
    const key = credentials.bearer ?? (credentials.headers.authorization as string | undefined);
    if (key === 'wide') return { id: 'wide', strategy: 'listed' };
    if (key === 'narrow')
      return { id: 'narrow', strategy: 'listed', models: ['simulator', 'scripted-model'] };
    throw new AuthError('unauthorized', 'Unknown key.');
  }
}

class CapturingLogger implements LoggerService {
  readonly entries: { level: string; message: unknown }[] = [];
  log(message: unknown): void {
    this.entries.push({ level: 'log', message });
  }
  warn(message: unknown): void {
    this.entries.push({ level: 'warn', message });
  }
  error(message: unknown): void {
    this.entries.push({ level: 'error', message });
  }
}

const openaiFor = (testApp: TestApp, apiKey: string) =>
  new OpenAI({ baseURL: `${testApp.url}/v1`, apiKey, maxRetries: 0 });

/**
 * `completion:start` with `payload` (JSON text) over a bare WebSocket speaking Engine.IO 4 / Socket.IO 5 frames:
 * resolves with the ack's arguments (JSON text).
 */
function rawSocketIoStart(testApp: TestApp, token: string, payload: string): Promise<string> {
  const socket = new WebSocket(`${testApp.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
  return new Promise((resolve, reject) => {
    socket.addEventListener('error', () => reject(new Error('the WebSocket failed')));
    socket.addEventListener('message', (message: { data: unknown }) => {
      const frame = String(message.data);
      if (frame.startsWith('0')) {
        socket.send(`40/completions,${JSON.stringify({ token })}`);
      } else if (frame.startsWith('40/completions,')) {
        socket.send(`42/completions,1["completion:start",${payload}]`);
      } else if (frame.startsWith('43/completions,1')) {
        socket.close();
        resolve(frame.slice('43/completions,1'.length));
      } else if (frame === '2') {
        socket.send('3');
      } else if (!frame.startsWith('3')) {
        socket.close();
        reject(new Error(`unexpected frame: ${frame.slice(0, 200)}`));
      }
    });
  });
}

const startOn = (socket: CompletionClient, payload: CompletionRequest) =>
  new Promise<StartAck>((resolve) => socket.emit('completion:start', payload, resolve));

const user = (content: string) => [{ role: 'user' as const, content }];

describe('one request policy on SSE, Socket.IO and /v1 (simulator, ALLOWED_MODELS, per-principal lists)', () => {
  let testApp: TestApp;
  const logger = new CapturingLogger();
  const sockets: CompletionClient[] = [];

  beforeAll(async () => {
    testApp = await startTestApp(
      { AUTH_MODE: 'listed', ALLOWED_MODELS: `simulator,${REASONING_MODEL_NAME}` },
      { authStrategies: [ListedStrategy], logger },
    );
  });
  afterAll(async () => {
    sockets.forEach((socket) => socket.close());
    await testApp.close();
  });

  const sse = (key: string, body: Parameters<typeof postStream>[1], headers: Record<string, string> = {}) =>
    postStream(testApp.url, body, { headers: { authorization: `Bearer ${key}`, ...headers } });

  it('a token cap over REQUEST_LIMITS.maxTokensCap is a 400 on /v1 (both fields), as maxTokens is on SSE', async () => {
    const openai = openaiFor(testApp, 'wide');
    for (const field of ['max_tokens', 'max_completion_tokens']) {
      const error = await rejection(
        openai.chat.completions.create({ model: 'simulator', messages: user('hi'), [field]: 20_000 }),
      );
      expect(error).toBeInstanceOf(OpenAI.BadRequestError);
      expect(error.error).toMatchObject({
        type: 'invalid_request_error',
        code: 'invalid_request',
        param: field,
      });
    }
    const refused = await sse('wide', { messages: user('hi'), maxTokens: 20_000 });
    expect({ status: refused.status, body: refused.raw }).toMatchObject({ status: 400 });
    const within = await openai.chat.completions.create({
      model: 'simulator',
      messages: user('[sim tokens=3] within the cap'),
      max_completion_tokens: 4096,
    });
    expect(within.choices[0].finish_reason).toBe('stop');
  });

  it('n and top_logprobs are capped on /v1', async () => {
    const openai = openaiFor(testApp, 'wide');
    const many = await rejection(
      openai.chat.completions.create({ model: 'simulator', messages: user('hi'), n: 128 }),
    );
    expect(many).toBeInstanceOf(OpenAI.BadRequestError);
    expect(many.error).toMatchObject({ param: 'n' });
    const logprobs = await rejection(
      openai.chat.completions.create({
        model: 'simulator',
        messages: user('hi'),
        logprobs: true,
        top_logprobs: 50,
      }),
    );
    expect(logprobs.error).toMatchObject({ param: 'top_logprobs' });
  });

  it('a model outside ALLOWED_MODELS is refused with 403 on all three surfaces', async () => {
    const viaSse = await sse('wide', { messages: user('hi'), model: 'gpt-4o' });
    expect({ status: viaSse.status, body: viaSse.raw }).toMatchObject({ status: 403 });
    expect(JSON.parse(viaSse.raw)).toMatchObject({ code: 'forbidden' });

    const socket = await connect(testApp.url, 'wide');
    sockets.push(socket);
    expect(await startOn(socket, { messages: user('hi'), model: 'gpt-4o' })).toMatchObject({
      ok: false,
      error: { code: 'forbidden' },
    });

    const viaV1 = await rejection(
      openaiFor(testApp, 'wide').chat.completions.create({ model: 'gpt-4o', messages: user('hi') }),
    );
    expect(viaV1).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(viaV1.error).toMatchObject({ type: 'permission_error', code: 'forbidden', param: 'model' });
  });

  it('a principal’s own list narrows it further on all three surfaces, and its /v1/models', async () => {
    const viaSse = await sse('narrow', { messages: user('hi'), model: REASONING_MODEL_NAME });
    expect({ status: viaSse.status, body: viaSse.raw }).toMatchObject({ status: 403 });

    const socket = await connect(testApp.url, 'narrow');
    sockets.push(socket);
    expect(await startOn(socket, { messages: user('hi'), model: REASONING_MODEL_NAME })).toMatchObject({
      ok: false,
      error: { code: 'forbidden' },
    });
    expect(await startOn(socket, { messages: user('[sim tokens=2] default model') })).toMatchObject({
      ok: true,
    });

    const narrow = openaiFor(testApp, 'narrow');
    const viaV1 = await rejection(
      narrow.chat.completions.create({ model: REASONING_MODEL_NAME, messages: user('hi') }),
    );
    expect(viaV1).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((await narrow.models.list()).data.map((model) => model.id)).toEqual(['simulator']);
    // The wide principal is bound by ALLOWED_MODELS only: the reasoning model streams for it.
    const wide = await openaiFor(testApp, 'wide').chat.completions.create({
      model: REASONING_MODEL_NAME,
      messages: user('[sim think=2 tokens=2] allowed'),
    });
    expect(wide.choices[0].finish_reason).toBe('stop');
  });

  it('100,000 nested arrays are a 400 on every surface, before anything recurses over them (no error logged)', async () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const v1 = await fetch(`${testApp.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer wide', 'content-type': 'application/json' },
      body: `{"model":"simulator","messages":[{"role":"user","content":"hi"}],"vendor":${deep}}`,
    });
    expect(v1.status).toBe(400);
    expect(await v1.json()).toMatchObject({
      error: {
        type: 'invalid_request_error',
        code: 'invalid_request',
        message: expect.stringContaining('deeper than 64'),
      },
    });

    const viaSse = await sse('wide', `{"messages":[{"role":"user","content":"hi"}],"extra":${deep}}`);
    expect({ status: viaSse.status, body: viaSse.raw }).toMatchObject({ status: 400 });
    expect(viaSse.raw).toContain('deeper than 64');

    // Written as Engine.IO/Socket.IO frames by hand: socket.io-client (like any JSON.stringify) would itself
    // overflow its stack on such a payload before sending it.
    const ack = await rawSocketIoStart(
      testApp,
      'wide',
      `{"messages":[{"role":"user","content":"hi"}],"extra":${deep}}`,
    );
    expect(JSON.parse(ack)).toMatchObject([
      { ok: false, error: { code: 'invalid_request', message: expect.stringContaining('deeper than 64') } },
    ]);
    expect(logger.entries.filter((entry) => entry.level === 'error')).toEqual([]);
  });

  it('a body in UTF-7 (or with a second charset) is a 415 on /v1 and SSE; UTF-16 is read', async () => {
    const body = JSON.stringify({ model: 'simulator', messages: user('[sim tokens=2] +AGg-i') });
    for (const type of [
      'application/json; charset=utf-7',
      'application/json; charset=utf-8; charset=utf-7',
    ]) {
      const v1 = await fetch(`${testApp.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: 'Bearer wide', 'content-type': type },
        body,
      });
      expect({ type, status: v1.status }).toEqual({ type, status: 415 });
      expect(await v1.json()).toMatchObject({ error: { code: 'unsupported_media_type' } });
      const viaSse = await sse('wide', body, { 'content-type': type });
      expect({ type, status: viaSse.status }).toEqual({ type, status: 415 });
    }
    const utf16 = await fetch(`${testApp.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer wide', 'content-type': 'application/json; charset=utf-16le' },
      body: Buffer.from(body, 'utf16le'),
    });
    expect(utf16.status).toBe(200);
  });
});

describe('/v1 identity and cost fields, and the upstream’s request id (scripted upstream)', () => {
  const upstream = new ChunkUpstream();
  let testApp: TestApp;
  const logger = new CapturingLogger();
  const answer = COMPLETION_WITH_USAGE;

  beforeAll(async () => {
    upstream.reply('fields', { kind: 'json', status: 200, body: answer });
    upstream.reply('hostile id', {
      kind: 'json',
      status: 200,
      body: answer,
      headers: { 'x-request-id': `<script>alert(1)</script>${'x'.repeat(4000)}` },
    });
    testApp = await startTestApp(
      {
        AUTH_MODE: 'listed',
        OPENAI_BASE_URL: await upstream.start(),
        OPENAI_API_KEY: 'sk-up',
        OPENAI_MODEL: 'scripted-model',
      },
      { authStrategies: [ListedStrategy], logger },
    );
  });
  afterAll(async () => {
    await testApp.close();
    await upstream.close();
  });

  it('`user` and `safety_identifier` are the principal’s pseudonym, whatever the client sent', async () => {
    const openai = openaiFor(testApp, 'wide');
    await openai.chat.completions.create({
      model: 'scripted-model',
      messages: user('fields'),
      user: 'someone-else',
    });
    const first = upstream.received.at(-1)?.body;
    await openai.chat.completions.create({
      model: 'scripted-model',
      messages: user('fields'),
      safety_identifier: 'victim',
    } as never);
    const second = upstream.received.at(-1)?.body;
    await openaiFor(testApp, 'narrow').chat.completions.create({
      model: 'scripted-model',
      messages: user('fields'),
    });
    const other = upstream.received.at(-1)?.body;
    expect(first?.user).toMatch(/^gw-[\w-]{32}$/);
    expect(second).toMatchObject({ user: first?.user, safety_identifier: first?.user });
    expect(other?.user).toMatch(/^gw-/);
    expect(other?.user).not.toBe(first?.user);
  });

  it.each([
    ['store', true],
    ['metadata', { team: 'x' }],
    ['service_tier', 'priority'],
  ])('`%s: %j` is refused with a 400 naming it', async (field, value) => {
    const before = upstream.received.length;
    const error = await rejection(
      openaiFor(testApp, 'wide').chat.completions.create({
        model: 'scripted-model',
        messages: user('fields'),
        [field]: value,
      } as never),
    );
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error.error).toMatchObject({ param: field });
    expect(upstream.received.length).toBe(before);
  });

  it('`store: false` and `service_tier: auto` pass', async () => {
    const completion = await openaiFor(testApp, 'wide').chat.completions.create({
      model: 'scripted-model',
      messages: user('fields'),
      store: false,
      service_tier: 'auto',
    });
    expect(completion.id).toBe('chatcmpl-usage');
  });

  it('a plausible upstream request id reaches the client and the log; a hostile one neither', async () => {
    const fine = await openaiFor(testApp, 'wide')
      .chat.completions.create({ model: 'scripted-model', messages: user('fields') })
      .asResponse();
    expect(fine.headers.get('x-upstream-request-id')).toMatch(/^req_chunk_upstream_\d+$/);
    const hostile = await openaiFor(testApp, 'wide')
      .chat.completions.create({ model: 'scripted-model', messages: user('hostile id') })
      .asResponse();
    expect(hostile.status).toBe(200);
    expect(hostile.headers.get('x-upstream-request-id')).toBeNull();
    const logged = JSON.stringify(logger.entries);
    expect(logged).not.toContain('<script>');
    expect(logged).not.toContain('x'.repeat(200));
  });
});
