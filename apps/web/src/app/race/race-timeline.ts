import {
  ChangeDetectionStrategy,
  Component,
  DestroyRef,
  ElementRef,
  effect,
  inject,
  input,
  signal,
  viewChild,
} from '@angular/core';
import type { Chart } from 'chart.js';
import { loadChart, paintTheme, repaintOnThemeChange } from '../charts/chart-library';
import type { Lane } from '../run/lane';

/** Redrawing thousands of points every frame would cost more than the stream it shows. */
const REDRAW_INTERVAL_MS = 250;

/** Each token's arrival on each transport, from the moment the race was sent, on one time axis. */
@Component({
  selector: 'app-race-timeline',
  changeDetection: ChangeDetectionStrategy.OnPush,
  host: { class: 'chart', '[attr.data-points]': 'plotted()' },
  template: `<canvas
    #canvas
    data-testid="race-chart"
    role="img"
    aria-label="Token arrival timeline: token number against milliseconds since send, one series per transport"
  ></canvas>`,
})
export class RaceTimeline {
  readonly lanes = input.required<readonly Lane[]>();
  private readonly canvas = viewChild.required<ElementRef<HTMLCanvasElement>>('canvas');
  /** How many arrivals the chart shows, for tests and for the caption. */
  protected readonly plotted = signal(0);
  private chart: Chart<'scatter'> | null = null;
  private lastDraw = 0;
  private redrawTimer: ReturnType<typeof setTimeout> | undefined;

  constructor() {
    effect(() => {
      const lanes = this.lanes();
      const finished = lanes.every((lane) => lane.endedAt !== null);
      const wait = REDRAW_INTERVAL_MS - (performance.now() - this.lastDraw);
      clearTimeout(this.redrawTimer);
      if (finished || wait <= 0) void this.draw(lanes);
      else this.redrawTimer = setTimeout(() => void this.draw(this.lanes()), wait);
    });
    repaintOnThemeChange(() => this.chart);
    inject(DestroyRef).onDestroy(() => {
      clearTimeout(this.redrawTimer);
      this.chart?.destroy();
    });
  }

  private async draw(lanes: readonly Lane[]): Promise<void> {
    this.lastDraw = performance.now();
    const datasets = lanes.map((lane) => ({
      label: lane.transport,
      data: lane.arrivals.map((arrival) => ({ x: arrival.arrivedAt - lane.sentAt, y: arrival.seq })),
      pointRadius: 1.5,
    }));
    const points = datasets.reduce((sum, dataset) => sum + dataset.data.length, 0);
    if (this.chart) {
      this.chart.data.datasets = datasets;
      paintTheme(this.chart);
      this.plotted.set(points);
      return;
    }
    const Chart = await loadChart();
    if (this.chart) return;
    this.plotted.set(points);
    this.chart = new Chart(this.canvas().nativeElement, {
      type: 'scatter',
      data: { datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        scales: {
          x: {
            title: { display: true, text: 'ms since send' },
          },
          y: {
            title: { display: true, text: 'token (seq)' },
          },
        },
      },
    });
    paintTheme(this.chart);
  }
}
