/**
 * A TCP proxy that makes loopback look like a real network: each direction of each connection is a link with a
 * one-way delay (with jitter) and a bandwidth cap, and a new connection pays its TCP handshake's round trip before
 * its first bytes move. It works on bytes, never on what they mean, so SSE, Socket.IO and /v1, HTTP/1.1 and
 * HTTP/2, TLS or not, all cross exactly the same links. The kernel here has no netem (tc qdisc ... netem), and
 * no npm package both delays each direction and caps bandwidth at the TCP level (toxiproxy needs its Go server,
 * toxy is an HTTP proxy); this is the small one the network lab uses.
 *
 * A link models a serialising wire followed by a propagation delay: a chunk read at `t` leaves the wire at
 * `max(t, wire free) + bytes / bandwidth`, then arrives `delay ± jitter` later, never before the chunk ahead of it
 * (TCP delivers in order, so jitter stretches gaps but never reorders). The kernel's own socket buffers still
 * sit on both sides, as they would on a real host.
 */
import { createServer, type Server, type Socket, connect } from 'node:net';

export interface LinkSettings {
  /** One-way delay added to every byte, in ms. */
  delayMs: number;
  /** Each chunk's delay is drawn uniformly from `delayMs ± jitterMs` (never below 0), in ms. */
  jitterMs?: number;
  /** The link's bandwidth in bytes per second; unlimited when absent. */
  bytesPerSecond?: number;
}

export interface DelayProxyOptions {
  /** Where every accepted connection is relayed to. */
  target: { host: string; port: number };
  /** Client to target. */
  up: LinkSettings;
  /** Target to client. */
  down: LinkSettings;
  /**
   * Hold a new connection's first bytes until its handshake would have completed: one round trip (up + down
   * delay) after the accept. The kernel answers the client's SYN at once on loopback, so without this a cold
   * connection would look a round trip cheaper than it is. Default true.
   */
  handshake?: boolean;
  /** Random numbers in [0, 1) for the jitter; Math.random by default, a seeded one for a reproducible run. */
  random?: () => number;
  /** Stop reading a side while this many bytes of it wait to be delivered (the link's queue). Default 4 MiB. */
  queueBytes?: number;
}

export interface DelayProxy {
  port: number;
  /** Connections accepted so far: a cold run opens new ones, a warm run does not. */
  readonly connections: number;
  /** Bytes delivered so far in each direction. */
  readonly bytes: { up: number; down: number };
  /** Resets every open connection, as a load balancer's idle timeout would: the next request starts cold. */
  reset(): void;
  close(): Promise<void>;
}

/** How much earlier than due a link's timer fires; the rest is waited out on the event loop. */
const EARLY_WAKE_MS = 1.5;
/** The largest piece a link delivers at once: one TLS record. */
const SEGMENT_BYTES = 16 * 1024;

/** One direction of one connection. */
class Link {
  private wireFreeAt: number;
  private lastArrival = 0;
  private queued = 0;
  private readonly pending: { at: number; chunk: Buffer | null }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;

  private readonly settings: LinkSettings;
  private readonly random: () => number;
  private readonly queueBytes: number;
  private readonly from: Socket;
  private readonly to: Socket;
  private readonly delivered: (bytes: number) => void;

  constructor(ends: {
    settings: LinkSettings;
    random: () => number;
    queueBytes: number;
    from: Socket;
    to: Socket;
    /** Nothing leaves before this (performance.now() ms): the handshake's round trip. */
    openAt: number;
    delivered: (bytes: number) => void;
  }) {
    ({
      settings: this.settings,
      random: this.random,
      queueBytes: this.queueBytes,
      from: this.from,
      to: this.to,
      delivered: this.delivered,
    } = ends);
    this.wireFreeAt = ends.openAt;
    this.from.on('data', (chunk: Buffer) => this.send(chunk));
    this.from.on('end', () => this.send(null));
  }

  /**
   * A chunk, or `null` for the sender's FIN, which travels behind the bytes before it. A large chunk crosses as
   * segments, each delivered when its own last byte arrives, as a real link delivers packets.
   */
  private send(chunk: Buffer | null): void {
    if (chunk && chunk.length > SEGMENT_BYTES) {
      for (let at = 0; at < chunk.length; at += SEGMENT_BYTES)
        this.send(chunk.subarray(at, at + SEGMENT_BYTES));
      return;
    }
    const now = performance.now();
    const bytes = chunk?.length ?? 0;
    const { delayMs, jitterMs = 0, bytesPerSecond } = this.settings;
    const departure = Math.max(now, this.wireFreeAt) + (bytesPerSecond ? (bytes / bytesPerSecond) * 1000 : 0);
    this.wireFreeAt = departure;
    const delay = Math.max(0, delayMs + (jitterMs ? (this.random() * 2 - 1) * jitterMs : 0));
    const at = Math.max(departure + delay, this.lastArrival);
    this.lastArrival = at;
    this.pending.push({ at, chunk });
    this.queued += bytes;
    if (this.queued > this.queueBytes) this.from.pause();
    if (this.pending.length === 1) this.arm();
  }

  /**
   * A timer wakes the link a little before the head is due, and the last stretch is waited out on the event
   * loop: a timer alone fires up to a millisecond late, which is the whole error the lab allows.
   */
  private arm(): void {
    const head = this.pending[0];
    if (!head) return;
    const wait = head.at - performance.now();
    if (wait > EARLY_WAKE_MS) this.timer = setTimeout(() => this.arm(), wait - EARLY_WAKE_MS);
    else if (wait > 0) this.immediate = setImmediate(() => this.arm());
    else this.deliver();
  }

  private deliver(): void {
    const now = performance.now();
    while (this.pending.length > 0 && this.pending[0].at <= now + 0.05) {
      const { chunk } = this.pending.shift()!;
      if (this.to.destroyed) continue;
      if (chunk === null) {
        this.to.end();
        continue;
      }
      this.queued -= chunk.length;
      this.delivered(chunk.length);
      this.to.write(chunk);
    }
    if (this.queued <= this.queueBytes && this.from.isPaused()) this.from.resume();
    this.arm();
  }

  stop(): void {
    clearTimeout(this.timer);
    clearImmediate(this.immediate);
    this.pending.length = 0;
  }
}

export async function startDelayProxy(options: DelayProxyOptions): Promise<DelayProxy> {
  const random = options.random ?? Math.random;
  const queueBytes = options.queueBytes ?? 4 * 2 ** 20;
  const sockets = new Set<Socket>();
  const bytes = { up: 0, down: 0 };
  let connections = 0;
  const server: Server = createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    connections++;
    const accepted = performance.now();
    const openAt =
      options.handshake === false ? accepted : accepted + options.up.delayMs + options.down.delayMs;
    const upstream = connect({ ...options.target, noDelay: true, allowHalfOpen: true });
    sockets.add(client).add(upstream);
    const links = [
      new Link({
        settings: options.up,
        random,
        queueBytes,
        from: client,
        to: upstream,
        openAt,
        delivered: (n) => (bytes.up += n),
      }),
      new Link({
        settings: options.down,
        random,
        queueBytes,
        from: upstream,
        to: client,
        openAt: accepted,
        delivered: (n) => (bytes.down += n),
      }),
    ];
    // A reset or error on either side ends both at once: there is nothing left to deliver to.
    const teardown = () => {
      for (const link of links) link.stop();
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', teardown).on('close', (hadError) => hadError && teardown());
    upstream.on('error', teardown).on('close', (hadError) => hadError && teardown());
    // Both directions ended cleanly: forget them.
    let closed = 0;
    const onClose = () => {
      if (++closed === 2) teardown();
    };
    client.on('close', onClose);
    upstream.on('close', onClose);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the delay proxy has no port');
  return {
    port: address.port,
    get connections() {
      return connections;
    },
    bytes,
    reset: () => {
      for (const socket of sockets) socket.resetAndDestroy();
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
