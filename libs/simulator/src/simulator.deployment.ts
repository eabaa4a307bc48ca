import type { ContinuationForm } from './continuation';
import {
  faultProfileSchema,
  inFaultWindow,
  type FaultProfile,
  type ParsedFaultProfile,
} from './fault-profile';
import { seededRandom, stableHash, type Random } from './seeded.random';

/** What one deployment saw of one chat-completion request; filled in as the request goes. */
export interface DeploymentRequestRecord {
  /** When the request arrived, epoch ms. */
  arrivedAt: number;
  /** The model the request asked for; null until the body is read, or when it named none. */
  requestedModel: string | null;
  /** The continuation form the request used, or null for an ordinary request. */
  continuation: ContinuationForm | null;
  /** The HTTP status answered; null while nothing was (and for good after a reset or a silence). */
  status: number | null;
  /** Content deltas sent (one token each, as `[sim tokens=N]` and `afterTokens` count them); thinking excluded. */
  contentTokens: number;
  /** The client closed the connection before the response ended (a reset or cut by the simulator is not this). */
  aborted: boolean;
}

export interface DeploymentStats {
  name: string;
  /** Every chat-completion request the deployment received. */
  total: number;
  /** The latest requests, oldest first (at most the last 10,000). */
  requests: DeploymentRequestRecord[];
}

/** Enough for any test or benchmark run to look back on, bounded for a deployment left running for days. */
const MAX_RECORDS = 10_000;

/** A request as a deployment sees it when it arrives: which one it is, and how long after the first. */
export interface Arrival {
  record: DeploymentRequestRecord;
  ordinal: number;
  elapsedMs: number;
}

/** One named deployment of the simulator: its fault profile, and what it has seen. */
export class SimulatorDeployment {
  readonly profile: ParsedFaultProfile;
  private firstArrivalAt: number | undefined;
  private total = 0;
  private readonly records: DeploymentRequestRecord[] = [];
  /** The heavy tail's draws: seeded by the name, so a run replays the same sequence of slow requests. */
  private readonly random: Random;

  constructor(
    readonly name: string,
    profile: FaultProfile,
  ) {
    this.profile = faultProfileSchema.parse(profile);
    this.random = seededRandom(stableHash(name));
  }

  arrive(): Arrival {
    const now = Date.now();
    this.firstArrivalAt ??= now;
    const record: DeploymentRequestRecord = {
      arrivedAt: now,
      requestedModel: null,
      continuation: null,
      status: null,
      contentTokens: 0,
      aborted: false,
    };
    this.records.push(record);
    if (this.records.length > MAX_RECORDS) this.records.shift();
    return { record, ordinal: ++this.total, elapsedMs: now - this.firstArrivalAt };
  }

  /** The extra wait before this request's first token; one draw per request keeps the sequence stable. */
  firstTokenDelayMs(): number {
    const firstToken = this.profile.firstToken;
    if (firstToken === undefined) return 0;
    return this.random() < firstToken.probability ? firstToken.delayMs : 0;
  }

  applies(window: Parameters<typeof inFaultWindow>[0] | undefined, arrival: Arrival): boolean {
    return window !== undefined && inFaultWindow(window, arrival.ordinal, arrival.elapsedMs);
  }

  stats(): DeploymentStats {
    return { name: this.name, total: this.total, requests: this.records.map((record) => ({ ...record })) };
  }
}
