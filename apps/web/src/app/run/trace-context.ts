/**
 * The W3C `traceparent` a run sends, so that its trace on the server (and in the operator's tracing backend) can
 * be found from the run's details. The trace id is the lane's stream id (both are 32 random hex digits here), so
 * a resume, even after a page reload, names the same trace without keeping anything more; the parent span id is
 * new for each request, as each is a client span of its own. Sampled, so the gateway records it.
 */
export function traceparentOf(streamId: string): Record<string, string> {
  if (!/^[0-9a-f]{32}$/.test(streamId)) return {};
  const spanId = Array.from(crypto.getRandomValues(new Uint8Array(8)), (byte) =>
    byte.toString(16).padStart(2, '0'),
  ).join('');
  return { traceparent: `00-${streamId}-${spanId}-01` };
}
