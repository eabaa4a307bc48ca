import { epochNow } from '@app/clock';
import type { ProviderChunk } from '@app/completion';
import { type UpstreamTableFile, parseUpstreamTable } from '@app/config';
import fc from 'fast-check';
import { InMemoryDeploymentHealth } from './deployment-health';
import { UpstreamTable } from './deployments';
import { RoutingProvider } from './routing.provider';
import { ANSWER, type Behaviour, piecesOf, ScriptedDeployment } from './testing/scripted-deployment';
import { type RouterMetrics, UpstreamRouter } from './upstream-router';

/** Counts what the router reports, as Prometheus would. */
class CountingMetrics implements RouterMetrics {
  readonly counts = new Map<string, number>();
  upstreamAttempt(deployment: string, outcome: string) {
    this.add(`attempt ${deployment} ${outcome}`);
  }
  upstreamRouted(reason: string, deployment: string) {
    this.add(`route ${reason} ${deployment}`);
  }
  upstreamHedge(outcome: string) {
    this.add(`hedge ${outcome}`);
  }
  upstreamCooldown(deployment: string) {
    this.add(`cooldown ${deployment}`);
  }
  upstreamWastedTokens(deployment: string, tokens: number) {
    this.add(`wasted ${deployment}`, tokens);
  }
  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }
  private add(key: string, by = 1) {
    this.counts.set(key, this.get(key) + by);
  }
}

interface Outcome {
  text: string;
  chunks: ProviderChunk[];
  error?: { code: string; message: string; upstream?: unknown; retryAfterMs?: number };
}

const running: ScriptedDeployment[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((deployment) => deployment.stop()));
});

async function deployment(script: (index: number) => Behaviour): Promise<ScriptedDeployment> {
  const started = await ScriptedDeployment.start(script);
  running.push(started);
  return started;
}

const always = (behaviour: Behaviour) => () => behaviour;
const ok: Behaviour = { kind: 'answer' };
/** The first request behaves so, every later one answers. */
const once = (behaviour: Behaviour) => (index: number) => (index === 0 ? behaviour : ok);

function routerOf(table: Record<string, unknown>, metrics = new CountingMetrics()) {
  const file: UpstreamTableFile = parseUpstreamTable(table, {});
  const router = new UpstreamRouter(
    UpstreamTable.fromFile(file, { apiKeys: {}, firstTokenTimeoutMs: 2000 }),
    new InMemoryDeploymentHealth(),
    metrics,
  );
  return {
    router,
    metrics,
    provider: new RoutingProvider(router, { name: 'router', extractThinkTags: false }),
  };
}

/** Two deployments of one model: `primary` first (all the weight), then `secondary`, both able to continue. */
function pair(
  primary: ScriptedDeployment,
  secondary: ScriptedDeployment,
  extra: Record<string, unknown> = {},
) {
  return {
    deployments: {
      primary: { baseUrl: primary.baseUrl, continuation: 'continue_final_message', cooldownMs: 400 },
      secondary: { baseUrl: secondary.baseUrl, continuation: 'prefix' },
    },
    models: {
      chat: {
        targets: [{ deployment: 'primary', model: 'p-model' }],
        fallbacks: [{ deployment: 'secondary', model: 's-model' }],
        firstTokenTimeoutMs: 1500,
        ...extra,
      },
    },
  };
}

async function run(provider: RoutingProvider, prompt = 'tell me', signal = new AbortController().signal) {
  const outcome: Outcome = { text: '', chunks: [] };
  try {
    for await (const batch of provider.stream(
      { streamId: 's', model: 'chat', messages: [{ role: 'user', content: prompt }], maxTokens: 500 },
      signal,
    )) {
      for (const chunk of batch) {
        outcome.chunks.push(chunk);
        if (chunk.kind === 'text') {
          outcome.text += chunk.text;
        }
      }
    }
  } catch (error) {
    outcome.error = error as Outcome['error'];
  }
  return outcome;
}

const routes = (outcome: Outcome) => outcome.chunks.filter((chunk) => chunk.kind === 'route');

describe('UpstreamRouter before the first token', () => {
  it('moves on from a 500 to the fallback, which names its own model; the client learns the switch', async () => {
    const primary = await deployment(always({ kind: 'status', status: 500 }));
    const secondary = await deployment(always({ kind: 'answer', model: 'secondary-says' }));
    const { provider, metrics } = routerOf(pair(primary, secondary));

    const outcome = await run(provider);

    expect(outcome.error).toBeUndefined();
    expect(outcome.text).toBe(ANSWER);
    expect(routes(outcome)).toEqual([
      {
        kind: 'route',
        reason: 'fallback',
        deployment: 'secondary',
        model: 's-model',
        code: 'upstream_unavailable',
      },
    ]);
    expect(outcome.chunks.find((chunk) => chunk.kind === 'usage')).toMatchObject({
      usage: { completionTokens: piecesOf(ANSWER).length },
    });
    expect(primary.seen).toHaveLength(1);
    expect(metrics.get('attempt primary upstream_unavailable')).toBe(1);
    expect(metrics.get('route fallback secondary')).toBe(1);
  });

  it.each<[string, Behaviour]>([
    ['a reset before headers', { kind: 'reset' }],
    ['a 503', { kind: 'status', status: 503 }],
    ['a 429 without Retry-After', { kind: 'status', status: 429 }],
    ['no first token in time', { kind: 'answer', firstTokenDelayMs: 5000 }],
    ['an end before any token', { kind: 'no-finish', after: 0 }],
  ])('moves on after %s, and aborts what it left', async (_name, behaviour) => {
    const primary = await deployment(always(behaviour));
    const secondary = await deployment(always(ok));
    const { provider } = routerOf(pair(primary, secondary, { firstTokenTimeoutMs: 300 }));

    const outcome = await run(provider);

    expect(outcome.text).toBe(ANSWER);
    expect(routes(outcome)).toHaveLength(1);
    expect(primary.seen).toHaveLength(1);
    expect(secondary.seen).toHaveLength(1);
  });

  it('gives up on a silent deployment at its headers timeout', async () => {
    const primary = await deployment(always({ kind: 'silent' }));
    const secondary = await deployment(always(ok));
    const table = pair(primary, secondary);
    (table.deployments.primary as Record<string, unknown>)['headersTimeoutMs'] = 200;
    const { provider } = routerOf(table);

    const started = performance.now();
    const outcome = await run(provider);

    expect(outcome.text).toBe(ANSWER);
    expect(performance.now() - started).toBeGreaterThanOrEqual(195);
    await waitFor(
      () => primary.seen[0]?.aborted === true,
      () => JSON.stringify(primary.seen),
    );
  });

  it("honours a 429's Retry-After on the only deployment: waits it out, then answers", async () => {
    const only = await deployment(
      once({ kind: 'status', status: 429, headers: { 'retry-after-ms': '300' } }),
    );
    const { provider } = routerOf({
      deployments: { only: { baseUrl: only.baseUrl } },
      models: { chat: { targets: [{ deployment: 'only', model: 'm' }] } },
    });

    const outcome = await run(provider);

    expect(outcome.text).toBe(ANSWER);
    expect(only.seen[1].at - only.seen[0].at).toBeGreaterThanOrEqual(295);
  });

  it('never hammers a persistent 429: a bounded number of spaced attempts, then the retry hint', async () => {
    const only = await deployment(always({ kind: 'status', status: 429 }));
    const { provider } = routerOf({
      deployments: { only: { baseUrl: only.baseUrl } },
      models: { chat: { targets: [{ deployment: 'only', model: 'm' }], maxAttempts: 3 } },
    });

    const outcome = await run(provider);

    expect(outcome.error).toMatchObject({ code: 'upstream_rate_limited' });
    expect(only.seen).toHaveLength(3);
    const gaps = only.seen.slice(1).map((seen, index) => seen.at - only.seen[index].at);
    expect(gaps[0]).toBeGreaterThanOrEqual(370);
    expect(gaps[1]).toBeGreaterThan(gaps[0]);
  });

  it('sends a context-length refusal to the larger model only, and never retries it on the same one', async () => {
    const refusal: Behaviour = {
      kind: 'status',
      status: 400,
      error: { code: 'context_length_exceeded', param: 'messages', type: 'invalid_request_error' },
    };
    const primary = await deployment(always(refusal));
    const other = await deployment(always(ok));
    const large = await deployment(always(ok));
    const { provider } = routerOf({
      deployments: {
        primary: { baseUrl: primary.baseUrl },
        other: { baseUrl: other.baseUrl },
        large: { baseUrl: large.baseUrl },
      },
      models: {
        chat: {
          targets: [{ deployment: 'primary', model: 'small' }],
          fallbacks: [
            { deployment: 'other', model: 'small' },
            { deployment: 'large', model: 'large-128k', on: ['context_length_exceeded'] },
          ],
        },
      },
    });

    const outcome = await run(provider);

    expect(outcome.text).toBe(ANSWER);
    expect(routes(outcome)).toEqual([
      {
        kind: 'route',
        reason: 'fallback',
        deployment: 'large',
        model: 'large-128k',
        code: 'upstream_rejected',
      },
    ]);
    expect([primary.seen.length, other.seen.length, large.seen.length]).toEqual([1, 0, 1]);
  });

  it("passes a content-filter refusal back with the upstream's code, nothing retried", async () => {
    const filter: Behaviour = {
      kind: 'status',
      status: 400,
      error: { code: 'content_filter', param: 'prompt', message: 'sk-secret-in-message' },
    };
    const primary = await deployment(always(filter));
    const secondary = await deployment(always(ok));
    const { provider } = routerOf(pair(primary, secondary));

    const outcome = await run(provider);

    expect(outcome.error).toMatchObject({
      code: 'upstream_rejected',
      upstream: { code: 'content_filter', param: 'prompt' },
    });
    expect(outcome.error?.message).not.toContain('sk-secret');
    expect([primary.seen.length, secondary.seen.length]).toEqual([1, 0]);
  });

  it('puts a primary that is down aside, probes it after the cooldown, and gives it its traffic back', async () => {
    let downUntil = performance.now() + 600;
    const primary = await deployment(() =>
      performance.now() < downUntil ? { kind: 'status', status: 503 } : ok,
    );
    const secondary = await deployment(always(ok));
    const { provider, metrics } = routerOf(pair(primary, secondary));

    const served: string[] = [];
    for (let request = 0; request < 20; request++) {
      const outcome = await run(provider);
      expect(outcome.text).toBe(ANSWER);
      served.push(routes(outcome).length === 0 ? 'primary' : 'secondary');
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    downUntil = 0;

    // Two failures put it aside (allowedFails 1); it is probed once per cooldown, not on every request.
    expect(metrics.get('cooldown primary')).toBeGreaterThanOrEqual(1);
    expect(primary.seen.filter((seen) => seen.status === 503).length).toBeLessThanOrEqual(4);
    expect(served.slice(-5)).toEqual(['primary', 'primary', 'primary', 'primary', 'primary']);
  });
});

describe('UpstreamRouter hedging', () => {
  it('starts a hedge when the first token is late: the first real token wins, the loser is aborted', async () => {
    const primary = await deployment(always({ kind: 'answer', firstTokenDelayMs: 1200 }));
    const secondary = await deployment(always(ok));
    const { provider, metrics } = routerOf(pair(primary, secondary, { hedgeAfterMs: 100 }));

    const outcome = await run(provider);

    expect(outcome.text).toBe(ANSWER);
    expect(routes(outcome)).toEqual([
      { kind: 'route', reason: 'hedge', deployment: 'secondary', model: 's-model' },
    ]);
    await waitFor(
      () => primary.seen[0]?.aborted === true,
      () => JSON.stringify(primary.seen),
    );
    expect(metrics.get('hedge started')).toBe(1);
    expect(metrics.get('hedge won')).toBe(1);
    expect(metrics.get('hedge lost')).toBe(1);
  });

  it('keeps the first attempt when it answers before the hedge is due', async () => {
    const primary = await deployment(always(ok));
    const secondary = await deployment(always(ok));
    const { provider } = routerOf(pair(primary, secondary, { hedgeAfterMs: 1000 }));

    const outcome = await run(provider);

    expect(routes(outcome)).toEqual([]);
    expect(secondary.seen).toHaveLength(0);
  });
});

describe('UpstreamRouter and the probe of a deployment put aside', () => {
  /** The router, with `name` put aside a cooldown (1 s) ago: its probe is due, and held for 1 s once taken. */
  function withProbeDue(table: Record<string, unknown>, name = 'primary') {
    const routed = routerOf(table);
    const health = routed.router.health as InMemoryDeploymentHealth;
    health.coolDown(name, epochNow() - 1000, 1000);
    expect(health.peek(name, epochNow())).toBe('probe');
    return { ...routed, health };
  }

  it('gives the probe back when its client leaves, which is no failure of the deployment', async () => {
    const primary = await deployment(always({ kind: 'answer', firstTokenDelayMs: 1000 }));
    const secondary = await deployment(always(ok));
    const { provider, health, metrics } = withProbeDue(pair(primary, secondary));

    const client = new AbortController();
    const leaving = run(provider, 'tell me', client.signal);
    await waitFor(
      () => primary.seen.length === 1,
      () => JSON.stringify(primary.seen),
    );
    const whileOut = health.peek('primary', epochNow());
    client.abort();
    await leaving;

    // The probe was out, then given back unanswered: the next request may probe at once.
    expect({ whileOut, after: health.peek('primary', epochNow()), counts: [...metrics.counts] }).toEqual({
      whileOut: 'cooling',
      after: 'probe',
      counts: [],
    });
    expect(secondary.seen).toHaveLength(0);
  });

  it('gives the probe back when the request is refused: a refusal says nothing of the deployment', async () => {
    const primary = await deployment(once({ kind: 'status', status: 400, error: { code: 'invalid_value' } }));
    const secondary = await deployment(always(ok));
    const { provider, health } = withProbeDue(pair(primary, secondary));

    const outcome = await run(provider);

    expect(outcome.error).toMatchObject({ code: 'upstream_rejected' });
    expect(health.peek('primary', epochNow())).toBe('probe');
    // Still put aside: only an answer brings it back, which the next request's probe gives.
    expect((await run(provider)).text).toBe(ANSWER);
    expect(primary.seen.map((seen) => seen.status)).toEqual([400, 200]);
    expect(health.peek('primary', epochNow())).toBe('go');
  });

  it('keeps the deployment aside when its probe loses to a hedge, rather than probing it on every request', async () => {
    const primary = await deployment(always({ kind: 'answer', firstTokenDelayMs: 1200 }));
    const secondary = await deployment(always(ok));
    const { provider, health } = withProbeDue(pair(primary, secondary, { hedgeAfterMs: 100 }));

    const first = await run(provider);
    const second = await run(provider);

    expect([first.text, second.text]).toEqual([ANSWER, ANSWER]);
    expect(routes(first)).toMatchObject([{ reason: 'hedge', deployment: 'secondary' }]);
    // The second request went to secondary straight away: no probe, no hedge's wait.
    expect([primary.seen.length, secondary.seen.length, routes(second).length]).toEqual([1, 2, 0]);
    expect(health.peek('primary', epochNow())).toBe('cooling');
  });

  it('takes no probe when it only ranks the deployments that could continue an answer', async () => {
    const primary = await deployment(always({ kind: 'cut', after: 5 }));
    const secondary = await deployment(always(ok));
    const tertiary = await deployment(always(ok));
    const { provider, health } = withProbeDue(
      {
        deployments: {
          primary: { baseUrl: primary.baseUrl, continuation: 'continue_final_message' },
          secondary: { baseUrl: secondary.baseUrl, continuation: 'prefix' },
          tertiary: { baseUrl: tertiary.baseUrl, continuation: 'prefix' },
        },
        models: {
          chat: {
            targets: [{ deployment: 'primary', model: 'p-model' }],
            fallbacks: [
              { deployment: 'secondary', model: 's-model' },
              { deployment: 'tertiary', model: 't-model' },
            ],
          },
        },
      },
      'tertiary',
    );

    const outcome = await run(provider);

    expect(outcome.text).toBe(ANSWER);
    expect(routes(outcome)).toMatchObject([{ reason: 'continuation', deployment: 'secondary' }]);
    // tertiary was ranked (its probe is due) but never tried: its probe is still there for the next request.
    expect(tertiary.seen).toHaveLength(0);
    expect(health.peek('tertiary', epochNow())).toBe('probe');
  });
});

describe('UpstreamRouter after content: continuation', () => {
  it.each<[string, Behaviour, string]>([
    ['a cut after 12 of the pieces', { kind: 'cut', after: 12 }, 'upstream_unavailable'],
    ['a stall with the connection open', { kind: 'stall', after: 12 }, 'upstream_timeout'],
    ['a malformed chunk', { kind: 'malformed', after: 12 }, 'upstream_protocol'],
    ['an end without finish_reason or [DONE]', { kind: 'no-finish', after: 12 }, 'upstream_protocol'],
  ])(
    'continues %s on a capable deployment: one answer, no repeat, no gap',
    async (_name, behaviour, code) => {
      const primary = await deployment(always(behaviour));
      const secondary = await deployment(always(ok));
      const table = pair(primary, secondary);
      (table.deployments.primary as Record<string, unknown>)['idleTimeoutMs'] = 300;
      const { provider, metrics } = routerOf(table);

      const outcome = await run(provider);

      expect(outcome.error).toBeUndefined();
      expect(outcome.text).toBe(ANSWER);
      expect(routes(outcome)).toEqual([
        { kind: 'route', reason: 'continuation', deployment: 'secondary', model: 's-model', code },
      ]);
      // The text so far went as the final assistant message, in the form the deployment declares (`prefix`).
      const messages = secondary.seen[0].body['messages'] as {
        role: string;
        content: string;
        prefix?: boolean;
      }[];
      expect(messages.at(-1)).toEqual({
        role: 'assistant',
        content: piecesOf(ANSWER).slice(0, 12).join(''),
        prefix: true,
      });
      expect(secondary.seen[0].body['max_tokens']).toBe(500 - 12);
      // Usage is the whole answer's: the pieces before the cut and the rest.
      expect(outcome.chunks.find((chunk) => chunk.kind === 'usage')).toMatchObject({
        usage: { completionTokens: piecesOf(ANSWER).length },
      });
      expect(metrics.get('route continuation secondary')).toBe(1);
    },
  );

  it('ends with upstream_interrupted naming the original fault when the fallback refuses the prefill', async () => {
    const primary = await deployment(always({ kind: 'cut', after: 5 }));
    const secondary = await deployment(
      always({ kind: 'status', status: 400, error: { code: 'invalid_value' } }),
    );
    const table = pair(primary, secondary);
    table.deployments.primary.continuation = 'none';
    const { provider } = routerOf(table);

    const outcome = await run(provider);

    expect(outcome.text).toBe(piecesOf(ANSWER).slice(0, 5).join(''));
    expect(outcome.error).toMatchObject({ code: 'upstream_interrupted' });
    expect(outcome.error?.message).toContain('the connection to the model was lost');
    expect(outcome.chunks.some((chunk) => chunk.kind === 'finish')).toBe(false);
    expect(secondary.seen.map((seen) => seen.continuation)).toEqual(['prefix']);
  });

  it('ends with upstream_interrupted when no deployment can continue', async () => {
    const primary = await deployment(always({ kind: 'cut', after: 5 }));
    const { provider } = routerOf({
      deployments: { primary: { baseUrl: primary.baseUrl } },
      models: { chat: { targets: [{ deployment: 'primary', model: 'm' }] } },
    });

    const outcome = await run(provider);

    expect(outcome.error).toMatchObject({ code: 'upstream_interrupted' });
    expect(primary.seen).toHaveLength(1);
  });

  it('delivers exactly the uninterrupted answer for any byte the stream is cut at', async () => {
    const streamBytes = Buffer.byteLength(ANSWER) + piecesOf(ANSWER).length * 150;
    let cutAt = 0;
    const primary = await deployment(() => ({ kind: 'cut-bytes', bytes: cutAt }));
    const secondary = await deployment(always(ok));
    const { provider } = routerOf(pair(primary, secondary));
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: streamBytes }), async (bytes) => {
        cutAt = bytes;
        const outcome = await run(provider);
        return outcome.error === undefined && outcome.text === ANSWER;
      }),
      { numRuns: 25 },
    );
  });
});

async function waitFor(check: () => boolean, seen: () => string, timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) {
      throw new Error(`not seen in time; saw ${seen()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
