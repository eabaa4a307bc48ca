/**
 * One target at one load point: a fresh load-generator process warms the target up, then, on `go`, runs the
 * point while this process samples the target's CPU and memory from /proc, and the machine's, so the figures say
 * what the target cost and how busy the rest of the machine was.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { LoadgenMessage, RunSpec, RunSummary } from '../load/measure.mts';
import { machineBusySeconds, processUsage, stopProcess, track } from './processes.mts';
import type { Exported } from './tracing.mts';
import { type UpstreamCounters, upstreamDifference, type upstreamSampler } from './upstream-tables.mts';

/** What a table target's upstreams were asked for during the run (the hedging point's cost). */
export interface UpstreamCost extends UpstreamCounters {
  /** Each request's prompt: what an extra request costs the upstream before it streams anything. */
  promptTokensPerRequest: number;
}

type Sampler = NonNullable<ReturnType<typeof upstreamSampler>>;

export interface TargetRun extends RunSummary {
  point: string;
  /** The target process's CPU seconds per 1,000 tokens delivered (the simulator's for `direct`). */
  cpuSecondsPer1kTokens: number | undefined;
  /** The target process's CPU milliseconds per stream run: the cost of a stream start at the one-by-one point. */
  cpuMsPerStream: number | undefined;
  /**
   * The target's RSS at the plateau minus its RSS before the run, per stream streaming then. The plateau: the
   * samples with at least 95 % of the most streams ever streaming at once (medians of both).
   */
  memoryPerStreamKb: number | undefined;
  /** The most streams streaming at once. */
  peakStreaming: number;
  /** CPU the rest of the machine used during the run (other than target, simulator and load generator), in cores. */
  backgroundCores: number;
  warmupErrors: number;
  /** At the hedging point: the requests and tokens the upstream deployments served. */
  upstream?: UpstreamCost;
  /** With --rounds: which round of the point this run was (from 1). */
  round?: number;
  /** For `gateway-sse+otel`: what the process exported over its life, warm-up included. */
  exported?: Exported;
}

interface Sample {
  streaming: number;
  rssBytes: number;
}

/** Below this, RSS noise (GC timing, lazy allocations) outweighs what the streams hold. */
const MIN_STREAMS_FOR_MEMORY = 100;
const LOADGEN = join(import.meta.dirname, '..', 'load', 'loadgen.mts');

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function median(values: number[]): number | undefined {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? undefined : sorted[Math.floor(sorted.length / 2)];
}

export async function measureTarget(
  spec: RunSpec,
  point: string,
  targetPid: number,
  simulatorPid: number,
  /** Processes the target needs whose CPU counts as its own (the Redis of a `+redis` target). */
  companionPids: number[] = [],
  upstream?: { sample: Sampler; promptTokensPerRequest: number },
): Promise<TargetRun> {
  const targetUsage = async () => {
    const usages = await Promise.all([targetPid, ...companionPids].map((pid) => processUsage(pid)));
    return {
      cpuSeconds: usages.reduce((sum, usage) => sum + usage.cpuSeconds, 0),
      rssBytes: usages[0].rssBytes,
    };
  };
  const loadgen = track(
    spawn(process.execPath, [LOADGEN, JSON.stringify(spec)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
  const samples: Sample[] = [];
  const sample = (streaming: number) =>
    processUsage(targetPid)
      .then(({ rssBytes }) => samples.push({ streaming, rssBytes }))
      .catch(() => undefined);
  // Warm-up (up to 15 s) plus the run's own deadline, plus slack: past it the load generator is killed.
  const hardLimit = setTimeout(() => loadgen.kill('SIGKILL'), spec.deadlineMs + 30_000);
  try {
    let warmup = { errors: 0, firstError: undefined as string | undefined };
    let before = { targetCpu: 0, targetRss: 0, simulatorCpu: 0, machineCpu: 0, at: 0 };
    let upstreamBefore: Awaited<ReturnType<Sampler>> | undefined;
    const summary = await new Promise<RunSummary>((resolve, reject) => {
      loadgen.on('message', (message: LoadgenMessage) => {
        if (message.kind === 'warmed') {
          warmup = message;
          void Promise.all([
            targetUsage(),
            processUsage(simulatorPid),
            machineBusySeconds(),
            upstream?.sample(),
          ]).then(([target, simulator, machine, upstreamSample]) => {
            upstreamBefore = upstreamSample;
            before = {
              targetCpu: target.cpuSeconds,
              targetRss: target.rssBytes,
              simulatorCpu: simulator.cpuSeconds,
              machineCpu: machine,
              at: performance.now(),
            };
            loadgen.send('go');
          }, reject);
        } else if (message.kind === 'streaming') {
          void sample(message.count);
        } else {
          resolve(message.summary);
        }
      });
      loadgen.once('exit', (code, signal) =>
        reject(
          new Error(`the load generator for ${spec.target} exited (${code ?? signal}) without a summary`),
        ),
      );
    });
    const [target, simulator, machine] = await Promise.all([
      targetUsage(),
      processUsage(simulatorPid),
      machineBusySeconds(),
    ]);
    // The losers' aborts reach the simulator a moment after the streams they lost to have ended.
    const upstreamAfter = upstream && (await sleep(300), await upstream.sample());
    const seconds = (performance.now() - before.at) / 1000;
    const targetCpu = target.cpuSeconds - before.targetCpu;
    const simulatorCpu = targetPid === simulatorPid ? 0 : simulator.cpuSeconds - before.simulatorCpu;
    const ours = targetCpu + simulatorCpu + summary.loadgenCores * (summary.wallMs / 1000);
    const peakStreaming = Math.max(0, ...samples.map((entry) => entry.streaming));
    const plateau = samples.filter((entry) => entry.streaming >= 0.95 * peakStreaming);
    const plateauRss = median(plateau.map((entry) => entry.rssBytes));
    const plateauStreams = median(plateau.map((entry) => entry.streaming));
    return {
      ...summary,
      point,
      cpuSecondsPer1kTokens:
        summary.tokensDelivered > 0 ? targetCpu / (summary.tokensDelivered / 1000) : undefined,
      cpuMsPerStream: summary.streams > 0 ? (targetCpu * 1000) / summary.streams : undefined,
      memoryPerStreamKb:
        peakStreaming >= MIN_STREAMS_FOR_MEMORY && plateauRss !== undefined && plateauStreams
          ? (plateauRss - before.targetRss) / plateauStreams / 1024
          : undefined,
      peakStreaming,
      backgroundCores: Math.max(0, (machine - before.machineCpu - ours) / seconds),
      warmupErrors: warmup.errors,
      ...(upstream && upstreamBefore && upstreamAfter
        ? {
            upstream: {
              ...upstreamDifference(upstreamBefore, upstreamAfter),
              promptTokensPerRequest: upstream.promptTokensPerRequest,
            },
          }
        : {}),
    };
  } finally {
    clearTimeout(hardLimit);
    await stopProcess(loadgen, 1000);
  }
}
