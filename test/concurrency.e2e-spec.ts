import type { CompletionEvent } from '@app/contracts';
import { postStream, textOf } from './support/sse-client';
import { connect, streamOver } from './support/socket-client';
import { eventually, startTestApp, type TestApp } from './support/test-app';

describe('200 concurrent streams across both transports', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await startTestApp({ SIMULATOR_PROFILE: 'fast' });
  });
  afterAll(() => testApp.close());

  it('all complete with their exact text', async () => {
    const sockets = await Promise.all(Array.from({ length: 10 }, () => connect(testApp.url)));
    const prompt = (index: number) => ({
      messages: [
        {
          role: 'user' as const,
          content: `[sim echo tps=200] answer ${index}: ünïcödé ✓ ${'word '.repeat(20)}`,
        },
      ],
    });
    const expected = (index: number) => `answer ${index}: ünïcödé ✓ ${'word '.repeat(20)}`.trim();

    const runs: Promise<{ index: number; events: CompletionEvent[] }>[] = [];
    for (let index = 0; index < 200; index += 1) {
      runs.push(
        index % 2 === 0
          ? postStream(testApp.url, prompt(index)).then(({ events }) => ({ index, events }))
          : streamOver(sockets[index % sockets.length], prompt(index)).then(({ events }) => ({
              index,
              events,
            })),
      );
    }
    const results = await Promise.all(runs);
    sockets.forEach((socket) => socket.disconnect());

    // On failure, what each wrong stream delivered: its text and how it ended, not every event.
    const wrong = results
      .filter(({ index, events }) => textOf(events) !== expected(index) || events.at(-1)?.type !== 'done')
      .map(({ index, events }) => ({ index, text: textOf(events), last: events.at(-1) }));
    expect(wrong).toEqual([]);
    await eventually(() => testApp.simulator.stats().active === 0);
    expect(testApp.simulator.stats().aborted).toBe(0);
  });
});
