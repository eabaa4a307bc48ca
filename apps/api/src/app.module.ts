import { AuthModule, type AuthStrategy, compileTrustProxy } from '@app/auth';
import { CompletionModule, safeUpstreamRequestId } from '@app/completion';
import { type AppConfig, AppConfigModule, ConfigError } from '@app/config';
import { HealthModule } from '@app/health';
import { InfoModule, SERVER_INFO_SOURCE, type ServerInfoSource } from '@app/info';
import { MetricsModule } from '@app/metrics';
import { OpenAiCompatModule } from '@app/openai-compat';
import { RedisModule } from '@app/redis';
import {
  DEPLOYMENT_NAME_PATTERN,
  type FaultProfile,
  SimulatorModule,
  SimulatorService,
  describeProfileIssue,
  faultProfileSchema,
} from '@app/simulator';
import { SocketIoModule } from '@app/socket-io';
import { SseModule } from '@app/sse';
import { StreamsModule } from '@app/streams';
import { TelemetryModule } from '@app/telemetry';
import { RoutingProvider, UPSTREAM_SIMULATOR, UpstreamRouter, UpstreamsModule } from '@app/upstreams';
import { type DynamicModule, Logger, Module, type OnModuleInit, type Type } from '@nestjs/common';
import { ServeStaticModule } from '@nestjs/serve-static';
import { LoggerModule } from 'nestjs-pino';
import type { DestinationStream } from 'pino';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { existsSync } from 'node:fs';
import { STREAM_ID_HEADER } from '@app/contracts';

/**
 * Composes the libraries from one validated configuration. With the simulator as the model, the
 * completion module still goes through the OpenAI SDK, to the simulator's loopback port: the code
 * path under test and demo is the production one.
 */
@Module({})
export class AppModule {
  /**
   * `authStrategies`: a deployment's own strategies, selectable with `AUTH_MODE` (docs/auth.md).
   * `logDestination`: where the JSON log lines go, stdout unless given (the e2e suites read them).
   */
  static forRoot(
    config: AppConfig,
    authStrategies: Type<AuthStrategy>[] = [],
    logDestination?: DestinationStream,
  ): DynamicModule {
    const simulator = config.provider === 'simulator';
    const needsSimulator =
      config.upstreams === undefined
        ? simulator
        : Object.values(config.upstreams.table.deployments).some((deployment) => deployment.simulator);
    const completionOptions = {
      defaultModel: config.openai.model,
      firstTokenTimeoutMs: config.upstream.firstTokenTimeoutMs,
      idleTimeoutMs: config.upstream.idleTimeoutMs,
    };
    return {
      module: AppModule,
      imports: [
        AppConfigModule.forRoot(config),
        LoggerModule.forRoot({
          pinoHttp: [
            {
              level: config.logLevel,
              genReqId: (request: IncomingMessage) => {
                const given = request.headers['x-request-id'];
                return typeof given === 'string' && /^[\w.-]{1,128}$/.test(given) ? given : randomUUID();
              },
              // An allow-list, never headers wholesale: a deny-list misses the credentials it does not know of (a
              // trusted proxy's shared secret, Proxy-Authorization), and the query string may hold a resumeToken.
              serializers: { req: requestLogFields, res: responseLogFields },
              // The serializers are given the request and response themselves (see requestLogFields).
              wrapSerializers: false,
              customAttributeKeys: { responseTime: 'durationMs' },
              // An upstream's request id is the upstream's text: logged only when it looks like an id (issue 23).
              formatters: { log: upstreamRequestIdChecked },
              // Request lines are written at info: below that level, no listeners and no line built per request.
              autoLogging: REQUEST_LINE_LEVELS.has(config.logLevel) && {
                ignore: (request: IncomingMessage) => /^\/(health|metrics)/.test(request.url ?? ''),
              },
            },
            logDestination ?? process.stdout,
          ],
        }),
        MetricsModule,
        TelemetryModule,
        ...(needsSimulator
          ? [
              SimulatorModule.forRoot({
                profile: config.simulator.profile,
                deployments: simulatedDeployments(config),
              }),
            ]
          : []),
        // One router for every surface: the completion provider (SSE, Socket.IO) and the /v1 relay.
        UpstreamsModule.forRoot({ config, imports: needsSimulator ? [SimulatorEndpointsModule] : [] }),
        CompletionModule.forRootAsync({
          inject: [UpstreamRouter],
          useFactory: (router: UpstreamRouter) => ({
            ...completionOptions,
            // The router keeps each attempt's deadlines; these are the /v1 relay's backstops, past every fallback
            // (the stream's deadline) and every continuation (an idle deadline, then a first token).
            firstTokenTimeoutMs: Math.max(
              completionOptions.firstTokenTimeoutMs,
              router.table.longestDeadlineMs + 5000,
            ),
            idleTimeoutMs: completionOptions.idleTimeoutMs + completionOptions.firstTokenTimeoutMs + 5000,
            defaultModel: router.table.defaultModel,
            provider: new RoutingProvider(router, {
              name: simulator && !config.upstreams ? 'simulator' : config.upstreams ? 'router' : 'openai',
              extractThinkTags: config.upstream.extractThinkTags,
            }),
          }),
        }),
        AuthModule.forRoot({
          mode: config.auth.mode,
          apiKeys: config.auth.apiKeys,
          jwt: config.auth.jwt,
          resumeTokenSecret: config.auth.resumeTokenSecret,
          allowedModels: config.auth.allowedModels,
          anonymousIpv6PrefixLength: config.auth.anonymousIpv6PrefixLength,
          trustProxy: compileTrustProxy(config.trustProxy),
          // A resume token lives as long as the stream can be resumed at all.
          resumeTokenTtlMs:
            config.streams.resumeGraceMs + config.streams.retentionMs + config.upstream.firstTokenTimeoutMs,
          strategies: authStrategies,
        }),
        ...(config.redisUrl ? [RedisModule.forRoot({ url: config.redisUrl })] : []),
        StreamsModule.forRoot({
          ...config.streams,
          limits: config.limits,
          store: config.redisUrl ? 'redis' : 'memory',
        }),
        SseModule,
        SocketIoModule,
        OpenAiCompatModule,
        HealthModule,
        InfoModule.forRoot(
          simulator && config.upstreams === undefined
            ? {
                provide: SERVER_INFO_SOURCE,
                inject: [SimulatorService],
                useFactory: (simulatorService: SimulatorService): ServerInfoSource => ({
                  provider: 'simulator',
                  defaultModel: config.openai.model,
                  simulatorProfiles: simulatorService.profiles,
                }),
              }
            : config.upstreams !== undefined
              ? {
                  provide: SERVER_INFO_SOURCE,
                  inject: [UpstreamRouter],
                  useFactory: (router: UpstreamRouter): ServerInfoSource => ({
                    provider: 'upstreams',
                    defaultModel: router.table.defaultModel,
                    models: router.table.publicModels,
                  }),
                }
              : {
                  provide: SERVER_INFO_SOURCE,
                  useValue: {
                    provider: 'openai',
                    defaultModel: config.openai.model,
                  } satisfies ServerInfoSource,
                },
        ),
        ...webClient(config.webRoot),
      ],
    };
  }
}

/**
 * The built-in simulator's endpoints for the upstream table: where it listens, the secret it requires, and the URL
 * of each deployment it plays.
 */
@Module({
  imports: [SimulatorModule],
  providers: [
    {
      provide: UPSTREAM_SIMULATOR,
      inject: [SimulatorService],
      useFactory: (simulator: SimulatorService) => ({
        baseUrl: simulator.baseUrl,
        headers: simulator.headers,
        urlFor: (name: string) => simulator.urlFor(name),
      }),
    },
  ],
  exports: [UPSTREAM_SIMULATOR],
})
class SimulatorEndpointsModule {}

/**
 * The table's deployments played by the built-in simulator, each with its fault profile, checked here so that a bad
 * profile stops the start with one line naming its field, as every other setting does.
 */
function simulatedDeployments(config: AppConfig): Record<string, FaultProfile> {
  const deployments: Record<string, FaultProfile> = {};
  for (const [name, deployment] of Object.entries(config.upstreams?.table.deployments ?? {})) {
    if (deployment.simulator === undefined) {
      continue;
    }
    const parsed = faultProfileSchema.safeParse(deployment.simulator);
    if (!parsed.success) {
      throw new ConfigError(
        'UPSTREAMS_FILE',
        describeProfileIssue(parsed.error, ['deployments', name, 'simulator']),
      );
    }
    if (!DEPLOYMENT_NAME_PATTERN.test(name)) {
      throw new ConfigError(
        'UPSTREAMS_FILE',
        `deployments.${name}: a simulated deployment's name uses letters, digits, ., _ or -`,
      );
    }
    deployments[name] = deployment.simulator as FaultProfile;
  }
  return deployments;
}

/** Every log line's `upstreamRequestId` (the provider's, the relay's) as `safeUpstreamRequestId` allows it. */
function upstreamRequestIdChecked(fields: Record<string, unknown>): Record<string, unknown> {
  return 'upstreamRequestId' in fields
    ? { ...fields, upstreamRequestId: safeUpstreamRequestId(fields.upstreamRequestId) }
    : fields;
}

/** The levels at which pino-http's "request completed" lines (at info) are written at all. */
const REQUEST_LINE_LEVELS: ReadonlySet<AppConfig['logLevel']> = new Set(['info', 'debug', 'trace']);

/**
 * What a request's log line says about it: no header but the user agent and the length, no query string.
 * pino-http hands it the request itself (`wrapSerializers: false`): its default wrapper first copied the request
 * into an object of every header, the parsed query and the peer's address, on every request, only for this to
 * pick four fields of it.
 */
export function requestLogFields(request: {
  id: unknown;
  method?: string;
  url?: string;
  /** Express's: the URL as received, whatever a router has stripped from `url` since. */
  originalUrl?: string;
  headers: Record<string, string | string[] | undefined>;
}) {
  return {
    id: request.id,
    method: request.method,
    path: (request.originalUrl ?? request.url)?.split('?')[0],
    userAgent: oneHeader(request.headers['user-agent'])?.slice(0, 256),
    contentLength: lengthOf(request.headers['content-length']),
  };
}

/**
 * And about its response (the response itself, as for the request): the status once sent (null before, as
 * pino's serializer had it), the length when known, and the stream it started or resumed.
 */
export function responseLogFields(response: {
  statusCode: number;
  headersSent: boolean;
  getHeader(name: string): string | string[] | number | undefined;
}) {
  const streamId = response.getHeader(STREAM_ID_HEADER);
  return {
    statusCode: response.headersSent ? response.statusCode : null,
    contentLength: lengthOf(response.getHeader('content-length')),
    ...(typeof streamId === 'string' ? { streamId } : {}),
  };
}

function oneHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function lengthOf(value: string | string[] | number | undefined): number | undefined {
  const length = Number(Array.isArray(value) ? value[0] : value);
  return Number.isSafeInteger(length) && length >= 0 && value !== undefined ? length : undefined;
}

/** Says once, through the app's logger (so as JSON, and not at all in the e2e suites), that there is no client. */
class MissingWebClientNotice implements OnModuleInit {
  constructor(private readonly webRoot: string) {}

  onModuleInit(): void {
    new Logger(AppModule.name).warn(`no web client at ${this.webRoot}: run npm run build to serve it`);
  }
}

@Module({})
class MissingWebClientModule {}

/** The built Angular client at `/`, when it has been built (`npm run build:web`). */
function webClient(webRoot: string): DynamicModule[] {
  if (!existsSync(webRoot)) {
    return [
      {
        module: MissingWebClientModule,
        providers: [{ provide: MissingWebClientNotice, useValue: new MissingWebClientNotice(webRoot) }],
      },
    ];
  }
  return [
    ServeStaticModule.forRoot({
      rootPath: webRoot,
      // The client's own routes only: unknown paths of the APIs answer 404 JSON, never the page.
      exclude: [
        '/api',
        '/api/{*path}',
        '/v1',
        '/v1/{*path}',
        '/health/{*path}',
        '/metrics',
        '/socket.io/{*path}',
      ],
    }),
  ];
}
