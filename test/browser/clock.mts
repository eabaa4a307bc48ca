/**
 * The clock suite: are the client's latency figures right whatever the two clocks say? Three built APIs run at
 * once: on the true clock, and under Debian's `faketime` 2.5 s ahead and 1.3 s behind (wall clock only:
 * FAKETIME_DONT_FAKE_MONOTONIC=1), each with a page driving the built Angular client and a second page running
 * races beside it. For each server and each transport it checks that the `clock-offset` shown equals the
 * injected skew within 0.25 ms and lies within the hard bound shown (`clock-bound`), that the ± shown holds
 * at least half the errors (judgeUncertainty), that probes keep being taken through the rounds (the estimate
 * is kept fresh), and that no token is flagged below the bound and no delay p50 shows the skew uncorrected.
 * The delays are measured in pairs: each round starts the same run on the three measuring pages at the same
 * moment, and the median over the rounds of (skewed server's delay p50 − true-clock server's) is reported
 * against the 0.5 ms goal (see DELAY_GOAL_MS for why it is not asserted). `npm run test:e2e` runs it
 * after run.mts.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Browser, type BrowserContext, type Page, chromium } from 'playwright-core';

const RESULTS = 'test-results/browser';
const TIMEOUT_MS = 30_000;
const OFFSET_TOLERANCE_MS = 0.25;
/**
 * The widest bound worth showing on loopback: even under load, the quickest trips of a minute of probes take
 * well under 1 ms each way (bounds of 0.14 to 0.57 ms measured). A wider one says the bound was widened by
 * something else (a timer resolution measured while the page was preempted once made it 38 ms).
 */
const MAX_BOUND_MS = 1;
/**
 * The goal for a skewed server's delay p50 against the true-clock server's: the median over the rounds
 * of the paired differences, reported, not asserted. A delay is the true delay plus the offset's error, the
 * same for every token of a run, so what the clocks add to it is asserted above through the offset (within
 * 0.25 ms of the skew on each server). What is left between two servers is load: with races beside on two
 * shared cores (load average 8 to 12 while this was written), one run's p50 is 6 to 270 ms, and even runs
 * started at the same moment on three pages differ by ±10 to ±60 ms (three standard errors of the median of
 * seven pairs), because each page's delays are set by when its own renderer and server get a core.
 */
const DELAY_GOAL_MS = 0.5;
/**
 * A skew left uncorrected, or corrected the wrong way, puts every delay at least 1,300 ms off; a starved page
 * on this machine has shown a run's p50 at 270 ms.
 */
const DELAY_CEILING_MS = 1000;
const ROUNDS = 7;
const TRANSPORTS = ['sse', 'socket.io'] as const;
type Transport = (typeof TRANSPORTS)[number];

interface Clock {
  name: string;
  /** faketime's offset spec, or null for the true clock. */
  faketime: string | null;
  skewMs: number;
}

const CLOCKS: Clock[] = [
  { name: 'true clock', faketime: null, skewMs: 0 },
  { name: 'server 2.5 s ahead', faketime: '+2.5s', skewMs: 2500 },
  { name: 'server 1.3 s behind', faketime: '-1.3s', skewMs: -1300 },
];

interface OffsetReading {
  offsetMs: number;
  /** The ± shown: the estimate's likely error. */
  uncertaintyMs: number;
  /** Half the width of the interval the offset certainly lies in (`clock-bound`). */
  boundMs: number;
  text: string;
}

interface Measurement {
  delayMs: number;
  reading: OffsetReading;
  /** Tokens flagged below the clock bound in the run. */
  flagged: number;
}

interface ClockResult {
  clock: Clock;
  idle: OffsetReading;
  rounds: Record<Transport, Measurement[]>;
  /** Probes taken during the rounds, and how long they lasted. */
  probesTaken: number;
  seconds: number;
}

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}
/** A missing faketime is a failure naming the package, never a skip. */
function requireFaketime(): void {
  const probe = spawnSync('faketime', ['-f', '+0s', 'true']);
  if (probe.error || probe.status !== 0) {
    throw new Error(
      "faketime is missing: install Debian's faketime package (apt-get install -y faketime); .ci/run does.",
    );
  }
}

async function startServer(clock: Clock): Promise<{ url: string; server: ChildProcess }> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    LLM_PROVIDER: 'simulator',
    AUTH_MODE: 'none',
    LOG_LEVEL: 'warn',
    // The race page opens streams back to back for the whole suite.
    RATE_LIMIT_PER_MINUTE: '100000',
    RATE_LIMIT_CONCURRENT_STREAMS: '1000',
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
  };
  delete env['OPENAI_API_KEY'];
  delete env['OPENAI_BASE_URL'];
  const command = [process.execPath, 'dist/apps/api/main.js'];
  const server = clock.faketime
    ? spawn('faketime', ['-f', clock.faketime, ...command], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      })
    : spawn(command[0], command.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const url = await new Promise<string>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`the API did not start:\n${output}`)), 20_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    server.stdout?.on('data', onData);
    server.stderr?.on('data', onData);
    server.once('exit', (code) => reject(new Error(`the API exited with ${code}:\n${output}`)));
  });
  // faketime must really have moved the server's clock, or the suite would prove nothing.
  try {
    await expectSkew(url, clock);
  } catch (error) {
    await stopServer(server);
    throw error;
  }
  return { url, server };
}

async function expectSkew(url: string, clock: Clock): Promise<void> {
  const sentAt = Date.now();
  const time = (await (await fetch(`${url}/api/time`)).json()) as { receivedAt: number; sentAt: number };
  const receivedAt = Date.now();
  const [lower, upper] = [time.sentAt - receivedAt - 1, time.receivedAt - sentAt + 1];
  assert(
    lower <= clock.skewMs && clock.skewMs <= upper,
    `the server's clock is ${lower.toFixed(1)} to ${upper.toFixed(1)} ms off, not the ${clock.skewMs} ms faketime was asked for`,
  );
}

/**
 * SIGTERM to the server's process group (faketime's wrapper leaves the server as its child), then SIGKILL if
 * it has not exited within its drain time: a suite that fails must not leave servers behind.
 */
async function stopServer(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null || server.pid === undefined) return;
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(-(server.pid as number), name);
    } catch {
      // Already gone.
    }
  };
  signal('SIGTERM');
  const timer = setTimeout(() => signal('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

async function openClient(context: BrowserContext, url: string): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error(`    page error: ${error.message}`));
  await page.goto(url);
  await page.getByTestId('prompt').waitFor({ timeout: TIMEOUT_MS });
  return page;
}

function parseNumber(text: string, pattern: RegExp, what: string): number {
  const match = pattern.exec(text.trim());
  assert(match, `${what} shows "${text}"`);
  return Number(match[1]);
}

/** The offset shown, with its uncertainty and its hard bound, once the client has one (Settings is open). */
async function readOffset(page: Page): Promise<OffsetReading> {
  const shown = page.getByTestId('clock-offset');
  await shown.waitFor({ timeout: TIMEOUT_MS });
  const text = ((await shown.textContent()) ?? '').trim();
  const match = /^(-?\d+\.\d+) ± (\d+\.\d+)$/.exec(text);
  assert(match, `clock-offset shows "${text}", not "<ms> ± <ms>"`);
  const bound = (await page.getByTestId('clock-bound').textContent()) ?? '';
  return {
    offsetMs: Number(match[1]),
    uncertaintyMs: Number(match[2]),
    boundMs: parseNumber(bound, /^± (\d+\.\d+)$/, 'clock-bound'),
    text,
  };
}

async function probesTaken(page: Page): Promise<number> {
  return parseNumber((await page.getByTestId('clock-probes').textContent()) ?? '', /^(\d+)$/, 'clock-probes');
}

async function status(page: Page): Promise<string> {
  return ((await page.getByTestId('status').textContent()) ?? '').trim();
}

async function prepareRun(page: Page, mode: Transport | 'race', prompt: string): Promise<void> {
  await page.getByTestId('transport').selectOption(mode);
  await page.getByTestId('prompt').fill(prompt);
}

/**
 * Choosing Socket.IO connects the socket; the suite sends once Settings shows it connected, as a user would
 * see it. (A prompt sent while the socket was still connecting, under a load average of 20, once ended with
 * "socket has been disconnected": a connection race of the transport, not a matter of clocks.)
 */
async function socketConnected(page: Page): Promise<void> {
  await page
    .locator('dt:has-text("Socket.IO transport") + dd')
    .filter({ hasText: 'websocket' })
    .waitFor({ timeout: TIMEOUT_MS });
}

/** Waits until the run just sent has ended (the composer empties when the new run is shown). */
async function runEnded(page: Page): Promise<string> {
  await page.waitForFunction(
    () => document.querySelector<HTMLTextAreaElement>('[data-testid="prompt"]')?.value === '',
    undefined,
    { timeout: TIMEOUT_MS, polling: 20 },
  );
  await page.waitForFunction(
    () =>
      ['done', 'error', 'cancelled'].includes(
        document.querySelector('[data-testid="status"]')?.textContent?.trim() ?? '',
      ),
    undefined,
    { timeout: TIMEOUT_MS, polling: 20 },
  );
  return status(page);
}

async function run(page: Page, mode: Transport | 'race', prompt: string): Promise<string> {
  await prepareRun(page, mode, prompt);
  await page.getByTestId('prompt').press('Enter');
  return runEnded(page);
}

/** The second page: races back to back until told to stop, so the machine is busy while the figures are taken. */
function raceBeside(page: Page): { stop: () => Promise<number> } {
  let stopping = false;
  let races = 0;
  let failure: unknown = null;
  const loop = (async () => {
    while (!stopping) {
      const outcome = await run(page, 'race', `Race beside. [sim tokens=200 tps=50] ${races}`);
      assert(outcome === 'done', `a race beside ended ${outcome}`);
      races++;
    }
  })().catch((error: unknown) => (failure = error));
  return {
    stop: async () => {
      stopping = true;
      await loop;
      if (failure) throw failure;
      return races;
    },
  };
}

/** What a failing page showed: its status, figures, errors and the start of its text, and a screenshot. */
async function describePage(page: Page, name: string): Promise<string> {
  await page.screenshot({ path: join(RESULTS, `clock-failed-${name}.png`), fullPage: true }).catch(() => {});
  return page
    .evaluate(() => {
      const text = (id: string) =>
        [...document.querySelectorAll(`[data-testid="${id}"]`)].map((e) => e.textContent?.trim()).join(' | ');
      return [
        `status: ${text('status')}`,
        `clock-offset: ${text('clock-offset')} (bound ${text('clock-bound')})`,
        `transport-delay: ${text('transport-delay')}`,
        `error: ${text('error')}`,
        `page: ${(document.body.innerText ?? '').replace(/\s+/g, ' ').slice(0, 600)}`,
      ].join('\n      ');
    })
    .catch((error: unknown) => `(the page could not be read: ${String(error)})`);
}

interface Lane {
  clock: Clock;
  server: ChildProcess;
  contexts: BrowserContext[];
  page: Page;
  racer: Page;
  result: ClockResult;
}

async function openLane(browser: Browser, clock: Clock): Promise<Lane> {
  const { url, server } = await startServer(clock);
  const contexts: BrowserContext[] = [];
  try {
    contexts.push(await browser.newContext(), await browser.newContext());
    const [page, racer] = await Promise.all(contexts.map((context) => openClient(context, url)));
    await page.getByRole('button', { name: 'Settings' }).click();
    const idle = await readOffset(page);
    const result: ClockResult = {
      clock,
      idle,
      rounds: { sse: [], 'socket.io': [] },
      probesTaken: 0,
      seconds: 0,
    };
    return { clock, server, contexts, page, racer, result };
  } catch (error) {
    await Promise.all(contexts.map((context) => context.close()));
    await stopServer(server);
    throw error;
  }
}

/**
 * One round: the same run started on every server's measuring page at the same moment (the order of the
 * Enter presses rotating), so that the delays compared share the machine's load; then each page's delay p50,
 * the offset shown after it, and whether any token was flagged below the clock bound.
 */
async function measureRound(lanes: Lane[], transport: Transport, round: number): Promise<void> {
  for (const lane of lanes) {
    await prepareRun(lane.page, transport, `Measure me. [sim tokens=150 tps=100] ${round}`);
  }
  if (transport === 'socket.io') await Promise.all(lanes.map((lane) => socketConnected(lane.page)));
  const order = lanes.map((_, i) => lanes[(i + round) % lanes.length]);
  await Promise.all(order.map((lane) => lane.page.getByTestId('prompt').press('Enter')));
  const outcomes = await Promise.all(lanes.map((lane) => runEnded(lane.page)));
  for (const [i, lane] of lanes.entries()) {
    assert(outcomes[i] === 'done', `${lane.clock.name}: a ${transport} run ended ${outcomes[i]}`);
    const text = (await lane.page.getByTestId('transport-delay').textContent()) ?? '';
    const delayMs = Number.parseFloat(text);
    assert(Number.isFinite(delayMs), `${lane.clock.name}: ${transport} transport-delay shows "${text}"`);
    lane.result.rounds[transport].push({
      delayMs,
      reading: await readOffset(lane.page),
      flagged: await lane.page.getByTestId('delay-below-clock-bound').count(),
    });
  }
}

/** All three servers at once, each with its measuring page and a page racing beside it. */
async function measureAll(browser: Browser): Promise<ClockResult[]> {
  const lanes: Lane[] = [];
  const racing: { stop: () => Promise<number> }[] = [];
  try {
    for (const clock of CLOCKS) {
      lanes.push(await openLane(browser, clock));
    }
    racing.push(...lanes.map((lane) => raceBeside(lane.racer)));
    const startedAt = Date.now();
    const probesBefore = await Promise.all(lanes.map((lane) => probesTaken(lane.page)));
    for (let round = 0; round < ROUNDS; round++) {
      for (const transport of TRANSPORTS) await measureRound(lanes, transport, round);
    }
    for (const [i, lane] of lanes.entries()) {
      lane.result.probesTaken = (await probesTaken(lane.page)) - probesBefore[i];
      lane.result.seconds = (Date.now() - startedAt) / 1000;
    }
    const races = await Promise.all(racing.splice(0).map((beside) => beside.stop()));
    console.warn(`    (${races.join(' + ')} races ran beside)`);
    return lanes.map((lane) => lane.result);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const pages = await Promise.all(
      lanes.flatMap((lane, i) => [
        describePage(lane.page, `measuring-${i}`).then(
          (s) => `${lane.clock.name}, measuring page:\n      ${s}`,
        ),
        describePage(lane.racer, `racing-${i}`).then((s) => `${lane.clock.name}, racing page:\n      ${s}`),
      ]),
    );
    throw new Error([message, ...pages].join('\n    '), { cause: error });
  } finally {
    await Promise.allSettled(racing.map((beside) => beside.stop()));
    for (const lane of lanes) {
      await Promise.all(lane.contexts.map((context) => context.close()));
      await stopServer(lane.server);
    }
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function readingsOf(result: ClockResult): [string, OffsetReading][] {
  return [
    ['idle', result.idle],
    ...TRANSPORTS.flatMap((t) =>
      result.rounds[t].map((m, i): [string, OffsetReading] => [`${t} round ${i + 1}`, m.reading]),
    ),
  ];
}

/** Three standard errors of a median, the spread taken robustly (1.4826 × the median absolute deviation). */
function loadNoise(differences: number[]): number {
  const centre = median(differences);
  const sigma = 1.4826 * median(differences.map((d) => Math.abs(d - centre)));
  return (3 * 1.25 * sigma) / Math.sqrt(differences.length);
}

/** The paired differences of one server's delay p50 from the true-clock server's, round by round. */
function pairedDifferences(result: ClockResult, reference: ClockResult, transport: Transport): number[] {
  return result.rounds[transport].map((m, i) => m.delayMs - reference.rounds[transport][i].delayMs);
}

/** The failures of one server's figures, against the skew it was given. */
function judge(result: ClockResult): string[] {
  const failures: string[] = [];
  const { skewMs } = result.clock;
  for (const [when, reading] of readingsOf(result)) {
    const error = Math.abs(reading.offsetMs - skewMs);
    if (error > OFFSET_TOLERANCE_MS) {
      failures.push(`${when}: offset ${reading.text}, ${error.toFixed(2)} ms from the skew ${skewMs}`);
    }
    if (reading.boundMs > MAX_BOUND_MS) {
      failures.push(
        `${when}: offset ${reading.text}, its bound ± ${reading.boundMs} ms tells nothing on loopback`,
      );
    }
    // The hard bound holds whatever the paths' asymmetry (with the display's rounding).
    if (error > reading.boundMs + 0.01) {
      failures.push(
        `${when}: offset ${reading.text} is ${error.toFixed(2)} ms off, outside its bound ± ${reading.boundMs}`,
      );
    }
  }
  for (const transport of TRANSPORTS) {
    result.rounds[transport].forEach(({ delayMs, reading, flagged }, round) => {
      if (delayMs < -reading.boundMs || delayMs > DELAY_CEILING_MS) {
        failures.push(
          `${transport} round ${round + 1}: delay p50 ${delayMs.toFixed(2)} ms, outside ` +
            `[${(-reading.boundMs).toFixed(2)}, ${DELAY_CEILING_MS}] ms: the skew is not corrected`,
        );
      }
      if (flagged > 0) {
        failures.push(
          `${transport} round ${round + 1}: tokens flagged below the clock bound on a correct estimate`,
        );
      }
    });
  }
  // Kept fresh: the client keeps probing through the rounds, about once a second.
  if (result.probesTaken < result.seconds / 2) {
    failures.push(
      `only ${result.probesTaken} clock probes in ${result.seconds.toFixed(0)} s of runs: the estimate is not kept fresh`,
    );
  }
  return failures;
}

/**
 * The ± shown is a standard uncertainty (bound / √3), not a guarantee: it must hold at least half the errors
 * (a value spread evenly within the bound would be within it 58% of the time), and it is reported against
 * the issue's goal of being no more than twice the actual error, taken as the errors' root mean square over
 * every reading of the suite (a single error is often near 0, which no honest ± can be within twice of).
 */
function judgeUncertainty(results: ClockResult[]): string[] {
  const readings = results.flatMap((result) =>
    readingsOf(result).map(([, reading]) => ({ error: reading.offsetMs - result.clock.skewMs, reading })),
  );
  const within = readings.filter(
    ({ error, reading }) => Math.abs(error) <= reading.uncertaintyMs + 0.005,
  ).length;
  const rms = Math.sqrt(readings.reduce((sum, { error }) => sum + error ** 2, 0) / readings.length);
  const shown = median(readings.map(({ reading }) => reading.uncertaintyMs));
  const bound = median(readings.map(({ reading }) => reading.boundMs));
  const ratio = shown / Math.max(rms, 0.01);
  console.warn(
    `  uncertainty: ${within}/${readings.length} errors within the ± shown; error RMS ${rms.toFixed(3)} ms, ` +
      `max ${Math.max(...readings.map(({ error }) => Math.abs(error))).toFixed(3)} ms; ± median ` +
      `${shown.toFixed(3)} ms (${ratio.toFixed(1)}× the RMS: goal 2× ${ratio <= 2 ? 'met' : 'missed'}), ` +
      `bound median ${bound.toFixed(3)} ms, errors at most ` +
      `${Math.max(...readings.map(({ error, reading }) => Math.abs(error) / reading.boundMs)).toFixed(2)} of the bound`,
  );
  return within * 2 >= readings.length
    ? []
    : [
        `only ${within} of ${readings.length} offset errors within the ± shown: the uncertainty is understated`,
      ];
}

function report(result: ClockResult, reference: ClockResult): void {
  const { skewMs } = result.clock;
  const describe = (r: OffsetReading) =>
    `${(r.offsetMs - skewMs).toFixed(2)} ±${r.uncertaintyMs.toFixed(2)} [${r.boundMs.toFixed(2)}]`;
  console.warn(`  ${result.clock.name} (skew ${skewMs} ms): offset error ±uncertainty [bound], ms`);
  console.warn(`    idle: ${result.idle.text}: ${describe(result.idle)}`);
  for (const transport of TRANSPORTS) {
    const rounds = result.rounds[transport];
    console.warn(`    ${transport}: offset ${rounds.map((m) => describe(m.reading)).join(', ')}`);
    const delays = rounds.map((m) => m.delayMs.toFixed(2)).join(', ');
    if (result === reference) {
      console.warn(`      delay p50 ${delays} ms`);
    } else {
      const differences = pairedDifferences(result, reference, transport);
      const difference = median(differences);
      console.warn(
        `      delay p50 ${delays} ms; minus the true clock's: ${differences.map((d) => d.toFixed(2)).join(', ')}` +
          ` (median ${difference.toFixed(2)} ms: goal ${DELAY_GOAL_MS} ms ` +
          `${Math.abs(difference) <= DELAY_GOAL_MS ? 'met' : 'missed'}; load noise ±${loadNoise(differences).toFixed(2)} ms)`,
      );
    }
  }
  console.warn(`    ${result.probesTaken} clock probes in ${result.seconds.toFixed(0)} s of rounds`);
}

async function main(): Promise<void> {
  requireFaketime();
  await mkdir(RESULTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  const failures: string[] = [];
  const results: ClockResult[] = [];
  try {
    console.warn('clock suite: the true clock, faketime +2.5 s and -1.3 s, side by side with races beside');
    try {
      results.push(...(await measureAll(browser)));
    } catch (error) {
      failures.push(error instanceof Error ? error.message : String(error));
    }
    const reference = results.find((r) => r.clock.skewMs === 0);
    if (reference) {
      for (const result of results) {
        report(result, reference);
        failures.push(...judge(result).map((failure) => `${result.clock.name}: ${failure}`));
      }
      failures.push(...judgeUncertainty(results));
    }
  } finally {
    await browser.close();
  }
  for (const failure of failures) console.error(`  ✗ ${failure}`);
  console.warn(failures.length === 0 ? '  ✓ clock suite passed' : `${failures.length} failed`);
  process.exitCode = failures.length === 0 ? 0 : 1;
}

await main();
