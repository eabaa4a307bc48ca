import { backoffMs } from './routing-decisions';

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
  /** Milliseconds until a rate-limited deployment may be sent to again (0 when it may now). */
  waitMs(name: string, now: number): number;
  succeeded(name: string, probe: boolean): void;
  /** Answers whether the deployment has just been put aside (for the metrics and the log). */
  failed(name: string, policy: DeploymentPolicy, report: FailureReport, probe: boolean, now: number): boolean;
}

interface State {
  failuresInRow: number;
  rateLimitsInRow: number;
  /** Nothing is sent before this (epoch ms): what a 429 asked, or a backoff. */
  rateLimitedUntil: number;
  /** Put aside until this (epoch ms); past it, the next admission is a probe. */
  cooledUntil: number;
  cooled: boolean;
  probeInFlight: boolean;
}

/** One process's view; the Redis one (redis-deployment-health.ts) shares cooldowns between instances. */
export class InMemoryDeploymentHealth implements DeploymentHealth {
  private readonly states = new Map<string, State>();

  constructor(private readonly random: () => number = Math.random) {}

  admit(name: string, now: number): Admission {
    const state = this.states.get(name);
    if (state === undefined) {
      return 'go';
    }
    if (now < state.rateLimitedUntil) {
      return 'rate-limited';
    }
    if (now < state.cooledUntil || state.probeInFlight) {
      return 'cooling';
    }
    if (state.cooled) {
      state.probeInFlight = true;
      return 'probe';
    }
    return 'go';
  }

  waitMs(name: string, now: number): number {
    const state = this.states.get(name);
    return state === undefined ? 0 : Math.max(0, state.rateLimitedUntil - now);
  }

  succeeded(name: string, probe: boolean): void {
    const state = this.states.get(name);
    if (state !== undefined && (probe || !state.cooled)) {
      this.states.delete(name);
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
    state.probeInFlight = false;
    if (report.rateLimited) {
      state.rateLimitsInRow++;
      const wait = backoffMs(state.rateLimitsInRow, report.retryAfterMs, this.random, policy.cooldownMs);
      state.rateLimitedUntil = Math.max(state.rateLimitedUntil, now + wait);
      return false;
    }
    state.failuresInRow++;
    if (probe || state.failuresInRow > policy.allowedFails) {
      return this.coolDown(name, now + policy.cooldownMs);
    }
    return false;
  }

  /** Puts the deployment aside until `until` (also what another instance told, on Redis); true when it was not. */
  coolDown(name: string, until: number): boolean {
    const state = this.state(name);
    const wasCooling = state.cooled && state.cooledUntil > until - 1;
    state.cooled = true;
    state.probeInFlight = false;
    state.cooledUntil = Math.max(state.cooledUntil, until);
    return !wasCooling;
  }

  /** Another instance's probe succeeded (on Redis): the deployment is back. */
  recovered(name: string): void {
    this.states.delete(name);
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
        probeInFlight: false,
      };
      this.states.set(name, state);
    }
    return state;
  }
}
