import { loadConfig } from '@app/config';
import { SimulatorService } from '@app/simulator';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { createApp, type CreateAppOptions } from '../../apps/api/src/create-app';

export interface TestApp {
  app: NestExpressApplication;
  url: string;
  /** The built-in upstream; only when the app runs with it (no OPENAI_BASE_URL given). */
  simulator: SimulatorService;
  close(): Promise<void>;
}

/**
 * The real application on 127.0.0.1, port 0, with the built-in simulator as the model. Timeouts are
 * short so that the fault tests finish quickly; everything else is the production wiring.
 */
export async function startTestApp(
  env: Record<string, string> = {},
  options: CreateAppOptions = {},
): Promise<TestApp> {
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    SIMULATOR_PROFILE: 'instant',
    OPENAI_MAX_RETRIES: '0',
    STREAM_RESUME_GRACE_MS: '0',
    UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: '15000',
    // Far above any gap in the simulator's streams even on a starved machine (jest runs suites side by side);
    // the suites about stalls set their own short one.
    UPSTREAM_IDLE_TIMEOUT_MS: '10000',
    WEB_ROOT: '/nonexistent',
    LOG_LEVEL: 'silent',
    RATE_LIMIT_PER_MINUTE: '100000',
    RATE_LIMIT_CONCURRENT_STREAMS: '10000',
    ...env,
  });
  // Quiet unless a suite passes a logger, or a destination for the app's own JSON lines (to read what is logged).
  const app = await createApp(config, {
    ...options,
    logger: options.logger ?? (options.logDestination ? undefined : false),
  });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  return {
    app,
    url,
    get simulator() {
      return app.get(SimulatorService);
    },
    close: () => app.close(),
  };
}

/** Polls until `check` holds or the time is up; for effects that land asynchronously (an upstream abort). */
export async function eventually(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error('condition not met in time');
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Resolves once every instance answers `/health/ready` with 200 (with `REDIS_URL`: once it is connected), as a
 * load balancer would wait before sending traffic; fails naming the last answer of the one that was not.
 */
export async function whenReady(...urls: string[]): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (const url of urls) {
    for (;;) {
      const response = await fetch(`${url}/health/ready`).catch((error: unknown) => error as Error);
      if (!(response instanceof Error) && response.status === 200) break;
      if (Date.now() > deadline) {
        const last =
          response instanceof Error ? response.message : `${response.status} ${await response.text()}`;
        throw new Error(`${url} was not ready within 15 s: ${last}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
