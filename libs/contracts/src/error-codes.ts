/** Codes that end a stream with an `error` event. */
export const STREAM_ERROR_CODES = [
  'upstream_rate_limited',
  'upstream_unavailable',
  'upstream_timeout',
  'upstream_rejected',
  'upstream_protocol',
  'shutting_down',
  /** (v1.1) The instance running the stream stopped before finishing it; retryable. */
  'stream_lost',
  'internal',
  /**
   * (v1.2) The upstream broke after content was delivered and no deployment could continue the answer; retryable.
   * The message names the original fault.
   */
  'upstream_interrupted',
] as const;
export type StreamErrorCode = (typeof STREAM_ERROR_CODES)[number];

/** Codes of a refusal before streaming: an HTTP status with problem+json, or a Socket.IO ack error. */
export const REFUSAL_STATUS = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal: 500,
  shutting_down: 503,
  /** (v1.1) A required dependency (Redis: the shared streams or limits) is unreachable; retryable. */
  unavailable: 503,
} as const;
export type RefusalCode = keyof typeof REFUSAL_STATUS;

/** RFC 9457 problem details, as the HTTP transport sends them with `application/problem+json`. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  code: RefusalCode;
  detail?: string;
  instance?: string;
  /** Where validation failed: a JSON path (`messages.0.role`) and what was wrong there. */
  errors?: { path: string; message: string }[];
}
