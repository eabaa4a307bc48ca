import { CompletionService } from '@app/completion';
import { ProblemException } from '@app/problem';
import { RedisHealthIndicator } from '@app/redis';
import { ShutdownCoordinator } from '@app/streams';
import { Controller, Get, Optional, ServiceUnavailableException } from '@nestjs/common';
import {
  HealthCheck,
  type HealthCheckResult,
  HealthCheckService,
  HealthIndicatorService,
} from '@nestjs/terminus';

/** The upstream is asked at most this often; a readiness probe every second must not become upstream load. */
const UPSTREAM_CHECK_CACHE_MS = 10_000;
const UPSTREAM_CHECK_TIMEOUT_MS = 3_000;
/** A probe retries on its own schedule; this is the hint for anything else asking. */
const NOT_READY_RETRY_AFTER_MS = 5_000;

/**
 * `/health/live`: the process serves HTTP (restart it when this fails). `/health/ready`: send it traffic
 * (not while shutting down, nor while the upstream or, with `REDIS_URL`, Redis does not answer). Both outside
 * auth, as probes are.
 */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly completion: CompletionService,
    private readonly shutdown: ShutdownCoordinator,
    @Optional() private readonly redis?: RedisHealthIndicator,
  ) {}

  @Get('live')
  @HealthCheck()
  live() {
    return this.health.check([() => this.indicators.check('process').up()]);
  }

  /**
   * 503 problem+json when not ready, whose code says why: `shutting_down` while draining, `unavailable`
   * when it is a dependency (the upstream, Redis) that does not answer; `detail` names what is down.
   */
  @Get('ready')
  @HealthCheck()
  async ready() {
    try {
      return await this.readiness();
    } catch (error) {
      if (!(error instanceof ServiceUnavailableException)) {
        throw error;
      }
      const down = Object.keys((error.getResponse() as HealthCheckResult).error ?? {});
      const draining = down.includes('shutdown');
      throw new ProblemException(
        draining ? 'shutting_down' : 'unavailable',
        draining ? 'Not ready: the server is shutting down.' : `Not ready: ${down.join(', ')} down.`,
        { retryAfterMs: NOT_READY_RETRY_AFTER_MS },
      );
    }
  }

  private readiness() {
    return this.health.check([
      () =>
        this.shutdown.draining
          ? this.indicators.check('shutdown').down({ message: 'draining' })
          : this.indicators.check('shutdown').up(),
      () =>
        this.indicators
          .check('upstream')
          .attempt(async ({ signal }) => {
            await this.completion.ping(signal);
            return { provider: this.completion.providerName };
          })
          .withTimeout(UPSTREAM_CHECK_TIMEOUT_MS)
          .cacheFor(UPSTREAM_CHECK_CACHE_MS),
      ...(this.redis ? [() => this.redis?.check() ?? this.indicators.check('redis').up()] : []),
    ]);
  }
}
