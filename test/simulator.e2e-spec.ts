import OpenAI from 'openai';
import { request as httpRequest } from 'node:http';
import { postStream } from './support/sse-client';
import { startSimulatorProcess, type SimulatorProcess } from './support/simulator-process';
import { startTestApp, type TestApp } from './support/test-app';

/** A raw request, so that the Host header is exactly what the test says (fetch forbids setting it). */
function rawPost(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const { hostname, port, pathname } = new URL(url);
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      {
        host: hostname,
        port,
        path: pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
      },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      },
    );
    request.on('error', reject);
    request.end(JSON.stringify({ messages: [{ role: 'user', content: '[sim tokens=3]' }] }));
  });
}

describe('the built-in simulator is no side door (issue 23, item 8)', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await startTestApp();
  });
  afterAll(() => testApp.close());

  it('the gateway still streams through it, on SSE and /v1', async () => {
    const { events } = await postStream(testApp.url, {
      messages: [{ role: 'user', content: '[sim tokens=12]' }],
    });
    expect(events.filter((event) => event.type === 'token')).toHaveLength(12);
    expect(events.at(-1)?.type).toBe('done');

    const openai = new OpenAI({ baseURL: `${testApp.url}/v1`, apiKey: 'x', maxRetries: 0 });
    let text = '';
    const stream = await openai.chat.completions.create({
      model: 'simulator',
      messages: [{ role: 'user', content: '[sim tokens=7]' }],
      stream: true,
    });
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).not.toBe('');
  });

  it('refuses anyone else on its loopback port: no key, a wrong key, another Host', async () => {
    const completions = `${testApp.simulator.baseUrl}/chat/completions`;
    const key = testApp.simulator.headers['x-simulator-key'];
    const noKey = await rawPost(completions, {});
    const wrongKey = await rawPost(completions, { 'x-simulator-key': `${key.slice(0, -1)}x` });
    const otherHost = await rawPost(completions, { ...testApp.simulator.headers, host: 'attacker.example' });
    expect([noKey.status, wrongKey.status, otherHost.status]).toEqual([401, 401, 421]);
    for (const refused of [noKey, wrongKey, otherHost]) {
      expect(JSON.parse(refused.body)).toMatchObject({ error: { type: 'invalid_request_error' } });
      expect(refused.body).not.toContain(key);
    }
    expect((await rawPost(completions, { ...testApp.simulator.headers })).status).toBe(200);
  });
});

describe('the standalone simulator as faulty deployments, one process each', () => {
  let primary: SimulatorProcess;
  let fallback: SimulatorProcess;

  beforeAll(async () => {
    [primary, fallback] = await Promise.all([
      startSimulatorProcess({ primary: { refuse: { status: 503, firstRequests: 1 } } }),
      startSimulatorProcess(
        { fallback: { model: 'gpt-fallback' } },
        { SIMULATOR_KEY: 'a-key-of-sixteen-or-more' },
      ),
    ]);
  });
  afterAll(() => Promise.all([primary?.kill(), fallback?.kill()]));

  it('plays each profile and says what it saw at /d/<name>/stats', async () => {
    const client = new OpenAI({ baseURL: primary.urls.primary, apiKey: 'x', maxRetries: 0 });
    const request = { model: 'any', messages: [{ role: 'user' as const, content: '[sim tokens=5]' }] };
    await expect(client.chat.completions.create(request)).rejects.toMatchObject({ status: 503 });
    expect((await client.chat.completions.create(request)).choices[0].message.content).not.toBe('');
    const stats = (await (await fetch(primary.urls.primary.replace(/\/v1$/, '/stats'))).json()) as {
      total: number;
      requests: { status: number; contentTokens: number }[];
    };
    expect(stats.total).toBe(2);
    expect(stats.requests.map(({ status, contentTokens }) => [status, contentTokens])).toEqual([
      [503, 0],
      [200, 5],
    ]);
  });

  it('asks for SIMULATOR_KEY only where one is configured', async () => {
    expect((await fetch(`${primary.baseUrl}/models`)).status).toBe(200);
    expect((await fetch(`${fallback.urls.fallback}/models`)).status).toBe(401);
    const keyed = new OpenAI({
      baseURL: fallback.urls.fallback,
      apiKey: 'x',
      maxRetries: 0,
      defaultHeaders: { 'x-simulator-key': 'a-key-of-sixteen-or-more' },
    });
    const completion = await keyed.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: '[sim tokens=3]' }],
    });
    expect(completion.model).toBe('gpt-fallback');
  });
});
