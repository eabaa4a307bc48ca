import { OpenAiCompatibleProvider } from '@app/completion';
import { type ContinuationMode, UPSTREAM_DEFAULTS, type UpstreamTableFile } from '@app/config';

/** How many recent first tokens a deployment keeps, for an adaptive hedge's p95. */
const TTFT_SAMPLES = 100;

/** One deployment as the router uses it: its settings, its OpenAI client, and what this process measured of it. */
export class Deployment {
  /** Streams this process has open on it now. */
  inFlight = 0;
  /** Recent times to first token (ms), oldest overwritten first. */
  readonly ttfts: number[] = [];
  private nextSample = 0;

  constructor(
    readonly name: string,
    readonly client: OpenAiCompatibleProvider,
    readonly settings: {
      continuation: ContinuationMode;
      cooldownMs: number;
      allowedFails: number;
      firstTokenTimeoutMs: number | undefined;
      idleTimeoutMs: number;
      maxConcurrent: number | undefined;
    },
  ) {}

  recordTtft(ms: number): void {
    this.ttfts[this.nextSample] = ms;
    this.nextSample = (this.nextSample + 1) % TTFT_SAMPLES;
  }

  get saturated(): boolean {
    return this.settings.maxConcurrent !== undefined && this.inFlight >= this.settings.maxConcurrent;
  }
}

export interface Target {
  deployment: Deployment;
  /** The deployment's own name for the model. */
  model: string;
  weight: number;
}

export interface Fallback {
  deployment: Deployment;
  model: string;
  on: readonly string[] | undefined;
}

/** A public model name and how it is served. */
export interface ModelRoute {
  name: string;
  targets: readonly Target[];
  fallbacks: readonly Fallback[];
  firstTokenTimeoutMs: number;
  hedgeAfterMs: number | 'adaptive' | undefined;
  maxAttempts: number;
  deadlineMs: number;
}

/** Where a deployment of the table is reached; `simulator` deployments get theirs from the built-in simulator. */
export interface Endpoint {
  baseUrl: string;
  headers?: Record<string, string>;
}

export interface TableOptions {
  /** Each deployment's key, read from the variable its `apiKeyEnv` names. */
  apiKeys: Readonly<Record<string, string>>;
  /** The first-token timeout of a model that sets none (UPSTREAM_FIRST_TOKEN_TIMEOUT_MS). */
  firstTokenTimeoutMs: number;
  /** The built-in simulator's endpoint for a deployment served by it. */
  simulatorEndpoint?: (deployment: string, profile: Record<string, unknown>) => Endpoint;
  /** For tests: what the OpenAI clients send with. */
  fetch?: typeof fetch;
}

/** The single deployment of a gateway without UPSTREAMS_FILE: today's OPENAI_* settings (or the simulator). */
export interface SingleUpstream {
  name: string;
  endpoint: Endpoint;
  apiKey?: string;
  defaultModel: string;
  continuation: ContinuationMode;
  /** Attempts per stream: OPENAI_MAX_RETRIES + 1. */
  maxAttempts: number;
  firstTokenTimeoutMs: number;
  idleTimeoutMs: number;
  fetch?: typeof fetch;
}

/**
 * The upstream table at run time: every deployment with its client, every public model with its route. Without a
 * file (`passthrough`), any model name goes to the one deployment under that name, as before v1.2.
 */
export class UpstreamTable {
  private constructor(
    readonly deployments: ReadonlyMap<string, Deployment>,
    private readonly models: ReadonlyMap<string, ModelRoute>,
    readonly defaultModel: string,
    private readonly passthrough: ModelRoute | undefined,
  ) {}

  static fromFile(file: UpstreamTableFile, options: TableOptions): UpstreamTable {
    const deployments = new Map<string, Deployment>();
    for (const [name, spec] of Object.entries(file.deployments)) {
      const endpoint: Endpoint =
        spec.baseUrl !== undefined
          ? { baseUrl: spec.baseUrl }
          : simulatorEndpoint(options, name, spec.simulator ?? {});
      const client = new OpenAiCompatibleProvider({
        name,
        baseURL: endpoint.baseUrl,
        apiKey: options.apiKeys[name],
        // The router makes every retry itself, where it can choose another deployment and honour the deadline.
        maxRetries: 0,
        headers: endpoint.headers,
        headersTimeoutMs: spec.headersTimeoutMs,
        fetch: options.fetch,
      });
      deployments.set(
        name,
        new Deployment(name, client, {
          continuation: spec.continuation,
          cooldownMs: spec.cooldownMs,
          allowedFails: spec.allowedFails,
          firstTokenTimeoutMs: spec.firstTokenTimeoutMs,
          idleTimeoutMs: spec.idleTimeoutMs,
          maxConcurrent: spec.maxConcurrent,
        }),
      );
    }
    const deployment = (name: string) => deployments.get(name) as Deployment;
    const models = new Map<string, ModelRoute>();
    for (const [name, spec] of Object.entries(file.models)) {
      models.set(name, {
        name,
        targets: spec.targets.map((target) => ({ ...target, deployment: deployment(target.deployment) })),
        fallbacks: spec.fallbacks.map((fallback) => ({
          deployment: deployment(fallback.deployment),
          model: fallback.model,
          on: fallback.on,
        })),
        firstTokenTimeoutMs: spec.firstTokenTimeoutMs ?? options.firstTokenTimeoutMs,
        hedgeAfterMs: spec.hedgeAfterMs,
        maxAttempts: spec.maxAttempts,
        deadlineMs: spec.deadlineMs,
      });
    }
    const defaultModel = file.defaultModel ?? (models.keys().next().value as string);
    return new UpstreamTable(deployments, models, defaultModel, undefined);
  }

  static single(upstream: SingleUpstream): UpstreamTable {
    const client = new OpenAiCompatibleProvider({
      name: upstream.name,
      baseURL: upstream.endpoint.baseUrl,
      apiKey: upstream.apiKey,
      maxRetries: 0,
      headers: upstream.endpoint.headers,
      headersTimeoutMs: UPSTREAM_DEFAULTS.headersTimeoutMs,
      fetch: upstream.fetch,
    });
    const deployment = new Deployment(upstream.name, client, {
      continuation: upstream.continuation,
      cooldownMs: UPSTREAM_DEFAULTS.cooldownMs,
      allowedFails: UPSTREAM_DEFAULTS.allowedFails,
      firstTokenTimeoutMs: undefined,
      idleTimeoutMs: upstream.idleTimeoutMs,
      maxConcurrent: undefined,
    });
    const template: ModelRoute = {
      name: upstream.defaultModel,
      targets: [{ deployment, model: upstream.defaultModel, weight: 1 }],
      fallbacks: [],
      firstTokenTimeoutMs: upstream.firstTokenTimeoutMs,
      hedgeAfterMs: undefined,
      maxAttempts: upstream.maxAttempts,
      deadlineMs: Math.max(UPSTREAM_DEFAULTS.deadlineMs, upstream.firstTokenTimeoutMs),
    };
    return new UpstreamTable(
      new Map([[upstream.name, deployment]]),
      new Map(),
      upstream.defaultModel,
      template,
    );
  }

  /** The route of a public model name (the default when absent); undefined when the table names no such model. */
  resolve(model: string | undefined): ModelRoute | undefined {
    const name = model ?? this.defaultModel;
    if (this.passthrough !== undefined) {
      if (name === this.passthrough.name) {
        return this.passthrough;
      }
      const [target] = this.passthrough.targets;
      return { ...this.passthrough, name, targets: [{ ...target, model: name }] };
    }
    return this.models.get(name);
  }

  /** The public model names, for `GET /v1/models` and `/api/info`; empty without a table (any name goes). */
  get publicModels(): string[] {
    return [...this.models.keys()];
  }

  /** The longest time any model allows to its first token, every attempt included. */
  get longestDeadlineMs(): number {
    const routes = this.passthrough === undefined ? [...this.models.values()] : [this.passthrough];
    return Math.max(...routes.map((route) => route.deadlineMs));
  }

  get hasTable(): boolean {
    return this.passthrough === undefined;
  }
}

function simulatorEndpoint(options: TableOptions, name: string, profile: Record<string, unknown>): Endpoint {
  if (options.simulatorEndpoint === undefined) {
    throw new Error(`deployment ${name} is served by the simulator, which is not running`);
  }
  return options.simulatorEndpoint(name, profile);
}
