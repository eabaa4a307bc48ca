/** Turns one run's results into the terminal table, the Markdown report and the SVG charts. */
import type { RunSummary, Target } from '../load/measure.mts';

export interface TargetRun extends RunSummary {
  point: string;
  cpuSecondsPer1kTokens: number | undefined;
  memoryPerStreamKb: number | undefined;
}

export interface BenchResults {
  date: string;
  machine: string;
  quick: boolean;
  runs: TargetRun[];
  budgets: Budget[];
}

export interface Budget {
  name: string;
  point: string;
  measured: string;
  met: boolean;
}

const fixed = (value: number | undefined, digits = 2): string =>
  value === undefined || Number.isNaN(value) ? '–' : value.toFixed(digits);

const COLUMNS = [
  'point',
  'target',
  'TTFT p50',
  'TTFT p99',
  'token p50',
  'token p99',
  'token p99.9',
  'tokens/s',
  'lost',
  'garbled',
  'errors',
  'CPU s/1k tok',
  'KB/stream',
];

function row(run: TargetRun): string[] {
  return [
    run.point,
    run.target,
    fixed(run.ttftMs.p50),
    fixed(run.ttftMs.p99),
    fixed(run.tokenLatencyMs.p50),
    fixed(run.tokenLatencyMs.p99),
    fixed(run.tokenLatencyMs.p999),
    fixed(run.tokensPerSecond, 0),
    String(run.tokensLost),
    String(run.garbledStreams),
    String(run.errors),
    fixed(run.cpuSecondsPer1kTokens, 3),
    fixed(run.memoryPerStreamKb, 1),
  ];
}

export function terminalTable(results: BenchResults): string {
  const rows = [COLUMNS, ...results.runs.map(row)];
  const widths = COLUMNS.map((_, column) => Math.max(...rows.map((cells) => cells[column].length)));
  return rows
    .map((cells) => cells.map((cell, column) => cell.padStart(widths[column])).join('  '))
    .join('\n');
}

export function markdown(results: BenchResults): string {
  const table = [
    `| ${COLUMNS.join(' | ')} |`,
    `| ${COLUMNS.map(() => '---').join(' | ')} |`,
    ...results.runs.map((run) => `| ${row(run).join(' | ')} |`),
  ].join('\n');
  const budgets = [
    '| budget | point | measured | met |',
    '| --- | --- | --- | --- |',
    ...results.budgets.map(
      (budget) =>
        `| ${budget.name} | ${budget.point} | ${budget.measured} | ${budget.met ? 'yes' : '**no**'} |`,
    ),
  ].join('\n');
  return `# Benchmark results (${results.date})

${results.quick ? 'Quick smoke run: the figures show that the harness works, not what the transports cost.\n\n' : ''}Machine: ${results.machine}. Times in milliseconds. "token" is the per-token added latency: receipt by the load
generator minus emission by the simulator, on one host's clock. TTFT is from the request to the first token.
CPU is the target process's CPU seconds per 1,000 tokens delivered (the simulator's for \`direct\`).

${table}

## Budgets

${budgets}

Charts: \`latency-cdf.svg\` (per-token added latency CDF per target at the largest load point),
\`throughput.svg\` and \`cpu.svg\` (per load point).
`;
}

const COLORS: Record<Target, string> = {
  direct: '#555555',
  'raw-sse': '#f08c00',
  'gateway-sse': '#d9480f',
  'raw-socket.io': '#4dabf7',
  'gateway-socket.io': '#1c4fd8',
  'raw-ws': '#2b8a3e',
};

function svg(width: number, height: number, body: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
${body}
</svg>
`;
}

/** Per-token added latency CDF, one line per target, log-free and honest: x is clipped at the p99 of all targets. */
export function latencyCdfSvg(runs: TargetRun[]): string {
  const width = 720;
  const height = 420;
  const plot = { left: 60, top: 30, right: width - 170, bottom: height - 50 };
  const maxX = Math.max(1, ...runs.map((run) => run.latencyCdf[99] ?? 0));
  const x = (value: number) => plot.left + (Math.min(value, maxX) / maxX) * (plot.right - plot.left);
  const y = (fraction: number) => plot.bottom - fraction * (plot.bottom - plot.top);
  const lines = runs
    .map((run, index) => {
      const points = run.latencyCdf.map(
        (value, percentile) => `${x(value).toFixed(1)},${y(percentile / 100).toFixed(1)}`,
      );
      return `<polyline fill="none" stroke="${COLORS[run.target]}" stroke-width="2" points="${points.join(' ')}"/>
<text x="${plot.right + 10}" y="${plot.top + 16 * index}" fill="${COLORS[run.target]}">${run.target}</text>`;
    })
    .join('\n');
  const ticks = [0, 0.25, 0.5, 0.75, 1]
    .map(
      (fraction) =>
        `<text x="${x(fraction * maxX)}" y="${plot.bottom + 16}" text-anchor="middle">${(fraction * maxX).toFixed(1)}</text>
<text x="${plot.left - 6}" y="${y(fraction) + 4}" text-anchor="end">${fraction}</text>`,
    )
    .join('\n');
  return svg(
    width,
    height,
    `<text x="${plot.left}" y="18">Per-token added latency CDF (${runs[0]?.point ?? ''})</text>
<line x1="${plot.left}" y1="${plot.bottom}" x2="${plot.right}" y2="${plot.bottom}" stroke="black"/>
<line x1="${plot.left}" y1="${plot.top}" x2="${plot.left}" y2="${plot.bottom}" stroke="black"/>
<text x="${(plot.left + plot.right) / 2}" y="${height - 12}" text-anchor="middle">ms (clipped at p99)</text>
${ticks}
${lines}`,
  );
}

/** A grouped bar chart of one figure per load point and target. */
export function barsSvg(
  title: string,
  runs: TargetRun[],
  value: (run: TargetRun) => number | undefined,
): string {
  const points = [...new Set(runs.map((run) => run.point))];
  const targets = [...new Set(runs.map((run) => run.target))];
  const width = 720;
  const height = 380;
  const plot = { left: 70, top: 30, right: width - 170, bottom: height - 50 };
  const max = Math.max(1e-9, ...runs.map((run) => value(run) ?? 0));
  const groupWidth = (plot.right - plot.left) / points.length;
  const barWidth = (groupWidth * 0.8) / targets.length;
  const bars = runs
    .map((run) => {
      const measured = value(run);
      if (measured === undefined || Number.isNaN(measured)) return '';
      const group = points.indexOf(run.point);
      const slot = targets.indexOf(run.target);
      const barHeight = (measured / max) * (plot.bottom - plot.top);
      return `<rect x="${(plot.left + group * groupWidth + groupWidth * 0.1 + slot * barWidth).toFixed(1)}" y="${(plot.bottom - barHeight).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${barHeight.toFixed(1)}" fill="${COLORS[run.target]}"/>`;
    })
    .join('\n');
  const labels = points
    .map(
      (point, group) =>
        `<text x="${plot.left + group * groupWidth + groupWidth / 2}" y="${plot.bottom + 16}" text-anchor="middle">${point}</text>`,
    )
    .join('\n');
  const legend = targets
    .map(
      (target, index) =>
        `<text x="${plot.right + 10}" y="${plot.top + 16 * index}" fill="${COLORS[target]}">${target}</text>`,
    )
    .join('\n');
  return svg(
    width,
    height,
    `<text x="${plot.left}" y="18">${title} (max ${max.toPrecision(3)})</text>
<line x1="${plot.left}" y1="${plot.bottom}" x2="${plot.right}" y2="${plot.bottom}" stroke="black"/>
${bars}
${labels}
${legend}`,
  );
}
