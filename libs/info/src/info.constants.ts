import type { SimulatorProfileInfo } from '@app/contracts';

/** Injection token of what `/api/info` says about the upstream. */
export const SERVER_INFO_SOURCE = Symbol('SERVER_INFO_SOURCE');

export interface ServerInfoSource {
  provider: string;
  defaultModel: string;
  models?: string[];
  simulatorProfiles?: SimulatorProfileInfo[];
}
