/** What a bench run measures: the command line, the load points, the targets and how each is started. */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TARGETS, type Target } from '../load/measure.mts';
import { GATEWAY_MAIN } from './build.mts';
import { BASELINE_TARGET, TRACING_TARGETS } from './tracing.mts';
import { HEDGING_TARGETS, HEDGING_TTFT_MS } from './upstream-tables.mts';

export interface LoadPoint {
  name: string;
  streams: number;
  tps: number;
  tokens: number;
  openPerSecond: number;
  /** The memory point: memory per open stream is its figure and its budget. */
  memory?: boolean;
  /**
   * The stream-start point: each stream is opened only once the previous one has ended, so what is measured is
   * the cost of starting one (TTFT over `direct`, CPU per stream), not how a target queues many.
   */
  oneByOne?: boolean;
  /** What `--points=` names it by, where its stream count alone would be ambiguous. */
  key?: string;
  /** The upstream's time to first token (0 when absent: the transport's own TTFT is what is measured). */
  ttftMs?: number;
  /** The only targets (besides `direct`) this point runs; they run at no other point. */
  targets?: readonly Target[];
}

export interface Options {
  quick: boolean;
  /** The network lab (bench/netlab/network-lab.mts) instead of the load points. */
  network: boolean;
  points: LoadPoint[];
  targets: Target[];
  /** Rebuild even when dist/ looks current. */
  build: boolean;
  /** Run the gateway under `node --cpu-prof`, profiles written to bench/results/profiles/. */
  profile: boolean;
  /** The commit `gateway-sse@baseline` is built from (`--baseline=<ref>`); without it that target is not run. */
  baseline: string | undefined;
  /**
   * Each point's targets run this many times, in turn (A B C, A B C, ...), so that a ratio between two of them can
   * be read per round and its spread seen: one run's CPU figures move by several per cent between runs.
   */
  rounds: number;
  resultsDir: string;
}

const QUICK_POINTS: LoadPoint[] = [
  { name: '1×50/s', streams: 1, tps: 50, tokens: 20, openPerSecond: 1000 },
  { name: '20×50/s', streams: 20, tps: 50, tokens: 20, openPerSecond: 1000 },
  { name: '50 starts', key: 'starts', streams: 50, tps: 1000, tokens: 1, openPerSecond: 10, oneByOne: true },
];

/**
 * Streams are opened at a steady rate, not all at once: a stream lasts 4 s (200 tokens at 50/s), and each point
 * opens its streams within the first half of that (1 s for 100, 2 s for 500 and 1,000), so every stream of the
 * point is open at once for at least 2 s. Opening faster measures how a target queues a connection burst (every
 * relay on two cores then waits hundreds of ms before its first token), not what it adds to a stream.
 */
const FULL_POINTS: LoadPoint[] = [
  { name: '1×50/s', streams: 1, tps: 50, tokens: 200, openPerSecond: 1 },
  { name: '100×50/s', streams: 100, tps: 50, tokens: 200, openPerSecond: 100 },
  { name: '500×50/s', streams: 500, tps: 50, tokens: 200, openPerSecond: 250 },
  { name: '1000×50/s', streams: 1000, tps: 50, tokens: 200, openPerSecond: 500 },
  // 200 tokens at 2/s would hold every target for 100 s. 40 tokens (20 s) opened at 500/s (10 s) still leave a
  // 10 s plateau with all 5,000 open; 2,500/s overflowed the listen backlog of every target, the raw ones too.
  { name: '5000×2/s', streams: 5000, tps: 2, tokens: 40, openPerSecond: 500, memory: true },
  // One-token streams one after another: `openPerSecond` here only sizes the deadline (100 s for the 1,000).
  {
    name: '1000 starts',
    key: 'starts',
    streams: 1000,
    tps: 1000,
    tokens: 1,
    openPerSecond: 10,
    oneByOne: true,
  },
  // Issue 24's heavy tail: short streams at a modest rate, so that TTFT is the upstream's and the hedge's, not a
  // queue's. Of 300 streams, p99 is the fourth slowest; at 20 opened a second a configuration takes about 20 s.
  {
    name: 'hedging',
    key: 'hedging',
    streams: 300,
    tps: 100,
    tokens: 20,
    openPerSecond: 20,
    ttftMs: HEDGING_TTFT_MS,
    targets: HEDGING_TARGETS,
  },
];

/** Whether `target` runs at `point`: a point with its own targets runs only those (and `direct`), the others none of them. */
export function runsAt(point: LoadPoint, target: Target): boolean {
  if (target === 'direct') return true;
  if (point.targets) return point.targets.includes(target);
  // Tracing's CPU ratios need many streams or many starts; memory is not what they are about.
  if (TRACING_TARGETS.includes(target)) return point.streams >= 20 && !point.memory;
  return !(HEDGING_TARGETS as readonly Target[]).includes(target);
}

const USAGE = `usage: npm run bench -- [--quick] [--network] [--points=1,100,...,starts,hedging] [--targets=gateway-sse,raw-sse,...] [--baseline=<git ref>] [--rounds=N] [--build] [--profile] [--results=dir]`;

export function parseOptions(argv: string[], benchDir: string): Options {
  const options: Options = {
    quick: false,
    network: false,
    points: FULL_POINTS,
    targets: [...TARGETS],
    build: false,
    profile: false,
    baseline: undefined,
    rounds: 1,
    resultsDir: join(benchDir, 'results'),
  };
  let pointFilter: string[] | undefined;
  let baselineAsked = false;
  for (const arg of argv) {
    const [flag, value] = arg.split('=', 2);
    if (flag === '--quick') options.quick = true;
    else if (flag === '--network') options.network = true;
    else if (flag === '--build') options.build = true;
    else if (flag === '--profile') options.profile = true;
    else if (flag === '--points' && value) pointFilter = value.split(',');
    else if (flag === '--results' && value) options.resultsDir = value;
    else if (flag === '--baseline' && value) options.baseline = value;
    else if (flag === '--rounds' && value && /^[1-9]\d*$/.test(value)) options.rounds = Number(value);
    else if (flag === '--targets' && value) {
      const targets = value.split(',');
      baselineAsked = targets.includes(BASELINE_TARGET);
      const unknown = targets.filter((target) => !(TARGETS as readonly string[]).includes(target));
      if (unknown.length > 0) throw new Error(`unknown target ${unknown.join(', ')}; ${USAGE}`);
      // `direct` is every figure's reference: always measured.
      options.targets = TARGETS.filter((target) => target === 'direct' || targets.includes(target));
    } else throw new Error(`unknown argument ${arg}; ${USAGE}`);
  }
  if (options.baseline === undefined) {
    if (baselineAsked) {
      throw new Error(`${BASELINE_TARGET} runs another commit's build: name it with --baseline=<git ref>`);
    }
    options.targets = options.targets.filter((target) => target !== BASELINE_TARGET);
  }
  const all = options.quick ? QUICK_POINTS : FULL_POINTS;
  options.points = pointFilter
    ? all.filter((point) => pointFilter.includes(point.key ?? String(point.streams)))
    : all;
  if (options.points.length === 0) {
    throw new Error(
      `no load point matches --points; choose among ${all.map((point) => point.key ?? point.streams).join(', ')}`,
    );
  }
  // A smoke run must not overwrite the committed results of the last full run.
  if (options.quick) options.resultsDir = join(options.resultsDir, 'quick');
  return options;
}

/** A stream still open this long after the first was opened is aborted and counted as an error. */
export function deadlineMs(point: LoadPoint): number {
  const rampSeconds = point.streams / point.openPerSecond;
  const streamSeconds = point.tokens / point.tps;
  return Math.round(((rampSeconds + streamSeconds) * 4 + 20) * 1000);
}

/**
 * The gateway as built for production: NODE_ENV=production, logs at warn, auth off (allowed explicitly, as
 * production requires), rate limits raised out of the way, the simulator as an OpenAI-compatible upstream through
 * the SDK, no web client to serve. Every other setting keeps its default. It runs in the OS temp directory so that
 * a developer's `.env` cannot change what is measured.
 */
export function gatewayArgs(root: string, simulatorUrl: string, profileDir: string | undefined) {
  return {
    args: [...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), join(root, GATEWAY_MAIN)],
    cwd: tmpdir(),
    env: {
      NODE_ENV: 'production',
      PORT: '0',
      HOST: '127.0.0.1',
      OPENAI_BASE_URL: simulatorUrl,
      OPENAI_API_KEY: 'bench',
      OPENAI_MODEL: 'simulator',
      LOG_LEVEL: 'warn',
      AUTH_MODE: 'none',
      AUTH_ALLOW_ANONYMOUS: 'true',
      RATE_LIMIT_PER_MINUTE: '1000000',
      RATE_LIMIT_CONCURRENT_STREAMS: '1000000',
      RATE_LIMIT_LISTENERS_PER_PRINCIPAL: '1000000',
      // Every load-generator connection comes from 127.0.0.1.
      SOCKET_MAX_CONNECTIONS_PER_ADDRESS: '1000000',
      WEB_ROOT: join(import.meta.dirname, 'no-web-client'),
    },
  };
}
