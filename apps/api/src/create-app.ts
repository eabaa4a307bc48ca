import {
  type AuthStrategy,
  clientAddressOf,
  compileTrustProxy,
  HostCheck,
  refuseForeignHosts,
} from '@app/auth';
import type { AppConfig } from '@app/config';
import { RESUME_TOKEN_HEADER, STREAM_ID_HEADER } from '@app/contracts';
import { timeProbe } from '@app/info';
import { OpenAiErrorFilter } from '@app/openai-compat';
import { isSseStreamRequest } from '@app/sse';
import { ProblemDetailsFilter } from '@app/problem';
import { CompletionsIoAdapter } from '@app/socket-io';
import type { LoggerService, NestApplicationOptions, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import type { Request, Response } from 'express';
import { createServer } from 'node:http';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import helmet from 'helmet';
import { Logger } from 'nestjs-pino';
import type { DestinationStream } from 'pino';
import { AppModule } from './app.module';

/**
 * Node's defaults hold a slow request for up to 300 s and check every 30 s. The gateway sets both timeouts
 * deliberately (HTTP_REQUEST_TIMEOUT_MS, HTTP_HEADERS_TIMEOUT_MS) and checks each second, so a client
 * trickling a body or its headers is answered 408 and cut within a second of its limit. They bound how long
 * a request takes to arrive, never how long a response (a stream) lasts. The interval is a constructor
 * option of the server only, hence the server made here rather than by ExpressAdapter.
 */
class TimedExpressAdapter extends ExpressAdapter {
  constructor(private readonly timeouts: AppConfig['http']) {
    super();
  }

  override initHttpServer(options: NestApplicationOptions): void {
    if (options.httpsOptions || options.forceCloseConnections || options.return503OnClosing) {
      throw new Error('TimedExpressAdapter serves plain HTTP only; TLS is the proxy’s to terminate');
    }
    this.setHttpServer(
      createServer(
        {
          requestTimeout: this.timeouts.requestTimeoutMs,
          headersTimeout: this.timeouts.headersTimeoutMs,
          connectionsCheckingInterval: 1000,
        },
        this.getInstance(),
      ),
    );
  }
}

/**
 * Security headers by what a response is (docs/auth.md, "Security headers"). A page (the Angular client, the
 * OpenAPI page) and the small JSON answers get helmet's full set.
 */
const pageSecurityHeaders = helmet({
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
});

/**
 * A stream (SSE, or the OpenAI-compatible surface, read by SDKs) is never a document a browser renders: the
 * page policies (CSP, COEP/COOP, framing, referrer, DNS prefetch, download, cross-domain, XSS filter, agent
 * cluster) govern nothing in it, and Node holds a response's head for the response's life, so they cost about
 * 3 KB of every open stream. What does protect a non-document answer stays: no sniffing it into something
 * renderable, no cross-origin no-cors reads of it, and HSTS, as on every response.
 */
const streamSecurityHeaders = helmet({
  contentSecurityPolicy: false,
  crossOriginEmbedderPolicy: false,
  crossOriginOpenerPolicy: false,
  originAgentCluster: false,
  referrerPolicy: false,
  xDnsPrefetchControl: false,
  xDownloadOptions: false,
  xFrameOptions: false,
  xPermittedCrossDomainPolicies: false,
  xXssProtection: false,
});

/** The OpenAI-compatible surface: its answers are for SDKs, streamed or not, never pages. */
const OPENAI_COMPAT_PATHS = /^\/v1(\/|$)/;

/** Chosen by route before routing, so a refusal of a stream route (problem+json) carries the stream's set. */
function securityHeaders(request: Request, response: Response, next: (error?: unknown) => void): void {
  const stream = isSseStreamRequest(request.method, request.path) || OPENAI_COMPAT_PATHS.test(request.path);
  (stream ? streamSecurityHeaders : pageSecurityHeaders)(request, response, next);
}

export interface CreateAppOptions {
  logger?: LoggerService | false;
  /** Custom auth strategies of a deployment (docs/auth.md). */
  authStrategies?: Type<AuthStrategy>[];
  /** Where the JSON log lines go instead of stdout (with `logger` left unset). */
  logDestination?: DestinationStream;
}

/** Builds the application exactly as production runs it; `main.ts` and the e2e suites both use it. */
export async function createApp(
  config: AppConfig,
  options: CreateAppOptions = {},
): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.forRoot(config, options.authStrategies, options.logDestination),
    new TimedExpressAdapter(config.http),
    {
      // No global body parser: a route reads its JSON body after its guards (JsonBodyInterceptor), so nothing
      // is read, buffered or parsed for a client that is not authenticated.
      bodyParser: false,
      // Structured JSON logs through pino once the app is built; `false` keeps the e2e suites quiet.
      logger: options.logger,
      bufferLogs: options.logger === undefined,
    },
  );
  if (options.logger === undefined) {
    app.useLogger(app.get(Logger));
  }
  // Before anything else reads the request: a foreign Host (DNS rebinding) is refused on HTTP and Socket.IO alike.
  const hostCheck = new HostCheck(config.allowedHosts);
  app.use(refuseForeignHosts(hostCheck));
  // One rule for both transports: Express's req.ip and the Socket.IO handshake's address.
  const trustProxy = compileTrustProxy(config.trustProxy);
  app.set('trust proxy', trustProxy);
  app.use(securityHeaders);
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
  // problem+json everywhere, but OpenAI's error shape under /v1, for the OpenAI SDKs.
  app.useGlobalFilters(new OpenAiErrorFilter(new ProblemDetailsFilter()));
  app.useWebSocketAdapter(
    new CompletionsIoAdapter(app, {
      corsOrigins: config.corsOrigins,
      maxConnectionsPerAddress: config.limits.maxSocketConnectionsPerAddress,
      clientAddress: (request) => clientAddressOf(request, trustProxy),
      hostCheck,
    }),
  );
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
