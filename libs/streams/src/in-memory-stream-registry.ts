import { CompletionService } from '@app/completion';
import type { CompletionEvent, CompletionRequest, StreamError } from '@app/contracts';
import { MetricsService, type TransportName } from '@app/metrics';
import { Inject, Injectable, Logger, type OnApplicationShutdown, Optional } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { Observable } from 'rxjs';
import { LiveStream } from './live-stream';
import { StreamIdConflictError, StreamRegistry } from './stream-registry';
import type { StreamRegistryOptions } from './streams.constants';
import { STREAM_REGISTRY_OPTIONS } from './streams.module-definition';

/** What a registry built on this one (Redis) adds to each local stream, without the local path knowing. */
export interface LocalStreamHooks {
  /** Every event of a local stream as it is published, in order, the terminal one included. */
  published(stream: LiveStream, event: CompletionEvent): void;
  /** The stream's last local listener has gone; the hook decides when the grace ends (instead of a local timer). */
  idle(stream: LiveStream): void;
}

/**
 * Streams in this process's memory: the whole registry for one instance, and the local part of the Redis
 * registry (which passes `hooks`). The client on the instance running a stream is served from here.
 */
@Injectable()
export class InMemoryStreamRegistry extends StreamRegistry implements OnApplicationShutdown {
  private readonly streams = new Map<string, LiveStream>();
  private readonly activeByOwner = new Map<string, number>();
  private readonly logger = new Logger(StreamRegistry.name);
  private activeTotal = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly completion: CompletionService,
    @Inject(STREAM_REGISTRY_OPTIONS) private readonly options: StreamRegistryOptions,
    @Optional() private readonly metrics?: MetricsService,
    @Optional() private readonly hooks?: LocalStreamHooks,
  ) {
    super();
  }

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
      this.hooks && ((published, event) => this.hooks?.published(published, event)),
    );
    this.streams.set(id, stream);
    this.activeByOwner.set(owner, this.activeCount(owner) + 1);
    this.activeTotal += 1;
    this.metrics?.streamStarted(transport);
    this.logger.log({ streamId: id, transport }, 'stream started');
    stream.run(this.completion.stream(request, { streamId: id, cancel: stream.cancelSignal }));
    return id;
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
    if (this.hooks) {
      this.hooks.idle(stream);
    } else if (this.options.resumeGraceMs === 0) {
      stream.cancel();
    } else {
      stream.startGrace(this.options.resumeGraceMs);
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
        ttftMs: outcome.ttftMs === undefined ? undefined : Math.round(outcome.ttftMs),
        durationMs: Math.round(outcome.durationMs),
      },
      'stream ended',
    );
    this.activeTotal -= 1;
    if (this.activeTotal === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      waiters.forEach((wake) => wake());
    }
    const active = this.activeCount(stream.owner) - 1;
    if (active > 0) {
      this.activeByOwner.set(stream.owner, active);
    } else {
      this.activeByOwner.delete(stream.owner);
    }
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
