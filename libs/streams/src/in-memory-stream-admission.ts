import type { OnModuleDestroy } from '@nestjs/common';
import {
  type AdmissionDecision,
  type AdmissionRefusal,
  StreamAdmission,
  type StreamSlot,
} from './stream-admission';
import type { StreamLimits } from './streams.constants';

const WINDOW_MS = 60_000;
/** A refused concurrent start can succeed as soon as any stream of the owner ends; this is only a hint. */
const CONCURRENT_RETRY_AFTER_MS = 1000;

/**
 * The limits of one process. Each decision is taken synchronously, inside the call, before the promise
 * is returned: nothing can interleave between checking and taking, so a burst of starts in one tick
 * (60 `completion:start` in one socket.io packet batch) admits exactly the limit.
 *
 * The minute is a sliding log of start and resume times per owner: at most `requestsPerMinute` entries each, so
 * memory is bounded per owner, and owners whose log has emptied are swept once a minute.
 */
export class InMemoryStreamAdmission extends StreamAdmission implements OnModuleDestroy {
  private readonly running = new Map<string, number>();
  private readonly counted = new Map<string, number[]>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limits: Pick<StreamLimits, 'requestsPerMinute' | 'maxConcurrentStreams'>,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.sweeper = setInterval(() => this.sweep(), WINDOW_MS);
    this.sweeper.unref();
  }

  admitStart(owner: string): Promise<AdmissionDecision> {
    return Promise.resolve(this.tryStart(owner));
  }

  admitResume(owner: string): Promise<{ ok: true } | AdmissionRefusal> {
    const refusal = this.checkWindow(owner);
    if (refusal) {
      return Promise.resolve(refusal);
    }
    this.count(owner);
    return Promise.resolve({ ok: true });
  }

  onModuleDestroy(): void {
    clearInterval(this.sweeper);
  }

  private tryStart(owner: string): AdmissionDecision {
    if ((this.running.get(owner) ?? 0) >= this.limits.maxConcurrentStreams) {
      return { ok: false, limit: 'concurrent', retryAfterMs: CONCURRENT_RETRY_AFTER_MS };
    }
    const refusal = this.checkWindow(owner);
    if (refusal) {
      return refusal;
    }
    this.count(owner);
    this.running.set(owner, (this.running.get(owner) ?? 0) + 1);
    return { ok: true, slot: this.slotOf(owner) };
  }

  adopt(owner: string): StreamSlot {
    this.running.set(owner, (this.running.get(owner) ?? 0) + 1);
    return this.slotOf(owner);
  }

  /** Undefined when the owner's minute has room; drops the entries that have left the window. */
  private checkWindow(owner: string): AdmissionRefusal | undefined {
    const log = this.counted.get(owner);
    if (!log) {
      return undefined;
    }
    const windowStart = this.now() - WINDOW_MS;
    while (log.length > 0 && log[0] <= windowStart) {
      log.shift();
    }
    if (log.length < this.limits.requestsPerMinute) {
      return undefined;
    }
    return { ok: false, limit: 'per_minute', retryAfterMs: Math.max(1, log[0] - windowStart) };
  }

  private count(owner: string): void {
    const log = this.counted.get(owner);
    if (log) {
      log.push(this.now());
    } else {
      this.counted.set(owner, [this.now()]);
    }
  }

  private slotOf(owner: string): StreamSlot {
    let held = true;
    return {
      release: () => {
        if (!held) {
          return;
        }
        held = false;
        const left = (this.running.get(owner) ?? 1) - 1;
        if (left > 0) {
          this.running.set(owner, left);
        } else {
          this.running.delete(owner);
        }
      },
    };
  }

  private sweep(): void {
    const windowStart = this.now() - WINDOW_MS;
    for (const [owner, log] of this.counted) {
      if (log.length === 0 || log[log.length - 1] <= windowStart) {
        this.counted.delete(owner);
      }
    }
  }
}
