import { backoffMs } from './routing-decisions';

/** Injection token of the `DeploymentHealth` the router uses: in memory, or on Redis with REDIS_URL. */
export const DEPLOYMENT_HEALTH = Symbol('DEPLOYMENT_HEALTH');

/** What the health of a deployment allows now. */
export type Admission =
  /** Healthy: send. */
  | 'go'
  /** Its cooldown is over: this one request probes it; others keep skipping it until the probe answers. */
  | 'probe'
  /** Put aside after failures (or its probe is in flight): skip it while another deployment can serve. */
  | 'cooling'
  /** It asked to be spared (a 429): nothing is sent before `waitMs`. */
  | 'rate-limited';

export interface DeploymentPolicy {
  cooldownMs: number;
  allowedFails: number;
}

export interface FailureReport {
  /** A 429: the deployment is spared for what it asked (`retryAfterMs`), or a growing backoff without it. */
  rateLimited: boolean;
  retryAfterMs?: number;
}

/**
 * The health of every deployment, shared by every stream of this process (and, on Redis, every instance): a
 * deployment that failed more than `allowedFails` times in a row is put aside for `cooldownMs`, then one request
 * probes it; it comes back when the probe succeeds.
 */
export interface DeploymentHealth {
  admit(name: string, now: number): Admission;
  /** What `admit` would answer now, without its effect: no probe is taken (to rank deployments before trying one). */
  peek(name: string, now: number): Admission;
  /** Milliseconds until a rate-limited deployment may be sent to again (0 when it may now). */
  waitMs(name: string, now: number): number;
  /** True when the deployment had been put aside and is back (its probe answered). */
  succeeded(name: string, probe: boolean): boolean;
  /** Answers whether the deployment has just been put aside (for the metrics and the log). */
  failed(name: string, policy: DeploymentPolicy, report: FailureReport, probe: boolean, now: number): boolean;
  /**
   * An attempt ended with no word on the deployment's health (its client left, the request was refused, the stream
   * ended on another attempt's account). When it was the probe, the next request may probe at once rather than
   * wait out the probe's hold.
   */
  released(name: string, probe: boolean): void;
}

interface State {
  failuresInRow: number;
  rateLimitsInRow: number;
  /** Nothing is sent before this (epoch ms): what a 429 asked, or a backoff. */
  rateLimitedUntil: number;
  /** Put aside until this (epoch ms); past it, the next admission is a probe. */
  cooledUntil: number;
  cooled: boolean;
  /**
   * While a probe is out, no other is admitted before this (epoch ms; 0: none out). A probe that ends with no word
   * on the deployment (its client left, the request was refused) is `released`; one lost to a hedge holds until
   * this: it was slower than another deployment, and sent first again at once it would cost every request the
   * hedge's wait.
   */
  probeUntil: number;
  /** How long the last cooldown was: also how long a probe may stay unanswered. */
  cooldownSpanMs: number;
}

/** One process's view; the Redis one (redis-deployment-health.ts) folds what other instances decide into it. */
export class InMemoryDeploymentHealth implements DeploymentHealth {
  private readonly states = new Map<string, State>();

  constructor(private readonly random: () => number = Math.random) {}

  admit(name: string, now: number): Admission {
    const admission = this.peek(name, now);
    if (admission === 'probe') {
      const state = this.states.get(name) as State;
      state.probeUntil = now + state.cooldownSpanMs;
    }
    return admission;
  }

  peek(name: string, now: number): Admission {
    const state = this.states.get(name);
    if (state === undefined) {
      return 'go';
    }
    if (now < state.rateLimitedUntil) {
      return 'rate-limited';
    }
    if (now < state.cooledUntil || now < state.probeUntil) {
      return 'cooling';
    }
    return state.cooled ? 'probe' : 'go';
  }

  waitMs(name: string, now: number): number {
    const state = this.states.get(name);
    return state === undefined ? 0 : Math.max(0, state.rateLimitedUntil - now);
  }

  /** Milliseconds the deployment stays put aside (0 when it is not, or when its probe is due). */
  coolingMs(name: string, now: number): number {
    const state = this.states.get(name);
    return state === undefined || !state.cooled ? 0 : Math.max(0, state.cooledUntil - now);
  }

  /** True when the deployment was put aside and is back (its probe succeeded). */
  succeeded(name: string, probe: boolean): boolean {
    const state = this.states.get(name);
    if (state !== undefined && (probe || !state.cooled)) {
      this.states.delete(name);
      return state.cooled;
    }
    return false;
  }

  /**
   * A probe that ended unanswered gives up its hold at once. Any attempt sent as a probe does, also one sent to a
   * deployment put aside as a last resort while another probe is out: then one more probe may follow sooner, to a
   * deployment that was being sent requests anyway.
   */
  released(name: string, probe: boolean): void {
    const state = this.states.get(name);
    if (probe && state !== undefined) {
      state.probeUntil = 0;
    }
  }

  failed(
    name: string,
    policy: DeploymentPolicy,
    report: FailureReport,
    probe: boolean,
    now: number,
  ): boolean {
    const state = this.state(name);
    state.probeUntil = 0;
    if (report.rateLimited) {
      state.rateLimitsInRow++;
      this.rateLimit(
        name,
        now,
        backoffMs(state.rateLimitsInRow, report.retryAfterMs, this.random, policy.cooldownMs),
      );
      return false;
    }
    state.failuresInRow++;
    if (probe || state.failuresInRow > policy.allowedFails) {
      return this.coolDown(name, now, policy.cooldownMs);
    }
    return false;
  }

  /**
   * Puts the deployment aside for `forMs` from `now` (also what another instance decided, on Redis); a cooldown
   * already longer stays. True when it was not put aside before.
   */
  coolDown(name: string, now: number, forMs: number): boolean {
    const state = this.state(name);
    const wasCooling = state.cooled && state.cooledUntil > now;
    state.cooled = true;
    state.probeUntil = 0;
    if (now + forMs > state.cooledUntil) {
      state.cooledUntil = now + forMs;
      state.cooldownSpanMs = forMs;
    }
    return !wasCooling;
  }

  /** Nothing is sent for `forMs` from `now` (a 429 here, or another instance's, on Redis); a longer wait stays. */
  rateLimit(name: string, now: number, forMs: number): void {
    const state = this.state(name);
    state.rateLimitedUntil = Math.max(state.rateLimitedUntil, now + forMs);
  }

  /**
   * Another instance's probe succeeded (on Redis): the deployment is back. A wait it asked for (429) still holds:
   * it is about being spared, not about being down.
   */
  recovered(name: string): void {
    const state = this.states.get(name);
    if (state === undefined) {
      return;
    }
    if (state.rateLimitedUntil === 0) {
      this.states.delete(name);
      return;
    }
    Object.assign(state, { failuresInRow: 0, cooled: false, cooledUntil: 0, probeUntil: 0 });
  }

  private state(name: string): State {
    let state = this.states.get(name);
    if (state === undefined) {
      state = {
        failuresInRow: 0,
        rateLimitsInRow: 0,
        rateLimitedUntil: 0,
        cooledUntil: 0,
        cooled: false,
        probeUntil: 0,
        cooldownSpanMs: 0,
      };
      this.states.set(name, state);
    }
    return state;
  }
}
