import type { StreamError, StreamErrorCode, UpstreamRefusal } from '@app/contracts';

const RETRYABLE: Record<StreamErrorCode, boolean> = {
  upstream_rate_limited: true,
  upstream_unavailable: true,
  upstream_timeout: true,
  upstream_rejected: false,
  upstream_protocol: false,
  shutting_down: true,
  stream_lost: true,
  internal: false,
  upstream_interrupted: true,
};

/**
 * What a provider throws when the upstream fails. Its message is shown to end users, so a provider
 * must build it from facts it controls, never from raw upstream text that may echo credentials.
 */
export class UpstreamError extends Error {
  constructor(
    readonly code: StreamErrorCode,
    message: string,
    readonly retryAfterMs?: number,
    /** The upstream's HTTP status when it refused the request; the /v1 surface answers with a matching one. */
    readonly status?: number,
    /** (v1.2) The upstream's own code, type and param of a refusal, allow-listed (see `upstreamRefusal`). */
    readonly upstream?: UpstreamRefusal,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }

  get retryable(): boolean {
    return RETRYABLE[this.code];
  }

  toStreamError(): StreamError {
    const error: StreamError = { code: this.code, message: this.message, retryable: this.retryable };
    if (this.retryAfterMs !== undefined) {
      error.retryAfterMs = this.retryAfterMs;
    }
    if (this.upstream !== undefined) {
      error.upstream = this.upstream;
    }
    return error;
  }
}

/**
 * The codes and types of refusals that OpenAI, Azure OpenAI and the OpenAI-compatible servers send, which a client
 * may act on. Anything else is left out: an allow-list, because an upstream's error fields are its own text.
 */
const KNOWN_UPSTREAM_CODES = new Set([
  'context_length_exceeded',
  'content_filter',
  'content_policy_violation',
  'invalid_prompt',
  'model_not_found',
  'invalid_api_key',
  'insufficient_quota',
  'rate_limit_exceeded',
  'string_above_max_length',
  'unsupported_parameter',
  'unsupported_value',
  'invalid_value',
  'invalid_type',
  'missing_required_parameter',
  'unknown_parameter',
  'integer_below_min_value',
  'integer_above_max_value',
  'invalid_request_error',
]);
const KNOWN_UPSTREAM_TYPES = new Set([
  'invalid_request_error',
  'authentication_error',
  'permission_error',
  'not_found_error',
  'rate_limit_error',
  'server_error',
  'insufficient_quota',
  'tokens',
  'requests',
  'BadRequestError',
]);
/** A request field's path (`messages`, `messages[0].content`): never free text. */
const PARAM_PATTERN = /^[A-Za-z_][\w.[\]]{0,63}$/;

/** What of an upstream's error object may reach a client: known codes and types, a param that is a field path. */
export function upstreamRefusal(error: unknown): UpstreamRefusal | undefined {
  if (typeof error !== 'object' || error === null) {
    return undefined;
  }
  const { code, type, param } = error as Record<string, unknown>;
  const refusal: UpstreamRefusal = {};
  if (typeof code === 'string' && KNOWN_UPSTREAM_CODES.has(code)) {
    refusal.code = code;
  }
  if (typeof type === 'string' && KNOWN_UPSTREAM_TYPES.has(type)) {
    refusal.type = type;
  }
  if (typeof param === 'string' && PARAM_PATTERN.test(param)) {
    refusal.param = param;
  }
  return Object.keys(refusal).length > 0 ? refusal : undefined;
}
