import { Injectable, inject, signal } from '@angular/core';
import { ServerApi } from '../server/server-api';
import { type ClockOffset, type ClockSample, estimateClockOffset } from './clock-offset';
import { epochNow } from './epoch-now';

const ROUNDS = 8;
const MAX_AGE_MS = 60_000;

/** Keeps an estimate of the server's clock offset, from several `GET /api/time` round trips. */
@Injectable({ providedIn: 'root' })
export class ClockSync {
  private readonly api = inject(ServerApi);
  private readonly current = signal<ClockOffset | null>(null);
  private pending: Promise<ClockOffset | null> | null = null;

  readonly offset = this.current.asReadonly();

  /** Re-measures when the estimate is missing or older than a minute; never throws (delays then stay unknown). */
  ensureFresh(): Promise<ClockOffset | null> {
    const offset = this.current();
    if (offset && epochNow() - offset.measuredAt < MAX_AGE_MS) return Promise.resolve(offset);
    return this.sync();
  }

  sync(): Promise<ClockOffset | null> {
    this.pending ??= this.measure().finally(() => (this.pending = null));
    return this.pending;
  }

  private async measure(): Promise<ClockOffset | null> {
    const samples: ClockSample[] = [];
    try {
      // The first round trip may pay for a new connection: it warms up and is not counted.
      await this.api.time();
      // Sequential on purpose: parallel requests would queue behind each other and inflate the round trips.
      for (let round = 0; round < ROUNDS; round++) {
        const sentAt = epochNow();
        const { ts } = await this.api.time();
        samples.push({ sentAt, receivedAt: epochNow(), serverTs: ts });
      }
    } catch {
      if (samples.length === 0) return this.current();
    }
    const offset = estimateClockOffset(samples);
    if (offset) this.current.set(offset);
    return offset;
  }
}
