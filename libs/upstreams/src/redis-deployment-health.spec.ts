import { RedisConnection } from '@app/redis';
import { Logger } from '@nestjs/common';
import { InMemoryDeploymentHealth } from './deployment-health';
import {
  deploymentHealthKeys,
  formatHealthMessage,
  type HealthChange,
  parseHealthMessage,
  parseProbeClaim,
  RedisDeploymentHealth,
} from './redis-deployment-health';

const names = new Set(['east', 'west.v2:a']);

describe('deployment health on Redis: keys and messages', () => {
  it('keys a deployment under the streams’ llmgw: prefix, hash-tagged so that its keys share a slot', () => {
    expect(deploymentHealthKeys('east')).toEqual([
      'llmgw:deployment:{east}:cooling',
      'llmgw:deployment:{east}:rate-limited',
      'llmgw:deployment:{east}:probe',
    ]);
  });

  it.each<HealthChange>([
    { kind: 'cooling', deployment: 'east', ms: 30_000 },
    { kind: 'rate-limited', deployment: 'west.v2:a', ms: 1500 },
    { kind: 'recovered', deployment: 'east' },
  ])('reads back what it writes: %j', (change) => {
    const message = formatHealthMessage('instance-1', change);
    expect(parseHealthMessage(message, names)).toEqual({ instance: 'instance-1', change });
  });

  it('sends a wait as whole milliseconds, rounded up', () => {
    expect(formatHealthMessage('i', { kind: 'cooling', deployment: 'east', ms: 12.2 })).toBe(
      'i cooling east 13',
    );
  });

  it.each([
    ['an unknown kind', 'i down east 10'],
    ['a deployment this table lacks', 'i cooling north 10'],
    ['a negative wait', 'i cooling east -10'],
    ['a fractional wait', 'i cooling east 1.5'],
    ['a wait over a day', 'i cooling east 86400001'],
    ['no wait', 'i cooling east'],
    ['a trailing field', 'i cooling east 10 x'],
    ['no sender', ' cooling east 10'],
    ['nothing', ''],
  ])('ignores a message with %s', (_, message) => {
    expect(parseHealthMessage(message, names)).toBeUndefined();
  });

  it('reads the probe claim script’s answers, and nothing else', () => {
    expect(parseProbeClaim(['won', 0])).toEqual({ outcome: 'won' });
    expect(parseProbeClaim(['cooling', 1200])).toEqual({ outcome: 'cooling', ms: 1200 });
    expect(parseProbeClaim(['claimed', 800])).toEqual({ outcome: 'claimed', ms: 800 });
    expect(parseProbeClaim(['claimed', -2])).toBeUndefined();
    expect(parseProbeClaim(['lost', 5])).toBeUndefined();
    expect(parseProbeClaim('won')).toBeUndefined();
    expect(parseProbeClaim(null)).toBeUndefined();
  });
});

describe('deployment health on Redis, with Redis unreachable', () => {
  it('decides from its own view, at once and without throwing: put aside, probed, back', async () => {
    const warnings = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const connection = await RedisConnection.open({ url: 'redis://127.0.0.1:1' });
    const policy = { cooldownMs: 1000, allowedFails: 1 };
    const health = new RedisDeploymentHealth(
      connection,
      new Map([['east', policy]]),
      new InMemoryDeploymentHealth(() => 0.5),
      () => 0,
    );
    try {
      health.onModuleInit();
      expect(health.admit('east', 0)).toBe('go');
      expect(health.failed('east', policy, { rateLimited: false }, false, 0)).toBe(false);
      expect(health.failed('east', policy, { rateLimited: false }, false, 0)).toBe(true);
      expect(health.admit('east', 500)).toBe('cooling');
      expect(health.coolingMs('east', 500)).toBe(500);
      // No Redis to arbitrate the probe: this instance probes, as it would alone.
      expect(health.peek('east', 1000)).toBe('probe');
      expect(health.admit('east', 1000)).toBe('probe');
      expect(health.admit('east', 1001)).toBe('cooling');
      // The probe's client left: the next request probes, and no claim waits for Redis.
      health.released('east', true);
      expect(health.admit('east', 1001)).toBe('probe');
      expect(health.succeeded('east', true)).toBe(true);
      expect(health.admit('east', 1002)).toBe('go');
      health.failed('east', policy, { rateLimited: true, retryAfterMs: 300 }, false, 2000);
      expect(health.waitMs('east', 2000)).toBe(300);
      expect(health.admit('east', 2000)).toBe('rate-limited');
    } finally {
      await connection.onApplicationShutdown();
      jest.restoreAllMocks();
    }
    // Nothing was sent, so nothing failed to send: the changes wait for Redis instead of warning per change.
    expect(warnings.mock.calls.filter(([line]) => String(line).includes('deployment health'))).toEqual([]);
  });
});
