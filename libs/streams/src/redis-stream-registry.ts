import type { CompletionService } from '@app/completion';
import {
  type CompletionEvent,
  type CompletionRequest,
  isTerminalEvent,
  type StreamError,
} from '@app/contracts';
import type { MetricsService, TransportName } from '@app/metrics';
import type { RedisClient, RedisConnection } from '@app/redis';
import { Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { EMPTY, Observable, type Subscriber } from 'rxjs';
import { InMemoryStreamRegistry, type LocalStreamHooks } from './in-memory-stream-registry';
import { ListenerCounts } from './listener-counts';
import type { LiveStream } from './live-stream';
import {
  APPEND,
  CANCEL_CHANNEL_PREFIX,
  CLAIM,
  entryId,
  entryNumber,
  KEEP_ALIVE,
  LEASE_PREFIX,
  LOOKUP,
  streamKeys,
  TOUCH_LISTENERS,
} from './redis-stream-scripts';
import type { StreamSlot } from './stream-admission';
import {
  type ListenOutcome,
  StreamIdConflictError,
  StreamRegistry,
  StreamsUnavailableError,
} from './stream-registry';
import { MAX_BUFFERED_EVENTS, type StreamLimits, type StreamRegistryOptions } from './streams.constants';

/** Timings of the shared registry; see docs/operations.md, "Several instances". */
export const REDIS_REGISTRY_TIMINGS = {
  /** How often an instance renews its lease, its running streams' keys and its listeners' presence. */
  heartbeatMs: 1000,
  /** An instance whose lease is this old is dead: its unfinished streams end with `stream_lost`. */
  leaseMs: 5000,
  /** Keys of a running stream live this long past the last heartbeat (an instance that died unseen). */
  runningTtlMs: 30_000,
  /** A follower whose stream was quiet this long checks that the running instance is alive. */
  livenessCheckMs: 2000,
  /** How long one blocking read waits for new events before looking again. */
  readBlockMs: 1000,
  /** A presence entry outlives its last renewal by this much (an instance that died while listening). */
  presenceMs: 3000,
  /** A finished stream's keys live at least this long, so that followers read its terminal event. */
  minFinishedTtlMs: 2000,
} as const;

const LOST_MESSAGE = 'The instance running this stream stopped before finishing it; retry the request.';

/** The events a local stream has published and Redis does not have yet, sent one batch at a time. */
interface Mirror {
  /** The stream's key in `mirrors`: its owner and id (see `localKey`). */
  id: string;
  keys: string[];
  pending: string[];
  sending: boolean;
  ending: boolean;
  stalled: boolean;
}

/** A listener on this instance to a stream running on another one. */
interface Follower {
  /** The stream's key in Redis and in `followers` (see `sharedKey`). */
  key: string;
  streamId: string;
  /** The number of the last entry delivered (seq + 1). */
  seen: number;
  subscriber: Subscriber<CompletionEvent>;
}

interface Found {
  owner: string;
  instance: string;
  ended: boolean;
  /** Seq of the first event still kept, and of the last one; -1 when there is none. */
  firstSeq: number;
  lastSeq: number;
}

/**
 * The registry shared by every instance on one Redis. A stream runs on the instance that started it, in an
 * `InMemoryStreamRegistry`, whose local listeners are served from memory as in one process; each event is
 * also appended to the stream's Redis Stream (batched: one script call in flight per stream, the rest
 * queued behind it), and its owner kept in Redis. Another instance that is asked for the stream finds it
 * there and follows it with a blocking read (one connection per instance for all its followers): replay,
 * then live, by entry id, so no event is missed or repeated. Cancels travel over pub/sub to the running
 * instance; the resume grace counts listeners on every instance; an instance's lease, renewed every second,
 * tells followers that it died (its streams end with one `stream_lost`).
 */
export class RedisStreamRegistry extends StreamRegistry implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(RedisStreamRegistry.name);
  private readonly instance: string;
  private readonly local: InMemoryStreamRegistry;
  private readonly client: RedisClient;
  private readonly reader: RedisClient;
  private readonly subscriber: RedisClient;
  private readonly mirrors = new Map<string, Mirror>();
  private readonly followers = new Map<string, Set<Follower>>();
  private readonly lastActivity = new Map<string, number>();
  private readonly graceRounds = new Map<string, number>();
  /** Listeners here to streams elsewhere, per stream and per limit key: the listener caps, counted per instance. */
  private readonly listeners: ListenerCounts;
  private heartbeat: NodeJS.Timeout | undefined;
  private readerId: string | undefined;
  private readerBlocked = false;
  private readRound = 0;
  private readySince = 0;
  private lastLivenessCheck = 0;
  private closed = false;
  private wakeReader: (() => void) | undefined;

  constructor(
    completion: CompletionService,
    private readonly options: StreamRegistryOptions,
    limits: StreamLimits,
    redis: RedisConnection,
    metrics?: MetricsService,
  ) {
    super();
    const hooks: LocalStreamHooks = {
      published: (stream, event) => this.mirror(stream, event),
      idle: (stream) => this.whenIdle(stream),
    };
    this.local = new InMemoryStreamRegistry(completion, options, limits, metrics, hooks);
    this.listeners = new ListenerCounts(limits);
    this.client = redis.client;
    this.instance = redis.instanceId;
    this.reader = redis.dedicated('stream-reader');
    this.subscriber = redis.dedicated('cancel-subscriber', { queueWhileDown: true });
    redis.beforeClose(() => this.drain());
  }

  onModuleInit(): void {
    const markReady = () => {
      this.readySince = Date.now();
      void this.beat();
    };
    if (this.client.isReady) {
      markReady();
    }
    this.client.on('ready', markReady);
    // The reader's connection id, for CLIENT UNBLOCK; a new one after each reconnect.
    const learnReaderId = () => {
      this.reader
        .sendCommand<number>(['CLIENT', 'ID'])
        .then((id) => (this.readerId = String(id)))
        .catch(() => undefined);
    };
    if (this.reader.isReady) {
      learnReaderId();
    }
    this.reader.on('ready', learnReaderId);
    void this.subscriber
      .subscribe(CANCEL_CHANNEL_PREFIX + this.instance, (message) => this.cancelRequested(message))
      .catch((error: unknown) => this.logger.error(`cannot subscribe to cancels: ${String(error)}`));
    this.heartbeat = setInterval(() => void this.beat(), REDIS_REGISTRY_TIMINGS.heartbeatMs);
    this.heartbeat.unref();
    void this.readLoop();
  }

  get size(): number {
    return this.local.size;
  }

  get running(): number {
    return this.local.running;
  }

  async whenAllEnded(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await this.local.whenAllEnded(timeoutMs);
    while (this.followers.size > 0 && Date.now() < deadline) {
      await sleep(20);
    }
  }

  /** Local streams end with `error`; listeners here to streams elsewhere get it too (they resume elsewhere). */
  failRunning(error: StreamError): void {
    this.local.failRunning(error);
    for (const followers of this.followers.values()) {
      for (const follower of followers) {
        follower.subscriber.next({
          type: 'error',
          streamId: follower.streamId,
          seq: follower.seen,
          ts: performance.timeOrigin + performance.now(),
          error,
        });
        follower.subscriber.complete();
      }
    }
    this.followers.clear();
  }

  async start(
    request: CompletionRequest,
    owner: string,
    transport: TransportName,
    slot: StreamSlot,
  ): Promise<string> {
    if (!this.client.isReady) {
      throw new StreamsUnavailableError();
    }
    const id = request.streamId ?? randomUUID();
    const keys = streamKeys(sharedKey(owner, id));
    let claimed: unknown;
    try {
      claimed = await CLAIM.run(
        this.client,
        [keys[0]],
        [owner, this.instance, String(REDIS_REGISTRY_TIMINGS.runningTtlMs)],
      );
    } catch (error) {
      throw new StreamsUnavailableError(error);
    }
    if (claimed !== 1) {
      throw new StreamIdConflictError();
    }
    const mirrorKey = localKey(owner, id);
    this.mirrors.set(mirrorKey, {
      id: mirrorKey,
      keys,
      pending: [],
      sending: false,
      ending: false,
      stalled: false,
    });
    try {
      return this.local.start({ ...request, streamId: id }, owner, transport, slot);
    } catch (error) {
      this.mirrors.delete(mirrorKey);
      throw error;
    }
  }

  async listen(
    id: string,
    owner: string,
    afterSeq = -1,
    purpose: 'start' | 'resume' = 'resume',
    limitKey = owner,
  ): Promise<ListenOutcome> {
    const local = this.local.listen(id, owner, afterSeq, purpose, limitKey);
    if (local.ok || local.reason !== 'not_found') {
      return local;
    }
    const key = sharedKey(owner, id);
    const found = await this.lookup(key, id);
    if (!found || found.owner !== owner || afterSeq + 1 < found.firstSeq) {
      return { ok: false, reason: 'not_found' };
    }
    const refusal = this.listeners.refusal(key, limitKey);
    if (refusal) {
      return { ok: false, reason: refusal };
    }
    return {
      ok: true,
      events: found.ended && found.lastSeq <= afterSeq ? EMPTY : this.follow(key, id, afterSeq),
      leave: this.listeners.join(key, limitKey),
    };
  }

  hold(slot: StreamSlot, stop: () => void): () => void {
    return this.local.hold(slot, stop);
  }

  listenerCount(id: string, owner: string): number {
    return this.local.listenerCount(id, owner) + this.listeners.of(sharedKey(owner, id));
  }

  async cancel(id: string, owner: string): Promise<boolean> {
    if (this.local.cancel(id, owner)) {
      return true;
    }
    const found = await this.lookup(sharedKey(owner, id), id);
    if (!found || found.owner !== owner) {
      return false;
    }
    if (!found.ended) {
      try {
        await this.client.sendCommand([
          'PUBLISH',
          CANCEL_CHANNEL_PREFIX + found.instance,
          JSON.stringify({ id, owner }),
        ]);
      } catch (error) {
        throw new StreamsUnavailableError(error);
      }
    }
    return true;
  }

  onApplicationShutdown(): void {
    this.closed = true;
    clearInterval(this.heartbeat);
    this.wakeReader?.();
    this.local.onApplicationShutdown();
    for (const followers of this.followers.values()) {
      followers.forEach((follower) => follower.subscriber.complete());
    }
    this.followers.clear();
  }

  /** Before the connections close: what local streams published reaches Redis, then the lease goes. */
  private async drain(): Promise<void> {
    const deadline = Date.now() + 2000;
    while (this.mirrors.size > 0 && this.client.isReady && Date.now() < deadline) {
      this.mirrors.forEach((mirror) => void this.flush(mirror));
      await sleep(10);
    }
    clearInterval(this.heartbeat);
    await this.client.sendCommand(['DEL', LEASE_PREFIX + this.instance]).catch(() => undefined);
  }

  // The running side.

  /** Per token: queue the event; send it now unless a batch of this stream is in flight (it goes next). */
  private mirror(stream: LiveStream, event: CompletionEvent): void {
    const mirror = this.mirrors.get(localKey(stream.owner, stream.id));
    if (!mirror) {
      return;
    }
    mirror.pending.push(entryId(event.seq), JSON.stringify(event));
    if (isTerminalEvent(event)) {
      mirror.ending = true;
    }
    if (mirror.pending.length > 4 * MAX_BUFFERED_EVENTS) {
      // Redis has been away for a whole stream's worth: stop mirroring it; its local listeners still get it.
      this.mirrors.delete(mirror.id);
      return;
    }
    if (!mirror.sending && !mirror.stalled) {
      void this.flush(mirror);
    }
  }

  private async flush(mirror: Mirror): Promise<void> {
    if (mirror.sending || mirror.pending.length === 0) {
      return;
    }
    mirror.sending = true;
    const batch = mirror.pending;
    mirror.pending = [];
    const ending = mirror.ending;
    let appended: unknown;
    try {
      appended = await APPEND.run(this.client, mirror.keys, [
        String(this.finishedTtlMs),
        String(REDIS_REGISTRY_TIMINGS.runningTtlMs),
        String(MAX_BUFFERED_EVENTS),
        ending ? '1' : '0',
        ...batch,
      ]);
    } catch {
      // Redis is away: keep the batch, in order; the heartbeat sends it once Redis is back.
      mirror.pending = batch.concat(mirror.pending);
      mirror.stalled = true;
      return;
    } finally {
      mirror.sending = false;
    }
    mirror.stalled = false;
    if (appended !== 1 || ending) {
      // Done; or the stream was declared lost meanwhile, or Redis restarted without it: its local listeners go on.
      this.mirrors.delete(mirror.id);
      return;
    }
    if (mirror.pending.length > 0) {
      void this.flush(mirror);
    }
  }

  private cancelRequested(message: string): void {
    try {
      const { id, owner } = JSON.parse(message) as { id: string; owner: string };
      this.local.cancel(id, owner);
    } catch {
      this.logger.warn('ignored a malformed cancel message');
    }
  }

  /**
   * The last local listener left: the grace ends when no instance has had a listener for `resumeGraceMs`.
   * Each instance following the stream keeps "listening until" in the stream's `listeners` set.
   */
  private whenIdle(stream: LiveStream): void {
    const key = localKey(stream.owner, stream.id);
    const round = (this.graceRounds.get(key) ?? 0) + 1;
    this.graceRounds.set(key, round);
    void this.watchGrace(stream, round, Date.now());
  }

  private async watchGrace(stream: LiveStream, round: number, localLeftAt: number): Promise<void> {
    const key = localKey(stream.owner, stream.id);
    const current = () =>
      !stream.finished && stream.listenerCount === 0 && this.graceRounds.get(key) === round;
    while (current() && !this.closed) {
      let lastListener = localLeftAt;
      try {
        const [, score] = await this.client.sendCommand<string[]>([
          'ZREVRANGE',
          streamKeys(sharedKey(stream.owner, stream.id))[2],
          '0',
          '0',
          'WITHSCORES',
        ]);
        if (score !== undefined) {
          lastListener = Math.max(lastListener, Number(score));
        }
      } catch {
        // Redis is away: this instance's own listeners decide alone.
      }
      if (!current()) {
        break;
      }
      const remaining = lastListener + this.options.resumeGraceMs - Date.now();
      if (remaining <= 0) {
        stream.cancel();
        break;
      }
      await sleep(Math.max(remaining, 50));
    }
    if (this.graceRounds.get(key) === round) {
      this.graceRounds.delete(key);
    }
  }

  /** The lease, the running streams' keys, this instance's presence as a listener, and stalled batches. */
  private async beat(): Promise<void> {
    if (!this.client.isReady || this.closed) {
      return;
    }
    const timings = REDIS_REGISTRY_TIMINGS;
    const work: Promise<unknown>[] = [
      this.client.sendCommand(['SET', LEASE_PREFIX + this.instance, '1', 'PX', String(timings.leaseMs)]),
    ];
    const running = [...this.mirrors.values()].filter((mirror) => !mirror.ending);
    for (let from = 0; from < running.length; from += 300) {
      const keys = running.slice(from, from + 300).flatMap((mirror) => mirror.keys);
      work.push(KEEP_ALIVE.run(this.client, keys, [String(timings.runningTtlMs)]));
    }
    const until = Date.now() + timings.presenceMs;
    for (const id of this.followers.keys()) {
      work.push(this.touchListeners(id, until));
    }
    for (const mirror of this.mirrors.values()) {
      if (mirror.stalled) {
        mirror.stalled = false;
        work.push(this.flush(mirror));
      }
    }
    await Promise.allSettled(work);
  }

  // The following side.

  /** `key`: the stream's shared key (see `sharedKey`); `streamId`: its public id, for the events made here. */
  private follow(key: string, streamId: string, afterSeq: number): Observable<CompletionEvent> {
    return new Observable<CompletionEvent>((subscriber) => {
      const follower: Follower = { key, streamId, seen: afterSeq + 1, subscriber };
      let set = this.followers.get(key);
      if (!set) {
        set = new Set();
        this.followers.set(key, set);
        this.lastActivity.set(key, Date.now());
      }
      set.add(follower);
      void this.touchListeners(key, Date.now() + REDIS_REGISTRY_TIMINGS.presenceMs);
      this.wake();
      return () => {
        const followers = this.followers.get(key);
        if (followers?.delete(follower) && followers.size === 0) {
          this.followers.delete(key);
          this.lastActivity.delete(key);
          // The moment the last listener here left: the running instance's grace counts from it.
          void this.touchListeners(key, Date.now());
        }
      };
    });
  }

  private touchListeners(id: string, until: number): Promise<unknown> {
    const [meta, , listeners] = streamKeys(id);
    return TOUCH_LISTENERS.run(
      this.client,
      [meta, listeners],
      [this.instance, String(until), String(REDIS_REGISTRY_TIMINGS.runningTtlMs)],
    ).catch(() => undefined);
  }

  /** Interrupts the blocking read so that it includes a stream just followed. */
  private wake(): void {
    this.wakeReader?.();
    const round = this.readRound;
    const unblock = async () => {
      for (let attempt = 0; attempt < 50 && round === this.readRound && !this.closed; attempt += 1) {
        if (this.readerBlocked && this.readerId) {
          const unblocked = await this.client
            .sendCommand<number>(['CLIENT', 'UNBLOCK', this.readerId])
            .catch(() => 0);
          if (unblocked === 1) {
            return;
          }
        }
        await sleep(2);
      }
    };
    void unblock();
  }

  /** One blocking XREAD at a time over every followed stream, from each one's last delivered entry. */
  private async readLoop(): Promise<void> {
    while (!this.closed) {
      this.readRound += 1;
      if (this.followers.size === 0 || !this.reader.isReady) {
        await new Promise<void>((resolve) => {
          this.wakeReader = resolve;
          setTimeout(resolve, 200).unref();
        });
        this.wakeReader = undefined;
        continue;
      }
      const ids = [...this.followers.keys()];
      const from = ids.map((id) => {
        let seen = Infinity;
        for (const follower of this.followers.get(id) ?? []) {
          seen = Math.min(seen, follower.seen);
        }
        return `0-${seen}`;
      });
      let reply: [string, [string, string[]][]][] | null;
      try {
        this.readerBlocked = true;
        reply = await this.reader.sendCommand([
          'XREAD',
          'COUNT',
          '1000',
          'BLOCK',
          String(REDIS_REGISTRY_TIMINGS.readBlockMs),
          'STREAMS',
          ...ids.map((id) => streamKeys(id)[1]),
          ...from,
        ]);
      } catch {
        await sleep(100);
        continue;
      } finally {
        this.readerBlocked = false;
      }
      for (const [key, entries] of reply ?? []) {
        this.deliver(key.slice(key.indexOf('{') + 1, key.lastIndexOf('}')), entries);
      }
      this.checkLiveness();
    }
  }

  private deliver(id: string, entries: [string, string[]][]): void {
    const followers = this.followers.get(id);
    if (!followers) {
      return;
    }
    this.lastActivity.set(id, Date.now());
    for (const [entry, fields] of entries) {
      const number = entryNumber(entry);
      let event: CompletionEvent | undefined;
      for (const follower of followers) {
        // Only the next entry of each follower: one that joined behind the others (the read started from their
        // position) gets the entries it lacks in the next read, which starts from the lowest position.
        if (number !== follower.seen + 1) {
          continue;
        }
        event ??= JSON.parse(fields[1]) as CompletionEvent;
        follower.seen = number;
        follower.subscriber.next(event);
        if (isTerminalEvent(event)) {
          follower.subscriber.complete();
        }
      }
    }
  }

  /**
   * Streams followed here that were quiet for a while: is the instance running each still alive? A dead one's
   * stream gets its `stream_lost` in Redis (and so to every follower, through the read); a stream Redis forgot
   * (restarted empty) ends here with `stream_lost` too.
   */
  private checkLiveness(): void {
    const now = Date.now();
    if (now - this.lastLivenessCheck < REDIS_REGISTRY_TIMINGS.livenessCheckMs) {
      return;
    }
    this.lastLivenessCheck = now;
    for (const [key, at] of this.lastActivity) {
      const [follower] = this.followers.get(key) ?? [];
      if (now - at < REDIS_REGISTRY_TIMINGS.livenessCheckMs || !follower) {
        continue;
      }
      void this.lookup(key, follower.streamId)
        .then((found) => {
          if (!found && this.judging) {
            this.endFollowers(key);
          }
        })
        .catch(() => undefined);
    }
  }

  private endFollowers(key: string): void {
    const followers = this.followers.get(key);
    for (const follower of followers ?? []) {
      follower.subscriber.next({
        type: 'error',
        streamId: follower.streamId,
        seq: follower.seen,
        ts: performance.timeOrigin + performance.now(),
        error: { code: 'stream_lost', message: LOST_MESSAGE, retryable: true },
      });
      follower.subscriber.complete();
    }
  }

  /**
   * Whether this instance may judge others dead: only once it has been connected for a whole lease, so that
   * an outage of Redis itself (every lease lapsing meanwhile) is not taken for instances dying.
   */
  private get judging(): boolean {
    return this.client.isReady && Date.now() - this.readySince >= REDIS_REGISTRY_TIMINGS.leaseMs;
  }

  /** `key`: the stream's shared key; `streamId`: its public id, for a `stream_lost` event made here. */
  private async lookup(key: string, streamId: string): Promise<Found | undefined> {
    if (!this.client.isReady) {
      throw new StreamsUnavailableError();
    }
    let reply: string[];
    try {
      reply = (await LOOKUP.run(this.client, streamKeys(key), [
        LEASE_PREFIX,
        String(this.finishedTtlMs),
        streamId,
        LOST_MESSAGE,
        this.judging ? '1' : '0',
      ])) as string[];
    } catch (error) {
      throw new StreamsUnavailableError(error);
    }
    if (reply.length === 0) {
      return undefined;
    }
    const [owner, instance, ended, firstId, lastId] = reply;
    return {
      owner,
      instance,
      ended: ended === '1',
      firstSeq: firstId ? entryNumber(firstId) - 1 : -1,
      lastSeq: lastId ? entryNumber(lastId) - 1 : -1,
    };
  }

  private get finishedTtlMs(): number {
    return Math.max(this.options.retentionMs, REDIS_REGISTRY_TIMINGS.minFinishedTtlMs);
  }
}

/** A stream's key in this process: its owner and id together, as the in-memory registry finds it. */
function localKey(owner: string, id: string): string {
  return JSON.stringify([owner, id]);
}

/**
 * A stream's key in Redis: a digest of its owner and id, so that ids are scoped to their owner on every
 * instance (another principal choosing the same id gets a stream of its own), and so that the key holds no
 * owner name and no character that would break the `{…}` hash tag.
 */
function sharedKey(owner: string, id: string): string {
  return createHash('sha256').update(localKey(owner, id)).digest('base64url');
}
