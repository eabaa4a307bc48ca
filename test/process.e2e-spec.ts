import type { CompletionEvent, StartAck } from '@app/contracts';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { postStream, readStream } from './support/sse-client';
import { eventually } from './support/test-app';

const ROOT = join(__dirname, '..');
const API_KEY = 'key-CANARY-7d1f0c';
const GRACE_MS = 5000;
const auth = { authorization: `Bearer ${API_KEY}` };
const user = (content: string) => ({ messages: [{ role: 'user' as const, content }] });

interface ServerProcess {
  child: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
}

/** `node apps/api/src/main.ts` as its own process (the sources, compiled on load by swc), as production runs it. */
async function startServer(env: Record<string, string>): Promise<ServerProcess> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(OPENAI_|AUTH_|LLM_|STREAM_|SHUTDOWN_)/.test(name)),
  );
  const child = spawn(
    process.execPath,
    ['--import', join(ROOT, 'test/support/typescript-hooks.mjs'), join(ROOT, 'apps/api/src/main.ts')],
    // Not the repository: a developer's .env there must not change the server under test.
    { cwd: tmpdir(), env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await eventually(() => /listening on http:\/\/\S+/.test(stderr) || child.exitCode !== null, 20_000);
  const url = /listening on (http:\/\/\S+)/.exec(stderr)?.[1];
  if (!url) {
    throw new Error(`the server did not start:\n${stderr}`);
  }
  return { child, url, stdout: () => stdout, stderr: () => stderr };
}

function socketClient(url: string): Promise<Socket> {
  const socket = io(`${url}/completions`, {
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    auth: { token: API_KEY },
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

/** Starts a stream on `socket` and resolves with its events once the terminal one came (or the socket closed). */
function socketStream(socket: Socket, prompt: string, onEvent: () => void): Promise<CompletionEvent[]> {
  return new Promise((resolve, reject) => {
    const events: CompletionEvent[] = [];
    let streamId: string | undefined;
    const listener = (event: CompletionEvent) => {
      if (event.streamId !== streamId) {
        return;
      }
      events.push(event);
      onEvent();
      if (event.type === 'done' || event.type === 'error') {
        socket.off('completion', listener);
        resolve(events);
      }
    };
    socket.on('completion', listener);
    socket.once('disconnect', () => resolve(events));
    socket.emit('completion:start', user(prompt), (ack: StartAck) => {
      if (ack.ok) {
        streamId = ack.streamId;
      } else {
        reject(new Error(ack.error.code));
      }
    });
  });
}

describe('the server process: SIGTERM during 100 live streams, and what it logs', () => {
  let server: ServerProcess;

  beforeAll(async () => {
    server = await startServer({
      PORT: '0',
      HOST: '127.0.0.1',
      NODE_ENV: 'test',
      LLM_PROVIDER: 'simulator',
      SIMULATOR_PROFILE: 'fast',
      SHUTDOWN_GRACE_MS: String(GRACE_MS),
      STREAM_RESUME_GRACE_MS: '5000',
      LOG_LEVEL: 'info',
      AUTH_MODE: 'api-key',
      AUTH_API_KEYS: API_KEY,
      RATE_LIMIT_PER_MINUTE: '10000',
      RATE_LIMIT_CONCURRENT_STREAMS: '1000',
      WEB_ROOT: '/nonexistent',
    });
  }, 30_000);
  afterAll(() => {
    if (server.child.exitCode === null) {
      server.child.kill('SIGKILL');
    }
  });

  it('drains: short streams finish, the rest end with shutting_down, new ones are refused, exit code 0', async () => {
    // Credentials and text the logs must never show: the key (header and handshake), a resume token, prompt and answer.
    const echoed = await postStream(server.url, user('[sim echo] ANSWER-CANARY and PROMPT-CANARY'), {
      headers: auth,
    });
    const resumeToken = echoed.headers.get('x-resume-token') as string;
    const streamId = echoed.headers.get('x-stream-id') as string;
    const replay = await readStream(
      await fetch(
        `${server.url}/api/completions/${streamId}/stream?lastEventId=0&resumeToken=${resumeToken}`,
      ),
    );
    expect(replay.events.at(-1)?.type).toBe('done');

    const sockets = await Promise.all([1, 2, 3, 4, 5].map(() => socketClient(server.url)));
    // A stream counts as live once its first event came: on a loaded machine some requests are still queued when
    // 300 events have arrived, and one reaching the server after SIGTERM is rightly refused, not drained.
    let eventsSeen = 0;
    const live = new Set<number>();
    const seen = (index: number) => () => {
      eventsSeen += 1;
      live.add(index);
    };
    // 20 tokens at 20/s (1 s) finish well inside the grace, even on a loaded machine; 400 (20 s) cannot.
    // Ten short ones, five on each transport (even indexes go over SSE).
    const prompt = (index: number) =>
      index % 20 === 0 || index % 20 === 5
        ? '[sim tokens=20 tps=20] PROMPT-CANARY'
        : '[sim tokens=400 tps=20] PROMPT-CANARY';
    const runs = Array.from({ length: 100 }, (_, index) =>
      index % 2 === 0
        ? postStream(server.url, user(prompt(index)), { headers: auth, onEvent: seen(index) }).then(
            ({ events }) => events,
          )
        : socketStream(sockets[index % sockets.length], prompt(index), seen(index)),
    );
    // Every stream has its start event and the first tokens are flowing.
    await eventually(() => live.size === runs.length && eventsSeen >= 300, 20_000);

    const signalledAt = performance.now();
    server.child.kill('SIGTERM');
    const exited = once(server.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    await new Promise((resolve) => setTimeout(resolve, 200));
    const refusedHttp = await fetch(`${server.url}/api/completions/stream`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify(user('too late')),
    });
    const refusedSocket = await new Promise<StartAck>((resolve) =>
      sockets[0].emit('completion:start', user('too late'), resolve),
    );
    const readiness = await fetch(`${server.url}/health/ready`);
    const results = await Promise.all(runs);
    const lastEventAt = performance.now();
    const [code, signal] = await exited;
    const exitedAt = performance.now();
    sockets.forEach((socket) => socket.disconnect());

    expect(refusedHttp.status).toBe(503);
    expect(await refusedHttp.json()).toMatchObject({ code: 'shutting_down' });
    expect(refusedSocket).toMatchObject({ ok: false, error: { code: 'shutting_down' } });
    expect(readiness.status).toBe(503);
    const endings = results.map((events) => {
      const last = events.at(-1);
      return last?.type === 'error' ? last.error.code : last?.type === 'done' ? last.finishReason : 'none';
    });
    const tally: Record<string, number> = {};
    endings.forEach((ending, index) => {
      const key = `${index % 2 === 0 ? 'sse' : 'socket.io'} ${ending}`;
      tally[key] = (tally[key] ?? 0) + 1;
    });
    expect(tally).toEqual({
      'sse stop': 5,
      'sse shutting_down': 45,
      'socket.io stop': 5,
      'socket.io shutting_down': 45,
    });
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    // The grace is given in full before the rest are ended (timers never fire early; no upper bound on a loaded machine).
    expect(lastEventAt - signalledAt).toBeGreaterThanOrEqual(GRACE_MS - 50);
    process.stderr.write(
      `shutdown: last terminal event ${Math.round(lastEventAt - signalledAt)} ms after SIGTERM, ` +
        `exit ${Math.round(exitedAt - signalledAt)} ms after (grace ${GRACE_MS} ms)\n`,
    );

    // Logs: JSON lines, with request and stream ids, and nothing a client sent or was sent.
    const lines = server
      .stdout()
      .split('\n')
      .filter((line) => line.trim() !== '');
    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records.some((record) => record.streamId === streamId && record.msg === 'stream ended')).toBe(
      true,
    );
    expect(
      records.some(
        (record) => typeof (record.req as { id?: unknown } | undefined)?.id === 'string' && 'res' in record,
      ),
    ).toBe(true);
    const everything = server.stdout() + server.stderr();
    expect(everything).not.toContain('CANARY');
    expect(everything).not.toContain(resumeToken);
  }, 40_000);
});
