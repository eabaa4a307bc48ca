import { z } from 'zod';
import type { UpstreamTableFile } from './upstream-table';

const port = z.coerce.number().int().min(0).max(65535);
const milliseconds = z.coerce
  .number()
  .int()
  .min(0)
  .max(24 * 60 * 60 * 1000);
const optionalText = z
  .string()
  .trim()
  .transform((value) => value || undefined)
  .optional();

export const LLM_PROVIDERS = ['openai', 'simulator'] as const;
export const SIMULATOR_PROFILES = ['instant', 'fast', 'realistic', 'slow'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Every environment variable the server reads, validated once at start. Names and defaults are the
 * public contract's (shared/CONTRACT.md, "Configuration"); the rest are documented in docs/configuration.md.
 */
export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: port.default(3000),
  HOST: z.string().trim().min(1).default('127.0.0.1'),
  LLM_PROVIDER: z.enum(LLM_PROVIDERS).optional(),
  OPENAI_API_KEY: optionalText,
  OPENAI_BASE_URL: z.url({ protocol: /^https?$/ }).optional(),
  OPENAI_MODEL: optionalText,
  OPENAI_MAX_RETRIES: z.coerce.number().int().min(0).max(10).default(1),
  UPSTREAMS_FILE: optionalText,
  UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: milliseconds.min(1).default(15_000),
  UPSTREAM_IDLE_TIMEOUT_MS: milliseconds.min(1).default(30_000),
  UPSTREAM_EXTRACT_THINK_TAGS: z.stringbool().default(false),
  SIMULATOR_PROFILE: z.enum(SIMULATOR_PROFILES).default('realistic'),
  STREAM_RESUME_GRACE_MS: milliseconds.default(5000),
  STREAM_RETENTION_MS: milliseconds.default(60_000),
  SHUTDOWN_GRACE_MS: milliseconds.default(10_000),
  HTTP_REQUEST_TIMEOUT_MS: milliseconds.min(1000).default(30_000),
  HTTP_HEADERS_TIMEOUT_MS: milliseconds.min(1000).default(10_000),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  WEB_ROOT: optionalText,
  AUTH_MODE: z
    .string()
    .trim()
    .regex(/^[a-z][a-z0-9-]{0,63}$/, 'must be none, api-key, jwt or the name of a registered strategy')
    .default('none'),
  AUTH_ALLOW_ANONYMOUS: z.stringbool().default(false),
  AUTH_API_KEYS: optionalText,
  AUTH_JWT_SECRET: optionalText,
  AUTH_JWKS_URL: z.url({ protocol: /^https?$/ }).optional(),
  AUTH_JWT_ISSUER: optionalText,
  AUTH_JWT_AUDIENCE: optionalText,
  AUTH_JWT_CLOCK_TOLERANCE_SEC: z.coerce.number().int().min(0).max(300).default(30),
  AUTH_JWT_REQUIRE_EXP: z.stringbool().default(true),
  AUTH_JWKS_COOLDOWN_MS: milliseconds.default(30_000),
  AUTH_RESUME_SECRET: optionalText,
  CORS_ORIGINS: optionalText,
  TRUST_PROXY: optionalText,
  ALLOWED_HOSTS: optionalText,
  REDIS_URL: z.preprocess(
    (value) => (value === '' ? undefined : value),
    z.url({ protocol: /^rediss?$/ }).optional(),
  ),
  RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).max(1_000_000).default(120),
  RATE_LIMIT_CONCURRENT_STREAMS: z.coerce.number().int().min(1).max(1_000_000).default(20),
  RATE_LIMIT_LISTENERS_PER_STREAM: z.coerce.number().int().min(1).max(1_000_000).default(4),
  RATE_LIMIT_LISTENERS_PER_PRINCIPAL: z.coerce.number().int().min(1).max(1_000_000).default(40),
  SOCKET_MAX_CONNECTIONS_PER_ADDRESS: z.coerce.number().int().min(1).max(1_000_000).default(100),
  ANONYMOUS_IPV6_PREFIX_LENGTH: z.coerce.number().int().min(1).max(128).default(64),
  ALLOWED_MODELS: optionalText,
  V1_MAX_RESPONSE_BYTES: z.coerce
    .number()
    .int()
    .min(64 * 1024)
    .max(1024 * 1024 * 1024)
    .default(8 * 1024 * 1024),
  V1_WRITE_STALL_TIMEOUT_MS: milliseconds.min(100).default(30_000),
  V1_MODELS_CACHE_MS: milliseconds.default(60_000),
});

export type Env = z.infer<typeof envSchema>;

export interface AppConfig {
  nodeEnv: Env['NODE_ENV'];
  port: number;
  host: string;
  provider: (typeof LLM_PROVIDERS)[number];
  openai: {
    apiKey?: string;
    baseURL?: string;
    model: string;
    maxRetries: number;
  };
  /**
   * (v1.2) The upstream table of UPSTREAMS_FILE, validated, with each deployment's key read from the variable its
   * `apiKeyEnv` names (keys never stay in the table); absent: the OPENAI_* settings are a table of one deployment.
   */
  upstreams?: { table: UpstreamTableFile; apiKeys: Record<string, string> };
  upstream: {
    /** Per attempt, when the table (or the single deployment) sets none. */
    firstTokenTimeoutMs: number;
    idleTimeoutMs: number;
    /** A `<think>…</think>` block opening the content becomes reasoning events. */
    extractThinkTags: boolean;
  };
  simulator: { profile: (typeof SIMULATOR_PROFILES)[number] };
  streams: { resumeGraceMs: number; retentionMs: number; shutdownGraceMs: number };
  logLevel: Env['LOG_LEVEL'];
  /**
   * How long a client may take to send a whole request (`requestTimeout`), and its headers
   * (`headersTimeout`), before the server answers 408 and closes the connection. Responses (streams) are
   * not bounded by them.
   */
  http: { requestTimeoutMs: number; headersTimeoutMs: number };
  /** The built Angular client served at `/`. */
  webRoot: string;
  auth: {
    mode: string;
    apiKeys: string[];
    jwt: {
      secret?: string;
      jwksUrl?: string;
      issuer?: string;
      audience?: string;
      /** Skew allowed on `exp` and `nbf`, at verification and on every later expiry check alike. */
      clockToleranceSec: number;
      /** Refuse tokens without `exp` (`AUTH_JWT_REQUIRE_EXP`, default true). */
      requireExp: boolean;
      /** Least time between two JWKS fetches; an unknown `kid` refetches once it has passed. */
      jwksCooldownMs: number;
    };
    /** Signs resume tokens; random per process when unset (set it when several instances serve one stream). */
    resumeTokenSecret?: string;
    /** `ALLOWED_MODELS`: the only models any principal may ask for, on every surface; undefined: any. */
    allowedModels?: string[];
    /** Anonymous clients on IPv6 share limits per network of this prefix length (a /64 is one subscriber's). */
    anonymousIpv6PrefixLength: number;
  };
  /** Origins allowed cross-origin, for HTTP and Socket.IO alike; empty means same origin only. */
  corsOrigins: string[];
  /**
   * `TRUST_PROXY`, with Express's `trust proxy` semantics: `false` (the default: the peer is the client),
   * `true` (every hop), a hop count, or names (`loopback`, `linklocal`, `uniquelocal`), addresses and CIDRs.
   */
  trustProxy: boolean | number | string[];
  /**
   * `Host` values served (DNS-rebinding protection); undefined: any. Default: the loopback names while
   * listening on a loopback address, else any (a public name cannot be guessed: set ALLOWED_HOSTS).
   */
  allowedHosts: string[] | undefined;
  limits: {
    requestsPerMinute: number;
    maxConcurrentStreams: number;
    maxListenersPerStream: number;
    maxListenersPerPrincipal: number;
    /** Socket.IO (Engine.IO) connections one client address may hold open. */
    maxSocketConnectionsPerAddress: number;
  };
  /** The `/v1` relay's own bounds (docs/configuration.md). */
  openaiCompat: {
    /** Largest non-streamed answer relayed; a larger one is a 502. */
    maxResponseBytes: number;
    /** How long a client may leave written data unread before it is dropped and its upstream request aborted. */
    writeStallTimeoutMs: number;
    /** How long the upstream's model list is served from memory; 0 asks the upstream every time. */
    modelsCacheMs: number;
  };
  /** Shared by every instance of one deployment: streams, ownership, grace and limits; unset, all in memory. */
  redisUrl?: string;
}
