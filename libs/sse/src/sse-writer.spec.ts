import type { CompletionEvent } from '@app/contracts';
import type { Response } from 'express';
import { once } from 'node:events';
import { createServer, get, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { type SseWriter, SseWriters } from './sse-writer';

const PING_INTERVAL_MS = 15_000;
const STEP_MS = PING_INTERVAL_MS / 15;

function token(seq: number): CompletionEvent {
  return { type: 'token', streamId: 's', seq, ts: 0, text: `t${seq}` };
}

/**
 * Real responses over loopback; only the ping timer (setInterval) is faked, so that a test can say exactly how long
 * a response has been quiet. What the client received is read from its socket.
 */
describe('SseWriters', () => {
  let server: Server;
  let writers: SseWriters;
  const opened: { writer: SseWriter; received: () => string; response: ServerResponse }[] = [];

  beforeEach(async () => {
    jest.useFakeTimers({
      doNotFake: [
        'nextTick',
        'setImmediate',
        'queueMicrotask',
        'setTimeout',
        'clearTimeout',
        'Date',
        'hrtime',
        'performance',
      ],
    });
    writers = new SseWriters(PING_INTERVAL_MS);
    server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });

  afterEach(async () => {
    for (const { response } of opened.splice(0)) {
      response.destroy();
    }
    server.closeAllConnections();
    server.close();
    writers.close();
    jest.useRealTimers();
  });

  /** Opens one stream: the client's request, and the server's writer for it once its headers have arrived. */
  async function open(): Promise<(typeof opened)[number]> {
    const serverSide = once(server, 'request') as Promise<[IncomingMessage, ServerResponse]>;
    const clientSide = new Promise<IncomingMessage>((resolve) =>
      get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, resolve),
    );
    const [, response] = await serverSide;
    // No event is written: the head leaves on its own once the tick is over.
    const writer = writers.add(response as unknown as Response, 's');
    const message = await clientSide;
    let text = '';
    message.setEncoding('utf8');
    message.on('data', (chunk: string) => (text += chunk));
    const stream = { writer, received: () => text, response };
    opened.push(stream);
    return stream;
  }

  /** Waits until the client has received `count` pings, and says what it received if it never does. */
  async function pingsReceived(stream: { received: () => string }, count: number): Promise<void> {
    const deadline = Date.now() + 5000;
    while (stream.received().split(': ping').length - 1 < count) {
      if (Date.now() > deadline) {
        throw new Error(`expected ${count} pings, received: ${JSON.stringify(stream.received())}`);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Lets whatever was written reach the client: a token written after the pings under test. */
  async function flushed(
    stream: { writer: SseWriter; received: () => string },
    seq: number,
  ): Promise<string> {
    stream.writer.send(token(seq));
    const deadline = Date.now() + 5000;
    while (!stream.received().includes(`id: ${seq}\n`)) {
      if (Date.now() > deadline) {
        throw new Error(`token ${seq} never arrived; received: ${JSON.stringify(stream.received())}`);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    return stream.received();
  }

  it('sends the head and the events of its tick in one socket write', async () => {
    const serverSide = once(server, 'request') as Promise<[IncomingMessage, ServerResponse]>;
    const clientSide = new Promise<IncomingMessage>((resolve) =>
      get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, resolve),
    );
    const [, response] = await serverSide;
    const socket = response.socket as Socket;
    const writes: string[] = [];
    const writev = socket._writev?.bind(socket);
    const write = socket._write.bind(socket);
    socket._writev = (chunks, callback) => {
      writes.push(`writev of ${chunks.length}`);
      writev?.(chunks, callback);
    };
    socket._write = (chunk, encoding, callback) => {
      writes.push('write');
      write(chunk, encoding, callback);
    };

    const writer = writers.add(response as unknown as Response, 's');
    writer.send(token(0));
    writer.send(token(1));
    const message = await clientSide;
    opened.push({ writer, received: () => '', response });

    expect(message.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(writes).toHaveLength(1);
    expect(writes[0]).toMatch(/^writev/);
  });

  it('pings a quiet response once per interval, and not before 14 of its 15 steps have passed', async () => {
    const stream = await open();

    jest.advanceTimersByTime(14 * STEP_MS);
    expect(await flushed(stream, 0)).not.toContain(': ping');

    // The token was written just after step 14: step 29 is the first with 15 quiet steps behind it.
    jest.advanceTimersByTime(14 * STEP_MS);
    expect(await flushed(stream, 1)).not.toContain(': ping');
    jest.advanceTimersByTime(15 * STEP_MS);
    await pingsReceived(stream, 1);
    jest.advanceTimersByTime(15 * STEP_MS);
    await pingsReceived(stream, 2);
  });

  it('does not ping a response that events keep busy, and pings each quiet one of several', async () => {
    const busy = await open();
    const quiet = await open();

    for (let seq = 0; seq < 40; seq += 1) {
      busy.writer.send(token(seq));
      jest.advanceTimersByTime(STEP_MS);
    }
    await pingsReceived(quiet, 2);
    expect(await flushed(busy, 40)).not.toContain(': ping');
  });

  it('keeps one timer for any number of responses, until it is closed', async () => {
    const first = await open();
    await open();
    writers.delete(first.writer);
    const third = await open();
    expect(jest.getTimerCount()).toBe(1);

    jest.advanceTimersByTime(PING_INTERVAL_MS);
    await pingsReceived(third, 1);
    expect(first.received()).not.toContain(': ping');
    writers.close();
    expect(jest.getTimerCount()).toBe(0);
  });
});
