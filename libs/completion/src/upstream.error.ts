import type { StreamError, StreamErrorCode } from '@app/contracts';

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
  ) {
    super(message);
    this.name = 'UpstreamError';
  }

  get retryable(): boolean {
    return RETRYABLE[this.code];
  }

  toStreamError(): StreamError {
    return this.retryAfterMs === undefined
      ? { code: this.code, message: this.message, retryable: this.retryable }
      : {
          code: this.code,
          message: this.message,
          retryable: this.retryable,
          retryAfterMs: this.retryAfterMs,
        };
  }
}
