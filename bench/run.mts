/**
 * `npm run bench`: the simulator, the gateway as built for production, and the raw relays, each in its own
 * process on loopback; for every load point and target a fresh load-generator process. Writes a table to the
 * terminal, JSON, a Markdown report and SVG charts under bench/results/. `--quick`: a smoke run that checks that
 * no token is lost or garbled and that the report is produced, asserting no timing. `--points=1,100`: a subset.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type { RunSpec, RunSummary, Target } from './load/measure.mts';
import {
  barsSvg,
  type BenchResults,
  type Budget,
  latencyCdfSvg,
  markdown,
  type TargetRun,
  terminalTable,
} from './report/report.mts';

interface LoadPoint {
  name: string;
  streams: number;
  tps: number;
  tokens: number;
  openPerTick: number;
  /** The memory point: RSS per open stream is its figure. */
  memory?: boolean;
}

const quick = process.argv.includes('--quick');
const pointFilter = process.argv
  .find((arg) => arg.startsWith('--points='))
  ?.slice('--points='.length)
  .split(',');
const ALL_POINTS: LoadPoint[] = quick
  ? [
      { name: '1×50/s', streams: 1, tps: 50, tokens: 20, openPerTick: 1 },
      { name: '20×50/s', streams: 20, tps: 50, tokens: 20, openPerTick: 10 },
    ]
  : [
      { name: '1×50/s', streams: 1, tps: 50, tokens: 200, openPerTick: 1 },
      { name: '100×50/s', streams: 100, tps: 50, tokens: 200, openPerTick: 10 },
      { name: '500×50/s', streams: 500, tps: 50, tokens: 200, openPerTick: 10 },
      { name: '1000×50/s', streams: 1000, tps: 50, tokens: 200, openPerTick: 10 },
      // 200 tokens at 2/s would hold the point for 100 s; 40 tokens (20 s) keep every stream open at the plateau,
      // opened at 500/s: 2,500/s overflowed the listen backlog (somaxconn 4096) and failed connections.
      { name: '5000×2/s', streams: 5000, tps: 2, tokens: 40, openPerTick: 5, memory: true },
    ];
const POINTS = ALL_POINTS.filter((point) => !pointFilter || pointFilter.includes(String(point.streams)));
const TARGETS: Target[] = [
  'direct',
  'raw-sse',
  'gateway-sse',
  'raw-socket.io',
  'gateway-socket.io',
  'raw-ws',
];
const RESULTS = join(import.meta.dirname, 'results');
const children: ChildProcess[] = [];

function start(
  name: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ url: string; process: ChildProcess }> {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${output}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/[^\s/]+(?:\/v1)?)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ url: match[1], process: child });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}:\n${output}`)));
  });
}

/** utime + stime of a process, in seconds, and its resident set, in bytes. */
async function usage(pid: number): Promise<{ cpu: number; rss: number }> {
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  // Fields 14 and 15 of /proc/pid/stat (12 and 13 after the command name), in clock ticks of 1/100 s.
  return { cpu: (Number(stat[11]) + Number(stat[12])) / 100, rss: rssKb * 1024 };
}

function loadgen(spec: RunSpec): Promise<RunSummary> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(import.meta.dirname, 'load', 'loadgen.mts'), JSON.stringify(spec)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    children.push(child);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code) =>
      code === 0
        ? resolve(JSON.parse(output.trim().split('\n').at(-1) ?? '{}') as RunSummary)
        : reject(new Error(`loadgen exited ${code}`)),
    );
  });
}

/** The text every stream of a point must deliver, byte for byte. */
async function probeText(simulatorUrl: string, tokens: number, tps: number): Promise<string> {
  // The same prompt, not streamed: the simulator's text for it, with the emission stamps taken out.
  const response = await fetch(`${simulatorUrl}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'simulator',
      messages: [
        { role: 'user', content: `[sim emit_ts tokens=${tokens} tps=${tps} ttft=0 jitter=0] benchmark` },
      ],
    }),
  });
  const content = ((await response.json()) as { choices: { message: { content: string } }[] }).choices[0]
    .message.content;
  return content.replace(/⟨\d+\.\d{3}⟩/g, '');
}

function budgets(runs: TargetRun[]): Budget[] {
  const find = (point: string, target: Target) =>
    runs.find((run) => run.point === point && run.target === target);
  const list: Budget[] = [];
  for (const point of [...new Set(runs.map((run) => run.point))]) {
    for (const [gateway, raw] of [
      ['gateway-sse', 'raw-sse'],
      ['gateway-socket.io', 'raw-socket.io'],
    ] as const) {
      const ours = find(point, gateway);
      const floor = find(point, raw);
      if (!ours || !floor) continue;
      const latency = ours.tokenLatencyMs.p99 / floor.tokenLatencyMs.p99;
      list.push({
        name: `${gateway} token p99 ≤ 1.5× ${raw}`,
        point,
        measured: `${latency.toFixed(2)}×`,
        met: latency <= 1.5,
      });
      if (ours.cpuSecondsPer1kTokens !== undefined && floor.cpuSecondsPer1kTokens) {
        const cpu = ours.cpuSecondsPer1kTokens / floor.cpuSecondsPer1kTokens;
        list.push({
          name: `${gateway} CPU/1k tokens ≤ 2× ${raw}`,
          point,
          measured: `${cpu.toFixed(2)}×`,
          met: cpu <= 2,
        });
      }
      list.push({
        name: `${gateway} zero tokens lost or garbled`,
        point,
        measured: `${ours.tokensLost} lost, ${ours.garbledStreams} garbled`,
        met: ours.tokensLost === 0 && ours.garbledStreams === 0,
      });
    }
  }
  const direct = find('100×50/s', 'direct');
  for (const gateway of ['gateway-sse', 'gateway-socket.io'] as const) {
    const ours = find('100×50/s', gateway);
    if (direct && ours) {
      const p50 = ours.ttftMs.p50 - direct.ttftMs.p50;
      const p99 = ours.ttftMs.p99 - direct.ttftMs.p99;
      list.push({
        name: `${gateway} TTFT overhead p50 ≤ 1 ms`,
        point: '100×50/s',
        measured: `${p50.toFixed(2)} ms`,
        met: p50 <= 1,
      });
      list.push({
        name: `${gateway} TTFT overhead p99 ≤ 5 ms`,
        point: '100×50/s',
        measured: `${p99.toFixed(2)} ms`,
        met: p99 <= 5,
      });
    }
    const memory = find('5000×2/s', gateway);
    if (memory?.memoryPerStreamKb !== undefined) {
      list.push({
        name: `${gateway} memory per open stream ≤ 50 KB`,
        point: '5000×2/s',
        measured: `${memory.memoryPerStreamKb.toFixed(1)} KB`,
        met: memory.memoryPerStreamKb <= 50,
      });
    }
  }
  return list;
}

async function main(): Promise<void> {
  await mkdir(RESULTS, { recursive: true });
  const simulator = await start('simulator', ['dist/apps/simulator/main.js'], {
    SIMULATOR_PORT: '0',
    SIMULATOR_PROFILE: 'instant',
  });
  const gateway = await start('gateway', ['dist/apps/api/main.js'], {
    PORT: '0',
    HOST: '127.0.0.1',
    OPENAI_BASE_URL: simulator.url,
    OPENAI_API_KEY: 'bench',
    OPENAI_MODEL: 'simulator',
    LOG_LEVEL: 'warn',
    AUTH_MODE: 'none',
    NODE_ENV: 'development',
    RATE_LIMIT_PER_MINUTE: '1000000',
    RATE_LIMIT_CONCURRENT_STREAMS: '1000000',
    WEB_ROOT: '/nonexistent',
  });
  const relays: Partial<Record<Target, { url: string; process: ChildProcess }>> = {};
  for (const name of ['raw-sse', 'raw-socket.io', 'raw-ws'] as const) {
    relays[name] = await start(
      name,
      [join(import.meta.dirname, 'baselines', `${name.replace('.', '-')}.mts`)],
      { UPSTREAM: simulator.url },
    );
  }
  const endpoint = (target: Target) =>
    target === 'direct'
      ? simulator
      : target.startsWith('gateway')
        ? gateway
        : (relays[target] as { url: string; process: ChildProcess });

  const runs: TargetRun[] = [];
  for (const point of POINTS) {
    const expectedText = await probeText(simulator.url, point.tokens, point.tps);
    for (const target of TARGETS) {
      const { url, process: serving } = endpoint(target);
      const pid = serving.pid as number;
      const before = await usage(pid);
      let peakRss = before.rss;
      const sampler = setInterval(
        () => void usage(pid).then(({ rss }) => (peakRss = Math.max(peakRss, rss))),
        200,
      );
      const summary = await loadgen({
        target,
        url,
        streams: point.streams,
        tokens: point.tokens,
        tps: point.tps,
        openPerTick: point.openPerTick,
        expectedText,
      });
      clearInterval(sampler);
      const after = await usage(pid);
      const run: TargetRun = {
        ...summary,
        point: point.name,
        cpuSecondsPer1kTokens:
          summary.tokensDelivered > 0
            ? (after.cpu - before.cpu) / (summary.tokensDelivered / 1000)
            : undefined,
        // Per stream actually opened: a stream that failed to connect holds no memory.
        memoryPerStreamKb: point.memory
          ? (peakRss - before.rss) / Math.max(1, point.streams - summary.errors) / 1024
          : undefined,
      };
      runs.push(run);
      process.stderr.write(
        `${point.name} ${target}: token p99 ${run.tokenLatencyMs.p99.toFixed(2)} ms, lost ${run.tokensLost}, errors ${run.errors}${run.firstError ? ` (${run.firstError})` : ''}\n`,
      );
      // Let sockets close and the GC settle before the next target.
      await new Promise((resolve) => setTimeout(resolve, point.streams > 100 ? 2000 : 300));
    }
  }

  const results: BenchResults = {
    date: new Date().toISOString(),
    machine: `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`,
    quick,
    runs,
    budgets: budgets(runs),
  };
  const stamp = results.date.replace(/[:.]/g, '-');
  const largest = runs.filter((run) => run.point === runs.at(-1)?.point);
  await writeFile(join(RESULTS, `${stamp}.json`), JSON.stringify(results, null, 2));
  await writeFile(join(RESULTS, 'latest.json'), JSON.stringify(results, null, 2));
  await writeFile(join(RESULTS, 'report.md'), markdown(results));
  await writeFile(join(RESULTS, 'latency-cdf.svg'), latencyCdfSvg(largest));
  await writeFile(
    join(RESULTS, 'throughput.svg'),
    barsSvg('Tokens delivered per second', runs, (run) => run.tokensPerSecond),
  );
  await writeFile(
    join(RESULTS, 'cpu.svg'),
    barsSvg('CPU seconds per 1,000 tokens', runs, (run) => run.cpuSecondsPer1kTokens),
  );
  console.warn(terminalTable(results));
  for (const budget of results.budgets) {
    console.warn(`${budget.met ? 'met   ' : 'MISSED'}  ${budget.name} @ ${budget.point}: ${budget.measured}`);
  }
  console.warn(`report: ${join(RESULTS, 'report.md')}`);
  const broken = runs.filter((run) => run.tokensLost > 0 || run.garbledStreams > 0 || run.errors > 0);
  if (quick && broken.length > 0) {
    console.error(
      `lost, garbled or failed streams in: ${broken.map((run) => `${run.point} ${run.target}`).join(', ')}`,
    );
    process.exitCode = 1;
  }
}

function stopAll(): void {
  for (const child of children) child.kill('SIGTERM');
}
process.once('SIGINT', () => (stopAll(), process.exit(130)));
main()
  .catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(stopAll);
