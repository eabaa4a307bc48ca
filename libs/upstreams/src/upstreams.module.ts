import type { AppConfig } from '@app/config';
import { MetricsService } from '@app/metrics';
import { type DynamicModule, Global, Module, type ModuleMetadata } from '@nestjs/common';
import { InMemoryDeploymentHealth } from './deployment-health';
import { type Endpoint, UpstreamTable } from './deployments';
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
 * upstream table (UPSTREAMS_FILE) or from the OPENAI_* settings as a table of one deployment.
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
          provide: UpstreamRouter,
          inject: [MetricsService, { token: UPSTREAM_SIMULATOR, optional: true }],
          useFactory: (metrics: MetricsService, simulator: SimulatorEndpoints | undefined) =>
            new UpstreamRouter(tableOf(config, simulator), new InMemoryDeploymentHealth(), metrics),
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
