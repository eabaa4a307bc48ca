import {
  CompletionService,
  describeViolations,
  parseCompletionRequest,
  type RequestViolation,
} from '@app/completion';
import type { RefusalCode } from '@app/contracts';
import type { TransportName } from '@app/metrics';
import { Inject, Injectable } from '@nestjs/common';
import { ShutdownCoordinator } from './shutdown-coordinator.service';
import {
  type AdmissionDecision,
  type AdmissionRefusal,
  AdmissionUnavailableError,
  StreamAdmission,
  type StreamSlot,
} from './stream-admission';
import {
  StreamIdConflictError,
  type StreamListener,
  StreamRegistry,
  StreamsUnavailableError,
} from './stream-registry';
import { STREAM_LIMITS, type StreamLimits } from './streams.constants';

export type StartOutcome =
  | { ok: true; streamId: string }
  | { ok: false; code: RefusalCode; message: string; retryAfterMs?: number; violations?: RequestViolation[] };

type Refusal = Extract<StartOutcome, { ok: false }>;

export type ResumeOutcome = ({ ok: true } & StreamListener) | Refusal;

/** `release` ends the admitted work's hold on the limits; call it once, when the work ends. */
export type AdmitOutcome = { ok: true; release: () => void } | Refusal;

const SHUTTING_DOWN: Refusal = {
  ok: false,
  code: 'shutting_down',
  message: 'The server is shutting down; retry shortly.',
  retryAfterMs: 1000,
};
/** A listener's place frees when a client goes, at any moment; this is only a hint. */
const LISTENER_RETRY_AFTER_MS = 1000;
const UNAVAILABLE: Refusal = {
  ok: false,
  code: 'unavailable',
  message: 'The service cannot start or resume streams right now; retry shortly.',
  retryAfterMs: 1000,
};

/**
 * What every transport does to start or resume a stream, in one place: validate the payload with the
 * one schema, admit it against the principal's limits, start it in (or follow it from) the registry.
 * A transport only maps the outcome to its own framing (problem+json, an ack).
 *
 * Nothing is awaited before the admission: it is the one step that reserves, so a burst of starts
 * cannot all pass a check made before any of them is counted. A start refused after admission
 * (shutdown began meanwhile, a conflicting id) gives its slot back.
 */
@Injectable()
export class StreamStarter {
  constructor(
    private readonly registry: StreamRegistry,
    private readonly admission: StreamAdmission,
    @Inject(STREAM_LIMITS) private readonly limits: StreamLimits,
    private readonly shutdown: ShutdownCoordinator,
    private readonly completion: CompletionService,
  ) {}

  /**
   * `owner` owns the stream (cancel and resume check it); `limitKey` is whose limits it counts against,
   * the owner's unless the principal says otherwise (`Principal.limitKey`: anonymous clients, by address).
   */
  async start(
    payload: unknown,
    owner: string,
    transport: TransportName,
    limitKey = owner,
  ): Promise<StartOutcome> {
    if (this.shutdown.draining) {
      return SHUTTING_DOWN;
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
    const model = parsed.request.model;
    if (model !== undefined && !this.completion.knowsModel(model)) {
      // (v1.2) With an upstream table, a model it does not name is the client's mistake, told before any stream.
      const violations = [
        { path: 'model', message: 'is not a model this gateway serves (see GET /api/info)' },
      ];
      return { ok: false, code: 'invalid_request', message: describeViolations(violations), violations };
    }
    const admitted = await this.admitSlot(limitKey);
    if (!admitted.ok) {
      return admitted;
    }
    try {
      return {
        ok: true,
        streamId: await this.registry.start(parsed.request, owner, transport, admitted.slot, limitKey),
      };
    } catch (error) {
      admitted.slot.release();
      if (error instanceof StreamIdConflictError) {
        return {
          ok: false,
          code: 'invalid_request',
          message: 'streamId is already used by one of your streams; choose another or omit it.',
        };
      }
      if (error instanceof StreamsUnavailableError) {
        return UNAVAILABLE;
      }
      throw error;
    }
  }

  /**
   * For a transport that makes its own upstream request (the `/v1` relay) and validates its own payload: the same
   * shutdown refusal and limits as `start`, counted together with the streams of every transport. `stop` is
   * called if the server is still waiting for it when the shutdown grace ends.
   */
  async admit(owner: string, stop: () => void, limitKey = owner): Promise<AdmitOutcome> {
    if (this.shutdown.draining) {
      return SHUTTING_DOWN;
    }
    const admitted = await this.admitSlot(limitKey);
    if (!admitted.ok) {
      return admitted;
    }
    return { ok: true, release: this.registry.hold(admitted.slot, stop) };
  }

  /**
   * Follows a stream after `afterSeq`. Every resume counts toward the per-minute limit, found or not
   * (so ids cannot be probed unmetered), and is refused past the listener caps.
   */
  async resume(streamId: string, owner: string, afterSeq: number, limitKey = owner): Promise<ResumeOutcome> {
    if (this.shutdown.draining && this.registry.shared) {
      // Another instance serves it: this one is handing its streams over and letting its clients go.
      return SHUTTING_DOWN;
    }
    let admitted: { ok: true } | AdmissionRefusal;
    try {
      admitted = await this.admission.admitResume(limitKey);
    } catch (error) {
      if (error instanceof AdmissionUnavailableError) {
        return UNAVAILABLE;
      }
      throw error;
    }
    if (!admitted.ok) {
      return this.refusalFor(admitted);
    }
    let listening: Awaited<ReturnType<StreamRegistry['listen']>>;
    try {
      listening = await this.registry.listen(streamId, owner, afterSeq, 'resume', limitKey);
    } catch (error) {
      if (error instanceof StreamsUnavailableError) {
        return UNAVAILABLE;
      }
      throw error;
    }
    switch (listening.ok ? 'ok' : listening.reason) {
      case 'ok':
        return listening as ResumeOutcome;
      case 'listeners_per_stream':
        return {
          ok: false,
          code: 'rate_limited',
          message: `At most ${this.limits.maxListenersPerStream} clients may follow one stream at once.`,
          retryAfterMs: LISTENER_RETRY_AFTER_MS,
        };
      case 'listeners_per_principal':
        return {
          ok: false,
          code: 'rate_limited',
          message: `At most ${this.limits.maxListenersPerPrincipal} clients may follow your streams at once.`,
          retryAfterMs: LISTENER_RETRY_AFTER_MS,
        };
      default:
        return { ok: false, code: 'not_found', message: 'No such stream, or it is no longer available.' };
    }
  }

  /**
   * The concurrency slot and the place in the minute for a new stream of `limitKey`, or the refusal: over a
   * limit, the limits' store unreachable, or a shutdown that began while admission was being decided.
   */
  private async admitSlot(limitKey: string): Promise<{ ok: true; slot: StreamSlot } | Refusal> {
    let admitted: AdmissionDecision;
    try {
      admitted = await this.admission.admitStart(limitKey);
    } catch (error) {
      if (error instanceof AdmissionUnavailableError) {
        return UNAVAILABLE;
      }
      throw error;
    }
    if (!admitted.ok) {
      return this.refusalFor(admitted);
    }
    if (this.shutdown.draining) {
      admitted.slot.release();
      return SHUTTING_DOWN;
    }
    return admitted;
  }

  private refusalFor(refusal: AdmissionRefusal): Refusal {
    return {
      ok: false,
      code: 'rate_limited',
      message:
        refusal.limit === 'concurrent'
          ? `At most ${this.limits.maxConcurrentStreams} streams may run at once; wait for one to end.`
          : `At most ${this.limits.requestsPerMinute} streams may be started or resumed per minute.`,
      retryAfterMs: refusal.retryAfterMs,
    };
  }
}
