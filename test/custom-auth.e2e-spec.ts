import type { ConnectErrorData, StartAck } from '@app/contracts';
import { io } from 'socket.io-client';
import { TrustedProxyStrategy } from '../examples/trusted-proxy-auth/trusted-proxy.strategy';
import { postStream } from './support/sse-client';
import { startTestApp, type TestApp } from './support/test-app';

const request = { messages: [{ role: 'user' as const, content: '[sim tokens=3]' }] };
const secret = 'a-shared-proxy-secret-0123456789';

describe('a custom strategy registered by a deployment (examples/trusted-proxy-auth)', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    process.env.TRUSTED_PROXY_SECRET = secret;
    testApp = await startTestApp({ AUTH_MODE: 'trusted-proxy' }, { authStrategies: [TrustedProxyStrategy] });
  });
  afterAll(async () => {
    await testApp.close();
    delete process.env.TRUSTED_PROXY_SECRET;
  });

  it('accepts the identity the proxy vouches for, over HTTP', async () => {
    const result = await postStream(testApp.url, request, {
      headers: { 'x-proxy-secret': secret, 'x-forwarded-user': 'ada@example.com' },
    });

    expect(result.status).toBe(200);
    expect(result.events.at(-1)?.type).toBe('done');
  });

  it.each([
    ['no proxy secret', { 'x-forwarded-user': 'ada@example.com' }],
    ['a wrong proxy secret', { 'x-proxy-secret': 'guess', 'x-forwarded-user': 'ada@example.com' }],
    ['no user', { 'x-proxy-secret': secret }],
  ])('refuses %s with 401', async (_name, headers) => {
    const result = await postStream(testApp.url, request, { headers });

    expect(result.status).toBe(401);
    expect(JSON.parse(result.raw)).toMatchObject({ code: 'unauthorized' });
  });

  it('applies to the Socket.IO handshake too', async () => {
    const connectWith = (extraHeaders: Record<string, string>) =>
      io(`${testApp.url}/completions`, {
        transports: ['websocket'],
        forceNew: true,
        reconnection: false,
        extraHeaders,
      });

    const refused = connectWith({ 'x-forwarded-user': 'ada@example.com' });
    const error = await new Promise<{ data?: ConnectErrorData }>((resolve) =>
      refused.once('connect_error', resolve),
    );
    refused.close();

    const accepted = connectWith({ 'x-proxy-secret': secret, 'x-forwarded-user': 'ada@example.com' });
    await new Promise<void>((resolve) => accepted.once('connect', resolve));
    const ack = await new Promise<StartAck>((resolve) => accepted.emit('completion:start', request, resolve));
    accepted.close();

    expect(error.data).toEqual({ code: 'unauthorized' });
    expect(ack.ok).toBe(true);
  });

  it('lets ownership follow the proxied identity', async () => {
    const ada = { 'x-proxy-secret': secret, 'x-forwarded-user': 'ada' };
    const bob = { 'x-proxy-secret': secret, 'x-forwarded-user': 'bob' };
    const started = await postStream(testApp.url, request, { headers: ada });
    const streamId = started.headers.get('x-stream-id') as string;

    const byBob = await fetch(`${testApp.url}/api/completions/${streamId}/stream`, { headers: bob });
    const byAda = await fetch(`${testApp.url}/api/completions/${streamId}/stream`, { headers: ada });

    expect(byBob.status).toBe(404);
    expect(byAda.status).toBe(200);
    await byAda.text();
  });
});

describe('an unknown AUTH_MODE', () => {
  it('stops the server at start with a line naming AUTH_MODE', async () => {
    await expect(startTestApp({ AUTH_MODE: 'kerberos' })).rejects.toThrow(
      /^Invalid configuration: AUTH_MODE: no strategy named "kerberos"/,
    );
  });
});
