import type { AppConfig } from '@app/config';
import { MetricsService } from '@app/metrics';
import { RedisConnection } from '@app/redis';
import { type DynamicModule, Global, Module, type ModuleMetadata } from '@nestjs/common';
import { DEPLOYMENT_HEALTH, type DeploymentHealth, InMemoryDeploymentHealth } from './deployment-health';
import { type Endpoint, UpstreamTable } from './deployments';
import { RedisDeploymentHealth } from './redis-deployment-health';
import { UpstreamRouter } from './upstream-router';
import { UPSTREAM_SIMULATOR } from './upstreams.constants';

/** What the module needs of the built-in simulator, when a deployment (or the single upstream) is served by it. */
export interface SimulatorEndpoints {
  readonly baseUrl: string;
  readonly headers: Readonly<Record<string, string>>;
  urlFor(deployment: string): string;
}

export interface UpstreamsModuleOptions {
  config: AppConfig;
  /** Modules that provide `UPSTREAM_SIMULATOR` (the app's simulator), when the simulator serves. */
  imports?: ModuleMetadata['imports'];
}

/**
 * Global: the completion provider and the `/v1` relay route through the one `UpstreamRouter`, built from the
 * upstream table (UPSTREAMS_FILE) or from the OPENAI_* settings as a table of one deployment. The deployments'
 * health is this process's own, or, with REDIS_URL (the app imports `RedisModule` only then), shared by every
 * instance on that Redis.
 */
@Global()
@Module({})
export class UpstreamsModule {
  static forRoot({ config, imports = [] }: UpstreamsModuleOptions): DynamicModule {
    return {
      module: UpstreamsModule,
      imports,
      providers: [
        {
          provide: UpstreamTable,
          inject: [{ token: UPSTREAM_SIMULATOR, optional: true }],
          useFactory: (simulator: SimulatorEndpoints | undefined) => tableOf(config, simulator),
        },
        {
          provide: DEPLOYMENT_HEALTH,
          inject: [UpstreamTable, { token: RedisConnection, optional: true }],
          useFactory: (table: UpstreamTable, redis: RedisConnection | undefined): DeploymentHealth => {
            if (config.redisUrl === undefined) {
              return new InMemoryDeploymentHealth();
            }
            if (redis === undefined) {
              throw new Error('UpstreamsModule: REDIS_URL is set, but RedisModule is not imported');
            }
            return new RedisDeploymentHealth(
              redis,
              new Map([...table.deployments].map(([name, { settings }]) => [name, settings])),
            );
          },
        },
        {
          provide: UpstreamRouter,
          inject: [UpstreamTable, DEPLOYMENT_HEALTH, MetricsService],
          useFactory: (table: UpstreamTable, health: DeploymentHealth, metrics: MetricsService) =>
            new UpstreamRouter(table, health, metrics),
        },
      ],
      exports: [UpstreamRouter],
    };
  }
}

function tableOf(config: AppConfig, simulator: SimulatorEndpoints | undefined): UpstreamTable {
  if (config.upstreams !== undefined) {
    return UpstreamTable.fromFile(config.upstreams.table, {
      apiKeys: config.upstreams.apiKeys,
      firstTokenTimeoutMs: config.upstream.firstTokenTimeoutMs,
      simulatorEndpoint:
        simulator &&
        ((name): Endpoint => ({ baseUrl: simulator.urlFor(name), headers: { ...simulator.headers } })),
    });
  }
  const onSimulator = config.provider === 'simulator';
  if (onSimulator && simulator === undefined) {
    throw new Error('UpstreamsModule: the simulator serves, but UPSTREAM_SIMULATOR is not provided');
  }
  return UpstreamTable.single({
    name: onSimulator ? 'simulator' : 'openai',
    endpoint:
      onSimulator && simulator
        ? { baseUrl: simulator.baseUrl, headers: { ...simulator.headers } }
        : { baseUrl: config.openai.baseURL ?? 'https://api.openai.com/v1' },
    apiKey: config.openai.apiKey,
    defaultModel: config.openai.model,
    // The simulator continues an answer exactly; a server named only by OPENAI_BASE_URL is not assumed to.
    continuation: onSimulator ? 'continue_final_message' : 'none',
    maxAttempts: config.openai.maxRetries + 1,
    firstTokenTimeoutMs: config.upstream.firstTokenTimeoutMs,
    idleTimeoutMs: config.upstream.idleTimeoutMs,
  });
}
