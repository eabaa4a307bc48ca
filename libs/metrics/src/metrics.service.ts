import type { StreamErrorCode } from '@app/contracts';
import { Injectable } from '@nestjs/common';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** `openai`: the OpenAI-compatible surface (`/v1`), which relays the upstream's chunks rather than our events. */
export type TransportName = 'sse' | 'socket.io' | 'openai';

/** What a finished stream reports, once: per-stream figures are cheap where per-token ones would not be. */
export interface StreamOutcome {
  transport: TransportName;
  provider: string;
  tokens: number;
  /** Reasoning deltas delivered (reasoning events, or reasoning deltas relayed). */
  reasoningTokens: number;
  /** To the first reasoning or token. */
  ttftMs: number | undefined;
  /** First reasoning to first token, when the model reasoned. */
  reasoningMs: number | undefined;
  durationMs: number;
  cancelled: boolean;
  errorCode: StreamErrorCode | undefined;
}

interface TransportChildren {
  activeStreams: Gauge.Internal<'transport'>;
  connections: Gauge.Internal<'transport'>;
  cancellations: Counter.Internal;
  resumes: Counter.Internal;
  droppedSlowClients: Counter.Internal;
}

interface ProviderChildren {
  tokens: Counter.Internal;
  reasoningTokens: Counter.Internal;
  reasoningTime: Histogram.Internal<'transport' | 'provider'>;
  ttft: Histogram.Internal<'transport' | 'provider'>;
  duration: Histogram.Internal<'transport' | 'provider'>;
}

const LATENCY_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const DURATION_BUCKETS_SECONDS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/**
 * The gateway's Prometheus metrics, in a registry of its own (not prom-client's global one, so that
 * several apps in one process, as in the e2e suites, do not collide). Nothing is updated per token:
 * streams report their counts when they end.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  private readonly activeStreams = new Gauge({
    name: 'llm_gateway_active_streams',
    help: 'Streams running now, by the transport that started them.',
    labelNames: ['transport'],
    registers: [this.registry],
  });
  private readonly connections = new Gauge({
    name: 'llm_gateway_connections',
    help: 'Open client connections: SSE responses being written, connected Socket.IO sockets.',
    labelNames: ['transport'],
    registers: [this.registry],
  });
  private readonly streams = new Counter({
    name: 'llm_gateway_streams_total',
    help: 'Streams ended, by transport, provider and outcome (done, cancelled, error).',
    labelNames: ['transport', 'provider', 'outcome'],
    registers: [this.registry],
  });
  private readonly tokens = new Counter({
    name: 'llm_gateway_tokens_total',
    help: 'Token events delivered to streams.',
    labelNames: ['transport', 'provider'],
    registers: [this.registry],
  });
  private readonly reasoningTokens = new Counter({
    name: 'llm_gateway_reasoning_tokens_total',
    help: 'Reasoning deltas delivered to streams (reasoning events; reasoning deltas relayed on /v1).',
    labelNames: ['transport', 'provider'],
    registers: [this.registry],
  });
  private readonly reasoningTime = new Histogram({
    name: 'llm_gateway_reasoning_seconds',
    help: 'How long the model reasoned: from its first reasoning delta to its first answer token.',
    labelNames: ['transport', 'provider'],
    buckets: DURATION_BUCKETS_SECONDS,
    registers: [this.registry],
  });
  private readonly ttft = new Histogram({
    name: 'llm_gateway_time_to_first_token_seconds',
    help: 'From the request to the first token or reasoning delta (what the user first sees), as the gateway saw it.',
    labelNames: ['transport', 'provider'],
    buckets: LATENCY_BUCKETS_SECONDS,
    registers: [this.registry],
  });
  private readonly duration = new Histogram({
    name: 'llm_gateway_stream_duration_seconds',
    help: 'From the request to the terminal event.',
    labelNames: ['transport', 'provider'],
    buckets: DURATION_BUCKETS_SECONDS,
    registers: [this.registry],
  });
  private readonly upstreamErrors = new Counter({
    name: 'llm_gateway_upstream_errors_total',
    help: 'Streams that ended with an error event, by contract error code.',
    labelNames: ['code', 'provider'],
    registers: [this.registry],
  });
  private readonly cancellations = new Counter({
    name: 'llm_gateway_cancellations_total',
    help: 'Streams cancelled, explicitly or after the resume grace, so their upstream request was aborted.',
    labelNames: ['transport'],
    registers: [this.registry],
  });
  private readonly resumes = new Counter({
    name: 'llm_gateway_resumes_total',
    help: 'Resumes of a stream (GET with Last-Event-ID, completion:resume).',
    labelNames: ['transport'],
    registers: [this.registry],
  });
  private readonly droppedSlowClients = new Counter({
    name: 'llm_gateway_dropped_slow_clients_total',
    help: 'Connections dropped because the client stopped reading and its pending data passed the cap.',
    labelNames: ['transport'],
    registers: [this.registry],
  });

  private readonly upstreamAttempts = new Counter({
    name: 'llm_gateway_upstream_attempts_total',
    help: 'Upstream attempts (v1.2), by deployment and outcome: ok, lost (a hedge that lost), or the contract error code.',
    labelNames: ['deployment', 'outcome'],
    registers: [this.registry],
  });
  private readonly upstreamRoutes = new Counter({
    name: 'llm_gateway_upstream_routes_total',
    help: 'Streams that moved to another deployment (v1.2), by reason (fallback, hedge, continuation, handover) and the deployment they moved to.',
    labelNames: ['reason', 'deployment'],
    registers: [this.registry],
  });
  private readonly upstreamHedges = new Counter({
    name: 'llm_gateway_upstream_hedges_total',
    help: 'Hedged attempts (v1.2): started, won (gave the first token first), lost (aborted when another won).',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  private readonly upstreamCooldowns = new Counter({
    name: 'llm_gateway_upstream_cooldowns_total',
    help: 'Times a deployment was put aside after failures (v1.2).',
    labelNames: ['deployment'],
    registers: [this.registry],
  });
  private readonly wastedTokens = new Counter({
    name: 'llm_gateway_upstream_wasted_tokens_total',
    help: 'Content deltas that attempts which did not serve the answer consumed (hedge losers), by deployment (v1.2).',
    labelNames: ['deployment'],
    registers: [this.registry],
  });
  private readonly attemptChildren = new Map<string, Counter.Internal>();

  private readonly transportChildren = new Map<TransportName, TransportChildren>();
  private readonly providerChildren = new Map<string, ProviderChildren>();
  private readonly pendingSources = new Map<TransportName, () => number>();
  private readonly pendingBytes: Gauge<'transport'> = new Gauge({
    name: 'llm_gateway_pending_bytes',
    help: 'Bytes written to clients and not yet taken by the kernel (slow readers), summed per transport at scrape time.',
    labelNames: ['transport'],
    registers: [this.registry],
    collect: () => {
      for (const [transport, measure] of this.pendingSources) {
        this.pendingBytes.set({ transport }, measure());
      }
    },
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** A transport tells how to sum what its connections have pending; asked only when /metrics is scraped. */
  measurePendingBytes(transport: TransportName, measure: () => number): void {
    this.pendingSources.set(transport, measure);
  }

  streamStarted(transport: TransportName): void {
    this.byTransport(transport).activeStreams.inc();
  }

  streamEnded(outcome: StreamOutcome): void {
    const { transport, provider } = outcome;
    const perTransport = this.byTransport(transport);
    const perProvider = this.byTransportAndProvider(transport, provider);
    perTransport.activeStreams.dec();
    const result = outcome.errorCode ? 'error' : outcome.cancelled ? 'cancelled' : 'done';
    this.streams.inc({ transport, provider, outcome: result });
    perProvider.tokens.inc(outcome.tokens);
    if (outcome.reasoningTokens > 0) {
      perProvider.reasoningTokens.inc(outcome.reasoningTokens);
    }
    if (outcome.reasoningMs !== undefined) {
      perProvider.reasoningTime.observe(outcome.reasoningMs / 1000);
    }
    perProvider.duration.observe(outcome.durationMs / 1000);
    if (outcome.ttftMs !== undefined) {
      perProvider.ttft.observe(outcome.ttftMs / 1000);
    }
    if (outcome.errorCode) {
      this.upstreamErrors.inc({ code: outcome.errorCode, provider });
    }
    if (outcome.cancelled) {
      perTransport.cancellations.inc();
    }
  }

  connectionOpened(transport: TransportName): void {
    this.byTransport(transport).connections.inc();
  }

  connectionClosed(transport: TransportName): void {
    this.byTransport(transport).connections.dec();
  }

  resumed(transport: TransportName): void {
    this.byTransport(transport).resumes.inc();
  }

  slowClientDropped(transport: TransportName): void {
    this.byTransport(transport).droppedSlowClients.inc();
  }

  /** (v1.2) One upstream attempt ended; called once per attempt, so its children are kept like the others. */
  upstreamAttempt(deployment: string, outcome: string): void {
    const key = `${deployment} ${outcome}`;
    let child = this.attemptChildren.get(key);
    if (!child) {
      child = this.upstreamAttempts.labels(deployment, outcome);
      this.attemptChildren.set(key, child);
    }
    child.inc();
  }

  upstreamRouted(reason: string, deployment: string): void {
    this.upstreamRoutes.inc({ reason, deployment });
  }

  upstreamHedge(outcome: 'started' | 'won' | 'lost'): void {
    this.upstreamHedges.inc({ outcome });
  }

  upstreamCooldown(deployment: string): void {
    this.upstreamCooldowns.inc({ deployment });
  }

  upstreamWastedTokens(deployment: string, tokens: number): void {
    this.wastedTokens.inc({ deployment }, tokens);
  }

  /**
   * The labelled children of the per-transport metrics, made once per transport: every stream start and end
   * updates several, and a child skips the label validation each labelled call would repeat.
   */
  private byTransport(transport: TransportName): TransportChildren {
    let children = this.transportChildren.get(transport);
    if (!children) {
      children = {
        activeStreams: this.activeStreams.labels(transport),
        connections: this.connections.labels(transport),
        cancellations: this.cancellations.labels(transport),
        resumes: this.resumes.labels(transport),
        droppedSlowClients: this.droppedSlowClients.labels(transport),
      };
      this.transportChildren.set(transport, children);
    }
    return children;
  }

  /** The same for the metrics labelled by transport and provider (a handful of pairs per process). */
  private byTransportAndProvider(transport: TransportName, provider: string): ProviderChildren {
    const key = `${transport} ${provider}`;
    let children = this.providerChildren.get(key);
    if (!children) {
      children = {
        tokens: this.tokens.labels(transport, provider),
        reasoningTokens: this.reasoningTokens.labels(transport, provider),
        reasoningTime: this.reasoningTime.labels(transport, provider),
        ttft: this.ttft.labels(transport, provider),
        duration: this.duration.labels(transport, provider),
      };
      this.providerChildren.set(key, children);
    }
    return children;
  }
}
