import { epochNow as wallClockNow } from '@app/clock';
import type {
  CompletionEvent,
  CompletionRequest,
  FinishReason,
  StreamError,
  StreamTiming,
  TokenUsage,
} from '@app/contracts';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { Observable, type Subscriber } from 'rxjs';
import { COMPLETION_PROVIDER } from './completion.constants';
import { COMPLETION_MODULE_OPTIONS, type CompletionModuleOptions } from './completion.module-definition';
import {
  type CompletionProvider,
  isOpenAiPassthrough,
  type OpenAiPassthrough,
  type ProviderChunk,
  type ProviderRequest,
} from './completion-provider';
import { UpstreamError } from './upstream.error';

export interface StreamOptions {
  streamId: string;
  /** Aborting it is an explicit cancel: the upstream request stops and the stream ends with `done`/`cancelled`. */
  cancel?: AbortSignal;
  /**
   * Instead of `cancel`, for a caller that owns the stream's controller: the stream uses it for its upstream request
   * too, so the stream has one abort signal, not two. Aborting it is an explicit cancel, as with `cancel`; ending the
   * subscription before the upstream's end aborts it (that is what stops the upstream request).
   */
  controller?: AbortController;
  /**
   * (v1.2) Continue a stream another instance started and can no longer finish (a handover): no `start`; the first
   * event, at `seq`, is the provider's `route` event, then the rest of the answer. `text` is the answer delivered so
   * far; `startedAt` and `firstEventAt` are the original stream's, so `timing` covers the whole answer.
   */
  continueFrom?: ContinueFrom;
}

export interface ContinueFrom {
  /** The seq the next event takes. */
  seq: number;
  text: string;
  /** The reasoning delivered so far, if any: a continuation's own reasoning is then not shown again. */
  reasoning?: string;
  reason: 'handover';
  startedAt: number;
  firstEventAt?: number;
}

/** Epoch milliseconds with sub-millisecond precision, the `ts` of every event: the wall clock (`@app/clock`). */
export function epochNow(): number {
  return wallClockNow();
}

/**
 * Turns a CompletionRequest into the contract's event stream. The Observable is cold: each
 * subscription is one upstream request, and unsubscribing aborts it.
 */
@Injectable()
export class CompletionService {
  private readonly logger = new Logger(CompletionService.name);

  constructor(
    @Inject(COMPLETION_PROVIDER) private readonly provider: CompletionProvider,
    @Inject(COMPLETION_MODULE_OPTIONS) private readonly options: CompletionModuleOptions,
  ) {}

  get providerName(): string {
    return this.provider.name;
  }

  get defaultModel(): string {
    return this.options.defaultModel;
  }

  /** The first-token and idle timeouts, for a transport that relays the upstream itself (`/v1`). */
  get timeouts(): { firstTokenMs: number; idleMs: number } {
    return { firstTokenMs: this.options.firstTokenTimeoutMs, idleMs: this.options.idleTimeoutMs };
  }

  /** The upstream as the `/v1` surface relays it, when the provider speaks OpenAI's wire format (the default one does). */
  get passthrough(): OpenAiPassthrough | undefined {
    return isOpenAiPassthrough(this.provider) ? this.provider : undefined;
  }

  /** (v1.2) Whether the model is one this gateway serves (with an upstream table, one it names). */
  knowsModel(model: string): boolean {
    return this.provider.knowsModel?.(model) ?? true;
  }

  /** (v1.2) Whether an answer of this model (the default when absent) can be continued by another attempt. */
  canContinue(model?: string): boolean {
    return this.provider.canContinue?.(model ?? this.options.defaultModel) ?? false;
  }

  /** Whether the upstream answers; for readiness. */
  ping(signal: AbortSignal): Promise<void> {
    return this.provider.ping(signal);
  }

  stream(
    request: CompletionRequest,
    { streamId, cancel: signal, controller, continueFrom }: StreamOptions,
  ): Observable<CompletionEvent> {
    return new Observable<CompletionEvent>((subscriber) => {
      const timeouts = this.provider.ownsTimeouts ? undefined : this.options;
      const run = new StreamRun(streamId, subscriber, timeouts, this.logger, controller);
      const cancel = controller?.signal ?? signal;
      const model = request.model ?? this.options.defaultModel;
      if (continueFrom) {
        run.resumeAt(continueFrom);
      } else {
        run.begin(model);
      }
      if (cancel?.aborted) {
        run.finish('cancelled');
        return undefined;
      }
      const onCancel = () => run.finish('cancelled');
      cancel?.addEventListener('abort', onCancel, { once: true });
      void run.pump(this.provider, {
        streamId,
        model,
        messages: request.messages,
        temperature: request.temperature,
        maxTokens: request.maxTokens,
        topP: request.topP,
        ...(continueFrom
          ? {
              continueFrom: {
                text: continueFrom.text,
                reasoningShown: Boolean(continueFrom.reasoning),
                reason: continueFrom.reason,
              },
            }
          : {}),
      });
      return () => {
        cancel?.removeEventListener('abort', onCancel);
        run.close();
      };
    });
  }
}

/** One upstream request and the events it becomes; `ended` guards against anything after the terminal event. */
class StreamRun {
  private readonly upstream: AbortController;
  private seq = 0;
  private startedAt = 0;
  /** The first reasoning or token event: what the user first sees, so what ttftMs and the first-token timeout count. */
  private firstEventAt: number | undefined;
  private firstReasoningAt: number | undefined;
  private firstTokenAt: number | undefined;
  private finishReason: Exclude<FinishReason, 'cancelled'> | undefined;
  private usage: TokenUsage | null = null;
  private timer: NodeJS.Timeout | undefined;
  /**
   * When the upstream last sent something. The idle timer is not refreshed per token (that moves it in Node's
   * timer list on every token): when it fires it looks at this, and waits out the rest if something came since.
   */
  private lastChunkAt = 0;
  private ended = false;
  /** The provider read the upstream response to its end: nothing is left to abort. */
  private upstreamDone = false;

  constructor(
    private readonly streamId: string,
    private readonly subscriber: Subscriber<CompletionEvent>,
    /** The first-token and idle deadlines; none when the provider keeps its own (`ownsTimeouts`). */
    private readonly options:
      Pick<CompletionModuleOptions, 'firstTokenTimeoutMs' | 'idleTimeoutMs'> | undefined,
    private readonly logger: Logger,
    /** The caller's controller, when it shares it (`StreamOptions.controller`); else the run's own. */
    upstream = new AbortController(),
  ) {
    this.upstream = upstream;
  }

  begin(model: string): void {
    this.startedAt = epochNow();
    this.subscriber.next({ type: 'start', streamId: this.streamId, seq: 0, model, ts: this.startedAt });
    this.seq = 1;
    if (this.options) {
      this.timer = setTimeout(() => this.timeOut('first'), this.options.firstTokenTimeoutMs);
      this.timer.unref();
    }
  }

  /** A handover: the stream goes on from `from.seq`, its timing counted from the original start. */
  resumeAt(from: ContinueFrom): void {
    this.startedAt = from.startedAt;
    this.firstEventAt = from.firstEventAt;
    this.seq = from.seq;
  }

  /**
   * Hands the provider's chunks on as events, synchronously, batch by batch (one batch per upstream read for the
   * default provider): one `epochNow()` and one iteration step per batch. The events of one batch share their `ts`:
   * they arrived together.
   */
  async pump(provider: CompletionProvider, request: ProviderRequest): Promise<void> {
    try {
      for await (const chunks of provider.stream(request, this.upstream.signal)) {
        if (this.ended) {
          return;
        }
        const ts = epochNow();
        if (isBatch(chunks)) {
          for (const chunk of chunks) {
            this.take(chunk, ts);
            if (this.ended) {
              return;
            }
          }
        } else {
          this.take(chunks, ts);
        }
      }
      this.upstreamDone = true;
      if (!this.ended) {
        this.finish(this.finishReason ?? 'stop');
      }
    } catch (error) {
      if (this.ended) {
        return;
      }
      if (error instanceof UpstreamError) {
        this.fail(error.toStreamError());
      } else {
        this.logger.error(
          `stream ${this.streamId} failed: ${error instanceof Error ? error.stack : String(error)}`,
        );
        this.fail({ code: 'internal', message: 'The gateway failed while streaming.', retryable: false });
      }
    }
  }

  private take(chunk: ProviderChunk, ts: number): void {
    switch (chunk.kind) {
      case 'text':
      case 'reasoning':
        this.lastChunkAt = ts;
        if (this.firstEventAt === undefined) {
          this.firstEventAt = ts;
          if (this.options) {
            this.restartTimer(this.options.idleTimeoutMs);
          }
        }
        if (chunk.kind === 'text') {
          this.firstTokenAt ??= ts;
        } else {
          this.firstReasoningAt ??= ts;
        }
        this.subscriber.next({
          type: chunk.kind === 'text' ? 'token' : 'reasoning',
          streamId: this.streamId,
          seq: this.seq++,
          text: chunk.text,
          ts,
        });
        return;
      case 'finish':
        this.finishReason = chunk.reason;
        this.lastChunkAt = ts;
        this.timer?.refresh();
        return;
      case 'route':
        this.subscriber.next({
          type: 'route',
          streamId: this.streamId,
          seq: this.seq++,
          ts,
          model: chunk.model,
          deployment: chunk.deployment,
          reason: chunk.reason,
          ...(chunk.code === undefined ? {} : { code: chunk.code }),
        });
        return;
      default:
        this.usage = chunk.usage;
    }
  }

  finish(reason: FinishReason): void {
    if (this.ended) {
      return;
    }
    const ts = epochNow();
    this.end({
      type: 'done',
      streamId: this.streamId,
      seq: this.seq++,
      ts,
      finishReason: reason,
      usage: reason === 'cancelled' ? null : this.usage,
      timing: this.timing(ts),
    });
  }

  private timing(ts: number): StreamTiming {
    const timing: StreamTiming = {
      ttftMs: (this.firstEventAt ?? ts) - this.startedAt,
      durationMs: ts - this.startedAt,
    };
    if (this.firstReasoningAt !== undefined) {
      timing.reasoningMs = (this.firstTokenAt ?? ts) - this.firstReasoningAt;
    }
    return timing;
  }

  /** Teardown: whatever state the stream is in, the upstream request stops. */
  close(): void {
    this.ended = true;
    clearTimeout(this.timer);
    // Aborting builds a DOMException with a stack: a cost per stream worth skipping when there is nothing to stop.
    if (!this.upstreamDone) {
      this.upstream.abort();
    }
  }

  private fail(error: StreamError): void {
    this.end({ type: 'error', streamId: this.streamId, seq: this.seq++, ts: epochNow(), error });
  }

  private end(event: CompletionEvent): void {
    this.close();
    this.subscriber.next(event);
    this.subscriber.complete();
  }

  private timeOut(phase: 'first' | 'idle'): void {
    this.fail(
      new UpstreamError(
        'upstream_timeout',
        phase === 'first'
          ? 'The model sent no token in time.'
          : 'The model stopped sending tokens mid-answer.',
      ).toStreamError(),
    );
  }

  private restartTimer(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.idleCheck(), ms);
    this.timer.unref();
  }

  /** The idle timer fired: time out if nothing came for the idle timeout, else wait for the rest of it. */
  private idleCheck(): void {
    if (this.ended || !this.options) {
      return;
    }
    // Node's timers count whole milliseconds: under one left is due.
    const left = this.lastChunkAt + this.options.idleTimeoutMs - epochNow();
    if (left >= 1) {
      this.restartTimer(left);
    } else {
      this.timeOut('idle');
    }
  }
}

function isBatch(chunks: ProviderChunk | readonly ProviderChunk[]): chunks is readonly ProviderChunk[] {
  return Array.isArray(chunks);
}
