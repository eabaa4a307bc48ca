import { type ProblemDetails, REFUSAL_STATUS, type RefusalCode } from '@app/contracts';

const TITLES: Record<RefusalCode, string> = {
  invalid_request: 'Invalid request',
  unauthorized: 'Unauthorized',
  forbidden: 'Forbidden',
  not_found: 'Not found',
  payload_too_large: 'Payload too large',
  unsupported_media_type: 'Unsupported media type',
  rate_limited: 'Too many requests',
  internal: 'Internal server error',
  shutting_down: 'Shutting down',
  unavailable: 'Service unavailable',
};

/** A refusal before streaming; the problem filter renders it as RFC 9457 problem+json. */
export class ProblemException extends Error {
  constructor(
    readonly code: RefusalCode,
    readonly detail: string,
    readonly extras: { errors?: ProblemDetails['errors']; retryAfterMs?: number } = {},
  ) {
    super(detail);
    this.name = 'ProblemException';
  }

  get status(): number {
    return REFUSAL_STATUS[this.code];
  }

  toProblem(instance?: string): ProblemDetails {
    return problemOf(this.code, this.detail, instance, this.extras.errors);
  }
}

export function problemOf(
  code: RefusalCode,
  detail: string,
  instance?: string,
  errors?: ProblemDetails['errors'],
): ProblemDetails {
  return {
    // The code is the problem type; a documented page per code beats a URL nobody serves.
    type: `urn:llm-stream-gateway:problem:${code}`,
    title: TITLES[code],
    status: REFUSAL_STATUS[code],
    code,
    detail,
    ...(instance ? { instance } : {}),
    ...(errors ? { errors } : {}),
  };
}
