import { DatePipe, DecimalPipe } from '@angular/common';
import { ChangeDetectionStrategy, Component, inject } from '@angular/core';
import { Milliseconds } from '../metrics/milliseconds';
import { RunHistory } from './run-history';

/** Every stream so far, newest first; one row per stream (a race adds one per transport). */
@Component({
  selector: 'app-history-table',
  changeDetection: ChangeDetectionStrategy.OnPush,
  imports: [Milliseconds, DatePipe, DecimalPipe],
  template: `
    <div class="table-scroll">
      <table data-testid="history">
        <caption class="visually-hidden">
          Run history
        </caption>
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Transport</th>
            <th scope="col">Race</th>
            <th scope="col">Model</th>
            <th scope="col">Prompt</th>
            <th scope="col">Status</th>
            <th scope="col" class="num">Tokens</th>
            <th scope="col" class="num">TTFT ms</th>
            <th scope="col" class="num" title="time to first reasoning event">TTFR ms</th>
            <th scope="col" class="num">Delay p50 ms</th>
            <th scope="col" class="num">Delay p95 ms</th>
            <th scope="col" class="num">Gap p95 ms</th>
            <th scope="col" class="num">Tokens/s</th>
            <th scope="col" class="num">Duration ms</th>
          </tr>
        </thead>
        <tbody>
          @for (record of history.all(); track record.id) {
            <tr>
              <td>{{ record.startedAt | date: 'MMM d, HH:mm:ss' }}</td>
              <td>{{ record.transport }}</td>
              <td>{{ record.raceId ? record.raceId.slice(0, 6) : '' }}</td>
              <td>{{ record.model }}</td>
              <td class="prompt-cell" [title]="record.prompt">{{ record.prompt }}</td>
              <td [class]="'status-' + record.status">
                {{ record.status }}{{ record.errorCode ? ' (' + record.errorCode + ')' : ''
                }}{{ record.resumed ? ' · resumed' : '' }}
              </td>
              <td class="num">{{ record.tokens }}</td>
              <td class="num">{{ record.ttftMs | ms }}</td>
              <td class="num">{{ record.ttfrMs | ms }}</td>
              <td class="num">{{ record.transportDelayP50Ms | ms }}</td>
              <td class="num">{{ record.transportDelayP95Ms | ms }}</td>
              <td class="num">{{ record.gapP95Ms | ms }}</td>
              <td class="num">
                {{ record.tokensPerSecond === null ? '–' : (record.tokensPerSecond | number: '1.0-1') }}
              </td>
              <td class="num">{{ record.durationMs | ms }}</td>
            </tr>
          }
        </tbody>
      </table>
    </div>
    @if (history.all().length === 0) {
      <p class="muted">No runs yet: send a prompt, or run a few races.</p>
    }
  `,
})
export class HistoryTable {
  protected readonly history = inject(RunHistory);
}
