/**
 * What `npm run build` built, as child processes on free loopback ports, for the browser suites: the API
 * (serving the Angular client too) and the standalone simulator.
 */
import { type ChildProcess, spawn } from 'node:child_process';

export interface BuiltServer {
  url: string;
  server: ChildProcess;
  /** Everything it printed so far, for a failure report. */
  output: () => string;
}

/** Spawns `script` and resolves with the URL from its first line matching `listening`. */
function startBuilt(script: string, env: NodeJS.ProcessEnv, listening: RegExp): Promise<BuiltServer> {
  const server = spawn(process.execPath, [script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise<BuiltServer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start:\n${output}`)), 20_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = listening.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ url: match[1], server, output: () => output });
      }
    };
    server.stdout?.on('data', onData);
    server.stderr?.on('data', onData);
    server.once('exit', (code) => reject(new Error(`${script} exited with ${code}:\n${output}`)));
  });
}

/**
 * The built API on a free port, with the built-in simulator as the model and no auth unless `overrides` say
 * otherwise; OpenAI settings of the developer's environment never reach it.
 */
export function startServer(overrides: Record<string, string> = {}): Promise<BuiltServer> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['OPENAI_API_KEY'];
  delete env['OPENAI_BASE_URL'];
  return startBuilt(
    'dist/apps/api/main.js',
    { ...env, PORT: '0', HOST: '127.0.0.1', LLM_PROVIDER: 'simulator', AUTH_MODE: 'none', ...overrides },
    /listening on (http:\/\/\S+)/,
  );
}

/** The standalone simulator on a free port; its URL is the OpenAI base URL, ending in `/v1`. */
export function startSimulator(apiKey: string): Promise<BuiltServer> {
  return startBuilt(
    'dist/apps/simulator/main.js',
    { ...process.env, SIMULATOR_PORT: '0', SIMULATOR_HOST: '127.0.0.1', SIMULATOR_API_KEY: apiKey },
    /simulator listening on (http:\/\/\S+)/,
  );
}

/** SIGTERM, then SIGKILL if it has not exited within its drain time: a failed suite leaves no server behind. */
export async function stopServer({ server }: BuiltServer): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  server.kill('SIGTERM');
  const timer = setTimeout(() => server.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}
