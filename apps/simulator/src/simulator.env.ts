import {
  DEPLOYMENT_NAME_PATTERN,
  describeProfileIssue,
  faultProfileSchema,
  PROFILE_NAMES,
  type FaultProfile,
  type SimulatorOptions,
} from '@app/simulator';
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
  SIMULATOR_KEY: z.preprocess(unsetIfEmpty, z.string().min(16, 'must be at least 16 characters').optional()),
  SIMULATOR_DEPLOYMENTS: z.preprocess(unsetIfEmpty, z.string().optional()),
});

const SECRETS = new Set(['SIMULATOR_API_KEY', 'SIMULATOR_KEY']);

export interface SimulatorEnv {
  port: number;
  host: string;
  options: SimulatorOptions;
}

export class SimulatorEnvError extends Error {}

/**
 * `SIMULATOR_DEPLOYMENTS`: JSON, `{ "<name>": <fault profile>, … }`, one deployment or several per process. The
 * error names the bad field and never repeats the value (a profile can be long; one line is the rule).
 */
function readDeployments(json: string | undefined): Record<string, FaultProfile> | undefined {
  if (json === undefined) return undefined;
  const fail = (why: string) => new SimulatorEnvError(`Invalid SIMULATOR_DEPLOYMENTS: ${why}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw fail('not JSON; expected {"<name>": {<fault profile>}, …}');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw fail('expected a JSON object of deployments by name');
  }
  for (const [name, profile] of Object.entries(parsed)) {
    if (!DEPLOYMENT_NAME_PATTERN.test(name)) {
      throw fail(`${JSON.stringify(name)} is no deployment name (letters, digits, ., _ or -, up to 64)`);
    }
    const result = faultProfileSchema.safeParse(profile);
    if (!result.success) throw fail(describeProfileIssue(result.error, [name]));
  }
  return parsed as Record<string, FaultProfile>;
}

/** Reads and checks the standalone simulator's environment; throws one line that names the bad variable. */
export function readSimulatorEnv(env: NodeJS.ProcessEnv): SimulatorEnv {
  const result = envSchema.safeParse(env);
  if (!result.success) {
    const issue = result.error.issues[0];
    const name = String(issue.path[0]);
    // A secret is never repeated, not even a wrong one: it is usually a typo of the right one.
    const shown = SECRETS.has(name) ? '' : `=${JSON.stringify(env[name] ?? '')}`;
    throw new SimulatorEnvError(`Invalid ${name}${shown}: ${issue.message}`);
  }
  const values = result.data;
  return {
    port: values.SIMULATOR_PORT,
    host: values.SIMULATOR_HOST,
    options: {
      profile: values.SIMULATOR_PROFILE as SimulatorOptions['profile'],
      apiKey: values.SIMULATOR_API_KEY,
      ...(values.SIMULATOR_KEY === undefined ? {} : { key: values.SIMULATOR_KEY }),
      ...(values.SIMULATOR_DEPLOYMENTS === undefined
        ? {}
        : { deployments: readDeployments(values.SIMULATOR_DEPLOYMENTS) }),
    },
  };
}
