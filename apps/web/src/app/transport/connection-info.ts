/**
 * What the network did for one stream before its first byte: which protocol carried it, whether it opened a
 * connection or reused one, and how long it waited for one. On loopback none of this matters; on a real network
 * it is most of the difference between SSE and WebSockets (docs/transport-comparison.md).
 */
export interface ConnectionInfo {
  /** `h1`, `h2`, `h3`, or for Socket.IO the engine.io transport (`websocket`, `polling`); `unknown` if hidden. */
  protocol: string;
  /** A connection was opened for this stream (false: an open one was reused); null when the browser hid it. */
  newConnection: boolean | null;
  /**
   * How long the request waited for a connection before it was sent, besides opening one: the queue of
   * HTTP/1.1's six connections per origin, or an HTTP/2 connection still being set up by another request.
   */
  queuedMs: number;
  /** How long opening a new connection took (DNS, TCP, TLS; Socket.IO's handshake); 0 when reused. */
  connectMs: number;
}

/** The subset of `PerformanceResourceTiming` read here (a plain object in unit tests). */
export type ResourceTiming = Pick<
  PerformanceResourceTiming,
  | 'nextHopProtocol'
  | 'fetchStart'
  | 'domainLookupStart'
  | 'domainLookupEnd'
  | 'connectStart'
  | 'connectEnd'
  | 'requestStart'
>;

/** ALPN names as Resource Timing gives them, in the short form the client shows. */
export function shortProtocol(nextHopProtocol: string): string {
  if (nextHopProtocol.startsWith('http/1')) return 'h1';
  if (nextHopProtocol === 'h2' || nextHopProtocol === 'h2c') return 'h2';
  if (nextHopProtocol.startsWith('h3')) return 'h3';
  return nextHopProtocol === '' ? 'unknown' : nextHopProtocol;
}

/**
 * From a fetch's Resource Timing entry. Between `fetchStart` and `requestStart` the request resolved the name,
 * connected (both zero-length on a reused connection) and, for the rest of that span, waited: for a free
 * connection (HTTP/1.1's limit) or for one being opened. A zero `requestStart` means the browser hid the
 * details (a cross-origin response without Timing-Allow-Origin).
 */
export function fromResourceTiming(entry: ResourceTiming): ConnectionInfo {
  const protocol = shortProtocol(entry.nextHopProtocol);
  if (entry.requestStart === 0) return { protocol, newConnection: null, queuedMs: 0, connectMs: 0 };
  const lookupMs = entry.domainLookupEnd - entry.domainLookupStart;
  const connectMs = entry.connectEnd - entry.connectStart;
  return {
    protocol,
    newConnection: connectMs > 0,
    queuedMs: Math.max(0, entry.requestStart - entry.fetchStart - lookupMs - connectMs),
    connectMs: connectMs + lookupMs,
  };
}

/** Watches for the Resource Timing entry of one fetch. */
export interface ResourceTimingWatch {
  /** The entry, once the browser reports it (when the response body ended), or null after `graceMs` more. */
  entry(graceMs: number): Promise<PerformanceResourceTiming | null>;
  stop(): void;
}

/** How often the watch looks for the entry. */
const LOOK_EVERY_MS = 25;
/** Chromium keeps 250 resource entries and then drops new ones; the clock probes alone add a hundred a minute. */
const TIMELINE_ROOM = 200;

/**
 * Watches for the entry of the next fetch to `url`, from now on: call it just before the fetch. The entry comes
 * only when the body has ended, so for a stream it is looked for after the stream. It is read from the
 * timeline (a PerformanceObserver registered before the fetch was never given it in Chromium 14x, though the
 * timeline had it), so the timeline is emptied when nearly full: nothing else in the client reads it.
 */
export function watchResourceTiming(url: string): ResourceTimingWatch {
  const absolute = new URL(url, location.href).href;
  if (performance.getEntriesByType('resource').length >= TIMELINE_ROOM) performance.clearResourceTimings();
  const since = performance.now();
  let stopped = false;
  const find = () =>
    performance
      .getEntriesByName(absolute, 'resource')
      .find(
        (candidate): candidate is PerformanceResourceTiming =>
          candidate instanceof PerformanceResourceTiming && candidate.startTime >= since - 1,
      ) ?? null;
  return {
    entry: (graceMs) =>
      new Promise((resolve) => {
        const until = performance.now() + graceMs;
        const look = () => {
          const found = stopped ? null : find();
          if (found || stopped || performance.now() >= until) resolve(found);
          else setTimeout(look, LOOK_EVERY_MS);
        };
        look();
      }),
    stop: () => (stopped = true),
  };
}
