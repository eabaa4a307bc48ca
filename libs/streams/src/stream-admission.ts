/** Why a stream may not start now, and when to try again. */
export type Admission =
  { ok: true } | { ok: false; code: 'rate_limited'; message: string; retryAfterMs: number };

/**
 * The per-principal limits as one atomic step: a concurrency slot and a place in the per-minute window,
 * both or neither. `release` gives the slot back when the stream ends (the window is not refunded).
 */
export interface StreamAdmission {
  tryAcquire(owner: string): Promise<Admission>;
  release(owner: string): Promise<void>;
}
