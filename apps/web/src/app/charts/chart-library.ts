import type { Chart as ChartType } from 'chart.js';

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
export function themeColor(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}
