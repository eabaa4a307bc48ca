import { epochNow } from '@app/clock';
import { readCapped, reasoningOf, safeUpstreamRequestId, UpstreamError } from '@app/completion';
import { startAttempt as startAttemptSpan } from '@app/telemetry';
import type { RouteReason, StreamErrorCode } from '@app/contracts';
import { Logger } from '@nestjs/common';
import type { DeploymentHealth } from './deployment-health';
import type { Deployment, ModelRoute, UpstreamTable } from './deployments';
import {
  backoffMs,
  canContinue,
  classifyFailure,
  continuationBody,
  describeFault,
  fallbackApplies,
  FINISH_REASONS,
  incompleteAnswer,
  percentile95,
  weightedOrder,
} from './routing-decisions';
import {
  type AttemptRead,
  type AttemptRole,
  type ChatCompletionChunk,
  UpstreamAttempt,
} from './upstream-attempt';
import { UPSTREAM_DEFAULTS } from '@app/config';

/** The stream moved to another deployment; what follows continues the same answer. */
export interface RouteNotice {
  reason: RouteReason;
  deployment: string;
  model: string;
  code?: StreamErrorCode;
}

/**
 * How one surface turns the serving attempt's chunks into what it delivers: our events (SSE, Socket.IO) or
 * OpenAI's chunks (`/v1`). One routing decision, two framings.
 */
export interface Framing<T> {
  /**
   * The serving attempt's chunks. `raw` holds their `data` texts when they were kept and left unchanged (the
   * stream's first attempt); `switched` says the stream has moved from the attempt whose chunk `id` it began with.
   */
  chunks(chunks: ChatCompletionChunk[], raw: string[] | undefined, switched: boolean): readonly T[];
  route(notice: RouteNotice): T;
}

export interface RouterRequest {
  /** The public model name; the table's default when absent. */
  model: string | undefined;
  /** An OpenAI chat-completions body, without `model` (the router sets each deployment's own). */
  body: Record<string, unknown>;
  /** For log lines only. */
  streamId?: string;
  /** Keep each chunk's `data` text for a surface that relays them unchanged. */
  keepRaw?: boolean;
  /** Told which deployment serves, once an attempt gave the first token (and again after every switch). */
  serving?: (serving: { deployment: string; model: string; upstreamRequestId: string | undefined }) => void;
  /** A handover: the answer so far (`text`), and whether reasoning was shown (then a new attempt's is not). */
  continueFrom?: { text: string; reasoningShown: boolean; reason: 'handover' };
}

/** Counted in Prometheus (MetricsService implements it); labels are deployment names, a bounded set. */
export interface RouterMetrics {
  upstreamAttempt(deployment: string, outcome: string): void;
  upstreamRouted(reason: RouteReason, deployment: string): void;
  upstreamHedge(outcome: 'started' | 'won' | 'lost'): void;
  upstreamCooldown(deployment: string): void;
  upstreamWastedTokens(deployment: string, tokens: number): void;
}

type ReasoningDelta = Parameters<typeof reasoningOf>[0];

const NOTHING: readonly never[] = [];

/** What a non-streamed answer may hold when the caller sets no bound (the `/v1` relay passes its own). */
const DEFAULT_MAX_JSON_BYTES = 8 * 1024 * 1024;

/** A non-streamed answer past the caller's bound: the request fails, on this deployment as on any other. */
class OversizedAnswer extends Error {}

/**
 * The one place that performs upstream attempts, for every surface: a weighted pick among a model's targets, then
 * its fallbacks; a hedge when the first token is late; a continuation on a capable deployment when the stream breaks
 * after content. The decisions are the pure functions of routing-decisions.ts; the deployments' health is shared
 * (`DeploymentHealth`).
 */
export class UpstreamRouter {
  private readonly logger = new Logger('UpstreamRouter');

  constructor(
    readonly table: UpstreamTable,
    readonly health: DeploymentHealth,
    readonly metrics: RouterMetrics,
    readonly random: () => number = Math.random,
  ) {}

  /** The answer as batches of what `framing` makes of it; throws `UpstreamError` when it cannot be (fully) given. */
  stream<T>(request: RouterRequest, signal: AbortSignal, framing: Framing<T>): AsyncGenerator<T[]> {
    return new RouteRun(this, this.route(request.model), request, signal, framing).execute();
  }

  /**
   * A non-streamed answer (`/v1` without `stream`): the first deployment to answer whole, with fallback. The body is
   * read here, within the attempt's time: a body cut halfway, one that is not JSON, or one whose choices never
   * finished is a failed attempt like a 5xx, while another deployment can still give the answer; the caller gets
   * the bytes read. Past `maxResponseBytes` the request fails: a larger answer is not relayed from anywhere.
   */
  async json(
    request: RouterRequest,
    signal: AbortSignal,
    maxResponseBytes = DEFAULT_MAX_JSON_BYTES,
  ): Promise<{ response: Response; deployment: string; model: string }> {
    const route = this.route(request.model);
    const picker = new CandidatePicker(this, route);
    const deadline = epochNow() + route.deadlineMs;
    let lastError: UpstreamError | undefined;
    for (let attempt = 1; attempt <= route.maxAttempts; attempt++) {
      const candidate = await picker.next(lastError, deadline, signal);
      if (candidate === undefined) {
        break;
      }
      const { deployment, model, probe } = candidate;
      const startedAt = epochNow();
      // A non-streamed answer comes whole: its first token is its response, with the same deadline per attempt.
      const controller = new AbortController();
      const onAbort = () => controller.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      let timedOut = false;
      const timer = setTimeout(
        () => {
          timedOut = true;
          controller.abort();
        },
        Math.max(
          1,
          Math.min(
            deployment.settings.firstTokenTimeoutMs ?? route.firstTokenTimeoutMs,
            deadline - epochNow(),
          ),
        ),
      );
      deployment.inFlight++;
      const span = startAttemptSpan({
        deployment: deployment.name,
        providerName: 'openai',
        requestModel: model,
        stream: false,
      });
      let upstreamRequestId: string | undefined;
      try {
        const response = await deployment.client.chatCompletions(
          { ...request.body, model },
          controller.signal,
          { headers: span.traceHeaders() },
        );
        // The answer's headers came; the span ends once its body was read and found whole (or not).
        span.firstChunk();
        upstreamRequestId = safeUpstreamRequestId(response.headers.get('x-request-id'));
        const bytes = await readCapped(response, maxResponseBytes);
        if (bytes === undefined) {
          throw new OversizedAnswer();
        }
        const incomplete = incompleteAnswer(bytes);
        if (incomplete !== undefined) {
          throw new UpstreamError('upstream_protocol', incomplete);
        }
        span.end({ responseModel: model });
        this.health.succeeded(deployment.name, probe);
        this.attempted(
          request,
          deployment,
          model,
          'ok',
          startedAt,
          attempt === 1 ? 'first' : 'fallback',
          upstreamRequestId,
        );
        const headers = new Headers(response.headers);
        // The bytes are the decoded body, whole: their own length, no encoding left to undo.
        headers.delete('content-encoding');
        headers.set('content-length', String(bytes.byteLength));
        return {
          response: new Response(new Uint8Array(bytes), { status: response.status, headers }),
          deployment: deployment.name,
          model,
        };
      } catch (error) {
        if (signal.aborted) {
          span.end({ error: 'cancelled' });
          this.health.released(deployment.name, probe);
          throw error;
        }
        if (error instanceof OversizedAnswer) {
          span.end({ error: 'upstream_protocol' });
          throw new UpstreamError(
            'upstream_protocol',
            'The model’s answer is larger than the gateway relays.',
          );
        }
        lastError = timedOut
          ? new UpstreamError('upstream_timeout', 'The model did not answer in time.')
          : deployment.client.upstreamError(error, 'request');
        span.end({ error: lastError.code });
        this.failed(
          request,
          deployment,
          model,
          lastError,
          probe,
          startedAt,
          attempt === 1 ? 'first' : 'fallback',
          upstreamRequestId,
        );
        if (classifyFailure(lastError) === 'refused' && !picker.hasFallbackFor(lastError)) {
          throw lastError;
        }
      } finally {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        deployment.inFlight--;
      }
    }
    throw picker.exhausted(lastError);
  }

  /** Whether the model is one the table serves (any name is, without a table). */
  knows(model: string): boolean {
    return this.table.resolve(model) !== undefined;
  }

  /** Whether some deployment of the model can continue a partial answer. */
  canContinue(model: string | undefined): boolean {
    const route = this.table.resolve(model);
    return (
      route !== undefined &&
      [...route.targets, ...route.fallbacks].some(({ deployment }) =>
        canContinue(deployment.settings.continuation),
      )
    );
  }

  /** One log line and one count per attempt: deployment, outcome, time. Never a key, never content. */
  attempted(
    request: RouterRequest,
    deployment: Deployment,
    model: string,
    outcome: string,
    startedAt: number,
    role: AttemptRole,
    upstreamRequestId?: string,
  ): void {
    this.metrics.upstreamAttempt(deployment.name, outcome);
    this.logger.log(
      {
        streamId: request.streamId,
        deployment: deployment.name,
        model,
        role,
        outcome,
        ms: Math.round(epochNow() - startedAt),
        upstreamRequestId,
      },
      'upstream attempt',
    );
  }

  failed(
    request: RouterRequest,
    deployment: Deployment,
    model: string,
    error: UpstreamError,
    probe: boolean,
    startedAt: number,
    role: AttemptRole,
    upstreamRequestId?: string,
  ): void {
    const rateLimited = error.code === 'upstream_rate_limited';
    // A refusal of the request says nothing about the deployment's health: if it was the probe, another may go.
    if (classifyFailure(error) === 'refused') {
      this.health.released(deployment.name, probe);
    } else {
      const cooled = this.health.failed(
        deployment.name,
        deployment.settings,
        { rateLimited, retryAfterMs: error.retryAfterMs },
        probe,
        epochNow(),
      );
      if (cooled) {
        this.metrics.upstreamCooldown(deployment.name);
        this.logger.warn({ deployment: deployment.name }, 'upstream deployment put aside (cooldown)');
      }
    }
    this.attempted(request, deployment, model, error.code, startedAt, role, upstreamRequestId);
  }

  private route(model: string | undefined): ModelRoute {
    const route = this.table.resolve(model);
    if (route === undefined) {
      throw new UpstreamError(
        'upstream_rejected',
        'The model is not served by this gateway.',
        undefined,
        404,
        {
          code: 'model_not_found',
        },
      );
    }
    return route;
  }
}

interface Candidate {
  deployment: Deployment;
  model: string;
  probe: boolean;
}

/**
 * Which deployment next, before the first token: the targets in weighted order, then the fallbacks that apply to the
 * last failure, skipping deployments put aside or full. When all were tried, a transient failure may be retried on a
 * deployment that still admits requests, after a backoff (what a single deployment gets): never past the deadline.
 */
type Entry = { deployment: Deployment; model: string; on: readonly string[] | undefined };

class CandidatePicker {
  private readonly order: Entry[];
  private index = 0;
  private retries = 0;

  constructor(
    private readonly router: UpstreamRouter,
    private readonly route: ModelRoute,
  ) {
    this.order = [
      ...weightedOrder(route.targets, router.random).map((target) => ({ ...target, on: undefined })),
      ...route.fallbacks,
    ];
  }

  hasFallbackFor(error: UpstreamError): boolean {
    return this.order
      .slice(this.index)
      .some((entry) => entry.on !== undefined && fallbackApplies(entry.on, error));
  }

  async next(
    lastError: UpstreamError | undefined,
    deadline: number,
    signal: AbortSignal,
  ): Promise<Candidate | undefined> {
    const refused = lastError !== undefined && classifyFailure(lastError) === 'refused';
    const firstPass = lastError === undefined && this.index === 0;
    const passed: Entry[] = [];
    while (this.index < this.order.length) {
      const entry = this.order[this.index++];
      if (!this.applies(entry, this.index <= this.route.targets.length, lastError, refused)) {
        continue;
      }
      const candidate = this.admit(entry);
      if (candidate !== undefined) {
        return candidate;
      }
      passed.push(entry);
    }
    if (firstPass && passed.length > 0) {
      return this.lastResort(passed, deadline, signal);
    }
    if (refused || lastError === undefined) {
      return undefined;
    }
    if (classifyFailure(lastError) === 'deployment') {
      return undefined;
    }
    // Every choice was tried: one more try, after a backoff, on the first that may still be sent to (one put aside
    // after failures only when the model has no other deployment to spare it for).
    const now = epochNow();
    const retry = this.order.find((entry, index) => {
      if (
        !this.applies(entry, index < this.route.targets.length, lastError, false) ||
        entry.deployment.saturated
      ) {
        return false;
      }
      const admission = this.router.health.admit(entry.deployment.name, now);
      return admission !== 'cooling' || this.singleDeployment;
    });
    if (retry === undefined) {
      return undefined;
    }
    this.retries++;
    const wait = Math.max(
      backoffMs(this.retries, lastError.retryAfterMs, this.router.random, this.route.deadlineMs),
      Math.ceil(this.router.health.waitMs(retry.deployment.name, now)),
    );
    if (epochNow() + wait >= deadline) {
      return undefined;
    }
    await delay(wait, signal);
    return signal.aborted ? undefined : { deployment: retry.deployment, model: retry.model, probe: true };
  }

  /** The model has one deployment: nothing to spare it for, so it is tried even while put aside. */
  private get singleDeployment(): boolean {
    return new Set(this.order.map((entry) => entry.deployment)).size === 1;
  }

  private applies(
    entry: Entry,
    isTarget: boolean,
    lastError: UpstreamError | undefined,
    refused: boolean,
  ): boolean {
    if (refused) {
      return entry.on !== undefined && fallbackApplies(entry.on, lastError);
    }
    return isTarget || fallbackApplies(entry.on, lastError);
  }

  /**
   * Nothing admits the stream's first attempt. A deployment put aside after failures is still tried when no other
   * can serve (a model with one deployment is never shut: each request makes one attempt, no retries, until it is
   * back); one that asked to be spared (429) is waited for while the deadline allows, else the client learns when
   * to retry.
   */
  private async lastResort(
    passed: Entry[],
    deadline: number,
    signal: AbortSignal,
  ): Promise<Candidate | undefined> {
    const now = epochNow();
    const cooling = passed.find(
      (entry) =>
        !entry.deployment.saturated && this.router.health.admit(entry.deployment.name, now) === 'cooling',
    );
    if (cooling !== undefined) {
      return { deployment: cooling.deployment, model: cooling.model, probe: true };
    }
    const waits = passed.map((entry) => ({
      entry,
      wait: this.router.health.waitMs(entry.deployment.name, now),
    }));
    const soonest = waits.filter(({ wait }) => wait > 0).sort((a, b) => a.wait - b.wait)[0];
    if (soonest === undefined || now + soonest.wait >= deadline) {
      this.rateLimitedFor = soonest?.wait;
      return undefined;
    }
    // Node's timers count whole milliseconds: the wait is over when the timer fires, whatever the clock says.
    await delay(Math.ceil(soonest.wait), signal);
    return signal.aborted ? undefined : { ...soonest.entry, probe: false };
  }

  /** When no deployment could be tried because all asked to be spared: how long the shortest wait is. */
  private rateLimitedFor: number | undefined;

  /** Every deployment is put aside or failed: the error to end with, and when to try again. */
  exhausted(lastError: UpstreamError | undefined): UpstreamError {
    if (lastError !== undefined) {
      return lastError;
    }
    if (this.rateLimitedFor !== undefined) {
      return new UpstreamError('upstream_rate_limited', 'The model is rate limited.', this.rateLimitedFor);
    }
    return new UpstreamError('upstream_unavailable', 'No deployment of the model can take the request now.');
  }

  private admit({ deployment, model }: Entry): Candidate | undefined {
    if (deployment.saturated) {
      return undefined;
    }
    const admission = this.router.health.admit(deployment.name, epochNow());
    return admission === 'go' || admission === 'probe'
      ? { deployment, model, probe: admission === 'probe' }
      : undefined;
  }
}

/** A winner of the race for the first token, and the reads it gave up to it, in order. */
interface Won {
  attempt: UpstreamAttempt;
  reads: AttemptRead[];
  notice: RouteNotice | undefined;
}

/** One stream's attempts, from the first to the answer's end. */
class RouteRun<T> {
  private readonly deadline: number;
  private readonly picker: CandidatePicker;
  private readonly active = new Set<UpstreamAttempt>();
  private attempts = 0;
  /** The answer's content so far: what a continuation sends back as the final assistant message. */
  private text = '';
  /** Content deltas delivered: the tokens the answer has spent so far (one per delta, as servers stream them). */
  private contentDeltas = 0;
  private reasoningShown = false;
  /** Tool-call deltas or several choices: an answer the continuation forms cannot carry on. */
  private notContinuable = false;
  private finished = false;
  /** The serving attempt continues a cut answer: its usage counts only the rest, so it is made whole. */
  private prefixDeltas: number | undefined;
  private switched = false;
  private lastError: UpstreamError | undefined;
  private originalFault: UpstreamError | undefined;
  private readonly onAbort = () => this.closeAll();

  constructor(
    private readonly router: UpstreamRouter,
    private readonly route: ModelRoute,
    private readonly request: RouterRequest,
    private readonly signal: AbortSignal,
    private readonly framing: Framing<T>,
  ) {
    this.deadline = epochNow() + route.deadlineMs;
    this.picker = new CandidatePicker(router, route);
    if (request.continueFrom) {
      this.text = request.continueFrom.text;
      this.reasoningShown = request.continueFrom.reasoningShown;
    }
  }

  async *execute(): AsyncGenerator<T[]> {
    this.signal.addEventListener('abort', this.onAbort, { once: true });
    try {
      let fault: UpstreamError | undefined;
      let won = this.request.continueFrom ? await this.continueAfter(undefined) : await this.firstToken();
      while (won !== undefined) {
        const { attempt } = won;
        this.request.serving?.({
          deployment: attempt.deployment.name,
          model: attempt.model,
          upstreamRequestId: attempt.upstreamRequestId,
        });
        const first: T[] = [];
        if (won.notice !== undefined) {
          this.router.metrics.upstreamRouted(won.notice.reason, won.notice.deployment);
          attempt.span.routed(won.notice);
          first.push(this.framing.route(won.notice));
        }
        this.ending = undefined;
        const { reads } = won;
        reads.forEach((read, index) => {
          first.push(...this.deliver(attempt, read, index === reads.length - 1));
        });
        if (first.length > 0) {
          yield first;
        }
        while (this.endedWith() === undefined) {
          const read = await attempt.next();
          if (this.signal.aborted) {
            return;
          }
          const items = this.deliver(attempt, read, true);
          if (items.length > 0) {
            yield items as T[];
          }
        }
        const ending = this.endedWith() as AttemptRead;
        if (ending.type === 'end' && this.finished) {
          this.served(attempt);
          return;
        }
        fault =
          ending.type === 'error'
            ? ending.error
            : new UpstreamError('upstream_protocol', 'The model stream ended without a finish reason.');
        this.router.failed(
          this.request,
          attempt.deployment,
          attempt.model,
          fault,
          attempt.probe,
          attempt.startedAt,
          attempt.role,
          attempt.upstreamRequestId,
        );
        this.release(attempt, fault.code);
        // The fault the client is told of, if nothing rescues the answer, is the first one that cut it.
        this.originalFault ??= fault;
        won = await this.continueAfter(fault);
      }
    } finally {
      this.signal.removeEventListener('abort', this.onAbort);
      this.closeAll();
    }
  }

  /**
   * Hands one read of the serving attempt to the framing. When this read ended the attempt (its end, a failure,
   * `[DONE]`, or a chunk that cannot be taken: an unknown finish reason counts as malformed), `ending` says how.
   */
  private deliver(attempt: UpstreamAttempt, read: AttemptRead, last: boolean): readonly T[] {
    if (read.type !== 'chunks') {
      this.ending = read;
      return NOTHING;
    }
    const unknownFinish = this.track(read.chunks);
    const rewritten = this.prefixDeltas !== undefined || this.stripReasoning(attempt, read.chunks);
    const items = this.framing.chunks(read.chunks, rewritten ? undefined : read.raw, this.switched);
    if (unknownFinish) {
      this.ending = {
        type: 'error',
        error: new UpstreamError('upstream_protocol', 'The model sent an unknown finish reason.'),
      };
    } else if (last) {
      this.ending = attempt.afterChunks();
    }
    return items;
  }

  /** How the serving attempt ended, once it has. */
  private ending: AttemptRead | undefined;

  private endedWith(): AttemptRead | undefined {
    return this.ending;
  }

  /** Follows the answer as it is delivered; answers true when a chunk ends it with an unknown finish reason. */
  private track(chunks: ChatCompletionChunk[]): boolean {
    for (const chunk of chunks) {
      const { choices } = chunk;
      if (choices.length > 1) {
        this.notContinuable = true;
      }
      const choice = choices[0];
      if (choice !== undefined) {
        const delta = choice.delta;
        if (delta !== undefined) {
          const content = delta.content;
          if (typeof content === 'string' && content !== '') {
            this.text += content;
            this.contentDeltas++;
          }
          if (delta.tool_calls !== undefined || choice.index > 0) {
            this.notContinuable = true;
          }
          if (!this.reasoningShown && reasoningOf(delta as ReasoningDelta) !== undefined) {
            this.reasoningShown = true;
          }
        }
        if (choice.finish_reason) {
          if (!FINISH_REASONS.has(choice.finish_reason)) {
            return true;
          }
          this.finished = true;
        }
      }
      if (chunk.usage && this.prefixDeltas !== undefined) {
        // The continuation's prompt held the text so far; its completion only the rest. Made whole: the answer's.
        const moved = Math.min(this.prefixDeltas, chunk.usage.prompt_tokens);
        chunk.usage = {
          ...chunk.usage,
          prompt_tokens: chunk.usage.prompt_tokens - moved,
          completion_tokens: chunk.usage.completion_tokens + moved,
        };
      }
    }
    return false;
  }

  /**
   * The first token: the first attempt, then fallbacks as attempts fail; with hedging, the next attempt starts when
   * the first token is late, and whichever gives a real token first wins while the others are aborted at once.
   */
  private async firstToken(): Promise<Won | undefined> {
    const buffered = new Map<UpstreamAttempt, AttemptRead[]>();
    let firstFailure: UpstreamError | undefined;
    if (!(await this.start('first', this.request.body))) {
      throw this.picker.exhausted(this.lastError);
    }
    let hedgeAt = this.hedgeAt();
    for (;;) {
      if (this.signal.aborted) {
        return undefined;
      }
      if (this.active.size === 0) {
        if (!(await this.start('fallback', this.request.body))) {
          throw this.picker.exhausted(this.lastError);
        }
        continue;
      }
      const next = await this.race(hedgeAt);
      if (this.signal.aborted) {
        // The read that woke the race is the abort itself: the client left, the deployment did not fail.
        return undefined;
      }
      if (next === 'hedge') {
        hedgeAt = undefined;
        if (await this.start('hedge', this.request.body)) {
          this.router.metrics.upstreamHedge('started');
        }
        continue;
      }
      const { attempt, read } = next;
      const reads = buffered.get(attempt) ?? [];
      buffered.set(attempt, reads);
      let failure = failureOf(read);
      if (failure === undefined) {
        reads.push(read);
        if (read.type === 'chunks' && hasAnswer(read.chunks)) {
          return this.won(attempt, reads, firstFailure);
        }
        const after = attempt.afterChunks();
        failure = after === undefined ? undefined : failureOf(after);
        if (failure === undefined) {
          continue;
        }
      }
      firstFailure ??= failure;
      this.attemptFailed(attempt, failure);
      if (classifyFailure(failure) === 'refused' && !this.picker.hasFallbackFor(failure)) {
        throw failure;
      }
    }
  }

  private won(attempt: UpstreamAttempt, reads: AttemptRead[], firstFailure: UpstreamError | undefined): Won {
    attempt.tokenArrived(attempt.deployment.settings.idleTimeoutMs);
    this.servingDeployment = attempt.deployment;
    for (const other of this.active) {
      if (other !== attempt) {
        this.router.metrics.upstreamHedge('lost');
        this.router.metrics.upstreamWastedTokens(other.deployment.name, other.contentDeltas);
        this.router.attempted(
          this.request,
          other.deployment,
          other.model,
          'lost',
          other.startedAt,
          other.role,
        );
        // Not `released`: a probe that lost the race keeps its deployment aside until its hold ends (see
        // deployment-health.ts), or every request would wait for the hedge again.
        this.release(other);
      }
    }
    if (attempt.role === 'hedge') {
      this.router.metrics.upstreamHedge('won');
    }
    if (attempt.role === 'first') {
      return { attempt, reads, notice: undefined };
    }
    this.switched = true;
    return {
      attempt,
      reads,
      notice: {
        reason: attempt.role === 'hedge' ? 'hedge' : 'fallback',
        deployment: attempt.deployment.name,
        model: attempt.model,
        ...(firstFailure === undefined ? {} : { code: firstFailure.code }),
      },
    };
  }

  /**
   * The stream broke after content (`fault`), or another instance hands it over (`fault` undefined): the answer is
   * continued on a deployment that can, the text so far as the final assistant message. Other deployments first,
   * then the one that broke. No capable deployment left: `upstream_interrupted`, naming the original fault.
   */
  private async continueAfter(fault: UpstreamError | undefined): Promise<Won | undefined> {
    const handover = this.request.continueFrom !== undefined && fault === undefined;
    if (this.notContinuable) {
      throw interrupted(this.originalFault);
    }
    const prefix = this.text;
    const body = prefix === '' ? this.request.body : undefined;
    const cut = this.servingDeployment;
    const capable = this.continuationCandidates(prefix !== '', cut);
    // Healthy deployments first; one put aside after failures still before giving the answer up. Only looked at
    // here: a probe is taken by the attempt that goes, not by every deployment that could have continued.
    const now = epochNow();
    const ranked = capable.map((candidate) => ({
      ...candidate,
      standing: this.router.health.peek(candidate.deployment.name, now),
    }));
    const ordered = [
      ...ranked.filter(({ standing }) => standing === 'go' || standing === 'probe'),
      ...ranked.filter(({ standing }) => standing === 'cooling'),
    ];
    for (const { deployment, model } of ordered) {
      if (this.attempts >= this.route.maxAttempts || this.signal.aborted) {
        break;
      }
      if (deployment.saturated) {
        continue;
      }
      const admission = this.router.health.admit(deployment.name, epochNow());
      if (admission === 'rate-limited') {
        // It asked to be spared since it was ranked (a 429 to an earlier attempt, here or on another instance).
        continue;
      }
      const mode = deployment.settings.continuation;
      const request =
        body ??
        continuationBody(
          this.spent(this.request.body),
          prefix,
          mode === 'none' ? 'continue_final_message' : mode,
        );
      const attempt = this.open(deployment, model, 'continuation', request, admission !== 'go');
      const reads: AttemptRead[] = [];
      for (;;) {
        const read = await attempt.next();
        if (this.signal.aborted) {
          return undefined;
        }
        const failure = failureOf(read);
        if (failure !== undefined) {
          this.attemptFailed(attempt, failure);
          break;
        }
        this.stripReasoning(attempt, (read as { chunks: ChatCompletionChunk[] }).chunks);
        reads.push(read);
        if (read.type === 'chunks' && hasAnswer(read.chunks)) {
          attempt.tokenArrived(deployment.settings.idleTimeoutMs);
          this.servingDeployment = deployment;
          this.switched = true;
          this.prefixDeltas = prefix === '' ? undefined : this.contentDeltas;
          return {
            attempt,
            reads,
            notice: {
              reason: handover ? 'handover' : 'continuation',
              deployment: deployment.name,
              model,
              ...(fault === undefined ? {} : { code: fault.code }),
            },
          };
        }
        const after = attempt.afterChunks();
        if (after !== undefined) {
          this.attemptFailed(attempt, failureOf(after) as UpstreamError);
          break;
        }
      }
    }
    if (this.signal.aborted) {
      return undefined;
    }
    throw interrupted(this.originalFault);
  }

  /** The deployments that may continue, by the route's order: other deployments first, then the one that broke. */
  private continuationCandidates(
    withPrefix: boolean,
    cut: Deployment | undefined,
  ): { deployment: Deployment; model: string }[] {
    const seen = new Set<string>();
    const all = [
      ...weightedOrder(this.route.targets, this.router.random),
      ...this.route.fallbacks.filter((f) => f.on === undefined),
    ]
      .filter(({ deployment }) => !withPrefix || canContinue(deployment.settings.continuation))
      .filter(({ deployment, model }) => {
        const key = `${deployment.name}\u0000${model}`;
        return seen.has(key) ? false : (seen.add(key), true);
      });
    return [
      ...all.filter(({ deployment }) => deployment !== cut),
      ...all.filter(({ deployment }) => deployment === cut),
    ];
  }

  /** `max_tokens` lowered by what the answer already spent, so the whole answer keeps within what was asked. */
  private spent(body: Record<string, unknown>): Record<string, unknown> {
    const limited = { ...body };
    for (const field of ['max_tokens', 'max_completion_tokens']) {
      const limit = limited[field];
      if (typeof limit === 'number') {
        limited[field] = Math.max(1, limit - this.contentDeltas);
      }
    }
    return limited;
  }

  private servingDeployment: Deployment | undefined;

  /** A new attempt on the next candidate; false when none is left (or the budget or the deadline is spent). */
  private async start(role: AttemptRole, body: Record<string, unknown>): Promise<boolean> {
    if (this.attempts >= this.route.maxAttempts || epochNow() >= this.deadline) {
      return false;
    }
    const candidate = await this.picker.next(this.lastError, this.deadline, this.signal);
    if (candidate === undefined || this.signal.aborted) {
      return false;
    }
    this.open(candidate.deployment, candidate.model, role, body, candidate.probe);
    return true;
  }

  private open(
    deployment: Deployment,
    model: string,
    role: AttemptRole,
    body: Record<string, unknown>,
    probe: boolean,
  ): UpstreamAttempt {
    this.attempts++;
    const perAttempt = deployment.settings.firstTokenTimeoutMs ?? this.route.firstTokenTimeoutMs;
    // Before the first token the stream's deadline bounds every attempt; a continuation has an attempt's own.
    const firstTokenMs =
      role === 'continuation' ? perAttempt : Math.max(1, Math.min(perAttempt, this.deadline - epochNow()));
    const attempt = new UpstreamAttempt(
      deployment,
      model,
      role,
      { ...body, model },
      probe,
      firstTokenMs,
      this.request.keepRaw === true,
    );
    this.active.add(attempt);
    return attempt;
  }

  private attemptFailed(attempt: UpstreamAttempt, error: UpstreamError): void {
    this.lastError = error;
    this.router.failed(
      this.request,
      attempt.deployment,
      attempt.model,
      error,
      attempt.probe,
      attempt.startedAt,
      attempt.role,
      attempt.upstreamRequestId,
    );
    this.release(attempt, error.code);
  }

  private served(attempt: UpstreamAttempt): void {
    this.router.health.succeeded(attempt.deployment.name, attempt.probe);
    this.router.attempted(
      this.request,
      attempt.deployment,
      attempt.model,
      'ok',
      attempt.startedAt,
      attempt.role,
      attempt.upstreamRequestId,
    );
    this.release(attempt);
  }

  private release(attempt: UpstreamAttempt, error?: string): void {
    attempt.close(error);
    this.active.delete(attempt);
  }

  /** Attempts still open when the stream ends (its client left, or another attempt ended it) said nothing. */
  private closeAll(): void {
    for (const attempt of this.active) {
      attempt.close();
      this.router.health.released(attempt.deployment.name, attempt.probe);
    }
    this.active.clear();
  }

  /** When a hedge starts: the model's `hedgeAfterMs`, or the first deployment's recent TTFT p95 (`adaptive`). */
  private hedgeAt(): number | undefined {
    const { hedgeAfterMs } = this.route;
    if (hedgeAfterMs === undefined) {
      return undefined;
    }
    if (hedgeAfterMs !== 'adaptive') {
      return epochNow() + hedgeAfterMs;
    }
    const [first] = this.active;
    const samples = first.deployment.ttfts;
    return (
      epochNow() +
      (samples.length < UPSTREAM_DEFAULTS.adaptiveHedgeSamples
        ? UPSTREAM_DEFAULTS.adaptiveHedgeFallbackMs
        : percentile95(samples))
    );
  }

  /** The next read of any running attempt, or the hedge's time when it comes first. */
  private async race(
    hedgeAt: number | undefined,
  ): Promise<{ attempt: UpstreamAttempt; read: AttemptRead } | 'hedge'> {
    const contenders: Promise<{ attempt: UpstreamAttempt; read: AttemptRead } | 'hedge'>[] = [];
    for (const attempt of this.active) {
      attempt.pending ??= attempt.next();
      contenders.push(attempt.pending.then((read) => ({ attempt, read })));
    }
    let timer: NodeJS.Timeout | undefined;
    if (hedgeAt !== undefined && this.attempts < this.route.maxAttempts) {
      contenders.push(
        new Promise((resolve) => {
          timer = setTimeout(() => resolve('hedge'), Math.max(0, hedgeAt - epochNow()));
        }),
      );
    }
    const next = await Promise.race(contenders);
    clearTimeout(timer);
    if (next !== 'hedge') {
      next.attempt.pending = undefined;
    }
    return next;
  }

  /**
   * Reasoning already shown is not shown again: a continuation, or a fresh attempt after a cut during reasoning,
   * would think from the start. Answers whether it removed any (then the chunks are no longer their `data` texts).
   */
  private stripReasoning(attempt: UpstreamAttempt, chunks: ChatCompletionChunk[] | undefined): boolean {
    if (attempt.role !== 'continuation' || !this.reasoningShown || chunks === undefined) {
      return false;
    }
    let stripped = false;
    for (const chunk of chunks) {
      const delta = chunk.choices[0]?.delta as Record<string, unknown> | undefined;
      if (delta !== undefined && ('reasoning_content' in delta || 'reasoning' in delta)) {
        delete delta['reasoning_content'];
        delete delta['reasoning'];
        stripped = true;
      }
    }
    return stripped;
  }
}

/** The error of a read that ends an attempt before its first token; undefined for chunks. */
function failureOf(read: AttemptRead): UpstreamError | undefined {
  if (read.type === 'error') {
    return read.error;
  }
  if (read.type === 'end') {
    return new UpstreamError('upstream_protocol', 'The model stream ended without an answer.');
  }
  return undefined;
}

/** A real token: content, reasoning, a tool call, or the finish of an empty answer. */
function hasAnswer(chunks: ChatCompletionChunk[]): boolean {
  return chunks.some((chunk) => {
    const choice = chunk.choices[0];
    if (choice === undefined) {
      return false;
    }
    const delta = choice.delta;
    return (
      Boolean(choice.finish_reason) ||
      (delta !== undefined &&
        ((typeof delta.content === 'string' && delta.content !== '') ||
          delta.tool_calls !== undefined ||
          reasoningOf(delta as ReasoningDelta) !== undefined))
    );
  });
}

function interrupted(fault: UpstreamError | undefined): UpstreamError {
  if (fault === undefined) {
    return new UpstreamError(
      'stream_lost',
      'The instance running the stream stopped, and no deployment could continue it.',
    );
  }
  return new UpstreamError(
    'upstream_interrupted',
    `The answer was cut short (${describeFault(fault)}) and no deployment could continue it; retry the request.`,
    fault.retryAfterMs,
  );
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
