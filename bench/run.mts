/**
 * `npm run bench`: the gateway's SSE and Socket.IO transports against the zero-hop floor (`direct`) and minimal
 * relays, in one run. The simulator runs once; every target runs in a fresh process per load point, warmed up,
 * and every run gets a fresh load-generator process, so no process's CPU or memory is counted against another.
 * Writes a table to the terminal and JSON, a Markdown report and SVG charts to bench/results/ (bench/results/quick/
 * for --quick, the CI smoke run, which fails on any lost or garbled token, failed stream or span the traced target
 * did not export, and asserts no timing).
 * `--network` runs the network lab instead (bench/netlab/network-lab.mts: the Angular client in Chromium behind
 * nginx and a delay proxy), and --quick runs one cell of it after the load points.
 * Options: see USAGE in orchestrator/plan.mts.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { type RunSpec, streamPrompt, type Target } from './load/measure.mts';
import { budgets } from './orchestrator/budgets.mts';
import { ensureBuilt, SIMULATOR_MAIN } from './orchestrator/build.mts';
import { measureTarget, type TargetRun } from './orchestrator/measure-target.mts';
import {
  deadlineMs,
  gatewayArgs,
  type LoadPoint,
  type Options,
  parseOptions,
  runsAt,
} from './orchestrator/plan.mts';
import { type Server, startServer, stopAll, stopProcess } from './orchestrator/processes.mts';
import { type RedisProcess, startRedis } from './orchestrator/redis.mts';
import {
  BASELINE_TARGET,
  type Baseline,
  buildBaseline,
  exportedEveryStream,
  startOtlpSink,
  TRACED_TARGET,
  tracingEnv,
} from './orchestrator/tracing.mts';
import {
  removeTables,
  SIMULATOR_DEPLOYMENTS,
  tableEnv,
  upstreamSampler,
} from './orchestrator/upstream-tables.mts';
import { runNetworkLab } from './netlab/network-lab.mts';
import { barsSvg, latencyCdfSvg } from './report/charts.mts';
import { type BenchResults, markdown, terminalTable } from './report/report.mts';

const ROOT = join(import.meta.dirname, '..');
/**
 * Past this, remaining runs are skipped (and said so). Eleven targets over six points, the hedging point's five runs
 * and `gateway-sse+otel` at four points take about 26 minutes on the 2-core machine (one target over every point
 * about 2); the limit leaves room for a slow machine, no more. `--rounds` multiplies it: name the points and targets.
 */
const TIME_LIMIT_MS = 30 * 60_000;

/**
 * The text every stream of a point must deliver: the simulator's non-streamed answer to the same prompt (its text
 * is seeded by the prompt), stamps taken out. It takes the stream's duration, so every point is asked at once.
 */
async function expectedText(
  simulatorUrl: string,
  point: LoadPoint,
): Promise<{ text: string; promptTokens: number }> {
  const response = await fetch(`${simulatorUrl}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'simulator',
      messages: [
        {
          role: 'user',
          content: streamPrompt(point.tokens, point.tps, point.ttftMs),
        },
      ],
    }),
  });
  const body = (await response.json()) as {
    choices: { message: { content: string } }[];
    usage: { prompt_tokens: number };
  };
  return {
    text: body.choices[0].message.content.replace(/⟨\d+\.\d{3}⟩/g, ''),
    promptTokens: body.usage.prompt_tokens,
  };
}

type OtlpSink = Awaited<ReturnType<typeof startOtlpSink>>;

async function startTarget(
  target: Target,
  simulator: Server,
  options: Options,
  redis: RedisProcess | undefined,
  baseline: Baseline | undefined,
  sink: OtlpSink | undefined,
): Promise<Server> {
  // `openai` is the gateway too, measured on its /v1 surface.
  if (target.startsWith('gateway') || target === 'openai') {
    const profileDir = options.profile ? join(options.resultsDir, 'profiles') : undefined;
    const root = target === BASELINE_TARGET && baseline ? baseline.root : ROOT;
    const gateway = gatewayArgs(root, simulator.url, profileDir);
    const env = {
      ...gateway.env,
      ...(redis ? { REDIS_URL: redis.url } : {}),
      ...(sink ? tracingEnv(sink.url) : {}),
      ...(await tableEnv(target, simulator.url)),
    };
    return startServer(target, gateway.args, env, gateway.cwd);
  }
  const file = join(import.meta.dirname, 'baselines', `${target.replace('.', '-')}.mts`);
  return startServer(target, [file], { UPSTREAM: simulator.url });
}

function rotated<T>(list: readonly T[], by: number): T[] {
  const start = list.length === 0 ? 0 : by % list.length;
  return [...list.slice(start), ...list.slice(0, start)];
}

async function runAll(
  options: Options,
  simulator: Server,
  notes: string[],
  baseline: Baseline | undefined,
): Promise<TargetRun[]> {
  const started = performance.now();
  const runs: TargetRun[] = [];
  const texts = await Promise.all(options.points.map((point) => expectedText(simulator.url, point)));
  for (const [index, point] of options.points.entries()) {
    const { text, promptTokens } = texts[index];
    const targets = options.targets.filter((target) => runsAt(point, target));
    // A point with its own targets, none of them asked for: `direct` alone would measure nothing of the gateway.
    if (point.targets && targets.every((target) => target === 'direct')) continue;
    // Each round starts one target later than the one before (`direct` first always), so that no target is
    // always the one measured right after a heavy run or on a machine that has just gone quiet.
    const gateways = targets.filter((target) => target !== 'direct');
    const turns = Array.from({ length: options.rounds }, (_, round) =>
      [...targets.filter((target) => target === 'direct'), ...rotated(gateways, round)].map((target) => ({
        target,
        round,
      })),
    );
    for (const { target, round } of turns.flat()) {
      if (performance.now() - started > TIME_LIMIT_MS) {
        notes.push(
          `${point.name} ${target}${options.rounds > 1 ? ` round ${round + 1}` : ''}: skipped, the run had reached its ${TIME_LIMIT_MS / 60_000}-minute limit`,
        );
        continue;
      }
      // `direct` measures the simulator itself; every other target is a fresh process for this point.
      const redis = target.includes('+redis') ? await startRedis() : undefined;
      // The traced target's collector: a fresh sink per process, so its counts are that process's.
      const sink = target === TRACED_TARGET ? await startOtlpSink() : undefined;
      const server =
        target === 'direct'
          ? simulator
          : await startTarget(target, simulator, options, redis, baseline, sink);
      // The cross-instance point: a second instance on the same Redis, from which the clients follow.
      const follower = target.endsWith('-cross')
        ? await startTarget(target, simulator, options, redis, baseline, undefined)
        : undefined;
      let run: TargetRun | undefined;
      try {
        const spec: RunSpec = {
          target,
          url: follower ? `${server.url}|${follower.url}` : server.url,
          streams: point.streams,
          tokens: point.tokens,
          tps: point.tps,
          ttftMs: point.ttftMs ?? 0,
          openPerSecond: point.openPerSecond,
          oneByOne: point.oneByOne ?? false,
          expectedText: text,
          deadlineMs: deadlineMs(point),
        };
        const companions = [follower?.pid, redis?.pid].filter((pid) => pid !== undefined);
        const sampler = upstreamSampler(target, simulator.url, server.url);
        run = await measureTarget(
          spec,
          point.name,
          server.pid,
          simulator.pid,
          companions,
          sampler && { sample: sampler, promptTokensPerRequest: promptTokens },
        );
        if (options.rounds > 1) run.round = round + 1;
        runs.push(run);
        console.warn(
          `${point.name} ${target}: token p99 ${run.tokenLatencyMs.p99.toFixed(2)} ms, ` +
            `${run.tokensPerSecond.toFixed(0)} tokens/s, lost ${run.tokensLost}, garbled ${run.garbledStreams}, ` +
            `errors ${run.errors}${run.firstError ? ` (${run.firstError})` : ''}`,
        );
      } finally {
        if (server !== simulator) await stopProcess(server.child, options.profile ? 30_000 : 5000);
        if (follower) await stopProcess(follower.child, 5000);
        if (redis) await stopProcess(redis.child, 2000);
        if (sink) {
          // Stopping flushed what the SDK still held: the counts are the process's whole life.
          if (run) run.exported = sink.exported();
          await sink.close();
        }
      }
      // Let closed sockets drain out of the kernel and the simulator before the next target.
      await new Promise((resolve) => setTimeout(resolve, point.streams >= 500 ? 2000 : 300));
    }
  }
  return runs;
}

async function writeOutputs(options: Options, results: BenchResults): Promise<void> {
  await mkdir(options.resultsDir, { recursive: true });
  const charts: Record<string, string> = {
    'latency-cdf.svg': latencyCdfSvg(results.runs),
    'throughput.svg': barsSvg('Tokens delivered per second', results.runs, (run) => run.tokensPerSecond),
    'cpu.svg': barsSvg(
      'Target CPU seconds per 1,000 tokens',
      results.runs,
      (run) => run.cpuSecondsPer1kTokens,
    ),
  };
  const json = `${JSON.stringify(results, null, 2)}\n`;
  await Promise.all([
    writeFile(join(options.resultsDir, `${results.date.replace(/[:.]/g, '-')}.json`), json),
    writeFile(join(options.resultsDir, 'latest.json'), json),
    writeFile(join(options.resultsDir, 'report.md'), markdown(results, Object.keys(charts))),
    ...Object.entries(charts).map(([name, svg]) => writeFile(join(options.resultsDir, name), svg)),
  ]);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2), import.meta.dirname);
  await ensureBuilt(ROOT, options.build, join(import.meta.dirname, 'results'));
  if (options.network && !options.quick) {
    await runNetworkLab(ROOT, {
      quick: false,
      resultsDir: join(import.meta.dirname, 'results', 'network'),
      docsFile: join(ROOT, 'docs', 'transport-comparison.md'),
    });
    return;
  }
  const simulator = await startServer('simulator', [join(ROOT, SIMULATOR_MAIN)], {
    SIMULATOR_PORT: '0',
    SIMULATOR_HOST: '127.0.0.1',
    SIMULATOR_PROFILE: 'instant',
    // The hedging point's deployments, at /d/<name>/v1; /v1 stays the healthy default every other point uses.
    SIMULATOR_DEPLOYMENTS: JSON.stringify(SIMULATOR_DEPLOYMENTS),
  });
  const notes: string[] = [];
  const baseline = options.baseline === undefined ? undefined : await buildBaseline(ROOT, options.baseline);
  const runs = await runAll(options, simulator, notes, baseline);
  const memoryPoint = options.points.find((point) => point.memory)?.name;
  const results: BenchResults = {
    date: new Date().toISOString(),
    machine: `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${process.platform}`,
    quick: options.quick,
    points: options.points.map(({ name, streams, tps, tokens, openPerSecond }) => ({
      name,
      streams,
      tps,
      tokens,
      openPerSecond,
    })),
    runs,
    budgets: budgets(runs, memoryPoint),
    notes,
    ...(baseline && {
      baseline: `${BASELINE_TARGET} is ${baseline.ref}, commit ${baseline.commit}${baseline.dependencyNote ? `; ${baseline.dependencyNote}` : ''}.`,
    }),
  };
  await writeOutputs(options, results);
  console.warn(`\n${terminalTable(results)}\n\nreport: ${join(options.resultsDir, 'report.md')}`);
  const broken = runs.filter(
    (run) =>
      run.tokensLost > 0 ||
      run.garbledStreams > 0 ||
      run.errors > 0 ||
      run.warmupErrors > 0 ||
      // Tracing on must not lose spans under load either.
      !exportedEveryStream(run),
  );
  if (options.quick) {
    // One cell of the network lab (RTT 100 ms, HTTP/2, one tab, warm; each transport): it must run end to end.
    console.warn('\nnetwork lab, one cell:');
    await runNetworkLab(ROOT, {
      quick: true,
      resultsDir: join(options.resultsDir, 'network'),
      docsFile: null,
    });
  }
  if (options.quick && (broken.length > 0 || notes.length > 0)) {
    console.error(
      `smoke run failed: ${broken.map((run) => `${run.point} ${run.target}`).join(', ') || notes.join('; ')}`,
    );
    process.exitCode = 1;
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping every process the bench started`);
    void stopAll().finally(() => process.exit(130));
  });
}
main()
  .catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  })
  .finally(() => Promise.all([stopAll(), removeTables()]));
