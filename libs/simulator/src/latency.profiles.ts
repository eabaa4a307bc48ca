import type { SimulatorProfileInfo } from '@app/contracts';

export interface LatencyProfile {
  /** Delay before the first content token. */
  ttftMs: number;
  /** Steady generation rate; 0 means as fast as possible (one token per event-loop turn). */
  tokensPerSecond: number;
  /** Relative spread of each inter-token gap: 0.3 draws every gap from [0.7, 1.3] times the mean. */
  jitter: number;
}

/** Named so that a test, a demo or the benchmark can pick the behaviour it needs through the model name. */
export const LATENCY_PROFILES = {
  instant: { ttftMs: 0, tokensPerSecond: 0, jitter: 0 },
  fast: { ttftMs: 50, tokensPerSecond: 250, jitter: 0.1 },
  realistic: { ttftMs: 350, tokensPerSecond: 60, jitter: 0.3 },
  slow: { ttftMs: 1200, tokensPerSecond: 15, jitter: 0.3 },
} as const satisfies Record<string, LatencyProfile>;

export type ProfileName = keyof typeof LATENCY_PROFILES;
export const PROFILE_NAMES = Object.keys(LATENCY_PROFILES) as ProfileName[];

export const DEFAULT_MODEL_NAME = 'simulator';
export const DEFAULT_PROFILE: ProfileName = 'realistic';

export function isProfileName(value: string): value is ProfileName {
  return Object.hasOwn(LATENCY_PROFILES, value);
}

/** The model name that selects a profile regardless of the server's default. */
export function profileModelName(profile: ProfileName): string {
  return `${DEFAULT_MODEL_NAME}-${profile}`;
}

/** Every model the server answers to, with the profile each one selects; the default model comes first. */
export function modelProfiles(
  defaultModel: string,
  defaultProfile: ProfileName,
): Map<string, LatencyProfile> {
  const models = new Map<string, LatencyProfile>([[defaultModel, LATENCY_PROFILES[defaultProfile]]]);
  for (const name of PROFILE_NAMES) models.set(profileModelName(name), LATENCY_PROFILES[name]);
  return models;
}

export function describeProfiles(models: ReadonlyMap<string, LatencyProfile>): SimulatorProfileInfo[] {
  return [...models].map(([model, profile]) => ({ model, ...profile }));
}
