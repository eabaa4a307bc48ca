import { CompletionService } from '@app/completion';
import type { CompletionEvent, CompletionRequest, StreamError } from '@app/contracts';
import { MetricsService, type TransportName } from '@app/metrics';
import { Inject, Injectable, Logger, type OnApplicationShutdown, Optional } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { Observable } from 'rxjs';
import { LiveStream } from './live-stream';
import type { StreamRegistryOptions } from './streams.constants';
import { STREAM_REGISTRY_OPTIONS } from './streams.module-definition';

export class StreamIdConflictError extends Error {
  constructor() {
    super('streamId is already in use');
    this.name = 'StreamIdConflictError';
  }
}

/**
 * Every running and recently finished stream, whichever transport started it. A transport starts a
 * stream, listens to it, and stops listening when its client goes; the registry decides when the
 * upstream request is aborted (explicit cancel: at once; nobody listening: after the resume grace).
 * Ownership is checked here so that no transport can forget it: an unknown stream and another
 * principal's stream look the same (`undefined` / `false`).
 */
@Injectable()
export class StreamRegistry implements OnApplicationShutdown {
  private readonly streams = new Map<string, LiveStream>();
  private readonly activeByOwner = new Map<string, number>();
  /** How to stop each piece of held work (see `hold`). */
  private readonly held = new Set<() => void>();
  private readonly logger = new Logger(StreamRegistry.name);
  private activeTotal = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly completion: CompletionService,
    @Inject(STREAM_REGISTRY_OPTIONS) private readonly options: StreamRegistryOptions,
    @Optional() private readonly metrics?: MetricsService,
  ) {}

  /** Streams that have not ended yet, all owners together. */
  get running(): number {
    return this.activeTotal;
  }

  /** Resolves once no stream is running, or after `timeoutMs`, whichever comes first. */
  whenAllEnded(timeoutMs: number): Promise<void> {
    if (this.activeTotal === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Ends every running stream with `error`, aborting their upstream requests. */
  failRunning(error: StreamError): void {
    for (const stream of this.streams.values()) {
      stream.fail(error);
    }
    for (const stop of [...this.held]) {
      stop();
    }
  }

  get size(): number {
    return this.streams.size;
  }

  /** Streams of `owner` that have not ended yet. */
  activeCount(owner: string): number {
    return this.activeByOwner.get(owner) ?? 0;
  }

  /**
   * Starts the upstream request at once; events are buffered until a transport listens, which it
   * must do in the same tick (the resume grace only starts once a listener has come and gone).
   */
  start(request: CompletionRequest, owner: string, transport: TransportName): string {
    const id = request.streamId ?? randomUUID();
    if (this.streams.has(id)) {
      throw new StreamIdConflictError();
    }
    const stream = new LiveStream(
      id,
      owner,
      transport,
      (idle) => this.whenIdle(idle),
      (finished) => this.retain(finished),
    );
    this.streams.set(id, stream);
    this.activeByOwner.set(owner, this.activeCount(owner) + 1);
    this.activeTotal += 1;
    this.metrics?.streamStarted(transport);
    this.logger.log({ streamId: id, transport }, 'stream started');
    stream.run(this.completion.stream(request, { streamId: id, cancel: stream.cancelSignal }));
    return id;
  }

  /**
   * Counts work that runs outside the registry (a request relayed on the `/v1` surface) as a running stream of
   * `owner`: it takes its place in the owner's concurrency limit and the shutdown drain waits for it; `stop` is
   * called when the drain's grace is over, as running streams are failed. The returned function ends the hold;
   * calling it again does nothing.
   */
  hold(owner: string, stop: () => void): () => void {
    this.activeByOwner.set(owner, this.activeCount(owner) + 1);
    this.activeTotal += 1;
    this.held.add(stop);
    let held = true;
    return () => {
      if (held) {
        held = false;
        this.held.delete(stop);
        this.release(owner);
      }
    };
  }

  /** The stream's events after `afterSeq` (-1: all), then live ones until its terminal event. */
  listen(id: string, owner: string, afterSeq = -1): Observable<CompletionEvent> | undefined {
    const stream = this.streams.get(id);
    return stream && stream.owner === owner ? stream.listen(afterSeq) : undefined;
  }

  /** Aborts the upstream request now; the stream ends with `done`/`cancelled`. False when unknown or not the owner's. */
  cancel(id: string, owner: string): boolean {
    const stream = this.streams.get(id);
    if (!stream || stream.owner !== owner) {
      return false;
    }
    stream.cancel();
    return true;
  }

  onApplicationShutdown(): void {
    for (const stream of this.streams.values()) {
      stream.dispose();
    }
    this.streams.clear();
    this.activeByOwner.clear();
  }

  private whenIdle(stream: LiveStream): void {
    if (this.options.resumeGraceMs === 0) {
      stream.cancel();
    } else {
      stream.startGrace(this.options.resumeGraceMs);
    }
  }

  private release(owner: string): void {
    this.activeTotal -= 1;
    if (this.activeTotal === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      waiters.forEach((wake) => wake());
    }
    const active = this.activeCount(owner) - 1;
    if (active > 0) {
      this.activeByOwner.set(owner, active);
    } else {
      this.activeByOwner.delete(owner);
    }
  }

  private retain(stream: LiveStream): void {
    const outcome = stream.outcome(this.completion.providerName);
    this.metrics?.streamEnded(outcome);
    // Ids and counts only: prompts and answers never reach a log line.
    this.logger.log(
      {
        streamId: stream.id,
        transport: stream.transport,
        outcome: outcome.errorCode ?? (outcome.cancelled ? 'cancelled' : 'done'),
        tokens: outcome.tokens,
        reasoningTokens: outcome.reasoningTokens,
        ttftMs: outcome.ttftMs === undefined ? undefined : Math.round(outcome.ttftMs),
        durationMs: Math.round(outcome.durationMs),
      },
      'stream ended',
    );
    this.release(stream.owner);
    const forget = () => {
      if (this.streams.get(stream.id) === stream) {
        this.streams.delete(stream.id);
      }
    };
    if (this.options.retentionMs === 0) {
      forget();
      return;
    }
    setTimeout(forget, this.options.retentionMs).unref();
  }
}
