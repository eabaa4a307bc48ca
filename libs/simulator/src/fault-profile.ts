import { z } from 'zod';
import { PROFILE_NAMES, type ProfileName } from './latency.profiles';

/**
 * How one named deployment of the simulator misbehaves. Every field is optional: `{}` is a healthy deployment.
 * The vocabulary follows what real upstreams do (README, "Deployments and fault profiles"); a test or the
 * upstream table names the fault, the simulator plays it, and the deployment's stats say what it saw.
 */

/** When a fault applies: the first N requests of the deployment, the first X ms after its first request, or both. */
const faultWindowShape = {
  /** Only the deployment's first N chat-completion requests (counted from 1, every request counts). */
  firstRequests: z.int().min(1).optional(),
  /** Only requests that arrive within X ms of the deployment's first request ("down 60 s, then healthy"). */
  firstMs: z.int().min(0).optional(),
};

const refuseSchema = z
  .strictObject({
    /** 400 needs a `code`; 429, 500 and 503 are the transient refusals a router retries elsewhere. */
    status: z.union([z.literal(400), z.literal(429), z.literal(500), z.literal(503)], {
      error: 'must be 400, 429, 500 or 503',
    }),
    /** For 400: `context_length_exceeded` (OpenAI's, param `messages`) or `content_filter` (Azure's). */
    code: z.enum(['context_length_exceeded', 'content_filter']).optional(),
    /** For 429: the wait the server suggests. Without it, a 429 carries no Retry-After at all. */
    retryAfterMs: z.int().min(0).optional(),
    /** Which headers carry `retryAfterMs`: `retry-after` (seconds, rounded up), `retry-after-ms`, or both. */
    retryAfterHeaders: z.enum(['both', 'retry-after', 'retry-after-ms']).default('both'),
    ...faultWindowShape,
  })
  .refine((refuse) => (refuse.status === 400) === (refuse.code !== undefined), {
    message: 'a 400 needs a code (context_length_exceeded or content_filter), and only a 400 takes one',
    path: ['code'],
  })
  .refine((refuse) => refuse.retryAfterMs === undefined || refuse.status === 429, {
    message: 'only a 429 takes retryAfterMs',
    path: ['retryAfterMs'],
  });

const beforeHeadersSchema = z.strictObject({
  /** `reset`: the socket is destroyed once the request is read; `silence`: accepted, never answered. */
  action: z.enum(['reset', 'silence']),
  ...faultWindowShape,
});

const firstTokenSchema = z.strictObject({
  /** Added to the latency profile's time to first token (before the first delta, thinking included). */
  delayMs: z.int().min(0).max(600_000),
  /** The share of requests that wait; drawn per request from the deployment's own seeded sequence. */
  probability: z.number().min(0).max(1).default(1),
});

const midStreamSchema = z
  .strictObject({
    /**
     * `cut`: the socket is destroyed; `stall`: nothing more, the connection stays open; `malformed`: a
     * `data: {not json` line, then the end; `end_without_done`: the response ends cleanly, without a
     * `finish_reason` and without `[DONE]`.
     */
    action: z.enum(['cut', 'stall', 'malformed', 'end_without_done']),
    /** After N content deltas (one token each, as `[sim tokens=N]` counts them). */
    afterTokens: z.int().min(0).optional(),
    /** After N UTF-8 bytes of content: the last delta is cut inside a token, at a character boundary. */
    afterBytes: z.int().min(0).optional(),
    ...faultWindowShape,
  })
  .refine((midStream) => (midStream.afterTokens === undefined) !== (midStream.afterBytes === undefined), {
    message: 'give exactly one of afterTokens and afterBytes',
    path: ['afterTokens'],
  });

const latencySchema = z.union(
  [
    z.enum(PROFILE_NAMES as [ProfileName, ...ProfileName[]]),
    z.strictObject({
      ttftMs: z.number().min(0).max(600_000),
      tokensPerSecond: z.number().min(0),
      jitter: z.number().min(0).max(1),
    }),
  ],
  { error: `must be one of ${PROFILE_NAMES.join(', ')}, or { ttftMs, tokensPerSecond, jitter }` },
);

export const faultProfileSchema = z.strictObject({
  /** The model the deployment names in its chunks and answers; default: the model the request asked for. */
  model: z.string().min(1).max(256).optional(),
  /** A profile name or `{ ttftMs, tokensPerSecond, jitter }`; default: the profile the requested model selects. */
  latency: latencySchema.optional(),
  /** Answer with an HTTP error instead of a completion. */
  refuse: refuseSchema.optional(),
  /** A 400 to any continuation (`continue_final_message` or `prefix`), as a server that cannot continue answers. */
  rejectPrefill: z.boolean().default(false),
  /** Misbehave before any response header: reset the connection, or never answer. */
  beforeHeaders: beforeHeadersSchema.optional(),
  /** A late first token: always, or for a share of requests (a heavy tail). */
  firstToken: firstTokenSchema.optional(),
  /** Break the stream (or the non-streamed body) after some content. */
  midStream: midStreamSchema.optional(),
  /** `false`: never reports usage, even when `stream_options.include_usage` asks (some servers do not). */
  usage: z.boolean().default(true),
});

/** A deployment's fault profile as written (defaults not yet applied): what the upstream table holds. */
export type FaultProfile = z.input<typeof faultProfileSchema>;
/** The same, validated, with its defaults. */
export type ParsedFaultProfile = z.output<typeof faultProfileSchema>;

export interface FaultWindow {
  firstRequests?: number;
  firstMs?: number;
}

/**
 * Whether a fault applies to a deployment's `ordinal`-th request (from 1), which arrived `elapsedMs` after its
 * first. Without a window, always; with both limits, while both hold.
 */
export function inFaultWindow(window: FaultWindow, ordinal: number, elapsedMs: number): boolean {
  if (window.firstRequests !== undefined && ordinal > window.firstRequests) return false;
  if (window.firstMs !== undefined && elapsedMs >= window.firstMs) return false;
  return true;
}

/** A deployment name as it appears in a URL path: letters, digits, `.`, `_`, `-`. */
export const DEPLOYMENT_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** One line naming the first bad field, as the configuration's errors do. */
export function describeProfileIssue(error: z.ZodError, prefix: string[] = []): string {
  const issue = error.issues[0];
  const path = [...prefix, ...issue.path.map(String)].join('.');
  return `${path === '' ? '(the profile)' : path}: ${issue.message}`;
}
