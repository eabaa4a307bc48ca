/**
 * The load generator, one process per run so its CPU never counts against a target: opens `streams` streams at a
 * controlled rate through real clients, reads every token, and prints one JSON summary line on stdout.
 * Each token's text starts with `⟨emission time⟩` (the simulator's emit_ts), so added latency is receipt minus
 * emission on one host's clock, without clock tricks.
 */
import { createParser } from 'eventsource-parser';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { summarise, type RunSpec, type StreamResult } from './measure.mts';

const spec = JSON.parse(process.argv[2] ?? '{}') as RunSpec;
const now = (): number => performance.timeOrigin + performance.now();
const prompt = `[sim emit_ts tokens=${spec.tokens} tps=${spec.tps} ttft=0 jitter=0] benchmark`;

type Sink = { token: (text: string) => void };

async function readSse(
  response: Response,
  onData: (event: string | undefined, data: string) => void,
): Promise<void> {
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
  const parser = createParser({ onEvent: (message) => onData(message.event, message.data) });
  const decoder = new TextDecoder();
  for await (const chunk of response.body) parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }));
}

const clients: Record<RunSpec['target'], (sink: Sink) => Promise<void>> = {
  direct: (sink) =>
    fetch(`${spec.url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'simulator',
        stream: true,
        messages: [{ role: 'user', content: prompt }],
      }),
    }).then((response) =>
      readSse(response, (_event, data) => {
        if (data === '[DONE]') return;
        const text = (JSON.parse(data) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta
          ?.content;
        if (text) sink.token(text);
      }),
    ),
  'raw-sse': (sink) =>
    fetch(`${spec.url}/stream`, { method: 'POST', body: JSON.stringify({ content: prompt }) }).then(
      (response) =>
        readSse(response, (event, data) => {
          if (event === undefined) sink.token((JSON.parse(data) as { text: string }).text);
        }),
    ),
  'gateway-sse': (sink) =>
    fetch(`${spec.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: prompt }] }),
    }).then((response) =>
      readSse(response, (event, data) => {
        if (event === 'token') sink.token((JSON.parse(data) as { text: string }).text);
        if (event === 'error') throw new Error(data);
      }),
    ),
  'raw-socket.io': (sink) =>
    new Promise((resolve, reject) => {
      const socket = io(spec.url, { transports: ['websocket'], forceNew: true, reconnection: false });
      socket.on('connect', () => socket.emit('start', { id: 1, content: prompt }));
      socket.on('token', (_id: number, text: string) => sink.token(text));
      socket.on('done', () => (socket.close(), resolve()));
      socket.on('failed', () => (socket.close(), reject(new Error('relay failed'))));
      socket.on('connect_error', reject);
    }),
  'gateway-socket.io': (sink) =>
    new Promise((resolve, reject) => {
      const socket = io(`${spec.url}/completions`, {
        transports: ['websocket'],
        forceNew: true,
        reconnection: false,
      });
      socket.on('connect', () =>
        socket.emit(
          'completion:start',
          { messages: [{ role: 'user', content: prompt }] },
          (ack: { ok: boolean }) => {
            if (!ack.ok) reject(new Error(JSON.stringify(ack)));
          },
        ),
      );
      socket.on('completion', (event: { type: string; text?: string }) => {
        if (event.type === 'token' && event.text !== undefined) sink.token(event.text);
        if (event.type === 'done' || event.type === 'error') socket.close();
        if (event.type === 'done') resolve();
        if (event.type === 'error') reject(new Error(JSON.stringify(event)));
      });
      socket.on('connect_error', reject);
    }),
  'raw-ws': (sink) =>
    new Promise((resolve, reject) => {
      const socket = new WebSocket(spec.url.replace(/^http/, 'ws'), { perMessageDeflate: false });
      socket.on('open', () => socket.send(JSON.stringify({ content: prompt })));
      socket.on('message', (data) => sink.token(String(data)));
      socket.on('close', (code) => (code === 1000 ? resolve() : reject(new Error(`closed ${code}`))));
      socket.on('error', reject);
    }),
};

async function oneStream(): Promise<StreamResult> {
  const result: StreamResult = {
    sentAt: now(),
    firstTokenAt: undefined,
    latencies: [],
    text: '',
    error: undefined,
  };
  try {
    await clients[spec.target]({
      token: (text) => {
        const receivedAt = now();
        result.firstTokenAt ??= receivedAt;
        const match = /^⟨(\d+\.\d{3})⟩/.exec(text);
        if (match) {
          result.latencies.push(receivedAt - Number(match[1]));
          result.text += text.slice(match[0].length);
        } else {
          result.text += text;
        }
      },
    });
  } catch (error) {
    result.error = error instanceof Error ? error.message.slice(0, 200) : String(error);
  }
  return result;
}

const started = now();
const streams: Promise<StreamResult>[] = [];
for (let index = 0; index < spec.streams; index += 1) {
  streams.push(oneStream());
  if ((index + 1) % spec.openPerTick === 0) await new Promise((resolve) => setTimeout(resolve, 10));
}
process.stdout.write(`${JSON.stringify(summarise(spec, await Promise.all(streams), now() - started))}\n`);
process.exit(0);
