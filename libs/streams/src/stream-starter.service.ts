import { describeViolations, parseCompletionRequest, type RequestViolation } from '@app/completion';
import type { RefusalCode } from '@app/contracts';
import type { TransportName } from '@app/metrics';
import { Inject, Injectable } from '@nestjs/common';
import { ThrottlerStorage } from '@nestjs/throttler';
import { ShutdownCoordinator } from './shutdown-coordinator.service';
import { StreamIdConflictError, StreamRegistry, StreamsUnavailableError } from './stream-registry';
import { STREAM_LIMITS, type StreamLimits } from './streams.constants';

export type StartOutcome =
  | { ok: true; streamId: string }
  | { ok: false; code: RefusalCode; message: string; retryAfterMs?: number; violations?: RequestViolation[] };

export const UNAVAILABLE = {
  ok: false,
  code: 'unavailable',
  message: 'The service cannot start streams right now; retry shortly.',
  retryAfterMs: 1000,
} as const satisfies StartOutcome;

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
    try {
      return { ok: true, streamId: await this.registry.start(parsed.request, owner, transport) };
    } catch (error) {
      if (error instanceof StreamIdConflictError) {
        return {
          ok: false,
          code: 'invalid_request',
          message: 'streamId is already in use; choose another or omit it.',
        };
      }
      if (error instanceof StreamsUnavailableError) {
        return UNAVAILABLE;
      }
      throw error;
    }
  }
}
