import {
  ChangeDetectionStrategy,
  Component,
  DestroyRef,
  ElementRef,
  effect,
  inject,
  input,
  viewChild,
} from '@angular/core';
import type { Chart } from 'chart.js';
import { loadChart, paintTheme, repaintOnThemeChange } from '../charts/chart-library';
import { cdfPoints } from '../metrics/percentiles';
import type { TransportAggregate } from './aggregates';

/** The cumulative distribution of per-token transport delay, one line per transport. */
@Component({
  selector: 'app-delay-cdf',
  changeDetection: ChangeDetectionStrategy.OnPush,
  host: { class: 'chart' },
  template: `<canvas
    #canvas
    role="img"
    aria-label="Cumulative distribution of transport delay per token, one line per transport"
  ></canvas>`,
})
export class DelayCdf {
  readonly aggregates = input.required<readonly TransportAggregate[]>();
  private readonly canvas = viewChild.required<ElementRef<HTMLCanvasElement>>('canvas');
  private chart: Chart<'line'> | null = null;

  constructor() {
    effect(() => void this.draw(this.aggregates()));
    repaintOnThemeChange(() => this.chart);
    inject(DestroyRef).onDestroy(() => this.chart?.destroy());
  }

  private async draw(aggregates: readonly TransportAggregate[]): Promise<void> {
    const datasets = aggregates.map((aggregate) => ({
      label: aggregate.transport,
      data: cdfPoints(aggregate.delays),
      pointRadius: 0,
      stepped: true as const,
    }));
    if (this.chart) {
      this.chart.data.datasets = datasets;
      paintTheme(this.chart);
      return;
    }
    const Chart = await loadChart();
    if (this.chart) return;
    this.chart = new Chart(this.canvas().nativeElement, {
      type: 'line',
      data: { datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        scales: {
          x: {
            type: 'linear',
            title: { display: true, text: 'transport delay (ms)' },
          },
          y: {
            min: 0,
            max: 1,
            title: { display: true, text: 'fraction of tokens' },
          },
        },
      },
    });
    paintTheme(this.chart);
  }
}
