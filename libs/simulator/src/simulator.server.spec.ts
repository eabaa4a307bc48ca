import OpenAI from 'openai';
import { SimulatorServer } from './simulator.server';

interface Chunk {
  id: string;
  object: string;
  created: number;
  model: string;
  system_fingerprint: string;
  choices: {
    index: number;
    delta: { role?: string; content?: string };
    logprobs: null;
    finish_reason: string | null;
  }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
}

/** The `data:` payloads of a complete SSE body, in order, `[DONE]` included as a string. */
function dataFrames(body: string): string[] {
  expect(body.endsWith('\n\n')).toBe(true);
  return body
    .slice(0, -2)
    .split('\n\n')
    .map((frame) => {
      expect(frame.startsWith('data: ')).toBe(true);
      return frame.slice('data: '.length);
    });
}

describe('SimulatorServer', () => {
  let simulator: SimulatorServer;
  let baseUrl: string;
  let openai: OpenAI;

  beforeAll(async () => {
    simulator = new SimulatorServer({ profile: 'instant' });
    baseUrl = await simulator.listen();
    openai = new OpenAI({ baseURL: baseUrl, apiKey: 'x', maxRetries: 0 });
  });
  afterAll(() => simulator.close());

  function post(body: unknown, init: RequestInit = {}): Promise<Response> {
    return fetch(`${baseUrl}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      ...init,
    });
  }

  async function streamText(content: string, extra: Record<string, unknown> = {}): Promise<string> {
    const stream = await openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content }],
      stream: true,
      ...extra,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    return text;
  }

  it('listens on a free loopback port and returns the base URL ending in /v1', () => {
    expect(baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
  });

  it('lists its models in OpenAI format', async () => {
    const response = await fetch(`${baseUrl}/models`);
    expect(response.status).toBe(200);
    expect(response.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
    const body = (await response.json()) as { object: string; data: { id: string; object: string }[] };
    expect(body.object).toBe('list');
    expect(body.data.map((model) => model.id)).toEqual([
      'simulator',
      'simulator-instant',
      'simulator-fast',
      'simulator-realistic',
      'simulator-slow',
      'simulator-reasoning',
    ]);
    expect(body.data[0]).toEqual({
      id: 'simulator',
      object: 'model',
      created: expect.any(Number),
      owned_by: 'simulator',
    });
    const sdkModels = await openai.models.list();
    expect(sdkModels.data).toHaveLength(6);
  });

  it('streams the exact OpenAI chunk sequence: role, content per token, finish, usage, [DONE]', async () => {
    const response = await post({
      model: 'simulator',
      messages: [{ role: 'user', content: 'Hello [sim tokens=7]' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(response.headers.get('x-request-id')).toMatch(/^req_/);

    const frames = dataFrames(await response.text());
    expect(frames.at(-1)).toBe('[DONE]');
    const chunks = frames.slice(0, -1).map((frame) => JSON.parse(frame) as Chunk);
    expect(chunks).toHaveLength(1 + 7 + 1 + 1);

    const [role, ...rest] = chunks;
    const usage = rest.pop() as Chunk;
    const finish = rest.pop() as Chunk;
    for (const chunk of chunks) {
      expect(chunk.id).toMatch(/^chatcmpl-/);
      expect(chunk.id).toBe(role.id);
      expect(chunk.object).toBe('chat.completion.chunk');
      expect(chunk.model).toBe('simulator');
      expect(chunk.created).toBe(role.created);
      expect(chunk.system_fingerprint).toEqual(expect.any(String));
    }
    expect(role.choices).toEqual([
      { index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null },
    ]);
    expect(role.usage).toBeNull();
    for (const chunk of rest) {
      expect(chunk.choices).toEqual([
        { index: 0, delta: { content: expect.any(String) }, logprobs: null, finish_reason: null },
      ]);
      expect(chunk.usage).toBeNull();
    }
    expect(finish.choices).toEqual([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]);
    expect(finish.usage).toBeNull();
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toEqual({
      prompt_tokens: expect.any(Number),
      completion_tokens: 7,
      total_tokens: expect.any(Number),
      completion_tokens_details: {
        reasoning_tokens: 0,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    });
    expect(usage.usage?.total_tokens).toBe((usage.usage?.prompt_tokens ?? 0) + 7);
  });

  it('leaves usage out entirely without stream_options.include_usage', async () => {
    const response = await post({ messages: [{ role: 'user', content: '[sim tokens=3]' }], stream: true });
    const frames = dataFrames(await response.text());
    expect(frames).toHaveLength(1 + 3 + 1 + 1);
    for (const frame of frames.slice(0, -1)) expect(JSON.parse(frame)).not.toHaveProperty('usage');
  });

  it('is seen chunk by chunk by the official SDK, usage included', async () => {
    const stream = await openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content: 'Tell me about streaming.' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.at(-2)?.choices[0].finish_reason).toBe('stop');
    const usage = chunks.at(-1)?.usage;
    expect(chunks.at(-1)?.choices).toEqual([]);
    const contentChunks = chunks.slice(1, -2);
    expect(usage?.completion_tokens).toBeGreaterThanOrEqual(contentChunks.length);
    // The default length is drawn from the seed: about 60 to 200 tokens.
    expect(contentChunks.length).toBeGreaterThanOrEqual(50);
    expect(contentChunks.length).toBeLessThanOrEqual(260);
  });

  it('generates the same text for the same seed, and another for another seed', async () => {
    const first = await streamText('anything', { seed: 42 });
    const again = await streamText('something else entirely', { seed: 42 });
    const other = await streamText('anything', { seed: 43 });
    expect(again).toBe(first);
    expect(other).not.toBe(first);
    // Without a seed, the messages are the seed.
    expect(await streamText('same prompt')).toBe(await streamText('same prompt'));
  });

  it('writes Markdown prose with multi-byte characters somewhere across seeds', async () => {
    const texts = await Promise.all(Array.from({ length: 12 }, (_, seed) => streamText('x', { seed })));
    const all = texts.join('\n');
    expect(all).toMatch(/^## /m);
    expect(all).toMatch(/^- /m);
    expect(all).toMatch(/`[^`\n]+`/);
    expect(all).toMatch(/[^ -~\s]/);
    expect(all).not.toContain('\ufffd');
  });

  it('echoes multi-byte text, emoji, CJK, CRLF and blank lines byte for byte', async () => {
    const text = 'Héllo “wörld” — 😀🦩🧬 日本語の文章 龘𝔘\r\n\r\n\n  indented line\ttab\r\nend ✅';
    const received = await streamText(`[sim echo]  ${text}  `);
    expect(Buffer.from(received)).toEqual(Buffer.from(text));
    expect(await streamText(`${text} [sim echo]`)).toBe(text);
  });

  it('sends no delta that splits a character', async () => {
    const response = await post({
      messages: [{ role: 'user', content: '[sim echo] 🦩🧬龘𝔘 𝔘𝔘𝔘' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const frames = dataFrames(await response.text());
    const deltas = frames
      .slice(1, -3)
      .map((frame) => (JSON.parse(frame) as Chunk).choices[0].delta.content ?? '');
    expect(deltas.join('')).toBe('🦩🧬龘𝔘 𝔘𝔘𝔘');
    // These characters take several BPE tokens each: fewer deltas than tokens proves they were held together.
    const usage = (JSON.parse(frames.at(-2) as string) as Chunk).usage;
    expect(usage?.completion_tokens).toBeGreaterThan(deltas.length);
    for (const delta of deltas) expect(delta).toBe(Buffer.from(delta).toString('utf8'));
    for (const delta of deltas) expect(delta).not.toMatch(/[\ud800-\udbff]$|^[\udc00-\udfff]/);
  });

  it('cuts at max_tokens / max_completion_tokens with finish_reason length', async () => {
    const stream = await openai.chat.completions.create({
      messages: [{ role: 'user', content: '[sim tokens=50]' }],
      model: 'simulator',
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 10,
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.at(-2)?.choices[0].finish_reason).toBe('length');
    expect(chunks.at(-1)?.usage?.completion_tokens).toBe(10);

    const completion = await openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content: '[sim tokens=50]' }],
      max_completion_tokens: 5,
    });
    expect(completion.choices[0].finish_reason).toBe('length');
    expect(completion.usage?.completion_tokens).toBe(5);

    const exact = await openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content: '[sim tokens=5]' }],
      max_tokens: 5,
    });
    expect(exact.choices[0].finish_reason).toBe('stop');
  });

  it('answers a non-streaming request with a chat.completion object', async () => {
    const stream = await streamText('[sim tokens=12] same', { seed: 9 });
    const completion = await openai.chat.completions.create({
      model: 'simulator-instant',
      messages: [{ role: 'user', content: '[sim tokens=12] same' }],
      seed: 9,
    });
    expect(completion.object).toBe('chat.completion');
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(completion.model).toBe('simulator-instant');
    expect(completion.choices[0].message).toMatchObject({ role: 'assistant', content: stream });
    expect(completion.choices[0].finish_reason).toBe('stop');
    expect(completion.usage).toMatchObject({ completion_tokens: 12 });
  });

  it('refuses bad JSON, missing messages and an unknown model with OpenAI error JSON', async () => {
    const badJson = await post('{"messages": [');
    expect(badJson.status).toBe(400);
    expect(badJson.headers.get('x-request-id')).toMatch(/^req_/);
    expect(await badJson.json()).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: null },
    });

    const missing = await post({ model: 'simulator' });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toEqual({
      error: {
        message: expect.stringContaining('messages'),
        type: 'invalid_request_error',
        param: 'messages',
        code: 'missing_required_parameter',
      },
    });

    const unknown = await post({ model: 'gpt-nope', messages: [{ role: 'user', content: 'hi' }] });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('model_not_found');

    const error = await openai.chat.completions
      .create({ model: 'gpt-nope', messages: [{ role: 'user', content: 'hi' }] })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
    expect(error).toMatchObject({ status: 404, code: 'model_not_found', type: 'invalid_request_error' });
  });

  it('refuses a malformed directive value, naming it', async () => {
    const response = await post({ messages: [{ role: 'user', content: '[sim tokens=many]' }] });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { message: string } }).error.message).toContain('tokens');
  });

  it('answers an unknown path with 404 in OpenAI format', async () => {
    const response = await fetch(`${baseUrl}/embeddings`, { method: 'POST' });
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
  });

  it('prefixes each token with its emission time under emit_ts', async () => {
    const before = performance.timeOrigin + performance.now();
    const response = await post({
      messages: [{ role: 'user', content: '[sim tokens=5 emit_ts]' }],
      stream: true,
    });
    const deltas = dataFrames(await response.text())
      .slice(1, -2)
      .map((frame) => (JSON.parse(frame) as Chunk).choices[0].delta.content ?? '');
    const after = performance.timeOrigin + performance.now();
    expect(deltas).toHaveLength(5);
    for (const delta of deltas) {
      const match = /^⟨(\d+\.\d{3})⟩(.*)$/s.exec(delta);
      expect(match).not.toBeNull();
      const ts = Number(match?.[1]);
      expect(ts).toBeGreaterThanOrEqual(Math.floor(before));
      expect(ts).toBeLessThanOrEqual(after + 1);
    }
  });

  it('reports its counters at /v1/simulator/stats', async () => {
    const response = await fetch(`${baseUrl}/simulator/stats`);
    const stats = (await response.json()) as Record<string, number>;
    expect(stats).toEqual(simulator.stats());
    expect(stats.requests).toBeGreaterThan(0);
    expect(stats.active).toBe(0);
    expect(stats.completed).toBeGreaterThan(0);
  });
});

describe('SimulatorServer timing', () => {
  let simulator: SimulatorServer;
  let baseUrl: string;

  beforeAll(async () => {
    simulator = new SimulatorServer({});
    baseUrl = await simulator.listen();
  });
  afterAll(() => simulator.close());

  /** Arrival time of each content delta, relative to the request. */
  async function arrivals(
    model: string,
    content: string,
    seed = 1,
  ): Promise<{ ttft: number; gaps: number[] }> {
    const started = performance.now();
    const response = await fetch(`${baseUrl}/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model, seed, messages: [{ role: 'user', content }], stream: true }),
    });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    const times: number[] = [];
    let buffer = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (frame.includes('"content":') && !frame.includes('"role"'))
          times.push(performance.now() - started);
      }
    }
    return { ttft: times[0], gaps: times.slice(1).map((time, index) => time - times[index]) };
  }

  // Timers never fire early, so a schedule shows as lower bounds on arrival times, which hold however loaded the
  // machine is. Upper bounds would not (a busy CI box delays any token), so none is asserted here; the benchmark
  // is where the simulator's pacing is measured.
  it('follows the profile: nothing before its time to first token, no faster than its token rate', async () => {
    const fast = await arrivals('simulator-fast', '[sim tokens=20 jitter=0]');
    // fast: 50 ms to the first token.
    expect(fast.ttft).toBeGreaterThanOrEqual(45);

    const realistic = await arrivals('simulator', '[sim tokens=10 jitter=0]');
    // realistic: 350 ms to the first token, then 60 tok/s: the tenth token cannot come before 350 + 9 × 16.7 ms.
    expect(realistic.ttft).toBeGreaterThanOrEqual(300);
    expect(realistic.ttft + realistic.gaps.reduce((sum, gap) => sum + gap, 0)).toBeGreaterThanOrEqual(480);
  });

  it('lets directives override the profile', async () => {
    // The slow profile waits 1,200 ms for the first token and paces 15 tok/s; the directives say 0 ms and 100 tok/s.
    const timed = await arrivals('simulator-slow', '[sim tokens=6 ttft=0 tps=100 jitter=0]');
    expect(timed.ttft).toBeLessThan(1200);
    const total = timed.gaps.reduce((sum, gap) => sum + gap, 0);
    expect(total).toBeGreaterThanOrEqual(40);
  });
});
