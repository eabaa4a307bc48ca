import { type ChildProcess, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from './test-app';

const ROOT = join(__dirname, '../..');

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  stderr: () => string;
  /** SIGKILL, resolved once the process is gone. */
  kill(): Promise<void>;
}

/** `node apps/api/src/main.ts` as its own process (the sources, compiled on load by swc), so it can be killed. */
export async function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !/^(OPENAI_|AUTH_|LLM_|STREAM_|SHUTDOWN_|REDIS_|RATE_LIMIT_)/.test(name),
    ),
  );
  const child = spawn(
    process.execPath,
    ['--import', join(ROOT, 'test/support/typescript-hooks.mjs'), join(ROOT, 'apps/api/src/main.ts')],
    // Not the repository: a developer's .env there must not change the server under test.
    {
      cwd: tmpdir(),
      env: { ...inherited, PORT: '0', HOST: '127.0.0.1', WEB_ROOT: '/nonexistent', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await eventually(() => /listening on http:\/\/\S+/.test(stderr) || child.exitCode !== null, 30_000);
  const url = /listening on (http:\/\/\S+)/.exec(stderr)?.[1];
  if (!url) {
    throw new Error(`the server did not start:\n${stderr}`);
  }
  return {
    child,
    url: url.replace('[::1]', '127.0.0.1'),
    stderr: () => stderr,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
