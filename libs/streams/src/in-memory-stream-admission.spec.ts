import { InMemoryStreamAdmission } from './in-memory-stream-admission';
import type { AdmissionDecision } from './stream-admission';

describe('InMemoryStreamAdmission', () => {
  let now = 1_000_000;
  const clock = () => now;
  const admissions: InMemoryStreamAdmission[] = [];
  const admission = (maxConcurrentStreams: number, requestsPerMinute: number) => {
    const created = new InMemoryStreamAdmission({ maxConcurrentStreams, requestsPerMinute }, clock);
    admissions.push(created);
    return created;
  };
  afterAll(() => admissions.forEach((created) => created.onModuleDestroy()));

  it('admits exactly the concurrency limit out of a burst begun in one tick', async () => {
    const limits = admission(20, 1000);
    const decisions = await Promise.all(Array.from({ length: 60 }, () => limits.admitStart('alice')));

    expect(decisions.filter((decision) => decision.ok)).toHaveLength(20);
    expect(decisions.filter((decision) => !decision.ok)[0]).toEqual({
      ok: false,
      limit: 'concurrent',
      retryAfterMs: 1000,
    });
  });

  it('gives a slot back once, however often it is released', async () => {
    const limits = admission(1, 1000);
    const first = (await limits.admitStart('alice')) as Extract<AdmissionDecision, { ok: true }>;
    first.slot.release();
    first.slot.release();
    const second = await limits.admitStart('alice');
    const third = await limits.admitStart('alice');

    expect([second.ok, third.ok]).toEqual([true, false]);
  });

  it('keeps owners apart', async () => {
    const limits = admission(1, 1000);

    expect((await limits.admitStart('alice')).ok).toBe(true);
    expect((await limits.admitStart('bob')).ok).toBe(true);
    expect((await limits.admitStart('alice')).ok).toBe(false);
  });

  it('counts starts over a sliding minute and says when the oldest leaves it', async () => {
    const limits = admission(100, 3);
    for (const _ of [1, 2, 3]) {
      const decision = await limits.admitStart('alice');
      if (decision.ok) decision.slot.release();
      now += 10_000;
    }

    expect(await limits.admitStart('alice')).toEqual({
      ok: false,
      limit: 'per_minute',
      retryAfterMs: 30_000,
    });
    now += 30_000;
    expect((await limits.admitStart('alice')).ok).toBe(true);
  });

  it('counts resumes in the same minute as starts, without a concurrency slot', async () => {
    const limits = admission(1, 3);
    const started = await limits.admitStart('alice');
    const resumes = [await limits.admitResume('alice'), await limits.admitResume('alice')];

    expect(started.ok).toBe(true);
    expect(resumes).toEqual([{ ok: true }, { ok: true }]);
    expect(await limits.admitResume('alice')).toMatchObject({ ok: false, limit: 'per_minute' });
    expect(await limits.admitResume('bob')).toEqual({ ok: true });
  });

  it('counts nothing for a refused start', async () => {
    const limits = admission(1, 2);
    const held = await limits.admitStart('alice');
    const refused = await limits.admitStart('alice');
    if (held.ok) held.slot.release();
    const afterRelease = await limits.admitStart('alice');

    expect([held.ok, refused.ok, afterRelease.ok]).toEqual([true, false, true]);
  });
});
