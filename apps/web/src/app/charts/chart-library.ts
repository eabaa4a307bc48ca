import { afterRenderEffect, inject } from '@angular/core';
import type { Chart as ChartType } from 'chart.js';
import { Settings } from '../settings/settings';

let loaded: Promise<typeof ChartType> | null = null;

/**
 * Chart.js, loaded on first use (it is the largest dependency and no chart shows on first paint), with only the
 * pieces the timeline and the CDF use registered, so the rest tree-shakes away.
 */
export function loadChart(): Promise<typeof ChartType> {
  loaded ??= import('chart.js').then(
    ({
      Chart,
      LineController,
      ScatterController,
      LineElement,
      PointElement,
      LinearScale,
      Legend,
      Tooltip,
    }) => {
      Chart.register(
        LineController,
        ScatterController,
        LineElement,
        PointElement,
        LinearScale,
        Legend,
        Tooltip,
      );
      return Chart;
    },
  );
  return loaded;
}

/** Chart colours follow the theme's CSS custom properties. */
function themeColor(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

const TRANSPORT_COLORS: Record<string, string> = { sse: '--sse-color', 'socket.io': '--socket-color' };

/** A transport's colour in the theme now applied; a chart labels each dataset with its transport. */
function transportColor(transport: string): string {
  return themeColor(TRANSPORT_COLORS[transport] ?? '--muted');
}

/**
 * Paints a chart in the theme now applied (axes, grid, legend, and each dataset in its transport's colour) and
 * redraws it: after it is made, after its data changes, and when the theme changes.
 */
export function paintTheme(chart: ChartType): void {
  const grid = themeColor('--border');
  const text = themeColor('--muted');
  for (const scale of Object.values(chart.options.scales ?? {})) {
    if (!scale) continue;
    scale.grid = { ...scale.grid, color: grid };
    scale.ticks = { ...scale.ticks, color: text };
    if ('title' in scale) scale.title = { ...scale.title, color: text };
  }
  const legend = chart.options.plugins?.legend;
  if (legend) legend.labels = { ...legend.labels, color: text };
  for (const dataset of chart.data.datasets) {
    const color = transportColor(dataset.label ?? '');
    dataset.borderColor = color;
    dataset.backgroundColor = color;
  }
  chart.update('none');
}

/**
 * Repaints a component's chart when the user switches theme. After rendering, so that the new theme's custom
 * properties are already on the document when the colours are read. Call it in the component's constructor.
 */
export function repaintOnThemeChange(chart: () => ChartType | null): void {
  const theme = inject(Settings).theme;
  afterRenderEffect(() => {
    theme();
    const current = chart();
    if (current) paintTheme(current);
  });
}
