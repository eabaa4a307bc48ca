import { type BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import { StreamRegistry } from './stream-registry';
import type { StreamRegistryOptions } from './streams.constants';
import { STREAM_REGISTRY_OPTIONS } from './streams.module-definition';

/**
 * Graceful shutdown (SIGTERM, with Nest's shutdown hooks on): readiness turns false and new streams are
 * refused at once; with Redis, running streams are handed to live instances that continue them (see
 * `StreamRegistry.handOver`); those not handed over get `shutdownGraceMs` to finish; the rest end with a
 * retryable `shutting_down` error. Only then does Nest close the servers, so no stream ends without its
 * terminal event here or elsewhere.
 */
@Injectable()
export class ShutdownCoordinator implements BeforeApplicationShutdown {
  private readonly logger = new Logger(ShutdownCoordinator.name);
  private drainingSince: number | undefined;
  private readonly flushers: (() => Promise<void>)[] = [];

  constructor(
    private readonly registry: StreamRegistry,
    @Inject(STREAM_REGISTRY_OPTIONS) private readonly options: StreamRegistryOptions,
  ) {}

  get draining(): boolean {
    return this.drainingSince !== undefined;
  }

  /**
   * A transport whose writes are queued (Socket.IO's engine) registers here how to wait until its
   * clients have been sent what they are owed; the servers close only after that.
   */
  beforeClose(flush: () => Promise<void>): void {
    this.flushers.push(flush);
  }

  async beforeApplicationShutdown(signal?: string): Promise<void> {
    this.drainingSince = Date.now();
    const running = this.registry.running;
    this.logger.warn(
      `shutting down (${signal ?? 'close'}): ${running} streams running, ${this.options.shutdownGraceMs} ms grace`,
    );
    await this.registry.handOver(this.options.shutdownGraceMs);
    const handedOver = running - this.registry.running;
    await this.registry.whenAllEnded(this.options.shutdownGraceMs);
    const left = this.registry.running;
    this.registry.failRunning({
      code: 'shutting_down',
      message: 'The server is restarting; retry the request.',
      retryable: true,
    });
    await Promise.all(this.flushers.map((flush) => flush()));
    this.logger.warn(
      `drained: ${handedOver} streams handed over, ${running - handedOver - left} finished, ${left} ended with shutting_down`,
    );
  }
}
