import { type CompletionEvent, SSE_PING_INTERVAL_MS } from '@app/contracts';
import type { MessageEvent } from '@nestjs/common';
import type { Response } from 'express';
import { Observable } from 'rxjs';
import type { Readable } from 'node:stream';

/**
 * Bytes a slow reader may leave unsent before the connection is dropped (the client resumes with
 * Last-Event-ID). A whole 4,096-token answer is far below it, so only a stalled reader meets it.
 */
export const MAX_PENDING_BYTES = 1024 * 1024;

/** `: ping`, the contract's idle comment (SSE_PING_COMMENT) as Nest writes a comment. */
const PING: MessageEvent = { comment: 'ping' };

/** `id: <seq>`, `event: <type>`, `data: <json>`; the JSON is a string already, so Nest writes it as it is. */
export function toMessageEvent(event: CompletionEvent): MessageEvent {
  return { id: String(event.seq), type: event.type, data: JSON.stringify(event) };
}

/**
 * One SSE response as Nest's `@Sse()` writes it: the events it is handed, an idle ping merged in, and what it
 * still holds for its client. Nest queues the events a client does not read and pipes them through its own
 * stream into the response; what waits is counted here from both ends (handed to Nest, and passed on by Nest's
 * stream to the response) plus what the response itself holds, so that the cap and the pending-bytes gauge
 * mean what the hand-written writer's did: written for the client and not yet taken by the kernel.
 */
export class SseConnection {
  /** Sizes of the events handed to Nest and not yet passed on to the response, oldest first from `head`. */
  private readonly waiting: number[] = [];
  private head = 0;
  private waitingBytes = 0;
  private piped = false;

  constructor(
    private readonly response: Response,
    private readonly onDropped: () => void,
  ) {
    response.once('pipe', (source: Readable) => {
      this.piped = true;
      source.on('data', (chunk: string) => this.passedOn(chunk));
    });
  }

  /** Held for the client and not yet taken by the kernel. */
  get pendingBytes(): number {
    return this.waitingBytes + this.response.writableLength;
  }

  /**
   * The events as Nest's messages, with `: ping` after SSE_PING_INTERVAL_MS without one. Written by hand rather
   * than as `merge()` with a `switchMap()` to a timer: that makes a timer per event, this refreshes one.
   */
  messages(events: Observable<CompletionEvent>): Observable<MessageEvent> {
    return new Observable<MessageEvent>((subscriber) => {
      const ping = setInterval(() => subscriber.next(PING), SSE_PING_INTERVAL_MS);
      ping.unref();
      const subscription = events.subscribe({
        next: (event) => {
          if (this.response.destroyed) {
            return;
          }
          const message = toMessageEvent(event);
          // Until Nest has piped its stream, nothing it queues can be seen leaving: counted then as the response's.
          if (this.piped) {
            const size = (message.data as string).length;
            this.waiting.push(size);
            this.waitingBytes += size;
          }
          subscriber.next(message);
          ping.refresh();
          if (this.pendingBytes > MAX_PENDING_BYTES) {
            // A reader this far behind is stalled; keeping its backlog would let it grow the heap without bound.
            this.response.destroy();
            this.onDropped();
          }
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });
      return () => {
        clearInterval(ping);
        subscription.unsubscribe();
      };
    });
  }

  /** Comments (the ping, Nest's own probe) were never counted; every other chunk is the oldest waiting event. */
  private passedOn(chunk: string): void {
    if (chunk.startsWith(':') || this.head === this.waiting.length) {
      return;
    }
    this.waitingBytes -= this.waiting[this.head];
    this.head += 1;
    if (this.head === this.waiting.length) {
      this.waiting.length = 0;
      this.head = 0;
    }
  }
}
