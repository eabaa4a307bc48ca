import type { CompletionEvent, StartAck } from '@app/contracts';
import { connect as connectTcp } from 'node:net';
import { postStream } from './support/sse-client';
import { type CompletionClient, connect, streamOver } from './support/socket-client';
import { eventually, startTestApp, type TestApp } from './support/test-app';

const user = (content: string) => ({ messages: [{ role: 'user' as const, content }] });

describe('health, metrics and API docs', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await startTestApp();
  });
  afterAll(() => testApp.close());

  it('reports liveness and readiness, the upstream included', async () => {
    const live = await fetch(`${testApp.url}/health/live`);
    const ready = await fetch(`${testApp.url}/health/ready`);

    expect(live.status).toBe(200);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      status: 'ok',
      info: { shutdown: { status: 'up' }, upstream: { status: 'up', provider: 'simulator' } },
    });
  });

  it('counts streams, tokens, cancellations and errors per transport in Prometheus format', async () => {
    await postStream(testApp.url, user('[sim tokens=7]'));
    const socket = await connect(testApp.url);
    await streamOver(socket, user('[sim tokens=5]'));
    await streamOver(socket, user('[sim fault=server_error]'));
    socket.disconnect();

    const response = await fetch(`${testApp.url}/metrics`);
    const text = await response.text();

    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(text).toMatch(
      /llm_gateway_streams_total\{transport="sse",provider="simulator",outcome="done"\} [1-9]/,
    );
    expect(text).toMatch(
      /llm_gateway_tokens_total\{transport="socket.io",provider="simulator"\} ([5-9]|\d\d)/,
    );
    expect(text).toMatch(
      /llm_gateway_upstream_errors_total\{code="upstream_unavailable",provider="simulator"\} 1/,
    );
    expect(text).toMatch(/llm_gateway_time_to_first_token_seconds_bucket/);
    expect(text).toMatch(/process_cpu_user_seconds_total/);
  });

  it('serves the OpenAPI document of the HTTP surface', async () => {
    const response = await fetch(`${testApp.url}/api/docs-json`);
    const document = (await response.json()) as { paths: Record<string, unknown> };

    expect(response.status).toBe(200);
    expect(Object.keys(document.paths)).toEqual(
      expect.arrayContaining(['/api/completions/stream', '/api/completions/{streamId}', '/api/time']),
    );
    expect((await fetch(`${testApp.url}/api/docs`)).status).toBe(200);
  });
});

describe('graceful shutdown', () => {
  it('refuses new streams, lets short ones finish, ends the rest with shutting_down: every stream gets its terminal event', async () => {
    const testApp = await startTestApp({ SHUTDOWN_GRACE_MS: '6000', SIMULATOR_PROFILE: 'fast' });
    const sockets = await Promise.all([1, 2, 3, 4].map(() => connect(testApp.url)));
    const long = user('[sim tokens=400 tps=20]');
    // One second long: they finish well inside the grace; the long ones (20 s) cannot.
    const short = user('[sim tokens=20 tps=20]');
    const runs: Promise<CompletionEvent[]>[] = [];
    for (let index = 0; index < 100; index += 1) {
      const request = index % 10 === 0 ? short : long;
      runs.push(
        index % 2 === 0
          ? postStream(testApp.url, request).then(({ events }) => events)
          : streamOver(sockets[index % 4], request).then(({ events }) => events),
      );
    }
    await eventually(() => testApp.simulator.stats().active >= 100, 10_000);

    const closing = testApp.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const refusedHttp = await fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(short),
    });
    const refusedSocket = await new Promise<StartAck>((resolve) =>
      sockets[0].emit('completion:start', short, resolve),
    );
    const readiness = await fetch(`${testApp.url}/health/ready`);
    const results = await Promise.all(runs);
    await closing;
    sockets.forEach((socket: CompletionClient) => socket.disconnect());

    expect(refusedHttp.status).toBe(503);
    expect(await refusedHttp.json()).toMatchObject({ code: 'shutting_down' });
    expect(refusedSocket).toMatchObject({ ok: false, error: { code: 'shutting_down' } });
    expect(readiness.status).toBe(503);
    const endings = results.map((events) => {
      const last = events.at(-1);
      return last?.type === 'error' ? last.error.code : last?.type === 'done' ? last.finishReason : 'none';
    });
    expect(endings.filter((ending) => ending === 'stop')).toHaveLength(10);
    expect(endings.filter((ending) => ending === 'shutting_down')).toHaveLength(90);
    const shuttingDown = results.find((events) => events.at(-1)?.type === 'error')?.at(-1);
    expect(shuttingDown).toMatchObject({ error: { retryable: true } });
    expect(testApp.simulator.stats().active).toBe(0);
  }, 30_000);
});

describe('slow readers are dropped, not buffered without bound', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await startTestApp();
  });
  afterAll(() => testApp.close());

  async function droppedCount(transport: string): Promise<number> {
    const text = await (await fetch(`${testApp.url}/metrics`)).text();
    const match = new RegExp(
      `llm_gateway_dropped_slow_clients_total\\{transport="${transport}"\\} (\\d+)`,
    ).exec(text);
    return match ? Number(match[1]) : 0;
  }

  it('SSE: a client that stops reading is disconnected once its pending bytes pass the cap', async () => {
    const before = await droppedCount('sse');
    const abortedBefore = testApp.simulator.stats().aborted;
    const { port } = new URL(testApp.url);
    // 100,000 events (~17 MB) outgrow what loopback's kernel buffers absorb, whatever their autotuning.
    const body = JSON.stringify(user('[sim tokens=100000]'));
    const socket = connectTcp(Number(port), '127.0.0.1');
    // Never read: once the kernel's buffers are full, the server's queue is all that can grow.
    socket.write(
      `POST /api/completions/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    socket.pause();

    try {
      await eventually(() => testApp.simulator.stats().aborted > abortedBefore, 20_000);
      expect(await droppedCount('sse')).toBe(before + 1);
    } finally {
      socket.destroy();
    }
  }, 30_000);

  it('Socket.IO: a socket that stops reading is disconnected once its pending packets pass the cap', async () => {
    const before = await droppedCount('socket.io');
    const abortedBefore = testApp.simulator.stats().aborted;
    const socket = await connect(testApp.url);
    // The client's own TCP socket, to stop reading from it: socket.io-client has no API for a stalled reader.
    const tcp = (
      socket.io.engine as unknown as { transport: { ws: { _socket: { pause(): void; destroy(): void } } } }
    ).transport.ws._socket;
    const acks = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<StartAck>((resolve) =>
            socket.emit('completion:start', user('[sim tokens=20000]'), resolve),
          ),
      ),
    );
    expect(acks.every((ack) => ack.ok)).toBe(true);
    tcp.pause();

    try {
      await eventually(() => testApp.simulator.stats().aborted >= abortedBefore + 3, 20_000);
      expect(await droppedCount('socket.io')).toBe(before + 1);
    } finally {
      tcp.destroy();
      socket.disconnect();
    }
  }, 30_000);
});
