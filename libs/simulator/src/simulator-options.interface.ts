import type { FaultProfile } from './fault-profile';
import type { ProfileName } from './latency.profiles';

export interface SimulatorOptions {
  /** The latency profile of the default model. Default `realistic`. */
  profile?: ProfileName;
  /** When set, every request must carry `Authorization: Bearer <apiKey>`, as OpenAI requires; else 401. */
  apiKey?: string;
  /** The name of the default model (the one that follows `profile`). Default `simulator`. */
  modelName?: string;
  /**
   * Named deployments, each at `/d/<name>/v1` with its own fault profile (`faultProfileSchema`); the plain `/v1`
   * stays healthy. Names: letters, digits, `.`, `_`, `-`.
   */
  deployments?: Record<string, FaultProfile>;
  /**
   * When set, every request must carry it in `x-simulator-key` (else 401): the in-process simulator's per-process
   * secret, so that nothing but the gateway reaches it. The standalone simulator takes it from `SIMULATOR_KEY`.
   */
  key?: string;
  /** Every request's `Host` must be the address the server listens on (else 421): no DNS rebinding. */
  checkHost?: boolean;
}

export interface SimulatorStats {
  /** Chat-completion requests received, refused ones included. */
  requests: number;
  /** Responses in progress: open streams, and non-streaming requests still "generating". */
  active: number;
  /** Responses the simulator ended itself: `stop`, `length`, or `content_filter`. */
  completed: number;
  /** Responses whose client went away before the end; generation stopped at that moment. */
  aborted: number;
  /** Requests that carried a `[sim fault=…]` directive. */
  faults: number;
}
