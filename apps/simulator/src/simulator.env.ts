import { PROFILE_NAMES, type SimulatorOptions } from '@app/simulator';
import { z } from 'zod';

/** An empty variable counts as unset, as it does in most shells' `VAR= command`. */
const unsetIfEmpty = (value: unknown): unknown => (value === '' ? undefined : value);

const PORT_RANGE = 'must be a whole number from 0 to 65535 (0 picks a free port)';

const envSchema = z.object({
  SIMULATOR_PORT: z.preprocess(
    unsetIfEmpty,
    z.coerce
      .number({ error: PORT_RANGE })
      .int(PORT_RANGE)
      .min(0, PORT_RANGE)
      .max(65535, PORT_RANGE)
      .default(4010),
  ),
  SIMULATOR_HOST: z.preprocess(unsetIfEmpty, z.string().trim().min(1).default('127.0.0.1')),
  SIMULATOR_PROFILE: z.preprocess(unsetIfEmpty, z.enum(PROFILE_NAMES as [string, ...string[]]).optional()),
  SIMULATOR_API_KEY: z.preprocess(unsetIfEmpty, z.string().optional()),
});

export interface SimulatorEnv {
  port: number;
  host: string;
  options: SimulatorOptions;
}

export class SimulatorEnvError extends Error {}

/** Reads and checks the standalone simulator's environment; throws one line that names the bad variable. */
export function readSimulatorEnv(env: NodeJS.ProcessEnv): SimulatorEnv {
  const result = envSchema.safeParse(env);
  if (!result.success) {
    const issue = result.error.issues[0];
    const name = String(issue.path[0]);
    throw new SimulatorEnvError(`Invalid ${name}=${JSON.stringify(env[name] ?? '')}: ${issue.message}`);
  }
  const values = result.data;
  return {
    port: values.SIMULATOR_PORT,
    host: values.SIMULATOR_HOST,
    options: {
      profile: values.SIMULATOR_PROFILE as SimulatorOptions['profile'],
      apiKey: values.SIMULATOR_API_KEY,
    },
  };
}
