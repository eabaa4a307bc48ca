/** Turns one bench run into the terminal table and the Markdown report. */
import type { Budget } from '../orchestrator/budgets.mts';
import type { TargetRun } from '../orchestrator/measure-target.mts';

export interface BenchResults {
  date: string;
  machine: string;
  quick: boolean;
  /** The load points as run: streams, rate, tokens per stream, opening rate. */
  points: { name: string; streams: number; tps: number; tokens: number; openPerSecond: number }[];
  runs: TargetRun[];
  budgets: Budget[];
  /** Load points or targets not run (the time limit), and why. */
  notes: string[];
  /** With --baseline: which commit `gateway-sse@baseline` was built from. */
  baseline?: string;
}

const fixed = (value: number | undefined, digits = 1): string =>
  value === undefined || Number.isNaN(value) ? '–' : value.toFixed(digits);

const COLUMNS = [
  'point',
  'target',
  'TTFT p50',
  'TTFT p99',
  'TTFT +p50',
  'TTFT +p99',
  'token p50',
  'token p99',
  'token p99.9',
  'tokens/s',
  'lost',
  'garbled',
  'errors',
  'CPU s/1k tok',
  'CPU ms/stream',
  'KB/stream',
  'loadgen cores',
  'other cores',
];

/**
 * TTFT over `direct` at the same point (and round), at the same percentile: what the hop adds before the first
 * token.
 */
function overhead(run: TargetRun, runs: TargetRun[], percentile: 'p50' | 'p99'): number | undefined {
  const direct = runs.find(
    (other) => other.point === run.point && other.round === run.round && other.target === 'direct',
  );
  return direct && run.target !== 'direct' ? run.ttftMs[percentile] - direct.ttftMs[percentile] : undefined;
}

function row(run: TargetRun, runs: TargetRun[]): string[] {
  return [
    run.round === undefined ? run.point : `${run.point} #${run.round}`,
    run.target,
    fixed(run.ttftMs.p50),
    fixed(run.ttftMs.p99),
    fixed(overhead(run, runs, 'p50')),
    fixed(overhead(run, runs, 'p99')),
    fixed(run.tokenLatencyMs.p50, 2),
    fixed(run.tokenLatencyMs.p99, 2),
    fixed(run.tokenLatencyMs.p999, 2),
    fixed(run.tokensPerSecond, 0),
    String(run.tokensLost),
    String(run.garbledStreams),
    String(run.errors),
    fixed(run.cpuSecondsPer1kTokens, 3),
    fixed(run.cpuMsPerStream, 2),
    fixed(run.memoryPerStreamKb, 1),
    fixed(run.loadgenCores, 2),
    fixed(run.backgroundCores, 2),
  ];
}

const UPSTREAM_COLUMNS = [
  'point',
  'target',
  'TTFT p50',
  'TTFT p99',
  'over 1 s',
  'upstream requests',
  'extra requests',
  'hedges started',
  'hedges won',
  'losers aborted',
  'tokens sent upstream',
  'tokens delivered',
  'extra tokens',
  'extra prompt tokens',
  'wasted (gateway)',
];

/**
 * The hedging point: what each configuration asked of its upstream deployments (the simulator's count of requests
 * and content tokens sent), beyond what the clients got, and the gateway's own hedge counters.
 */
function upstreamRows(runs: TargetRun[]): string[][] {
  return runs.flatMap((run) => {
    const upstream = run.upstream;
    if (!upstream) return [];
    const extraRequests = upstream.requests - run.streams;
    return [
      [
        run.point,
        run.target,
        fixed(run.ttftMs.p50),
        fixed(run.ttftMs.p99),
        String(run.ttftOver1s),
        String(upstream.requests),
        `${extraRequests} (${((100 * extraRequests) / run.streams).toFixed(1)} %)`,
        String(upstream.hedgesStarted),
        String(upstream.hedgesWon),
        String(upstream.aborted),
        String(upstream.contentTokens),
        String(run.tokensDelivered),
        String(upstream.contentTokens - run.tokensDelivered),
        String(extraRequests * upstream.promptTokensPerRequest),
        String(upstream.wastedTokens),
      ],
    ];
  });
}

function budgetLine(budget: Budget): string[] {
  return [
    budget.met ? 'met' : 'MISSED',
    budget.point,
    budget.name,
    budget.measured,
    Number.isNaN(budget.ratio) ? '–' : `${budget.ratio.toFixed(2)} of the limit`,
  ];
}

function aligned(rows: string[][]): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((cells) => cells[column].length)));
  return rows.map((cells) => cells.map((cell, column) => cell.padEnd(widths[column])).join('  ')).join('\n');
}

export function terminalTable(results: BenchResults): string {
  const failures = results.runs
    .filter((run) => run.firstError)
    .map((run) => `${run.point} ${run.target}: ${run.firstError}`);
  const upstream = upstreamRows(results.runs);
  return [
    aligned([COLUMNS, ...results.runs.map((run) => row(run, results.runs))]),
    ...(upstream.length > 0 ? ['', aligned([UPSTREAM_COLUMNS, ...upstream])] : []),
    '',
    aligned(results.budgets.map(budgetLine)),
    ...(results.baseline ? ['', results.baseline] : []),
    ...(failures.length > 0 ? ['', 'first error per run:', ...failures] : []),
    ...results.notes,
  ].join('\n');
}

function markdownTable(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((cells) => `| ${cells.join(' | ')} |`),
  ].join('\n');
}

export function resultsTable(results: BenchResults): string {
  return markdownTable(
    COLUMNS,
    results.runs.map((run) => row(run, results.runs)),
  );
}

export const UPSTREAM_LEGEND = `The gateway on a table of two deployments of the simulator (each first token 200 ms after the
request; on the \`tail\` ones 10 % of them 3 s later still), without hedging and with \`hedgeAfterMs\` 300 (\`+hedge\`) or
80 (\`+hedge-early\`). **over 1 s**: streams whose first token took longer. **upstream requests**: what the two
deployments received during the run (the simulator's count); **extra requests**: beyond one per stream. **losers
aborted**: requests the gateway closed before their end. **tokens sent upstream**: content tokens the deployments sent,
to aborted requests too; **extra tokens**: those minus the tokens the clients received. **extra prompt tokens**: the
extra requests' prompts (each request's \`prompt_tokens\` times the extra requests). **wasted (gateway)**: the gateway's
\`llm_gateway_upstream_wasted_tokens_total\`.`;

export function upstreamTable(results: BenchResults): string | undefined {
  const rows = upstreamRows(results.runs);
  return rows.length > 0 ? markdownTable(UPSTREAM_COLUMNS, rows) : undefined;
}

export function budgetsTable(results: BenchResults): string {
  return markdownTable(
    ['', 'point', 'budget', 'measured', 'ratio'],
    results.budgets.map((budget) => {
      const cells = budgetLine(budget);
      cells[0] = budget.met ? 'met' : '**missed**';
      return cells;
    }),
  );
}

export function pointsTable(results: BenchResults): string {
  return markdownTable(
    ['point', 'streams', 'tokens/s per stream', 'tokens per stream', 'opened per second', 'offered tokens/s'],
    results.points.map((point) => [
      point.name,
      String(point.streams),
      String(point.tps),
      String(point.tokens),
      String(point.openPerSecond),
      String(point.streams * point.tps),
    ]),
  );
}

export const LEGEND = `Times in ms. **TTFT**: request sent to first token received; **+p50/+p99**: over \`direct\` at the same
point and percentile. **token**: per-token added latency, receipt by the load generator minus emission by the simulator
(its \`emit_ts\` stamp), one host's clock. **tokens/s**: delivered, from the first stream opened to the last ended.
**lost**: expected minus delivered; **garbled**: streams that ended normally with a text or \`seq\` sequence other than
the simulator's. **errors**: streams that failed (first error per run in the JSON). **CPU s/1k tok**: the target
process's utime+stime (\`/proc/<pid>/stat\`, all threads) per 1,000 tokens delivered; the simulator's for \`direct\`.
**CPU ms/stream**: the same CPU per stream run; the cost of a stream start at the one-by-one "starts" point.
**KB/stream**: the target's RSS at the plateau minus its RSS before the run, per stream streaming then (plateau:
the 250 ms samples with at least 95 % of the most streams ever streaming at once; medians); "–" under 100 streams. **loadgen cores**: the load generator's own CPU (near 1:
the client was the limit). **other cores**: CPU used by the rest of the machine during the run.`;

export function markdown(results: BenchResults, charts: string[]): string {
  const upstream = upstreamTable(results);
  return `# Benchmark results, ${results.date}

${results.quick ? '**Quick smoke run**: these figures show that the harness works, not what the transports cost.\n\n' : ''}Machine: ${results.machine}.${results.baseline ? ` ${results.baseline}` : ''}

${pointsTable(results)}

${LEGEND}

${resultsTable(results)}
${upstream ? `\n## Hedging: what the upstream was asked for\n\n${UPSTREAM_LEGEND}\n\n${upstream}\n` : ''}
## Budgets

${budgetsTable(results)}
${results.notes.length > 0 ? `\n## Notes\n\n${results.notes.map((note) => `- ${note}`).join('\n')}\n` : ''}
## Charts

${charts.map((chart) => `![${chart}](${chart})`).join('\n')}
`;
}
