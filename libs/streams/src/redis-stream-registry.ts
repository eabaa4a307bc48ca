import { epochNow } from '@app/clock';
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
import { EMPTY, Observable, of, type Subscriber } from 'rxjs';
import { continuationOf, storedRequest, type StoredRequest } from './handover';
import { InMemoryStreamRegistry, type LocalStreamHooks } from './in-memory-stream-registry';
import { ListenerCounts } from './listener-counts';
import type { LiveStream } from './live-stream';
import {
  APPEND,
  CANCEL,
  CANCEL_CHANNEL_PREFIX,
  CLAIM,
  entryId,
  entryNumber,
  FOLLOW_CHANNEL_PREFIX,
  HANDOVER_CHANNEL,
  KEEP_ALIVE,
  LEASE_PREFIX,
  LOOKUP,
  OFFER,
  parseFollowMessage,
  streamKeys,
  TAKE_OVER,
  TOUCH_LISTENERS,
  WITHDRAW,
} from './redis-stream-scripts';
import type { StreamAdmission, StreamSlot } from './stream-admission';
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
  /** A follower whose stream was quiet this long checks that the running instance is alive, and reads. */
  livenessCheckMs: 2000,
  /** Streams and entries per stream in one read of followed streams' events: each read's cost is bounded. */
  readStreams: 100,
  readEntries: 500,
  /** A presence entry outlives its last renewal by this much (an instance that died while listening). */
  presenceMs: 3000,
  /**
   * Local streams' events go to Redis in rounds, every stream's new events in one script call, a round at most
   * this often (start to start) and one in flight: at most 100 calls a second whatever the load, each carrying
   * what the streams published meanwhile, instead of a call per Redis round trip (several hundred a second at
   * 100 streams, with a few events each: the calls' own cost, on both sides, was most of what Redis added). An
   * event after a quiet spell goes at once. Followers elsewhere wait up to this much more.
   */
  appendIntervalMs: 10,
  /** Streams in one append call, at most. */
  appendStreams: 200,
  /** A finished stream's keys live at least this long, so that followers read its terminal event. */
  minFinishedTtlMs: 2000,
  /** A stopping instance waits at most this long for another to take each of its streams over (and then keeps it). */
  handoverMs: 3000,
  /** A cancel that arrives for a stream this instance is taking over, just before it runs here, still counts. */
  earlyCancelMs: 5000,
} as const;

const LOST_MESSAGE = 'The instance running this stream stopped before finishing it; retry the request.';
const LOST_ERROR: StreamError = { code: 'stream_lost', message: LOST_MESSAGE, retryable: true };
const LOST_EVENT = { type: 'error', error: LOST_ERROR } as const;
/** A follower so far behind that the events it lacks are past the per-stream cap (an upstream that ignored maxTokens). */
const TRIMMED_ERROR: StreamError = {
  code: 'internal',
  message: 'The events of this stream after the last one received are no longer kept.',
  retryable: false,
};

/** The events a local stream has published and Redis does not have yet, sent one batch at a time. */
interface Mirror {
  /** The stream's key in `mirrors`: its owner and id (see `localKey`). */
  id: string;
  keys: string[];
  /** Entry id and JSON pairs. */
  pending: string[];
  ending: boolean;
  /** Nothing of it has reached Redis yet: its first batch gives the events key its TTL. */
  fresh: boolean;
  /** No longer mirrored (ended, lost, or given up): later events of the stream are not sent. */
  dropped: boolean;
  /** Its last append failed (Redis away): the heartbeat tries again. */
  stalled: boolean;
  /** The model asked for: whether some deployment can continue it decides whether it can be handed over. */
  model: string | undefined;
  /**
   * An append of it failed without a reply: it may have run, so the next one may carry entries Redis has already
   * (see `APPEND`, state 4).
   */
  resent: boolean;
}

/** A listener on this instance to a stream running on another one. */
interface Follower {
  /** The number of the last entry delivered (seq + 1). */
  seen: number;
  /**
   * The number of the last entry Redis had when it joined. A client can hold events past it (it was connected to the
   * running instance, ahead of that instance's last append round); if that instance then dies, the stream is
   * continued after what Redis had, and those events of the client's are not the ones continued from (see `deliver`).
   */
  inRedisAtJoin: number;
  /** The number of the last entry the client held when it joined (`seen` then). */
  heldAtJoin: number;
  subscriber: Subscriber<CompletionEvent>;
}

/** A stream running on another instance, followed by listeners here. */
interface Followed {
  /** The stream's key in Redis and in `followed` (see `sharedKey`). */
  key: string;
  streamId: string;
  followers: Set<Follower>;
  /** When an entry of it last arrived. */
  lastActivity: number;
  /** A read of its events is in flight; `readAgain`: another one is wanted after it. */
  reading: boolean;
  readAgain: boolean;
  /** A look at its instance's liveness is due when the lease it found would lapse (see `checkLiveness`). */
  recheck?: NodeJS.Timeout;
}

interface Found {
  owner: string;
  instance: string;
  ended: boolean;
  /** Seq of the first event still kept, and of the last one; -1 when there is none. */
  firstSeq: number;
  lastSeq: number;
  /** Its instance died and it can be taken over (see `LOOKUP`); `model`: the model it asked for. */
  orphaned: boolean;
  model: string;
  /** What is left of its instance's lease (ms; negative when none): when it lapses, if nothing came meanwhile. */
  leaseMs: number;
}

/**
 * The registry shared by every instance on one Redis. A stream runs on the instance that started it, in an
 * `InMemoryStreamRegistry`, whose local listeners are served from memory as in one process; each event is also
 * appended to the stream's Redis Stream (batched: every local stream's new events in one script call, a round at
 * most every `appendIntervalMs`, one in flight), and its owner kept in Redis. Another instance that is asked for
 * the stream finds it there and follows it: it marks itself in the stream's listeners, then reads what is there
 * (replay); each append after that is pushed to it by the script that makes it, on its follow channel (live).
 * Events are placed by entry id, so none is missed or repeated: one that arrives ahead of a gap sends the follower
 * to read the gap, and a stream quiet for a while is read again (a push lost to a reconnect). A read costs what it
 * returns, never a share of every followed stream. Cancels travel over pub/sub to the running instance; the resume
 * grace counts listeners on every instance; an instance's lease, renewed every second, tells followers that it
 * died (its streams end with one `stream_lost`).
 */
export class RedisStreamRegistry extends StreamRegistry implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(RedisStreamRegistry.name);
  private readonly instance: string;
  private readonly local: InMemoryStreamRegistry;
  private readonly client: RedisClient;
  private readonly subscriber: RedisClient;
  private readonly mirrors = new Map<string, Mirror>();
  /** The same mirrors by live stream, so that an event finds its mirror without building the stream's key. */
  private readonly mirrorOf = new WeakMap<LiveStream, Mirror>();
  /** Mirrors with events for the next append round; one round in flight at a time (`appending` calls). */
  private readonly toAppend = new Set<Mirror>();
  private appendTimer: NodeJS.Timeout | undefined;
  private appending = 0;
  /** When the last append round started (`performance.now()`). */
  private lastRoundAt = -Infinity;
  private readonly followed = new Map<string, Followed>();
  /** Followed streams to read at the next `readPending`. */
  private readonly toRead = new Set<Followed>();
  private readScheduled = false;
  private readonly graceRounds = new Map<string, number>();
  /** Listeners here to streams elsewhere, per stream and per limit key: the listener caps, counted per instance. */
  private readonly listeners: ListenerCounts;
  private heartbeat: NodeJS.Timeout | undefined;
  private readySince = 0;
  private lastLivenessCheck = 0;
  private closed = false;
  /** Stopping: it hands its streams over and takes none. */
  private leaving = false;
  /** Streams this instance is trying to take over now (by shared key): one attempt each at a time. */
  private readonly taking = new Set<string>();
  /** Cancels heard for streams not running here (yet), by local key, with when: see `earlyCancelMs`. */
  private readonly earlyCancels = new Map<string, number>();

  constructor(
    private readonly completion: CompletionService,
    private readonly options: StreamRegistryOptions,
    limits: StreamLimits,
    redis: RedisConnection,
    private readonly admission: StreamAdmission,
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
    this.subscriber = redis.dedicated('subscriber', { queueWhileDown: true });
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
    // Pushes may have been lost while either connection was down: read every followed stream again.
    const readAll = () => this.followed.forEach((followed) => this.read(followed));
    this.client.on('ready', readAll);
    this.subscriber.on('ready', readAll);
    void this.subscriber
      .subscribe(CANCEL_CHANNEL_PREFIX + this.instance, (message) => this.cancelRequested(message))
      .catch((error: unknown) => this.logger.error(`cannot subscribe to cancels: ${String(error)}`));
    void this.subscriber
      .subscribe(FOLLOW_CHANNEL_PREFIX + this.instance, (message) => this.pushed(message))
      .catch((error: unknown) => this.logger.error(`cannot subscribe to followed events: ${String(error)}`));
    void this.subscriber
      .subscribe(HANDOVER_CHANNEL, (message) => this.offered(message))
      .catch((error: unknown) => this.logger.error(`cannot subscribe to handovers: ${String(error)}`));
    this.heartbeat = setInterval(() => void this.beat(), REDIS_REGISTRY_TIMINGS.heartbeatMs);
    this.heartbeat.unref();
  }

  get size(): number {
    return this.local.size;
  }

  override get shared(): boolean {
    return true;
  }

  get running(): number {
    return this.local.running;
  }

  async whenAllEnded(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await this.local.whenAllEnded(timeoutMs);
    while (this.followed.size > 0 && Date.now() < deadline) {
      await sleep(20);
    }
  }

  /** Local streams end with `error`; listeners here to streams elsewhere get it too (they resume elsewhere). */
  failRunning(error: StreamError): void {
    this.local.failRunning(error);
    for (const followed of [...this.followed.values()]) {
      this.endFollowers(followed, error);
    }
  }

  async start(
    request: CompletionRequest,
    owner: string,
    transport: TransportName,
    slot: StreamSlot,
    limitKey = owner,
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
        [
          owner,
          this.instance,
          String(REDIS_REGISTRY_TIMINGS.runningTtlMs),
          id,
          JSON.stringify(storedRequest(request)),
          transport,
          limitKey,
        ],
      );
    } catch (error) {
      throw new StreamsUnavailableError(error);
    }
    if (claimed !== 1) {
      throw new StreamIdConflictError();
    }
    const mirrorKey = localKey(owner, id);
    this.mirrors.set(mirrorKey, newMirror(mirrorKey, keys, request.model, true));
    try {
      return this.local.start({ ...request, streamId: id }, owner, transport, slot, limitKey);
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
    let found = await this.lookup(key, id, true);
    if (found?.orphaned) {
      // Its instance died: take it over if this one can (then it runs here), else it ends with stream_lost.
      const aheadOfRedis = afterSeq > found.lastSeq;
      if (found.owner === owner && (await this.takeOverOrphan(key, found.model))) {
        return aheadOfRedis
          ? { ok: true, events: of(lostAfter(id, afterSeq)), leave: () => undefined }
          : this.local.listen(id, owner, afterSeq, purpose, limitKey);
      }
      found = await this.lookup(key, id);
    }
    if (!found || found.owner !== owner || afterSeq + 1 < found.firstSeq) {
      return { ok: false, reason: 'not_found' };
    }
    const refusal = this.listeners.refusal(key, limitKey);
    if (refusal) {
      return { ok: false, reason: refusal };
    }
    return {
      ok: true,
      events:
        found.ended && found.lastSeq <= afterSeq ? EMPTY : this.follow(key, id, afterSeq, found.lastSeq),
      leave: this.listeners.join(key, limitKey),
    };
  }

  hold(slot: StreamSlot, stop: () => void): () => void {
    return this.local.hold(slot, stop);
  }

  listenerCount(id: string, owner: string): number {
    return this.local.listenerCount(id, owner) + this.listeners.of(sharedKey(owner, id));
  }

  /**
   * A stream running here and not being handed over is cancelled here, at once. Any other (running elsewhere, or
   * being handed over from here) is cancelled through Redis: the cancel is kept with the stream, so that no instance
   * takes it over after this (see `TAKE_OVER`), and goes to whichever instance runs it now.
   */
  async cancel(id: string, owner: string): Promise<boolean> {
    const here = this.local.find(id, owner);
    if (here && !here.paused) {
      here.cancel();
      return true;
    }
    if (!this.client.isReady) {
      if (here) {
        this.cancelHere(here);
        return true;
      }
      throw new StreamsUnavailableError();
    }
    let reply: string[];
    try {
      reply = (await CANCEL.run(this.client, [streamKeys(sharedKey(owner, id))[0]], [])) as string[];
    } catch (error) {
      if (here) {
        this.cancelHere(here);
        return true;
      }
      throw new StreamsUnavailableError(error);
    }
    if (reply.length === 0) {
      return here !== undefined;
    }
    const [instance, ended] = reply;
    if (ended === '1') {
      return true;
    }
    if (instance === this.instance) {
      // Still this instance's (a handover under way did not happen), or just taken over by it: it may not run
      // here yet, and then starts cancelled (see `takeOver`).
      const now = this.local.find(id, owner);
      if (now) {
        this.cancelHere(now);
      } else {
        this.earlyCancels.set(localKey(owner, id), Date.now());
      }
      return true;
    }
    try {
      await this.client.sendCommand([
        'PUBLISH',
        CANCEL_CHANNEL_PREFIX + instance,
        JSON.stringify({ id, owner }),
      ]);
    } catch (error) {
      throw new StreamsUnavailableError(error);
    }
    return true;
  }

  /** Cancels a stream that is still this instance's (a handover, if one was under way, did not happen). */
  private cancelHere(stream: LiveStream): void {
    stream.cancel();
    stream.resume();
  }

  onApplicationShutdown(): void {
    this.closed = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.appendTimer);
    this.appendTimer = undefined;
    this.local.onApplicationShutdown();
    for (const followed of [...this.followed.values()]) {
      followed.followers.forEach((follower) => follower.subscriber.complete());
    }
    this.followed.clear();
  }

  /** Before the connections close: what local streams published reaches Redis, then the lease goes. */
  private async drain(): Promise<void> {
    const deadline = Date.now() + 2000;
    while (this.mirrors.size > 0 && this.client.isReady && Date.now() < deadline) {
      this.mirrors.forEach((mirror) => this.retry(mirror));
      this.appendSoon();
      await sleep(10);
    }
    clearInterval(this.heartbeat);
    await this.client.sendCommand(['DEL', LEASE_PREFIX + this.instance]).catch(() => undefined);
  }

  // The running side.

  /** Per token: queue the event for the next append round. */
  private mirror(stream: LiveStream, event: CompletionEvent): void {
    let mirror = this.mirrorOf.get(stream);
    if (!mirror) {
      mirror = this.mirrors.get(localKey(stream.owner, stream.id));
      if (!mirror) {
        return;
      }
      this.mirrorOf.set(stream, mirror);
    }
    if (mirror.dropped) {
      return;
    }
    mirror.pending.push(entryId(event.seq), JSON.stringify(event));
    if (isTerminalEvent(event)) {
      mirror.ending = true;
    }
    if (mirror.pending.length > 4 * MAX_BUFFERED_EVENTS) {
      // Redis has been away for a whole stream's worth: stop mirroring it; its local listeners still get it.
      this.unmirror(mirror);
      return;
    }
    if (!mirror.stalled) {
      this.toAppend.add(mirror);
      this.appendSoon();
    }
  }

  private unmirror(mirror: Mirror): void {
    mirror.dropped = true;
    this.mirrors.delete(mirror.id);
    this.toAppend.delete(mirror);
  }

  /** A stalled mirror's events go in the next round. */
  private retry(mirror: Mirror): void {
    mirror.stalled = false;
    if (mirror.pending.length > 0) {
      this.toAppend.add(mirror);
    }
  }

  /**
   * Starts an append round `appendIntervalMs` after the last one started (at once if that is past), unless one
   * is due already or in flight (its end starts the next).
   */
  private appendSoon(): void {
    if (this.appending > 0 || this.appendTimer) {
      return;
    }
    const wait = this.lastRoundAt + REDIS_REGISTRY_TIMINGS.appendIntervalMs - performance.now();
    this.appendTimer = setTimeout(
      () => {
        this.appendTimer = undefined;
        this.appendRound();
      },
      Math.max(0, wait),
    );
  }

  /** Every pending batch, `appendStreams` streams per script call; the next round once all have answered. */
  private appendRound(): void {
    const ready = [...this.toAppend].filter((mirror) => !mirror.stalled && mirror.pending.length > 0);
    this.toAppend.clear();
    if (ready.length === 0) {
      return;
    }
    this.lastRoundAt = performance.now();
    const { appendStreams } = REDIS_REGISTRY_TIMINGS;
    for (let from = 0; from < ready.length; from += appendStreams) {
      this.appending += 1;
      void this.append(ready.slice(from, from + appendStreams)).finally(() => {
        this.appending -= 1;
        if (this.appending === 0 && this.toAppend.size > 0) {
          this.appendSoon();
        }
      });
    }
  }

  private async append(mirrors: Mirror[]): Promise<void> {
    const sent = mirrors.map((mirror) => {
      const batch = mirror.pending;
      mirror.pending = [];
      return { mirror, batch, ending: mirror.ending, fresh: mirror.fresh, resent: mirror.resent };
    });
    let appended: unknown;
    try {
      appended = await APPEND.run(
        this.client,
        sent.flatMap(({ mirror }) => mirror.keys),
        [
          String(this.finishedTtlMs),
          String(REDIS_REGISTRY_TIMINGS.runningTtlMs),
          String(MAX_BUFFERED_EVENTS),
          FOLLOW_CHANNEL_PREFIX,
          this.instance,
          ...sent.flatMap(({ batch, ending, fresh, resent }) => [
            String((resent ? 4 : 0) + (ending ? 2 : 0) + (fresh ? 1 : 0)),
            String(batch.length / 2),
            ...batch,
          ]),
        ],
      );
    } catch {
      // Redis is away: keep each batch, in order; the heartbeat sends them once Redis is back. The call may have
      // run all the same (a reply lost with the connection): the next one skips what Redis has.
      for (const { mirror, batch } of sent) {
        mirror.pending = batch.concat(mirror.pending);
        mirror.stalled = true;
        mirror.resent = true;
        this.toAppend.delete(mirror);
      }
      return;
    }
    sent.forEach(({ mirror, ending, resent }, index) => {
      mirror.fresh = false;
      if (resent) {
        mirror.resent = false;
      }
      if ((appended as number[])[index] !== 1 || ending) {
        // Done; or the stream was declared lost meanwhile, or taken over by another instance, or Redis restarted
        // without it: its local listeners go on.
        this.unmirror(mirror);
      }
    });
  }

  private cancelRequested(message: string): void {
    let id: string;
    let owner: string;
    try {
      ({ id, owner } = JSON.parse(message) as { id: string; owner: string });
    } catch {
      this.logger.warn('ignored a malformed cancel message');
      return;
    }
    const here = this.local.find(id, owner);
    if (!here) {
      // Sent here because this instance has just taken the stream over: it may not run here yet.
      this.earlyCancels.set(localKey(owner, id), Date.now());
    } else if (here.paused) {
      void this.cancel(id, owner).catch(() => this.cancelHere(here));
    } else {
      here.cancel();
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
      // Unreferenced: a grace being watched never keeps a stopping process alive.
      await sleep(Math.max(remaining, 50), undefined, { ref: false });
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
    for (const key of this.followed.keys()) {
      work.push(this.touchListeners(key, until));
    }
    this.checkLiveness();
    for (const mirror of this.mirrors.values()) {
      if (mirror.stalled) {
        this.retry(mirror);
        this.appendSoon();
      }
    }
    await Promise.allSettled(work);
  }

  // The handover: a stopping instance offers its streams, a live one takes each over and continues it.

  /**
   * Pauses every local stream that some deployment can continue, gets what they published into Redis, and offers
   * each to the other instances (one message each on `HANDOVER_CHANNEL`); each taken over is let go here (its
   * upstream aborted, its listeners here sent to resume elsewhere). One nobody took within the wait is withdrawn
   * and runs on here. Listeners here to streams elsewhere are let go too: they resume on another instance.
   */
  async handOver(timeoutMs: number): Promise<void> {
    this.leaving = true;
    // Its own offers reach only the others from now on: whether anyone heard one says whether to wait for a taker.
    await this.subscriber.unsubscribe(HANDOVER_CHANNEL).catch(() => undefined);
    const waitMs = Math.min(timeoutMs, REDIS_REGISTRY_TIMINGS.handoverMs);
    const candidates = this.local.runningStreams().flatMap((stream) => {
      const mirror = this.mirrors.get(localKey(stream.owner, stream.id));
      return mirror && !mirror.dropped && !stream.controller.signal.aborted && this.canContinue(mirror.model)
        ? [{ stream, mirror }]
        : [];
    });
    candidates.forEach(({ stream }) => stream.pause());
    await this.flush(
      candidates.map(({ mirror }) => mirror),
      Date.now() + waitMs,
    );
    await Promise.all(candidates.map(({ stream, mirror }) => this.offer(stream, mirror, waitMs)));
    for (const followed of [...this.followed.values()]) {
      followed.followers.forEach((follower) => follower.subscriber.complete());
    }
  }

  /** Resolves once what `mirrors` hold has reached Redis (or the deadline passed, or Redis is away). */
  private async flush(mirrors: Mirror[], deadline: number): Promise<void> {
    const unsent = () => mirrors.some((mirror) => !mirror.dropped && mirror.pending.length > 0);
    while ((unsent() || this.appending > 0) && this.client.isReady && Date.now() < deadline) {
      mirrors.forEach((mirror) => this.retry(mirror));
      this.appendSoon();
      await sleep(5);
    }
  }

  private async offer(stream: LiveStream, mirror: Mirror, waitMs: number): Promise<void> {
    const [meta] = mirror.keys;
    let offered = 0;
    try {
      offered = (await OFFER.run(
        this.client,
        [meta],
        [
          this.instance,
          HANDOVER_CHANNEL,
          JSON.stringify({ key: keyOfMeta(meta), model: mirror.model ?? '' }),
        ],
      )) as number;
    } catch {
      // Redis is away: nobody could take it over; it runs on here.
    }
    // Nobody heard the offer (no other instance): withdrawn at once, it runs on here.
    const taken = await this.whenTaken(stream, meta, offered > 0 ? Date.now() + waitMs : 0);
    if (taken) {
      this.unmirror(mirror);
      this.local.handedOver(stream);
    } else {
      stream.resume();
    }
  }

  /** Whether another instance took the stream over before the deadline; an offer not taken by then is withdrawn. */
  private async whenTaken(stream: LiveStream, meta: string, deadline: number): Promise<boolean> {
    while (!stream.finished && Date.now() < deadline) {
      const instance = await this.client
        .sendCommand<string | null>(['HGET', meta, 'instance'])
        .catch(() => null);
      if (instance !== null && instance !== this.instance) {
        return true;
      }
      if (stream.controller.signal.aborted) {
        // Cancelled meanwhile, and still ours (see `cancel`): it ends here.
        return false;
      }
      await sleep(10);
    }
    if (stream.finished) {
      return false;
    }
    const withdrawn = await WITHDRAW.run(this.client, [meta], [this.instance]).catch(() => 1);
    return withdrawn !== 1;
  }

  /** Another instance stops and offers a stream: take it over if this one can continue it. */
  private offered(message: string): void {
    let offer: { key: string; model: string };
    try {
      offer = JSON.parse(message) as { key: string; model: string };
    } catch {
      this.logger.warn('ignored a malformed handover message');
      return;
    }
    if (!this.leaving && !this.closed && this.canContinue(offer.model)) {
      void this.takeOver(offer.key).catch(() => undefined);
    }
  }

  /** An orphan (its instance died): true once taken over here; false if this instance cannot, or another did. */
  private async takeOverOrphan(key: string, model: string): Promise<boolean> {
    if (this.leaving || this.closed || !this.canContinue(model)) {
      return false;
    }
    return this.takeOver(key).catch(() => false);
  }

  /**
   * Takes the stream over if it is still up for it (one instance only, decided by `TAKE_OVER`), and continues it
   * here from its events so far: the completion goes on after the last one, on a deployment that can continue.
   */
  private async takeOver(key: string): Promise<boolean> {
    if (this.taking.has(key)) {
      return false;
    }
    this.taking.add(key);
    let reply: unknown[];
    try {
      const [meta, events] = streamKeys(key);
      reply = (await TAKE_OVER.run(
        this.client,
        [meta, events],
        [LEASE_PREFIX, this.instance, this.judging ? '1' : '0'],
      )) as unknown[];
    } finally {
      this.taking.delete(key);
    }
    if (reply.length === 0) {
      return false;
    }
    const [owner, id, requestJson, transport, limitKey, entries] = reply as [
      string,
      string,
      string,
      string,
      string,
      [string, string[]][],
    ];
    const history = entries.map(([, fields]) => JSON.parse(fields[1]) as CompletionEvent);
    const request = JSON.parse(requestJson) as StoredRequest;
    const continueFrom = continuationOf(history);
    const mirrorKey = localKey(owner, id);
    const mirror = newMirror(mirrorKey, streamKeys(key), request.model, false);
    this.mirrors.set(mirrorKey, mirror);
    if (!continueFrom) {
      // Its first events are no longer kept (past the per-stream cap): nothing exact to continue from.
      const seq = (history.at(-1)?.seq ?? -1) + 1;
      mirror.ending = true;
      mirror.pending.push(entryId(seq), JSON.stringify({ ...LOST_EVENT, streamId: id, seq, ts: epochNow() }));
      this.toAppend.add(mirror);
      this.appendSoon();
      return true;
    }
    this.local.start(
      { ...request, streamId: id },
      owner,
      (transport || 'sse') as TransportName,
      this.admission.adopt(limitKey || owner),
      limitKey || owner,
      { history, continueFrom },
    );
    const stream = this.local.find(id, owner);
    const cancelledAt = this.earlyCancels.get(mirrorKey);
    this.earlyCancels.delete(mirrorKey);
    if (
      stream &&
      cancelledAt !== undefined &&
      Date.now() - cancelledAt < REDIS_REGISTRY_TIMINGS.earlyCancelMs
    ) {
      stream.cancel();
    } else if (stream) {
      // Nobody listens here yet: the resume grace counts from now, with every instance's listeners.
      this.whenIdle(stream);
    }
    return true;
  }

  private canContinue(model: string | undefined): boolean {
    return this.completion.canContinue(model || undefined);
  }

  // The following side.

  /** `key`: the stream's shared key (see `sharedKey`); `streamId`: its public id, for the events made here. */
  private follow(
    key: string,
    streamId: string,
    afterSeq: number,
    lastInRedis: number,
  ): Observable<CompletionEvent> {
    return new Observable<CompletionEvent>((subscriber) => {
      const follower: Follower = {
        seen: afterSeq + 1,
        inRedisAtJoin: lastInRedis + 1,
        heldAtJoin: afterSeq + 1,
        subscriber,
      };
      let followed = this.followed.get(key);
      if (!followed) {
        followed = {
          key,
          streamId,
          followers: new Set(),
          lastActivity: Date.now(),
          reading: false,
          readAgain: false,
        };
        this.followed.set(key, followed);
        // First among the stream's listeners, so that every append after this is pushed here; then a read of
        // what is there already: between the two, no event falls through.
        const joined = followed;
        void this.touchListeners(key, Date.now() + REDIS_REGISTRY_TIMINGS.presenceMs).finally(() =>
          this.read(joined),
        );
      } else {
        this.read(followed);
      }
      followed.followers.add(follower);
      const current = followed;
      return () => {
        if (current.followers.delete(follower) && current.followers.size === 0) {
          this.followed.delete(key);
          clearTimeout(current.recheck);
          this.toRead.delete(current);
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

  /** Events appended to a stream followed here, pushed by the running instance's append. */
  private pushed(message: string): void {
    const { eventsKey, entries } = parseFollowMessage(message);
    const followed = this.followed.get(keyOfEvents(eventsKey));
    if (followed && this.deliver(followed, entries)) {
      this.read(followed);
    }
  }

  /** Reads the stream's events after its followers' positions, soon, with others; at most one read in flight. */
  private read(followed: Followed): void {
    if (followed.reading) {
      followed.readAgain = true;
      return;
    }
    this.toRead.add(followed);
    if (!this.readScheduled) {
      this.readScheduled = true;
      // After the current I/O: the streams asked for meanwhile go in the same reads.
      setImmediate(() => this.readPending());
    }
  }

  /** One non-blocking XREAD per `readStreams` streams, on the command connection, pipelined. */
  private readPending(): void {
    this.readScheduled = false;
    const batch = [...this.toRead].filter((followed) => followed.followers.size > 0);
    this.toRead.clear();
    const { readStreams, readEntries } = REDIS_REGISTRY_TIMINGS;
    for (let from = 0; from < batch.length; from += readStreams) {
      const streams = batch.slice(from, from + readStreams);
      const after = streams.map((followed) => {
        followed.reading = true;
        return Math.min(...[...followed.followers].map((follower) => follower.seen));
      });
      void this.client
        .sendCommand<[string, [string, string[]][]][] | null>([
          'XREAD',
          'COUNT',
          String(readEntries),
          'STREAMS',
          ...streams.map((followed) => streamKeys(followed.key)[1]),
          ...after.map((seen) => `0-${seen}`),
        ])
        .then(
          (reply) => {
            const entriesOf = new Map(reply?.map(([key, entries]) => [keyOfEvents(key), entries]));
            streams.forEach((followed, index) => {
              followed.reading = false;
              const entries = (entriesOf.get(followed.key) ?? []).map(([entry, fields]): [string, string] => [
                entry,
                fields[1],
              ]);
              this.deliver(followed, entries);
              const first = entries.length > 0 ? entryNumber(entries[0][0]) : 0;
              if (first > after[index] + 1) {
                // Entry ids only grow: what a follower read from here lacks before the first entry is gone (older
                // than the per-stream cap keeps).
                this.endFollowers(
                  followed,
                  TRIMMED_ERROR,
                  (follower) => follower.seen >= after[index] && follower.seen + 1 < first,
                );
              }
              if (followed.readAgain || entries.length === readEntries) {
                followed.readAgain = false;
                this.read(followed);
              }
            });
          },
          () => {
            // Redis is away: the streams are read again once it is back (see onModuleInit), or when quiet.
            streams.forEach((followed) => {
              followed.reading = false;
              followed.readAgain = false;
            });
          },
        );
    }
  }

  /**
   * Gives each follower of the stream the entries that come next for it, in order, once; entries ahead of a
   * follower's next one are not its yet. True when some follower is left behind an entry it did not get.
   */
  private deliver(followed: Followed, entries: [string, string][]): boolean {
    if (entries.length === 0) {
      return false;
    }
    followed.lastActivity = Date.now();
    for (const [entry, json] of entries) {
      const number = entryNumber(entry);
      let event: CompletionEvent | undefined;
      for (const follower of [...followed.followers]) {
        if (number > follower.inRedisAtJoin && number <= follower.heldAtJoin && isHandover(json)) {
          // The stream was continued after what Redis had when this follower joined, and the follower holds events
          // past that from the instance that died: its answer and the continued one part there. It gets the one
          // terminal event a lost stream gets, rather than a text with a seam in it.
          this.endFollowers(followed, LOST_ERROR, (which) => which === follower);
          continue;
        }
        if (number !== follower.seen + 1) {
          continue;
        }
        event ??= JSON.parse(json) as CompletionEvent;
        follower.seen = number;
        follower.subscriber.next(event);
        if (isTerminalEvent(event)) {
          follower.subscriber.complete();
        }
      }
    }
    const last = entryNumber(entries[entries.length - 1][0]);
    return [...followed.followers].some((follower) => follower.seen < last);
  }

  /**
   * Streams followed here that were quiet for a while: is the instance running each still alive? A dead one's
   * stream gets its `stream_lost` in Redis (and so to every follower); a stream Redis forgot (restarted empty)
   * ends here with `stream_lost` too. A live one is read again, in case a push was lost.
   */
  private checkLiveness(): void {
    const now = Date.now();
    if (now - this.lastLivenessCheck < REDIS_REGISTRY_TIMINGS.livenessCheckMs) {
      return;
    }
    this.lastLivenessCheck = now;
    for (const followed of this.followed.values()) {
      if (now - followed.lastActivity >= REDIS_REGISTRY_TIMINGS.livenessCheckMs) {
        this.checkOne(followed);
      }
    }
  }

  /**
   * Is the instance running the followed stream alive? An orphan is taken over (or declared lost); a live one is read
   * again, and looked at again just after its lease would lapse, so that a death is noticed within the lease, not a
   * check period later.
   */
  private checkOne(followed: Followed): void {
    clearTimeout(followed.recheck);
    followed.recheck = undefined;
    const quietSince = followed.lastActivity;
    void this.lookup(followed.key, followed.streamId, true)
      .then(async (found) => {
        if (found?.orphaned && !(await this.takeOverOrphan(followed.key, found.model))) {
          await this.lookup(followed.key, followed.streamId);
        }
        if (!found) {
          if (this.judging) {
            this.endFollowers(followed, LOST_ERROR);
          }
          return;
        }
        this.read(followed);
        if (
          !found.ended &&
          !found.orphaned &&
          found.leaseMs >= 0 &&
          this.followed.get(followed.key) === followed
        ) {
          followed.recheck = setTimeout(() => {
            followed.recheck = undefined;
            if (followed.lastActivity === quietSince && this.followed.get(followed.key) === followed) {
              this.checkOne(followed);
            }
          }, found.leaseMs + 50);
          followed.recheck.unref();
        }
      })
      .catch(() => undefined);
  }

  /** Ends the stream's followers here (those `which` picks) with `error`, each after what it has had. */
  private endFollowers(
    followed: Followed,
    error: StreamError,
    which: (follower: Follower) => boolean = () => true,
  ): void {
    for (const follower of [...followed.followers].filter(which)) {
      follower.subscriber.next({
        type: 'error',
        streamId: followed.streamId,
        seq: follower.seen,
        ts: epochNow(),
        error,
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

  /**
   * `key`: the stream's shared key; `streamId`: its public id, for a `stream_lost` event made here. `takeOver`: an
   * orphan (its instance died) that this instance could take over is left as it is, `orphaned`, for the caller to
   * take over (see `takeOverOrphan`), rather than declared lost.
   */
  private async lookup(key: string, streamId: string, takeOver = false): Promise<Found | undefined> {
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
        FOLLOW_CHANNEL_PREFIX,
        takeOver && !this.leaving && !this.closed ? '1' : '0',
      ])) as string[];
    } catch (error) {
      throw new StreamsUnavailableError(error);
    }
    if (reply.length === 0) {
      return undefined;
    }
    const [owner, instance, ended, firstId, lastId, orphaned, model, leaseMs] = reply;
    return {
      owner,
      instance,
      ended: ended === '1',
      firstSeq: firstId ? entryNumber(firstId) - 1 : -1,
      lastSeq: lastId ? entryNumber(lastId) - 1 : -1,
      orphaned: orphaned === '1',
      model,
      leaseMs: Number(leaseMs),
    };
  }

  private get finishedTtlMs(): number {
    return Math.max(this.options.retentionMs, REDIS_REGISTRY_TIMINGS.minFinishedTtlMs);
  }
}

/** The shared key in a stream's events key, `llmgw:{<key>}:events`. */
function keyOfEvents(eventsKey: string): string {
  return eventsKey.slice(eventsKey.indexOf('{') + 1, eventsKey.lastIndexOf('}'));
}

/** Whether an entry's JSON is a `route` event of a handover (without parsing every entry a follower skips). */
function isHandover(json: string): boolean {
  return json.includes('"type":"route"') && json.includes('"reason":"handover"');
}

/**
 * The one event for a client that holds events of an orphan past what Redis had (see `Follower.inRedisAtJoin`): its
 * stream was continued from an earlier point than its own, so it ends as a lost stream does.
 */
function lostAfter(streamId: string, afterSeq: number): CompletionEvent {
  return { type: 'error', streamId, seq: afterSeq + 1, ts: epochNow(), error: LOST_ERROR };
}

/** The shared key in a stream's meta key, `llmgw:{<key>}:meta`. */
function keyOfMeta(metaKey: string): string {
  return keyOfEvents(metaKey);
}

function newMirror(id: string, keys: string[], model: string | undefined, fresh: boolean): Mirror {
  return {
    id,
    keys,
    pending: [],
    ending: false,
    fresh,
    dropped: false,
    stalled: false,
    resent: false,
    model,
  };
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
