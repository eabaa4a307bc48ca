/// <reference lib="dom" />
/**
 * `npm run bench -- --network`: SSE, Socket.IO and /v1 as a browser sees them on a real network. The built
 * gateway (its own simulator as the model) behind Debian's nginx running docs/nginx.conf on its TLS port, once
 * with HTTP/2 and once with HTTP/1.1 only, each behind the delay proxy (delay-proxy.ts: a round trip split over
 * both directions, jitter, a bandwidth cap per connection). Chromium runs the real Angular client in 1 or 8 tabs
 * of one browser, so its own connection pool, TLS and HTTP/2 are what is measured. Per cell: TTFT, per-token
 * delay p50/p99 (arrival − the server's `ts`, the client's clock offset applied), time to last token, and the
 * bytes the proxy carried toward the browser per token. Warm: right after the page loaded, its connections open.
 * Cold: the proxy has just reset every connection (a load balancer's idle timeout); Socket.IO's client
 * reconnects by itself, so its run starts once it shows the socket again, while SSE and /v1 pay TCP and TLS in
 * their request. /v1 is fetched from the page (the client has no /v1 mode), its delays from the simulator's
 * emission stamps (`[sim emit_ts]`; one clock: browser and server share the machine).
 * Writes bench/results/network/ (JSON, report) and docs/transport-comparison.md's figures and charts.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { type Nginx, startNginx } from '../../test/support/nginx.ts';
import { type Server, startServer, stopProcess } from '../orchestrator/processes.mts';
import { socketConnected } from '../../test/browser/client-page.mts';
import { type DelayProxy, startDelayProxy } from './delay-proxy.ts';

export type LabTransport = 'sse' | 'socket.io' | 'v1';
export type Protocol = 'h1' | 'h2';

export interface Cell {
  rttMs: number;
  protocol: Protocol;
  tabs: number;
  start: 'warm' | 'cold';
  transport: LabTransport;
}

export interface CellResult extends Cell {
  /** What the client showed as the connection (h1/h2/websocket), from the first tab. */
  shown: string;
  runs: number;
  failed: number;
  ttftMs: number;
  /** The slowest tab's TTFT: with 8 tabs over HTTP/1.1, the ones that waited for a connection. */
  ttftMaxMs: number;
  delayP50Ms: number;
  delayP99Ms: number;
  lastTokenMs: number;
  bytesPerToken: number;
}

export interface LabOptions {
  quick: boolean;
  resultsDir: string;
  docsFile: string | null;
}

const RTTS = [0, 20, 100, 300];
/** One-way jitter: a tenth of the one-way delay, at least 1 ms once there is a delay. */
const jitterOf = (rttMs: number) => (rttMs === 0 ? 0 : Math.max(1, rttMs / 20));
/** 10 Mbit/s each way per connection: a modest broadband or a good mobile link. */
const BYTES_PER_SECOND = 1_250_000;
const TOKENS = 40;
const TPS = 50;
const PROMPT = `The network lab. [sim tokens=${TOKENS} tps=${TPS}]`;
const RUN_TIMEOUT_MS = 60_000;

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.round(q * (sorted.length - 1)))];
}
const median = (values: number[]) =>
  quantile(
    [...values].sort((a, b) => a - b),
    0.5,
  );

export function cells(quick: boolean): Cell[] {
  if (quick) {
    return (['sse', 'socket.io', 'v1'] as const).map((transport) => ({
      rttMs: 100,
      protocol: 'h2',
      tabs: 1,
      start: 'warm',
      transport,
    }));
  }
  return RTTS.flatMap((rttMs) =>
    (['h1', 'h2'] as const).flatMap((protocol) =>
      [1, 8].flatMap((tabs) =>
        (['warm', 'cold'] as const).flatMap((start) =>
          (['sse', 'socket.io', 'v1'] as const).map((transport) => ({
            rttMs,
            protocol,
            tabs,
            start,
            transport,
          })),
        ),
      ),
    ),
  );
}

interface FiledRun {
  transport: string;
  ttftMs: number | null;
  durationMs: number | null;
  tokens: number;
  transportDelaySketch: number[];
  status: string;
}

/**
 * The newest run this tab filed in its history, for one transport. The tabs share one localStorage, and each
 * writes its own list there, so the storage holds whichever tab wrote last: the lab keeps what each tab itself
 * wrote (an init script wraps setItem), not what the storage holds.
 */
async function lastRecord(page: Page, transport: string): Promise<FiledRun | undefined> {
  const records = await page.evaluate(
    () => JSON.parse((window as unknown as { labHistory?: string }).labHistory ?? '[]') as FiledRun[],
  );
  return records.find((record) => record.transport === transport);
}

function keepOwnHistory(): void {
  const setItem = Storage.prototype.setItem;
  Storage.prototype.setItem = function (key: string, value: string) {
    if (key === 'llm-stream-gateway.history.v1')
      (window as unknown as { labHistory?: string }).labHistory = value;
    setItem.call(this, key, value);
  };
}

const socketShown = (page: Page) => socketConnected(page, RUN_TIMEOUT_MS);

/** One run in the client; resolves with what it filed, and what it showed as the connection. */
async function clientRun(
  page: Page,
  mode: 'sse' | 'socket.io',
): Promise<{ record: FiledRun; shown: string }> {
  const before = (await lastRecord(page, mode))?.transportDelaySketch;
  await page.getByTestId('prompt').fill(PROMPT);
  await page.getByTestId('prompt').press('Enter');
  await page.waitForFunction(
    () =>
      ['done', 'error', 'cancelled'].includes(
        document.querySelector('[data-testid="status"]')?.textContent?.trim() ?? '',
      ),
    undefined,
    { timeout: RUN_TIMEOUT_MS, polling: 20 },
  );
  // SSE shows its protocol once the response has ended.
  await page
    .waitForFunction(
      () =>
        !['', '–'].includes(document.querySelector('[data-testid="protocol"]')?.textContent?.trim() ?? ''),
      undefined,
      { timeout: 3000, polling: 50 },
    )
    .catch(() => undefined);
  const shown = ((await page.getByTestId('protocol').textContent()) ?? '').trim();
  let record = await lastRecord(page, mode);
  for (let i = 0; i < 50 && record?.transportDelaySketch === before; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    record = await lastRecord(page, mode);
  }
  if (!record) throw new Error(`the client filed no ${mode} run`);
  return { record, shown };
}

/** /v1 from the page: OpenAI's chunk stream, its delays from the simulator's emission stamps. */
function v1Run(
  page: Page,
): Promise<{ ttftMs: number; lastMs: number; delays: number[]; tokens: number; protocol: string }> {
  return page.evaluate(
    async ({ prompt }) => {
      const sent = performance.now();
      const response = await fetch('/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'simulator',
          stream: true,
          messages: [{ role: 'user', content: prompt }],
        }),
        cache: 'no-store',
      });
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = '';
      let first = 0;
      let last = 0;
      let tokens = 0;
      const delays: number[] = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const now = performance.now();
        buffered += value;
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          if (!line.startsWith('data: {')) continue;
          const content = (JSON.parse(line.slice(6)) as { choices: { delta?: { content?: string } }[] })
            .choices[0]?.delta?.content;
          if (!content) continue;
          tokens++;
          if (first === 0) first = now - sent;
          last = now - sent;
          for (const [, stamp] of content.matchAll(/⟨(\d+\.\d{3})⟩/g)) {
            delays.push(performance.timeOrigin + now - Number(stamp));
          }
        }
      }
      const entry = performance
        .getEntriesByName(new URL('/v1/chat/completions', location.href).href)
        .at(-1) as PerformanceResourceTiming | undefined;
      return { ttftMs: first, lastMs: last, delays, tokens, protocol: entry?.nextHopProtocol ?? '' };
    },
    { prompt: `${PROMPT.replace(']', ' emit_ts]')}` },
  );
}

interface Lab {
  browser: Browser;
  gateway: Server;
  nginx: Record<Protocol, Nginx>;
}

async function measureGroup(lab: Lab, group: Cell[]): Promise<CellResult[]> {
  const { rttMs, protocol, tabs } = group[0];
  const oneWay = rttMs / 2;
  const link = { delayMs: oneWay, jitterMs: jitterOf(rttMs), bytesPerSecond: BYTES_PER_SECOND };
  const proxy: DelayProxy = await startDelayProxy({
    target: { host: '127.0.0.1', port: Number(new URL(lab.nginx[protocol].tlsUrl).port) },
    up: link,
    down: link,
  });
  const context: BrowserContext = await lab.browser.newContext({ ignoreHTTPSErrors: true });
  await context.addInitScript(keepOwnHistory);
  const results: CellResult[] = [];
  try {
    const url = `https://127.0.0.1:${proxy.port}/`;
    const pages = await Promise.all(
      Array.from({ length: tabs }, async () => {
        const page = await context.newPage();
        await page.goto(url, { timeout: RUN_TIMEOUT_MS });
        await page.getByTestId('prompt').waitFor({ timeout: RUN_TIMEOUT_MS });
        return page;
      }),
    );
    for (const cell of group) {
      if (cell.transport !== 'v1') {
        await Promise.all(pages.map((page) => page.getByTestId('transport').selectOption(cell.transport)));
      }
      if (cell.transport === 'socket.io') await Promise.all(pages.map(socketShown));
      if (cell.start === 'cold') {
        proxy.reset();
        if (cell.transport === 'socket.io') {
          // The client notices the reset and reconnects by itself; the run starts once it has.
          await Promise.all(
            pages.map((page) =>
              page
                .waitForFunction(
                  () =>
                    [...document.querySelectorAll('dt')]
                      .find((term) => term.textContent?.trim() === 'Socket.IO transport')
                      ?.nextElementSibling?.textContent?.trim() !== 'websocket',
                  undefined,
                  { timeout: 5000, polling: 10 },
                )
                .catch(() => undefined),
            ),
          );
          await Promise.all(pages.map(socketShown));
        }
      } else {
        // Warm: the connections the page (or the last cell) opened; an SSE run first so that they are.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const bytesBefore = proxy.bytes.down;
      let shown = '';
      const ttfts: number[] = [];
      const delays: number[] = [];
      const lasts: number[] = [];
      let tokens = 0;
      let failed = 0;
      await Promise.all(
        pages.map(async (page) => {
          try {
            if (cell.transport === 'v1') {
              const run = await v1Run(page);
              shown ||=
                run.protocol === 'h2' ? 'h2' : run.protocol.startsWith('http/1') ? 'h1' : run.protocol;
              ttfts.push(run.ttftMs);
              lasts.push(run.lastMs);
              delays.push(...run.delays);
              tokens += run.tokens;
              if (run.tokens === 0) failed++;
            } else {
              const { record, shown: connection } = await clientRun(page, cell.transport);
              shown ||= connection;
              if (record.status !== 'done' || record.ttftMs === null) {
                failed++;
                return;
              }
              ttfts.push(record.ttftMs);
              lasts.push(record.durationMs ?? Number.NaN);
              // The client keeps 101 quantiles of the per-token delays: weight them by the run's tokens.
              const sketch = record.transportDelaySketch;
              for (let i = 0; i < record.tokens; i++) {
                delays.push(sketch[Math.round((i / Math.max(1, record.tokens - 1)) * (sketch.length - 1))]);
              }
              tokens += record.tokens;
            }
          } catch (error) {
            failed++;
            console.error(
              `    ${cell.transport}: ${error instanceof Error ? error.message.split('\n')[0] : error}`,
            );
          }
        }),
      );
      const sortedDelays = delays.filter(Number.isFinite).sort((a, b) => a - b);
      const result: CellResult = {
        ...cell,
        shown,
        runs: pages.length,
        failed,
        ttftMs: median(ttfts),
        ttftMaxMs: Math.max(...ttfts),
        delayP50Ms: quantile(sortedDelays, 0.5),
        delayP99Ms: quantile(sortedDelays, 0.99),
        lastTokenMs: median(lasts),
        bytesPerToken: tokens > 0 ? (proxy.bytes.down - bytesBefore) / tokens : Number.NaN,
      };
      results.push(result);
      console.warn(
        `  RTT ${rttMs} ${protocol} ${tabs} tab${tabs > 1 ? 's' : ''} ${cell.start} ${cell.transport.padEnd(9)} ` +
          `(${shown}): TTFT ${result.ttftMs.toFixed(0)} (max ${result.ttftMaxMs.toFixed(0)}) ms, delay p50 ` +
          `${result.delayP50Ms.toFixed(1)} p99 ${result.delayP99Ms.toFixed(1)} ms, last token ` +
          `${result.lastTokenMs.toFixed(0)} ms, ${result.bytesPerToken.toFixed(0)} B/token${failed ? `, ${failed} FAILED` : ''}`,
      );
    }
  } finally {
    await context.close();
    await proxy.close();
  }
  return results;
}

export async function runNetworkLab(root: string, options: LabOptions): Promise<CellResult[]> {
  const chromiumPath = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `chromium not found at ${chromiumPath}: install the Debian package \`chromium\` or set CHROMIUM_PATH`,
    );
  }
  if (!existsSync(join(root, 'dist/web/browser/index.html'))) {
    throw new Error('the web client is not built: run `npm run build` first (the network lab drives it)');
  }
  const started = performance.now();
  const gateway = await startServer(
    'gateway',
    [join(root, 'dist/apps/api/main.js')],
    {
      NODE_ENV: 'production',
      PORT: '0',
      HOST: '127.0.0.1',
      LLM_PROVIDER: 'simulator',
      LOG_LEVEL: 'warn',
      AUTH_MODE: 'none',
      AUTH_ALLOW_ANONYMOUS: 'true',
      RATE_LIMIT_PER_MINUTE: '1000000',
      RATE_LIMIT_CONCURRENT_STREAMS: '1000',
      TRUST_PROXY: 'loopback',
    },
    root,
  );
  const nginx: Partial<Record<Protocol, Nginx>> = {};
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  const results: CellResult[] = [];
  try {
    const previous = process.cwd();
    process.chdir(root);
    nginx.h2 = await startNginx([gateway.url]);
    nginx.h1 = await startNginx([gateway.url], { http2: false });
    process.chdir(previous);
    const lab: Lab = { browser, gateway, nginx: nginx as Record<Protocol, Nginx> };
    const all = cells(options.quick);
    const groups = new Map<string, Cell[]>();
    for (const cell of all) {
      const key = `${cell.rttMs}/${cell.protocol}/${cell.tabs}`;
      groups.set(key, [...(groups.get(key) ?? []), cell]);
    }
    for (const group of groups.values()) {
      // Warm cells first: they use the connections the page load opened; the cold ones reset them.
      group.sort((a, b) => (a.start === b.start ? 0 : a.start === 'warm' ? -1 : 1));
      results.push(...(await measureGroup(lab, group)));
    }
  } finally {
    await browser.close();
    await Promise.all(Object.values(nginx).map((server) => server.close()));
    await stopProcess(gateway.child, 5000);
  }
  const minutes = (performance.now() - started) / 60_000;
  console.warn(`network lab: ${results.length} cells in ${minutes.toFixed(1)} minutes`);
  await mkdir(options.resultsDir, { recursive: true });
  await writeFile(
    join(options.resultsDir, 'latest.json'),
    `${JSON.stringify({ date: new Date().toISOString(), minutes, bytesPerSecond: BYTES_PER_SECOND, tokens: TOKENS, tps: TPS, results }, null, 2)}\n`,
  );
  if (options.docsFile) await writeFigures(options.docsFile, results, join(options.resultsDir, 'ttft.svg'));
  const broken = results.filter((result) => result.failed > 0 || !Number.isFinite(result.ttftMs));
  if (broken.length > 0) {
    throw new Error(`network lab: ${broken.length} cells had failed runs`);
  }
  return results;
}

/** The figures' table between the markers of docs/transport-comparison.md, and the chart beside it. */
async function writeFigures(docsFile: string, results: CellResult[], chartFile: string): Promise<void> {
  const fmt = (value: number, digits = 0) => (Number.isFinite(value) ? value.toFixed(digits) : '–');
  const rows = results.map(
    (r) =>
      `| ${r.rttMs} | ${r.protocol} | ${r.tabs} | ${r.start} | ${r.transport} | ${r.shown} | ${fmt(r.ttftMs)} | ` +
      `${fmt(r.ttftMaxMs)} | ${fmt(r.delayP50Ms, 1)} | ${fmt(r.delayP99Ms, 1)} | ${fmt(r.lastTokenMs)} | ${fmt(r.bytesPerToken)} |`,
  );
  const table = [
    '| RTT ms | protocol | tabs | start | transport | client showed | TTFT p50 ms | TTFT max ms | delay p50 ms | delay p99 ms | last token ms | bytes/token |',
    '| ---: | --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
  const text = existsSync(docsFile) ? await readFile(docsFile, 'utf8') : '';
  const begin = '<!-- network-lab:begin -->';
  const end = '<!-- network-lab:end -->';
  const block = `${begin}\n${table}\n${end}`;
  const updated =
    text.includes(begin) && text.includes(end)
      ? text.replace(new RegExp(`${begin}[\\s\\S]*${end}`), block)
      : `${text}\n${block}\n`;
  await writeFile(docsFile, updated);
  await writeFile(chartFile, ttftChart(results));
}

/** TTFT against RTT, one line per transport and protocol, 1 tab: warm solid, cold dashed. */
function ttftChart(results: CellResult[]): string {
  const width = 720;
  const height = 420;
  const pad = { left: 60, right: 200, top: 30, bottom: 50 };
  const single = results.filter((r) => r.tabs === 1);
  const maxY = Math.max(...single.map((r) => r.ttftMs).filter(Number.isFinite), 1) * 1.1;
  const x = (rtt: number) =>
    pad.left + (RTTS.indexOf(rtt) / (RTTS.length - 1)) * (width - pad.left - pad.right);
  const y = (ms: number) => height - pad.bottom - (ms / maxY) * (height - pad.top - pad.bottom);
  const colours: Record<string, string> = {
    'sse/h1': '#1f77b4',
    'sse/h2': '#6baed6',
    'socket.io/h1': '#d62728',
    'socket.io/h2': '#ff9896',
    'v1/h1': '#2ca02c',
    'v1/h2': '#98df8a',
  };
  const lines: string[] = [];
  let legend = 0;
  for (const key of Object.keys(colours)) {
    for (const start of ['warm', 'cold'] as const) {
      const [transport, protocol] = key.split('/');
      const points = single
        .filter((r) => r.transport === transport && r.protocol === protocol && r.start === start)
        .sort((a, b) => a.rttMs - b.rttMs);
      if (points.length === 0) continue;
      const path = points.map((r) => `${x(r.rttMs).toFixed(1)},${y(r.ttftMs).toFixed(1)}`).join(' ');
      const dash = start === 'cold' ? ' stroke-dasharray="6 4"' : '';
      lines.push(`<polyline fill="none" stroke="${colours[key]}" stroke-width="2"${dash} points="${path}"/>`);
      const ly = pad.top + legend++ * 18;
      lines.push(
        `<line x1="${width - pad.right + 15}" y1="${ly}" x2="${width - pad.right + 45}" y2="${ly}" stroke="${colours[key]}" stroke-width="2"${dash}/>`,
        `<text x="${width - pad.right + 50}" y="${ly + 4}" font-size="12">${transport} ${protocol} ${start}</text>`,
      );
    }
  }
  const ticks = RTTS.map(
    (rtt) =>
      `<text x="${x(rtt)}" y="${height - pad.bottom + 18}" font-size="12" text-anchor="middle">${rtt}</text>`,
  );
  const yTicks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const ms = maxY * f;
    return `<text x="${pad.left - 6}" y="${y(ms) + 4}" font-size="12" text-anchor="end">${ms.toFixed(0)}</text>`;
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${pad.left}" y="18" font-size="14">Time to first token (ms) against round-trip time (ms), one tab</text>`,
    `<line x1="${pad.left}" y1="${height - pad.bottom}" x2="${width - pad.right}" y2="${height - pad.bottom}" stroke="#333"/>`,
    `<line x1="${pad.left}" y1="${pad.top}" x2="${pad.left}" y2="${height - pad.bottom}" stroke="#333"/>`,
    ...ticks,
    ...yTicks,
    `<text x="${(width - pad.right + pad.left) / 2}" y="${height - 12}" font-size="12" text-anchor="middle">RTT ms</text>`,
    ...lines,
    '</svg>',
  ].join('\n');
}
