import { EmissionScheduler, type ScheduledTask } from './emission.scheduler';

function task(log: string[], name: string, then?: () => void): ScheduledTask {
  return {
    due: 0,
    heapIndex: -1,
    run: () => {
      log.push(name);
      then?.();
    },
  };
}

describe('EmissionScheduler', () => {
  it('runs tasks in due order with one timer, and forgets cancelled ones', async () => {
    const scheduler = new EmissionScheduler();
    const log: string[] = [];
    const now = performance.now();
    const cancelled = task(log, 'cancelled');
    scheduler.schedule(task(log, 'c'), now + 30);
    scheduler.schedule(task(log, 'a'), now + 5);
    scheduler.schedule(cancelled, now + 10);
    scheduler.schedule(task(log, 'b'), now + 20);
    scheduler.cancel(cancelled);
    expect(scheduler.size).toBe(3);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(log).toEqual(['a', 'b', 'c']);
    expect(scheduler.size).toBe(0);
  });

  it('gives a task that is always due one step per event-loop turn', async () => {
    const scheduler = new EmissionScheduler();
    const log: string[] = [];
    let steps = 0;
    const busy: ScheduledTask = task(log, 'busy', () => {
      if (++steps < 100) scheduler.schedule(busy, performance.now());
    });
    scheduler.schedule(busy, performance.now());
    await new Promise((resolve) => setImmediate(resolve));
    expect(steps).toBeLessThan(100);
    // Counted in event-loop turns, not milliseconds, so a busy machine cannot make it flaky.
    for (let turn = 0; turn < 200 && steps < 100; turn += 1) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(steps).toBe(100);
  });

  it('clear() drops everything', async () => {
    const scheduler = new EmissionScheduler();
    const log: string[] = [];
    scheduler.schedule(task(log, 'never'), performance.now() + 5);
    scheduler.clear();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(log).toEqual([]);
  });
});
