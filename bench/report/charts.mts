/**
 * SVG charts written by hand: a few dozen shapes each, no browser and no dependency. One panel per load point, each
 * with its own scale, because 1 and 1,000 streams differ by three orders of magnitude.
 */
import { TARGETS, type Target } from '../load/measure.mts';
import type { TargetRun } from '../orchestrator/measure-target.mts';

const COLORS: Record<Target, string> = {
  direct: '#555555',
  'raw-sse': '#f59f00',
  'gateway-sse': '#d9480f',
  'gateway-sse+table': '#fd7e14',
  'gateway-sse+fast': '#5c940d',
  'gateway-sse+tail': '#c92a2a',
  'gateway-sse+tail+hedge': '#1098ad',
  'gateway-sse+tail+hedge-early': '#6741d9',
  'gateway-sse+otel': '#f783ac',
  'gateway-sse@baseline': '#a61e4d',
  openai: '#ae3ec9',
  'gateway-sse+redis': '#862e9c',
  'gateway-sse+redis-cross': '#e64980',
  'raw-socket.io': '#74c0fc',
  'gateway-socket.io': '#1c4fd8',
  'gateway-socket.io+redis': '#0b7285',
  'raw-ws': '#2b8a3e',
};

const PANEL = { width: 300, height: 230, left: 52, right: 12, top: 28, bottom: 34 };

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** The legend's entries per row: a full run measures up to 17 targets. */
const LEGEND_COLUMNS = 6;
const LEGEND_WIDTH = 170;

/** The targets a run measured, in TARGETS order: the legend and the bar slots. */
const measured = (runs: TargetRun[]): Target[] =>
  TARGETS.filter((target) => runs.some((run) => run.target === target));

function document(
  width: number,
  height: number,
  title: string,
  body: string[],
  targets: readonly Target[],
): string {
  const rows = Math.ceil(targets.length / LEGEND_COLUMNS);
  const legend = targets.map((target, index) => {
    const x = 12 + (index % LEGEND_COLUMNS) * LEGEND_WIDTH;
    const y = height - 18 - (rows - 1 - Math.floor(index / LEGEND_COLUMNS)) * 16;
    return (
      `<rect x="${x}" y="${y}" width="10" height="10" fill="${COLORS[target]}"/>` +
      `<text x="${x + 14}" y="${y + 9}">${target}</text>`
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="12" y="18" font-size="14" font-weight="bold">${escape(title)}</text>
${[...body, ...legend].join('\n')}
</svg>
`;
}

function layout(count: number, targets: number): { columns: number; width: number; height: number } {
  const columns = Math.min(count, 3);
  return {
    columns,
    width: Math.max(columns * PANEL.width, Math.min(targets, LEGEND_COLUMNS) * LEGEND_WIDTH + 24),
    height: Math.ceil(count / columns) * PANEL.height + 34 + Math.ceil(targets / LEGEND_COLUMNS) * 16,
  };
}

function origin(index: number, columns: number): { x: number; y: number } {
  return { x: (index % columns) * PANEL.width, y: 26 + Math.floor(index / columns) * PANEL.height };
}

const groupBy = (runs: TargetRun[]) =>
  [...new Set(runs.map((run) => run.point))].map((point) => ({
    point,
    runs: runs.filter((run) => run.point === point),
  }));

/** Per-token added latency CDF per target, one panel per load point, x on a log scale from 0.1 ms. */
export function latencyCdfSvg(runs: TargetRun[]): string {
  const groups = groupBy(runs);
  const targets = measured(runs);
  const { columns, width, height } = layout(groups.length, targets.length);
  const body = groups.flatMap(({ point, runs: pointRuns }, index) => {
    const at = origin(index, columns);
    const plot = {
      left: at.x + PANEL.left,
      right: at.x + PANEL.width - PANEL.right,
      top: at.y + PANEL.top,
      bottom: at.y + PANEL.height - PANEL.bottom,
    };
    const valid = pointRuns.filter((run) => run.latencyCdf.every((value) => Number.isFinite(value)));
    const maxMs = Math.max(1, ...valid.map((run) => run.latencyCdf[100]));
    const decades = Math.ceil(Math.log10(maxMs)) + 1;
    const x = (ms: number) =>
      plot.left + ((Math.log10(Math.max(ms, 0.1)) + 1) / decades) * (plot.right - plot.left);
    const y = (fraction: number) => plot.bottom - fraction * (plot.bottom - plot.top);
    const ticks = Array.from({ length: decades + 1 }, (_, decade) => 10 ** (decade - 1)).map(
      (ms) =>
        `<line x1="${x(ms)}" y1="${plot.top}" x2="${x(ms)}" y2="${plot.bottom}" stroke="#eee"/>` +
        `<text x="${x(ms)}" y="${plot.bottom + 13}" text-anchor="middle">${ms}</text>`,
    );
    const fractions = [0, 0.5, 0.9, 0.99, 1].map(
      (fraction) =>
        `<line x1="${plot.left}" y1="${y(fraction)}" x2="${plot.right}" y2="${y(fraction)}" stroke="#eee"/>` +
        `<text x="${plot.left - 4}" y="${y(fraction) + 4}" text-anchor="end">${fraction}</text>`,
    );
    const lines = valid.map((run) => {
      const points = run.latencyCdf.map(
        (ms, percent) => `${x(ms).toFixed(1)},${y(percent / 100).toFixed(1)}`,
      );
      return `<polyline fill="none" stroke="${COLORS[run.target]}" stroke-width="1.5" points="${points.join(' ')}"/>`;
    });
    return [
      `<text x="${plot.left}" y="${plot.top - 8}" font-weight="bold">${escape(point)}</text>`,
      ...ticks,
      ...fractions,
      `<rect x="${plot.left}" y="${plot.top}" width="${plot.right - plot.left}" height="${plot.bottom - plot.top}" fill="none" stroke="#999"/>`,
      `<text x="${(plot.left + plot.right) / 2}" y="${plot.bottom + 26}" text-anchor="middle">ms (log)</text>`,
      ...lines,
    ];
  });
  return document(
    width,
    height,
    'Per-token added latency, CDF (receipt minus upstream emission)',
    body,
    targets,
  );
}

/** One bar per target, one panel per load point with its own scale, the value written above each bar. */
export function barsSvg(
  title: string,
  runs: TargetRun[],
  value: (run: TargetRun) => number | undefined,
): string {
  const groups = groupBy(runs);
  const targets = measured(runs);
  const { columns, width, height } = layout(groups.length, targets.length);
  const body = groups.flatMap(({ point, runs: pointRuns }, index) => {
    const at = origin(index, columns);
    const plot = {
      left: at.x + 20,
      right: at.x + PANEL.width - PANEL.right,
      top: at.y + PANEL.top + 12,
      bottom: at.y + PANEL.height - PANEL.bottom,
    };
    const max = Math.max(1e-9, ...pointRuns.map((run) => value(run) ?? 0).filter(Number.isFinite));
    const slot = (plot.right - plot.left) / targets.length;
    const bars = pointRuns.map((run) => {
      const measured = value(run);
      const left = plot.left + targets.indexOf(run.target) * slot + slot * 0.1;
      if (measured === undefined || !Number.isFinite(measured)) {
        return `<text x="${left + slot * 0.4}" y="${plot.bottom - 4}" text-anchor="middle">–</text>`;
      }
      const barHeight = (measured / max) * (plot.bottom - plot.top);
      return (
        `<rect x="${left.toFixed(1)}" y="${(plot.bottom - barHeight).toFixed(1)}" width="${(slot * 0.8).toFixed(1)}" height="${barHeight.toFixed(1)}" fill="${COLORS[run.target]}"/>` +
        `<text x="${(left + slot * 0.4).toFixed(1)}" y="${(plot.bottom - barHeight - 3).toFixed(1)}" text-anchor="middle" font-size="9">${measured.toPrecision(3)}</text>`
      );
    });
    return [
      `<text x="${plot.left}" y="${at.y + PANEL.top - 4}" font-weight="bold">${escape(point)}</text>`,
      `<line x1="${plot.left}" y1="${plot.bottom}" x2="${plot.right}" y2="${plot.bottom}" stroke="#999"/>`,
      ...bars,
    ];
  });
  return document(width, height, title, body, targets);
}
