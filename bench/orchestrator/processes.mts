/**
 * The processes of a run: start one on loopback and wait for its "listening on <url>" line, stop it (SIGTERM, then
 * SIGKILL), stop everything on the way out, and read a process's or the machine's CPU and memory from /proc.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';

export interface Server {
  name: string;
  url: string;
  child: ChildProcess;
  pid: number;
}

const running = new Set<ChildProcess>();

/** Remembers a child so that `stopAll` ends it whatever happens to the orchestrator. */
export function track(child: ChildProcess): ChildProcess {
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

export function startServer(
  name: string,
  args: string[],
  env: Record<string, string>,
  cwd = process.cwd(),
  timeoutMs = 30_000,
): Promise<Server> {
  const child = track(
    spawn(process.execPath, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  return new Promise((resolve, reject) => {
    let output = '';
    const fail = (reason: string) => {
      child.kill('SIGKILL');
      reject(new Error(`${name} ${reason}:\n${output.slice(-2000)}`));
    };
    const timer = setTimeout(() => fail(`did not start within ${timeoutMs} ms`), timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/[^\s/]+(?:\/v1)?)/.exec(output);
      if (match) {
        clearTimeout(timer);
        // Keep draining its output, so a chatty child never blocks on a full pipe.
        resolve({ name, url: match[1], child, pid: child.pid as number });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}):\n${output.slice(-2000)}`));
    });
  });
}

export function stopProcess(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => (clearTimeout(killer), resolve()));
    child.kill('SIGTERM');
  });
}

export async function stopAll(graceMs = 3000): Promise<void> {
  await Promise.all([...running].map((child) => stopProcess(child, graceMs)));
}

/** A process's utime + stime (all its threads), in seconds, and its resident set, in bytes. */
export async function processUsage(pid: number): Promise<{ cpuSeconds: number; rssBytes: number }> {
  // Fields 14 and 15 of /proc/<pid>/stat, counted after the parenthesised command name, in clock ticks (1/100 s).
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const values = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { cpuSeconds: (Number(values[11]) + Number(values[12])) / CLOCK_TICKS, rssBytes: rssKb * 1024 };
}

/** CPU seconds the whole machine spent busy (all cores), from the first line of /proc/stat. */
export async function machineBusySeconds(): Promise<number> {
  const [, user, nice, system, , , irq, softirq] = (await readFile('/proc/stat', 'utf8'))
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .map(Number);
  return (user + nice + system + irq + softirq) / CLOCK_TICKS;
}

/** USER_HZ: 100 on every Linux the bench targets (getconf CLK_TCK). */
const CLOCK_TICKS = 100;
