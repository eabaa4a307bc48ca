import { ConfigError, loadConfig } from '@app/config';
import { existsSync } from 'node:fs';
import { createApp } from './create-app';

async function bootstrap(): Promise<void> {
  if (existsSync('.env')) {
    // Variables already in the environment win over the file.
    process.loadEnvFile('.env');
  }
  const config = loadConfig(process.env);
  const app = await createApp(config);
  try {
    await app.listen(config.port, config.host);
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
