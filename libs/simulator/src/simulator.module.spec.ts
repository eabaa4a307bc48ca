import { Test } from '@nestjs/testing';
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
      body: JSON.stringify({ messages: [{ role: 'user', content: '[sim tokens=4]' }] }),
    });
    expect(response.status).toBe(200);
    expect(service.stats()).toMatchObject({ requests: 1, completed: 1 });

    await moduleRef.close();
    await expect(fetch(`${service.baseUrl}/models`)).rejects.toMatchObject({ name: 'TypeError' });
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
