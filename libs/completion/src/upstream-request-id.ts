/** What an upstream's request id may look like to be relayed or logged: OpenAI's `req_…`, UUIDs, vLLM's, Azure's. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The upstream's `x-request-id` when it is a plausible id; undefined otherwise. It reaches the client (as
 * `x-upstream-request-id`) and the logs, so an upstream (or whatever sits between) cannot use it to write
 * kilobytes, control characters or markup into either.
 */
export function safeUpstreamRequestId(value: unknown): string | undefined {
  return typeof value === 'string' && SAFE_REQUEST_ID.test(value) ? value : undefined;
}
