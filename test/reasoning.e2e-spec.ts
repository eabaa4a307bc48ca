import type { CompletionEvent, DoneEvent } from '@app/contracts';
import { REASONING_MODEL_NAME } from '@app/simulator';
import OpenAI from 'openai';
import { ChunkUpstream, chunkOf, usageChunk } from './support/chunk-upstream';
import { connect, streamOver } from './support/socket-client';
import { postStream, readStream, textOf } from './support/sse-client';
import { startTestApp, type TestApp } from './support/test-app';

const reasoningOf = (events: CompletionEvent[]) =>
  events.flatMap((event) => (event.type === 'reasoning' ? [event.text] : []));

function doneOf(events: CompletionEvent[]): DoneEvent {
  const last = events.at(-1);
  if (last?.type !== 'done') {
    throw new Error(`the stream did not end with done: ${JSON.stringify(events.slice(-3))}`);
  }
  return last;
}

/** Every reasoning event before the first token, seq from 0 rising by one, exactly one terminal event. */
function expectWellFormed(events: CompletionEvent[]): void {
  expect(events.map((event) => event.seq)).toEqual(events.map((_, index) => index));
  const firstToken = events.findIndex((event) => event.type === 'token');
  const lastReasoning = events.findLastIndex((event) => event.type === 'reasoning');
  if (firstToken >= 0) {
    expect(lastReasoning).toBeLessThan(firstToken);
  }
  expect(events.filter((event) => event.type === 'done' || event.type === 'error')).toHaveLength(1);
}

/** What the simulator itself streams for these messages, read with the SDK: the reference for exactness. */
async function direct(testApp: TestApp, model: string, content: string) {
  const openai = new OpenAI({
    baseURL: testApp.simulator.baseUrl,
    apiKey: 'x',
    maxRetries: 0,
    defaultHeaders: { ...testApp.simulator.headers },
  });
  const stream = await openai.chat.completions.create({
    model,
    messages: [{ role: 'user', content }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let reasoning = '';
  let text = '';
  let reasoningTokens: number | undefined;
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta as
      { content?: string | null; reasoning_content?: string } | undefined;
    reasoning += delta?.reasoning_content ?? '';
    text += delta?.content ?? '';
    reasoningTokens = chunk.usage?.completion_tokens_details?.reasoning_tokens ?? reasoningTokens;
  }
  return { reasoning, text, reasoningTokens };
}

describe('reasoning from a scripted upstream: both field styles, exactly and in order, on both transports', () => {
  const upstream = new ChunkUpstream();
  let testApp: TestApp;
  const prompt = 'reason in both styles';

  beforeAll(async () => {
    upstream.reply(prompt, {
      kind: 'chunks',
      chunks: [
        chunkOf({ role: 'assistant', content: '' }),
        chunkOf({ content: null, reasoning_content: 'Step one. ' }),
        chunkOf({ reasoning: 'Step two: ünïcödé 🚀\n' }),
        // A server between the two names sends both with one text: one reasoning delta.
        chunkOf({ reasoning_content: 'both', reasoning: 'both' }),
        chunkOf({ reasoning_content: '' }),
        chunkOf({ content: 'Ans' }),
        chunkOf({ content: 'wer ✓' }),
        chunkOf({}, 'stop'),
        usageChunk({
          prompt_tokens: 5,
          completion_tokens: 20,
          total_tokens: 25,
          completion_tokens_details: { reasoning_tokens: 14 },
        }),
      ],
    });
    testApp = await startTestApp({ OPENAI_BASE_URL: await upstream.start(), OPENAI_API_KEY: 'sk-upstream' });
  });
  afterAll(async () => {
    await testApp.close();
    await upstream.close();
  });

  const expectReasoned = (events: CompletionEvent[]) => {
    expectWellFormed(events);
    expect(reasoningOf(events)).toEqual(['Step one. ', 'Step two: ünïcödé 🚀\n', 'both']);
    expect(textOf(events)).toBe('Answer ✓');
    const done = doneOf(events);
    expect(done.usage).toEqual({
      promptTokens: 5,
      completionTokens: 20,
      totalTokens: 25,
      reasoningTokens: 14,
    });
    const start = events[0];
    const firstReasoning = events.find((event) => event.type === 'reasoning') as CompletionEvent;
    const firstToken = events.find((event) => event.type === 'token') as CompletionEvent;
    expect(done.timing.ttftMs).toBeCloseTo(firstReasoning.ts - start.ts, 3);
    expect(done.timing.reasoningMs).toBeCloseTo(firstToken.ts - firstReasoning.ts, 3);
  };

  it('SSE', async () => {
    const result = await postStream(testApp.url, { messages: [{ role: 'user', content: prompt }] });
    expect(result.messages.filter((message) => message.event === 'reasoning')).toHaveLength(3);
    expectReasoned(result.events);
  });

  it('Socket.IO', async () => {
    const socket = await connect(testApp.url);
    try {
      const { ack, events } = await streamOver(socket, { messages: [{ role: 'user', content: prompt }] });
      expect(ack.ok).toBe(true);
      expectReasoned(events);
    } finally {
      socket.disconnect();
    }
  });
});

// Replay a failing cut point with REASONING_CUT_SEED (the seed is in the suite's name).
const seed = Number(process.env.REASONING_CUT_SEED ?? Date.now() % 1000);

describe(`reasoning from the simulator, on both transports, resumed at a random cut point (REASONING_CUT_SEED=${seed})`, () => {
  let testApp: TestApp;
  const think = 30;

  beforeAll(async () => {
    testApp = await startTestApp({ SIMULATOR_PROFILE: 'fast', STREAM_RESUME_GRACE_MS: '20000' });
  });
  afterAll(() => testApp.close());

  /** A cut somewhere in the thinking, at its edge, or in the answer: seq 1 to think + 5. */
  const cutPoint = (salt: number) => 1 + ((seed * 7919 + salt * 104_729) % (think + 5));

  it('SSE: the POST is cut after a random event, GET with Last-Event-ID gives the rest, exactly', async () => {
    const content = `[sim think=${think} tokens=20 tps=300] SSE ${seed}`;
    const expected = await direct(testApp, REASONING_MODEL_NAME, content);
    const cutAt = cutPoint(1);
    const client = new AbortController();
    const before: CompletionEvent[] = [];
    const first = await postStream(
      testApp.url,
      { model: REASONING_MODEL_NAME, messages: [{ role: 'user', content }] },
      {
        signal: client.signal,
        onEvent: (event) => {
          // Events parsed from the same network read after the cut are not the client's: it has gone.
          if (client.signal.aborted) return;
          before.push(event);
          if (event.seq === cutAt) client.abort();
        },
      },
    ).catch(() => undefined);
    expect(first).toBeUndefined();
    const streamId = before[0]?.streamId;
    const resumed = await readStream(
      await fetch(`${testApp.url}/api/completions/${streamId}/stream`, {
        headers: { 'last-event-id': String(cutAt) },
      }),
    );
    const events = [...before, ...resumed.events];

    expectWellFormed(events);
    expect(reasoningOf(events).join('')).toBe(expected.reasoning);
    expect(reasoningOf(events)).toHaveLength(think);
    expect(textOf(events)).toBe(expected.text);
    expect(doneOf(events).usage?.reasoningTokens).toBe(expected.reasoningTokens);
    expect(doneOf(events).timing.reasoningMs).toBeGreaterThan(0);
  });

  it('Socket.IO: the socket is dropped after a random event, another one resumes with completion:resume', async () => {
    const content = `[sim think=${think} tokens=20 tps=300] Socket.IO ${seed}`;
    const expected = await direct(testApp, REASONING_MODEL_NAME, content);
    const cutAt = cutPoint(2);
    const first = await connect(testApp.url);
    const before: CompletionEvent[] = [];
    const cut = new Promise<void>((resolve) => {
      first.on('completion', (event) => {
        if (before.length > cutAt) return;
        before.push(event);
        if (event.seq === cutAt) {
          first.disconnect();
          resolve();
        }
      });
    });
    first.emit(
      'completion:start',
      { model: REASONING_MODEL_NAME, messages: [{ role: 'user', content }] },
      () => undefined,
    );
    await cut;

    const second = await connect(testApp.url);
    try {
      const after: CompletionEvent[] = [];
      const ended = new Promise<void>((resolve) => {
        second.on('completion', (event) => {
          after.push(event);
          if (event.type === 'done' || event.type === 'error') resolve();
        });
      });
      const ack = await new Promise((resolve) =>
        second.emit('completion:resume', { streamId: before[0].streamId, lastSeq: cutAt }, resolve),
      );
      expect(ack).toEqual({ ok: true });
      await ended;
      const events = [...before, ...after];

      expectWellFormed(events);
      expect(reasoningOf(events).join('')).toBe(expected.reasoning);
      expect(textOf(events)).toBe(expected.text);
      expect(doneOf(events).usage?.reasoningTokens).toBe(expected.reasoningTokens);
    } finally {
      second.disconnect();
    }
  });

  it('metrics: a reasoning-time histogram and the reasoning deltas counted, per transport', async () => {
    await postStream(testApp.url, {
      model: REASONING_MODEL_NAME,
      messages: [{ role: 'user', content: '[sim think=4 tokens=2] metrics' }],
    });
    const metrics = await (await fetch(`${testApp.url}/metrics`)).text();
    // The reasoning series as lines, so that a failure shows what was there.
    const lines = metrics.split('\n').filter((line) => line.startsWith('llm_gateway_reasoning'));
    const value = (name: string) =>
      Number(
        lines
          .find((line) => line.startsWith(`${name}{transport="sse",provider="simulator"} `))
          ?.split(' ')[1] ?? Number.NaN,
      );
    expect({ lines, count: value('llm_gateway_reasoning_seconds_count') >= 1 }).toMatchObject({
      count: true,
    });
    expect({ lines, tokens: value('llm_gateway_reasoning_tokens_total') >= 4 }).toMatchObject({
      tokens: true,
    });
  });
});

describe('<think> extraction (UPSTREAM_EXTRACT_THINK_TAGS)', () => {
  const content = '[sim reasoning=think think=12 tokens=8] inline thinking';

  it('is off by default: the content streams as it is, tags included', async () => {
    const testApp = await startTestApp();
    try {
      const expected = await direct(testApp, 'simulator', content);
      const { events } = await postStream(testApp.url, { messages: [{ role: 'user', content }] });
      expect(reasoningOf(events)).toEqual([]);
      expect(textOf(events)).toBe(expected.text);
      expect(textOf(events).startsWith('<think>')).toBe(true);
    } finally {
      await testApp.close();
    }
  });

  it('when on, the think block becomes reasoning events and the answer the tokens, on both transports', async () => {
    const testApp = await startTestApp({ UPSTREAM_EXTRACT_THINK_TAGS: 'true' });
    const socket = await connect(testApp.url);
    try {
      const { text } = await direct(testApp, 'simulator', content);
      const close = text.indexOf('</think>');
      const expectedReasoning = text.slice('<think>'.length, close);
      const expectedAnswer = text.slice(close + '</think>'.length);
      const overSse = (await postStream(testApp.url, { messages: [{ role: 'user', content }] })).events;
      const overSocket = (await streamOver(socket, { messages: [{ role: 'user', content }] })).events;
      for (const events of [overSse, overSocket]) {
        expectWellFormed(events);
        expect(reasoningOf(events).join('')).toBe(expectedReasoning);
        expect(textOf(events)).toBe(expectedAnswer);
        expect(doneOf(events).timing.reasoningMs).toBeGreaterThanOrEqual(0);
      }
    } finally {
      socket.disconnect();
      await testApp.close();
    }
  });
});
