import { type CompletionEvent, SSE_PING_COMMENT, SSE_PING_INTERVAL_MS } from '@app/contracts';
import type { Response } from 'express';
import type { Socket } from 'node:net';
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
const SSE_HEADER_ENTRIES = Object.entries(SSE_HEADERS);

/** `id: <seq>\nevent: <type>\ndata: <json>\n\n`; JSON has no raw newlines, so one data line always suffices. */
export function formatSseEvent(event: CompletionEvent): string {
  return `id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/** How often the open responses are looked at for idleness: the ping interval is this many steps. */
const PING_STEPS = 15;

/**
 * The open SSE responses of one transport, with one timer that pings every response idle for the ping interval
 * (`: ping` every 15 s while idle, CONTRACT.md). One interval per response, refreshed on every event, cost a
 * timer per open stream and a move in Node's timer list per token. Here a write stamps the response with the
 * current step, and the timer, every interval/15, pings the responses last written 15 steps ago: a ping always
 * comes after 14 to 15 s of quiet (14 at the least, since a write can come just before a step), never later.
 */
export class SseWriters {
  private readonly open = new Set<SseWriter>();
  private readonly stepMs: number;
  private timer: NodeJS.Timeout | undefined;
  /** Steps taken since the timer started; what a write is stamped with. */
  step = 0;

  constructor(pingIntervalMs = SSE_PING_INTERVAL_MS) {
    this.stepMs = pingIntervalMs / PING_STEPS;
  }

  /** Starts writing the stream `streamId` to `response`: status and headers are sent with this tick's events. */
  add(response: Response, streamId: string, onDropped: () => void = () => undefined): SseWriter {
    const writer = new SseWriter(response, streamId, this, onDropped);
    this.open.add(writer);
    // Started once and kept (it does not hold the process open): streams that come one after another would
    // otherwise each start and stop it.
    if (!this.timer) {
      this.timer = setInterval(() => this.pingIdle(), this.stepMs);
      this.timer.unref();
    }
    return writer;
  }

  /** Forgets a writer whose response has closed. */
  delete(writer: SseWriter): void {
    this.open.delete(writer);
  }

  /** Stops the timer (the application is closing). */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Written to every open response and not yet taken by the kernel. */
  get pendingBytes(): number {
    let total = 0;
    for (const writer of this.open) {
      total += writer.pendingBytes;
    }
    return total;
  }

  private pingIdle(): void {
    this.step += 1;
    for (const writer of this.open) {
      if (this.step - writer.lastWriteStep >= PING_STEPS) {
        writer.ping();
      }
    }
  }
}

function uncork(socket: Socket): void {
  socket.uncork();
}

/** Writes one stream to one HTTP response: headers, events, and a ping comment while idle (see SseWriters). */
export class SseWriter {
  /** The step of SseWriters' timer at the last write. */
  lastWriteStep: number;

  constructor(
    private readonly response: Response,
    streamId: string,
    private readonly writers: SseWriters,
    private readonly onDropped: () => void,
  ) {
    response.statusCode = 200;
    for (const [name, value] of SSE_HEADER_ENTRIES) {
      response.setHeader(name, value);
    }
    response.setHeader('X-Stream-Id', streamId);
    // Tokens are small and latency is the point: no Nagle delay.
    response.socket?.setNoDelay(true);
    this.lastWriteStep = writers.step;
    this.sendHead();
  }

  /**
   * Sends the head now, in the same write as the events of this tick (the start event, a resume's replay).
   * Node builds the head by joining about four strings per header and keeps it for the response's life; it is
   * flattened into one string only when written on its own, as here, not when Node prepends it to the first
   * chunk (it writes a new joined string then): about 0.9 KB less per open stream. The socket is corked so
   * that the head and this tick's events still leave in one write, as when Node sends them together: one
   * syscall per start, which shows in time to first token on loopback.
   */
  private sendHead(): void {
    const socket = this.response.socket;
    if (!socket || this.response.destroyed) {
      return;
    }
    socket.cork();
    this.response.flushHeaders();
    process.nextTick(uncork, socket);
  }

  /** Written and not yet taken by the kernel. */
  get pendingBytes(): number {
    return this.response.writableLength;
  }

  send(event: CompletionEvent): void {
    this.write(formatSseEvent(event));
  }

  ping(): void {
    this.write(SSE_PING_COMMENT);
  }

  end(): void {
    if (!this.response.writableEnded) {
      this.response.end();
    }
  }

  private write(chunk: string): void {
    if (this.response.destroyed || this.response.writableEnded) {
      return;
    }
    this.lastWriteStep = this.writers.step;
    this.response.write(chunk);
    if (this.response.writableLength > MAX_PENDING_BYTES) {
      // A reader this far behind is stalled; keeping its backlog would let it grow the heap without bound.
      this.response.destroy();
      this.onDropped();
    }
  }
}
