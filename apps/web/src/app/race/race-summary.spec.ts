import { computeRunMetrics } from '../metrics/run-metrics';
import { newLane, type Lane } from '../run/lane';
import type { TransportName } from '../transport/completion-transport';
import { summarizeRace } from './race-summary';

function lane(transport: TransportName, arrivals: number[]): Lane {
  return {
    ...newLane(transport, transport, 0),
    arrivals: arrivals.map((arrivedAt, i) => ({ seq: i + 1, arrivedAt, serverTs: arrivedAt })),
  };
}

describe('summarizeRace', () => {
  it('says which transport led and by how much', () => {
    const sse = lane('sse', [12, 22, 33]);
    const socket = lane('socket.io', [10, 20, 30]);
    const summary = summarizeRace(sse, computeRunMetrics(sse, null), socket, computeRunMetrics(socket, null));
    expect(summary).toMatchObject({
      ahead: 'socket.io',
      behind: 'sse',
      medianLeadMs: 2,
      ttftLeadMs: 2,
      comparedTokens: 3,
    });
  });

  it('is null when the lanes share no token', () => {
    const sse = lane('sse', []);
    const socket = lane('socket.io', [10]);
    expect(
      summarizeRace(sse, computeRunMetrics(sse, null), socket, computeRunMetrics(socket, null)),
    ).toBeNull();
  });

  it('calls an exact tie a tie', () => {
    const sse = lane('sse', [10]);
    const socket = lane('socket.io', [10]);
    const summary = summarizeRace(sse, computeRunMetrics(sse, null), socket, computeRunMetrics(socket, null));
    expect(summary).toMatchObject({ ahead: null, medianLeadMs: 0 });
  });
});
