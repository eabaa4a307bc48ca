export interface StreamRegistryOptions {
  /** How long a stream nobody listens to keeps running, waiting for a resume; 0 aborts at once. */
  resumeGraceMs: number;
  /** How long a finished stream's events stay available for resume. */
  retentionMs: number;
  /** On shutdown, how long running streams may go on before they end with `shutting_down`. */
  shutdownGraceMs: number;
}

/**
 * Events kept per stream for resume. A stream is bounded by the request's maxTokens cap, so this is
 * a guard against an upstream that ignores it, not a limit users meet.
 */
export const MAX_BUFFERED_EVENTS = 20_000;

/** Injection token of the per-principal limits. */
export const STREAM_LIMITS = Symbol('STREAM_LIMITS');

export interface StreamLimits {
  /** Streams a principal may start or resume per minute, on all transports together. */
  requestsPerMinute: number;
  /** Streams of one principal running at once. */
  maxConcurrentStreams: number;
  /** Clients following one stream at once (its start's own included); a resume past it is refused. */
  maxListenersPerStream: number;
  /** Clients following any of one principal's streams at once; a resume past it is refused. */
  maxListenersPerPrincipal: number;
}
