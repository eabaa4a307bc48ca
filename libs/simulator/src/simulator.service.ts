import type { SimulatorProfileInfo } from '@app/contracts';
import type { OnApplicationShutdown } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import type { SimulatorOptions, SimulatorStats } from './simulator-options.interface';
import type { DeploymentStats } from './simulator.deployment';
import { SIMULATOR_KEY_HEADER, SimulatorServer } from './simulator.server';

/**
 * The simulator as a Nest provider. It is made by an async factory (`SimulatorService.start`) rather than by the
 * injector, so the server is already listening when the provider resolves and `baseUrl` can be read
 * synchronously by whatever is configured from it (the completion module's OpenAI client).
 *
 * It is no side door: a loopback port answers every local process and every page a browser opens (through DNS
 * rebinding), so the server takes only requests that carry this process's random key (`headers`) and address it
 * by its own loopback address.
 */
export class SimulatorService implements OnApplicationShutdown {
  private constructor(
    private readonly server: SimulatorServer,
    /** The OpenAI base URL of the running simulator, ending in `/v1`. */
    readonly baseUrl: string,
    /** What every request to the simulator must carry: give them to the OpenAI client (`defaultHeaders`). */
    readonly headers: Readonly<Record<string, string>>,
  ) {}

  static async start(options: SimulatorOptions): Promise<SimulatorService> {
    const key = randomBytes(32).toString('base64url');
    const server = new SimulatorServer({ ...options, key, checkHost: true });
    // Loopback and an ephemeral port: the simulator is an in-process upstream, never a public endpoint.
    const baseUrl = await server.listen(0, '127.0.0.1');
    return new SimulatorService(server, baseUrl, Object.freeze({ [SIMULATOR_KEY_HEADER]: key }));
  }

  get profiles(): SimulatorProfileInfo[] {
    return this.server.profiles;
  }

  stats(): SimulatorStats {
    return this.server.stats();
  }

  /** The base URL of a deployment named in `options.deployments`, ending in `/v1`; throws for an unknown name. */
  urlFor(name: string): string {
    return this.server.urlFor(name);
  }

  /** What a named deployment has seen so far; throws for an unknown name. */
  deploymentStats(name: string): DeploymentStats {
    return this.server.deploymentStats(name);
  }

  /**
   * Closing here rather than in `onModuleDestroy`: shutdown hooks run after the HTTP server stopped and the
   * transports drained, so streams still in flight during a graceful shutdown keep their upstream to the end.
   */
  async onApplicationShutdown(): Promise<void> {
    await this.server.close();
  }
}
