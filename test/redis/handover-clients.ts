import { type CompletionEvent, type CompletionRequest, isTerminalEvent, type StartAck } from '@app/contracts';
import { io } from 'socket.io-client';
import type { CompletionClient } from '../support/socket-client';
import { readStream } from '../support/sse-client';

/**
 * Clients that do what a real one does when its connection ends before the stream's terminal event: reconnect, to
 * wherever `url()` points now (nginx, or the next instance), and resume after the last event they hold (SSE with
 * `Last-Event-ID`, Socket.IO with `completion:resume`), until the terminal event. Each records every event it was
 * given, with when, so that a test sees a repeat or a gap rather than a client hiding one.
 */
export interface FollowedStream {
  streamId: string;
  events: CompletionEvent[];
  /** When each event arrived (`Date.now()`), in the same order. */
  arrivals: number[];
  /** Connections it took, the first included. */
  connections: number;
  done: Promise<void>;
}

const RETRY_MS = 100;
const GIVE_UP_MS = 60_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function record(stream: FollowedStream, event: CompletionEvent): void {
  stream.events.push(event);
  stream.arrivals.push(Date.now());
}

const lastSeq = (stream: FollowedStream) => stream.events.at(-1)?.seq ?? -1;
const ended = (stream: FollowedStream) => stream.events.some(isTerminalEvent);

/** Starts a stream with a POST on `url()`, then resumes it with GETs until its terminal event. */
export async function sseStream(
  url: () => string,
  request: CompletionRequest,
  headers: Record<string, string>,
): Promise<FollowedStream> {
  const response = await fetch(`${url()}/api/completions/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(request),
  });
  if (response.status !== 200) {
    throw new Error(`the start was refused: ${response.status} ${await response.text()}`);
  }
  const stream: FollowedStream = {
    streamId: response.headers.get('x-stream-id') as string,
    events: [],
    arrivals: [],
    connections: 1,
    done: Promise.resolve(),
  };
  stream.done = (async () => {
    await readStream(response, (event) => record(stream, event)).catch(() => undefined);
    const deadline = Date.now() + GIVE_UP_MS;
    while (!ended(stream)) {
      if (Date.now() > deadline) {
        throw new Error(`${stream.streamId}: no terminal event after ${stream.connections} connections`);
      }
      const resumed = await fetch(`${url()}/api/completions/${stream.streamId}/stream`, {
        headers: { ...headers, 'last-event-id': String(lastSeq(stream)) },
      }).catch(() => undefined);
      stream.connections += 1;
      if (resumed?.status === 200) {
        await readStream(resumed, (event) => record(stream, event)).catch(() => undefined);
      } else {
        // Refused (the instance is stopping: 503) or unreachable: try again, as a client does.
        await resumed?.body?.cancel();
        await sleep(RETRY_MS);
      }
    }
  })();
  return stream;
}

function socketOn(url: string, token: string): Promise<CompletionClient> {
  const socket: CompletionClient = io(`${url}/completions`, {
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    auth: { token },
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (error) => {
      socket.close();
      reject(error);
    });
  });
}

/**
 * Starts a stream over Socket.IO on `url()`; when the socket goes before the terminal event, a new one resumes it
 * with `completion:resume` after the last event held.
 */
export async function socketStream(
  url: () => string,
  request: CompletionRequest,
  token: string,
): Promise<FollowedStream> {
  const stream: FollowedStream = {
    streamId: '',
    events: [],
    arrivals: [],
    connections: 1,
    done: Promise.resolve(),
  };
  let socket = await socketOn(url(), token);
  /** Resolves when the socket disconnects or the stream has ended on it. */
  const listen = (on: CompletionClient) =>
    new Promise<void>((resolve) => {
      // Until the start's ack names the stream, its events are kept aside (several frames can be handled in one go,
      // the ack's and the first events', before anything awaited runs).
      const early: CompletionEvent[] = [];
      on.on('completion', (event) => {
        if (stream.streamId === '') {
          early.push(event);
          return;
        }
        if (event.streamId === stream.streamId) {
          record(stream, event);
          if (isTerminalEvent(event)) {
            resolve();
          }
        }
      });
      on.once('disconnect', () => resolve());
      named = () =>
        early.filter((event) => event.streamId === stream.streamId).forEach((event) => record(stream, event));
    });
  let named = () => undefined as void;
  let listening = listen(socket);
  const ack = await new Promise<StartAck>((resolve) => socket.emit('completion:start', request, resolve));
  if (!ack.ok) {
    socket.close();
    throw new Error(`the start was refused: ${JSON.stringify(ack.error)}`);
  }
  stream.streamId = ack.streamId;
  named();
  stream.done = (async () => {
    const deadline = Date.now() + GIVE_UP_MS;
    for (;;) {
      await listening;
      if (ended(stream)) {
        socket.close();
        return;
      }
      socket.close();
      if (Date.now() > deadline) {
        throw new Error(`${stream.streamId}: no terminal event after ${stream.connections} connections`);
      }
      const next = await socketOn(url(), token).catch(() => undefined);
      stream.connections += 1;
      if (!next) {
        await sleep(RETRY_MS);
        continue;
      }
      socket = next;
      listening = listen(socket);
      const resumed = await new Promise<boolean>((resolve) =>
        next.emit('completion:resume', { streamId: stream.streamId, lastSeq: lastSeq(stream) }, (answer) =>
          resolve(answer.ok),
        ),
      );
      if (!resumed) {
        next.close();
        await sleep(RETRY_MS);
      }
    }
  })();
  return stream;
}

/** The answer's text and reasoning as a client assembles them. */
export function answerOf(events: CompletionEvent[]): { text: string; reasoning: string } {
  let text = '';
  let reasoning = '';
  for (const event of events) {
    if (event.type === 'token') text += event.text;
    if (event.type === 'reasoning') reasoning += event.text;
  }
  return { text, reasoning };
}

/** Every seq once from 0, exactly one terminal event, a `done` at the end; what was seen otherwise. */
export function shapeOf(events: CompletionEvent[]): string {
  const seqs = events.map((event) => event.seq);
  if (seqs.some((seq, index) => seq !== index)) {
    return `seqs ${seqs.join(',')}`;
  }
  const terminals = events.filter(isTerminalEvent);
  if (terminals.length !== 1 || events.at(-1)?.type !== 'done') {
    return `ends ${events
      .slice(-3)
      .map((event) => `${event.seq}:${event.type}${event.type === 'error' ? `:${event.error.code}` : ''}`)
      .join(' ')}`;
  }
  return 'whole';
}

/** The longest wait between two events a client was given. */
export function longestGap(stream: FollowedStream): number {
  let longest = 0;
  for (let index = 1; index < stream.arrivals.length; index += 1) {
    longest = Math.max(longest, stream.arrivals[index] - stream.arrivals[index - 1]);
  }
  return longest;
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
