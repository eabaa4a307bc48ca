import type { FaultProfile } from '@app/simulator';
import { type ChildProcess, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from './test-app';

const ROOT = join(__dirname, '../..');

export interface SimulatorProcess {
  child: ChildProcess;
  /** The plain base URL, `http://127.0.0.1:<port>/v1`. */
  baseUrl: string;
  /** Each deployment's base URL, `http://127.0.0.1:<port>/d/<name>/v1`, by name. */
  urls: Record<string, string>;
  /** SIGKILL, resolved once the process is gone. */
  kill(): Promise<void>;
}

/**
 * The standalone simulator (`apps/simulator/src/main.ts`, compiled on load by swc) as its own process, serving the
 * given deployments, on a free loopback port. Start one per faulty upstream to give a router real processes to
 * fail over between; read what each saw at `GET /d/<name>/stats`.
 */
export async function startSimulatorProcess(
  deployments: Record<string, FaultProfile>,
  env: Record<string, string> = {},
): Promise<SimulatorProcess> {
  const child = spawn(
    process.execPath,
    ['--import', join(ROOT, 'test/support/typescript-hooks.mjs'), join(ROOT, 'apps/simulator/src/main.ts')],
    {
      cwd: tmpdir(),
      env: {
        PATH: process.env.PATH,
        SIMULATOR_PORT: '0',
        SIMULATOR_HOST: '127.0.0.1',
        SIMULATOR_PROFILE: 'instant',
        SIMULATOR_DEPLOYMENTS: JSON.stringify(deployments),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const names = Object.keys(deployments);
  const started = (): boolean =>
    names.every((name) => output.includes(`simulator deployment ${name} on `)) &&
    output.includes('simulator listening on ');
  await eventually(() => started() || child.exitCode !== null, 30_000);
  if (!started()) throw new Error(`the simulator did not start:\n${output}`);
  const urls = Object.fromEntries(
    names.map((name) => [name, new RegExp(`simulator deployment ${name} on (\\S+)`).exec(output)![1]]),
  );
  return {
    child,
    baseUrl: /simulator listening on (\S+)/.exec(output)![1],
    urls,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
