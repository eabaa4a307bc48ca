import { resolve } from 'node:path';
import proxyAddr from 'proxy-addr';
import { z } from 'zod';
import { type AppConfig, envSchema } from './app-config.schema';
import { loadUpstreamTable, UpstreamTableError } from './upstream-table';

export const DEFAULT_OPENAI_MODEL = 'gpt-4o-mini';
/** The simulator's own default model name (it uses the configured latency profile). */
export const SIMULATOR_DEFAULT_MODEL = 'simulator';

const MIN_HS256_SECRET_BYTES = 32;

/** A configuration that cannot start the server; `message` is one line naming the variable. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    reason: string,
  ) {
    super(`Invalid configuration: ${variable}: ${reason}`);
    this.name = 'ConfigError';
  }
}

/**
 * Validates the environment and derives the typed configuration. Values are never echoed back in
 * the error: a mistyped variable may hold a secret.
 */
export function loadConfig(env: Record<string, string | undefined>): AppConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const [issue] = parsed.error.issues;
    throw new ConfigError(String(issue.path[0] ?? 'environment'), describe(issue));
  }
  const values = parsed.data;
  const openaiConfigured = values.OPENAI_API_KEY !== undefined || values.OPENAI_BASE_URL !== undefined;
  const provider = values.LLM_PROVIDER ?? (openaiConfigured ? 'openai' : 'simulator');
  if (provider === 'openai' && !openaiConfigured) {
    throw new ConfigError('OPENAI_API_KEY', 'LLM_PROVIDER=openai needs OPENAI_API_KEY or OPENAI_BASE_URL');
  }
  if (values.NODE_ENV === 'production' && values.AUTH_MODE === 'none' && !values.AUTH_ALLOW_ANONYMOUS) {
    throw new ConfigError(
      'AUTH_MODE',
      'none is refused with NODE_ENV=production; choose api-key or jwt, or set AUTH_ALLOW_ANONYMOUS=true',
    );
  }
  if (values.HTTP_HEADERS_TIMEOUT_MS > values.HTTP_REQUEST_TIMEOUT_MS) {
    throw new ConfigError('HTTP_HEADERS_TIMEOUT_MS', 'must be at most HTTP_REQUEST_TIMEOUT_MS');
  }
  if (values.AUTH_MODE === 'api-key' && list(values.AUTH_API_KEYS).length === 0) {
    throw new ConfigError('AUTH_API_KEYS', 'AUTH_MODE=api-key needs at least one key');
  }
  if (values.AUTH_MODE === 'jwt' && !values.AUTH_JWT_SECRET && !values.AUTH_JWKS_URL) {
    throw new ConfigError('AUTH_JWT_SECRET', 'AUTH_MODE=jwt needs AUTH_JWT_SECRET or AUTH_JWKS_URL');
  }
  if (
    values.NODE_ENV === 'production' &&
    values.AUTH_JWT_SECRET !== undefined &&
    Buffer.byteLength(values.AUTH_JWT_SECRET, 'utf8') < MIN_HS256_SECRET_BYTES
  ) {
    // RFC 7518 3.2: an HS256 key must be at least as long as the hash; a short one can be brute-forced offline.
    throw new ConfigError(
      'AUTH_JWT_SECRET',
      `must be at least ${MIN_HS256_SECRET_BYTES} bytes with NODE_ENV=production`,
    );
  }
  const upstreams = values.UPSTREAMS_FILE === undefined ? undefined : upstreamsOf(values.UPSTREAMS_FILE, env);
  const defaultModel =
    upstreams === undefined
      ? (values.OPENAI_MODEL ?? (provider === 'simulator' ? SIMULATOR_DEFAULT_MODEL : DEFAULT_OPENAI_MODEL))
      : (upstreams.table.defaultModel ?? Object.keys(upstreams.table.models)[0]);
  const allowedModels = values.ALLOWED_MODELS === undefined ? undefined : list(values.ALLOWED_MODELS);
  if (allowedModels !== undefined && !allowedModels.includes(defaultModel)) {
    throw new ConfigError(
      'ALLOWED_MODELS',
      "must include the default model (OPENAI_MODEL, or the upstream table's defaultModel), which requests naming no model get",
    );
  }
  if (values.REDIS_URL !== undefined) {
    checkRedisUrl(values.REDIS_URL);
  }
  return {
    ...(upstreams === undefined ? {} : { upstreams }),
    nodeEnv: values.NODE_ENV,
    port: values.PORT,
    host: values.HOST,
    provider,
    openai: {
      apiKey: values.OPENAI_API_KEY,
      baseURL: values.OPENAI_BASE_URL,
      model: defaultModel,
      maxRetries: values.OPENAI_MAX_RETRIES,
    },
    upstream: {
      firstTokenTimeoutMs: values.UPSTREAM_FIRST_TOKEN_TIMEOUT_MS,
      idleTimeoutMs: values.UPSTREAM_IDLE_TIMEOUT_MS,
      extractThinkTags: values.UPSTREAM_EXTRACT_THINK_TAGS,
    },
    simulator: { profile: values.SIMULATOR_PROFILE },
    streams: {
      resumeGraceMs: values.STREAM_RESUME_GRACE_MS,
      retentionMs: values.STREAM_RETENTION_MS,
      shutdownGraceMs: values.SHUTDOWN_GRACE_MS,
    },
    logLevel: values.LOG_LEVEL,
    http: {
      requestTimeoutMs: values.HTTP_REQUEST_TIMEOUT_MS,
      headersTimeoutMs: values.HTTP_HEADERS_TIMEOUT_MS,
    },
    webRoot: resolve(values.WEB_ROOT ?? 'dist/web/browser'),
    auth: {
      mode: values.AUTH_MODE,
      apiKeys: list(values.AUTH_API_KEYS),
      jwt: {
        secret: values.AUTH_JWT_SECRET,
        jwksUrl: values.AUTH_JWKS_URL,
        issuer: values.AUTH_JWT_ISSUER,
        audience: values.AUTH_JWT_AUDIENCE,
        clockToleranceSec: values.AUTH_JWT_CLOCK_TOLERANCE_SEC,
        requireExp: values.AUTH_JWT_REQUIRE_EXP,
        jwksCooldownMs: values.AUTH_JWKS_COOLDOWN_MS,
      },
      resumeTokenSecret: values.AUTH_RESUME_SECRET,
      allowedModels,
      anonymousIpv6PrefixLength: values.ANONYMOUS_IPV6_PREFIX_LENGTH,
    },
    corsOrigins: list(values.CORS_ORIGINS),
    trustProxy: trustProxyOf(values.TRUST_PROXY),
    allowedHosts: allowedHostsOf(values.ALLOWED_HOSTS, values.HOST),
    limits: {
      requestsPerMinute: values.RATE_LIMIT_PER_MINUTE,
      maxConcurrentStreams: values.RATE_LIMIT_CONCURRENT_STREAMS,
      maxListenersPerStream: values.RATE_LIMIT_LISTENERS_PER_STREAM,
      maxListenersPerPrincipal: values.RATE_LIMIT_LISTENERS_PER_PRINCIPAL,
      maxSocketConnectionsPerAddress: values.SOCKET_MAX_CONNECTIONS_PER_ADDRESS,
    },
    openaiCompat: {
      maxResponseBytes: values.V1_MAX_RESPONSE_BYTES,
      writeStallTimeoutMs: values.V1_WRITE_STALL_TIMEOUT_MS,
      modelsCacheMs: values.V1_MODELS_CACHE_MS,
    },
    redisUrl: values.REDIS_URL,
  };
}

/** The table, or one line naming the file's bad field (`UPSTREAMS_FILE: models.chat.targets.0.deployment: …`). */
function upstreamsOf(
  path: string,
  env: Record<string, string | undefined>,
): NonNullable<AppConfig['upstreams']> {
  try {
    const table = loadUpstreamTable(resolve(path), env);
    const apiKeys: Record<string, string> = {};
    for (const [name, deployment] of Object.entries(table.deployments)) {
      if (deployment.apiKeyEnv !== undefined) {
        apiKeys[name] = env[deployment.apiKeyEnv] as string;
      }
    }
    return { table, apiKeys };
  } catch (error) {
    if (error instanceof UpstreamTableError) {
      throw new ConfigError('UPSTREAMS_FILE', error.message);
    }
    throw error;
  }
}

/**
 * What node-redis would otherwise refuse only once the server is half started, with a stack trace: a database
 * path that is not a number, a port that is not one. The URL itself is never quoted: it may hold a password.
 */
function checkRedisUrl(value: string): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError('REDIS_URL', 'must be a valid redis:// or rediss:// URL');
  }
  if (url.hostname === '') {
    throw new ConfigError('REDIS_URL', 'must name a host');
  }
  if (!/^(\/(\d{1,9})?)?$/.test(url.pathname)) {
    throw new ConfigError(
      'REDIS_URL',
      'the path must be empty or a database number, as in redis://host:6379/0',
    );
  }
}

/** What a browser on this machine calls a server listening on loopback. */
export const LOOPBACK_HOST_NAMES = ['localhost', '127.0.0.1', '[::1]'];

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
}

function allowedHostsOf(value: string | undefined, listenHost: string): string[] | undefined {
  if (value === undefined) {
    return isLoopback(listenHost) ? LOOPBACK_HOST_NAMES : undefined;
  }
  const entries = list(value);
  if (
    entries.length === 0 ||
    entries.some((entry) => !/^(\*|\[[0-9a-f:.]+\](:\d+)?|[^\s/@[\]]+)$/i.test(entry))
  ) {
    throw new ConfigError(
      'ALLOWED_HOSTS',
      'must be a comma-separated list of host names (with an optional :port), or *',
    );
  }
  return entries.includes('*') ? undefined : entries;
}

const TRUST_PROXY_HELP =
  'must be true, false, a hop count, or a comma-separated list of loopback, linklocal, uniquelocal, addresses and CIDRs';

/** Parsed as Express parses a `trust proxy` string, and checked now rather than on the first request. */
function trustProxyOf(value: string | undefined): boolean | number | string[] {
  if (value === undefined || value === 'false') {
    return false;
  }
  if (value === 'true') {
    return true;
  }
  if (/^\d+$/.test(value)) {
    return Number(value);
  }
  const entries = list(value);
  try {
    proxyAddr.compile(entries);
  } catch {
    throw new ConfigError('TRUST_PROXY', TRUST_PROXY_HELP);
  }
  if (entries.length === 0) {
    throw new ConfigError('TRUST_PROXY', TRUST_PROXY_HELP);
  }
  return entries;
}

function list(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

function describe(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_value':
      return `must be one of ${issue.values.map(String).join(', ')}`;
    case 'too_small':
      return `must be at least ${String(issue.minimum)}`;
    case 'too_big':
      return `must be at most ${String(issue.maximum)}`;
    case 'invalid_type':
      return `must be a ${issue.expected}`;
    case 'invalid_format':
      return `must be a valid ${issue.format}`;
    default:
      return issue.message;
  }
}
