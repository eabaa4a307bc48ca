import type { AuthStrategy } from '@app/auth';
import type { AppConfig } from '@app/config';
import { REQUEST_LIMITS, RESUME_TOKEN_HEADER, STREAM_ID_HEADER } from '@app/contracts';
import { timeProbe } from '@app/info';
import { ProblemDetailsFilter } from '@app/problem';
import { CompletionsIoAdapter } from '@app/socket-io';
import type { LoggerService, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import helmet from 'helmet';
import { Logger } from 'nestjs-pino';
import { AppModule } from './app.module';

export interface CreateAppOptions {
  logger?: LoggerService | false;
  /** Custom auth strategies of a deployment (docs/auth.md). */
  authStrategies?: Type<AuthStrategy>[];
}

/** Builds the application exactly as production runs it; `main.ts` and the e2e suites both use it. */
export async function createApp(
  config: AppConfig,
  options: CreateAppOptions = {},
): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.forRoot(config, options.authStrategies),
    {
      // Only JSON bodies, with the documented size limit; anything else is refused with 415 by the controllers.
      bodyParser: false,
      // Structured JSON logs through pino once the app is built; `false` keeps the e2e suites quiet.
      logger: options.logger,
      bufferLogs: options.logger === undefined,
    },
  );
  if (options.logger === undefined) {
    app.useLogger(app.get(Logger));
  }
  app.useBodyParser('json', { limit: REQUEST_LIMITS.maxBodyBytes });
  app.use(
    helmet({
      contentSecurityPolicy: {
        directives: {
          // Angular's component styles are inline; scripts stay same-origin only.
          'style-src': ["'self'", "'unsafe-inline'"],
          'connect-src': ["'self'"],
          // Plain-HTTP deployments (a LAN host, a dev box) must keep working; TLS is the proxy's to enforce.
          'upgrade-insecure-requests': null,
        },
      },
      // With COOP (helmet's default), cross-origin isolation: Chrome's performance.now() is clamped to 5 µs
      // instead of 100 µs with jitter, which the client's clock-offset estimate and delays are measured with.
      // Everything the client loads is same-origin, and the CSP already keeps out other origins' images.
      crossOriginEmbedderPolicy: true,
    }),
  );
  if (config.corsOrigins.length > 0) {
    app.enableCors({
      origin: config.corsOrigins,
      methods: ['GET', 'POST', 'DELETE'],
      allowedHeaders: ['content-type', 'authorization', 'x-api-key', 'last-event-id'],
      exposedHeaders: [STREAM_ID_HEADER, RESUME_TOKEN_HEADER, 'Retry-After'],
      maxAge: 600,
    });
  }
  // Ahead of Nest's middleware (request logging) and routing: the clock probe's round trip stays short.
  app.use(timeProbe);
  app.useGlobalFilters(new ProblemDetailsFilter());
  app.useWebSocketAdapter(new CompletionsIoAdapter(app, config.corsOrigins));
  app.disable('x-powered-by');
  const openApi = new DocumentBuilder()
    .setTitle('llm-stream-gateway')
    .setDescription(
      'The HTTP surface: SSE streaming, resume, cancel, time, health and metrics. Events and the Socket.IO transport: docs/protocol.md.',
    )
    .setVersion('1')
    .addBearerAuth()
    .addApiKey({ type: 'apiKey', in: 'header', name: 'X-API-Key' }, 'api-key')
    .build();
  SwaggerModule.setup('api/docs', app, () => SwaggerModule.createDocument(app, openApi), {
    jsonDocumentUrl: 'api/docs-json',
  });
  // SIGTERM/SIGINT: drain (ShutdownCoordinator), close, then exit 0; a process killed by its own signal would
  // report failure to the orchestrator for what was an orderly stop.
  app.enableShutdownHooks(['SIGTERM', 'SIGINT'], { useProcessExit: true });
  return app;
}
