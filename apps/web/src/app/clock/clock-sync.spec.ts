import { settleBurst } from './clock-sync';

/** A burst driven by the test: each round takes `roundMs` of a fake clock, and the bound narrows as told. */
function burst(bounds: (round: number) => number, roundMs: number) {
  let now = 0;
  let rounds = 0;
  const events: string[] = [];
  const done = settleBurst({
    round: async () => {
      now += roundMs;
      rounds++;
    },
    boundMs: () => bounds(rounds),
    firstEstimate: () => events.push(`estimate after ${rounds}`),
    now: () => now,
    pause: async () => {
      now += 20;
    },
  });
  return { done, events, elapsed: () => now };
}

describe('settleBurst', () => {
  it('shows the first estimate after 16 rounds and stops once the bound is 0.25 ms', async () => {
    const { done, events } = burst((round) => (round < 20 ? 0.4 : 0.2), 1);
    await expect(done).resolves.toBe(20);
    expect(events).toEqual(['estimate after 16']);
  });

  it('against a far server, shows the estimate after 16 rounds while it goes on settling for 6 s', async () => {
    // 50 ms round trips on each lane: the bound stays near 25 ms, far above 0.25.
    const { done, events, elapsed } = burst(() => 25, 100);
    const rounds = await done;
    expect(events).toEqual(['estimate after 16']);
    // The estimate came 1.6 s in; the burst itself ended only at its time limit.
    expect(elapsed()).toBeGreaterThan(6000);
    expect(rounds).toBeGreaterThan(16);
  });
});
