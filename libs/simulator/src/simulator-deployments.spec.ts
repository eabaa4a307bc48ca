import OpenAI from 'openai';
import { faultProfileSchema, type FaultProfile } from './fault-profile';
import { SimulatorServer } from './simulator.server';

async function until(condition: () => boolean, describe: () => string, timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`condition not met in time; saw ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const DEPLOYMENTS = {
  healthy: { model: 'gpt-fallback' },
  limited: { refuse: { status: 429, retryAfterMs: 1500, firstRequests: 2 } },
  limitedBare: { refuse: { status: 429 } },
  limitedSeconds: { refuse: { status: 429, retryAfterMs: 2000, retryAfterHeaders: 'retry-after' } },
  broken: { refuse: { status: 500, firstRequests: 1 } },
  down: { refuse: { status: 503, firstMs: 300 } },
  tooLong: { refuse: { status: 400, code: 'context_length_exceeded' } },
  filtered: { refuse: { status: 400, code: 'content_filter' } },
  noPrefill: { rejectPrefill: true },
  reset: { beforeHeaders: { action: 'reset', firstRequests: 1 } },
  silent: { beforeHeaders: { action: 'silence' } },
  late: { firstToken: { delayMs: 300 } },
  tail: { firstToken: { delayMs: 1000, probability: 0.25 } },
  cut: { midStream: { action: 'cut', afterTokens: 4, firstRequests: 1 } },
  cutBytes: { midStream: { action: 'cut', afterBytes: 30 } },
  stall: { midStream: { action: 'stall', afterTokens: 2 } },
  malformed: { midStream: { action: 'malformed', afterTokens: 3 } },
  unfinished: { midStream: { action: 'end_without_done', afterTokens: 5 } },
  noUsage: { usage: false, model: 'quiet' },
  west: {},
} satisfies Record<string, FaultProfile>;
type Name = keyof typeof DEPLOYMENTS;

function expectConnectionError(error: unknown): void {
  expect(error).toBeInstanceOf(OpenAI.APIConnectionError);
}

describe('SimulatorServer deployments', () => {
  let simulator: SimulatorServer;

  beforeAll(async () => {
    simulator = new SimulatorServer({ profile: 'instant', deployments: DEPLOYMENTS });
    await simulator.listen();
  });
  afterAll(() => simulator.close());

  const client = (name: Name, options: Partial<ConstructorParameters<typeof OpenAI>[0]> = {}) =>
    new OpenAI({ baseURL: simulator.urlFor(name), apiKey: 'x', maxRetries: 0, ...options });
  const messages = (content = 'Hello [sim tokens=20]'): OpenAI.ChatCompletionMessageParam[] => [
    { role: 'user', content },
  ];

  async function streamed(name: Name, content?: string, extra: Record<string, unknown> = {}) {
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    const stream = await client(name).chat.completions.create({
      model: 'whatever-the-router-asks',
      messages: messages(content),
      stream: true,
      stream_options: { include_usage: true },
      ...extra,
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    for await (const chunk of stream) chunks.push(chunk);
    return { chunks, text: chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('') };
  }

  function post(name: Name, content: string, signal?: AbortSignal): Promise<Response> {
    return fetch(`${simulator.urlFor(name)}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: messages(content), stream: true }),
      signal,
    });
  }

  const statuses = (name: Name) => simulator.deploymentStats(name).requests.map((request) => request.status);

  it('serves each deployment at /d/<name>/v1, reporting its own model and accepting any', async () => {
    expect(simulator.urlFor('healthy')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/d\/healthy\/v1$/);
    const { chunks, text } = await streamed('healthy');
    expect(new Set(chunks.map((chunk) => chunk.model))).toEqual(new Set(['gpt-fallback']));
    expect(chunks.at(-1)?.usage).toMatchObject({ completion_tokens: expect.any(Number) });
    expect(text).toBe((await streamed('west')).text);
    const models = await client('healthy').models.list();
    expect(models.data.map((model) => model.id)).toEqual(['gpt-fallback']);
    expect(() => simulator.urlFor('nowhere')).toThrow(/no deployment named "nowhere"/);
    const unknown = await fetch(
      simulator.urlFor('healthy').replace('/d/healthy/', '/d/nowhere/') + '/models',
    );
    expect(unknown.status).toBe(404);
  });

  it('refuses with 429 for the first N requests, with Retry-After, then answers', async () => {
    const refusals = await Promise.all(
      [post('limited', 'a'), post('limited', 'b')].map((request) => request),
    );
    for (const refused of refusals) {
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('2');
      expect(refused.headers.get('retry-after-ms')).toBe('1500');
      expect(await refused.json()).toMatchObject({
        error: { code: 'rate_limit_exceeded', type: 'requests' },
      });
    }
    expect((await streamed('limited')).text).not.toBe('');
    expect(statuses('limited')).toEqual([429, 429, 200]);
    const { requests } = simulator.deploymentStats('limited');
    expect(requests[0].arrivedAt).toBeLessThanOrEqual(requests[2].arrivedAt);
    expect(Math.abs(requests[0].arrivedAt - Date.now())).toBeLessThan(5000);
  });

  it('a 429 carries only the Retry-After headers it is given', async () => {
    const bare = await post('limitedBare', 'x');
    expect([bare.status, bare.headers.get('retry-after'), bare.headers.get('retry-after-ms')]).toEqual([
      429,
      null,
      null,
    ]);
    const seconds = await post('limitedSeconds', 'x');
    expect([seconds.headers.get('retry-after'), seconds.headers.get('retry-after-ms')]).toEqual(['2', null]);
  });

  it('answers 500 once, then recovers', async () => {
    const error = await streamed('broken').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.InternalServerError);
    await streamed('broken');
    expect(statuses('broken')).toEqual([500, 200]);
  });

  it('is down (503) for the first X ms after its first request, then healthy', async () => {
    const seen: number[] = [];
    for (;;) {
      const response = await post('down', 'up yet?');
      seen.push(response.status);
      await response.text();
      if (response.status === 200) break;
      if (seen.length > 2000) throw new Error(`never came back: ${seen.join(',')}`);
    }
    const { requests } = simulator.deploymentStats('down');
    expect(seen[0]).toBe(503);
    expect(requests.at(-1)!.arrivedAt - requests[0].arrivedAt).toBeGreaterThanOrEqual(300);
    expect(requests.at(-2)!.arrivedAt - requests[0].arrivedAt).toBeLessThan(300);
  });

  it('refuses context_length_exceeded in OpenAI shape', async () => {
    const error = await streamed('tooLong').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({
      code: 'context_length_exceeded',
      param: 'messages',
      type: 'invalid_request_error',
    });
  });

  it("refuses content_filter in Azure's shape", async () => {
    const response = await post('filtered', 'x');
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({
      error: {
        code: 'content_filter',
        type: null,
        param: 'prompt',
        innererror: { code: 'ResponsibleAIPolicyViolation' },
      },
    });
  });

  it('rejectPrefill: refuses either continuation form with 400, answers an ordinary request', async () => {
    const vllm = await streamed('noPrefill', undefined, {
      messages: [...messages(), { role: 'assistant', content: 'So' }],
      continue_final_message: true,
      add_generation_prompt: false,
    }).catch((caught: unknown) => caught);
    expect(vllm).toMatchObject({
      status: 400,
      code: 'unsupported_parameter',
      param: 'continue_final_message',
    });
    const deepseek = await streamed('noPrefill', undefined, {
      messages: [...messages(), { role: 'assistant', content: 'So', prefix: true }],
    }).catch((caught: unknown) => caught);
    expect(deepseek).toMatchObject({
      status: 400,
      code: 'unsupported_parameter',
      param: 'messages.[1].prefix',
    });
    await streamed('noPrefill');
    expect(
      simulator
        .deploymentStats('noPrefill')
        .requests.map(({ continuation, status }) => [continuation, status]),
    ).toEqual([
      ['continue_final_message', 400],
      ['prefix', 400],
      [null, 200],
    ]);
  });

  it('resets the connection before any header', async () => {
    expectConnectionError(await streamed('reset').catch((caught: unknown) => caught));
    await streamed('reset');
    expect(
      simulator.deploymentStats('reset').requests.map(({ status, aborted }) => [status, aborted]),
    ).toEqual([
      [null, false],
      [200, false],
    ]);
  });

  it('stays silent until the client gives up, and records the abort', async () => {
    const error = await client('silent', { timeout: 200 })
      .chat.completions.create({ model: 'm', messages: messages(), stream: true })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.APIConnectionError);
    await until(
      () => simulator.deploymentStats('silent').requests[0]?.aborted === true,
      () => JSON.stringify(simulator.deploymentStats('silent')),
    );
    expect(statuses('silent')).toEqual([null]);
  });

  it('delays the first token', async () => {
    const started = performance.now();
    const stream = await client('late').chat.completions.create({
      model: 'm',
      messages: messages(),
      stream: true,
    });
    let firstAt = 0;
    for await (const chunk of stream)
      if (chunk.choices[0]?.delta.content && firstAt === 0) firstAt = performance.now();
    expect(firstAt - started).toBeGreaterThanOrEqual(290);
  });

  it('delays a seeded share of first tokens (a heavy tail), the same share on every run', async () => {
    async function slowCount(server: SimulatorServer): Promise<number> {
      const openai = new OpenAI({ baseURL: server.urlFor('tail'), apiKey: 'x', maxRetries: 0 });
      const times = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const started = performance.now();
          await openai.chat.completions.create({ model: 'm', messages: messages('[sim tokens=2]') });
          return performance.now() - started;
        }),
      );
      return times.filter((ms) => ms >= 1000).length;
    }
    const twin = new SimulatorServer({ profile: 'instant', deployments: { tail: DEPLOYMENTS.tail } });
    await twin.listen();
    try {
      const [here, there] = await Promise.all([slowCount(simulator), slowCount(twin)]);
      expect(here).toBe(there);
      expect(here).toBeGreaterThan(0);
      expect(here).toBeLessThan(15);
    } finally {
      await twin.close();
    }
  });

  it('cuts the stream after N content tokens, then (outside the window) answers whole', async () => {
    const seen: string[] = [];
    const error = await (async () => {
      const stream = await client('cut').chat.completions.create({
        model: 'm',
        messages: messages(),
        stream: true,
      });
      for await (const chunk of stream)
        if (chunk.choices[0]?.delta.content) seen.push(chunk.choices[0].delta.content);
    })().catch((caught: unknown) => caught);
    expect(error).toMatchObject({ name: 'TypeError' });
    expect(seen).toHaveLength(4);
    const whole = await streamed('cut');
    expect(whole.text.startsWith(seen.join(''))).toBe(true);
    expect(
      simulator.deploymentStats('cut').requests.map(({ contentTokens, aborted }) => [contentTokens, aborted]),
    ).toEqual([
      [4, false],
      [20, false],
    ]);
  });

  it('cuts after N bytes of content, inside a token, at a character boundary', async () => {
    const content = '[sim echo] 配信と流式 🚀👍🏽 naïve café 配信と流式 🚀👍🏽 naïve café';
    let received = '';
    await (async () => {
      const stream = await client('cutBytes').chat.completions.create({
        model: 'm',
        messages: messages(content),
        stream: true,
      });
      for await (const chunk of stream) received += chunk.choices[0]?.delta.content ?? '';
    })().catch(() => undefined);
    const whole = content.replace('[sim echo] ', '');
    expect(Buffer.byteLength(received)).toBeLessThanOrEqual(30);
    expect(Buffer.byteLength(received)).toBeGreaterThan(30 - 4);
    expect(whole.startsWith(received)).toBe(true);
  });

  it('stalls with the connection open until the client leaves', async () => {
    const controller = new AbortController();
    const response = await post('stall', 'x [sim tokens=20]', controller.signal);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    let received = '';
    while ((received.match(/"content":"[^"]/g) ?? []).length < 2) {
      received += new TextDecoder().decode((await reader.read()).value);
    }
    expect(simulator.deploymentStats('stall').requests[0]).toMatchObject({
      status: 200,
      contentTokens: 2,
      aborted: false,
    });
    controller.abort();
    await until(
      () => simulator.deploymentStats('stall').requests[0].aborted,
      () => JSON.stringify(simulator.deploymentStats('stall')),
    );
  });

  it('sends a malformed chunk mid-stream', async () => {
    const body = await (await post('malformed', 'x')).text();
    expect(body.trimEnd().endsWith('data: {not json')).toBe(true);
    expect((body.match(/"content":"[^"]/g) ?? []).length).toBe(3);
  });

  it('ends cleanly without a finish_reason and without [DONE]', async () => {
    const body = await (await post('unfinished', 'x')).text();
    expect(body).not.toContain('[DONE]');
    expect(body).not.toMatch(/"finish_reason":"/);
    expect((body.match(/"content":"[^"]/g) ?? []).length).toBe(5);
    expect(simulator.deploymentStats('unfinished').requests[0]).toMatchObject({
      status: 200,
      contentTokens: 5,
    });
  });

  it('usage: false never reports usage, even when asked', async () => {
    const { chunks } = await streamed('noUsage');
    expect(chunks.some((chunk) => chunk.usage)).toBe(false);
    const completion = await client('noUsage').chat.completions.create({ model: 'm', messages: messages() });
    expect(completion.usage).toBeUndefined();
    expect(completion.model).toBe('quiet');
  });

  it('serves the stats at GET /d/<name>/stats, as in process', async () => {
    await streamed('healthy');
    const response = await fetch(simulator.urlFor('healthy').replace(/\/v1$/, '/stats'));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(simulator.deploymentStats('healthy'));
  });
});

describe('faultProfileSchema', () => {
  it.each([
    [{ refuse: { status: 400 } }, 'refuse.code'],
    [{ refuse: { status: 503, code: 'content_filter' } }, 'refuse.code'],
    [{ refuse: { status: 500, retryAfterMs: 10 } }, 'refuse.retryAfterMs'],
    [{ refuse: { status: 418 } }, 'refuse.status'],
    [{ midStream: { action: 'cut' } }, 'midStream.afterTokens'],
    [{ midStream: { action: 'cut', afterTokens: 1, afterBytes: 2 } }, 'midStream.afterTokens'],
    [{ firstToken: { delayMs: 10, probability: 2 } }, 'firstToken.probability'],
    [{ beforeHeaders: { action: 'explode' } }, 'beforeHeaders.action'],
    [{ latency: 'warp' }, 'latency'],
    [{ colour: 'red' }, ''],
  ])('refuses %j, naming %s', (profile, path) => {
    const result = faultProfileSchema.safeParse(profile);
    expect(result.success).toBe(false);
    expect(result.error!.issues[0].path.join('.')).toBe(path);
  });

  it('takes {} as a healthy deployment, with its defaults', () => {
    expect(faultProfileSchema.parse({})).toEqual({ rejectPrefill: false, usage: true });
  });
});
