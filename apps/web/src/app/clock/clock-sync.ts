import { DestroyRef, Injectable, inject, signal } from '@angular/core';
import { HTTP_PATHS, type ServerTime } from '@app/contracts';
import { SocketIoTransport } from '../transport/socket-io-transport';
import { type ClockOffset, type ClockSample, consistentSamples, estimateClockOffset } from './clock-offset';
import { epochAt, epochNow, TIMER_RESOLUTION_MS } from './epoch-now';

/**
 * Probes per lane in a full measurement (page load, "measure again", an estimate gone stale): at least
 * `BURST`, then on, a round every `SETTLE_PAUSE_MS`, until the bound is `SETTLED_BOUND_MS` or less (the error
 * is never more than the bound) or `SETTLE_WITHIN_MS` have passed. A busy machine leaves few quick trips, and
 * it delays every probe sent in one busy second: in the clock suite, under a load average of 20 on two cores,
 * 48 rounds back to back still left a bound of 0.57 ms and an error of 0.44 ms. A far server's bound never
 * gets that narrow; its burst ends at the time limit.
 */
const BURST = 16;
const SETTLED_BOUND_MS = 0.25;
const SETTLE_WITHIN_MS = 6000;
const SETTLE_PAUSE_MS = 20;
/** One probe every so often keeps the estimate fresh (drift) at the cost of a few hundred bytes. */
const REFRESH_INTERVAL_MS = 500;
/**
 * The probes the estimate intersects: the last minute's, when there are any. It is as good as the quickest trip
 * each way among them, and on a busy machine few probes make one (a server stamps a probe's arrival only once
 * it gets a core): with probes of the last 30 s at one a second, the clock suite's errors reached 0.22 ms.
 * An old probe's interval is widened by the drift allowed for its age, so it counts only while it is tighter.
 */
const MAX_SAMPLES = 160;
const FILTER_WINDOW_MS = 60_000;
const MAX_AGE_MS = 60_000;
const PROBE_TIMEOUT_MS = 2000;
const RESOURCE_TIMING_LIMIT = 200;

/**
 * Keeps the estimate of the server's clock offset from NTP-style probes over both lanes a run uses:
 * `GET /api/time` (answered ahead of the server's pipeline) and `clock:probe` over the Socket.IO connection,
 * when it is open. A burst of probes at page load, then one a second while the page is visible, one at a
 * time, so that a probe never queues behind another; the clock filter (`estimateClockOffset`) keeps the best.
 */
@Injectable({ providedIn: 'root' })
export class ClockSync {
  private readonly socket = inject(SocketIoTransport);
  private readonly current = signal<ClockOffset | null>(null);
  private readonly taken = signal(0);
  private samples: ClockSample[] = [];
  private pending: Promise<ClockOffset | null> | null = null;
  /** While a burst runs: its estimate once it has its first `BURST` rounds. */
  private firstEstimate: Promise<ClockOffset | null> | null = null;
  private nextLane = 0;
  private probesSent = 0;

  readonly offset = this.current.asReadonly();
  /** Probes answered since the page loaded: the estimate is being kept fresh while this grows. */
  readonly probesTaken = this.taken.asReadonly();

  constructor() {
    const timer = setInterval(() => {
      if (!document.hidden && !this.pending) void this.refresh();
    }, REFRESH_INTERVAL_MS);
    inject(DestroyRef).onDestroy(() => clearInterval(timer));
  }

  /**
   * Re-measures when the estimate is missing or rests on probes older than a minute; never throws. It waits for
   * the burst's first `BURST` rounds only, not for it to settle: a run sent just after the page loaded would
   * otherwise wait up to `SETTLE_WITHIN_MS` against a far server, whose bound never gets narrow enough to settle.
   */
  ensureFresh(): Promise<ClockOffset | null> {
    const offset = this.current();
    if (offset && epochNow() - offset.measuredAt < MAX_AGE_MS) return Promise.resolve(offset);
    void this.sync();
    return this.firstEstimate ?? Promise.resolve(this.current());
  }

  /** A full measurement: a burst of probes on each lane. */
  sync(): Promise<ClockOffset | null> {
    if (!this.pending) {
      let shown: (offset: ClockOffset | null) => void = () => undefined;
      this.firstEstimate = new Promise((resolve) => (shown = resolve));
      this.pending = this.burst(shown).finally(() => {
        // A run waiting for the estimate starts whatever became of the burst.
        shown(this.current());
        this.pending = this.firstEstimate = null;
      });
    }
    return this.pending;
  }

  private async burst(shown: (offset: ClockOffset | null) => void): Promise<ClockOffset | null> {
    // The first round trip may pay for a new connection: it warms up and is not counted.
    await this.probeHttp().catch(() => null);
    await settleBurst({
      // Sequential on purpose: parallel probes would queue behind each other and widen their round trips.
      round: async () => {
        this.add(await this.probeHttp().catch(() => null));
        this.add(await this.socket.probeClock(PROBE_TIMEOUT_MS));
      },
      boundMs: () => this.compute()?.boundMs ?? Infinity,
      firstEstimate: () => shown(this.estimate()),
      now: epochNow,
      pause: () => new Promise((resolve) => setTimeout(resolve, SETTLE_PAUSE_MS)),
    });
    const offset = this.estimate();
    shown(offset);
    return offset;
  }

  /** One probe, on each lane in turn. */
  private async refresh(): Promise<void> {
    const lane = this.nextLane++ % 2;
    this.add(
      lane === 0 ? await this.probeHttp().catch(() => null) : await this.socket.probeClock(PROBE_TIMEOUT_MS),
    );
    this.estimate();
  }

  private add(sample: ClockSample | null): void {
    if (!sample) return;
    this.samples = [...this.samples.slice(-(MAX_SAMPLES - 1)), sample];
    this.taken.update((taken) => taken + 1);
  }

  private estimate(): ClockOffset | null {
    const offset = this.compute();
    if (offset) this.current.set(offset);
    return this.current();
  }

  private compute(): ClockOffset | null {
    const options = { now: epochNow(), resolutionMs: TIMER_RESOLUTION_MS };
    // A probe that contradicts the earlier ones means a clock was stepped: they no longer count, and a burst
    // re-measures at once instead of waiting for the probes every 500 ms to refill it.
    const consistent = consistentSamples(this.samples, options);
    if (consistent.length < this.samples.length) {
      this.samples = consistent;
      if (!this.pending) void this.sync();
    }
    const recent = this.samples.filter((sample) => options.now - sample.clientReceivedAt < FILTER_WINDOW_MS);
    return estimateClockOffset(recent.length > 0 ? recent : this.samples, options);
  }

  /**
   * `GET /api/time`, timed by the browser's network stack where it can be: the Resource Timing entry's
   * `requestStart` and `responseStart` are taken next to the socket, without the trips between the page and
   * the network process that `fetch()` adds (on loopback in Chrome they took the best round trip from 2.2 ms
   * to 0.4 ms, and the lane's error from up to 0.46 ms to under 0.1 ms). A unique query names the entry.
   */
  private async probeHttp(): Promise<ClockSample> {
    const url = new URL(`${HTTP_PATHS.time}?probe=${++this.probesSent}`, location.href).href;
    const sentAt = epochNow();
    const response = await fetch(url, { cache: 'no-store', signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    const receivedAt = epochNow();
    if (!response.ok) throw new Error(`GET ${HTTP_PATHS.time}: ${response.status}`);
    const time = (await response.json()) as ServerTime;
    const timing = await resourceTiming(url);
    return {
      clientSentAt: timing ? epochAt(timing.requestStart) : sentAt,
      serverReceivedAt: time.receivedAt,
      serverSentAt: time.sentAt,
      clientReceivedAt: timing ? epochAt(timing.responseStart) : receivedAt,
    };
  }
}

/** The entry is queued when the body has been read, a task or so after; the probes' entries are then dropped. */
async function resourceTiming(url: string): Promise<PerformanceResourceTiming | null> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const entry = performance.getEntriesByName(url, 'resource')[0] as PerformanceResourceTiming | undefined;
    if (entry && entry.requestStart > 0 && entry.responseStart >= entry.requestStart) {
      // The buffer keeps 250 entries by default and then records no more: emptied in time, it never fills.
      if (performance.getEntriesByType('resource').length > RESOURCE_TIMING_LIMIT) {
        performance.clearResourceTimings();
      }
      return entry;
    }
    if (entry) return null;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  return null;
}

/**
 * A burst's rounds: `BURST` of them, after which the first estimate is shown (a run waiting for it may start),
 * then on, one after each pause, until the bound is `SETTLED_BOUND_MS` or less or `SETTLE_WITHIN_MS` have passed.
 */
export async function settleBurst(steps: {
  round: () => Promise<void>;
  boundMs: () => number;
  firstEstimate: () => void;
  now: () => number;
  pause: () => Promise<unknown>;
}): Promise<number> {
  const deadline = steps.now() + SETTLE_WITHIN_MS;
  for (let round = 1; ; round++) {
    await steps.round();
    if (round < BURST) continue;
    if (round === BURST) steps.firstEstimate();
    if (steps.boundMs() <= SETTLED_BOUND_MS || steps.now() > deadline) return round;
    await steps.pause();
  }
}
