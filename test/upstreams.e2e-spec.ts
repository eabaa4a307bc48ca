import type { CompletionEvent, StreamError } from '@app/contracts';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { stringify as toYaml } from 'yaml';
import { connect, type CompletionClient, streamOver } from './support/socket-client';
import { postStream, textOf } from './support/sse-client';
import { type ServerProcess, startServerProcess } from './support/server-process';
import { eventually, startTestApp, type TestApp } from './support/test-app';

/**
 * The upstream table end to end (issue 24, CONTRACT.md "Upstreams"): a real gateway on port 0 reads a table whose
 * deployments are played by the built-in simulator with fault profiles, and the three real clients (fetch-read SSE,
 * socket.io-client, the official `openai` SDK on /v1) see fallback, continuation, hedging and refusals as the
 * contract says. The simulator seeds an answer by the prompt alone, so every deployment gives the same text to the
 * same prompt: an answer served in pieces must equal the one a healthy deployment gives whole, byte for byte.
 */

const ROOT = join(__dirname, '..');
const TOKENS = 30;
const CUT_AFTER = 11;
/** Inside the third character of both echoed prompts below (☕ is bytes 6-8 of `Café ☕`, か bytes 6-8). */
const CUT_AFTER_BYTES = 7;
const SLOW_FIRST_TOKEN_MS = 3000;
const HEDGE_AFTER_MS = 200;

/** Every deployment streams at the simulator's `fast` pace (50 ms to the first token, 250 tokens/s). */
const simulated = (profile: Record<string, unknown> = {}, settings: Record<string, unknown> = {}) => ({
  simulator: { latency: 'fast', ...profile },
  ...settings,
});
/** A deployment that fails every request must keep failing for every surface: never put aside by the cooldown. */
const alwaysTried = { allowedFails: 100 };
const continues = { continuation: 'continue_final_message' };
const SURFACES = ['sse', 'io', 'v1'] as const;
type Surface = (typeof SURFACES)[number];

/**
 * A 429 spares its deployment for the time it asked (the health is shared by every stream), so each surface gets a
 * rate-limited deployment of its own, and each sees its own first attempt refused.
 */
const perSurface = <T>(make: (surface: Surface) => [string, T]) =>
  Object.fromEntries(SURFACES.map((surface) => make(surface)));

/** The other ways a stream breaks after content (issue 24, "Continuation after a cut"), and the code each is told by. */
const OTHER_BREAKS = [
  ['malformed', 'upstream_protocol', {}],
  ['end_without_done', 'upstream_protocol', {}],
  // The stall is noticed by the deployment's idle timeout, short here so that the case takes a second.
  ['stall', 'upstream_timeout', { idleTimeoutMs: 500 }],
] as const;

/**
 * The other faults before the first token (issue 24's list), each with the code its `route` event names. (A
 * deployment that never answers is below, in a server process: inside Jest's sandbox the SDK cannot tell its own
 * timeout from a connection error, a DOMException from another realm failing its `instanceof Error`.)
 */
const EARLY_FAULTS = [
  ['a 500', 'error-500', { refuse: { status: 500 } }, {}, 'upstream_unavailable'],
  ['a reset before any header', 'reset', { beforeHeaders: { action: 'reset' } }, {}, 'upstream_unavailable'],
  [
    'no first token in time',
    'late-first-token',
    { firstToken: { delayMs: SLOW_FIRST_TOKEN_MS } },
    { firstTokenTimeoutMs: 300 },
    'upstream_timeout',
  ],
] as const;

const TABLE = {
  deployments: {
    healthy: simulated({}, continues),
    backup: simulated({}, continues),
    'down-503': simulated({ refuse: { status: 503 } }, alwaysTried),
    ...perSurface((surface) => [
      `limited-${surface}`,
      simulated({ refuse: { status: 429, retryAfterMs: 20_000 } }, alwaysTried),
    ]),
    'limited-again': simulated({ refuse: { status: 429, retryAfterMs: 20_000 } }, alwaysTried),
    flaky: simulated(
      { midStream: { action: 'cut', afterTokens: CUT_AFTER } },
      { ...alwaysTried, ...continues },
    ),
    ...Object.fromEntries(
      OTHER_BREAKS.map(([action, , settings]) => [
        `flaky-${action}`,
        simulated(
          { midStream: { action, afterTokens: CUT_AFTER } },
          { ...alwaysTried, ...continues, ...settings },
        ),
      ]),
    ),
    'backup-prefix': simulated({}, { continuation: 'prefix' }),
    'no-prefill': simulated({ rejectPrefill: true }, continues),
    'flaky-bytes': simulated(
      { midStream: { action: 'cut', afterBytes: CUT_AFTER_BYTES } },
      { ...alwaysTried, ...continues },
    ),
    'flaky-stuck': simulated({ midStream: { action: 'cut', afterTokens: CUT_AFTER } }, alwaysTried),
    'healthy-stuck': simulated(),
    slow: simulated({ firstToken: { delayMs: SLOW_FIRST_TOKEN_MS } }),
    quick: simulated(),
    ...Object.fromEntries(
      EARLY_FAULTS.map(([, name, profile, settings]) => [
        name,
        simulated(profile, { ...alwaysTried, ...settings }),
      ]),
    ),
    'late-a': simulated({ firstToken: { delayMs: SLOW_FIRST_TOKEN_MS } }),
    'late-b': simulated({ firstToken: { delayMs: SLOW_FIRST_TOKEN_MS } }),
    'short-context': simulated({ refuse: { status: 400, code: 'context_length_exceeded' } }),
    'long-context': simulated(),
  },
  models: {
    plain: { targets: [{ deployment: 'healthy', model: 'sim-primary' }] },
    'after-503': {
      targets: [{ deployment: 'down-503', model: 'sim-primary' }],
      fallbacks: [{ deployment: 'backup', model: 'sim-backup' }],
    },
    ...perSurface((surface) => [
      `after-429-${surface}`,
      {
        targets: [{ deployment: `limited-${surface}`, model: 'sim-primary' }],
        fallbacks: [{ deployment: 'backup', model: 'sim-backup' }],
      },
    ]),
    'after-429-again': {
      targets: [{ deployment: 'limited-again', model: 'sim-primary' }],
      fallbacks: [{ deployment: 'backup', model: 'sim-backup' }],
    },
    continued: {
      targets: [{ deployment: 'flaky', model: 'sim-primary' }],
      fallbacks: [{ deployment: 'backup', model: 'sim-backup' }],
    },
    ...Object.fromEntries(
      OTHER_BREAKS.map(([action]) => [
        `continued-${action}`,
        {
          targets: [{ deployment: `flaky-${action}`, model: 'sim-primary' }],
          fallbacks: [{ deployment: 'backup', model: 'sim-backup' }],
        },
      ]),
    ),
    'continued-prefix': {
      targets: [{ deployment: 'flaky', model: 'sim-primary' }],
      fallbacks: [{ deployment: 'backup-prefix', model: 'sim-backup' }],
    },
    'continued-bytes': {
      targets: [{ deployment: 'flaky-bytes', model: 'sim-primary' }],
      fallbacks: [{ deployment: 'backup', model: 'sim-backup' }],
    },
    'prefill-refused': {
      targets: [{ deployment: 'flaky-stuck', model: 'sim-primary' }],
      fallbacks: [{ deployment: 'no-prefill', model: 'sim-backup' }],
    },
    stuck: {
      targets: [{ deployment: 'flaky-stuck', model: 'sim-primary' }],
      fallbacks: [{ deployment: 'healthy-stuck', model: 'sim-backup' }],
    },
    hedged: {
      targets: [{ deployment: 'slow', model: 'sim-primary' }],
      fallbacks: [{ deployment: 'quick', model: 'sim-backup' }],
      hedgeAfterMs: HEDGE_AFTER_MS,
    },
    ...Object.fromEntries(
      EARLY_FAULTS.map(([, name]) => [
        `after-${name}`,
        {
          targets: [{ deployment: name, model: 'sim-primary' }],
          fallbacks: [{ deployment: 'backup', model: 'sim-backup' }],
        },
      ]),
    ),
    'all-late': {
      targets: [{ deployment: 'late-a', model: 'sim-primary' }],
      fallbacks: [{ deployment: 'late-b', model: 'sim-backup' }],
      hedgeAfterMs: HEDGE_AFTER_MS,
    },
    'long-prompt': {
      targets: [{ deployment: 'short-context', model: 'sim-primary' }],
      fallbacks: [{ deployment: 'long-context', model: 'sim-large', on: ['context_length_exceeded'] }],
    },
    'long-prompt-alone': { targets: [{ deployment: 'short-context', model: 'sim-primary' }] },
  },
  defaultModel: 'plain',
};

const PUBLIC_MODELS = Object.keys(TABLE.models);

/** A prompt of its own per case (so answers differ between cases), a fixed answer length. */
const promptFor = (label: string) => `Explain ${label} in a few lines. [sim tokens=${TOKENS}]`;
const messagesOf = (label: string) => [{ role: 'user' as const, content: promptFor(label) }];

/** What a stream of our events looks like, in one line per event, to print when an assertion fails. */
const seen = (events: CompletionEvent[]) =>
  events
    .map((event) => {
      switch (event.type) {
        case 'token':
          return `${event.seq}:token(${JSON.stringify(event.text)})`;
        case 'route':
          return `${event.seq}:route(${event.reason},${event.deployment},${event.model},${event.code ?? '-'})`;
        case 'error':
          return `${event.seq}:error(${JSON.stringify(event.error)})`;
        default:
          return `${event.seq}:${event.type}`;
      }
    })
    .join('\n');

let tableDir: string;
let testApp: TestApp;
let socket: CompletionClient;
let openai: OpenAI;

function writeTable(name: string, content: string): string {
  const path = join(tableDir, name);
  writeFileSync(path, content);
  return path;
}

beforeAll(async () => {
  tableDir = mkdtempSync(join(tmpdir(), 'upstreams-e2e-'));
  testApp = await startTestApp({ UPSTREAMS_FILE: writeTable('upstreams.yaml', toYaml(TABLE)) });
  socket = await connect(testApp.url);
  openai = new OpenAI({ baseURL: `${testApp.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  socket?.disconnect();
  await testApp?.close();
  rmSync(tableDir, { recursive: true, force: true });
});

/** One stream on SSE or Socket.IO: its events, and when (ms after the start) the first token came. */
async function ourStream(
  surface: 'sse' | 'io',
  model: string,
  label: string,
): Promise<{ events: CompletionEvent[]; firstTokenMs: number | undefined }> {
  const startedAt = performance.now();
  let firstTokenMs: number | undefined;
  const onEvent = (event: CompletionEvent) => {
    if (event.type === 'token' && firstTokenMs === undefined) {
      firstTokenMs = performance.now() - startedAt;
    }
  };
  const request = { model, messages: messagesOf(label) };
  if (surface === 'sse') {
    const result = await postStream(testApp.url, request, { onEvent });
    expect({ status: result.status, body: result.status === 200 ? '' : result.raw }).toEqual({
      status: 200,
      body: '',
    });
    return { events: result.events, firstTokenMs };
  }
  const { ack, events } = await streamOver(socket, request, onEvent);
  expect(ack).toEqual({ ok: true, streamId: expect.any(String) });
  return { events, firstTokenMs };
}

interface V1Result {
  ids: string[];
  models: string[];
  content: string;
  usages: OpenAI.Completions.CompletionUsage[];
  finishReasons: string[];
  firstTokenMs: number | undefined;
  error: unknown;
}

/** One stream on /v1 through the official SDK: every chunk's id and model, the content, the usages it carried. */
async function v1Stream(model: string, label: string): Promise<V1Result> {
  const result: V1Result = {
    ids: [],
    models: [],
    content: '',
    usages: [],
    finishReasons: [],
    firstTokenMs: undefined,
    error: undefined,
  };
  const startedAt = performance.now();
  try {
    const stream = await openai.chat.completions.create({
      model,
      messages: messagesOf(label),
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const chunk of stream) {
      result.ids.push(chunk.id);
      result.models.push(chunk.model);
      const choice = chunk.choices[0];
      if (choice?.delta.content) {
        result.firstTokenMs ??= performance.now() - startedAt;
        result.content += choice.delta.content;
      }
      if (choice?.finish_reason) {
        result.finishReasons.push(choice.finish_reason);
      }
      if (chunk.usage) {
        result.usages.push(chunk.usage);
      }
    }
  } catch (error) {
    result.error = error;
  }
  return result;
}

type Usage = Extract<CompletionEvent, { type: 'done' }>['usage'];

/** A counter's value in the gateway's Prometheus text (0 when the series does not exist yet). */
async function metric(pattern: RegExp): Promise<number> {
  const text = await (await fetch(`${testApp.url}/metrics`)).text();
  const line = text.split('\n').find((candidate) => pattern.test(candidate));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

/** The answer a healthy deployment gives the prompt whole, uninterrupted: what every rescued stream must equal. */
async function healthyAnswer(label: string): Promise<{ text: string; usage: Usage }> {
  const { events } = await ourStream('sse', 'plain', label);
  const trace = seen(events);
  expect({
    last: events.at(-1)?.type,
    routes: events.filter((e) => e.type === 'route').length,
    trace,
  }).toEqual({
    last: 'done',
    routes: 0,
    trace,
  });
  const text = textOf(events);
  expect(text.length).toBeGreaterThan(0);
  return { text, usage: (events.at(-1) as Extract<CompletionEvent, { type: 'done' }>).usage };
}

/**
 * One rescued answer as a client must see it: seq from 0 without a gap, the `route` events expected (reason and
 * code) before the first token or at the cut, the text equal to the healthy answer, exactly one terminal: `done`
 * with usage.
 */
function expectRescued(
  events: CompletionEvent[],
  expected: {
    text: string;
    reason: string;
    /** The fault that caused the move; none for a hedge (the first attempt was late, not failed). */
    code: string | undefined;
    model: string;
    deployment: string;
    afterTokens: number;
    /** What the healthy deployment billed for the whole answer: a rescued answer costs the same (see below). */
    usage: Usage;
  },
): void {
  const trace = seen(events);
  expect({ seqs: events.map((event) => event.seq), trace }).toEqual({
    seqs: events.map((_, index) => index),
    trace,
  });
  const routes = events.filter((event) => event.type === 'route');
  expect({ routes, trace }).toEqual({
    routes: [
      {
        type: 'route',
        streamId: expect.any(String),
        seq: expect.any(Number),
        ts: expect.any(Number),
        reason: expected.reason,
        ...(expected.code === undefined ? {} : { code: expected.code }),
        model: expected.model,
        deployment: expected.deployment,
      },
    ],
    trace,
  });
  const routeAt = events.findIndex((event) => event.type === 'route');
  const tokensBefore = events.slice(0, routeAt).filter((event) => event.type === 'token').length;
  expect({ tokensBefore, trace }).toEqual({ tokensBefore: expected.afterTokens, trace });
  const terminals = events.filter((event) => event.type === 'done' || event.type === 'error');
  expect({ terminals: terminals.map((event) => event.type), last: events.at(-1)?.type, trace }).toEqual({
    terminals: ['done'],
    last: 'done',
    trace,
  });
  expect(textOf(events)).toBe(expected.text);
  const done = events.at(-1) as Extract<CompletionEvent, { type: 'done' }>;
  expect({ usage: done.usage, finishReason: done.finishReason }).toEqual({
    usage: billedFor(expected.usage, expected.reason),
    finishReason: 'stop',
  });
}

/**
 * What a rescued answer is billed: the healthy answer's usage; after a continuation, the text so far sent back is
 * counted as completion (the router moves it there), and the one message more that carried it was really sent: its
 * framing (OpenAI's documented 3 tokens a message, which the simulator counts) stays in the prompt.
 */
const CONTINUATION_MESSAGE_FRAMING = 3;
function billedFor(usage: Usage, reason: string): Usage {
  if (usage === null || reason !== 'continuation') {
    return usage;
  }
  return {
    ...usage,
    promptTokens: usage.promptTokens + CONTINUATION_MESSAGE_FRAMING,
    totalTokens: usage.totalTokens + CONTINUATION_MESSAGE_FRAMING,
  };
}

/** An OpenAI stream that switched deployments is still one: one id, one usage, the serving model named. */
function expectOneOpenAiStream(
  result: V1Result,
  healthy: { text: string; usage: Usage },
  servingModel: string,
  reason: string,
): void {
  const usage = billedFor(healthy.usage, reason);
  const summary = {
    error: result.error === undefined ? undefined : String(result.error),
    ids: [...new Set(result.ids)],
    usages: result.usages.map(({ prompt_tokens, completion_tokens, total_tokens }) => ({
      promptTokens: prompt_tokens,
      completionTokens: completion_tokens,
      totalTokens: total_tokens,
    })),
    finishReasons: result.finishReasons,
    lastModel: result.models.at(-1),
  };
  expect(summary).toEqual({
    error: undefined,
    ids: [expect.stringMatching(/.+/)],
    usages: [
      {
        promptTokens: usage?.promptTokens,
        completionTokens: usage?.completionTokens,
        totalTokens: usage?.totalTokens,
      },
    ],
    finishReasons: ['stop'],
    lastModel: servingModel,
  });
  expect(result.content).toBe(healthy.text);
}

describe('before the first token, a failing deployment falls back (issue 24, "Before the first token")', () => {
  it.each([
    ['a 503', 'after-503', () => 'down-503', 'upstream_unavailable'],
    [
      'a 429 with Retry-After',
      'after-429',
      (surface: Surface) => `limited-${surface}`,
      'upstream_rate_limited',
    ],
  ] as const)(
    '%s: the fallback answers the healthy text, with a route event before the first token, on every surface',
    async (_case, modelBase, deploymentOf, code) => {
      const label = `fallback after ${modelBase}`;
      const healthy = await healthyAnswer(label);
      const modelOf = (surface: Surface) =>
        modelBase === 'after-503' ? modelBase : `${modelBase}-${surface}`;
      const stats = () => SURFACES.map((surface) => testApp.simulator.deploymentStats(deploymentOf(surface)));
      const before = stats().map((deployment) => deployment.total);

      for (const surface of ['sse', 'io'] as const) {
        const { events } = await ourStream(surface, modelOf(surface), label);
        expectRescued(events, {
          ...healthy,
          reason: 'fallback',
          code,
          model: 'sim-backup',
          deployment: 'backup',
          afterTokens: 0,
        });
      }
      const v1 = await v1Stream(modelOf('v1'), label);
      expectOneOpenAiStream(v1, healthy, 'sim-backup', 'fallback');

      // Every surface's first attempt reached the failing deployment and was refused (no silent skip), once.
      const status = code === 'upstream_rate_limited' ? 429 : 503;
      const after = stats().map(({ name, total, requests }, index) => ({
        name,
        added: total - before[index],
        statuses: [...new Set(requests.map((request) => request.status))],
      }));
      expect(after).toEqual(
        code === 'upstream_rate_limited'
          ? SURFACES.map((surface) => ({ name: `limited-${surface}`, added: 1, statuses: [status] }))
          : SURFACES.map(() => ({ name: 'down-503', added: SURFACES.length, statuses: [status] })),
      );
    },
  );

  it("honours a 429's Retry-After: within it, the deployment is not sent to again", async () => {
    const label = 'retry-after is honoured';
    const healthy = await healthyAnswer(label);
    const limited = () => testApp.simulator.deploymentStats('limited-again').total;
    const first = await ourStream('sse', 'after-429-again', label);
    expectRescued(first.events, {
      ...healthy,
      reason: 'fallback',
      code: 'upstream_rate_limited',
      model: 'sim-backup',
      deployment: 'backup',
      afterTokens: 0,
    });
    const asked = limited();

    // The 429 asked for 20 s: the next stream goes straight to the fallback, its first and only attempt.
    const { events } = await ourStream('sse', 'after-429-again', label);
    const trace = seen(events);
    expect({ last: events.at(-1)?.type, routes: events.filter((e) => e.type === 'route'), trace }).toEqual({
      last: 'done',
      routes: [],
      trace,
    });
    expect(textOf(events)).toBe(healthy.text);
    expect(limited()).toBe(asked);
  });
});

describe('every other fault before the first token falls back the same way', () => {
  it.each(EARLY_FAULTS)(
    '%s: the fallback answers, route fallback (%s)',
    async (_case, name, _profile, _settings, code) => {
      const label = `fallback after ${name}`;
      const healthy = await healthyAnswer(label);
      const before = testApp.simulator.deploymentStats(name).total;

      const { events } = await ourStream('sse', `after-${name}`, label);

      expectRescued(events, {
        ...healthy,
        reason: 'fallback',
        code,
        model: 'sim-backup',
        deployment: 'backup',
        afterTokens: 0,
      });
      // One attempt on the failing deployment (no retry on it while another can serve); a silent one is left.
      expect(testApp.simulator.deploymentStats(name).total).toBe(before + 1);
    },
  );
});

describe('after a cut mid-stream, the answer is continued on a capable deployment', () => {
  it('delivers the uninterrupted text byte for byte, one route (continuation), one done with usage', async () => {
    const label = 'continuation after a cut';
    const healthy = await healthyAnswer(label);

    for (const surface of ['sse', 'io'] as const) {
      const { events } = await ourStream(surface, 'continued', label);
      expectRescued(events, {
        ...healthy,
        reason: 'continuation',
        code: 'upstream_unavailable',
        model: 'sim-backup',
        deployment: 'backup',
        afterTokens: CUT_AFTER,
      });
    }
    const continuations = testApp.simulator
      .deploymentStats('backup')
      .requests.filter((request) => request.continuation !== null);
    expect(continuations.map((request) => request.continuation)).toContain('continue_final_message');
  });

  it('on /v1 (openai SDK): one id for every chunk, the concatenated content equal, usage once', async () => {
    const label = 'continuation after a cut';
    const healthy = await healthyAnswer(label);

    const v1 = await v1Stream('continued', label);

    expectOneOpenAiStream(v1, healthy, 'sim-backup', 'continuation');
    // The first chunks came from the deployment that was cut, the last from the one that continued.
    expect(v1.models[0]).toBe('sim-primary');
  });
});

describe('every other break after content is continued the same way', () => {
  it.each(OTHER_BREAKS)(
    '%s: the whole answer, one route (continuation, %s), one done',
    async (action, code) => {
      const label = `continuation after ${action}`;
      const healthy = await healthyAnswer(label);

      const { events } = await ourStream('sse', `continued-${action}`, label);

      expectRescued(events, {
        ...healthy,
        reason: 'continuation',
        code,
        model: 'sim-backup',
        deployment: 'backup',
        afterTokens: CUT_AFTER,
      });
    },
  );
});

describe('continuation: the forms, the bounds, the characters', () => {
  it('a `prefix` deployment (DeepSeek, Mistral) continues the same answer', async () => {
    const label = 'continuation by prefix';
    const healthy = await healthyAnswer(label);

    const { events } = await ourStream('sse', 'continued-prefix', label);

    expectRescued(events, {
      ...healthy,
      reason: 'continuation',
      code: 'upstream_unavailable',
      model: 'sim-backup',
      deployment: 'backup-prefix',
      afterTokens: CUT_AFTER,
    });
    const last = testApp.simulator.deploymentStats('backup-prefix').requests.at(-1);
    expect(last?.continuation).toBe('prefix');
  });

  it('maxTokens bounds the whole answer, not each attempt: the same text and `length` as uninterrupted', async () => {
    const label = 'continuation within maxTokens';
    const request = (model: string) => ({ model, maxTokens: 20, messages: messagesOf(label) });
    const whole = await postStream(testApp.url, request('plain'));
    const done = (events: CompletionEvent[]) => events.at(-1) as Extract<CompletionEvent, { type: 'done' }>;
    expect(done(whole.events).finishReason).toBe('length');

    const { events } = await postStream(testApp.url, request('continued'));

    const trace = seen(events);
    expect({ text: textOf(events), last: events.at(-1)?.type, trace }).toEqual({
      text: textOf(whole.events),
      last: 'done',
      trace,
    });
    expect(done(events).finishReason).toBe('length');
    expect(done(events).usage?.completionTokens).toBe(done(whole.events).usage?.completionTokens);
  });

  it.each([
    ['inside an emoji', 'Café ☕ then 🧪 and 漢字 [sim echo]'],
    ['inside CJK', '漢字かな交じり文 [sim echo]'],
  ])('a cut %s (afterBytes): the echoed text whole, byte for byte', async (_case, content) => {
    const request = (model: string) => ({ model, messages: [{ role: 'user' as const, content }] });
    const whole = await postStream(testApp.url, request('plain'));

    const { events } = await postStream(testApp.url, request('continued-bytes'));

    const trace = seen(events);
    expect({ text: textOf(events), route: events.find((e) => e.type === 'route')?.type, trace }).toEqual({
      text: textOf(whole.events),
      route: 'route',
      trace,
    });
  });

  it('a fallback that refuses the prefill: upstream_interrupted naming the cut, not the refusal', async () => {
    const { events } = await ourStream('sse', 'prefill-refused', 'a refused prefill');

    const trace = seen(events);
    expect({ last: events.at(-1)?.type, trace }).toEqual({ last: 'error', trace });
    const { error } = events.at(-1) as { error: StreamError };
    expect(error).toEqual(
      expect.objectContaining({
        code: 'upstream_interrupted',
        retryable: true,
        message: expect.stringContaining('connection to the model was lost'),
      }),
    );
    expect(error.upstream).toBeUndefined();
    // The fallback was asked to continue, and refused.
    const asked = testApp.simulator.deploymentStats('no-prefill').requests.at(-1);
    expect({ continuation: asked?.continuation, status: asked?.status }).toEqual({
      continuation: 'continue_final_message',
      status: 400,
    });
  });
});

describe('/v1 without stream: the first deployment to answer whole serves', () => {
  it.each([
    ['after a 503', 'after-503'],
    ['after a body cut halfway', 'continued'],
    ['after a malformed body', 'continued-malformed'],
    ['after an answer that never finished', 'continued-end_without_done'],
  ])('%s: 200 with the healthy answer from the fallback', async (_case, model) => {
    const label = `non-streamed ${model}`;
    const healthy = await healthyAnswer(label);

    const completion = await openai.chat.completions
      .create({ model, messages: messagesOf(label) })
      .catch((error: unknown) => error);

    expect(completion).not.toBeInstanceOf(Error);
    const { choices, model: served, usage } = completion as OpenAI.ChatCompletion;
    expect({ content: choices[0]?.message.content, finish: choices[0]?.finish_reason, served }).toEqual({
      content: healthy.text,
      finish: 'stop',
      served: 'sim-backup',
    });
    expect({ prompt: usage?.prompt_tokens, completion: usage?.completion_tokens }).toEqual({
      prompt: healthy.usage?.promptTokens,
      completion: healthy.usage?.completionTokens,
    });
  });
});

describe('after a cut with no deployment able to continue, the stream ends with upstream_interrupted', () => {
  it('SSE and Socket.IO: a retryable upstream_interrupted error after the tokens, never a done', async () => {
    const label = 'a cut nobody can continue';
    const healthy = await healthyAnswer(label);

    for (const surface of ['sse', 'io'] as const) {
      const { events } = await ourStream(surface, 'stuck', label);
      const trace = seen(events);
      const terminals = events.filter((event) => event.type === 'done' || event.type === 'error');
      expect({ terminals: terminals.map((event) => event.type), trace }).toEqual({
        terminals: ['error'],
        trace,
      });
      const { error } = events.at(-1) as { error: StreamError };
      expect(error).toEqual(
        expect.objectContaining({
          code: 'upstream_interrupted',
          retryable: true,
          message: expect.any(String),
        }),
      );
      // The tokens delivered before the cut are the start of the answer, and nothing was invented after them.
      expect(healthy.text.startsWith(textOf(events))).toBe(true);
      expect(events.filter((event) => event.type === 'token')).toHaveLength(CUT_AFTER);
    }
  });

  it('/v1: an in-band error event that the openai SDK raises, after the content so far, and no [DONE]', async () => {
    const label = 'a cut nobody can continue';
    const healthy = await healthyAnswer(label);

    const v1 = await v1Stream('stuck', label);
    expect(v1.error).toBeInstanceOf(OpenAI.APIError);
    expect((v1.error as InstanceType<typeof OpenAI.APIError>).code).toBe('upstream_interrupted');
    expect(healthy.text.startsWith(v1.content) && v1.content.length > 0).toBe(true);
    expect(v1.usages).toEqual([]);

    // On the wire, as CONTRACT.md says: `data: {"error": {...}}` before the connection closes.
    const response = await fetch(`${testApp.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stuck', messages: messagesOf(label), stream: true }),
    });
    const raw = await response.text();
    const data = raw
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => line.slice('data: '.length));
    expect({ status: response.status, last: data.at(-1) }).toEqual({
      status: 200,
      last: expect.stringMatching(/^\{"error":\{.*"code":"upstream_interrupted"/),
    });
    expect(data).not.toContain('[DONE]');
  });
});

describe('hedging: a late first token starts the same request on the next deployment', () => {
  it.each(['sse', 'io', 'v1'] as const)(
    '%s: the quick deployment wins well before the slow one would have, and the slow attempt is aborted',
    async (surface) => {
      const label = `hedging on ${surface}`;
      const healthy = await healthyAnswer(label);
      const slowBefore = testApp.simulator.deploymentStats('slow').total;
      const hedges = async () => ({
        started: await metric(/^llm_gateway_upstream_hedges_total\{outcome="started"\}/),
        won: await metric(/^llm_gateway_upstream_hedges_total\{outcome="won"\}/),
        lost: await metric(/^llm_gateway_upstream_hedges_total\{outcome="lost"\}/),
        routed: await metric(/^llm_gateway_upstream_routes_total\{reason="hedge",deployment="quick"\}/),
      });
      const hedgesBefore = await hedges();

      let firstTokenMs: number | undefined;
      if (surface === 'v1') {
        const v1 = await v1Stream('hedged', label);
        expectOneOpenAiStream(v1, healthy, 'sim-backup', 'hedge');
        firstTokenMs = v1.firstTokenMs;
      } else {
        const result = await ourStream(surface, 'hedged', label);
        expectRescued(result.events, {
          ...healthy,
          reason: 'hedge',
          code: undefined,
          model: 'sim-backup',
          deployment: 'quick',
          afterTokens: 0,
        });
        firstTokenMs = result.firstTokenMs;
      }
      // Relative to what is configured, not a tight wall-clock bound: the hedge started after HEDGE_AFTER_MS, and
      // its answer came long before the slow deployment's first token.
      expect(firstTokenMs).toBeGreaterThanOrEqual(HEDGE_AFTER_MS);
      expect(firstTokenMs).toBeLessThan(SLOW_FIRST_TOKEN_MS / 2);

      const slowAttempt = () => testApp.simulator.deploymentStats('slow').requests.at(-1);
      await eventually(() => slowAttempt()?.aborted === true, 5000).catch(() => {
        throw new Error(`the slow attempt was not aborted: ${JSON.stringify(slowAttempt())}`);
      });
      expect(testApp.simulator.deploymentStats('slow').total).toBe(slowBefore + 1);
      expect(slowAttempt()?.contentTokens).toBe(0);
      // Counted: one hedge started, won by the hedge, the first attempt lost; one stream moved to `quick`.
      const hedgesAfter = await hedges();
      expect({
        started: hedgesAfter.started - hedgesBefore.started,
        won: hedgesAfter.won - hedgesBefore.won,
        lost: hedgesAfter.lost - hedgesBefore.lost,
        routed: hedgesAfter.routed - hedgesBefore.routed,
      }).toEqual({ started: 1, won: 1, lost: 1, routed: 1 });
    },
  );
});

describe('a stream stopped while its attempts race for the first token aborts every one of them', () => {
  /** Resolves once both deployments have a request open: the hedge has started, and neither gave a token. */
  const bothRacing = async (before: { a: number; b: number }) => {
    const last = () => ({
      a: testApp.simulator.deploymentStats('late-a'),
      b: testApp.simulator.deploymentStats('late-b'),
    });
    await eventually(() => last().a.total > before.a && last().b.total > before.b, 5000).catch(() => {
      throw new Error(`the hedge did not start: ${JSON.stringify(last())}`);
    });
  };
  const totals = () => ({
    a: testApp.simulator.deploymentStats('late-a').total,
    b: testApp.simulator.deploymentStats('late-b').total,
  });
  const bothAborted = async () => {
    const last = () => [
      testApp.simulator.deploymentStats('late-a').requests.at(-1),
      testApp.simulator.deploymentStats('late-b').requests.at(-1),
    ];
    await eventually(() => last().every((request) => request?.aborted === true), 5000).catch(() => {
      throw new Error(`not every attempt was aborted: ${JSON.stringify(last())}`);
    });
  };

  it('SSE: DELETE cancels, the stream ends done/cancelled, both upstream requests aborted', async () => {
    const before = totals();
    const streamIds: string[] = [];
    const run = postStream(
      testApp.url,
      { model: 'all-late', messages: messagesOf('cancelled while hedging') },
      { onEvent: (event) => streamIds.push(event.streamId) },
    );
    await bothRacing(before);

    const cancelled = await fetch(`${testApp.url}/api/completions/${streamIds[0]}`, { method: 'DELETE' });
    const { events } = await run;

    expect(cancelled.status).toBeLessThan(300);
    const trace = seen(events);
    expect({ last: events.at(-1), trace }).toEqual({
      last: expect.objectContaining({ type: 'done', finishReason: 'cancelled' }),
      trace,
    });
    await bothAborted();
  });

  it('/v1: a client that leaves aborts both attempts', async () => {
    const before = totals();
    const leave = new AbortController();
    const run = fetch(`${testApp.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'all-late', messages: messagesOf('left while hedging'), stream: true }),
      signal: leave.signal,
    }).catch((error: unknown) => error);
    await bothRacing(before);

    leave.abort();
    await run;

    await bothAborted();
  });
});

describe('a 400 refusal goes to the fallback configured for its code, or reaches the client with its code', () => {
  it('context_length_exceeded goes to the fallback with `on: [context_length_exceeded]`', async () => {
    const label = 'a prompt too long for the first model';
    const healthy = await healthyAnswer(label);

    for (const surface of ['sse', 'io'] as const) {
      const { events } = await ourStream(surface, 'long-prompt', label);
      expectRescued(events, {
        ...healthy,
        reason: 'fallback',
        code: 'upstream_rejected',
        model: 'sim-large',
        deployment: 'long-context',
        afterTokens: 0,
      });
    }
    expectOneOpenAiStream(await v1Stream('long-prompt', label), healthy, 'sim-large', 'fallback');
  });

  it('without such a fallback: error.upstream.code on SSE and Socket.IO, a 400 in OpenAI shape on /v1', async () => {
    const label = 'a prompt too long for the only model';
    const before = testApp.simulator.deploymentStats('short-context').total;

    for (const surface of ['sse', 'io'] as const) {
      const { events } = await ourStream(surface, 'long-prompt-alone', label);
      const trace = seen(events);
      expect({ types: events.map((event) => event.type), trace }).toEqual({
        types: ['start', 'error'],
        trace,
      });
      expect((events[1] as { error: StreamError }).error).toEqual(
        expect.objectContaining({
          code: 'upstream_rejected',
          retryable: false,
          upstream: expect.objectContaining({ code: 'context_length_exceeded' }),
        }),
      );
    }
    const v1 = await v1Stream('long-prompt-alone', label);
    expect(v1.error).toBeInstanceOf(OpenAI.BadRequestError);
    const refusal = v1.error as InstanceType<typeof OpenAI.BadRequestError>;
    expect({ status: refusal.status, code: refusal.code, type: refusal.type }).toEqual({
      status: 400,
      code: 'context_length_exceeded',
      type: 'invalid_request_error',
    });
    // A 400 is never retried on the same model: one request per surface reached the deployment.
    expect(testApp.simulator.deploymentStats('short-context').total).toBe(before + SURFACES.length);
  });
});

describe('with a table, only its public models are served', () => {
  it('an unknown model: SSE 400 invalid_request, Socket.IO ack invalid_request, /v1 404 model_not_found', async () => {
    const request = { model: 'no-such-model', messages: messagesOf('an unknown model') };

    const sse = await postStream(testApp.url, request);
    expect({ status: sse.status, type: sse.headers.get('content-type') }).toEqual({
      status: 400,
      type: expect.stringMatching(/^application\/problem\+json/),
    });
    expect(JSON.parse(sse.raw)).toEqual(expect.objectContaining({ code: 'invalid_request' }));

    const { ack } = await streamOver(socket, request);
    expect(ack).toEqual({ ok: false, error: expect.objectContaining({ code: 'invalid_request' }) });

    const v1 = await openai.chat.completions
      .create({ model: 'no-such-model', messages: messagesOf('an unknown model') })
      .catch((error: unknown) => error);
    expect(v1).toBeInstanceOf(OpenAI.NotFoundError);
    expect((v1 as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
  });

  it('GET /v1/models and GET /api/info list the public names', async () => {
    const listed = [];
    for await (const model of openai.models.list()) {
      listed.push(model.id);
    }
    expect(listed.sort()).toEqual([...PUBLIC_MODELS].sort());

    const info = (await (await fetch(`${testApp.url}/api/info`)).json()) as { models?: string[] };
    expect(info.models?.slice().sort()).toEqual([...PUBLIC_MODELS].sort());
  });
});

describe('in a server process, as production runs it', () => {
  let server: ServerProcess | undefined;
  afterAll(() => server?.kill());

  it('a deployment that sends no response header in time: fallback, with upstream_timeout', async () => {
    const table = {
      deployments: {
        silent: { simulator: { beforeHeaders: { action: 'silence' } }, headersTimeoutMs: 300 },
        backup: simulated(),
      },
      models: {
        chat: {
          targets: [{ deployment: 'silent', model: 'sim-primary' }],
          fallbacks: [{ deployment: 'backup', model: 'sim-backup' }],
        },
      },
    };
    server = await startServerProcess({
      UPSTREAMS_FILE: writeTable('silent.json', JSON.stringify(table)),
      LOG_LEVEL: 'silent',
    });

    const { events } = await postStream(server.url, { messages: messagesOf('a silent deployment') });

    const trace = seen(events);
    expect({
      route: events.find((event) => event.type === 'route'),
      last: events.at(-1)?.type,
      trace,
    }).toEqual({
      route: expect.objectContaining({ reason: 'fallback', code: 'upstream_timeout', deployment: 'backup' }),
      last: 'done',
      trace,
    });
  });
});

describe('a bad table stops the server with one line naming the field', () => {
  /** Starts `main.ts` as production does, and resolves with its exit code and everything it printed. */
  async function startAndExit(tablePath: string): Promise<{ code: number | null; output: string }> {
    const child = spawn(
      process.execPath,
      ['--import', join(ROOT, 'test/support/typescript-hooks.mjs'), join(ROOT, 'apps/api/src/main.ts')],
      {
        cwd: tmpdir(),
        env: {
          PATH: process.env.PATH,
          PORT: '0',
          HOST: '127.0.0.1',
          WEB_ROOT: '/nonexistent',
          UPSTREAMS_FILE: tablePath,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    return { code, output };
  }

  const healthyTable = {
    deployments: { one: { simulator: {} } },
    models: { chat: { targets: [{ deployment: 'one', model: 'sim' }] } },
  };

  it.each([
    [
      'an unknown field',
      { ...healthyTable, deployments: { one: { simulator: {}, colour: 'blue' } } },
      /^Invalid configuration: UPSTREAMS_FILE: deployments\.one: .*colour.*\n$/,
    ],
    [
      'a target naming no deployment',
      { ...healthyTable, models: { chat: { targets: [{ deployment: 'two', model: 'sim' }] } } },
      /^Invalid configuration: UPSTREAMS_FILE: models\.chat\.targets\.0\.deployment: names no deployment \(one\)\n$/,
    ],
    [
      'a bad fault profile',
      { ...healthyTable, deployments: { one: { simulator: { refuse: { status: 418 } } } } },
      /^Invalid configuration: UPSTREAMS_FILE: deployments\.one\.simulator\.refuse\.status: [^\n]+\n$/,
    ],
  ])(
    '%s',
    async (_case, table, line) => {
      const { code, output } = await startAndExit(
        writeTable(`bad-${_case.replace(/\W/g, '-')}.json`, JSON.stringify(table)),
      );

      expect({ code, output }).toEqual({ code: 1, output: expect.stringMatching(line) });
      expect(output).not.toMatch(/\n\s+at /);
    },
    30_000,
  );
});

describe('examples/upstreams.yaml', () => {
  let example: TestApp;
  beforeAll(async () => {
    example = await startTestApp({ UPSTREAMS_FILE: join(ROOT, 'examples/upstreams.yaml') });
  });
  afterAll(() => example?.close());

  /** The example's pace is `realistic`; a directive in the prompt speeds the tokens up, not its faults. */
  const exampleStream = (model: string | undefined, label: string) =>
    postStream(example.url, {
      ...(model === undefined ? {} : { model }),
      messages: [{ role: 'user', content: `${label} [sim tokens=${TOKENS * 2} tps=1000]` }],
    });

  it('loads, lists its models, and serves a continuation on the default model', async () => {
    const info = (await (await fetch(`${example.url}/api/info`)).json()) as { models?: string[] };
    expect(info.models).toEqual(['chat', 'chat-fallback', 'chat-hedged']);

    const { events } = await exampleStream(undefined, 'the example table');
    const trace = seen(events);
    expect({
      routes: events.filter((event) => event.type === 'route').map((event) => event.reason),
      terminals: events.filter((event) => event.type === 'done' || event.type === 'error').length,
      last: events.at(-1)?.type,
      trace,
    }).toEqual({ routes: ['continuation'], terminals: 1, last: 'done', trace });
  });

  it('serves a fallback on chat-fallback', async () => {
    const { events } = await exampleStream('chat-fallback', 'the example table');
    const trace = seen(events);
    expect({
      route: events.find((event) => event.type === 'route'),
      last: events.at(-1)?.type,
      trace,
    }).toEqual({
      route: expect.objectContaining({ reason: 'fallback', deployment: 'steady' }),
      last: 'done',
      trace,
    });
  });

  it('hedges a late first token on chat-hedged (half of them are late: a few requests show one)', async () => {
    const reasons: string[][] = [];
    // `slow` draws which first tokens are late from a sequence seeded by its name: the same requests each run.
    while (!reasons.some((routes) => routes.includes('hedge')) && reasons.length < 8) {
      const { events } = await exampleStream('chat-hedged', `hedging in the example ${reasons.length}`);
      expect(events.at(-1)?.type).toBe('done');
      reasons.push(events.filter((event) => event.type === 'route').map((event) => event.reason));
    }
    expect(reasons).toContainEqual(['hedge']);
  });
});
