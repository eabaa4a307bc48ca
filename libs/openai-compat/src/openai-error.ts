import type { UpstreamError } from '@app/completion';
import { REFUSAL_STATUS, type RefusalCode, type StreamErrorCode } from '@app/contracts';

/** OpenAI's error body: every OpenAI SDK reads it and raises its typed error from the status. */
export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}

const TYPE_BY_REFUSAL: Record<RefusalCode, string> = {
  invalid_request: 'invalid_request_error',
  unauthorized: 'authentication_error',
  forbidden: 'permission_error',
  not_found: 'not_found_error',
  payload_too_large: 'invalid_request_error',
  unsupported_media_type: 'invalid_request_error',
  rate_limited: 'rate_limit_error',
  internal: 'server_error',
  shutting_down: 'server_error',
  unavailable: 'server_error',
};

/**
 * A refusal or an upstream failure on the `/v1` surface, as OpenAI would send it: the status an SDK maps to its
 * typed error (`AuthenticationError`, `RateLimitError`, `BadRequestError`…), OpenAI's body with the gateway's code,
 * and `retry-after` when a wait is known. Messages are the gateway's own, never an upstream's text.
 */
export class OpenAiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly code: RefusalCode | StreamErrorCode,
    message: string,
    readonly retryAfterMs?: number,
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = 'OpenAiError';
  }

  static refusal(code: RefusalCode, message: string, retryAfterMs?: number, param?: string): OpenAiError {
    return new OpenAiError(REFUSAL_STATUS[code], TYPE_BY_REFUSAL[code], code, message, retryAfterMs, param);
  }

  /**
   * The upstream's refusal keeps its status where the client can act on it (400, 404, 422, 429); a refusal of
   * the gateway's own credentials (401/403) is the gateway's problem, not the client's, so it is a 502 like the
   * other upstream failures, and a timeout a 504.
   */
  static fromUpstream(error: UpstreamError): OpenAiError {
    switch (error.code) {
      case 'upstream_rate_limited':
        return new OpenAiError(429, 'rate_limit_error', error.code, error.message, error.retryAfterMs);
      case 'upstream_rejected': {
        const status = error.status === 404 || error.status === 422 ? error.status : 400;
        const clientsFault = error.status !== 401 && error.status !== 403;
        if (!clientsFault) {
          return new OpenAiError(502, 'upstream_error', error.code, error.message);
        }
        // (v1.2) The upstream's own code, type and param, as OpenAI clients expect them (`context_length_exceeded`,
        // `content_filter`); the message stays the gateway's.
        const { upstream } = error;
        return new OpenAiError(
          status,
          upstream?.type ?? (status === 404 ? 'not_found_error' : 'invalid_request_error'),
          (upstream?.code as StreamErrorCode | undefined) ?? error.code,
          error.message,
          undefined,
          upstream?.param ?? null,
        );
      }
      case 'upstream_timeout':
        return new OpenAiError(504, 'upstream_error', error.code, error.message);
      case 'shutting_down':
        return new OpenAiError(503, 'server_error', error.code, error.message, error.retryAfterMs ?? 1000);
      case 'internal':
        return new OpenAiError(500, 'server_error', error.code, error.message);
      default:
        return new OpenAiError(502, 'upstream_error', error.code, error.message, error.retryAfterMs);
    }
  }

  get body(): OpenAiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  /** `retry-after` in seconds (rounded up) and OpenAI's own `retry-after-ms`, which its SDKs prefer. */
  get headers(): Record<string, string> {
    return this.retryAfterMs === undefined
      ? {}
      : {
          'retry-after': String(Math.max(1, Math.ceil(this.retryAfterMs / 1000))),
          'retry-after-ms': String(Math.round(this.retryAfterMs)),
        };
  }
}

/** An error in a stream that has begun: OpenAI's way of giving up mid-answer, which its SDKs raise as `APIError`. */
export function streamedError(error: OpenAiError): string {
  return `data: ${JSON.stringify(error.body)}\n\n`;
}
