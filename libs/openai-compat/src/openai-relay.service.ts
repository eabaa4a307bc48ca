import {
  bodyReader,
  CompletionService,
  epochNow,
  type OpenAiPassthrough,
  readCapped,
  readToEnd,
  safeUpstreamRequestId,
  UpstreamError,
} from '@app/completion';
import { ModelPolicy, type Principal, ServerKeys } from '@app/auth';
import { APP_CONFIG, type AppConfig } from '@app/config';
import type { StreamErrorCode } from '@app/contracts';
import { MetricsService, type StreamOutcome } from '@app/metrics';
import {
  AdmissionUnavailableError,
  STREAM_LIMITS,
  StreamAdmission,
  type StreamLimits,
  StreamStarter,
} from '@app/streams';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { createHmac } from 'node:crypto';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { Request, Response } from 'express';
import { once } from 'node:events';
import { parseChatRequest, type RelayedRequest } from './chat-request';
import { ChunkObserver, usageOf } from './chunk-observer';
import { ModelList } from './model-list';
import { OpenAiError, streamedError } from './openai-error';

const STREAM_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
};

const UPSTREAM_REQUEST_ID_HEADER = 'x-upstream-request-id';

/**
 * Bytes written to a client and not yet taken by its kernel past which it is dropped, as Socket.IO's cap (the
 * relay waits for `drain` after each write, so only one oversized write can take it there).
 */
export const MAX_RELAY_PENDING_BYTES = 4 * 1024 * 1024;
/** A non-streamed answer is written in slices of this size, each after the client has taken the previous. */
const JSON_SLICE_BYTES = 64 * 1024;

/** The relay's bounds (AppConfig['openaiCompat']) and what it calls when it drops a stalled reader. */
interface RelayLimits {
  firstTokenMs: number;
  idleMs: number;
  maxResponseBytes: number;
  writeStallTimeoutMs: number;
  onDropped: () => void;
}

/**
 * The `/v1/chat/completions` relay: validated lightly, admitted under the same limits as every other stream,
 * sent to the upstream through the provider's SDK as it is, and answered with the upstream's own JSON or chunks.
 * Each chunk's `data` is written unchanged, so every field the upstream sent reaches the client; only an
 * upstream `error` object mid-stream is replaced by the gateway's own words. A client that leaves aborts the
 * upstream request at once: there is no resume on this surface. A client that stops reading is dropped, as on
 * the other transports (see `RelayRun.write`); a non-streamed answer over `V1_MAX_RESPONSE_BYTES` is a 502.
 */
@Injectable()
export class OpenAiRelay {
  private readonly logger = new Logger(OpenAiRelay.name);
  private readonly modelList: ModelList;
  private readonly dropped = () => this.metrics.slowClientDropped('openai');

  constructor(
    private readonly completion: CompletionService,
    private readonly starter: StreamStarter,
    private readonly metrics: MetricsService,
    private readonly modelPolicy: ModelPolicy,
    private readonly keys: ServerKeys,
    private readonly admission: StreamAdmission,
    @Inject(STREAM_LIMITS) private readonly limits: StreamLimits,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.modelList = new ModelList(config.openaiCompat.modelsCacheMs, (signal) =>
      this.call(() => this.upstream().models(signal)),
    );
  }

  async chatCompletions(
    request: Request,
    response: Response,
    payload: unknown,
    principal: Principal,
  ): Promise<void> {
    if (!request.is('application/json')) {
      throw OpenAiError.refusal('unsupported_media_type', 'Send the request body as application/json.');
    }
    const upstream = this.upstream();
    const chat = parseChatRequest(payload, this.completion.defaultModel, this.pseudonym(principal));
    if (!this.modelPolicy.allows(principal, chat.model)) {
      throw OpenAiError.refusal('forbidden', ModelPolicy.REFUSAL, undefined, 'model');
    }
    const run = new RelayRun(chat, request, response, {
      ...this.completion.timeouts,
      maxResponseBytes: this.config.openaiCompat.maxResponseBytes,
      writeStallTimeoutMs: this.config.openaiCompat.writeStallTimeoutMs,
      onDropped: this.dropped,
    });
    // The one coupling to the limits: admitted like any stream, released when the relay ends, however it ends.
    const admission = await this.starter.admit(principal.id, () => run.stopForShutdown(), principal.limitKey);
    if (!admission.ok) {
      throw OpenAiError.refusal(admission.code, admission.message, admission.retryAfterMs);
    }
    this.metrics.streamStarted('openai');
    this.metrics.connectionOpened('openai');
    try {
      await run.execute(upstream);
    } finally {
      admission.release();
      this.metrics.connectionClosed('openai');
      this.ended(run);
    }
  }

  /**
   * The upstream's model list, filtered by the principal's allow-lists. Each call counts toward the principal's
   * per-minute limit, as a stream start does, and the list itself is cached (`V1_MODELS_CACHE_MS`) and fetched
   * once for callers that come together: a principal cannot spend upstream calls on it.
   */
  async models(response: Response, principal: Principal): Promise<void> {
    this.upstream();
    await this.meter(principal);
    const list = await this.modelList.get(this.completion.timeouts.firstTokenMs);
    const data = list.data.filter((model) => this.modelPolicy.allows(principal, model.id));
    response
      .status(200)
      .type('application/json')
      .send(JSON.stringify({ ...list, data }));
  }

  /** One place in the principal's per-minute window (the one stream starts and resumes count in), or a 429. */
  private async meter(principal: Principal): Promise<void> {
    let admitted: Awaited<ReturnType<StreamAdmission['admitResume']>>;
    try {
      admitted = await this.admission.admitResume(principal.limitKey ?? principal.id);
    } catch (error) {
      if (error instanceof AdmissionUnavailableError) {
        throw OpenAiError.refusal(
          'unavailable',
          'The service cannot take requests right now; retry shortly.',
          1000,
        );
      }
      throw error;
    }
    if (!admitted.ok) {
      throw OpenAiError.refusal(
        'rate_limited',
        `At most ${this.limits.requestsPerMinute} requests may be made per minute.`,
        admitted.retryAfterMs,
      );
    }
  }

  /**
   * What the upstream is told as `user`: a keyed hash of the principal (of its network for anonymous clients), the
   * same on every instance sharing `AUTH_RESUME_SECRET`, that the upstream cannot turn back into a principal.
   */
  private pseudonym(principal: Principal): string {
    const digest = createHmac('sha256', this.keys.keyFor('upstream-user'))
      .update(principal.limitKey ?? principal.id)
      .digest('base64url');
    return `gw-${digest.slice(0, 32)}`;
  }

  private upstream(): OpenAiPassthrough {
    const passthrough = this.completion.passthrough;
    if (!passthrough) {
      throw OpenAiError.refusal(
        'not_found',
        "This gateway's model provider has no OpenAI-compatible surface.",
      );
    }
    return passthrough;
  }

  private async call(send: () => Promise<globalThis.Response>): Promise<globalThis.Response> {
    try {
      return await send();
    } catch (error) {
      throw error instanceof UpstreamError ? OpenAiError.fromUpstream(error) : error;
    }
  }

  private ended(run: RelayRun): void {
    const outcome = run.outcome(this.completion.providerName);
    this.metrics.streamEnded(outcome);
    // Ids and counts only: prompts and answers never reach a log line.
    const usage = run.usage;
    this.logger.log(
      {
        requestId: run.requestId,
        upstreamRequestId: run.upstreamRequestId,
        transport: 'openai',
        model: run.model,
        stream: run.stream,
        outcome: outcome.errorCode ?? (outcome.cancelled ? 'cancelled' : 'done'),
        tokens: outcome.tokens,
        reasoningTokens: outcome.reasoningTokens,
        promptTokens: usage?.promptTokens,
        completionTokens: usage?.completionTokens,
        droppedSlowClient: run.droppedSlowClient || undefined,
        ttftMs: outcome.ttftMs === undefined ? undefined : Math.round(outcome.ttftMs),
        durationMs: Math.round(outcome.durationMs),
      },
      'openai relay ended',
    );
  }
}

/** An upstream SSE event past `maxResponseBytes` before its end: the stream is cut as malformed. */
class OversizedEvent extends Error {}

/** One relayed request: its upstream call, its timeouts, and what it observed, for metrics and logs. */
class RelayRun {
  readonly requestId: string | undefined;
  upstreamRequestId: string | undefined;
  private readonly startedAt = epochNow();
  private endedAt: number | undefined;
  private readonly upstream = new AbortController();
  private readonly observer = new ChunkObserver();
  private timer: NodeJS.Timeout | undefined;
  private timedOut = false;
  private shuttingDown = false;
  private clientLeft = false;
  private errorCode: StreamErrorCode | undefined;
  /** Dropped for not reading (pending bytes or the write-stall deadline), as opposed to leaving. */
  droppedSlowClient = false;
  /** A non-streamed answer's token counts, which its `usage` gives (streamed ones are counted by the observer). */
  private answerUsage: { tokens: number; reasoningTokens: number } | undefined;

  constructor(
    private readonly chat: RelayedRequest,
    request: Request,
    private readonly response: Response,
    private readonly limits: RelayLimits,
  ) {
    // pino-http's id (the client's X-Request-Id when it sent a sane one).
    const id = (request as Request & { id?: unknown }).id;
    this.requestId = typeof id === 'string' || typeof id === 'number' ? String(id) : undefined;
  }

  /** The shutdown grace is over: the upstream request stops and the client is told to retry. */
  stopForShutdown(): void {
    this.shuttingDown = true;
    this.upstream.abort();
  }

  get model(): string {
    return this.chat.model;
  }

  get stream(): boolean {
    return this.chat.stream;
  }

  get usage() {
    return this.observer.usage;
  }

  async execute(passthrough: OpenAiPassthrough): Promise<void> {
    const onClose = () => {
      if (!this.response.writableFinished) {
        this.clientLeft = true;
        this.upstream.abort();
      }
    };
    this.response.on('close', onClose);
    this.arm(this.limits.firstTokenMs);
    try {
      const upstreamResponse = await this.send(passthrough);
      if (upstreamResponse === undefined) {
        return;
      }
      this.upstreamRequestId = safeUpstreamRequestId(upstreamResponse.headers.get('x-request-id'));
      if (this.upstreamRequestId) {
        this.response.setHeader(UPSTREAM_REQUEST_ID_HEADER, this.upstreamRequestId);
      }
      if (this.chat.stream) {
        await this.relayStream(upstreamResponse);
      } else {
        await this.relayJson(upstreamResponse);
      }
    } finally {
      clearTimeout(this.timer);
      this.endedAt = epochNow();
      this.response.off('close', onClose);
    }
  }

  outcome(provider: string): StreamOutcome {
    const { observer } = this;
    const end = this.endedAt ?? epochNow();
    return {
      transport: 'openai',
      provider,
      tokens: this.answerUsage?.tokens ?? observer.tokens,
      reasoningTokens: this.answerUsage?.reasoningTokens ?? observer.reasoningTokens,
      ttftMs: observer.firstEventAt === undefined ? undefined : observer.firstEventAt - this.startedAt,
      reasoningMs:
        observer.firstReasoningAt === undefined
          ? undefined
          : (observer.firstTokenAt ?? end) - observer.firstReasoningAt,
      durationMs: end - this.startedAt,
      cancelled: this.clientLeft,
      errorCode: this.errorCode,
    };
  }

  /** The upstream's response; undefined when the client left first. A refusal is thrown as an `OpenAiError`. */
  private async send(passthrough: OpenAiPassthrough): Promise<globalThis.Response | undefined> {
    try {
      return await passthrough.chatCompletions(this.chat.body, this.upstream.signal, {
        maxResponseBytes: this.limits.maxResponseBytes,
      });
    } catch (error) {
      if (this.clientLeft) {
        return undefined;
      }
      const failure = this.shuttingDown
        ? new UpstreamError('shutting_down', 'The server is restarting; retry the request.')
        : this.timedOut
          ? new UpstreamError('upstream_timeout', 'The model did not answer in time.')
          : error instanceof UpstreamError
            ? error
            : new UpstreamError('internal', 'The gateway failed to call the model.');
      this.errorCode = failure.code;
      throw OpenAiError.fromUpstream(failure);
    }
  }

  /**
   * A non-streamed answer: read up to `maxResponseBytes` (a larger one is a 502, never buffered whole), checked to
   * be JSON, its `usage` counted, then written in slices as the client takes them (see `write`).
   */
  private async relayJson(upstreamResponse: globalThis.Response): Promise<void> {
    let bytes: Buffer | undefined;
    let answer: { usage?: unknown };
    try {
      bytes = await readCapped(upstreamResponse, this.limits.maxResponseBytes);
      clearTimeout(this.timer);
      if (bytes === undefined) {
        this.upstream.abort();
        throw this.fail('upstream_protocol', 'The model’s answer is larger than the gateway relays.');
      }
      answer = JSON.parse(bytes.toString('utf8')) as { usage?: unknown };
    } catch (error) {
      if (this.clientLeft) {
        return;
      }
      if (error instanceof OpenAiError) {
        throw error;
      }
      throw this.fail(error instanceof SyntaxError ? 'upstream_protocol' : this.lostOrTimedOut());
    }
    const usage = usageOf(answer?.usage);
    if (usage !== undefined) {
      this.observer.usage = usage;
      this.answerUsage = {
        tokens: Math.max(0, usage.completionTokens - usage.reasoningTokens),
        reasoningTokens: usage.reasoningTokens,
      };
    }
    const { response } = this;
    response.status(200).type('application/json').setHeader('Content-Length', bytes.byteLength);
    for (let offset = 0; offset < bytes.byteLength; offset += JSON_SLICE_BYTES) {
      if (!(await this.write(bytes.subarray(offset, offset + JSON_SLICE_BYTES), false))) {
        return;
      }
    }
    response.end();
  }

  private async relayStream(upstreamResponse: globalThis.Response): Promise<void> {
    const { response } = this;
    const body = bodyReader(upstreamResponse);
    if (!upstreamResponse.headers.get('content-type')?.startsWith('text/event-stream') || !body) {
      body?.cancel();
      throw this.fail('upstream_protocol');
    }
    response.status(200);
    for (const [name, value] of Object.entries(STREAM_HEADERS)) {
      response.setHeader(name, value);
    }
    response.socket?.setNoDelay(true);
    response.flushHeaders();

    let finished = false;
    let out = '';
    let unparsedBytes = 0;
    const parser = createParser({
      onEvent: (message: EventSourceMessage) => {
        unparsedBytes = 0;
        if (finished) {
          return;
        }
        const seen = this.observer.observe(message.data, message.event);
        if (seen === 'done') {
          finished = true;
          out += 'data: [DONE]\n\n';
        } else if (seen === 'chunk') {
          out += `data: ${message.data}\n\n`;
        } else {
          finished = true;
          this.errorCode = seen.failure;
          out += streamedError(this.streamError(seen.failure, seen.message));
        }
      },
    });
    const decoder = new TextDecoder();
    let reading = true;
    try {
      for (;;) {
        const read = await body.read();
        if (read.done) {
          reading = false;
          break;
        }
        unparsedBytes += read.value.byteLength;
        if (unparsedBytes > this.limits.maxResponseBytes) {
          // One event this large is no chat chunk; the parser would hold all of it until its end came.
          throw new OversizedEvent();
        }
        parser.feed(decoder.decode(read.value, { stream: true }));
        if (this.observer.firstEventAt !== undefined) {
          this.arm(this.limits.idleMs);
        }
        if (out !== '') {
          const chunk = out;
          out = '';
          await this.write(chunk);
        }
        if (finished || this.clientLeft) {
          break;
        }
      }
      if (!finished && !this.clientLeft && this.observer.finishReason === undefined) {
        // The body ended without [DONE] or a finish: the answer is cut, and the client must not take it as whole.
        this.errorCode = 'upstream_unavailable';
        await this.write(streamedError(this.streamError('upstream_unavailable')));
      }
    } catch (error) {
      if (!this.clientLeft) {
        const code = error instanceof OversizedEvent ? 'upstream_protocol' : this.lostOrTimedOut();
        this.errorCode = code;
        await this.write(streamedError(this.streamError(code)));
      }
    } finally {
      clearTimeout(this.timer);
      if (reading && finished && this.errorCode === undefined && !this.clientLeft) {
        // [DONE] with bytes left: they are read out, as the provider does, so the upstream connection is kept for the
        // next request instead of closed.
        void readToEnd(body);
      } else {
        // We stopped reading first for another reason (an error object, the client left): the request is cut.
        if (reading) {
          body.cancel();
        }
        this.upstream.abort();
      }
      response.end();
    }
  }

  /** `message`: the router's own words for an answer it could not rescue (they name the original fault). */
  private streamError(code: StreamErrorCode, message?: string): OpenAiError {
    const messages: Partial<Record<StreamErrorCode, string>> = {
      upstream_protocol: 'The model sent a malformed stream.',
      upstream_timeout: 'The model stopped sending tokens in time.',
      upstream_unavailable: 'The connection to the model was lost.',
      shutting_down: 'The server is restarting; retry the request.',
      upstream_interrupted:
        'The answer was cut short and no deployment could continue it; retry the request.',
    };
    return OpenAiError.fromUpstream(
      new UpstreamError(code, message ?? messages[code] ?? 'The model failed mid-answer.'),
    );
  }

  private fail(code: StreamErrorCode, message?: string): OpenAiError {
    this.errorCode = code;
    return message === undefined
      ? this.streamError(code)
      : OpenAiError.fromUpstream(new UpstreamError(code, message));
  }

  private lostOrTimedOut(): StreamErrorCode {
    if (this.shuttingDown) {
      return 'shutting_down';
    }
    return this.timedOut ? 'upstream_timeout' : 'upstream_unavailable';
  }

  /**
   * Writes, then waits while the client is slower than the upstream: backpressure reaches the upstream's socket.
   * A client that takes nothing for `writeStallTimeoutMs`, or has more than MAX_RELAY_PENDING_BYTES unread, is
   * dropped, as SSE and Socket.IO drop theirs: its slot is released and its upstream request aborted, where
   * waiting on it would hold both for as long as it liked. False when the response is gone (left or dropped).
   */
  private async write(chunk: string | Uint8Array, rearmIdle = true): Promise<boolean> {
    const { response } = this;
    if (response.destroyed || response.writableEnded) {
      return false;
    }
    const flushed = response.write(chunk);
    if (response.writableLength > MAX_RELAY_PENDING_BYTES) {
      this.dropSlowClient();
      return false;
    }
    if (flushed) {
      return true;
    }
    // A slow reader is not a silent model: the idle deadline waits until the client has caught up.
    clearTimeout(this.timer);
    if (!(await this.drained())) {
      if (!response.destroyed) {
        this.dropSlowClient();
      }
      return false;
    }
    if (rearmIdle) {
      this.arm(this.limits.idleMs);
    }
    return true;
  }

  /** Whether the client took what was written within the write-stall deadline (false too when it left). */
  private async drained(): Promise<boolean> {
    const { response } = this;
    const settled = new AbortController();
    const deadline = setTimeout(() => settled.abort(), this.limits.writeStallTimeoutMs);
    try {
      await Promise.race([
        once(response, 'drain', { signal: settled.signal }),
        once(response, 'close', { signal: settled.signal }),
      ]);
      return !response.destroyed;
    } catch {
      return false;
    } finally {
      clearTimeout(deadline);
      settled.abort();
    }
  }

  private dropSlowClient(): void {
    this.droppedSlowClient = true;
    this.clientLeft = true;
    this.upstream.abort();
    this.response.destroy();
    this.limits.onDropped();
  }

  /** The first-token or idle deadline: when it passes, the upstream request is aborted and reported as a timeout. */
  private arm(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.upstream.abort();
    }, ms);
    this.timer.unref();
  }
}
