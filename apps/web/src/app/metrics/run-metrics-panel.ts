import { DecimalPipe } from '@angular/common';
import { ChangeDetectionStrategy, Component, computed, input } from '@angular/core';
import type { ClockOffset } from '../clock/clock-offset';
import type { Lane } from '../run/lane';
import { Milliseconds } from './milliseconds';
import { computeRunMetrics } from './run-metrics';

/** The live figures of one lane. Only the primary lane carries the `ttft` / `transport-delay` test hooks. */
@Component({
  selector: 'app-run-metrics-panel',
  changeDetection: ChangeDetectionStrategy.OnPush,
  imports: [Milliseconds, DecimalPipe],
  template: `
    @if (lane().resumed) {
      <p class="muted" data-testid="resumed-note">
        Resumed after a page reload: the answer was replayed from the server, so this run has no latency
        figures.
      </p>
    }
    <dl class="metrics">
      @if (metrics().ttfrMs !== null) {
        <div>
          <dt>Time to first reasoning token</dt>
          <dd>
            <span [attr.data-testid]="primary() ? 'ttfr' : null">{{ metrics().ttfrMs | ms }}</span> ms
          </dd>
        </div>
        <div>
          <dt>Thinking</dt>
          <dd>{{ metrics().reasoningMs | ms }} ms</dd>
        </div>
      }
      <div>
        <dt>{{ metrics().ttfrMs !== null ? 'Time to first answer token' : 'Time to first token' }}</dt>
        <dd>
          <span [attr.data-testid]="primary() ? 'ttft' : null">{{ metrics().ttftMs | ms }}</span> ms
        </dd>
      </div>
      <div>
        <dt>Transport delay p50</dt>
        <dd>
          <span [attr.data-testid]="primary() ? 'transport-delay' : null">{{
            metrics().transportDelay?.p50 | ms
          }}</span>
          ms
          @if (metrics().clockUncertaintyMs !== null) {
            <small
              title="The clock offset estimate's standard uncertainty: the delays are as uncertain. A delay below minus its hard bound ({{
                metrics().clockBoundMs | ms
              }} ms) is impossible and flagged."
            >
              ± {{ metrics().clockUncertaintyMs | ms }}</small
            >
          }
          @if (metrics().delaysBelowClockBound > 0) {
            <small
              class="error-text"
              data-testid="delay-below-clock-bound"
              title="These tokens arrived before the server produced them by the clock estimate, even at the far end of its hard bound: the estimate is off (a clock was changed), not the transport fast. The clock is being measured again."
            >
              ⚠ {{ metrics().delaysBelowClockBound }} below the clock bound</small
            >
          }
        </dd>
      </div>
      <div>
        <dt>Transport delay p95 / max</dt>
        <dd>{{ metrics().transportDelay?.p95 | ms }} / {{ metrics().transportDelay?.max | ms }} ms</dd>
      </div>
      <div>
        <dt>Inter-token gap p50 / p95 / max</dt>
        <dd>
          {{ metrics().gaps?.p50 | ms }} / {{ metrics().gaps?.p95 | ms }} / {{ metrics().gaps?.max | ms }} ms
        </dd>
      </div>
      <div>
        <dt>Tokens per second</dt>
        <dd>
          {{ metrics().tokensPerSecond === null ? '–' : (metrics().tokensPerSecond | number: '1.0-1') }}
        </dd>
      </div>
      <div>
        <dt>Duration</dt>
        <dd>{{ metrics().durationMs | ms }} ms</dd>
      </div>
      <div>
        <dt>Events / tokens</dt>
        <dd>{{ metrics().eventsReceived }} / {{ metrics().tokens }}</dd>
      </div>
      @if (lane().serverTiming; as timing) {
        <div>
          <dt>Server-side TTFT / duration</dt>
          <dd>{{ timing.ttftMs | ms }} / {{ timing.durationMs | ms }} ms</dd>
        </div>
      }
      <div>
        <dt>Trace id</dt>
        <dd>
          <code [attr.data-testid]="primary() ? 'trace-id' : null">{{ lane().streamId }}</code>
        </dd>
      </div>
    </dl>
  `,
})
export class RunMetricsPanel {
  readonly lane = input.required<Lane>();
  readonly clock = input<ClockOffset | null>(null);
  readonly primary = input(false);

  protected readonly metrics = computed(() => computeRunMetrics(this.lane(), this.clock()));
}
