import type { SimulatorProfileInfo } from '@app/contracts';
import type { OnApplicationShutdown } from '@nestjs/common';
import type { SimulatorOptions, SimulatorStats } from './simulator-options.interface';
import { SimulatorServer } from './simulator.server';

/**
 * The simulator as a Nest provider. It is made by an async factory (`SimulatorService.start`) rather than by the
 * injector, so the server is already listening when the provider resolves and `baseUrl` can be read
 * synchronously by whatever is configured from it (the completion module's OpenAI client).
 */
export class SimulatorService implements OnApplicationShutdown {
  private constructor(
    private readonly server: SimulatorServer,
    /** The OpenAI base URL of the running simulator, ending in `/v1`. */
    readonly baseUrl: string,
  ) {}

  static async start(options: SimulatorOptions): Promise<SimulatorService> {
    const server = new SimulatorServer(options);
    // Loopback and an ephemeral port: the simulator is an in-process upstream, never a public endpoint.
    const baseUrl = await server.listen(0, '127.0.0.1');
    return new SimulatorService(server, baseUrl);
  }

  get profiles(): SimulatorProfileInfo[] {
    return this.server.profiles;
  }

  stats(): SimulatorStats {
    return this.server.stats();
  }

  /**
   * Closing here rather than in `onModuleDestroy`: shutdown hooks run after the HTTP server stopped and the
   * transports drained, so streams still in flight during a graceful shutdown keep their upstream to the end.
   */
  async onApplicationShutdown(): Promise<void> {
    await this.server.close();
  }
}
