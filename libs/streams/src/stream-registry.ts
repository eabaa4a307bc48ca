import type { CompletionEvent, CompletionRequest, StreamError } from '@app/contracts';
import type { TransportName } from '@app/metrics';
import type { Observable } from 'rxjs';
import type { StreamSlot } from './stream-admission';

/** A value now, or once a shared store has answered. */
export type Awaitable<T> = T | Promise<T>;

/**
 * One client following one stream. `leave()` frees its place among the stream's and the owner's
 * listeners: a transport calls it when the client's connection for the stream has ended (an SSE
 * response once it is closed, so that a replay counts until it has been written out), not merely
 * when the events end. A second call does nothing.
 */
export interface StreamListener {
  readonly events: Observable<CompletionEvent>;
  leave(): void;
}

export type ListenOutcome =
  | ({ ok: true } & StreamListener)
  | { ok: false; reason: 'not_found' | 'listeners_per_stream' | 'listeners_per_principal' };

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
 * grace). Ownership is checked here so that no transport can forget it: streams are found by owner and id
 * together, so an unknown stream and another principal's stream look the same (`not_found` / `false`).
 *
 * Two implementations, chosen at composition: `InMemoryStreamRegistry` (one process) and
 * `RedisStreamRegistry` (several instances sharing `REDIS_URL`). The in-memory one answers synchronously;
 * transports `await` every answer and never learn which one runs. Either may throw
 * `StreamsUnavailableError` from `start`, `listen` or `cancel`.
 */
export abstract class StreamRegistry {
  /** Streams this process holds (running and retained for resume). */
  abstract readonly size: number;

  /** Whether other instances share the streams (Redis): a client refused here can resume on another. */
  get shared(): boolean {
    return false;
  }

  /** Streams and held work running in this process, all owners together. */
  abstract readonly running: number;

  /** Resolves once nothing of this process is running, or after `timeoutMs`, whichever comes first. */
  abstract whenAllEnded(timeoutMs: number): Promise<void>;

  /** Ends every stream running in this process with `error`, aborting their upstream requests. */
  abstract failRunning(error: StreamError): void;

  /**
   * Starts the upstream request; events are buffered until a transport listens, which it must do once the
   * start has resolved (the resume grace only starts once a listener has come and gone). `slot` is the
   * owner's concurrency slot, admitted before: the stream gives it back when it ends. When the start is
   * refused (a conflicting id, an unreachable store) the slot is the caller's to release. `limitKey`: whose limits
   * the slot counts against (the owner's unless the principal says otherwise), kept for an instance taking it over.
   */
  abstract start(
    request: CompletionRequest,
    owner: string,
    transport: TransportName,
    slot: StreamSlot,
    limitKey?: string,
  ): Awaitable<string>;

  /**
   * A stopping instance hands its running streams to live ones that can continue them (with Redis; one instance
   * alone has nobody to hand them to and resolves at once). Resolves once each was taken over, or was not within
   * `timeoutMs` (it then runs on here, as before).
   */
  abstract handOver(timeoutMs: number): Promise<void>;

  /**
   * The stream's events after `afterSeq` (-1: all), then live ones until its terminal event. `not_found`
   * when unknown, expired, no longer kept that far back, or another owner's. A resume is refused past the
   * listener caps; the start's own first listener never is. The per-principal cap counts by `limitKey`.
   */
  abstract listen(
    id: string,
    owner: string,
    afterSeq?: number,
    purpose?: 'start' | 'resume',
    limitKey?: string,
  ): Awaitable<ListenOutcome>;

  /** Clients following `owner`'s stream `id` through this process now (for operations and tests). */
  abstract listenerCount(id: string, owner: string): number;

  /** Aborts the upstream request now; the stream ends with `done`/`cancelled`. False when unknown or not the owner's. */
  abstract cancel(id: string, owner: string): Awaitable<boolean>;

  /**
   * Counts work that runs outside the registry (a request relayed on the `/v1` surface) as running in this
   * process: it holds `slot`, the shutdown drain waits for it, and `stop` is called when the drain's grace
   * is over. The returned function ends the hold; calling it again does nothing.
   */
  abstract hold(slot: StreamSlot, stop: () => void): () => void;
}
