/**
 * The browser suite behind the example deployment: Debian's nginx running docs/nginx.conf (only its ports and
 * paths templated, by test/support/nginx.ts) round-robins over two built gateway instances that share one real
 * redis-server and stream from one standalone simulator. Chromium drives the Angular client through nginx:
 * a chat and a race on both transports end with the simulator's exact text, Stop stops the stream and its
 * upstream request, and a reload mid-stream whose resume lands on the instance not running the stream ends
 * with the exact text. Which instance did what comes from each instance's own /metrics, read directly:
 * `llm_gateway_active_streams` and `llm_gateway_streams_total` name the one running a stream,
 * `llm_gateway_resumes_total` the one that served a resume. `npm run test:e2e` runs it after clock.mts.
 */
import { mkdir } from 'node:fs/promises';
import type { Browser, Page } from 'playwright-core';
import { type Nginx, startNginx } from '../support/nginx.ts';
import { type RedisServer, sharedDeployment, startRedisServer } from '../support/redis-server.ts';
import { type BuiltServer, startServer, startSimulator, stopServer } from './built-servers.mts';
import {
  answerChangesWithin,
  answerReaches,
  assert,
  type Check,
  launchBrowser,
  openClient,
  reportTally,
  RESULTS,
  runChecks,
  savedConversation,
  screenshot,
  selected,
  socketConnected,
  sendPrompt,
  startNewChat,
  STATUS_TIMEOUT_MS,
  TERMINAL,
  waitForStatus,
} from './client-page.mts';

const API_KEY = 'nginx-browser-suite-key';
/** The simulator wants a key of its own, as a real upstream does: the gateway's, which no client ever sees. */
const UPSTREAM_KEY = 'nginx-browser-suite-upstream-key';
const MODEL = 'simulator';
/** Reloads until one's resume lands on the other instance: round robin sends each to either, so half do. */
const MAX_RELOADS = 12;
const TRANSPORTS = ['sse', 'socket.io'] as const;
type Transport = (typeof TRANSPORTS)[number];

interface Instance extends BuiltServer {
  name: string;
}

interface Deployment {
  simulator: BuiltServer;
  redis: RedisServer;
  instances: Instance[];
  nginx: Nginx;
}

/** One scrape of one instance's /metrics: each sample with its labels. */
type Samples = { name: string; labels: Record<string, string>; value: number }[];

async function scrape(instance: Instance): Promise<Samples> {
  const text = await (await fetch(`${instance.url}/metrics`)).text();
  return text.split('\n').flatMap((line) => {
    const match = /^(llm_gateway_\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) return [];
    const labels = Object.fromEntries(
      [...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map(([, k, v]) => [k, v]),
    );
    return [{ name: match[1], labels, value: Number(match[3]) }];
  });
}

/** The sum of a metric's samples for one transport. */
function total(samples: Samples, name: string, transport: Transport): number {
  return samples
    .filter((sample) => sample.name === name && sample.labels['transport'] === transport)
    .reduce((sum, sample) => sum + sample.value, 0);
}

/** Polls what the page or a server shows until `ready` says so; on timeout, fails with what it last saw. */
async function until<T>(
  what: string,
  look: () => Promise<T>,
  ready: (seen: T) => boolean,
  timeout = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const seen = await look();
    if (ready(seen)) return seen;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(seen)} after ${timeout} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Sends a prompt once the transport is chosen and, for Socket.IO (alone or in a race), once the client shows
 * its WebSocket connected. The client opens the socket as soon as Socket.IO is chosen; a prompt sent while that
 * handshake is under way makes it send a second namespace CONNECT on the one connection, which the server
 * answers by closing it, and the run fails with "socket has been disconnected" (seen under load in run.mts
 * too: the client's bug, apps/web's SocketIoTransport.connected(), reported). This suite is about the
 * deployment, so it sends as a user does who waits for the connection.
 */
async function sendWhenConnected(page: Page, mode: Transport | 'race', prompt: string): Promise<void> {
  await page.getByTestId('transport').selectOption(mode);
  if (mode !== 'sse') {
    await socketConnected(page);
  }
  await sendPrompt(page, mode, prompt);
}

function checksFor({ simulator, instances }: Deployment): Check[] {
  const scrapeAll = () => Promise.all(instances.map(scrape));
  /** The instances on which a metric of one transport rose between two scrapes. */
  const risen = (before: Samples[], after: Samples[], name: string, transport: Transport) =>
    instances.filter((_, i) => total(after[i], name, transport) > total(before[i], name, transport));
  const names = (list: Instance[]) => list.map((instance) => instance.name).join('+') || 'none';

  /** Waits until exactly one instance shows the rise, and returns it. */
  const theOneWhere = async (what: string, before: Samples[], name: string, transport: Transport) => {
    const [instance] = await until(
      what,
      async () => risen(before, await scrapeAll(), name, transport),
      (list) => list.length === 1,
    ).catch((error: unknown) => {
      throw new Error(`${String(error)} (instances ${names(instances)})`);
    });
    return instance;
  };

  const simulatorStats = async () =>
    (await (
      await fetch(`${simulator.url}/simulator/stats`, {
        headers: { authorization: `Bearer ${UPSTREAM_KEY}` },
      })
    ).json()) as { requests: number; active: number; completed: number; aborted: number };

  /** The simulator's own answer to a prompt opening a conversation: what the client must end up with. */
  const answers = new Map<string, Promise<string>>();
  const simulatorAnswer = (prompt: string): Promise<string> => {
    const known = answers.get(prompt);
    if (known) return known;
    const asked = fetch(`${simulator.url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${UPSTREAM_KEY}` },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: prompt }], stream: false }),
    })
      .then((response) => response.json() as Promise<{ choices: { message: { content: string } }[] }>)
      .then((completion) => completion.choices[0].message.content);
    // A check that fails before awaiting it must not leave a rejection unhandled when the simulator stops.
    asked.catch(() => undefined);
    answers.set(prompt, asked);
    return asked;
  };

  /** The reply the client keeps for the conversation: the raw text of the answer, as streamed. */
  const keptReply = async (page: Page) => (await savedConversation(page))?.exchanges.at(-1)?.reply ?? null;
  const expectExact = async (page: Page, expected: string, what: string) => {
    const reply = await keptReply(page);
    assert(reply !== null, `${what}: the client kept no reply`);
    if (reply !== expected) {
      const at = [...reply].findIndex((char, i) => char !== expected[i]);
      throw new Error(
        `${what}: the reply differs from the simulator's text (${reply.length} chars, expected ${expected.length}; ` +
          `first difference at ${at === -1 ? Math.min(reply.length, expected.length) : at})`,
      );
    }
  };

  const streamingWithText = (page: Page) =>
    page.waitForFunction(
      (terminal) => {
        const status = document.querySelector('[data-testid="status"]')?.textContent?.trim() ?? '';
        const text = document.querySelector('[data-testid="answer"]')?.textContent ?? '';
        return (status === 'streaming' && text.length > 0) || terminal.includes(status);
      },
      TERMINAL,
      { timeout: STATUS_TIMEOUT_MS, polling: 20 },
    );

  async function chatCompletes(page: Page, mode: Transport): Promise<void> {
    const prompt = `A chat through nginx over ${mode}. [sim tokens=150 tps=60]`;
    const expected = simulatorAnswer(prompt);
    await startNewChat(page);
    const before = await scrapeAll();
    await sendWhenConnected(page, mode, prompt);
    const status = await waitForStatus(page, TERMINAL);
    assert(status === 'done', `the chat ended ${status}, not done`);
    const answer = page.getByTestId('answer');
    assert((await answer.count()) === 1, `${await answer.count()} answer panes for one transport`);
    assert((await answer.getAttribute('data-transport')) === mode, 'the answer pane names another transport');
    await expectExact(page, await expected, mode);
    const runner = await theOneWhere('which instance ran it', before, 'llm_gateway_streams_total', mode);
    console.warn(`    ${mode}: ${(await expected).length} chars, exact; ran on instance ${runner.name}`);
    await screenshot(page, `nginx-chat-${mode.replace('.', '')}`);
  }

  async function raceCompletes(page: Page): Promise<void> {
    const prompt = 'A race through nginx. [sim tokens=150 tps=60]';
    const expected = simulatorAnswer(prompt);
    await startNewChat(page);
    const before = await scrapeAll();
    await sendWhenConnected(page, 'race', prompt);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="answer"]').length === 2);
    const status = await waitForStatus(page, TERMINAL);
    assert(status === 'done', `the race ended ${status}, not done`);
    const lanes = (await page.locator('.lane h3').allTextContents()).map((title) => title.trim());
    assert(
      lanes.length === 2 && lanes.every((title) => title.endsWith('· done')),
      `the lanes ended: ${lanes.join(', ')}`,
    );
    const sse = (await page.locator('[data-testid="answer"][data-transport="sse"]').textContent()) ?? '';
    const socket =
      (await page.locator('[data-testid="answer"][data-transport="socket.io"]').textContent()) ?? '';
    assert(sse.length > 100 && sse === socket, `the panes differ: ${sse.length} and ${socket.length} chars`);
    await expectExact(page, await expected, 'race');
    const ran = await Promise.all(
      TRANSPORTS.map(async (mode) => {
        const runner = await theOneWhere(
          `which instance ran the ${mode} lane`,
          before,
          'llm_gateway_streams_total',
          mode,
        );
        return `${mode} on ${runner.name}`;
      }),
    );
    console.warn(
      `    both lanes done with the same ${(await expected).length} chars, exact; ${ran.join(', ')}`,
    );
    await screenshot(page, 'nginx-race');
  }

  async function stopStops(page: Page, mode: Transport): Promise<void> {
    await startNewChat(page);
    const before = await scrapeAll();
    const upstreamBefore = await simulatorStats();
    await sendWhenConnected(page, mode, `Stop me through nginx. [sim tokens=2000 tps=50]`);
    await answerReaches(page, 40);
    assert(
      (await waitForStatus(page, TERMINAL.concat('streaming'))) === 'streaming',
      'the answer ended before Stop',
    );
    const runner = await theOneWhere('which instance runs it', before, 'llm_gateway_active_streams', mode);
    await page.getByTestId('stop').click();
    const stopped = await waitForStatus(page, TERMINAL, 10_000);
    assert(stopped === 'cancelled', `Stop ended the run ${stopped}, not cancelled`);
    // The upstream's own account: its request was aborted, and nothing of it runs any more.
    const upstream = await until(
      'the simulator did not see its request aborted',
      simulatorStats,
      (stats) => stats.aborted === upstreamBefore.aborted + 1 && stats.active === upstreamBefore.active,
    );
    const cancelled = await theOneWhere(
      'which instance cancelled it',
      before,
      'llm_gateway_cancellations_total',
      mode,
    );
    assert(
      cancelled === runner,
      `instance ${runner.name} ran the stream, ${cancelled.name} counted its cancel`,
    );
    // 25 token intervals of this 50 tokens/s stream.
    const changes = await answerChangesWithin(page, 500);
    assert(changes === 0, `the answer changed ${changes} times after Stop`);
    assert((await savedConversation(page))?.pending === null, 'the stopped run is still marked unfinished');
    const shown = ((await page.getByTestId('answer').textContent()) ?? '').length;
    console.warn(
      `    ${mode}: ran on ${runner.name}, stopped at ${shown} chars; the simulator saw ${upstream.aborted - upstreamBefore.aborted} abort`,
    );
    await screenshot(page, `nginx-stopped-${mode.replace('.', '')}`);
  }

  async function reloadResumesElsewhere(page: Page, mode: Transport): Promise<void> {
    const prompt = `Reload me through nginx over ${mode}. [sim tokens=1800 tps=60]`;
    const expected = simulatorAnswer(prompt);
    await startNewChat(page);
    const before = await scrapeAll();
    await sendWhenConnected(page, mode, prompt);
    await streamingWithText(page);
    const runner = await theOneWhere('which instance runs it', before, 'llm_gateway_active_streams', mode);
    const landings: string[] = [];
    const seen = () =>
      `ran on ${runner.name}; the resumes of ${landings.length} reloads landed on ${landings.join(', ')}`;
    for (;;) {
      assert(landings.length < MAX_RELOADS, `no resume landed on the other instance: ${seen()}`);
      const beforeReload = await scrapeAll();
      await page.reload();
      await page.getByTestId('resumed-note').waitFor({ timeout: STATUS_TIMEOUT_MS });
      await streamingWithText(page);
      const status = (await page.getByTestId('status').textContent())?.trim();
      const served = risen(beforeReload, await scrapeAll(), 'llm_gateway_resumes_total', mode);
      landings.push(names(served));
      if (served.length === 1 && served[0] !== runner) break;
      assert(
        status === 'streaming',
        `the stream ended ${status} before a resume landed elsewhere: ${seen()}`,
      );
      // A page load makes about the same number of requests every time, so an nginx worker's round robin can
      // send every resume to the same instance (seen: 10 in a row). Another request between two reloads, as
      // another user's would pass, after every other reload: the landings then cannot stay in step.
      if (landings.length % 2 === 1) {
        await page.evaluate(() => fetch('/health/live').then((response) => response.text()));
      }
    }
    const status = await waitForStatus(page, TERMINAL, 60_000);
    assert(status === 'done', `the resumed run ended ${status}: ${seen()}`);
    const answer = page.getByTestId('answer');
    assert((await answer.getAttribute('data-transport')) === mode, 'the answer pane names another transport');
    assert(await page.getByTestId('resumed-note').isVisible(), 'the run is not marked as resumed');
    await expectExact(page, await expected, `${mode}, ${seen()}`);
    assert((await savedConversation(page))?.pending === null, 'the finished run is still marked unfinished');
    console.warn(`    ${mode}: ${seen()}; ${(await expected).length} chars, exact`);
    await screenshot(page, `nginx-resumed-elsewhere-${mode.replace('.', '')}`);
  }

  return [
    ...TRANSPORTS.map((mode) => ({
      name: `a chat over ${mode} through nginx ends with the simulator's exact text`,
      run: (page: Page) => chatCompletes(page, mode),
    })),
    { name: 'a race through nginx: both lanes end with the exact text', run: raceCompletes },
    ...TRANSPORTS.map((mode) => ({
      name: `Stop through nginx stops a ${mode} stream and its upstream request`,
      run: (page: Page) => stopStops(page, mode),
    })),
    ...TRANSPORTS.map((mode) => ({
      name: `a reload whose ${mode} resume lands on the other instance ends with the exact text`,
      run: (page: Page) => reloadResumesElsewhere(page, mode),
    })),
  ];
}

/** The API key, entered in Settings as a user would; the client keeps it in the tab for reloads. */
async function enterKey(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Settings' }).click();
  await page.locator('#token').fill(API_KEY);
  await page.locator('#token').press('Enter');
  await page.getByText('Saved.').waitFor({ timeout: STATUS_TIMEOUT_MS });
  await page.getByRole('button', { name: 'Settings' }).click();
}

async function deploy(started: Partial<Deployment>): Promise<Deployment> {
  started.simulator = await startSimulator(UPSTREAM_KEY);
  started.redis = await startRedisServer();
  const env = {
    ...sharedDeployment(started.redis.url, API_KEY),
    LLM_PROVIDER: 'openai',
    OPENAI_BASE_URL: started.simulator.url,
    OPENAI_API_KEY: UPSTREAM_KEY,
    OPENAI_MODEL: MODEL,
    // nginx is the one proxy, on loopback: the client address is the one it forwards.
    TRUST_PROXY: 'loopback',
    // A reload on a starved two-core machine can take seconds; the stream must wait for it.
    STREAM_RESUME_GRACE_MS: '15000',
    LOG_LEVEL: 'warn',
  };
  started.instances = [];
  for (const name of ['A', 'B']) started.instances.push({ name, ...(await startServer(env)) });
  started.nginx = await startNginx(started.instances.map((instance) => instance.url));
  return started as Deployment;
}

async function main(): Promise<void> {
  await mkdir(RESULTS, { recursive: true });
  const started: Partial<Deployment> = {};
  let browser: Browser | null = null;
  try {
    const deployment = await deploy(started);
    const { nginx, instances } = deployment;
    const served = (await fetch(nginx.url)).headers.get('server') ?? '';
    assert(served.startsWith('nginx'), `${nginx.url} is served by "${served}", not nginx`);
    console.warn(
      `browser suite through ${served} at ${nginx.url}, round robin over ${instances
        .map((instance) => `${instance.name} ${instance.url}`)
        .join(' and ')}, one redis-server`,
    );
    browser = await launchBrowser();
    const page = await openClient(browser, nginx.url);
    await enterKey(page);
    reportTally(await runChecks(page, selected(checksFor(deployment))));
  } finally {
    await browser?.close();
    await started.nginx?.close();
    await Promise.all((started.instances ?? []).map(stopServer));
    await started.redis?.close();
    if (started.simulator) await stopServer(started.simulator);
  }
}

await main();
