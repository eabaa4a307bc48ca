import { CompletionService } from '@app/completion';
import type { CompletionEvent, CompletionRequest, StreamError } from '@app/contracts';
import { MetricsService, type TransportName } from '@app/metrics';
import { recordStreamOperation } from '@app/telemetry';
import { Inject, Injectable, Logger, type OnApplicationShutdown, Optional } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { ContinueFrom } from './handover';
import { ListenerCounts } from './listener-counts';
import { LiveStream } from './live-stream';
import type { StreamSlot } from './stream-admission';
import { type ListenOutcome, StreamIdConflictError, StreamRegistry } from './stream-registry';
import { STREAM_LIMITS, type StreamLimits, type StreamRegistryOptions } from './streams.constants';
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
 * Streams are found by owner and id together, so another principal's stream is not merely hidden but
 * not there at all (`not_found` / `false`), and its id is free for anyone else to use.
 */
@Injectable()
export class InMemoryStreamRegistry extends StreamRegistry implements OnApplicationShutdown {
  private readonly streams = new Map<string, LiveStream>();
  /** Clients following each stream, and each limit key's streams, now (see `StreamListener.leave`). */
  private readonly listeners: ListenerCounts;
  /** How to stop each piece of held work (see `hold`). */
  private readonly held = new Set<() => void>();
  /** Each running stream's concurrency slot, given back when it ends or is handed over. */
  private readonly slots = new WeakMap<LiveStream, StreamSlot>();
  private readonly logger = new Logger(StreamRegistry.name);
  private activeTotal = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly completion: CompletionService,
    @Inject(STREAM_REGISTRY_OPTIONS) private readonly options: StreamRegistryOptions,
    @Inject(STREAM_LIMITS) limits: StreamLimits,
    @Optional() private readonly metrics?: MetricsService,
    @Optional() private readonly hooks?: LocalStreamHooks,
  ) {
    super();
    this.listeners = new ListenerCounts(limits);
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
    for (const stop of [...this.held]) {
      stop();
    }
  }

  /** Clients following `owner`'s stream `id` now (for operations and tests). */
  listenerCount(id: string, owner: string): number {
    return this.listeners.of(keyOf(owner, id));
  }

  get size(): number {
    return this.streams.size;
  }

  /**
   * Starts the upstream request at once; events are buffered until a transport listens, which it
   * must do in the same tick (the resume grace only starts once a listener has come and gone).
   * `slot` is the owner's concurrency slot, admitted before: the stream gives it back when it ends.
   * When the start is refused (a conflicting id) the slot is the caller's to release.
   */
  start(
    request: CompletionRequest,
    owner: string,
    transport: TransportName,
    slot: StreamSlot,
    _limitKey?: string,
    takenOver?: { history: readonly CompletionEvent[]; continueFrom: ContinueFrom },
  ): string {
    const id = request.streamId ?? randomUUID();
    const key = keyOf(owner, id);
    if (this.streams.has(key)) {
      throw new StreamIdConflictError();
    }
    const stream = new LiveStream(
      id,
      owner,
      transport,
      (idle) => this.whenIdle(idle),
      (finished) => this.retain(finished, slot),
      this.hooks && ((published, event) => this.hooks?.published(published, event)),
      takenOver?.history,
    );
    this.streams.set(key, stream);
    this.slots.set(stream, slot);
    this.activeTotal += 1;
    this.metrics?.streamStarted(transport);
    this.logger.log({ streamId: id, transport, takenOver: takenOver !== undefined }, 'stream started');
    // The seam's continuation (see ContinueFrom): a variable, so that the option type needs no cast.
    const options = { streamId: id, controller: stream.controller, continueFrom: takenOver?.continueFrom };
    stream.run(this.completion.stream(request, options));
    return id;
  }

  /** One process alone has nobody to hand its streams to: they run on until the grace is over. */
  handOver(): Promise<void> {
    return Promise.resolve();
  }

  /** The running stream `id` of `owner` in this process, if any. */
  find(id: string, owner: string): LiveStream | undefined {
    const stream = this.streams.get(keyOf(owner, id));
    return stream && !stream.finished ? stream : undefined;
  }

  /** Every stream running in this process. */
  runningStreams(): LiveStream[] {
    return [...this.streams.values()].filter((stream) => !stream.finished);
  }

  /**
   * Another instance has taken the stream over: its upstream request is aborted here, its listeners here are let go
   * without a terminal event (their clients resume wherever they reconnect), its slot is given back (the new owner
   * holds one of its own), and it is forgotten here.
   */
  handedOver(stream: LiveStream): void {
    const key = keyOf(stream.owner, stream.id);
    if (this.streams.get(key) !== stream || stream.finished) {
      return;
    }
    stream.dispose();
    this.streams.delete(key);
    this.slots.get(stream)?.release();
    this.logger.log({ streamId: stream.id, transport: stream.transport }, 'stream handed over');
    this.ended();
  }

  /**
   * Counts work that runs outside the registry (a request relayed on the `/v1` surface) as a running stream: it
   * holds its admitted concurrency `slot`, the shutdown drain waits for it, and `stop` is called when the drain's
   * grace is over, as running streams are failed. The returned function ends the hold; calling it again does
   * nothing.
   */
  hold(slot: StreamSlot, stop: () => void): () => void {
    this.activeTotal += 1;
    this.held.add(stop);
    let held = true;
    return () => {
      if (held) {
        held = false;
        this.held.delete(stop);
        slot.release();
        this.ended();
      }
    };
  }

  /**
   * The stream's events after `afterSeq` (-1: all), then live ones until its terminal event.
   * `not_found` when unknown, expired, no longer buffered that far back, or another owner's.
   * A resume is refused past the listener caps; the start's own first listener never is (the
   * concurrency limit bounds those). The per-principal cap counts by `limitKey` (see StreamStarter.start).
   */
  listen(
    id: string,
    owner: string,
    afterSeq = -1,
    purpose: 'start' | 'resume' = 'resume',
    limitKey = owner,
  ): ListenOutcome {
    const key = keyOf(owner, id);
    const events = this.streams.get(key)?.listen(afterSeq);
    if (!events) {
      return { ok: false, reason: 'not_found' };
    }
    const refusal = purpose === 'resume' ? this.listeners.refusal(key, limitKey) : undefined;
    if (refusal) {
      return { ok: false, reason: refusal };
    }
    return { ok: true, events, leave: this.listeners.join(key, limitKey) };
  }

  /** Aborts the upstream request now; the stream ends with `done`/`cancelled`. False when unknown or not the owner's. */
  cancel(id: string, owner: string): boolean {
    const stream = this.streams.get(keyOf(owner, id));
    if (!stream) {
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

  /** One running stream or held piece of work fewer; wakes the shutdown drain when none is left. */
  private ended(): void {
    this.activeTotal -= 1;
    if (this.activeTotal === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      waiters.forEach((wake) => wake());
    }
  }

  private retain(stream: LiveStream, slot: StreamSlot): void {
    slot.release();
    const outcome = stream.outcome(this.completion.providerName);
    this.metrics?.streamEnded(outcome);
    recordStreamOperation(stream.history, this.completion.providerName);
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
    this.ended();
    const forget = () => {
      const key = keyOf(stream.owner, stream.id);
      if (this.streams.get(key) === stream) {
        this.streams.delete(key);
      }
    };
    if (this.options.retentionMs === 0) {
      forget();
      return;
    }
    setTimeout(forget, this.options.retentionMs).unref();
  }
}

/**
 * Stream ids are scoped to their owner: two principals may use the same id, each for a stream of their own,
 * so choosing an id tells nothing about anyone else's streams (and cannot squat one). JSON keeps the pair
 * unambiguous whatever either part contains.
 */
function keyOf(owner: string, id: string): string {
  return JSON.stringify([owner, id]);
}
