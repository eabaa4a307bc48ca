import type { ContinueFrom } from '@app/completion';
import type { CompletionEvent, CompletionRequest } from '@app/contracts';

export type { ContinueFrom };

/**
 * What of a stream's request another instance needs to continue it, kept in Redis with the stream's other keys:
 * the request itself, never a credential (those stay in the gateway's configuration) and not the stream id (kept
 * beside it).
 */
export type StoredRequest = Pick<
  CompletionRequest,
  'messages' | 'model' | 'maxTokens' | 'temperature' | 'topP'
>;

export function storedRequest(request: CompletionRequest): StoredRequest {
  const { messages, model, maxTokens, temperature, topP } = request;
  return { messages, model, maxTokens, temperature, topP };
}

/**
 * The continuation of a stream whose events so far are `events`, all of them from its `start` on, in order; undefined
 * when they are not (the first ones were trimmed, or one is missing) or the stream has ended: there is nothing exact
 * to continue from.
 */
export function continuationOf(events: readonly CompletionEvent[]): ContinueFrom | undefined {
  const first = events[0];
  if (first?.type !== 'start') {
    return undefined;
  }
  let text = '';
  let reasoning = '';
  let firstEventAt: number | undefined;
  for (const [index, event] of events.entries()) {
    if (event.seq !== index || event.type === 'done' || event.type === 'error') {
      return undefined;
    }
    if (event.type === 'token') {
      text += event.text;
      firstEventAt ??= event.ts;
    } else if (event.type === 'reasoning') {
      reasoning += event.text;
      firstEventAt ??= event.ts;
    }
  }
  return { seq: events.length, text, reasoning, reason: 'handover', startedAt: first.ts, firstEventAt };
}
