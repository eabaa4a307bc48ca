/**
 * The load generator, one process per run so that its CPU never counts against a target. It warms the target and
 * its own clients up, waits for the orchestrator's `go` (which snapshots CPU and memory first), opens the streams
 * on an absolute schedule, reads every token, and reports over IPC how many streams are streaming, every 250 ms,
 * then the summary.
 *
 * Each token's text starts with `⟨emission time⟩` (the simulator's emit_ts), so the added latency is receipt
 * minus emission on one host's clock, without clock tricks.
 */
import { CLIENTS } from './clients.mts';
import { type LoadgenMessage, type RunSpec, type StreamResult, streamPrompt, summarise } from './measure.mts';

const spec = JSON.parse(process.argv[2] ?? '{}') as RunSpec;
const client = CLIENTS[spec.target];
const STAMP = /^⟨(\d+\.\d{3})⟩/;
const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const send = (message: LoadgenMessage, then?: () => void) => process.send?.(message, undefined, {}, then);

/** The message, and its cause's code: undici's "fetch failed" alone says nothing. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause as { code?: string; message?: string } | undefined;
  const detail = cause?.code ?? cause?.message;
  return (detail ? `${error.message} (${detail})` : error.message).slice(0, 200);
}

async function runStream(text: string, signal: AbortSignal, onFirstToken: () => void): Promise<StreamResult> {
  const result: StreamResult = {
    sentAt: now(),
    firstTokenAt: undefined,
    endedAt: undefined,
    latencies: [],
    text: '',
    faults: [],
    error: undefined,
  };
  try {
    await client(
      spec.url,
      text,
      {
        token: (token) => {
          const receivedAt = now();
          if (result.firstTokenAt === undefined) {
            result.firstTokenAt = receivedAt;
            onFirstToken();
          }
          const stamp = STAMP.exec(token);
          if (!stamp) {
            result.faults.push('a token without its emission stamp');
            result.text += token;
            return;
          }
          result.latencies.push(receivedAt - Number(stamp[1]));
          result.text += token.slice(stamp[0].length);
        },
        fault: (description) => result.faults.push(description),
      },
      signal,
    );
  } catch (error) {
    result.error = signal.aborted ? 'timeout' : describe(error);
  }
  result.endedAt = now();
  return result;
}

/** Short streams before measuring, so lazy loading and JIT warm-up in the target and in this process don't count. */
async function warmUp(): Promise<void> {
  const signal = AbortSignal.timeout(15_000);
  const once = () => runStream(streamPrompt(10, 0), signal, () => undefined);
  const results = [
    await once(),
    ...(await Promise.all(Array.from({ length: Math.min(spec.streams, 20) }, once))),
  ];
  const failed = results.filter((result) => result.error !== undefined);
  send({ kind: 'warmed', errors: failed.length, firstError: failed[0]?.error });
}

async function measure(): Promise<void> {
  const abort = new AbortController();
  const deadline = setTimeout(() => abort.abort(), spec.deadlineMs);
  const text = streamPrompt(spec.tokens, spec.tps, spec.ttftMs);
  const cpuBefore = process.cpuUsage();
  const started = now();
  let streaming = 0;
  const streams: Promise<StreamResult>[] = [];
  const reporter = setInterval(() => send({ kind: 'streaming', count: streaming }), 250);
  const onFirstToken = () => (streaming += 1);
  const track = (stream: Promise<StreamResult>) =>
    stream.then((result) => {
      if (result.firstTokenAt !== undefined) streaming -= 1;
      return result;
    });
  for (let index = 0; spec.oneByOne && index < spec.streams && !abort.signal.aborted; index++) {
    const stream = track(runStream(text, abort.signal, onFirstToken));
    streams.push(stream);
    await stream;
  }
  for (let index = 0; !spec.oneByOne && index < spec.streams && !abort.signal.aborted;) {
    // Open every stream that is due, then sleep until the next one is: the rate holds even when a tick runs late.
    const due = started + (index * 1000) / spec.openPerSecond;
    if (now() < due) {
      await sleep(Math.max(0, due - now()));
      continue;
    }
    streams.push(track(runStream(text, abort.signal, onFirstToken)));
    index += 1;
  }
  const rampMs = now() - started;
  const results = await Promise.all(streams);
  clearTimeout(deadline);
  clearInterval(reporter);
  const wallMs = Math.max(...results.map((result) => result.endedAt ?? started)) - started;
  const cpu = process.cpuUsage(cpuBefore);
  const summary = summarise(spec, results, { wallMs, rampMs, cpuMs: (cpu.user + cpu.system) / 1000 });
  // Exit once the summary is out: idle keep-alive sockets must not hold the process open.
  send({ kind: 'summary', summary }, () => process.exit(0));
}

await warmUp();
process.once('message', () => {
  measure().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
});
