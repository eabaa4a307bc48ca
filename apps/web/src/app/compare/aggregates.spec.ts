import type { RunRecord } from '../history/run-record';
import type { TransportName } from '../transport/completion-transport';
import { aggregateByTransport } from './aggregates';

function record(
  transport: TransportName,
  ttftMs: number | null,
  sketch: number[],
  status: RunRecord['status'] = 'done',
): RunRecord {
  return {
    id: `${transport}-${ttftMs}`,
    startedAt: '2026-01-01T00:00:00.000Z',
    transport,
    raceId: null,
    model: 'sim',
    prompt: 'hi',
    status,
    errorCode: null,
    tokens: sketch.length,
    events: sketch.length + 2,
    ttftMs,
    transportDelayP50Ms: null,
    transportDelayP95Ms: null,
    gapP50Ms: null,
    gapP95Ms: null,
    gapMaxMs: null,
    tokensPerSecond: 100,
    durationMs: 1000,
    clockUncertaintyMs: 0.2,
    transportDelaySketch: sketch,
  };
}

describe('aggregateByTransport', () => {
  it('summarizes each transport separately, even without runs', () => {
    const [sse, socket] = aggregateByTransport([
      record('sse', 10, [1, 2, 3]),
      record('sse', 30, [5]),
      record('sse', null, [], 'error'),
      record('socket.io', 8, [0.5, 1.5]),
    ]);
    expect(sse).toMatchObject({
      transport: 'sse',
      runs: 3,
      completed: 2,
      medianTtftMs: 20,
      transportDelayP50Ms: 2.5,
    });
    expect(sse.delays).toEqual([1, 2, 3, 5]);
    expect(socket).toMatchObject({
      transport: 'socket.io',
      runs: 1,
      medianTtftMs: 8,
      transportDelayP50Ms: 1,
    });
    expect(aggregateByTransport([])[0]).toMatchObject({
      runs: 0,
      medianTtftMs: null,
      transportDelayP50Ms: null,
    });
  });
});
