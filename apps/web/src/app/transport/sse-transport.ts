import { Injectable, inject } from '@angular/core';
import {
  type CompletionEvent,
  type CompletionRequest,
  HTTP_PATHS,
  isTerminalEvent,
  SSE_CONTENT_TYPE,
  STREAM_ID_HEADER,
} from '@app/contracts';
import { createParser } from 'eventsource-parser';
import { Observable } from 'rxjs';
import { ServerApi } from '../server/server-api';
import type { CompletionTransport } from './completion-transport';
import { TransportError } from './transport-error';

const RESUME_ATTEMPTS = 3;
const RESUME_BACKOFF_MS = 250;

export interface SseDependencies {
  fetch: typeof fetch;
  headers: (extra: Record<string, string>) => Record<string, string>;
}

/**
 * Completions over Server-Sent Events: a `fetch` POST (EventSource cannot POST) read as a stream and parsed by
 * eventsource-parser. A connection that drops before the terminal event is resumed with `Last-Event-ID`.
 */
@Injectable({ providedIn: 'root' })
export class SseTransport implements CompletionTransport {
  readonly name = 'sse';
  private readonly api = inject(ServerApi);
  private readonly dependencies: SseDependencies = {
    fetch: (input, init) => fetch(input, init),
    headers: (extra) => this.api.headers(extra),
  };

  stream(request: CompletionRequest & { streamId: string }): Observable<CompletionEvent> {
    return sseCompletionStream(request, this.dependencies);
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
  { fetch, headers }: SseDependencies,
): Observable<CompletionEvent> {
  return new Observable<CompletionEvent>((subscriber) => {
    const abort = new AbortController();
    let streamId = request.streamId;
    let lastSeq = -1;
    let finished = false;

    const connect = (attempt: number): Promise<Response> =>
      attempt === 0
        ? fetch(HTTP_PATHS.stream, {
            method: 'POST',
            headers: headers({ 'Content-Type': 'application/json', Accept: SSE_CONTENT_TYPE }),
            body: JSON.stringify(request),
            signal: abort.signal,
            cache: 'no-store',
          })
        : fetch(HTTP_PATHS.resume(streamId), {
            headers: headers({ Accept: SSE_CONTENT_TYPE, 'Last-Event-ID': String(lastSeq) }),
            signal: abort.signal,
            cache: 'no-store',
          });

    const parser = createParser({
      onEvent: (message) => {
        if (finished || !message.data) return;
        const event = JSON.parse(message.data) as CompletionEvent;
        lastSeq = event.seq;
        streamId = event.streamId;
        subscriber.next(event);
        if (isTerminalEvent(event)) {
          finished = true;
          subscriber.complete();
          abort.abort();
        }
      },
    });

    const run = async (): Promise<void> => {
      for (let attempt = 0; attempt <= RESUME_ATTEMPTS; attempt++) {
        if (attempt > 0) await delay(RESUME_BACKOFF_MS * attempt);
        let response: Response;
        try {
          response = await connect(attempt);
        } catch (cause) {
          if (abort.signal.aborted) return;
          if (attempt === 0) throw TransportError.network(cause);
          continue;
        }
        if (!response.ok) throw await TransportError.fromResponse(response);
        streamId = response.headers.get(STREAM_ID_HEADER) ?? streamId;
        parser.reset();
        try {
          await readInto(response, parser.feed);
        } catch {
          if (abort.signal.aborted) return;
        }
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
      if (!finished) abort.abort();
    };
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
