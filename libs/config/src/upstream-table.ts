import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/** How a deployment continues a partial answer sent as the final assistant message (CONTRACT.md, "Upstreams"). */
export const CONTINUATION_MODES = ['none', 'continue_final_message', 'prefix'] as const;
export type ContinuationMode = (typeof CONTINUATION_MODES)[number];

const milliseconds = z
  .number()
  .int()
  .min(1)
  .max(24 * 60 * 60 * 1000);
/** Names appear in `route` events, logs and metric labels: short and plain. */
const name = z.string().regex(/^[A-Za-z0-9][\w.:-]{0,63}$/, 'must be 1-64 letters, digits, . _ : -');

/**
 * The defaults a careful operator would pick (docs/configuration.md says why): a silent deployment is given up
 * after 10 s without headers or 15 s without a first token, a failing one is put aside after two failures in a
 * row for 30 s and then probed with one request, and a stream makes at most four attempts within 45 s.
 */
export const UPSTREAM_DEFAULTS = {
  headersTimeoutMs: 10_000,
  firstTokenTimeoutMs: 15_000,
  idleTimeoutMs: 30_000,
  cooldownMs: 30_000,
  allowedFails: 1,
  maxAttempts: 4,
  deadlineMs: 45_000,
  /** Until a deployment has this many first tokens measured, an adaptive hedge waits `adaptiveHedgeFallbackMs`. */
  adaptiveHedgeSamples: 20,
  adaptiveHedgeFallbackMs: 1000,
} as const;

const deploymentSchema = z
  .strictObject({
    baseUrl: z.url({ protocol: /^https?$/ }).optional(),
    /** Served by the built-in simulator with this fault profile (its schema is the simulator's), instead of a URL. */
    simulator: z.record(z.string(), z.unknown()).optional(),
    apiKeyEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be the name of an environment variable')
      .optional(),
    continuation: z.enum(CONTINUATION_MODES).default('none'),
    cooldownMs: milliseconds.default(UPSTREAM_DEFAULTS.cooldownMs),
    /** Failures in a row tolerated before the cooldown: the next one puts the deployment aside. */
    allowedFails: z.number().int().min(0).max(100).default(UPSTREAM_DEFAULTS.allowedFails),
    headersTimeoutMs: milliseconds.default(UPSTREAM_DEFAULTS.headersTimeoutMs),
    firstTokenTimeoutMs: milliseconds.optional(),
    idleTimeoutMs: milliseconds.default(UPSTREAM_DEFAULTS.idleTimeoutMs),
    /** Streams this instance sends to the deployment at once; past it the deployment is skipped. */
    maxConcurrent: z.number().int().min(1).max(1_000_000).optional(),
  })
  .refine((deployment) => (deployment.baseUrl === undefined) !== (deployment.simulator === undefined), {
    message: 'needs exactly one of baseUrl and simulator',
  });

const targetSchema = z.strictObject({
  deployment: name,
  model: z.string().min(1).max(256),
  weight: z.number().positive().max(1_000_000).default(1),
});

const fallbackSchema = z.strictObject({
  deployment: name,
  model: z.string().min(1).max(256),
  /** Only for these faults (contract codes, or the upstream's own code such as `context_length_exceeded`). */
  on: z.array(z.string().min(1).max(64)).min(1).optional(),
});

const modelSchema = z.strictObject({
  targets: z.array(targetSchema).min(1).max(64),
  fallbacks: z.array(fallbackSchema).max(64).default([]),
  firstTokenTimeoutMs: milliseconds.optional(),
  /** Start the next attempt when no first token came by then; `adaptive`: by the deployment's recent TTFT p95. */
  hedgeAfterMs: z.union([milliseconds, z.literal('adaptive')]).optional(),
  maxAttempts: z.number().int().min(1).max(10).default(UPSTREAM_DEFAULTS.maxAttempts),
  /** From the request to the first token, every attempt and wait included. */
  deadlineMs: milliseconds.default(UPSTREAM_DEFAULTS.deadlineMs),
});

export const upstreamTableSchema = z
  .strictObject({
    deployments: z.record(name, deploymentSchema).refine((value) => Object.keys(value).length > 0, {
      message: 'needs at least one deployment',
    }),
    models: z.record(name, modelSchema).refine((value) => Object.keys(value).length > 0, {
      message: 'needs at least one model',
    }),
    defaultModel: name.optional(),
  })
  .superRefine((table, context) => {
    for (const [modelName, model] of Object.entries(table.models)) {
      const references = [
        ...model.targets.map((target, index) => ['targets', index, target.deployment] as const),
        ...model.fallbacks.map((fallback, index) => ['fallbacks', index, fallback.deployment] as const),
      ];
      for (const [list, index, deployment] of references) {
        if (!(deployment in table.deployments)) {
          context.addIssue({
            code: 'custom',
            path: ['models', modelName, list, index, 'deployment'],
            message: `names no deployment (${Object.keys(table.deployments).join(', ')})`,
          });
        }
      }
    }
    if (table.defaultModel !== undefined && !(table.defaultModel in table.models)) {
      context.addIssue({ code: 'custom', path: ['defaultModel'], message: 'names no model of the table' });
    }
  });

export type UpstreamTableFile = z.infer<typeof upstreamTableSchema>;
export type DeploymentSpec = UpstreamTableFile['deployments'][string];
export type ModelSpec = UpstreamTableFile['models'][string];

/** A table that cannot be used; `field` is the path in the file (`deployments.primary.baseUrl`). */
export class UpstreamTableError extends Error {
  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(field === '' ? reason : `${field}: ${reason}`);
    this.name = 'UpstreamTableError';
  }
}

/**
 * Reads and validates a YAML or JSON table (by its extension; YAML is a superset of JSON, so other names are read
 * as YAML). Every key the table names by `apiKeyEnv` must be set in `env`. Values are never echoed back: a
 * mistyped field may hold a secret.
 */
export function loadUpstreamTable(path: string, env: Record<string, string | undefined>): UpstreamTableFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UpstreamTableError(
      '',
      `cannot read the file (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  let raw: unknown;
  try {
    raw = extname(path).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    const line = (error as { linePos?: { line: number }[] }).linePos?.[0]?.line;
    throw new UpstreamTableError(
      '',
      `not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}${line ? ` (line ${line})` : ''}`,
    );
  }
  return parseUpstreamTable(raw, env);
}

export function parseUpstreamTable(raw: unknown, env: Record<string, string | undefined>): UpstreamTableFile {
  const parsed = upstreamTableSchema.safeParse(raw);
  if (!parsed.success) {
    const [issue] = parsed.error.issues;
    throw new UpstreamTableError(issue.path.join('.'), issue.message);
  }
  for (const [deploymentName, deployment] of Object.entries(parsed.data.deployments)) {
    if (deployment.apiKeyEnv !== undefined && !env[deployment.apiKeyEnv]) {
      throw new UpstreamTableError(
        `deployments.${deploymentName}.apiKeyEnv`,
        `the environment variable ${deployment.apiKeyEnv} is not set`,
      );
    }
  }
  return parsed.data;
}
