import { describeViolations, parseCompletionRequest, type RequestViolation } from '@app/completion';
import type { RefusalCode } from '@app/contracts';
import type { TransportName } from '@app/metrics';
import { Inject, Injectable } from '@nestjs/common';
import { ThrottlerStorage } from '@nestjs/throttler';
import { ShutdownCoordinator } from './shutdown-coordinator.service';
import { StreamIdConflictError, StreamRegistry } from './stream-registry.service';
import { STREAM_LIMITS, type StreamLimits } from './streams.constants';

export type StartOutcome =
  | { ok: true; streamId: string }
  | { ok: false; code: RefusalCode; message: string; retryAfterMs?: number; violations?: RequestViolation[] };

type Refusal = Extract<StartOutcome, { ok: false }>;

/** `release` ends the admitted work's hold on the limits; call it once, when the work ends. */
export type AdmitOutcome = { ok: true; release: () => void } | Refusal;

/**
 * What every transport does to start a stream, in one place: validate the payload with the one
 * schema, apply the principal's limits, start it in the registry. A transport only maps the outcome
 * to its own framing (problem+json, an ack).
 */
@Injectable()
export class StreamStarter {
  constructor(
    private readonly registry: StreamRegistry,
    @Inject(STREAM_LIMITS) private readonly limits: StreamLimits,
    @Inject(ThrottlerStorage) private readonly store: ThrottlerStorage,
    private readonly shutdown: ShutdownCoordinator,
  ) {}

  async start(payload: unknown, owner: string, transport: TransportName): Promise<StartOutcome> {
    if (this.shutdown.draining) {
      return {
        ok: false,
        code: 'shutting_down',
        message: 'The server is shutting down; retry shortly.',
        retryAfterMs: 1000,
      };
    }
    const parsed = parseCompletionRequest(payload);
    if (!parsed.ok) {
      return {
        ok: false,
        code: 'invalid_request',
        message: describeViolations(parsed.violations),
        violations: parsed.violations,
      };
    }
    const refusal = await this.overLimit(owner);
    if (refusal) {
      return refusal;
    }
    try {
      return { ok: true, streamId: this.registry.start(parsed.request, owner, transport) };
    } catch (error) {
      if (error instanceof StreamIdConflictError) {
        return {
          ok: false,
          code: 'invalid_request',
          message: 'streamId is already in use; choose another or omit it.',
        };
      }
      throw error;
    }
  }

  /**
   * For a transport that makes its own upstream request (the `/v1` relay) and validates its own payload: the same
   * shutdown refusal and limits as `start`, counted together with the streams of every transport. `stop` is
   * called if the server is still waiting for it when the shutdown grace ends.
   */
  async admit(owner: string, stop: () => void): Promise<AdmitOutcome> {
    if (this.shutdown.draining) {
      return {
        ok: false,
        code: 'shutting_down',
        message: 'The server is shutting down; retry shortly.',
        retryAfterMs: 1000,
      };
    }
    return (await this.overLimit(owner)) ?? { ok: true, release: this.registry.hold(owner, stop) };
  }

  private async overLimit(owner: string): Promise<Refusal | undefined> {
    if (this.registry.activeCount(owner) >= this.limits.maxConcurrentStreams) {
      return {
        ok: false,
        code: 'rate_limited',
        message: `At most ${this.limits.maxConcurrentStreams} streams may run at once; wait for one to end.`,
        retryAfterMs: 1000,
      };
    }
    const window = await this.store.increment(
      `streams:${owner}`,
      60_000,
      this.limits.requestsPerMinute,
      0,
      'streams-per-minute',
    );
    if (window.totalHits > this.limits.requestsPerMinute) {
      return {
        ok: false,
        code: 'rate_limited',
        message: `At most ${this.limits.requestsPerMinute} streams may start per minute.`,
        retryAfterMs: Math.max(1, window.timeToExpire) * 1000,
      };
    }
    return undefined;
  }
}
