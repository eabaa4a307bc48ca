/** SSE framing shared by the server and any client that wants to parse it by hand. */
export const SSE_CONTENT_TYPE = 'text/event-stream';
export const SSE_PING_COMMENT = ': ping\n\n';
export const SSE_PING_INTERVAL_MS = 15_000;
export const STREAM_ID_HEADER = 'X-Stream-Id';
/** Sent with the start response: lets a browser's EventSource (or a reloaded page) resume this one stream. */
export const RESUME_TOKEN_HEADER = 'X-Resume-Token';

export const HTTP_PATHS = {
  stream: '/api/completions/stream',
  resume: (streamId: string) => `/api/completions/${encodeURIComponent(streamId)}/stream`,
  cancel: (streamId: string) => `/api/completions/${encodeURIComponent(streamId)}`,
  time: '/api/time',
  info: '/api/info',
} as const;
