import { ConfigError, loadConfig } from '@app/config';
import { existsSync } from 'node:fs';
import { createApp } from './create-app';

/**
 * Connections waiting to be accepted. Node's default (511) is reset under a burst of new streams (clients of a
 * drained instance reconnecting at once; the benchmark's 5,000-stream ramp) while the event loop is busy; the
 * kernel caps it at net.core.somaxconn.
 */
const LISTEN_BACKLOG = 4096;

async function bootstrap(): Promise<void> {
  if (existsSync('.env')) {
    // Variables already in the environment win over the file.
    process.loadEnvFile('.env');
  }
  const config = loadConfig(process.env);
  const app = await createApp(config);
  try {
    // Nest hands extra arguments to http.Server#listen(port, host, backlog); its typings stop at the host.
    const listen = app.listen as unknown as (port: number, host: string, backlog: number) => Promise<unknown>;
    await listen.call(app, config.port, config.host, LISTEN_BACKLOG);
  } catch (error) {
    throw (error as NodeJS.ErrnoException).code === 'EADDRINUSE'
      ? new ConfigError('PORT', `${config.host}:${config.port} is already in use`)
      : error;
  }
  // One plain line on stderr whatever LOG_LEVEL says: scripts (bench, the browser suite) wait for it.
  console.warn(`llm-stream-gateway listening on ${await app.getUrl()} (model: ${config.provider})`);
}

bootstrap().catch((error: unknown) => {
  // A configuration mistake is the common start-up failure: one clear line, no stack, no half-started server.
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
});
