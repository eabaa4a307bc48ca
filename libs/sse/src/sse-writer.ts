import { type CompletionEvent, SSE_PING_COMMENT, SSE_PING_INTERVAL_MS } from '@app/contracts';
import type { Response } from 'express';
/**
 * Bytes a slow reader may leave unsent before the connection is dropped (the client resumes with
 * Last-Event-ID). A whole 4,096-token answer is far below it, so only a stalled reader meets it.
 */
export const MAX_PENDING_BYTES = 1024 * 1024;

export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
};

/** `id: <seq>\nevent: <type>\ndata: <json>\n\n`; JSON has no raw newlines, so one data line always suffices. */
export function formatSseEvent(event: CompletionEvent): string {
  return `id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/** Writes one stream to one HTTP response: headers, events, and a ping comment while idle. */
export class SseWriter {
  private readonly pingTimer: NodeJS.Timeout;

  constructor(
    private readonly response: Response,
    streamId: string,
    private readonly onDropped: () => void = () => undefined,
  ) {
    response.status(200);
    for (const [name, value] of Object.entries(SSE_HEADERS)) {
      response.setHeader(name, value);
    }
    response.setHeader('X-Stream-Id', streamId);
    // Tokens are small and latency is the point: no Nagle delay.
    response.socket?.setNoDelay(true);
    this.pingTimer = setInterval(() => this.write(SSE_PING_COMMENT), SSE_PING_INTERVAL_MS);
    this.pingTimer.unref();
  }

  /**
   * Sends the headers now if no event has taken them along yet. The start event (or a resume's replay) is
   * usually written in the same tick, and Node sends headers with the first chunk in one write: one syscall
   * less per stream than flushing them on their own, which shows in time to first token on loopback.
   */
  flushHeaders(): void {
    if (!this.response.headersSent && !this.response.destroyed) {
      this.response.flushHeaders();
    }
  }

  /** Written and not yet taken by the kernel. */
  get pendingBytes(): number {
    return this.response.writableLength;
  }

  send(event: CompletionEvent): void {
    this.write(formatSseEvent(event));
    this.pingTimer.refresh();
  }

  end(): void {
    clearInterval(this.pingTimer);
    if (!this.response.writableEnded) {
      this.response.end();
    }
  }

  private write(chunk: string): void {
    if (this.response.destroyed || this.response.writableEnded) {
      return;
    }
    this.response.write(chunk);
    if (this.response.writableLength > MAX_PENDING_BYTES) {
      // A reader this far behind is stalled; keeping its backlog would let it grow the heap without bound.
      this.response.destroy();
      this.onDropped();
    }
  }
}
