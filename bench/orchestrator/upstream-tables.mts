/**
 * The targets that run the gateway on an upstream table (UPSTREAMS_FILE, docs/upstreams.md), the deployments the
 * bench simulator plays for them, and what their upstreams were asked for (the simulator's per-deployment stats and
 * the gateway's hedge counters), so a run can say what hedging cost in upstream requests and tokens.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Target } from '../load/measure.mts';

/** The env var the tables name by `apiKeyEnv`: the key is never written in a table. */
const KEY_ENV = 'BENCH_UPSTREAM_KEY';

/**
 * The hedging point's upstream: every first token `HEDGING_TTFT_MS` after the request (the simulator's TTFT is
 * exact, no jitter), and on the heavy-tailed deployments 10 % of them 3 s later still, drawn per request from a
 * sequence seeded by the deployment's name.
 */
export const HEDGING_TTFT_MS = 200;
const TAIL = { firstToken: { delayMs: 3000, probability: 0.1 } };
/**
 * Past the fast deployments' own TTFT (200 ms plus a few ms through the gateway) with room for a busy machine,
 * so only the slow first tokens are hedged: 10 % more requests. A hedged stream then waits this plus one TTFT.
 */
export const HEDGE_AFTER_MS = 300;
/**
 * Before the fast deployments' own TTFT: every stream starts a second request, and a slow first token costs at
 * most this plus one TTFT. The only setting that can meet "p99 within 1.5× of the fast deployments' p99" when
 * every healthy first token takes the same time (see docs/benchmarks.md).
 */
export const EARLY_HEDGE_AFTER_MS = 80;

/** The named deployments the bench simulator plays (`SIMULATOR_DEPLOYMENTS`), besides its healthy `/v1`. */
export const SIMULATOR_DEPLOYMENTS = {
  'fast-a': {},
  'fast-b': {},
  'tail-a': TAIL,
  'tail-b': TAIL,
};
type SimulatorDeployment = keyof typeof SIMULATOR_DEPLOYMENTS;

/** The hedging point's targets: the gateway on two deployments, fast, heavy-tailed, heavy-tailed and hedged. */
export const HEDGING_TARGETS = [
  'gateway-sse+fast',
  'gateway-sse+tail',
  'gateway-sse+tail+hedge',
  'gateway-sse+tail+hedge-early',
] as const satisfies readonly Target[];

interface TableShape {
  /** A named deployment of the simulator, or undefined for two deployments both on its healthy `/v1`. */
  deployments: [SimulatorDeployment, SimulatorDeployment] | undefined;
  hedgeAfterMs?: number;
}

const TABLES: Partial<Record<Target, TableShape>> = {
  // Issue 24's happy path: two deployments on the same upstream as `gateway-sse`, weights 1:1.
  'gateway-sse+table': { deployments: undefined },
  'gateway-sse+fast': { deployments: ['fast-a', 'fast-b'] },
  'gateway-sse+tail': { deployments: ['tail-a', 'tail-b'] },
  'gateway-sse+tail+hedge': { deployments: ['tail-a', 'tail-b'], hedgeAfterMs: HEDGE_AFTER_MS },
  'gateway-sse+tail+hedge-early': { deployments: ['tail-a', 'tail-b'], hedgeAfterMs: EARLY_HEDGE_AFTER_MS },
};

/** The simulator's base URL without `/v1`, where `/d/<name>/…` lives. */
const simulatorRoot = (simulatorUrl: string) => simulatorUrl.replace(/\/v1$/, '');

function tableFor(shape: TableShape, simulatorUrl: string) {
  const names = shape.deployments ?? ['a', 'b'];
  const deployment = (name: string) => ({
    baseUrl: shape.deployments ? `${simulatorRoot(simulatorUrl)}/d/${name}/v1` : simulatorUrl,
    apiKeyEnv: KEY_ENV,
    continuation: 'continue_final_message',
  });
  return {
    deployments: Object.fromEntries(names.map((name) => [name, deployment(name)])),
    models: {
      simulator: {
        targets: names.map((name) => ({ deployment: name, model: 'simulator', weight: 1 })),
        ...(shape.hedgeAfterMs === undefined ? {} : { hedgeAfterMs: shape.hedgeAfterMs }),
      },
    },
    defaultModel: 'simulator',
  };
}

let directory: string | undefined;

/** The env that puts a gateway target on its table (written to a temporary file), or {} for the others. */
export async function tableEnv(target: Target, simulatorUrl: string): Promise<Record<string, string>> {
  const shape = TABLES[target];
  if (!shape) return {};
  directory ??= await mkdtemp(join(tmpdir(), 'bench-upstreams-'));
  const file = join(directory, `${target.replace(/[^\w-]/g, '_')}.json`);
  await writeFile(file, JSON.stringify(tableFor(shape, simulatorUrl), null, 2));
  return { UPSTREAMS_FILE: file, [KEY_ENV]: 'bench' };
}

export async function removeTables(): Promise<void> {
  if (directory) await rm(directory, { recursive: true, force: true });
}

/** What a table target's upstreams did over a run: the difference of two `UpstreamCounters` samples. */
export interface UpstreamCounters {
  /** Chat-completion requests its deployments received (the simulator's count). */
  requests: number;
  /** Content tokens they sent, to requests the gateway later aborted too. */
  contentTokens: number;
  /** Requests the gateway closed before their end: the hedges' losers. */
  aborted: number;
  /** The gateway's `llm_gateway_upstream_hedges_total`. */
  hedgesStarted: number;
  hedgesWon: number;
  /** The gateway's `llm_gateway_upstream_wasted_tokens_total`: content a losing attempt had streamed. */
  wastedTokens: number;
}

interface DeploymentStats {
  total: number;
  requests: { contentTokens: number; aborted: boolean }[];
}

/** Sums a Prometheus counter's samples whose labels include `labels` (`outcome="won"`), or all of them. */
function counter(metrics: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of metrics.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(labels))
      sum += Number(line.slice(line.lastIndexOf(' ')));
  }
  return sum;
}

/**
 * A sampler of a table target's upstream counters, or undefined for a target whose upstream is not a named
 * deployment of the simulator (there the simulator keeps no count). The simulator keeps each deployment's latest
 * 10,000 requests: a sample reads them whole, and the difference counts the records that arrived since.
 */
export function upstreamSampler(
  target: Target,
  simulatorUrl: string,
  gatewayUrl: string,
): (() => Promise<{ counters: UpstreamCounters; records: Map<string, DeploymentStats> }>) | undefined {
  const names = TABLES[target]?.deployments;
  if (!names) return undefined;
  return async () => {
    const records = new Map<string, DeploymentStats>();
    for (const name of names) {
      const response = await fetch(`${simulatorRoot(simulatorUrl)}/d/${name}/stats`);
      records.set(name, (await response.json()) as DeploymentStats);
    }
    const metrics = await (await fetch(`${gatewayUrl}/metrics`)).text();
    return {
      records,
      counters: {
        requests: 0,
        contentTokens: 0,
        aborted: 0,
        hedgesStarted: counter(metrics, 'llm_gateway_upstream_hedges_total', 'outcome="started"'),
        hedgesWon: counter(metrics, 'llm_gateway_upstream_hedges_total', 'outcome="won"'),
        wastedTokens: counter(metrics, 'llm_gateway_upstream_wasted_tokens_total'),
      },
    };
  };
}

/** What happened between two samples of the same target. */
export function upstreamDifference(
  before: { counters: UpstreamCounters; records: Map<string, DeploymentStats> },
  after: { counters: UpstreamCounters; records: Map<string, DeploymentStats> },
): UpstreamCounters {
  const result: UpstreamCounters = {
    requests: 0,
    contentTokens: 0,
    aborted: 0,
    hedgesStarted: after.counters.hedgesStarted - before.counters.hedgesStarted,
    hedgesWon: after.counters.hedgesWon - before.counters.hedgesWon,
    wastedTokens: after.counters.wastedTokens - before.counters.wastedTokens,
  };
  for (const [name, stats] of after.records) {
    const arrived = stats.total - (before.records.get(name)?.total ?? 0);
    const since = arrived > 0 ? stats.requests.slice(-arrived) : [];
    result.requests += arrived;
    result.contentTokens += since.reduce((sum, request) => sum + request.contentTokens, 0);
    result.aborted += since.filter((request) => request.aborted).length;
  }
  return result;
}
