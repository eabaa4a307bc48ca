/**
 * One real client per target: `fetch` + `eventsource-parser` for every SSE target, `socket.io-client` on the
 * websocket transport, `ws` for the raw WebSocket relay. Each resolves when its stream ended normally (the target's
 * own end marker), rejects on a transport error, and stops at once when `signal` aborts.
 */
import type { CompletionEvent, StartAck } from '@app/contracts';
import { createParser } from 'eventsource-parser';
import { io, type ManagerOptions, type SocketOptions } from 'socket.io-client';
import WebSocket from 'ws';
import type { Target } from './measure.mts';

export interface TokenSink {
  token(text: string): void;
  /** A protocol fault that is not a transport error (a seq gap): the stream counts as garbled. */
  fault(description: string): void;
}

type Client = (url: string, prompt: string, sink: TokenSink, signal: AbortSignal) => Promise<void>;

/**
 * socket.io-client gives up on a handshake after 20 s by default. On a saturated target that turned slow
 * connections into lost streams although the target would have served them; the run's own deadline (the
 * `signal`) is what ends a stream here, on every transport alike.
 */
const SOCKET_OPTIONS: Partial<ManagerOptions & SocketOptions> = {
  transports: ['websocket'],
  forceNew: true,
  reconnection: false,
  timeout: 10 * 60_000,
};

async function readSse(
  response: Response,
  /** Returns true on the target's end marker. */
  onEvent: (event: string | undefined, data: string) => boolean,
): Promise<void> {
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
  let ended = false;
  const parser = createParser({
    onEvent: (message) => {
      if (onEvent(message.event, message.data)) ended = true;
    },
  });
  const decoder = new TextDecoder();
  for await (const chunk of response.body) parser.feed(decoder.decode(chunk, { stream: true }));
  if (!ended) throw new Error('the stream ended without its end marker');
}

/** The gateway's SSE events: tokens to the sink, a seq gap as a fault, the terminal event as the end. */
function readGatewayEvents(response: Response, sink: TokenSink): Promise<void> {
  let expectedSeq = 0;
  return readSse(response, (_event, data) => {
    const event = JSON.parse(data) as CompletionEvent;
    if (event.seq !== expectedSeq) sink.fault(`seq ${event.seq} after ${expectedSeq - 1}`);
    expectedSeq = event.seq + 1;
    if (event.type === 'token') sink.token(event.text);
    if (event.type === 'error') throw new Error(`${event.error.code}: ${event.error.message}`);
    return event.type === 'done';
  });
}

function postJson(url: string, body: unknown, signal: AbortSignal): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });
}

/** Rejects with `timeout` when the run's deadline aborts a socket-based stream. */
function onAbort(signal: AbortSignal, close: () => void, reject: (error: Error) => void): void {
  const abort = () => (close(), reject(new Error('timeout')));
  if (signal.aborted) abort();
  else signal.addEventListener('abort', abort, { once: true });
}

/** OpenAI's chunk stream, from the simulator itself (`direct`) or relayed by the gateway's `/v1` (`openai`). */
async function readOpenAiStream(
  url: string,
  prompt: string,
  sink: TokenSink,
  signal: AbortSignal,
): Promise<void> {
  const body = { model: 'simulator', stream: true, messages: [{ role: 'user', content: prompt }] };
  await readSse(await postJson(`${url}/chat/completions`, body, signal), (_event, data) => {
    if (data === '[DONE]') return true;
    const chunk = JSON.parse(data) as {
      choices?: { delta?: { content?: string } }[];
      error?: { code?: string };
    };
    if (chunk.error) throw new Error(`error mid-stream: ${chunk.error.code ?? 'unknown'}`);
    const text = chunk.choices?.[0]?.delta?.content;
    if (text) sink.token(text);
    return false;
  });
}

const IN_ONE_PROCESS: Record<Exclude<Target, `${string}+${string}` | `${string}@${string}`>, Client> = {
  direct: readOpenAiStream,

  openai: (url, prompt, sink, signal) => readOpenAiStream(`${url}/v1`, prompt, sink, signal),

  'raw-sse': async (url, prompt, sink, signal) => {
    await readSse(await postJson(`${url}/stream`, { content: prompt }, signal), (event, data) => {
      if (event === 'done') return true;
      sink.token((JSON.parse(data) as { text: string }).text);
      return false;
    });
  },

  'gateway-sse': async (url, prompt, sink, signal) => {
    const body = { messages: [{ role: 'user', content: prompt }] };
    await readGatewayEvents(await postJson(`${url}/api/completions/stream`, body, signal), sink);
  },

  'raw-socket.io': (url, prompt, sink, signal) =>
    new Promise((resolve, reject) => {
      const socket = io(url, SOCKET_OPTIONS);
      onAbort(signal, () => socket.close(), reject);
      socket.on('connect', () => socket.emit('start', { id: 1, content: prompt }));
      socket.on('token', (_id: number, text: string) => sink.token(text));
      socket.on('done', () => (socket.close(), resolve()));
      socket.on('failed', () => (socket.close(), reject(new Error('relay failed'))));
      socket.on('connect_error', (error) => reject(new Error(`connect_error: ${error.message}`)));
    }),

  'gateway-socket.io': (url, prompt, sink, signal) =>
    new Promise((resolve, reject) => {
      const socket = io(`${url}/completions`, SOCKET_OPTIONS);
      onAbort(signal, () => socket.close(), reject);
      // Settle before closing: closing emits `disconnect`, which rejects a stream still pending.
      const finish = (error?: Error) => {
        if (error) reject(error);
        else resolve();
        socket.close();
      };
      let expectedSeq = 0;
      socket.on('connect', () =>
        socket.emit(
          'completion:start',
          { messages: [{ role: 'user', content: prompt }] },
          (ack: StartAck) => {
            if (!ack.ok) finish(new Error(`refused: ${ack.error.code}`));
          },
        ),
      );
      socket.on('completion', (event: CompletionEvent) => {
        if (event.seq !== expectedSeq) sink.fault(`seq ${event.seq} after ${expectedSeq - 1}`);
        expectedSeq = event.seq + 1;
        if (event.type === 'token') sink.token(event.text);
        if (event.type === 'done') finish();
        if (event.type === 'error') finish(new Error(`${event.error.code}: ${event.error.message}`));
      });
      socket.on('disconnect', (reason) => reject(new Error(`disconnected: ${reason}`)));
      socket.on('connect_error', (error) => reject(new Error(`connect_error: ${error.message}`)));
    }),

  'raw-ws': (url, prompt, sink, signal) =>
    new Promise((resolve, reject) => {
      const socket = new WebSocket(url.replace(/^http/, 'ws'), { perMessageDeflate: false });
      onAbort(signal, () => socket.terminate(), reject);
      socket.on('open', () => socket.send(JSON.stringify({ content: prompt })));
      socket.on('message', (data) => sink.token(String(data)));
      socket.on('close', (code) => (code === 1000 ? resolve() : reject(new Error(`closed ${code}`))));
      socket.on('error', (error) => reject(new Error(`ws error: ${error.message}`)));
    }),
};

/** With `REDIS_URL`, an upstream table, tracing or another commit's build, the gateway speaks the same protocol. */
export const CLIENTS: Record<Target, Client> = {
  ...IN_ONE_PROCESS,
  'gateway-sse+otel': IN_ONE_PROCESS['gateway-sse'],
  'gateway-sse@baseline': IN_ONE_PROCESS['gateway-sse'],
  'gateway-sse+table': IN_ONE_PROCESS['gateway-sse'],
  'gateway-sse+fast': IN_ONE_PROCESS['gateway-sse'],
  'gateway-sse+tail': IN_ONE_PROCESS['gateway-sse'],
  'gateway-sse+tail+hedge': IN_ONE_PROCESS['gateway-sse'],
  'gateway-sse+tail+hedge-early': IN_ONE_PROCESS['gateway-sse'],
  'gateway-sse+redis': IN_ONE_PROCESS['gateway-sse'],
  'gateway-socket.io+redis': IN_ONE_PROCESS['gateway-socket.io'],
  /**
   * `url` is two instances, `running|following`: the stream starts on the first (its own response read and
   * dropped), and this client reads it on the second, which follows it from Redis.
   */
  'gateway-sse+redis-cross': async (url, prompt, sink, signal) => {
    const [running, following] = url.split('|');
    const body = { messages: [{ role: 'user', content: prompt }] };
    const started = await postJson(`${running}/api/completions/stream`, body, signal);
    const streamId = started.headers.get('x-stream-id');
    if (!started.ok || !streamId) throw new Error(`HTTP ${started.status}`);
    // The starting client stays connected (so no resume grace is involved); its copy is read and dropped.
    const drained = started
      .arrayBuffer()
      .then(() => undefined)
      .catch(() => undefined);
    await readGatewayEvents(await fetch(`${following}/api/completions/${streamId}/stream`, { signal }), sink);
    await drained;
  },
};
