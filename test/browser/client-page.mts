/**
 * Driving the built Angular client in Chromium through its data-testid hooks, for the browser suites (run.mts
 * against one server, nginx.mts behind nginx): the browser, the page and its console, the waits on what the
 * page shows, the checks' runner and what a failed check reports.
 */
import { join } from 'node:path';
import { type Browser, type Page, chromium } from 'playwright-core';

export const RESULTS = 'test-results/browser';
export const STATUS_TIMEOUT_MS = 30_000;
export const TERMINAL = ['done', 'error', 'cancelled'];
export const CONVERSATION_KEY = 'llm-stream-gateway.conversation.v1';

export interface Check {
  name: string;
  run: (page: Page) => Promise<void>;
}

export interface Tally {
  passed: number;
  failed: number;
}

/** What a reload restores: the finished exchanges and, while one streams, the run to resume. */
export interface SavedConversation {
  pending: unknown;
  exchanges: { prompt: string; reply: string }[];
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

/** Chromium from `CHROMIUM_PATH` (Debian's `/usr/bin/chromium` by default), headless. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(RESULTS, `${name}.png`), fullPage: true });
}

export async function waitForStatus(
  page: Page,
  expected: string | string[],
  timeout = STATUS_TIMEOUT_MS,
): Promise<string> {
  const wanted = Array.isArray(expected) ? expected : [expected];
  await page.waitForFunction(
    (states) => states.includes(document.querySelector('[data-testid="status"]')?.textContent?.trim() ?? ''),
    wanted,
    { timeout, polling: 50 },
  );
  return (await page.getByTestId('status').textContent())?.trim() ?? '';
}

/**
 * Waits until the client shows its Socket.IO connection up on the websocket transport (the settings' "Socket.IO
 * transport" entry): the client opens it ahead, as soon as Socket.IO is chosen.
 */
export async function socketConnected(page: Page, timeout = STATUS_TIMEOUT_MS): Promise<void> {
  await page.waitForFunction(
    () =>
      [...document.querySelectorAll('dt')]
        .find((term) => term.textContent?.trim() === 'Socket.IO transport')
        ?.nextElementSibling?.textContent?.trim() === 'websocket',
    undefined,
    { timeout, polling: 20 },
  );
}

/**
 * Sends a prompt and returns once the client has rendered the new run: the composer empties in the same
 * render that shows the new run's status, so a status read after this is never the previous run's.
 */
export async function sendPrompt(page: Page, mode: string, prompt: string): Promise<void> {
  await page.getByTestId('transport').selectOption(mode);
  await page.getByTestId('prompt').fill(prompt);
  await page.getByTestId('prompt').press('Enter');
  await page.waitForFunction(
    () => document.querySelector<HTMLTextAreaElement>('[data-testid="prompt"]')?.value === '',
    undefined,
    { timeout: STATUS_TIMEOUT_MS, polling: 20 },
  );
}

/**
 * New chat, then wait until the client has rendered the empty conversation and dropped the saved one: the
 * client writes sessionStorage in an effect after the click, so a check that seeds the storage before that
 * write would have its entry removed by it (what made the expired-streams check fail on fresh clones).
 */
export async function startNewChat(page: Page): Promise<void> {
  const button = page.getByRole('button', { name: 'New chat' });
  if (await button.isEnabled()) await button.click();
  await page.waitForFunction(
    (key) => document.querySelector('.log .empty') !== null && sessionStorage.getItem(key) === null,
    CONVERSATION_KEY,
    { timeout: STATUS_TIMEOUT_MS, polling: 20 },
  );
}

/** The length of the (first) answer pane's text, or, while it is shorter, whether the run already ended. */
export function answerReaches(page: Page, chars: number, timeout = STATUS_TIMEOUT_MS): Promise<unknown> {
  return page.waitForFunction(
    ({ chars, terminal }) =>
      [...document.querySelectorAll('[data-testid="answer"]')].every(
        (answer) => (answer.textContent ?? '').length >= chars,
      ) || terminal.includes(document.querySelector('[data-testid="status"]')?.textContent?.trim() ?? ''),
    { chars, terminal: TERMINAL },
    { timeout, polling: 50 },
  );
}

/**
 * How many times the answer pane changed over the next `ms`: an absence (nothing more after Stop) can only be
 * seen over a span of time.
 */
export function answerChangesWithin(page: Page, ms: number): Promise<number> {
  return page.evaluate(
    (ms) =>
      new Promise<number>((resolve) => {
        let count = 0;
        const observer = new MutationObserver(() => count++);
        observer.observe(document.querySelector('[data-testid="answer"]') ?? document.body, {
          subtree: true,
          childList: true,
          characterData: true,
        });
        setTimeout(() => {
          observer.disconnect();
          resolve(count);
        }, ms);
      }),
    ms,
  );
}

/** The conversation entry in sessionStorage: what a reload restores. */
export async function savedConversation(page: Page): Promise<SavedConversation | null> {
  return page.evaluate(
    (key) => JSON.parse(sessionStorage.getItem(key) ?? 'null') as SavedConversation | null,
    CONVERSATION_KEY,
  );
}

/** `--grep=<text>` runs only the checks whose name contains the text. */
export const GREP = process.argv.find((arg) => arg.startsWith('--grep='))?.slice('--grep='.length);
export const selected = (list: Check[]) =>
  list.filter((check) => GREP === undefined || check.name.includes(GREP));

/** The page's last console lines (errors and warnings included), kept for the report of a failed check. */
const consoleLines = new WeakMap<Page, string[]>();

/** What the user would see when a check failed: the run's status, the answers, notices and errors, the log. */
export async function describePage(page: Page): Promise<string> {
  const shown = await page
    .evaluate((key) => {
      const texts = (selector: string) =>
        [...document.querySelectorAll(selector)].map((element) => element.textContent?.trim() ?? '');
      return {
        url: location.pathname,
        status: texts('[data-testid="status"]'),
        answers: [...document.querySelectorAll('[data-testid="answer"]')].map(
          (answer) => `${answer.getAttribute('data-transport')}: ${(answer.textContent ?? '').length} chars`,
        ),
        errors: texts('[data-testid="error"]'),
        notices: texts('[data-testid="resume-expired"], [data-testid="resumed-note"]'),
        emptyChat: document.querySelector('.log .empty') !== null,
        saved: (sessionStorage.getItem(key) ?? 'nothing').slice(0, 200),
      };
    }, CONVERSATION_KEY)
    .catch((error: unknown) => ({ unreadable: String(error) }));
  const log = (consoleLines.get(page) ?? []).slice(-20);
  return [`    the page showed: ${JSON.stringify(shown)}`, ...log.map((line) => `    console: ${line}`)].join(
    '\n',
  );
}

export async function runChecks(page: Page, list: Check[]): Promise<Tally> {
  let failures = 0;
  for (const check of list) {
    const started = Date.now();
    try {
      await check.run(page);
      console.warn(`  ✓ ${check.name} (${Date.now() - started} ms)`);
    } catch (error) {
      failures++;
      console.error(`  ✗ ${check.name}: ${error instanceof Error ? error.message : String(error)}`);
      console.error(await describePage(page));
      await screenshot(page, `failed-${check.name.replace(/\W+/g, '-')}`).catch(() => undefined);
    }
  }
  return { passed: list.length - failures, failed: failures };
}

export async function openClient(browser: Browser, url: string): Promise<Page> {
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
  page.on('pageerror', (error) => console.error(`    page error: ${error.message}`));
  const lines: string[] = [];
  consoleLines.set(page, lines);
  const keep = (line: string) => {
    lines.push(line);
    if (lines.length > 50) lines.shift();
  };
  page.on('console', (message) => keep(`${message.type()}: ${message.text()}`));
  // The WebSocket's life, for a Socket.IO run that failed: its opening, its close, and every frame but the
  // events and acks (engine.io's open, ping and pong, Socket.IO's connect and disconnect packets).
  page.on('websocket', (socket) => {
    const opened = Date.now();
    const at = () => `websocket +${Date.now() - opened} ms`;
    keep(`${at()}: opened ${socket.url()}`);
    const frame = (direction: string) => (payload: string | Buffer) => {
      const text = String(payload);
      if (!/^4[23]/.test(text)) keep(`${at()}: ${direction} ${text.slice(0, 120)}`);
    };
    socket.on('framesent', ({ payload }) => frame('sent')(payload));
    socket.on('framereceived', ({ payload }) => frame('received')(payload));
    socket.on('socketerror', (error) => keep(`${at()}: error ${error}`));
    socket.on('close', () => keep(`${at()}: closed`));
  });
  await page.goto(url);
  await page.getByTestId('prompt').waitFor();
  return page;
}

/** The suite's last line, and its exit code: it fails when a check failed or none ran. */
export function reportTally({ passed, failed }: Tally): void {
  console.warn(
    `${passed} passed, ${failed} failed${GREP === undefined ? '' : ` (only checks naming "${GREP}")`}`,
  );
  process.exitCode = failed === 0 && passed > 0 ? 0 : 1;
}
