import type { CompletionEvent, CompletionRequest, StreamError } from '@app/contracts';
import type { TransportName } from '@app/metrics';
import type { Observable } from 'rxjs';

/** A value now, or once a shared store has answered. */
export type Awaitable<T> = T | Promise<T>;

export class StreamIdConflictError extends Error {
  constructor() {
    super('streamId is already in use');
    this.name = 'StreamIdConflictError';
  }
}

/** A dependency the registry needs (Redis) cannot be reached: refuse with a retryable `unavailable`. */
export class StreamsUnavailableError extends Error {
  constructor(cause?: unknown) {
    super('the shared stream store is unreachable', { cause });
    this.name = 'StreamsUnavailableError';
  }
}

/**
 * The one seam the transports see: every running and recently finished stream, whichever transport started
 * it. A transport starts a stream, listens to it, and stops listening when its client goes; the registry
 * decides when the upstream request is aborted (explicit cancel: at once; nobody listening: after the resume
 * grace). Ownership is checked here so that no transport can forget it: an unknown stream and another
 * principal's stream look the same (`undefined` / `false`).
 *
 * Two implementations, chosen at composition: `InMemoryStreamRegistry` (one process) and
 * `RedisStreamRegistry` (several instances sharing `REDIS_URL`). The in-memory one answers synchronously;
 * transports `await` every answer and never learn which one runs. Either may throw
 * `StreamsUnavailableError` from `start`, `listen` or `cancel`.
 */
export abstract class StreamRegistry {
  /** Streams this process holds (running and retained for resume). */
  abstract readonly size: number;

  /** Streams running in this process, all owners together. */
  abstract readonly running: number;

  /** Resolves once no stream of this process is running, or after `timeoutMs`, whichever comes first. */
  abstract whenAllEnded(timeoutMs: number): Promise<void>;

  /** Ends every stream running in this process with `error`, aborting their upstream requests. */
  abstract failRunning(error: StreamError): void;

  /** Streams of `owner` running in this process. */
  abstract activeCount(owner: string): number;

  /**
   * Starts the upstream request; events are buffered until a transport listens, which it must do once the
   * start has resolved (the resume grace only starts once a listener has come and gone).
   */
  abstract start(request: CompletionRequest, owner: string, transport: TransportName): Awaitable<string>;

  /** The stream's events after `afterSeq` (-1: all), then live ones until its terminal event. */
  abstract listen(
    id: string,
    owner: string,
    afterSeq?: number,
  ): Awaitable<Observable<CompletionEvent> | undefined>;

  /** Aborts the upstream request now; the stream ends with `done`/`cancelled`. False when unknown or not the owner's. */
  abstract cancel(id: string, owner: string): Awaitable<boolean>;
}
