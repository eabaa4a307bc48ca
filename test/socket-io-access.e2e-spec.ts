import type { ConnectErrorData } from '@app/contracts';
import { io, type Socket } from 'socket.io-client';
import { WebSocket } from 'ws';
import { startTestApp, type TestApp } from './support/test-app';

/** A raw Engine.IO websocket, open once the server's open packet (`0{"sid":…}`) has arrived. */
function engineConnection(url: string): Promise<WebSocket> {
  const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`);
  return new Promise((resolve, reject) => {
    socket.once('message', (data: Buffer) =>
      data.toString().startsWith('0') ? resolve(socket) : reject(new Error(`unexpected ${data.toString()}`)),
    );
    socket.once('error', reject);
  });
}

/** A bare Engine.IO connection, tried again after each refusal until the server has counted out a closed one. */
async function engineConnectionWhenAdmitted(url: string): Promise<WebSocket> {
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      return await engineConnection(url);
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
  }
}

/**
 * The server counts a closed connection out when its close reaches it, a moment after the client's; until then a
 * new connection may be refused, so this tries again after each refusal (each attempt waits for its outcome).
 */
async function attemptUntilSettled(url: string): Promise<{ socket: Socket; outcome: string }> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const result = await attempt(`${url}/completions`);
    if (result.outcome === 'connected' || Date.now() > deadline) {
      return result;
    }
    result.socket.close();
  }
}

/** What a connection attempt came to: `connected`, or `connect_error:<data.code or message>`. */
function attempt(
  url: string,
  auth: Record<string, string> = {},
): Promise<{ socket: Socket; outcome: string }> {
  const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, auth });
  return new Promise((resolve) => {
    socket.once('connect', () => resolve({ socket, outcome: 'connected' }));
    socket.once('connect_error', (error: Error & { data?: ConnectErrorData }) =>
      resolve({ socket, outcome: `connect_error:${error.data?.code ?? error.message}` }),
    );
  });
}

describe('Socket.IO: only /completions, a bounded number of connections per address', () => {
  let testApp: TestApp;
  const opened: Socket[] = [];

  afterEach(async () => {
    opened.splice(0).forEach((socket) => socket.close());
    await testApp.close();
  });

  it('refuses the main namespace and unknown ones, with or without credentials', async () => {
    testApp = await startTestApp({ AUTH_MODE: 'api-key', AUTH_API_KEYS: 'a-valid-key-0123456789' });
    const outcomes: Record<string, string> = {};
    for (const [name, path, auth] of [
      ['/ without a key', '/', {}],
      ['/ with a valid key', '/', { token: 'a-valid-key-0123456789' }],
      ['/admin with a valid key', '/admin', { token: 'a-valid-key-0123456789' }],
      ['/completions with a valid key', '/completions', { token: 'a-valid-key-0123456789' }],
    ] as const) {
      const { socket, outcome } = await attempt(`${testApp.url}${path}`, auth);
      opened.push(socket);
      outcomes[name] = outcome;
    }

    expect(outcomes).toEqual({
      '/ without a key': 'connect_error:forbidden',
      '/ with a valid key': 'connect_error:forbidden',
      '/admin with a valid key': 'connect_error:Invalid namespace',
      '/completions with a valid key': 'connected',
    });
  });

  it('refuses connections past SOCKET_MAX_CONNECTIONS_PER_ADDRESS, counting those that joined nothing', async () => {
    testApp = await startTestApp({ SOCKET_MAX_CONNECTIONS_PER_ADDRESS: '2' });
    // Bare Engine.IO connections that never join a namespace, as a client holding sockets open does.
    const bare = [await engineConnection(testApp.url), await engineConnection(testApp.url)];
    const pastTheCap = await attempt(`${testApp.url}/completions`);
    opened.push(pastTheCap.socket);
    // The refused client closes its connection; the server counts it out a moment later.
    bare.push(
      await engineConnectionWhenAdmitted(testApp.url),
      await engineConnectionWhenAdmitted(testApp.url),
    );
    const pastTwiceTheCap = await engineConnection(testApp.url).then(
      () => 'open',
      (error: Error) => error.message,
    );
    for (const socket of bare.splice(0, 3)) {
      socket.close();
      await new Promise((resolve) => socket.once('close', resolve));
    }
    const afterThreeClosed = await attemptUntilSettled(testApp.url);
    opened.push(afterThreeClosed.socket);
    bare.forEach((socket) => socket.close());

    expect({
      pastTheCap: pastTheCap.outcome,
      pastTwiceTheCap,
      afterThreeClosed: afterThreeClosed.outcome,
    }).toEqual({
      pastTheCap: 'connect_error:rate_limited',
      pastTwiceTheCap: 'Unexpected server response: 400',
      afterThreeClosed: 'connected',
    });
  });
});
