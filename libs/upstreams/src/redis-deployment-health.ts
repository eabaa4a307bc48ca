import { type RedisClient, type RedisConnection, RedisScript } from '@app/redis';
import { Logger, type OnModuleInit } from '@nestjs/common';
import {
  type Admission,
  type DeploymentHealth,
  type DeploymentPolicy,
  type FailureReport,
  InMemoryDeploymentHealth,
} from './deployment-health';

/**
 * The Redis side of a deployment's health, keyed by its name (hash-tagged, so that one deployment's keys share a
 * slot), beside the streams' `llmgw:` keys:
 * - `cooling`: exists while the deployment is put aside, its TTL what is left of the cooldown;
 * - `rate-limited`: exists while it asked to be spared (429), its TTL what is left of the wait;
 * - `probe`: the instance that probes it once its cooldown is over (one probe for all instances), its TTL the
 *   longest that probe may go unanswered.
 * Every change is told on `llmgw:deployment-health` (see `formatHealthMessage`).
 */
export function deploymentHealthKeys(
  deployment: string,
): [cooling: string, rateLimited: string, probe: string] {
  const base = `llmgw:deployment:{${deployment}}`;
  return [`${base}:cooling`, `${base}:rate-limited`, `${base}:probe`];
}
export const DEPLOYMENT_HEALTH_CHANNEL = 'llmgw:deployment-health';

/** The longest wait a message may carry (as the table's longest cooldown): anything else is not ours. */
const MAX_HEALTH_MS = 24 * 60 * 60 * 1000;

export type HealthChange =
  | { kind: 'cooling'; deployment: string; ms: number }
  | { kind: 'rate-limited'; deployment: string; ms: number }
  | { kind: 'recovered'; deployment: string };

/**
 * A change as one line: `<instance> <kind> <deployment> <ms>`. Waits travel as durations, not instants: each
 * instance adds them to its own clock, so clocks that disagree between hosts do not stretch or cut a cooldown.
 */
export function formatHealthMessage(instance: string, change: HealthChange): string {
  return `${instance} ${change.kind} ${change.deployment} ${change.kind === 'recovered' ? 0 : Math.ceil(change.ms)}`;
}

/** A message's sender and change; undefined for anything malformed, or about a deployment this table lacks. */
export function parseHealthMessage(
  message: string,
  deployments: ReadonlySet<string>,
): { instance: string; change: HealthChange } | undefined {
  const [instance, kind, deployment, msText, ...rest] = message.split(' ');
  if (rest.length > 0 || !instance || !deployments.has(deployment) || !/^\d{1,9}$/.test(msText ?? '')) {
    return undefined;
  }
  const ms = Number(msText);
  if (ms > MAX_HEALTH_MS) {
    return undefined;
  }
  switch (kind) {
    case 'cooling':
    case 'rate-limited':
      return { instance, change: { kind, deployment, ms } };
    case 'recovered':
      return { instance, change: { kind, deployment } };
    default:
      return undefined;
  }
}

/**
 * Puts a deployment aside for ARGV[2] ms unless a longer cooldown is already there, gives up this instance's
 * probe claim (its probe has answered), and tells the others.
 * KEYS: cooling, probe. ARGV: instance, ms, channel, message.
 */
const COOL_DOWN = new RedisScript(`
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`);

/**
 * Spares a deployment for ARGV[2] ms unless a longer wait is already there; tells the others only then.
 * KEYS: rate-limited. ARGV: instance, ms, channel, message.
 */
const RATE_LIMIT = new RedisScript(`
if redis.call('PTTL', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`);

/** The deployment is back: its cooldown and any probe claim go, and the others are told. KEYS: cooling, probe. */
const RECOVER = new RedisScript(`
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`);

/**
 * One probe for every instance: the claim is this instance's when the cooldown is over everywhere and no other
 * holds it. Answers `{'won', 0}`, `{'cooling', ms left}` (another instance put it aside again meanwhile) or
 * `{'claimed', ms left}` (another probes it).
 * KEYS: cooling, probe. ARGV: instance, claim ms.
 */
const CLAIM_PROBE = new RedisScript(`
local cooling = redis.call('PTTL', KEYS[1])
if cooling > 0 then
  return {'cooling', cooling}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'won', 0}
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {'won', 0}
end
return {'claimed', redis.call('PTTL', KEYS[2])}
`);

/** This instance's probe ended unanswered: its claim goes, so that the next probe need not wait for its TTL. */
const RELEASE_PROBE = new RedisScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`);

export type ProbeClaim = { outcome: 'won' } | { outcome: 'cooling' | 'claimed'; ms: number };

/** What `CLAIM_PROBE` answered; undefined for anything else (then the local view decides). */
export function parseProbeClaim(reply: unknown): ProbeClaim | undefined {
  if (!Array.isArray(reply) || reply.length !== 2) {
    return undefined;
  }
  const [outcome, ms] = reply as [unknown, unknown];
  if (outcome === 'won') {
    return { outcome };
  }
  if ((outcome === 'cooling' || outcome === 'claimed') && typeof ms === 'number' && ms > 0) {
    return { outcome, ms };
  }
  return undefined;
}

type Claim = { state: 'pending' } | { state: 'won'; until: number };

/**
 * The deployments' health shared by every instance on one Redis, without a Redis round trip in front of a stream:
 * each instance decides from its own view (an `InMemoryDeploymentHealth`, as alone), publishes what changes it
 * (put aside for T, spared for T, back) and folds in what the others publish. Failures are counted per instance;
 * the decision to put a deployment aside, and a 429's wait, hold for all. Once a cooldown is over, one instance
 * claims the probe (`SET NX PX`); the others keep skipping the deployment until it answers.
 *
 * Redis is bookkeeping here, never in the way: while it is down each instance goes on with its own view (and
 * probes on its own), and on reconnecting the views are merged again. No stream fails for want of it.
 */
export class RedisDeploymentHealth implements DeploymentHealth, OnModuleInit {
  private readonly logger = new Logger(RedisDeploymentHealth.name);
  private readonly client: RedisClient;
  private readonly subscriber: RedisClient;
  private readonly instance: string;
  private readonly names: ReadonlySet<string>;
  private readonly claims = new Map<string, Claim>();
  /** Deployments whose change could not be told (Redis away), and whether it was a recovery: `merge` tells it. */
  private readonly untold = new Map<string, 'recovered' | 'put aside'>();
  /**
   * Per deployment, how many times this view learned that its cooldown is over (a probe claimed here, a recovery made
   * or heard): a read of the cooling key sent before such news is older than it, and `merge` does not fold it in.
   */
  private readonly coolingNews = new Map<string, number>();
  /** One warning per outage, not one per change that could not be told. */
  private unreachable = false;
  /**
   * Settles once this view listens to the others and has read what Redis held (with Redis away at the start, once
   * it is back; after a reconnection, once it has read again). Until then a change told by another instance can be
   * missed: what needs a settled shared view (a test of it) waits for this.
   */
  merged: Promise<void> = Promise.resolve();

  constructor(
    redis: RedisConnection,
    private readonly policies: ReadonlyMap<string, DeploymentPolicy>,
    private readonly local = new InMemoryDeploymentHealth(),
    private readonly clock: () => number = Date.now,
  ) {
    this.client = redis.client;
    this.instance = redis.instanceId;
    this.names = new Set(policies.keys());
    this.subscriber = redis.dedicated('deployment-health', { queueWhileDown: true });
  }

  onModuleInit(): void {
    // Changes told while this instance was not listening are lost to pub/sub: once subscribed (again), read the
    // keys again, and tell what this instance decided while Redis was away.
    this.merged = this.subscriber
      .subscribe(DEPLOYMENT_HEALTH_CHANNEL, (message) => this.told(message))
      .then(() => {
        const mergeAgain = () => (this.merged = this.merge());
        this.subscriber.on('ready', mergeAgain);
        this.client.on('ready', mergeAgain);
        return this.merge();
      })
      .catch((error: unknown) =>
        this.logger.error(`cannot subscribe to deployment health: ${String(error)}`),
      );
  }

  admit(name: string, now: number): Admission {
    if (this.local.peek(name, now) === 'probe' && this.client.isReady) {
      const claim = this.claims.get(name);
      if (claim === undefined || (claim.state === 'won' && now >= claim.until)) {
        // This request goes elsewhere; the next one here probes if the claim is won.
        this.claimProbe(name);
        return 'cooling';
      }
      if (claim.state === 'pending') {
        return 'cooling';
      }
      this.claims.delete(name);
    }
    return this.local.admit(name, now);
  }

  /** As `admit` would answer, without claiming: a probe is due here only once this instance holds the claim. */
  peek(name: string, now: number): Admission {
    const admission = this.local.peek(name, now);
    if (admission !== 'probe' || !this.client.isReady) {
      return admission;
    }
    const claim = this.claims.get(name);
    return claim?.state === 'won' && now < claim.until ? 'probe' : 'cooling';
  }

  waitMs(name: string, now: number): number {
    return this.local.waitMs(name, now);
  }

  /** What is left of the deployment's cooldown in this instance's view (0 when it is not put aside). */
  coolingMs(name: string, now: number): number {
    return this.local.coolingMs(name, now);
  }

  succeeded(name: string, probe: boolean): boolean {
    const back = this.local.succeeded(name, probe);
    if (back) {
      this.recover(name);
    }
    return back;
  }

  failed(
    name: string,
    policy: DeploymentPolicy,
    report: FailureReport,
    probe: boolean,
    now: number,
  ): boolean {
    const waitedBefore = this.local.waitMs(name, now);
    const cooled = this.local.failed(name, policy, report, probe, now);
    const wait = this.local.waitMs(name, now);
    if (wait > waitedBefore) {
      this.publish({ kind: 'rate-limited', deployment: name, ms: wait });
    }
    if (cooled) {
      this.publish({ kind: 'cooling', deployment: name, ms: this.local.coolingMs(name, now) });
    } else if (probe) {
      // A probe answered 429 (or the deployment was put aside meanwhile): the claim is spent either way.
      this.releaseClaim(name);
    }
    return cooled;
  }

  released(name: string, probe: boolean): void {
    this.local.released(name, probe);
    if (probe) {
      this.releaseClaim(name);
    }
  }

  /** Gives this instance's probe claim up; while Redis is away, its TTL does. */
  private releaseClaim(name: string): void {
    this.claims.delete(name);
    if (!this.client.isReady) {
      return;
    }
    const [, , probe] = deploymentHealthKeys(name);
    RELEASE_PROBE.run(this.client, [probe], [this.instance]).then(
      () => (this.unreachable = false),
      (error: unknown) => this.lost(error),
    );
  }

  private publish(change: Exclude<HealthChange, { kind: 'recovered' }>): void {
    const [cooling, rateLimited, probe] = deploymentHealthKeys(change.deployment);
    const args = [
      this.instance,
      String(Math.ceil(change.ms)),
      DEPLOYMENT_HEALTH_CHANNEL,
      formatHealthMessage(this.instance, change),
    ];
    if (change.kind === 'cooling') {
      this.claims.delete(change.deployment);
      this.tell(COOL_DOWN, [cooling, probe], args, change.deployment);
    } else {
      this.tell(RATE_LIMIT, [rateLimited], args, change.deployment);
    }
  }

  private recover(name: string): void {
    this.claims.delete(name);
    this.newsOfCoolingOver(name);
    const [cooling, , probe] = deploymentHealthKeys(name);
    this.tell(
      RECOVER,
      [cooling, probe],
      [
        DEPLOYMENT_HEALTH_CHANNEL,
        formatHealthMessage(this.instance, { kind: 'recovered', deployment: name }),
      ],
      name,
    );
  }

  /** Fire and forget: the local view has already changed; Redis only spreads it. */
  private tell(script: RedisScript, keys: string[], args: string[], deployment: string): void {
    const untold = script === RECOVER ? 'recovered' : 'put aside';
    if (!this.client.isReady) {
      this.untold.set(deployment, untold);
      return;
    }
    script.run(this.client, keys, args).then(
      () => (this.unreachable = false),
      (error: unknown) => {
        this.untold.set(deployment, untold);
        this.lost(error);
      },
    );
  }

  private claimProbe(name: string): void {
    this.claims.set(name, { state: 'pending' });
    // Sent on the connection the merge reads on, so Redis answers a read sent before it first: that read is older.
    this.newsOfCoolingOver(name);
    const policy = this.policies.get(name);
    const claimMs = policy?.cooldownMs ?? MAX_HEALTH_MS;
    const [cooling, , probe] = deploymentHealthKeys(name);
    CLAIM_PROBE.run(this.client, [cooling, probe], [this.instance, String(claimMs)]).then(
      (reply) => {
        this.unreachable = false;
        if (this.claims.get(name)?.state !== 'pending') {
          // Told meanwhile that it is back, or put aside again: that news is newer than this answer.
          return;
        }
        const claim = parseProbeClaim(reply);
        if (claim === undefined || claim.outcome === 'won') {
          this.claims.set(name, { state: 'won', until: this.clock() + claimMs });
          return;
        }
        this.claims.delete(name);
        this.local.coolDown(name, this.clock(), claim.ms);
      },
      (error: unknown) => {
        // Redis cannot arbitrate: this instance probes on its own, as it would alone.
        this.claims.set(name, { state: 'won', until: this.clock() + claimMs });
        this.lost(error);
      },
    );
  }

  /** What another instance told. */
  private told(message: string): void {
    const parsed = parseHealthMessage(message, this.names);
    if (parsed === undefined || parsed.instance === this.instance) {
      return;
    }
    this.fold(parsed.change);
  }

  private fold(change: HealthChange): void {
    const now = this.clock();
    switch (change.kind) {
      case 'cooling':
        this.claims.delete(change.deployment);
        if (this.local.coolDown(change.deployment, now, change.ms)) {
          this.logger.log(
            { deployment: change.deployment },
            'upstream deployment put aside (shared cooldown)',
          );
        }
        break;
      case 'rate-limited':
        this.local.rateLimit(change.deployment, now, change.ms);
        break;
      case 'recovered':
        this.claims.delete(change.deployment);
        this.newsOfCoolingOver(change.deployment);
        this.local.recovered(change.deployment);
        break;
    }
  }

  /**
   * Both ways: what Redis holds comes into the local view, and what this instance decided but could not tell (Redis
   * was away) goes to Redis and the others, if it still holds.
   */
  private async merge(): Promise<void> {
    if (!this.client.isReady) {
      // The command connection's own 'ready' merges.
      return;
    }
    try {
      for (const name of this.names) {
        if (this.untold.get(name) === 'recovered') {
          // Back here while Redis was away: what Redis still holds about it is older than that.
          continue;
        }
        const [cooling, rateLimited] = deploymentHealthKeys(name);
        const newsBefore = this.coolingNews.get(name);
        const [coolingMs, rateLimitedMs] = await Promise.all([
          this.client.pTTL(cooling),
          this.client.pTTL(rateLimited),
        ]);
        // A cooldown read before this view claimed the probe, or before it heard that the deployment is back, is over:
        // folding it in would put the deployment aside again here and drop a claim won in Redis without giving it
        // back (the other instances would wait for the claim's TTL). A cooldown heard meanwhile is already folded in,
        // and folding an older one changes nothing; a wait (429) only ever lengthens, so that read is always folded.
        if (coolingMs > 0 && this.coolingNews.get(name) === newsBefore) {
          this.fold({ kind: 'cooling', deployment: name, ms: coolingMs });
        }
        if (rateLimitedMs > 0) {
          this.fold({ kind: 'rate-limited', deployment: name, ms: rateLimitedMs });
        }
      }
      const now = this.clock();
      for (const [name, untold] of [...this.untold]) {
        this.untold.delete(name);
        const [coolingMs, rateLimitedMs] = [this.local.coolingMs(name, now), this.local.waitMs(name, now)];
        if (untold === 'recovered' && coolingMs === 0) {
          this.recover(name);
        }
        if (coolingMs > 0) {
          this.publish({ kind: 'cooling', deployment: name, ms: coolingMs });
        }
        if (rateLimitedMs > 0) {
          this.publish({ kind: 'rate-limited', deployment: name, ms: rateLimitedMs });
        }
      }
    } catch (error) {
      this.lost(error);
    }
  }

  private newsOfCoolingOver(name: string): void {
    this.coolingNews.set(name, (this.coolingNews.get(name) ?? 0) + 1);
  }

  private lost(error: unknown): void {
    if (!this.unreachable) {
      this.unreachable = true;
      this.logger.warn(`deployment health not shared for now (local view only): ${String(error)}`);
    }
  }
}
