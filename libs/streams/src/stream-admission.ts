/**
 * Whether a principal may start or resume a stream now: the seam between the transports and the limits
 * (`RATE_LIMIT_CONCURRENT_STREAMS` running at once, `RATE_LIMIT_PER_MINUTE` starts and resumes per
 * sliding minute).
 *
 * Every implementation decides atomically: of several admissions racing for the last slot, exactly one
 * wins, and a refused admission takes nothing (neither a concurrency slot nor a place in the minute).
 * The in-memory one does it synchronously inside the call; one shared by several instances does it in
 * one server-side step (a Redis script), which is why the methods return promises.
 *
 * A shared implementation that cannot reach its store throws `AdmissionUnavailableError`; the starter
 * answers that with a retryable `unavailable`, never with a stream admitted past the limits.
 */
export abstract class StreamAdmission {
  /** Takes one concurrency slot and one place in the minute window for a new stream, or neither. */
  abstract admitStart(owner: string): Promise<AdmissionDecision>;

  /** Counts a resume in the same minute window as the starts (contract v1.1); it holds no concurrency slot. */
  abstract admitResume(owner: string): Promise<{ ok: true } | AdmissionRefusal>;

  /**
   * The concurrency slot of a stream taken over from another instance (a handover): it was admitted when it
   * started and is not admitted again, nor counted in the minute; the instance it came from gives its own back.
   */
  abstract adopt(owner: string): StreamSlot;
}

/** A held concurrency slot. `release()` gives it back (the stream ended, or never started); a second call does nothing. */
export interface StreamSlot {
  release(): void;
}

export interface AdmissionRefusal {
  ok: false;
  /** Which limit refused: the streams running at once, or the starts per minute. */
  limit: 'concurrent' | 'per_minute';
  /** When trying again can succeed (per minute: when the oldest counted start leaves the window). */
  retryAfterMs: number;
}

export type AdmissionDecision = { ok: true; slot: StreamSlot } | AdmissionRefusal;

/** The limits' store cannot be reached: refuse with a retryable `unavailable` rather than admit unmetered. */
export class AdmissionUnavailableError extends Error {
  constructor(cause?: unknown) {
    super('the stream limits cannot be checked', { cause });
    this.name = 'AdmissionUnavailableError';
  }
}
