import { CompletionService } from '@app/completion';
import { RedisHealthIndicator } from '@app/redis';
import { ShutdownCoordinator } from '@app/streams';
import { Controller, Get, Optional } from '@nestjs/common';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';

/** The upstream is asked at most this often; a readiness probe every second must not become upstream load. */
const UPSTREAM_CHECK_CACHE_MS = 10_000;
const UPSTREAM_CHECK_TIMEOUT_MS = 3_000;

/**
 * `/health/live`: the process serves HTTP (restart it when this fails). `/health/ready`: send it traffic
 * (not while shutting down, nor while the upstream or, with `REDIS_URL`, Redis does not answer). Both outside auth, as probes are.
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

  @Get('ready')
  @HealthCheck()
  ready() {
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
