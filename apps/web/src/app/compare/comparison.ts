import { DecimalPipe } from '@angular/common';
import { ChangeDetectionStrategy, Component, computed, inject, signal } from '@angular/core';
import { toCsv, toJson } from '../history/export';
import { HistoryTable } from '../history/history-table';
import { RunHistory } from '../history/run-history';
import { Milliseconds } from '../metrics/milliseconds';
import { Settings } from '../settings/settings';
import { aggregateByTransport } from './aggregates';
import { DelayCdf } from './delay-cdf';
import { RaceSeries } from './race-series';

const DEFAULT_RACE_PROMPT = 'Explain what a transport adds to token latency. [sim tokens=200 tps=100]';

/** Many runs side by side: aggregates per transport, the delay CDF, batches of races, and the export. */
@Component({
  selector: 'app-comparison',
  changeDetection: ChangeDetectionStrategy.OnPush,
  imports: [DelayCdf, HistoryTable, Milliseconds, DecimalPipe],
  template: `
    <section class="panel" aria-labelledby="compare-title">
      <h2 id="compare-title">Compare transports</h2>
      <div class="compare-grid">
        <div>
          <div class="table-scroll">
            <table class="aggregates">
              <caption class="visually-hidden">
                Aggregates per transport
              </caption>
              <thead>
                <tr>
                  <th scope="col">Transport</th>
                  <th scope="col" class="num">Runs</th>
                  <th scope="col" class="num">Median TTFT ms</th>
                  <th scope="col" class="num">Delay p50 ms</th>
                  <th scope="col" class="num">Delay p95 ms</th>
                  <th scope="col" class="num">Median tokens/s</th>
                </tr>
              </thead>
              <tbody>
                @for (aggregate of aggregates(); track aggregate.transport) {
                  <tr>
                    <th scope="row">{{ aggregate.transport }}</th>
                    <td class="num">{{ aggregate.runs }}</td>
                    <td class="num">{{ aggregate.medianTtftMs | ms }}</td>
                    <td class="num">{{ aggregate.transportDelayP50Ms | ms }}</td>
                    <td class="num">{{ aggregate.transportDelayP95Ms | ms }}</td>
                    <td class="num">
                      {{
                        aggregate.medianTokensPerSecond === null
                          ? '–'
                          : (aggregate.medianTokensPerSecond | number: '1.0-1')
                      }}
                    </td>
                  </tr>
                }
              </tbody>
            </table>
          </div>
          <form class="race-form" (submit)="$event.preventDefault(); runRaces()">
            <label>
              Races
              <input
                #count
                type="number"
                min="1"
                max="200"
                [value]="raceCount()"
                (input)="raceCount.set(count.valueAsNumber)"
              />
            </label>
            <label class="grow">
              Prompt
              <input #prompt type="text" [value]="racePrompt()" (input)="racePrompt.set(prompt.value)" />
            </label>
            @if (series.running()) {
              <button type="button" (click)="series.stop()">Stop races</button>
              <span role="status"
                >Race {{ series.progress().done + 1 }} of {{ series.progress().total }}</span
              >
            } @else {
              <button type="submit" data-testid="run-races">Run {{ raceCount() }} races</button>
            }
          </form>
          <div class="actions">
            <button type="button" (click)="download('json')" [disabled]="history.all().length === 0">
              Export JSON
            </button>
            <button type="button" (click)="download('csv')" [disabled]="history.all().length === 0">
              Export CSV
            </button>
            <button
              type="button"
              class="quiet"
              (click)="clearHistory()"
              [disabled]="history.all().length === 0"
            >
              Clear history
            </button>
          </div>
        </div>
        <figure>
          <app-delay-cdf [aggregates]="aggregates()" />
          <figcaption>Transport delay per token, cumulative (each run weighs the same).</figcaption>
        </figure>
      </div>
      <h3>History</h3>
      <app-history-table />
    </section>
  `,
})
export class Comparison {
  protected readonly history = inject(RunHistory);
  protected readonly series = inject(RaceSeries);
  private readonly settings = inject(Settings);

  protected readonly aggregates = computed(() => aggregateByTransport(this.history.all()));
  protected readonly raceCount = signal(10);
  protected readonly racePrompt = signal(DEFAULT_RACE_PROMPT);

  protected runRaces(): void {
    void this.series.run(Math.max(1, Math.min(200, Math.floor(this.raceCount()) || 1)), {
      messages: [{ role: 'user', content: this.racePrompt() }],
      ...this.settings.parameters(),
    });
  }

  protected clearHistory(): void {
    if (confirm('Delete every run in the history?')) this.history.clear();
  }

  protected download(format: 'json' | 'csv'): void {
    const records = this.history.all();
    const body = format === 'json' ? toJson(records) : toCsv(records);
    const type = format === 'json' ? 'application/json' : 'text/csv';
    const url = URL.createObjectURL(new Blob([body], { type }));
    const link = document.createElement('a');
    link.href = url;
    link.download = `llm-stream-runs-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.${format}`;
    link.click();
    URL.revokeObjectURL(url);
  }
}
