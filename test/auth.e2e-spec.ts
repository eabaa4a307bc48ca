import type { ConnectErrorData, SimpleAck, StartAck } from '@app/contracts';
import { SignJWT } from 'jose';
import { createHash } from 'node:crypto';
import { io } from 'socket.io-client';
import { JwksServer, sign, type SigningKey, signingKey } from './support/jwks-server';
import { postStream, readStream } from './support/sse-client';
import { connect, type CompletionClient } from './support/socket-client';
import { startTestApp, type TestApp } from './support/test-app';

const request = { messages: [{ role: 'user' as const, content: 'hi' }] };

/** Both transports, answering the same question: is this credential accepted, and if not, with which code? */
async function overHttp(url: string, headers: Record<string, string>): Promise<string> {
  const result = await postStream(url, request, { headers });
  if (result.status === 200) {
    return result.events.at(-1)?.type === 'done' ? 'ok' : 'stream-failed';
  }
  return `${result.status}:${(JSON.parse(result.raw) as { code: string }).code}`;
}

async function overSocket(url: string, token: string | undefined): Promise<string> {
  const socket = io(`${url}/completions`, {
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    auth: token === undefined ? {} : { token },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', reject);
    });
  } catch (error) {
    return `connect_error:${((error as { data?: ConnectErrorData }).data ?? { code: 'none' }).code}`;
  } finally {
    if (!socket.connected) socket.close();
  }
  const ack = await new Promise<StartAck>((resolve) => socket.emit('completion:start', request, resolve));
  socket.close();
  return ack.ok ? 'ok' : `ack:${ack.error.code}`;
}

describe('auth: api-key mode', () => {
  let testApp: TestApp;
  const keys = ['alice-key-0123456789', 'bob-key-0123456789'];

  beforeAll(async () => {
    const hashedBob = `sha256:${createHash('sha256').update(keys[1]).digest('hex')}`;
    testApp = await startTestApp({ AUTH_MODE: 'api-key', AUTH_API_KEYS: `${keys[0]},${hashedBob}` });
  });
  afterAll(() => testApp.close());

  it.each([
    ['no credentials', {}, '401:unauthorized'],
    ['a wrong key', { authorization: 'Bearer wrong' }, '401:unauthorized'],
    ['a key in X-API-Key', { 'x-api-key': keys[0] }, 'ok'],
    ['a valid bearer key', { authorization: `Bearer ${keys[0]}` }, 'ok'],
    ['a key configured hashed', { authorization: `Bearer ${keys[1]}` }, 'ok'],
    ['a Basic scheme', { authorization: `Basic ${keys[0]}` }, '401:unauthorized'],
    ['a very long key', { authorization: `Bearer ${'k'.repeat(7000)}` }, '401:unauthorized'],
  ])('HTTP with %s', async (_name, headers, expected) => {
    expect(await overHttp(testApp.url, headers)).toBe(expected);
  });

  it.each([
    ['no credentials', undefined, 'connect_error:unauthorized'],
    ['a wrong key', 'wrong', 'connect_error:unauthorized'],
    ['a valid key', keys[0], 'ok'],
  ])('Socket.IO with %s', async (_name, token, expected) => {
    expect(await overSocket(testApp.url, token)).toBe(expected);
  });

  it('keeps each stream its principal own: another key gets 404 on cancel and resume', async () => {
    const alice = { authorization: `Bearer ${keys[0]}` };
    const bob = { authorization: `Bearer ${keys[1]}` };
    const started = await postStream(
      testApp.url,
      { messages: [{ role: 'user', content: '[sim tokens=10]' }] },
      { headers: alice },
    );
    const streamId = started.headers.get('x-stream-id') as string;

    const cancelByBob = await fetch(`${testApp.url}/api/completions/${streamId}`, {
      method: 'DELETE',
      headers: bob,
    });
    const resumeByBob = await fetch(`${testApp.url}/api/completions/${streamId}/stream`, { headers: bob });
    const resumeByAlice = await readStream(
      await fetch(`${testApp.url}/api/completions/${streamId}/stream`, {
        headers: { ...alice, 'last-event-id': '0' },
      }),
    );

    expect(cancelByBob.status).toBe(404);
    expect(resumeByBob.status).toBe(404);
    expect(resumeByAlice.events).toEqual(started.events.slice(1));

    const bobSocket = await connectWith(testApp.url, keys[1]);
    const cancelAck = await new Promise<SimpleAck>((resolve) =>
      bobSocket.emit('completion:cancel', { streamId }, resolve),
    );
    const resumeAck = await new Promise<SimpleAck>((resolve) =>
      bobSocket.emit('completion:resume', { streamId, lastSeq: -1 }, resolve),
    );
    bobSocket.close();
    expect(cancelAck).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(resumeAck).toMatchObject({ ok: false, error: { code: 'not_found' } });
  });

  it('lets a native-EventSource-style GET resume with the stream-scoped resume token, and nothing else', async () => {
    const alice = { authorization: `Bearer ${keys[0]}` };
    const started = await postStream(
      testApp.url,
      { messages: [{ role: 'user', content: '[sim tokens=10]' }] },
      { headers: alice },
    );
    const streamId = started.headers.get('x-stream-id') as string;
    const token = started.headers.get('x-resume-token') as string;
    const other = await postStream(testApp.url, request, { headers: alice });
    const otherId = other.headers.get('x-stream-id') as string;

    const resumed = await readStream(
      await fetch(
        `${testApp.url}/api/completions/${streamId}/stream?lastEventId=3&resumeToken=${encodeURIComponent(token)}`,
      ),
    );
    const wrongStream = await fetch(
      `${testApp.url}/api/completions/${otherId}/stream?resumeToken=${encodeURIComponent(token)}`,
    );
    const asCredential = await fetch(
      `${testApp.url}/api/completions/stream?resumeToken=${encodeURIComponent(token)}`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(request),
      },
    );

    expect(token).toMatch(/^[\w-]+\.[\w-]+$/);
    expect(resumed.events).toEqual(started.events.slice(4));
    expect(wrongStream.status).toBe(401);
    expect(asCredential.status).toBe(401);
  });
});

async function connectWith(url: string, token: string): Promise<CompletionClient> {
  const socket: CompletionClient = io(`${url}/completions`, {
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    auth: { token },
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  return socket;
}

describe('auth: jwt mode with a JWKS URL', () => {
  let testApp: TestApp;
  const jwks = new JwksServer();
  let current: SigningKey;
  let next: SigningKey;
  let stranger: SigningKey;
  const claims = { sub: 'user-1', iss: 'https://idp.test', aud: 'llm-gateway' };

  beforeAll(async () => {
    [current, next, stranger] = await Promise.all([
      signingKey('k1'),
      signingKey('k2', 'ES256'),
      signingKey('k3'),
    ]);
    jwks.keys = [current.jwk];
    const url = await jwks.start();
    testApp = await startTestApp({
      AUTH_MODE: 'jwt',
      AUTH_JWKS_URL: url,
      AUTH_JWT_ISSUER: claims.iss,
      AUTH_JWT_AUDIENCE: claims.aud,
      AUTH_JWKS_COOLDOWN_MS: '0',
    });
  });
  afterAll(async () => {
    await testApp.close();
    await jwks.close();
  });

  const cases: [string, () => Promise<string | undefined>, string][] = [
    ['no token', async () => undefined, 'unauthorized'],
    ['a valid token', () => sign(current, claims), 'ok'],
    [
      'an expired token',
      () => sign(current, { ...claims, exp: Math.floor(Date.now() / 1000) - 3600 }),
      'unauthorized',
    ],
    ['a wrong audience', () => sign(current, { ...claims, aud: 'someone-else' }), 'unauthorized'],
    ['a wrong issuer', () => sign(current, { ...claims, iss: 'https://evil.test' }), 'unauthorized'],
    [
      'a token not valid yet',
      () => sign(current, { ...claims, nbf: Math.floor(Date.now() / 1000) + 3600 }),
      'unauthorized',
    ],
    ['a token signed by an unknown key', () => sign(stranger, claims), 'unauthorized'],
    ['alg none', async () => unsignedToken(claims), 'unauthorized'],
    ['an HS256 token (algorithm confusion)', () => hs256Token(claims), 'unauthorized'],
    ['a broken JWT', async () => 'eyJhbGciOi.broken.token', 'unauthorized'],
    // Raw UTF-8 bytes in the header (a header is a byte string; fetch refuses code points above 255).
    ['non-ASCII garbage', async () => Buffer.from('ü🙂.ü🙂.ü🙂').toString('latin1'), 'unauthorized'],
    ['a very long token', async () => `${'a'.repeat(9000)}.b.c`, 'unauthorized'],
  ];

  it.each(cases)('HTTP with %s', async (_name, token, expected) => {
    const value = await token();
    const result = await overHttp(
      testApp.url,
      value === undefined ? {} : { authorization: `Bearer ${value}` },
    );
    expect(result).toBe(expected === 'ok' ? 'ok' : `401:${expected}`);
  });

  it.each(cases)('Socket.IO with %s', async (_name, token, expected) => {
    const result = await overSocket(testApp.url, await token());
    expect(result).toBe(expected === 'ok' ? 'ok' : `connect_error:${expected}`);
  });

  it('follows a key rotation: a token with a new kid makes the gateway refetch the JWKS', async () => {
    const before = await sign(next, claims);
    expect(await overHttp(testApp.url, { authorization: `Bearer ${before}` })).toBe('401:unauthorized');

    jwks.keys = [current.jwk, next.jwk];
    const fetchesBefore = jwks.fetches;

    expect(await overHttp(testApp.url, { authorization: `Bearer ${before}` })).toBe('ok');
    expect(jwks.fetches).toBeGreaterThan(fetchesBefore);
  });

  it('keeps serving after every malformed credential', async () => {
    expect(await overHttp(testApp.url, { authorization: `Bearer ${await sign(current, claims)}` })).toBe(
      'ok',
    );
  });
});

function unsignedToken(claims: Record<string, string>): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode({ ...claims, exp: Math.floor(Date.now() / 1000) + 300 })}.`;
}

function hs256Token(claims: Record<string, string>): Promise<string> {
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode('a-secret-the-server-does-not-know'));
}

describe('auth: jwt mode with an HS256 secret', () => {
  let testApp: TestApp;
  const secret = 'an-hs256-secret-of-enough-length-0123456789';

  beforeAll(async () => {
    testApp = await startTestApp({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: secret });
  });
  afterAll(() => testApp.close());

  it('accepts a token signed with the secret and refuses one signed with another', async () => {
    const sub = (key: string) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('u')
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode(key));

    expect(await overHttp(testApp.url, { authorization: `Bearer ${await sub(secret)}` })).toBe('ok');
    expect(await overHttp(testApp.url, { authorization: `Bearer ${await sub(`${secret}x`)}` })).toBe(
      '401:unauthorized',
    );
  });
});

describe('limits per principal', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await startTestApp({ RATE_LIMIT_PER_MINUTE: '4', RATE_LIMIT_CONCURRENT_STREAMS: '2' });
  });
  afterAll(() => testApp.close());

  it('refuses a third concurrent stream on either transport, then the fifth start in the minute', async () => {
    const slow = { messages: [{ role: 'user' as const, content: '[sim tokens=100 tps=20]' }] };
    const socket = await connect(testApp.url);
    const first = await new Promise<StartAck>((resolve) => socket.emit('completion:start', slow, resolve));
    const second = await new Promise<StartAck>((resolve) => socket.emit('completion:start', slow, resolve));
    const thirdOverSocket = await new Promise<StartAck>((resolve) =>
      socket.emit('completion:start', slow, resolve),
    );
    const thirdOverHttp = await fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(slow),
    });

    expect(first.ok && second.ok).toBe(true);
    expect(thirdOverSocket).toMatchObject({
      ok: false,
      error: { code: 'rate_limited', retryAfterMs: expect.any(Number) },
    });
    expect(thirdOverHttp.status).toBe(429);
    expect(thirdOverHttp.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await thirdOverHttp.json()).toMatchObject({ code: 'rate_limited' });

    for (const ack of [first, second]) {
      if (ack.ok)
        await new Promise((resolve) => socket.emit('completion:cancel', { streamId: ack.streamId }, resolve));
    }
    socket.close();
    const quick = { messages: [{ role: 'user' as const, content: '[sim tokens=2]' }] };
    expect((await postStream(testApp.url, quick)).status).toBe(200);
    expect((await postStream(testApp.url, quick)).status).toBe(200);
    const overRate = await postStream(testApp.url, quick);
    expect(overRate.status).toBe(429);
  });
});

describe('stream ids are scoped to their owner (no existence oracle, no squatting)', () => {
  let testApp: TestApp;
  const alice = { authorization: 'Bearer alice-key-0123456789' };
  const bob = { authorization: 'Bearer bob-key-0123456789' };
  const long = (streamId: string) => ({
    messages: [{ role: 'user' as const, content: '[sim tokens=400 tps=40]' }],
    streamId,
  });

  beforeAll(async () => {
    testApp = await startTestApp({
      AUTH_MODE: 'api-key',
      AUTH_API_KEYS: 'alice-key-0123456789,bob-key-0123456789',
    });
  });
  afterAll(() => testApp.close());

  it("answers another principal's running or retained id exactly as a fresh one, on both transports", async () => {
    const cancel = new AbortController();
    const running = await fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: { ...alice, 'content-type': 'application/json' },
      body: JSON.stringify(long('alices-running-id')),
      signal: cancel.signal,
    });
    const alongside = await fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: { ...alice, 'content-type': 'application/json' },
      body: JSON.stringify(long('alices-other-id')),
      signal: cancel.signal,
    });
    const retained = await postStream(
      testApp.url,
      { messages: [{ role: 'user', content: '[sim tokens=5]' }], streamId: 'alices-retained-id' },
      { headers: alice },
    );
    const fresh = await postStream(
      testApp.url,
      { messages: [{ role: 'user', content: '[sim tokens=5]' }], streamId: 'nobodys-id' },
      { headers: bob },
    );
    const bobOnRunning = await postStream(
      testApp.url,
      { messages: [{ role: 'user', content: '[sim tokens=5]' }], streamId: 'alices-running-id' },
      { headers: bob },
    );
    const bobOnRetained = await postStream(
      testApp.url,
      { messages: [{ role: 'user', content: '[sim tokens=5]' }], streamId: 'alices-retained-id' },
      { headers: bob },
    );
    const bobSocket = await connectWith(testApp.url, 'bob-key-0123456789');
    const socketAck = await new Promise<StartAck>((resolve) =>
      bobSocket.emit('completion:start', long('alices-other-id'), resolve),
    );
    const cancelAck = await new Promise<SimpleAck>((resolve) =>
      bobSocket.emit('completion:cancel', { streamId: 'alices-other-id' }, resolve),
    );
    bobSocket.close();
    // Alice's stream was not touched by Bob's cancel of his own: she still follows it live.
    const aliceResume = await fetch(`${testApp.url}/api/completions/alices-other-id/stream`, {
      headers: { ...alice, 'last-event-id': '0' },
      signal: cancel.signal,
    });
    const aliceDuplicate = await postStream(testApp.url, long('alices-running-id'), { headers: alice });
    cancel.abort();

    const shape = (result: Awaited<ReturnType<typeof postStream>>) =>
      `${result.status}:${result.events.map((event) => event.type).join(',')}`;
    expect({
      running: [running.status, alongside.status],
      retained: shape(retained),
      bobOnRunning: shape(bobOnRunning),
      bobOnRetained: shape(bobOnRetained),
      socketAck: socketAck.ok,
      cancelAck: cancelAck.ok,
      aliceResume: aliceResume.status,
      aliceDuplicate: aliceDuplicate.status,
    }).toEqual({
      running: [200, 200],
      retained: shape(fresh),
      bobOnRunning: shape(fresh),
      bobOnRetained: shape(fresh),
      socketAck: true,
      cancelAck: true,
      aliceResume: 200,
      aliceDuplicate: 400,
    });
  });
});

describe('auth: jwt hardening (exp required, unambiguous principals, one clock tolerance)', () => {
  const secret = 'an-hs256-secret-of-enough-length-0123456789';
  const token = (claims: { sub: string; iss?: string; exp?: number | null }) => {
    const jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(claims.sub);
    if (claims.iss !== undefined) jwt.setIssuer(claims.iss);
    if (claims.exp !== null) jwt.setExpirationTime(claims.exp ?? '5m');
    return jwt.sign(new TextEncoder().encode(secret));
  };
  let testApp: TestApp;

  afterEach(() => testApp.close());

  it('refuses a token without exp on both transports, unless AUTH_JWT_REQUIRE_EXP=false', async () => {
    testApp = await startTestApp({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: secret });
    const forever = await token({ sub: 'u', exp: null });
    const http = await fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: { authorization: `Bearer ${forever}`, 'content-type': 'application/json' },
      body: JSON.stringify(request),
    });
    const refused = {
      http: `${http.status}:${((await http.json()) as { detail: string }).detail}`,
      socket: await overSocket(testApp.url, forever),
    };
    await testApp.close();
    testApp = await startTestApp({
      AUTH_MODE: 'jwt',
      AUTH_JWT_SECRET: secret,
      AUTH_JWT_REQUIRE_EXP: 'false',
    });
    const optedOut = {
      http: await overHttp(testApp.url, { authorization: `Bearer ${forever}` }),
      socket: await overSocket(testApp.url, forever),
    };

    expect({ refused, optedOut }).toEqual({
      refused: { http: '401:The token has no exp claim.', socket: 'connect_error:unauthorized' },
      optedOut: { http: 'ok', socket: 'ok' },
    });
  });

  it('keeps (iss "a:b", sub "c") and (iss "a", sub "b:c") apart: one cannot cancel the other’s stream', async () => {
    testApp = await startTestApp({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: secret });
    const alice = { authorization: `Bearer ${await token({ iss: 'a:b', sub: 'c' })}` };
    const mallory = { authorization: `Bearer ${await token({ iss: 'a', sub: 'b:c' })}` };
    const cancel = new AbortController();
    const started = await fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: { ...alice, 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: '[sim tokens=400 tps=40]' }] }),
      signal: cancel.signal,
    });
    const streamId = started.headers.get('x-stream-id') as string;
    const byMallory = await fetch(`${testApp.url}/api/completions/${streamId}`, {
      method: 'DELETE',
      headers: mallory,
    });
    const byAlice = await fetch(`${testApp.url}/api/completions/${streamId}`, {
      method: 'DELETE',
      headers: alice,
    });
    cancel.abort();

    expect({ byMallory: byMallory.status, byAlice: byAlice.status }).toEqual({
      byMallory: 404,
      byAlice: 204,
    });
  });

  it('allows the same clock skew on every socket event as at the handshake', async () => {
    testApp = await startTestApp({
      AUTH_MODE: 'jwt',
      AUTH_JWT_SECRET: secret,
      AUTH_JWT_CLOCK_TOLERANCE_SEC: '30',
    });
    // Expired 10 s ago by our clock: within the 30 s tolerance, so a skewed issuer's token is accepted...
    const skewed = await token({ sub: 'u', exp: Math.floor(Date.now() / 1000) - 10 });
    const socket = await connectWith(testApp.url, skewed);
    // ...and the socket may act on it, not refused as expired at the first event.
    const ack = await new Promise<StartAck>((resolve) => socket.emit('completion:start', request, resolve));
    socket.close();

    expect(ack).toMatchObject({ ok: true });
  });
});

describe('resume tokens carry nothing derived from the API key alone', () => {
  const key = 'weak-key-0123456789';
  const digest = createHash('sha256').update(key).digest();
  /** Every 8-character window of the key's unsalted digest, as hex and as base64url: what an offline guess would match. */
  const keyDerived = [digest.toString('hex'), digest.toString('base64url'), key].flatMap((form) =>
    Array.from({ length: form.length - 7 }, (_, index) => form.slice(index, index + 8)),
  );

  async function tokenFrom(secret: string): Promise<{ token: string; owner: string }> {
    const testApp = await startTestApp({
      AUTH_MODE: 'api-key',
      AUTH_API_KEYS: key,
      AUTH_RESUME_SECRET: secret,
    });
    try {
      const started = await postStream(
        testApp.url,
        { messages: [{ role: 'user', content: '[sim tokens=2]' }] },
        { headers: { authorization: `Bearer ${key}` } },
      );
      const token = started.headers.get('x-resume-token') as string;
      const [payload] = token.split('.');
      const [, owner] = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as [string, string];
      return { token, owner };
    } finally {
      await testApp.close();
    }
  }

  it('names the owner by an HMAC under the server secret: unguessable offline, stable across instances', async () => {
    const first = await tokenFrom('server-secret-one-0123456789abcdef');
    const sameSecret = await tokenFrom('server-secret-one-0123456789abcdef');
    const otherSecret = await tokenFrom('server-secret-two-0123456789abcdef');
    const decoded = Buffer.from(first.token.split('.')[0], 'base64url').toString('utf8');

    expect(keyDerived.filter((window) => first.token.includes(window) || decoded.includes(window))).toEqual(
      [],
    );
    expect(first.owner).toMatch(/^key:[0-9a-f]{32}$/);
    expect(sameSecret.owner).toBe(first.owner);
    expect(otherSecret.owner).not.toBe(first.owner);
  });
});
