import { epochNow } from '@app/clock';
import { type CompletionEvent, isTerminalEvent, type StreamError } from '@app/contracts';
import type { StreamOutcome, TransportName } from '@app/metrics';
import { Observable, type Subscriber, type Subscription } from 'rxjs';
import { MAX_BUFFERED_EVENTS } from './streams.constants';

/**
 * One stream as the registry holds it: the upstream subscription, the events so far (for resume)
 * and the transports currently listening. Events are pushed to listeners directly, without a Subject
 * per stream, because this is the per-token hot path.
 */
export class LiveStream {
  private readonly events: CompletionEvent[] = [];
  private readonly listeners = new Set<Subscriber<CompletionEvent>>();
  private readonly canceller = new AbortController();
  private upstream: Subscription | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private firstBufferedSeq = 0;
  /** While handing the stream over: the upstream's events are held here, not published (see `pause`). */
  private held: CompletionEvent[] | undefined;
  finished = false;

  constructor(
    readonly id: string,
    readonly owner: string,
    readonly transport: TransportName,
    private readonly onIdle: (stream: LiveStream) => void,
    private readonly onFinished: (stream: LiveStream) => void,
    private readonly onPublished?: (stream: LiveStream, event: CompletionEvent) => void,
    /** A stream taken over from another instance: its events so far (its listeners here replay them). */
    history: readonly CompletionEvent[] = [],
  ) {
    this.events.push(...history.slice(-MAX_BUFFERED_EVENTS));
    this.firstBufferedSeq = this.events[0]?.seq ?? 0;
  }

  /**
   * The stream's one abort controller, shared with its completion (`StreamOptions.controller`): aborting it is an
   * explicit cancel, and the completion aborts it to stop its upstream request. One signal per stream, not two.
   */
  get controller(): AbortController {
    return this.canceller;
  }

  /** The events still buffered, in order (all of them unless the stream outgrew the buffer). */
  get history(): readonly CompletionEvent[] {
    return this.events;
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  /** Whether its events are being held while it is handed over (see `pause`). */
  get paused(): boolean {
    return this.held !== undefined;
  }

  run(source: Observable<CompletionEvent>): void {
    this.upstream = source.subscribe({
      next: (event) => (this.held ? this.held.push(event) : this.publish(event)),
      // The completion service always ends with a terminal event, so completion here needs no handling;
      // an error notification would be a bug in it, and is turned into a stream error rather than lost.
      error: () =>
        this.fail({ code: 'internal', message: 'The gateway failed while streaming.', retryable: false }),
    });
  }

  /** Ends a running stream with an error event of the gateway's own (shutdown), aborting its upstream request. */
  fail(error: StreamError): void {
    if (this.finished) {
      return;
    }
    this.upstream?.unsubscribe();
    this.publish({
      type: 'error',
      streamId: this.id,
      seq: this.nextSeq(),
      ts: epochNow(),
      error,
    });
  }

  /** The figures metrics want, computed once when the stream has ended. */
  outcome(provider: string): StreamOutcome {
    const first = this.events[0];
    const last = this.events[this.events.length - 1];
    const start = first?.type === 'start' ? first.ts : undefined;
    let tokens = 0;
    let reasoningTokens = 0;
    let firstEventAt: number | undefined;
    let firstReasoningAt: number | undefined;
    let firstTokenAt: number | undefined;
    for (const event of this.events) {
      if (event.type === 'token') {
        tokens += 1;
        firstTokenAt ??= event.ts;
        firstEventAt ??= event.ts;
      } else if (event.type === 'reasoning') {
        reasoningTokens += 1;
        firstReasoningAt ??= event.ts;
        firstEventAt ??= event.ts;
      }
    }
    return {
      transport: this.transport,
      provider,
      tokens,
      reasoningTokens,
      ttftMs: start !== undefined && firstEventAt !== undefined ? firstEventAt - start : undefined,
      reasoningMs:
        firstReasoningAt !== undefined
          ? (firstTokenAt ?? last?.ts ?? firstReasoningAt) - firstReasoningAt
          : undefined,
      durationMs: start !== undefined && last ? last.ts - start : 0,
      cancelled: last?.type === 'done' && last.finishReason === 'cancelled',
      errorCode: last?.type === 'error' ? last.error.code : undefined,
    };
  }

  /** Events after `afterSeq`, then live ones; undefined when events after `afterSeq` are no longer buffered. */
  listen(afterSeq: number): Observable<CompletionEvent> | undefined {
    if (afterSeq + 1 < this.firstBufferedSeq) {
      return undefined;
    }
    return new Observable<CompletionEvent>((subscriber) => {
      for (const event of this.events) {
        if (event.seq > afterSeq) {
          subscriber.next(event);
        }
      }
      if (this.finished) {
        subscriber.complete();
        return undefined;
      }
      this.listeners.add(subscriber);
      this.clearGrace();
      return () => {
        this.listeners.delete(subscriber);
        if (this.listeners.size === 0 && !this.finished) {
          this.onIdle(this);
        }
      };
    });
  }

  cancel(): void {
    this.canceller.abort();
  }

  /**
   * The upstream's events are held from now on, not published: the stream is being handed to another instance, which
   * continues it after the last event published. `resume` publishes what was held (the handover did not happen);
   * `dispose` drops it (it did).
   */
  pause(): void {
    this.held ??= [];
  }

  resume(): void {
    const held = this.held ?? [];
    this.held = undefined;
    held.forEach((event) => this.publish(event));
  }

  /** Ends the upstream request without a terminal event: only for a stream being discarded. */
  dispose(): void {
    this.clearGrace();
    this.held = undefined;
    this.finished = true;
    this.upstream?.unsubscribe();
    for (const listener of this.listeners) {
      listener.complete();
    }
    this.listeners.clear();
  }

  startGrace(ms: number): void {
    this.clearGrace();
    this.graceTimer = setTimeout(() => this.cancel(), ms);
    this.graceTimer.unref();
  }

  private clearGrace(): void {
    if (this.graceTimer) {
      clearTimeout(this.graceTimer);
      this.graceTimer = undefined;
    }
  }

  private publish(event: CompletionEvent): void {
    if (this.finished) {
      return;
    }
    this.events.push(event);
    if (this.events.length > MAX_BUFFERED_EVENTS) {
      this.events.shift();
      this.firstBufferedSeq = this.events[0].seq;
    }
    this.onPublished?.(this, event);
    const terminal = isTerminalEvent(event);
    if (terminal) {
      this.finished = true;
      this.clearGrace();
    }
    for (const listener of this.listeners) {
      listener.next(event);
      if (terminal) {
        listener.complete();
      }
    }
    if (terminal) {
      this.listeners.clear();
      this.onFinished(this);
    }
  }

  private nextSeq(): number {
    return this.events.length === 0 ? 0 : this.events[this.events.length - 1].seq + 1;
  }
}
