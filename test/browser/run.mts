/**
 * The browser suite: starts the built API (with the simulator) on a free port, drives the built Angular client
 * in Chromium through its data-testid hooks, saves a screenshot of every state under test-results/, and measures
 * what rendering a fast stream costs (long tasks and frame timing). Run it with `npm run test:e2e`.
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { startServer } from './built-servers.mts';
import {
  answerChangesWithin,
  answerReaches,
  assert,
  type Check,
  CONVERSATION_KEY,
  launchBrowser,
  openClient,
  reportTally,
  RESULTS,
  runChecks,
  savedConversation,
  screenshot,
  selected,
  sendPrompt,
  startNewChat,
  STATUS_TIMEOUT_MS,
  type Tally,
  TERMINAL,
  waitForStatus,
} from './client-page.mts';

/** One of the server's per-transport counters, from /metrics. */
async function serverCount(page: Page, counter: string, transport: string): Promise<number> {
  const metrics = await (await fetch(new URL('/metrics', page.url()))).text();
  const match = new RegExp(`${counter}\\{transport="${transport}"\\} (\\d+)`).exec(metrics);
  return match ? Number(match[1]) : 0;
}

/** The server's count of cancelled streams (each one an aborted upstream request). */
function cancellations(page: Page, transport: string): Promise<number> {
  return serverCount(page, 'llm_gateway_cancellations_total', transport);
}

function readNumber(text: string | null): number {
  return Number.parseFloat(text ?? '');
}

/**
 * Records the answer's length at every render while it streams (a MutationObserver in the page): it must grow
 * in several steps, not appear all at once.
 */
async function streamsVisibly(page: Page, mode: 'sse' | 'socket.io'): Promise<void> {
  await startNewChat(page);
  await page.evaluate(() => {
    const lengths: number[] = [];
    const observer = new MutationObserver(() => {
      const length = (document.querySelector('[data-testid="answer"]')?.textContent ?? '').length;
      if (length !== lengths.at(-1)) lengths.push(length);
    });
    observer.observe(document.querySelector('.log') ?? document.body, {
      subtree: true,
      childList: true,
      characterData: true,
    });
    Object.assign(window, { answerGrowth: { lengths, stop: () => observer.disconnect() } });
  });
  await sendPrompt(page, mode, `Tell me about transports. [sim tokens=300 tps=100]`);
  await answerReaches(page, 200);
  await screenshot(page, `streaming-${mode.replace('.', '')}`);
  const status = await waitForStatus(page, TERMINAL);
  assert(status === 'done', `the run ended ${status}, not done`);
  const answer = page.getByTestId('answer');
  const lengths = await page.evaluate(() => {
    const growth = (window as unknown as { answerGrowth: { lengths: number[]; stop: () => void } })
      .answerGrowth;
    growth.stop();
    return growth.lengths;
  });
  const growth = lengths.filter((length, i) => i > 0 && length > lengths[i - 1]).length;
  assert(growth >= 5, `the answer grew in only ${growth} steps (${lengths.join(',')})`);
  assert((await answer.getAttribute('data-transport')) === mode, 'the answer pane names another transport');
  const ttft = readNumber(await page.getByTestId('ttft').textContent());
  const delay = readNumber(await page.getByTestId('transport-delay').textContent());
  assert(ttft > 0, `ttft is not a positive number of ms`);
  assert(Number.isFinite(delay), `transport delay is not a number`);
  console.warn(`    ${mode}: grew in ${growth} steps, ttft ${ttft} ms, transport delay p50 ${delay} ms`);
  await screenshot(page, `done-${mode.replace('.', '')}`);
}

const RELOAD_PROMPT = 'Reload me [sim tokens=300 tps=50]';
const referenceAnswers = new Map<string, string>();

/** The rendered answer of a run that nothing interrupted (the simulator's text is the same for the same prompt). */
async function answerWithoutReload(page: Page, prompt: string): Promise<string> {
  const known = referenceAnswers.get(prompt);
  if (known !== undefined) return known;
  await startNewChat(page);
  await sendPrompt(page, 'sse', prompt);
  assert((await waitForStatus(page, TERMINAL)) === 'done', 'the reference run failed');
  const text = (await page.getByTestId('answer').textContent()) ?? '';
  referenceAnswers.set(prompt, text);
  return text;
}

/** Stop on a streaming answer (or on one resumed after a reload): the server cancels it and no text follows. */
async function stopsAsCancelled(
  page: Page,
  mode: 'sse' | 'socket.io',
  { afterReload }: { afterReload: boolean },
): Promise<void> {
  const cancellationsBefore = await cancellations(page, mode);
  await startNewChat(page);
  await sendPrompt(page, mode, 'A long one. [sim tokens=2000 tps=50]');
  await waitForStatus(page, 'streaming');
  if (afterReload) {
    await page.reload();
    await page.getByTestId('resumed-note').waitFor({ timeout: STATUS_TIMEOUT_MS });
    await waitForStatus(page, 'streaming');
  }
  // Stop on an answer the user can see streaming: some of its text is on the page.
  await answerReaches(page, 40);
  assert((await waitForStatus(page, 'streaming')) === 'streaming', 'the answer ended before Stop');
  await page.getByTestId('stop').click();
  const stopped = await waitForStatus(page, TERMINAL, 8000);
  assert(stopped === 'cancelled', `Stop ended the run ${stopped}, not cancelled`);
  // The server's own account: the stream was cancelled, which aborts its upstream request.
  assert(
    (await cancellations(page, mode)) === cancellationsBefore + 1,
    'the server did not count the cancellation',
  );
  // An absence can only be seen over a span of time: 25 token intervals of this 50 tokens/s stream.
  const changes = await answerChangesWithin(page, 500);
  assert(changes === 0, `the answer changed ${changes} times after Stop`);
  if (afterReload) {
    assert((await savedConversation(page))?.pending === null, 'the cancelled run is still marked unfinished');
  }
  await screenshot(page, `cancelled-${afterReload ? 'resumed-' : ''}${mode.replace('.', '')}`);
}

/** F5 while the answer streams: the client resumes it by itself and ends with the whole answer. */
async function resumesAfterReload(page: Page, mode: 'sse' | 'socket.io'): Promise<void> {
  const expected = await answerWithoutReload(page, RELOAD_PROMPT);
  assert(expected.length > 100, 'the reference answer is too short to tell anything');
  await startNewChat(page);
  await sendPrompt(page, mode, RELOAD_PROMPT);
  await page.waitForFunction(
    () =>
      document.querySelector('[data-testid="status"]')?.textContent?.trim() === 'streaming' &&
      (document.querySelector('[data-testid="answer"]')?.textContent ?? '').length > 0,
    undefined,
    { timeout: STATUS_TIMEOUT_MS, polling: 20 },
  );
  const before = ((await page.getByTestId('answer').textContent()) ?? '').length;
  assert((await savedConversation(page))?.pending, 'the unfinished run is not in sessionStorage');
  const resumesBefore = await serverCount(page, 'llm_gateway_resumes_total', mode);
  await page.reload();
  await page.getByTestId('prompt').waitFor();
  const prompt = (await page.locator('.message.user').last().textContent())?.trim();
  assert(prompt === RELOAD_PROMPT, `the prompt was not restored (${prompt})`);
  assert((await waitForStatus(page, TERMINAL)) === 'done', 'the resumed run did not end done');
  const answer = page.getByTestId('answer');
  assert((await answer.getAttribute('data-transport')) === mode, 'the answer pane names another transport');
  const text = (await answer.textContent()) ?? '';
  assert(text === expected, `the resumed answer differs: ${text.length} chars, expected ${expected.length}`);
  assert(await page.getByTestId('resumed-note').isVisible(), 'the run is not marked as resumed');
  assert(
    (await serverCount(page, 'llm_gateway_resumes_total', mode)) > resumesBefore,
    'the server saw no resume: the answer was asked for again',
  );
  assert((await savedConversation(page))?.pending === null, 'the finished run is still marked unfinished');
  console.warn(`    ${mode}: ${before} chars before the reload, ${text.length} after, as without reload`);
  await screenshot(page, `resumed-after-reload-${mode.replace('.', '')}`);
}

const checks: Check[] = [
  {
    name: "a browser's native EventSource resumes a stream after Last-Event-ID",
    run: async (page) => {
      const outcome = await page.evaluate(async () => {
        const response = await fetch('/api/completions/stream', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({
            messages: [{ role: 'user', content: '[sim tokens=30 tps=200] resume me' }],
          }),
        });
        const streamId = response.headers.get('X-Stream-Id') ?? '';
        const token = response.headers.get('X-Resume-Token') ?? '';
        const all = (await response.text())
          .split('\n\n')
          .filter((block) => block.startsWith('id: '))
          .map(
            (block) => JSON.parse(block.slice(block.indexOf('data: ') + 6)) as { seq: number; type: string },
          );
        const resumed = await new Promise<{ seq: number; type: string }[]>((resolve, reject) => {
          const events: { seq: number; type: string }[] = [];
          const source = new EventSource(
            `/api/completions/${streamId}/stream?lastEventId=10&resumeToken=${encodeURIComponent(token)}`,
          );
          const collect = (message: MessageEvent<string>) => {
            events.push(JSON.parse(message.data) as { seq: number; type: string });
            if (message.type === 'done' || message.type === 'error') {
              source.close();
              resolve(events);
            }
          };
          for (const type of ['token', 'done', 'error']) source.addEventListener(type, collect);
          source.onerror = () => reject(new Error('EventSource failed'));
        });
        return { all: all.map((event) => event.seq), resumed: resumed.map((event) => event.seq) };
      });
      assert(outcome.all.length > 20, `the stream had only ${outcome.all.length} events`);
      assert(
        JSON.stringify(outcome.resumed) === JSON.stringify(outcome.all.slice(11)),
        `resumed ${outcome.resumed.join(',')}, expected ${outcome.all.slice(11).join(',')}`,
      );
    },
  },
  { name: 'a prompt over SSE shows text growing over time', run: (page) => streamsVisibly(page, 'sse') },
  {
    name: 'a prompt over Socket.IO shows text growing over time',
    run: (page) => streamsVisibly(page, 'socket.io'),
  },
  {
    name: 'a multi-turn conversation sends the history',
    run: async (page) => {
      await sendPrompt(page, 'sse', 'And a follow-up? [sim tokens=20 tps=200]');
      await waitForStatus(page, 'done');
      assert((await page.locator('.message.user').count()) >= 2, 'the earlier turn is gone');
    },
  },
  {
    name: 'choosing Socket.IO or a race connects the WebSocket before the first prompt',
    run: async (page) => {
      const fresh = await page.context().newPage();
      try {
        await fresh.goto(page.url());
        await fresh.getByTestId('transport').selectOption('sse');
        const sockets: string[] = [];
        fresh.on('websocket', (socket) => sockets.push(socket.url()));
        await fresh.reload();
        await fresh.getByRole('button', { name: 'Settings' }).click();
        const engine = fresh.locator('dt:has-text("Socket.IO transport") + dd');
        // Loaded and idle (no request for 500 ms): had it meant to connect the socket, it would have by now.
        await fresh.waitForLoadState('networkidle');
        const shown = await engine.textContent();
        assert(
          shown === 'not connected' && sockets.length === 0,
          `only SSE is in use, yet the page shows "${shown}" and opened ${sockets.length} WebSocket(s)`,
        );
        await fresh.getByTestId('transport').selectOption('race');
        await engine.filter({ hasText: 'websocket' }).waitFor({ timeout: 5000 });
      } finally {
        await fresh.close();
      }
    },
  },
  {
    name: 'race mode fills both panes and the chart',
    run: async (page) => {
      await sendPrompt(page, 'race', 'Race! [sim tokens=200 tps=100]');
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="answer"]').length === 2);
      await answerReaches(page, 200);
      await screenshot(page, 'race-streaming');
      const status = await waitForStatus(page, TERMINAL);
      assert(status === 'done', `the race ended ${status}, not done`);
      const sse = (await page.locator('[data-testid="answer"][data-transport="sse"]').textContent()) ?? '';
      const socket =
        (await page.locator('[data-testid="answer"][data-transport="socket.io"]').textContent()) ?? '';
      assert(sse.length > 100 && socket.length > 100, 'a race pane stayed empty');
      assert(sse === socket, 'the two transports did not receive the same text');
      await page.waitForFunction(
        () =>
          Number(
            document
              .querySelector('[data-testid="race-chart"]')
              ?.closest('app-race-timeline')
              ?.getAttribute('data-points'),
          ) >= 400,
        undefined,
        { timeout: 5000 },
      );
      const summary = await page.getByTestId('race-summary').textContent();
      assert(/ahead|same time/.test(summary ?? ''), `no race summary: ${summary}`);
      console.warn(`    ${summary?.replace(/\s+/g, ' ').trim()}`);
      await screenshot(page, 'race-done');
      // A theme switch repaints the chart itself (axes, grid, legend, series), not only the page around it; switching
      // back paints the very same pixels as before.
      const light = await page
        .getByTestId('race-chart')
        .evaluate((canvas) => (canvas as HTMLCanvasElement).toDataURL());
      const chartPixelsAre = (same: boolean) =>
        page.waitForFunction(
          ({ before, same }) => {
            const now = (
              document.querySelector('[data-testid="race-chart"]') as HTMLCanvasElement
            ).toDataURL();
            return same ? now === before : now !== before;
          },
          { before: light, same },
          { timeout: 3000 },
        );
      await page.getByRole('button', { name: 'Dark theme' }).click();
      await chartPixelsAre(false);
      await screenshot(page, 'race-done-dark');
      await page.getByRole('button', { name: 'Light theme' }).click();
      await chartPixelsAre(true);
    },
  },
  ...(['sse', 'socket.io'] as const).flatMap((mode) => [
    {
      name: `Stop ends a ${mode} stream as cancelled`,
      run: (page: Page) => stopsAsCancelled(page, mode, { afterReload: false }),
    },
    {
      name: `Stop ends a ${mode} stream resumed after a page reload as cancelled`,
      run: (page: Page) => stopsAsCancelled(page, mode, { afterReload: true }),
    },
  ]),
  ...(['sse', 'socket.io'] as const).map((mode) => ({
    name: `a ${mode} answer cut off by a page reload resumes by itself, whole`,
    run: (page: Page) => resumesAfterReload(page, mode),
  })),
  {
    name: 'a reload after the streams expired says so, calmly, and leaves nothing spinning',
    run: async (page) => {
      await startNewChat(page);
      const prompt = 'Lost to time';
      await page.evaluate(
        ({ key, prompt }) =>
          sessionStorage.setItem(
            key,
            JSON.stringify({
              exchanges: [],
              pending: {
                prompt,
                mode: 'race',
                request: { messages: [{ role: 'user', content: prompt }] },
                lanes: [
                  { transport: 'sse', streamId: 'expired-sse-0001', resumeToken: null },
                  { transport: 'socket.io', streamId: 'expired-socket-0001', resumeToken: null },
                ],
              },
            }),
          ),
        { key: CONVERSATION_KEY, prompt },
      );
      await page.reload();
      await page.getByTestId('prompt').waitFor();
      const status = await waitForStatus(page, TERMINAL);
      const notices = await page.getByTestId('resume-expired').allTextContents();
      assert(notices.length === 2, `expected a notice per lane, found ${notices.length}`);
      for (const notice of notices) {
        assert(
          notice.trim() === 'The answer could not be recovered after the reload: it expired on the server.',
          `unexpected notice: ${notice}`,
        );
      }
      assert((await page.locator('[aria-busy="true"]').count()) === 0, 'an answer is still spinning');
      assert(await page.getByTestId('stop').isDisabled(), 'Stop is still enabled');
      assert((await page.getByTestId('error').count()) === 0, 'an alarm is shown for an expired stream');
      assert((await savedConversation(page))?.pending === null, 'the expired run is still to be resumed');
      console.warn(`    status ${status}: "${notices[0].trim()}"`);
      await screenshot(page, 'resume-expired');
    },
  },
  {
    name: 'an upstream error shows its message, with a retry',
    run: async (page) => {
      await sendPrompt(page, 'sse', 'Please fail. [sim fault=server_error]');
      await waitForStatus(page, 'error');
      const message = (await page.getByTestId('error').textContent())?.trim() ?? '';
      assert(message.length > 5, 'no error message shown');
      assert(await page.getByTestId('retry').isVisible(), 'no retry button for a retryable error');
      console.warn(`    error shown: "${message}"`);
      await screenshot(page, 'error');
    },
  },
  {
    name: 'the history survives a reload',
    run: async (page) => {
      const rows = await page.locator('[data-testid="history"] tbody tr').count();
      assert(rows >= 7, `expected at least 7 history rows, found ${rows}`);
      await page.reload();
      await page.getByTestId('history').waitFor();
      const after = await page.locator('[data-testid="history"] tbody tr').count();
      assert(after === rows, `${rows} rows before the reload, ${after} after`);
      const aggregates = await page
        .locator('table.aggregates')
        .evaluate((table) => ({ table: table.scrollWidth, shown: table.parentElement?.clientWidth ?? 0 }));
      assert(
        aggregates.table <= aggregates.shown,
        `the compare table is clipped: ${aggregates.table} px wide in ${aggregates.shown} px`,
      );
      await screenshot(page, 'history-after-reload');
    },
  },
  {
    name: 'settings list the simulator profiles, and the dark theme applies',
    run: async (page) => {
      await page.getByRole('button', { name: 'Settings' }).click();
      const profiles = await page.locator('#profile option').count();
      assert(profiles > 1, 'no simulator profiles offered');
      await page.getByRole('button', { name: 'Dark theme' }).click();
      await page.waitForFunction(
        () => document.documentElement.getAttribute('data-theme') === 'dark',
        undefined,
        {
          timeout: 2000,
        },
      );
      await screenshot(page, 'settings-dark');
      await page.getByRole('button', { name: 'Light theme' }).click();
      await page.getByRole('button', { name: 'Settings' }).click();
    },
  },
  ...(['sse', 'socket.io'] as const).map((mode) => ({
    name: `rendering cost while 2,000 tokens stream at 100 tokens/s over ${mode}`,
    run: (page: Page) => measureRendering(page, mode),
  })),
  {
    name: 'the thinking block grows above the answer, then collapses to its duration (SSE, Socket.IO, race)',
    run: async (page) => {
      // What the page shows of the thinking, for the waits and for the failure messages.
      const shown = () =>
        page.evaluate(() => ({
          status: document.querySelector('[data-testid="status"]')?.textContent?.trim() ?? null,
          blocks: [...document.querySelectorAll<HTMLDetailsElement>('[data-testid="reasoning"]')].map(
            (block) => ({
              open: block.open,
              summary: block.querySelector('summary')?.textContent?.trim() ?? '',
              length: (block.textContent ?? '').length,
              aboveAnswer:
                block.closest('.lane')?.querySelector('[data-testid="answer"]') !== null &&
                Boolean(
                  block.compareDocumentPosition(
                    block.closest('.lane')?.querySelector('[data-testid="answer"]') as Node,
                  ) & Node.DOCUMENT_POSITION_FOLLOWING,
                ),
            }),
          ),
          answers: [...document.querySelectorAll('[data-testid="answer"]')].map(
            (answer) => (answer.textContent ?? '').length,
          ),
          ttfr: document.querySelector('[data-testid="ttfr"]')?.textContent?.trim() ?? null,
          ttft: document.querySelector('[data-testid="ttft"]')?.textContent?.trim() ?? null,
        }));
      const until = async (what: string, wait: () => Promise<unknown>) => {
        try {
          await wait();
        } catch {
          throw new Error(`${what}; the page showed ${JSON.stringify(await shown())}`);
        }
      };
      const options = { timeout: STATUS_TIMEOUT_MS, polling: 20 };
      for (const mode of ['sse', 'socket.io', 'race']) {
        const lanes = mode === 'race' ? 2 : 1;
        await startNewChat(page);
        await sendPrompt(page, mode, 'Think first. [sim think=90 tokens=40 tps=60]');
        await until('no open, non-empty thinking block while the model thinks', () =>
          page.waitForFunction(
            (count) => {
              const blocks = [...document.querySelectorAll<HTMLDetailsElement>('[data-testid="reasoning"]')];
              return (
                blocks.length === count &&
                blocks.every((block) => block.open && (block.textContent ?? '').length > 12)
              );
            },
            lanes,
            options,
          ),
        );
        const early = await shown();
        await until('the thinking did not grow while open', () =>
          page.waitForFunction(
            (lengths) =>
              [...document.querySelectorAll<HTMLDetailsElement>('[data-testid="reasoning"]')].some(
                (block, index) => block.open && (block.textContent ?? '').length > lengths[index],
              ),
            early.blocks.map((block) => block.length),
            options,
          ),
        );
        await screenshot(page, `thinking-${mode.replace('.', '')}`);
        const status = await waitForStatus(page, ['done', 'error', 'cancelled']);
        const after = await shown();
        assert(status === 'done', `the run ended ${status}: ${JSON.stringify(after)}`);
        assert(after.blocks.length === lanes, `expected ${lanes} thinking blocks: ${JSON.stringify(after)}`);
        for (const block of after.blocks) {
          assert(!block.open, `the thinking block did not collapse: ${JSON.stringify(after)}`);
          assert(
            /^Thought for \d+\.\d s$/.test(block.summary),
            `summary "${block.summary}": ${JSON.stringify(after)}`,
          );
          assert(block.aboveAnswer, `the thinking block is not above its answer: ${JSON.stringify(after)}`);
        }
        assert(
          after.answers.every((length) => length > 20),
          `an answer is missing: ${JSON.stringify(after)}`,
        );
        const ttfr = Number.parseFloat(after.ttfr ?? '');
        const ttft = Number.parseFloat(after.ttft ?? '');
        assert(
          ttfr > 0 && ttft > ttfr,
          `first reasoning ${after.ttfr} ms, first answer token ${after.ttft} ms`,
        );
        console.warn(
          `    ${mode}: ${after.blocks.map((block) => block.summary).join(', ')}; ttfr ${ttfr} ms, ttft ${ttft} ms`,
        );
        await screenshot(page, `thought-${mode.replace('.', '')}`);
      }
    },
  },
  {
    name: 'an earlier answer keeps its thinking, collapsed, after the next message and across a reload',
    run: async (page) => {
      // The thinking blocks of the earlier exchanges (the log's own messages, not the current run's lanes).
      const earlier = () =>
        page.evaluate(() =>
          [
            ...document.querySelectorAll<HTMLDetailsElement>(
              '.log > .message.assistant [data-testid="reasoning"]',
            ),
          ].map((block) => ({
            open: block.open,
            summary: block.querySelector('summary')?.textContent?.trim() ?? '',
            text: block.querySelector('.reasoning-text')?.textContent ?? '',
          })),
        );
      // Earlier exchanges rendered in the log: once there are `count`, their blocks are final.
      const earlierShown = async (count: number) => {
        try {
          await page.waitForFunction(
            (count) => document.querySelectorAll('.log > .message.assistant').length === count,
            count,
            { timeout: STATUS_TIMEOUT_MS, polling: 20 },
          );
        } catch {
          throw new Error(
            `${count} earlier answers never showed; the page showed ${JSON.stringify(await earlier())}`,
          );
        }
      };
      await startNewChat(page);
      await sendPrompt(page, 'sse', 'Think, then answer. [sim think=20 tokens=10 tps=200]');
      const first = await waitForStatus(page, ['done', 'error', 'cancelled']);
      assert(first === 'done', `the thinking run ended ${first}`);
      const thought = await page.evaluate(() => ({
        summary: document.querySelector('.lane [data-testid="reasoning-summary"]')?.textContent?.trim() ?? '',
        text: document.querySelector('.lane .reasoning-text')?.textContent ?? '',
      }));
      assert(/^Thought for \d+\.\d s$/.test(thought.summary), `the run's block says "${thought.summary}"`);
      await sendPrompt(page, 'sse', 'And then? [sim tokens=5 tps=200]');
      const second = await waitForStatus(page, ['done', 'error', 'cancelled']);
      assert(second === 'done', `the next run ended ${second}`);
      await earlierShown(1);
      const kept = await earlier();
      const expected = [{ open: false, ...thought }];
      assert(
        JSON.stringify(kept) === JSON.stringify(expected),
        `after the next message the earlier answer shows ${JSON.stringify(kept)}, not ${JSON.stringify(expected)}`,
      );
      await page.reload();
      // After a reload both exchanges are earlier ones; only the first thought.
      await earlierShown(2);
      const restored = await earlier();
      assert(
        JSON.stringify(restored) === JSON.stringify(expected),
        `after a reload the earlier answers show ${JSON.stringify(restored)}, not ${JSON.stringify(expected)}`,
      );
      await screenshot(page, 'earlier-thinking');
    },
  },
];

interface RenderingCost {
  /** Mutation batches that changed the answer: one per render of it. */
  answerRenders: number;
  longTasks: number;
  longTaskTotalMs: number;
  longestTaskMs: number;
  frames: number;
  frameP50Ms: number;
  frameP95Ms: number;
  frameMaxMs: number;
  droppedFrames: number;
  streamMs: number;
}

/**
 * How the page renders a fast stream: the answer must be rendered at most about once per animation frame (the
 * client folds the events of a frame into one render), however many tokens arrive in it. That is checked by
 * counting, so it holds on a loaded machine too. Long Tasks (> 50 ms on the main thread) and the interval
 * between frames are wall-clock figures and are only reported.
 */
async function measureRendering(page: Page, mode: 'sse' | 'socket.io'): Promise<void> {
  await startNewChat(page);
  await page.evaluate(() => {
    const probe = {
      answerRenders: 0,
      longTasks: [] as number[],
      frames: [] as number[],
      running: true,
      startedAt: performance.now(),
    };
    const inAnswer = (node: Node) =>
      Boolean((node instanceof Element ? node : node.parentElement)?.closest('[data-testid="answer"]'));
    // One callback per batch of DOM changes (one per task), so one per render of the answer.
    new MutationObserver((records) => {
      if (probe.running && records.some((record) => inAnswer(record.target))) probe.answerRenders += 1;
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
    new PerformanceObserver((list) =>
      list.getEntries().forEach((entry) => probe.longTasks.push(entry.duration)),
    ).observe({
      type: 'longtask',
    });
    let last = performance.now();
    const frame = (now: number) => {
      probe.frames.push(now - last);
      last = now;
      if (probe.running) requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
    Object.assign(window, { renderingProbe: probe });
  });
  await sendPrompt(page, mode, 'Stream hard. [sim tokens=2000 tps=100]');
  await waitForStatus(page, 'streaming');
  await answerReaches(page, 5000);
  await screenshot(page, `rendering-${mode.replace('.', '')}-mid-stream`);
  assert((await waitForStatus(page, TERMINAL, 40_000)) === 'done', 'the long stream did not finish');
  const cost = await page.evaluate((): RenderingCost => {
    const probe = (
      window as unknown as {
        renderingProbe: {
          answerRenders: number;
          longTasks: number[];
          frames: number[];
          running: boolean;
          startedAt: number;
        };
      }
    ).renderingProbe;
    probe.running = false;
    const frames = [...probe.frames].sort((a, b) => a - b);
    const at = (p: number) => frames[Math.min(frames.length - 1, Math.floor((p / 100) * frames.length))];
    return {
      answerRenders: probe.answerRenders,
      longTasks: probe.longTasks.length,
      longTaskTotalMs: probe.longTasks.reduce((sum, duration) => sum + duration, 0),
      longestTaskMs: Math.max(0, ...probe.longTasks),
      frames: frames.length,
      frameP50Ms: at(50),
      frameP95Ms: at(95),
      frameMaxMs: frames[frames.length - 1],
      droppedFrames: frames.filter((interval) => interval > 1000 / 60 + 8).length,
      streamMs: performance.now() - probe.startedAt,
    };
  });
  const text = (await page.getByTestId('answer').textContent()) ?? '';
  const tokens = Number(
    await page.locator('[data-testid="history"] tbody tr').first().locator('td').nth(6).textContent(),
  );
  assert(tokens === 2000, `expected 2000 tokens, the history says ${tokens}`);
  console.warn(
    `    ${mode}: ${tokens} tokens, ${text.length} chars in ${(cost.streamMs / 1000).toFixed(1)} s; ` +
      `${cost.answerRenders} renders of the answer in ${cost.frames} frames; long tasks ${cost.longTasks} ` +
      `(total ${cost.longTaskTotalMs.toFixed(0)} ms, longest ${cost.longestTaskMs.toFixed(0)} ms); ` +
      `frames ${cost.frames}, interval p50 ${cost.frameP50Ms.toFixed(1)} / p95 ${cost.frameP95Ms.toFixed(1)} / ` +
      `max ${cost.frameMaxMs.toFixed(1)} ms, ${cost.droppedFrames} late frames`,
  );
  await screenshot(page, `rendering-${mode.replace('.', '')}-done`);
  // A few renders come from outside the frame loop (the first event, the end of the stream).
  assert(
    cost.answerRenders > 0 && cost.answerRenders <= cost.frames + 5,
    `the answer rendered ${cost.answerRenders} times in ${cost.frames} frames for ${tokens} tokens: ` +
      'more than once per frame',
  );
}

const API_KEY = 'browser-suite-key';

/** Against a server that wants an API key: both transports say so in words, and the key from Settings works. */
const authChecks: Check[] = [
  ...(['sse', 'socket.io'] as const).map((mode) => ({
    name: `without credentials, ${mode} asks for them`,
    run: async (page: Page) => {
      await sendPrompt(page, mode, 'Hello? [sim tokens=20 tps=200]');
      await waitForStatus(page, 'error');
      const message = (await page.getByTestId('error').textContent())?.trim();
      assert(
        await page.getByRole('button', { name: 'Enter credentials' }).isVisible(),
        'no credentials prompt',
      );
      console.warn(`    ${mode}: "${message}"`);
      await screenshot(page, `unauthorized-${mode.replace('.', '')}`);
    },
  })),
  {
    name: 'with the key entered in Settings, both transports stream',
    run: async (page) => {
      await page.getByRole('button', { name: 'Enter credentials' }).click();
      await page.locator('#token').fill(API_KEY);
      await page.locator('#token').press('Enter');
      for (const mode of ['sse', 'socket.io']) {
        await page.getByRole('button', { name: 'Regenerate' }).waitFor();
        await sendPrompt(page, mode, `Now? [sim tokens=20 tps=200]`);
        assert((await waitForStatus(page, ['done', 'error'])) === 'done', `${mode} still refused`);
      }
      const inUrl = page.url().includes(API_KEY);
      assert(!inUrl, 'the key leaked into the URL');
    },
  },
  {
    name: 'with the key, an SSE answer cut off by a reload resumes with the same credentials',
    run: (page) => resumesAfterReload(page, 'sse'),
  },
];

/** The same client against a server with AUTH_MODE=api-key: the credential prompts and a working key. */
async function runAuthChecks(browser: Browser): Promise<Tally> {
  if (selected(authChecks).length === 0) return { passed: 0, failed: 0 };
  const { url, server } = await startServer({ AUTH_MODE: 'api-key', AUTH_API_KEYS: API_KEY });
  try {
    console.warn(`browser suite against ${url} (AUTH_MODE=api-key)`);
    return await runChecks(await openClient(browser, url), selected(authChecks));
  } finally {
    server.kill('SIGTERM');
  }
}

/**
 * (v1.2) An upstream table played by the simulator: the first deployment refuses (503), the fallback cuts the
 * answer after 20 tokens, a third continues it. The client marks both moves inside the answer and names who served.
 */
const UPSTREAM_TABLE = {
  deployments: {
    east: { simulator: { refuse: { status: 503 } } },
    west: {
      simulator: { midStream: { action: 'cut', afterTokens: 20 } },
      continuation: 'continue_final_message',
    },
    north: { simulator: {}, continuation: 'continue_final_message' },
  },
  models: {
    chat: {
      targets: [{ deployment: 'east', model: 'simulator-fast' }],
      fallbacks: [
        { deployment: 'west', model: 'simulator-fast' },
        { deployment: 'north', model: 'simulator-fast' },
      ],
    },
  },
  defaultModel: 'chat',
};

const upstreamChecks: Check[] = [
  {
    name: 'a fallback and a continuation are marked inside the answer, and served-by names the deployment (v1.2)',
    run: async (page) => {
      for (const mode of ['sse', 'socket.io']) {
        await startNewChat(page);
        await sendPrompt(page, mode, `Explain routing. [sim tokens=60]`);
        const status = await waitForStatus(page, TERMINAL);
        const answer = page.getByTestId('answer');
        const reasons = await answer
          .getByTestId('route')
          .evaluateAll((marks) => marks.map((mark) => mark.getAttribute('data-reason')));
        const servedBy = await page.getByTestId('served-by').textContent();
        const seen = `${mode}: status ${status}, marks ${JSON.stringify(reasons)}, served-by "${servedBy}"`;
        assert(status === 'done', `the run did not end done (${seen})`);
        assert(JSON.stringify(reasons) === '["fallback","continuation"]', `wrong route marks (${seen})`);
        assert(servedBy?.includes('north') === true, `served-by does not name the last deployment (${seen})`);
        const text = (await answer.textContent()) ?? '';
        assert(text.includes('continued on'), `the continuation mark has no words (${seen})`);
        await screenshot(page, `routes-${mode.replace('.', '')}`);
      }
    },
  },
];

/** The client against a server whose model is an upstream table with failing deployments. */
async function runUpstreamChecks(browser: Browser): Promise<Tally> {
  if (selected(upstreamChecks).length === 0) return { passed: 0, failed: 0 };
  const table = join(await mkdtemp(join(tmpdir(), 'upstreams-')), 'upstreams.json');
  await writeFile(table, JSON.stringify(UPSTREAM_TABLE));
  const { url, server } = await startServer({ UPSTREAMS_FILE: table });
  try {
    console.warn(
      `browser suite against ${url} (UPSTREAMS_FILE: a refusing, a cutting and a healthy deployment)`,
    );
    return await runChecks(await openClient(browser, url), selected(upstreamChecks));
  } finally {
    server.kill('SIGTERM');
  }
}

async function main(): Promise<void> {
  await mkdir(RESULTS, { recursive: true });
  const { url, server } = await startServer();
  let browser: Browser | null = null;
  const tally: Tally = { passed: 0, failed: 0 };
  const add = ({ passed, failed }: Tally) => {
    tally.passed += passed;
    tally.failed += failed;
  };
  try {
    browser = await launchBrowser();
    const page = await openClient(browser, url);
    console.warn(`browser suite against ${url}`);
    add(await runChecks(page, selected(checks)));
    add(await runAuthChecks(browser));
    add(await runUpstreamChecks(browser));
  } finally {
    await browser?.close();
    server.kill('SIGTERM');
  }
  reportTally(tally);
}

await main();
