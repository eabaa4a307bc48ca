import type { StartAck } from '@app/contracts';
import { io } from 'socket.io-client';
import type { CompletionClient } from './support/socket-client';
import { startTestApp, type TestApp } from './support/test-app';

const longStream = { messages: [{ role: 'user' as const, content: '[sim tokens=400 tps=40]' }] };

/** AUTH_MODE=none, two streams per principal at once: clients are told apart by the address a proxy gives. */
describe('anonymous clients behind a proxy (contract v1.1: limits per client address)', () => {
  let testApp: TestApp;
  let cancel: AbortController;

  beforeEach(() => {
    cancel = new AbortController();
  });
  afterEach(async () => {
    // Closing the clients first ends their streams (grace 0), so the server's shutdown need not wait for them.
    cancel.abort();
    await testApp.close();
  });

  const startAs = (forwardedFor: string | undefined) =>
    fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}),
      },
      body: JSON.stringify(longStream),
      signal: cancel.signal,
    });

  function socketAs(forwardedFor: string): Promise<CompletionClient> {
    const socket: CompletionClient = io(`${testApp.url}/completions`, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      extraHeaders: { 'x-forwarded-for': forwardedFor },
    });
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', reject);
    });
  }

  const ackOf = (socket: CompletionClient) =>
    new Promise<StartAck>((resolve) => socket.emit('completion:start', longStream, resolve)).then((ack) =>
      ack.ok ? 'ok' : ack.error.code,
    );

  it('with TRUST_PROXY=loopback, one client at its limit does not refuse another, on either transport', async () => {
    testApp = await startTestApp({ TRUST_PROXY: 'loopback', RATE_LIMIT_CONCURRENT_STREAMS: '2' });
    const first = [await startAs('203.0.113.1'), await startAs('203.0.113.1'), await startAs('203.0.113.1')];
    const second = await startAs('203.0.113.2');
    const socketOfFirst = await socketAs('203.0.113.1');
    const socketOfThird = await socketAs('203.0.113.3');
    const acks = { first: await ackOf(socketOfFirst), third: await ackOf(socketOfThird) };
    // Ownership stays with the stream id, as documented for AUTH_MODE=none: another client may cancel it.
    const streamOfFirst = first[0].headers.get('x-stream-id') as string;
    const cancelledBySecond = await fetch(`${testApp.url}/api/completions/${streamOfFirst}`, {
      method: 'DELETE',
      headers: { 'x-forwarded-for': '203.0.113.2' },
    });
    socketOfFirst.disconnect();
    socketOfThird.disconnect();

    expect({
      first: first.map((response) => response.status),
      second: second.status,
      acks,
      cancelledBySecond: cancelledBySecond.status,
    }).toEqual({
      first: [200, 200, 429],
      second: 200,
      acks: { first: 'rate_limited', third: 'ok' },
      cancelledBySecond: 204,
    });
  });

  it('without TRUST_PROXY, X-Forwarded-For is not believed: a client cannot pose as many', async () => {
    testApp = await startTestApp({ RATE_LIMIT_CONCURRENT_STREAMS: '2' });
    const statuses = [];
    for (const forwardedFor of ['203.0.113.1', '203.0.113.2', '203.0.113.3']) {
      statuses.push((await startAs(forwardedFor)).status);
    }
    const socket = await socketAs('203.0.113.4');
    const ack = await ackOf(socket);
    socket.disconnect();

    expect({ statuses, ack }).toEqual({ statuses: [200, 200, 429], ack: 'rate_limited' });
  });
});
