/**
 * What a real deployment's connection does to each transport, seen by the Angular client in Chromium behind
 * Debian's nginx running docs/nginx.conf (its TLS port; the certificate made now with openssl):
 * - over HTTP/2, eight SSE runs in eight tabs of one browser all stream at once, and the client shows `h2`;
 * - over HTTP/1.1, the browser's six connections per origin make the seventh and eighth wait for a stream to
 *   end, and the client shows that wait as its own part of their time to first token;
 * - Socket.IO is unaffected by either: its WebSockets are not counted against the six;
 * - a buffering location (proxy_buffering on, X-Accel-Buffering ignored, gzip on for text/event-stream) makes
 *   the client warn that tokens arrive in bursts the server did not send, and the documented configuration
 *   (proxy_buffering off, gzip off) makes the warning go away.
 * One gateway with its built-in simulator; `npm run test:e2e` runs it after nginx.mts.
 */
import { mkdir } from 'node:fs/promises';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { type Nginx, type NginxOptions, startNginx } from '../support/nginx.ts';
import { type BuiltServer, startServer, stopServer } from './built-servers.mts';
import {
  assert,
  describePage,
  GREP,
  launchBrowser,
  reportTally,
  RESULTS,
  screenshot,
  sendPrompt,
  socketConnected,
  STATUS_TIMEOUT_MS,
  TERMINAL,
  waitForStatus,
} from './client-page.mts';

const TABS = 8;
/** 5 s a stream: long enough that a seventh stream over HTTP/1.1 visibly waits for one of the first six. */
const LONG_PROMPT = 'Eight at once. [sim tokens=100 tps=20]';
/** 150 events of about 150 bytes: several of nginx's 4 KB buffers, so a buffering proxy shows. */
const BUFFERED_PROMPT = 'Buffer me. [sim tokens=150 tps=60]';

type Mode = 'sse' | 'socket.io';

interface Shown {
  status: string;
  ttftMs: number;
  protocol: string;
  reuse: string;
  waitMs: number;
  buffering: boolean;
}

/** What the client shows for the run of one tab, once it ended. */
async function shown(page: Page): Promise<Shown> {
  const text = async (id: string) =>
    (await page.getByTestId(id).count()) > 0
      ? ((await page.getByTestId(id).first().textContent()) ?? '').trim()
      : '';
  return {
    status: await text('status'),
    ttftMs: Number.parseFloat(await text('ttft')),
    protocol: await text('protocol'),
    reuse: await text('connection-reuse'),
    waitMs: Number.parseFloat((await text('connection-wait')) || '0'),
    buffering: (await page.getByTestId('buffering-warning').count()) > 0,
  };
}

/** SSE learns its protocol when its response has ended; waits until the client shows it. */
async function protocolShown(page: Page): Promise<void> {
  await page.waitForFunction(
    () => !['', '–'].includes(document.querySelector('[data-testid="protocol"]')?.textContent?.trim() ?? ''),
    undefined,
    { timeout: 10_000, polling: 50 },
  );
}

/** Chooses the transport and, for Socket.IO, waits for the socket the client opens ahead (see nginx.mts). */
async function chooseTransport(page: Page, mode: Mode): Promise<void> {
  await page.getByTestId('transport').selectOption(mode);
  if (mode === 'socket.io') {
    await socketConnected(page);
  }
}

/** Tabs of one browser context: one connection pool, as the tabs of one user's browser share. */
async function openTabs(context: BrowserContext, url: string, count: number): Promise<Page[]> {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const page = await context.newPage();
      page.on('pageerror', (error) => console.error(`    tab ${i + 1} page error: ${error.message}`));
      await page.goto(url);
      await page.getByTestId('prompt').waitFor({ timeout: STATUS_TIMEOUT_MS });
      return page;
    }),
  );
}

/** One run in each tab, sent one right after the other; returns what each tab showed, in the order sent. */
async function runInEveryTab(pages: Page[], mode: Mode, prompt: string): Promise<Shown[]> {
  for (const page of pages) await chooseTransport(page, mode);
  for (const page of pages) await sendPrompt(page, mode, prompt);
  const statuses = await Promise.all(pages.map((page) => waitForStatus(page, TERMINAL, 60_000)));
  assert(
    statuses.every((status) => status === 'done'),
    `the runs ended ${statuses.join(', ')}`,
  );
  await Promise.all(pages.map(protocolShown));
  return Promise.all(pages.map(shown));
}

function table(runs: Shown[]): string {
  return runs
    .map(
      (run, i) =>
        `      tab ${i + 1}: ${run.protocol} ${run.reuse}, TTFT ${run.ttftMs.toFixed(0)} ms` +
        (run.waitMs > 0 ? ` (waited ${run.waitMs.toFixed(0)} ms for a connection)` : ''),
    )
    .join('\n');
}

interface Lab {
  gateway: BuiltServer;
  browser: Browser;
  started: Nginx[];
}

/** nginx running docs/nginx.conf, and a browser context trusting nothing but ignoring its self-signed certificate. */
async function behindNginx(
  lab: Lab,
  options: NginxOptions,
): Promise<{ nginx: Nginx; context: BrowserContext }> {
  const nginx = await startNginx([lab.gateway.url], options);
  lab.started.push(nginx);
  const context = await lab.browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1400, height: 1000 },
  });
  return { nginx, context };
}

/** A check of this suite opens its own nginx and tabs, so it takes no page. */
interface NetworkCheck {
  name: string;
  run: () => Promise<void>;
}

function checksFor(lab: Lab): NetworkCheck[] {
  /** Eight tabs over one protocol and transport; checks what every tab shows. */
  async function eightTabs(http2: boolean, mode: Mode): Promise<void> {
    const { nginx, context } = await behindNginx(lab, { http2 });
    try {
      const pages = await openTabs(context, nginx.tlsUrl, TABS);
      const runs = await runInEveryTab(pages, mode, LONG_PROMPT);
      const seen = `\n${table(runs)}`;
      const expected = mode === 'socket.io' ? 'websocket' : http2 ? 'h2' : 'h1';
      assert(
        runs.every((run) => run.protocol === expected),
        `not every tab shows ${expected}:${seen}`,
      );
      // The stream lasts 5 s; a run that streamed at once has its first token within a second or two.
      // The stream lasts 5 s. A run that waited for a connection shows a wait of a second or more, and its TTFT
      // includes it; one that did not waited for nothing but its own request (a few ms).
      const waited = runs.filter((run) => run.waitMs >= 1000);
      const prompt = runs.filter((run) => run.waitMs < 200);
      if (mode === 'socket.io' || http2) {
        assert(prompt.length === TABS, `a tab shows a wait for a connection:${seen}`);
        assert(
          runs.every((run) => run.ttftMs < 2000),
          `not every tab streamed at once:${seen}`,
        );
      } else {
        assert(waited.length === 2 && prompt.length === 6, `not two of the eight tabs waited:${seen}`);
        assert(
          waited.every((run) => run.ttftMs >= run.waitMs),
          `a waiting tab's TTFT does not include its wait:${seen}`,
        );
      }
      console.warn(`    ${mode} over ${http2 ? 'HTTP/2' : 'HTTP/1.1'}:${seen}`);
      await screenshot(pages.at(-1)!, `network-${mode.replace('.', '')}-${http2 ? 'h2' : 'h1'}-tab8`);
    } finally {
      await context.close();
    }
  }

  /** One SSE run through nginx configured by `options`: whether the client warns of buffering. */
  async function bufferingShown(options: NginxOptions, name: string): Promise<Shown> {
    const { nginx, context } = await behindNginx(lab, options);
    try {
      const [page] = await openTabs(context, nginx.tlsUrl, 1);
      await sendPrompt(page, 'sse', BUFFERED_PROMPT);
      const status = await waitForStatus(page, TERMINAL, 60_000);
      assert(status === 'done', `the run ended ${status}`);
      await protocolShown(page);
      const run = await shown(page);
      await screenshot(page, `network-${name}`);
      if (run.buffering !== (name === 'buffering')) console.error(await describePage(page));
      return run;
    } finally {
      await context.close();
    }
  }

  return [
    ...(['sse', 'socket.io'] as const).flatMap((mode) => [
      {
        name: `HTTP/2: eight ${mode} runs in eight tabs all stream at once`,
        run: () => eightTabs(true, mode),
      },
      {
        name:
          mode === 'sse'
            ? 'HTTP/1.1: of eight SSE runs, the seventh and eighth wait for a connection, and show it'
            : 'HTTP/1.1: eight Socket.IO runs all stream at once',
        run: () => eightTabs(false, mode),
      },
    ]),
    {
      name: 'a buffering nginx location makes the client warn; the documented configuration does not',
      run: async () => {
        const buffered = await bufferingShown(
          {
            // nginx 1.22 passes each upstream read on at once when the client keeps up, buffering on or not;
            // what holds a stream back is compression, which nginx applies despite no-transform.
            edit: (config) =>
              config
                .replace(
                  'proxy_buffering off;',
                  'proxy_buffering on;\n      proxy_ignore_headers X-Accel-Buffering;',
                )
                .replace('gzip off;', 'gzip on;\n      gzip_types text/event-stream;'),
          },
          'buffering',
        );
        assert(
          buffered.buffering,
          `no buffering warning behind a buffering nginx: ${JSON.stringify(buffered)}`,
        );
        const fixed = await bufferingShown({}, 'unbuffered');
        assert(!fixed.buffering, `a buffering warning behind docs/nginx.conf: ${JSON.stringify(fixed)}`);
        console.warn(`    buffering on: warned; docs/nginx.conf (proxy_buffering off, gzip off): no warning`);
      },
    },
  ];
}

async function main(): Promise<void> {
  await mkdir(RESULTS, { recursive: true });
  let gateway: BuiltServer | undefined;
  let browser: Browser | undefined;
  const started: Nginx[] = [];
  try {
    gateway = await startServer({
      // nginx is the one proxy, on loopback; every tab is one anonymous client.
      TRUST_PROXY: 'loopback',
      RATE_LIMIT_CONCURRENT_STREAMS: '100',
      LOG_LEVEL: 'warn',
    });
    browser = await launchBrowser();
    const lab: Lab = { gateway, browser, started };
    console.warn(`network suite: nginx (docs/nginx.conf, TLS) in front of ${gateway.url}`);
    let passed = 0;
    let failed = 0;
    const checks = checksFor(lab).filter((check) => GREP === undefined || check.name.includes(GREP));
    for (const check of checks) {
      const began = Date.now();
      try {
        await check.run();
        passed++;
        console.warn(`  ✓ ${check.name} (${Date.now() - began} ms)`);
      } catch (error) {
        failed++;
        console.error(`  ✗ ${check.name}: ${error instanceof Error ? error.message : String(error)}`);
      } finally {
        await Promise.all(started.splice(0).map((nginx) => nginx.close()));
      }
    }
    reportTally({ passed, failed });
  } finally {
    await browser?.close();
    await Promise.all(started.map((nginx) => nginx.close()));
    if (gateway) await stopServer(gateway);
  }
}

await main();
