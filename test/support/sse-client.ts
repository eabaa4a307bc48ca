import type { CompletionEvent, CompletionRequest } from '@app/contracts';
import { createParser, type EventSourceMessage } from 'eventsource-parser';

export interface SseResult {
  status: number;
  headers: Headers;
  messages: EventSourceMessage[];
  events: CompletionEvent[];
  raw: string;
}

/** POSTs a request and reads the whole stream with a real SSE parser, as a fetch-based browser client does. */
export async function postStream(
  baseUrl: string,
  body: CompletionRequest | string,
  init: {
    headers?: Record<string, string>;
    onEvent?: (event: CompletionEvent) => void;
    signal?: AbortSignal;
  } = {},
): Promise<SseResult> {
  const response = await fetch(`${baseUrl}/api/completions/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...init.headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: init.signal,
  });
  return readStream(response, init.onEvent);
}

export async function readStream(
  response: Response,
  onEvent?: (event: CompletionEvent) => void,
): Promise<SseResult> {
  const messages: EventSourceMessage[] = [];
  const events: CompletionEvent[] = [];
  let raw = '';
  if (response.headers.get('content-type')?.startsWith('text/event-stream') && response.body) {
    const parser = createParser({
      onEvent: (message) => {
        messages.push(message);
        const event = JSON.parse(message.data) as CompletionEvent;
        events.push(event);
        onEvent?.(event);
      },
    });
    const decoder = new TextDecoder();
    for await (const chunk of response.body) {
      const text = decoder.decode(chunk, { stream: true });
      raw += text;
      parser.feed(text);
    }
  } else {
    raw = await response.text();
  }
  return { status: response.status, headers: response.headers, messages, events, raw };
}

export function textOf(events: CompletionEvent[]): string {
  return events.map((event) => (event.type === 'token' ? event.text : '')).join('');
}
