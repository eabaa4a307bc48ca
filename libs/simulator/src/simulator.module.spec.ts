import { Test } from '@nestjs/testing';
import { request as httpRequest } from 'node:http';
import { SimulatorModule, SimulatorService } from './index';

describe('SimulatorModule', () => {
  async function compile(imports: NonNullable<Parameters<typeof Test.createTestingModule>[0]['imports']>) {
    return Test.createTestingModule({ imports }).compile();
  }

  it('starts the simulator before the service resolves, and closes it with the application', async () => {
    const moduleRef = await compile([SimulatorModule.forRoot({ profile: 'instant' })]);
    const service = moduleRef.get(SimulatorService);
    expect(service.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    expect(service.profiles.map((profile) => profile.model)).toEqual([
      'simulator',
      'simulator-instant',
      'simulator-fast',
      'simulator-realistic',
      'simulator-slow',
      'simulator-reasoning',
    ]);
    expect(service.profiles[0]).toEqual({ model: 'simulator', ttftMs: 0, tokensPerSecond: 0, jitter: 0 });

    const response = await fetch(`${service.baseUrl}/chat/completions`, {
      method: 'POST',
      headers: service.headers,
      body: JSON.stringify({ messages: [{ role: 'user', content: '[sim tokens=4]' }] }),
    });
    expect(response.status).toBe(200);
    expect(service.stats()).toMatchObject({ requests: 1, completed: 1 });

    await moduleRef.close();
    await expect(fetch(`${service.baseUrl}/models`, { headers: service.headers })).rejects.toMatchObject({
      name: 'TypeError',
    });
  });

  describe('is no side door', () => {
    let moduleRef: Awaited<ReturnType<typeof compile>>;
    let service: SimulatorService;
    const body = JSON.stringify({ messages: [{ role: 'user', content: '[sim tokens=4]' }] });

    beforeAll(async () => {
      moduleRef = await compile([
        SimulatorModule.forRoot({ profile: 'instant', deployments: { primary: {} } }),
      ]);
      service = moduleRef.get(SimulatorService);
    });
    afterAll(() => moduleRef.close());

    /** A raw request, so that the Host header is exactly what the test says (fetch forbids setting it). */
    function raw(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
      const { port } = new URL(service.baseUrl);
      return new Promise((resolve, reject) => {
        const request = httpRequest(
          {
            host: '127.0.0.1',
            port,
            path,
            method: 'POST',
            headers: { 'content-type': 'application/json', ...headers },
          },
          (response) => {
            let text = '';
            response.setEncoding('utf8');
            response.on('data', (chunk: string) => (text += chunk));
            response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
          },
        );
        request.on('error', reject);
        request.end(body);
      });
    }

    it('sends a random key of its own, and answers with it', async () => {
      const [name, key] = Object.entries(service.headers)[0];
      expect(name).toBe('x-simulator-key');
      expect(key).toMatch(/^[\w-]{43}$/);
      expect(Object.isFrozen(service.headers)).toBe(true);
      const answered = await raw('/v1/chat/completions', { ...service.headers });
      expect(answered.status).toBe(200);
    });

    it.each([
      ['without the key', '/v1/chat/completions', {}],
      ['with a wrong key', '/v1/chat/completions', { 'x-simulator-key': 'guess' }],
      ['without the key, at a deployment', '/d/primary/v1/chat/completions', {}],
      ['at the stats of a deployment', '/d/primary/stats', {}],
    ])('refuses a request %s with 401, naming no secret', async (_case, path, headers) => {
      const refused = await raw(path, headers);
      expect(refused.status).toBe(401);
      expect(JSON.parse(refused.body)).toEqual({
        error: {
          message: 'Missing or wrong x-simulator-key header.',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      });
      expect(refused.body).not.toContain(service.headers['x-simulator-key']);
    });

    it.each(['evil.example:80', 'localhost', '127.0.0.1'])(
      'refuses Host %s with 421, even with the key',
      async (host) => {
        const refused = await raw('/v1/chat/completions', { ...service.headers, host });
        expect(refused.status).toBe(421);
        expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'misdirected_request' } });
        expect(refused.body).not.toContain(service.headers['x-simulator-key']);
      },
    );

    it('refuses another name for its own port too', async () => {
      const { port } = new URL(service.baseUrl);
      const refused = await raw('/v1/chat/completions', { ...service.headers, host: `localhost:${port}` });
      expect(refused.status).toBe(421);
    });
  });

  it('takes its options from forRootAsync', async () => {
    const moduleRef = await compile([
      SimulatorModule.forRootAsync({
        useFactory: () => Promise.resolve({ profile: 'slow' as const, apiKey: 'k' }),
      }),
    ]);
    const service = moduleRef.get(SimulatorService);
    expect(service.profiles[0]).toMatchObject({ model: 'simulator', ttftMs: 1200 });
    expect((await fetch(`${service.baseUrl}/models`)).status).toBe(401);
    await moduleRef.close();
  });
});
