import { Injectable, inject } from '@angular/core';
import {
  type CompletionEvent,
  type CompletionRequest,
  HTTP_PATHS,
  isTerminalEvent,
  RESUME_TOKEN_HEADER,
  SSE_CONTENT_TYPE,
  STREAM_ID_HEADER,
} from '@app/contracts';
import { createParser } from 'eventsource-parser';
import { Observable } from 'rxjs';
import { ServerApi } from '../server/server-api';
import type { CompletionTransport, ResumeTarget, StreamHooks } from './completion-transport';
import { fromResourceTiming, type ResourceTimingWatch, watchResourceTiming } from './connection-info';
import { TransportError } from './transport-error';
import { traceparentOf } from '../run/trace-context';

const RESUME_ATTEMPTS = 3;
const RESUME_BACKOFF_MS = 250;
/**
 * After the terminal event the server ends the response; the body is read to its end (so that the browser
 * files the request's Resource Timing, and an HTTP/1.1 connection goes back to the pool whole). A response
 * still open this long after it is aborted.
 */
const BODY_END_GRACE_MS = 2000;
/** How long after the body ended the browser may take to report the request's timing. */
const TIMING_GRACE_MS = 1000;

export interface SseDependencies {
  fetch: typeof fetch;
  headers: (extra: Record<string, string>) => Record<string, string>;
}

/**
 * Completions over Server-Sent Events: a `fetch` POST (EventSource cannot POST) read as a stream and parsed by
 * eventsource-parser. A connection that drops before the terminal event is resumed with `Last-Event-ID`; a
 * stream started before a page reload is read from `GET /api/completions/:streamId/stream` the same way.
 */
@Injectable({ providedIn: 'root' })
export class SseTransport implements CompletionTransport {
  readonly name = 'sse';
  private readonly api = inject(ServerApi);
  private readonly dependencies: SseDependencies = {
    fetch: (input, init) => fetch(input, init),
    headers: (extra) => this.api.headers(extra),
  };

  stream(
    request: CompletionRequest & { streamId: string },
    hooks?: StreamHooks,
  ): Observable<CompletionEvent> {
    return sseCompletionStream(request, this.dependencies, hooks);
  }

  resume(target: ResumeTarget): Observable<CompletionEvent> {
    return sseResumedStream(target, this.dependencies);
  }

  async cancel(streamId: string): Promise<void> {
    const response = await this.dependencies.fetch(HTTP_PATHS.cancel(streamId), {
      method: 'DELETE',
      headers: this.dependencies.headers({}),
    });
    // 404: the stream already ended (or was never ours); either way there is nothing left to cancel.
    if (!response.ok && response.status !== 404) throw await TransportError.fromResponse(response);
  }
}

export function sseCompletionStream(
  request: CompletionRequest & { streamId: string },
  dependencies: SseDependencies,
  hooks: StreamHooks = {},
): Observable<CompletionEvent> {
  return followSseStream({ streamId: request.streamId, lastSeq: -1 }, dependencies, hooks, (signal) =>
    dependencies.fetch(HTTP_PATHS.stream, {
      method: 'POST',
      headers: dependencies.headers({
        'Content-Type': 'application/json',
        Accept: SSE_CONTENT_TYPE,
        ...traceparentOf(request.streamId),
      }),
      body: JSON.stringify(request),
      signal,
      cache: 'no-store',
    }),
  );
}

/** A stream started earlier (before a page reload), read from `GET …/stream` from its first connection on. */
export function sseResumedStream(
  target: ResumeTarget,
  dependencies: SseDependencies,
): Observable<CompletionEvent> {
  return followSseStream(target, dependencies, {}, null);
}

/**
 * The one reading loop of both paths: `open` makes the first connection (the POST that starts the stream), or
 * null to begin with a resume; every later connection resumes after the last seq received.
 */
function followSseStream(
  from: ResumeTarget,
  { fetch, headers }: SseDependencies,
  hooks: StreamHooks,
  open: ((signal: AbortSignal) => Promise<Response>) | null,
): Observable<CompletionEvent> {
  return new Observable<CompletionEvent>((subscriber) => {
    const abort = new AbortController();
    let { streamId, lastSeq } = from;
    let resumeToken = from.resumeToken ?? null;
    let finished = false;
    let bodyTimer: ReturnType<typeof setTimeout> | undefined;
    // Only the POST that starts a stream says how long it waited for a connection; a resume is not a new run.
    let timing: ResourceTimingWatch | null = null;

    const resumeRequest = (credentials: Record<string, string>, query = ''): Promise<Response> =>
      fetch(HTTP_PATHS.resume(streamId) + query, {
        headers: {
          ...credentials,
          Accept: SSE_CONTENT_TYPE,
          ...traceparentOf(streamId),
          // Without Last-Event-ID the server replays from the start (it refuses -1).
          ...(lastSeq >= 0 ? { 'Last-Event-ID': String(lastSeq) } : {}),
        },
        signal: abort.signal,
        cache: 'no-store',
      });

    const resume = async (): Promise<Response> => {
      const response = await resumeRequest(headers({}));
      if (response.ok || !resumeToken || ![401, 403, 404].includes(response.status)) return response;
      // The session's credentials were refused (a JWT that expired while the page reloaded, or other
      // credentials since): the stream's own resume token may still open it. If not, the first answer stands.
      const withToken = await resumeRequest({}, `?resumeToken=${encodeURIComponent(resumeToken)}`);
      if (withToken.ok) return withToken;
      void withToken.body?.cancel();
      return response;
    };

    const parser = createParser({
      onEvent: (message) => {
        if (finished || !message.data) return;
        const event = JSON.parse(message.data) as CompletionEvent;
        lastSeq = event.seq;
        streamId = event.streamId;
        // Finished before the terminal event is handed on: its subscriber may unsubscribe at once, and the body
        // is still to be read to its end.
        if (isTerminalEvent(event)) finished = true;
        subscriber.next(event);
        if (finished) {
          subscriber.complete();
          bodyTimer = setTimeout(() => abort.abort(), BODY_END_GRACE_MS);
        }
      },
    });

    const run = async (): Promise<void> => {
      for (let attempt = 0; attempt <= RESUME_ATTEMPTS; attempt++) {
        if (attempt > 0) await delay(RESUME_BACKOFF_MS * attempt);
        let response: Response;
        try {
          if (attempt === 0 && open && hooks.connection) timing = watchResourceTiming(HTTP_PATHS.stream);
          response = await (attempt === 0 && open ? open(abort.signal) : resume());
        } catch (cause) {
          timing?.stop();
          timing = null;
          if (abort.signal.aborted) return;
          if (attempt === 0) throw TransportError.network(cause);
          continue;
        }
        if (!response.ok) throw await TransportError.fromResponse(response);
        streamId = response.headers.get(STREAM_ID_HEADER) ?? streamId;
        const token = response.headers.get(RESUME_TOKEN_HEADER);
        if (token && token !== resumeToken) {
          resumeToken = token;
          hooks.resumeToken?.(token);
        }
        parser.reset();
        try {
          await readInto(response, parser.feed);
        } catch {
          if (abort.signal.aborted) return;
        } finally {
          if (timing) reportConnection(timing, hooks);
          timing = null;
        }
        clearTimeout(bodyTimer);
        if (finished || abort.signal.aborted) return;
      }
      throw new TransportError(
        'network',
        'The connection dropped and the stream could not be resumed.',
        true,
      );
    };

    run().catch((error: unknown) => {
      if (!finished && !abort.signal.aborted) subscriber.error(error);
    });

    return () => {
      if (!finished) {
        abort.abort();
        timing?.stop();
      }
    };
  });
}

function reportConnection(timing: ResourceTimingWatch, hooks: StreamHooks): void {
  void timing.entry(TIMING_GRACE_MS).then((entry) => {
    if (entry) hooks.connection?.(fromResourceTiming(entry));
  });
}

async function readInto(response: Response, feed: (chunk: string) => void): Promise<void> {
  if (!response.body) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    feed(value);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
