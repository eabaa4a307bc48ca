import { ConfigError, loadConfig } from '@app/config';
import { existsSync } from 'node:fs';
import { createApp } from './create-app';

async function bootstrap(): Promise<void> {
  if (existsSync('.env')) {
    process.loadEnvFile('.env');
  }
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      // One clear line and no half-started server.
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  const app = await createApp(config);
  await app.listen(config.port, config.host);
  const url = await app.getUrl();
  console.warn(`llm-stream-gateway listening on ${url} (model: ${config.provider})`);
}

void bootstrap();
