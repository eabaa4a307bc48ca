export { SimulatorServer, SIMULATOR_KEY_HEADER } from './simulator.server';
export { SimulatorModule } from './simulator.module';
export { SimulatorService } from './simulator.service';
export { SIMULATOR_OPTIONS } from './simulator.constants';
export type { SimulatorOptions, SimulatorStats } from './simulator-options.interface';
export {
  DEFAULT_MODEL_NAME,
  DEFAULT_PROFILE,
  LATENCY_PROFILES,
  PROFILE_NAMES,
  isProfileName,
  profileModelName,
  type LatencyProfile,
  type ProfileName,
} from './latency.profiles';
export { FAULT_KINDS, REASONING_STYLES, type FaultKind, type ReasoningStyle } from './sim-directive.parser';
export { EMIT_TS_PATTERN, THINK_CLOSE, THINK_OPEN } from './completion.run';
export { REASONING_MODEL_NAME } from './simulator.server';
export {
  faultProfileSchema,
  describeProfileIssue,
  DEPLOYMENT_NAME_PATTERN,
  type FaultProfile,
  type ParsedFaultProfile,
} from './fault-profile';
export type { ContinuationForm } from './continuation';
export type { DeploymentRequestRecord, DeploymentStats } from './simulator.deployment';
