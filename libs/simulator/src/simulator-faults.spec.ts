import OpenAI from 'openai';
import { SimulatorServer } from './simulator.server';

async function until(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** fetch fails with a TypeError from Node's own realm, which `toBeInstanceOf(Error)` inside Jest's VM misses. */
function expectNetworkError(error: unknown): void {
  expect(error).toMatchObject({ name: 'TypeError', message: expect.any(String) });
}

describe('SimulatorServer faults and cancellation', () => {
  let simulator: SimulatorServer;
  let baseUrl: string;
  let openai: OpenAI;

  beforeEach(async () => {
    simulator = new SimulatorServer({ profile: 'fast' });
    baseUrl = await simulator.listen();
    // Retries off: each test asserts what one request sees.
    openai = new OpenAI({ baseURL: baseUrl, apiKey: 'x', maxRetries: 0 });
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await simulator.close();
  });

  function post(
    content: string,
    extra: Record<string, unknown> = {},
    init: RequestInit = {},
  ): Promise<Response> {
    return fetch(`${baseUrl}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'simulator',
        messages: [{ role: 'user', content }],
        stream: true,
        ...extra,
      }),
      ...init,
    });
  }

  function sdkStream(content: string): Promise<AsyncIterable<OpenAI.ChatCompletionChunk>> {
    return openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content }],
      stream: true,
    });
  }

  it.each([
    ['rate_limit', 429, 'requests', null, 'rate_limit_exceeded', OpenAI.RateLimitError],
    ['server_error', 500, 'server_error', null, null, OpenAI.InternalServerError],
    ['unavailable', 503, 'server_error', null, null, OpenAI.InternalServerError],
    ['unauthorized', 401, 'invalid_request_error', null, 'invalid_api_key', OpenAI.AuthenticationError],
    ['bad_request', 400, 'invalid_request_error', 'messages', null, OpenAI.BadRequestError],
  ])(
    'fault=%s answers %i with OpenAI error JSON, as the SDK sees it',
    async (fault, status, type, param, code, errorClass) => {
      const response = await post(`[sim fault=${fault}]`);
      expect(response.status).toBe(status);
      expect(response.headers.get('x-request-id')).toMatch(/^req_/);
      expect(await response.json()).toEqual({
        error: { message: expect.any(String), type, param, code },
      });

      const error = await sdkStream(`[sim fault=${fault}]`).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(errorClass);
      expect(error).toMatchObject({ status, type, code });
      expect((error as InstanceType<typeof OpenAI.APIError>).requestID).toMatch(/^req_/);
      expect(simulator.stats().faults).toBe(2);
    },
  );

  it('fault=rate_limit sends retry-after and retry-after-ms, from retry_after_ms', async () => {
    const byDefault = await post('[sim fault=rate_limit]');
    expect(byDefault.headers.get('retry-after')).toBe('1');
    expect(byDefault.headers.get('retry-after-ms')).toBe('1000');
    const custom = await post('[sim fault=rate_limit retry_after_ms=2500]');
    expect(custom.headers.get('retry-after')).toBe('3');
    expect(custom.headers.get('retry-after-ms')).toBe('2500');
  });

  it('fault=drop cuts the connection after N tokens', async () => {
    const tokens: string[] = [];
    const error = await (async () => {
      for await (const chunk of await sdkStream('[sim fault=drop after=4 tokens=20]')) {
        const content = chunk.choices[0]?.delta.content;
        if (content) tokens.push(content);
      }
    })().catch((caught: unknown) => caught);
    expectNetworkError(error);
    expect(tokens).toHaveLength(4);
    await until(() => simulator.stats().active === 0);
    expect(simulator.stats()).toMatchObject({ faults: 1, completed: 0, aborted: 0 });
  });

  it('fault=malformed sends a broken data line, then ends', async () => {
    const body = await (await post('[sim fault=malformed after=2 tokens=20]')).text();
    const frames = body.split('\n\n').filter((frame) => frame !== '');
    expect(frames).toHaveLength(1 + 2 + 1);
    expect(frames.at(-1)).toBe('data: {not json');

    // The SDK logs the line it could not parse before throwing; the throw is what matters here.
    jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const error = await (async () => {
      for await (const _chunk of await sdkStream('[sim fault=malformed]'));
    })().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SyntaxError);
  });

  it('fault=content_filter ends the stream with finish_reason content_filter', async () => {
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of await sdkStream('[sim fault=content_filter after=2 tokens=20]'))
      chunks.push(chunk);
    expect(chunks.filter((chunk) => chunk.choices[0]?.delta.content)).toHaveLength(2);
    expect(chunks.at(-1)?.choices[0].finish_reason).toBe('content_filter');
    expect(simulator.stats()).toMatchObject({ faults: 1, completed: 1 });
  });

  it('fault=stall goes quiet until the client aborts, then counts the abort', async () => {
    const controller = new AbortController();
    const response = await post('[sim fault=stall after=2 tokens=50]', {}, { signal: controller.signal });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    let received = '';
    while ((received.match(/"content":"[^"]/g) ?? []).length < 2) {
      received += new TextDecoder().decode((await reader.read()).value);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(simulator.stats()).toMatchObject({ active: 1, aborted: 0 });

    controller.abort();
    await until(() => simulator.stats().active === 0);
    expect(simulator.stats()).toMatchObject({ active: 0, aborted: 1, completed: 0, faults: 1 });
  });

  it('stops generating the moment the client goes away mid-stream', async () => {
    const controller = new AbortController();
    const stream = await openai.chat.completions.create(
      { model: 'simulator', messages: [{ role: 'user', content: '[sim tokens=500 tps=200]' }], stream: true },
      { signal: controller.signal },
    );
    let seen = 0;
    // The SDK's stream simply ends when its signal aborts.
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content && ++seen === 5) controller.abort();
    }
    expect(seen).toBe(5);
    await until(() => simulator.stats().aborted === 1);
    expect(simulator.stats()).toMatchObject({ active: 0, aborted: 1, completed: 0 });
  });

  it('counts an abort of a non-streaming request too', async () => {
    const controller = new AbortController();
    const request = post('[sim tokens=100 ttft=5000]', { stream: false }, { signal: controller.signal });
    await until(() => simulator.stats().active === 1);
    controller.abort();
    await expect(request).rejects.toThrow();
    await until(() => simulator.stats().aborted === 1);
    expect(simulator.stats().active).toBe(0);
  });

  it('close() ends stalled streams so nothing hangs', async () => {
    const response = await post('[sim fault=stall after=0]');
    expect(response.status).toBe(200);
    const body = response.text().catch((caught: unknown) => caught);
    await until(() => simulator.stats().active === 1);
    await simulator.close();
    expectNetworkError(await body);
    expect(simulator.stats()).toMatchObject({ active: 0, aborted: 1 });
  });
});

describe('SimulatorServer apiKey', () => {
  let simulator: SimulatorServer;
  let baseUrl: string;

  beforeAll(async () => {
    simulator = new SimulatorServer({ profile: 'instant', apiKey: 'sk-sim-secret', modelName: 'gpt-sim' });
    baseUrl = await simulator.listen();
  });
  afterAll(() => simulator.close());

  it('refuses a missing or wrong key with 401 invalid_api_key', async () => {
    const missing = await fetch(`${baseUrl}/models`);
    expect(missing.status).toBe(401);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');

    const wrong = new OpenAI({ baseURL: baseUrl, apiKey: 'sk-wrong', maxRetries: 0 });
    const error = await wrong.chat.completions
      .create({ model: 'gpt-sim', messages: [{ role: 'user', content: 'hi' }] })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('serves a client with the right key, under the configured model name', async () => {
    const right = new OpenAI({ baseURL: baseUrl, apiKey: 'sk-sim-secret', maxRetries: 0 });
    const models = await right.models.list();
    expect(models.data[0].id).toBe('gpt-sim');
    const completion = await right.chat.completions.create({
      model: 'gpt-sim',
      messages: [{ role: 'user', content: '[sim tokens=3]' }],
    });
    expect(completion.usage?.completion_tokens).toBe(3);
  });
});
