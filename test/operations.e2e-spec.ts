import type { CompletionEvent, StartAck } from '@app/contracts';
import { MAX_SOCKET_PENDING_BYTES } from '@app/socket-io';
import { MAX_PENDING_BYTES } from '@app/sse';
import { connect as connectTcp } from 'node:net';
import { postStream } from './support/sse-client';
import { connect, streamOver } from './support/socket-client';
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

// Graceful shutdown is tested on the real process, SIGTERM and exit code included: process.e2e-spec.ts.

describe('slow readers are dropped, not buffered without bound', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await startTestApp();
  });
  afterAll(() => testApp.close());

  async function metric(name: string, transport: string): Promise<number> {
    const text = await (await fetch(`${testApp.url}/metrics`)).text();
    const match = new RegExp(`${name}\\{transport="${transport}"\\} (\\d+)`).exec(text);
    return match ? Number(match[1]) : 0;
  }

  /** Samples the server's pending bytes for `transport` until `done` holds; returns the largest seen. */
  async function watchPendingUntil(transport: string, done: () => boolean): Promise<number> {
    const deadline = Date.now() + 20_000;
    let largest = 0;
    while (!done()) {
      if (Date.now() > deadline) {
        throw new Error('the stalled reader was not dropped in time');
      }
      largest = Math.max(largest, await metric('llm_gateway_pending_bytes', transport));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return largest;
  }

  it('SSE: a client that stops reading is disconnected once its pending bytes pass the cap', async () => {
    const before = await metric('llm_gateway_dropped_slow_clients_total', 'sse');
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
      const largest = await watchPendingUntil('sse', () => testApp.simulator.stats().aborted > abortedBefore);
      expect(await metric('llm_gateway_dropped_slow_clients_total', 'sse')).toBe(before + 1);
      // The cap (1 MiB) plus the one event that crossed it.
      expect(largest).toBeLessThanOrEqual(MAX_PENDING_BYTES + 4096);
      expect(await metric('llm_gateway_pending_bytes', 'sse')).toBe(0);
    } finally {
      socket.destroy();
    }
  }, 30_000);

  it('Socket.IO: a socket that stops reading is disconnected once its pending bytes pass the cap', async () => {
    const before = await metric('llm_gateway_dropped_slow_clients_total', 'socket.io');
    const abortedBefore = testApp.simulator.stats().aborted;
    const socket = await connect(testApp.url);
    // The client's own TCP socket, to stop reading from it: socket.io-client has no API for a stalled reader.
    const tcp = (
      socket.io.engine as unknown as { transport: { ws: { _socket: { pause(): void; destroy(): void } } } }
    ).transport.ws._socket;
    // 3 × 40,000 events (~18 MB) on one socket: far past the cap once the kernel's buffers are full.
    const acks = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<StartAck>((resolve) =>
            socket.emit('completion:start', user('[sim tokens=40000]'), resolve),
          ),
      ),
    );
    expect(acks.every((ack) => ack.ok)).toBe(true);
    tcp.pause();

    try {
      const largest = await watchPendingUntil(
        'socket.io',
        () => testApp.simulator.stats().aborted >= abortedBefore + 3,
      );
      expect(await metric('llm_gateway_dropped_slow_clients_total', 'socket.io')).toBe(before + 1);
      expect(largest).toBeGreaterThan(0);
      expect(largest).toBeLessThanOrEqual(MAX_SOCKET_PENDING_BYTES + 4096);
    } finally {
      tcp.destroy();
      socket.disconnect();
    }
  }, 30_000);

  it('Socket.IO: a resume replaying a long answer at once is not mistaken for a stalled reader', async () => {
    const socket = await connect(testApp.url);
    const { ack, events } = await streamOver(socket, { ...user('[sim tokens=5000]'), maxTokens: 4096 });
    const other = await connect(testApp.url);
    const replayed: CompletionEvent[] = [];
    other.on('completion', (event) => replayed.push(event));

    await new Promise((resolve) =>
      other.emit('completion:resume', { streamId: ack.ok ? ack.streamId : '', lastSeq: -1 }, resolve),
    );
    await eventually(() => replayed.at(-1)?.type === 'done', 5000);
    socket.disconnect();
    other.disconnect();

    expect(replayed).toHaveLength(events.length);
    expect(events.length).toBeGreaterThan(4096);
  });
});
