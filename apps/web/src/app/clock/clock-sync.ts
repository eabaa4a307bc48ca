import { DestroyRef, Injectable, inject, signal } from '@angular/core';
import { HTTP_PATHS, type ServerTime } from '@app/contracts';
import { SocketIoTransport } from '../transport/socket-io-transport';
import { type ClockOffset, type ClockSample, estimateClockOffset } from './clock-offset';
import { epochAt, epochNow, TIMER_RESOLUTION_MS } from './epoch-now';

/** Probes per lane in a full measurement (page load, "measure again", an estimate gone stale). */
const BURST = 16;
/** One probe every so often keeps the estimate fresh (drift) at the cost of a few hundred bytes. */
const REFRESH_INTERVAL_MS = 1000;
/** The probes the clock filter chooses from: the last half minute's, when there are any. */
const MAX_SAMPLES = 64;
const FILTER_WINDOW_MS = 30_000;
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
  private samples: ClockSample[] = [];
  private pending: Promise<ClockOffset | null> | null = null;
  private nextLane = 0;
  private probesSent = 0;

  readonly offset = this.current.asReadonly();

  constructor() {
    const timer = setInterval(() => {
      if (!document.hidden && !this.pending) void this.refresh();
    }, REFRESH_INTERVAL_MS);
    inject(DestroyRef).onDestroy(() => clearInterval(timer));
  }

  /** Re-measures when the estimate is missing or rests on probes older than a minute; never throws. */
  ensureFresh(): Promise<ClockOffset | null> {
    const offset = this.current();
    if (offset && epochNow() - offset.measuredAt < MAX_AGE_MS) return Promise.resolve(offset);
    return this.sync();
  }

  /** A full measurement: a burst of probes on each lane. */
  sync(): Promise<ClockOffset | null> {
    this.pending ??= this.burst().finally(() => (this.pending = null));
    return this.pending;
  }

  private async burst(): Promise<ClockOffset | null> {
    // The first round trip may pay for a new connection: it warms up and is not counted.
    await this.probeHttp().catch(() => null);
    // Sequential on purpose: parallel probes would queue behind each other and widen their round trips.
    for (let round = 0; round < BURST; round++) {
      this.add(await this.probeHttp().catch(() => null));
      this.add(await this.socket.probeClock(PROBE_TIMEOUT_MS));
    }
    return this.estimate();
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
    if (sample) this.samples = [...this.samples.slice(-(MAX_SAMPLES - 1)), sample];
  }

  private estimate(): ClockOffset | null {
    const now = epochNow();
    const recent = this.samples.filter((sample) => now - sample.clientReceivedAt < FILTER_WINDOW_MS);
    const offset = estimateClockOffset(recent.length > 0 ? recent : this.samples, {
      now,
      resolutionMs: TIMER_RESOLUTION_MS,
    });
    if (offset) this.current.set(offset);
    return this.current();
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
