import { DecimalPipe } from '@angular/common';
import { ChangeDetectionStrategy, Component, computed, input } from '@angular/core';
import type { ClockOffset } from '../clock/clock-offset';
import type { Lane } from '../run/lane';
import { detectBuffering } from './buffering';
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
          @if (connection(); as connection) {
            @if (connection.queuedMs >= 1) {
              <small
                title="The request waited for a connection before it could be sent: HTTP/1.1 allows six per origin, and a seventh stream waits for one of them to end. HTTP/2 multiplexes; WebSockets are not counted."
              >
                of which
                <span [attr.data-testid]="primary() ? 'connection-wait' : null">{{
                  connection.queuedMs | ms
                }}</span>
                ms waiting for a connection</small
              >
            }
            @if (connection.connectMs >= 1) {
              <small>, {{ connection.connectMs | ms }} ms opening one</small>
            }
          }
        </dd>
      </div>
      <div>
        <dt>Served by</dt>
        <dd>
          <span [attr.data-testid]="primary() ? 'served-by' : null">{{ servedBy() }}</span>
          @if (lane().routes.length > 0) {
            <small>
              after {{ lane().routes.length }} {{ lane().routes.length === 1 ? 'move' : 'moves' }}</small
            >
          }
        </dd>
      </div>
      <div>
        <dt>Connection</dt>
        <dd>
          <span [attr.data-testid]="primary() ? 'protocol' : null">{{ connection()?.protocol ?? '–' }}</span>
          <span [attr.data-testid]="primary() ? 'connection-reuse' : null">{{
            connection()?.newConnection === true
              ? 'new'
              : connection()?.newConnection === false
                ? 'reused'
                : ''
          }}</span>
        </dd>
      </div>
      @if (buffering().suspected) {
        <p
          class="error-text"
          [attr.data-testid]="primary() ? 'buffering-warning' : null"
          title="A proxy between the server and this browser buffers the stream (nginx without X-Accel-Buffering: no honoured, a compressing CDN): see docs/operations.md, Intermediaries."
        >
          ⚠ Tokens arrive in bursts the server did not send: {{ buffering().heldTokens }} of
          {{ metrics().tokens }} came held together, up to {{ buffering().longestHeldMs | ms }} ms of the
          server's time at once. Something between the server and this browser buffers the stream.
        </p>
      }
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

  /** (v1.2) The model that serves the answer, and its deployment once the stream moved (a route event says). */
  protected readonly servedBy = computed(() => {
    const lane = this.lane();
    if (lane.servedBy) return `${lane.servedBy.model} · ${lane.servedBy.deployment}`;
    return lane.model ?? '–';
  });

  protected readonly metrics = computed(() => computeRunMetrics(this.lane(), this.clock()));
  protected readonly connection = computed(() => this.lane().connection);
  protected readonly buffering = computed(() => detectBuffering(this.lane().arrivals));
}
