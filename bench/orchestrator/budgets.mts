/**
 * The budgets, each reported as met or missed with what was measured and its ratio to the limit (a ratio
 * above 1 is a miss). They are reported, never asserted: timing on a shared machine is not a test.
 */
import type { Target } from '../load/measure.mts';
import type { TargetRun } from './measure-target.mts';

export interface Budget {
  name: string;
  point: string;
  measured: string;
  /** Measured over the limit: ≤ 1 is met; NaN where a count, not a ratio, is the figure. */
  ratio: number;
  met: boolean;
}

const PAIRS = [
  ['gateway-sse', 'raw-sse'],
  ['gateway-socket.io', 'raw-socket.io'],
] as const;

/** The gateway on Redis against itself in one process (issue #10): Redis's own CPU counted with the gateway's. */
const REDIS_PAIRS = [
  ['gateway-sse+redis', 'gateway-sse'],
  ['gateway-socket.io+redis', 'gateway-socket.io'],
] as const;

function budget(name: string, point: string, measured: string, value: number, limit: number): Budget {
  const ratio = value / limit;
  return { name, point, measured, ratio, met: Number.isFinite(ratio) && ratio <= 1 };
}

export function budgets(runs: TargetRun[], memoryPoint: string | undefined): Budget[] {
  const find = (point: string, target: Target) =>
    runs.find((run) => run.point === point && run.target === target);
  const list: Budget[] = [];
  for (const point of new Set(runs.map((run) => run.point))) {
    for (const [gateway, raw] of PAIRS) {
      const ours = find(point, gateway);
      const floor = find(point, raw);
      if (ours) {
        const broken = ours.tokensLost + ours.garbledStreams;
        list.push({
          name: `${gateway}: zero tokens lost or garbled`,
          point,
          measured: `${ours.tokensLost} lost, ${ours.garbledStreams} garbled, ${ours.errors} failed streams`,
          ratio: Number.NaN,
          met: broken === 0 && ours.errors === 0,
        });
      }
      if (!ours || !floor) continue;
      const latency = ours.tokenLatencyMs.p99 / floor.tokenLatencyMs.p99;
      list.push(budget(`${gateway}: token p99 ≤ 1.5× ${raw}`, point, `${latency.toFixed(2)}×`, latency, 1.5));
      if (ours.cpuSecondsPer1kTokens !== undefined && floor.cpuSecondsPer1kTokens) {
        const cpu = ours.cpuSecondsPer1kTokens / floor.cpuSecondsPer1kTokens;
        list.push(budget(`${gateway}: CPU per 1k tokens ≤ 2× ${raw}`, point, `${cpu.toFixed(2)}×`, cpu, 2));
      }
    }
  }
  for (const point of new Set(runs.map((run) => run.point))) {
    for (const [shared, alone] of REDIS_PAIRS) {
      const ours = find(point, shared);
      const base = find(point, alone);
      if (!ours || !base) continue;
      list.push({
        name: `${shared}: zero tokens lost or garbled`,
        point,
        measured: `${ours.tokensLost} lost, ${ours.garbledStreams} garbled, ${ours.errors} failed streams`,
        ratio: Number.NaN,
        met: ours.tokensLost + ours.garbledStreams === 0 && ours.errors === 0,
      });
      const latency = ours.tokenLatencyMs.p99 / base.tokenLatencyMs.p99;
      list.push(
        budget(`${shared}: token p99 ≤ 1.5× ${alone}`, point, `${latency.toFixed(2)}×`, latency, 1.5),
      );
      if (ours.cpuSecondsPer1kTokens !== undefined && base.cpuSecondsPer1kTokens) {
        const cpu = ours.cpuSecondsPer1kTokens / base.cpuSecondsPer1kTokens;
        list.push(
          budget(`${shared}: CPU per 1k tokens ≤ 1.3× ${alone}`, point, `${cpu.toFixed(2)}×`, cpu, 1.3),
        );
      }
    }
  }
  for (const point of new Set(runs.map((run) => run.point))) {
    const cross = find(point, 'gateway-sse+redis-cross');
    const local = find(point, 'gateway-sse+redis');
    if (cross && local) {
      list.push({
        name: 'gateway-sse+redis-cross: added token p99, following from another instance (reported)',
        point,
        measured: `${(cross.tokenLatencyMs.p99 - local.tokenLatencyMs.p99).toFixed(2)} ms (${cross.tokensLost} lost, ${cross.garbledStreams} garbled, ${cross.errors} failed)`,
        ratio: Number.NaN,
        met: cross.tokensLost + cross.garbledStreams === 0 && cross.errors === 0,
      });
    }
  }
  const ttftPoint = '100×50/s';
  const direct = find(ttftPoint, 'direct');
  for (const [gateway] of PAIRS) {
    const ours = find(ttftPoint, gateway);
    if (direct && ours) {
      const p50 = ours.ttftMs.p50 - direct.ttftMs.p50;
      const p99 = ours.ttftMs.p99 - direct.ttftMs.p99;
      list.push(budget(`${gateway}: TTFT overhead p50 ≤ 1 ms`, ttftPoint, `${p50.toFixed(2)} ms`, p50, 1));
      list.push(budget(`${gateway}: TTFT overhead p99 ≤ 5 ms`, ttftPoint, `${p99.toFixed(2)} ms`, p99, 5));
    }
    const memory = memoryPoint ? find(memoryPoint, gateway) : undefined;
    if (memoryPoint && memory) {
      const kb = memory.memoryPerStreamKb ?? Number.NaN;
      list.push(
        budget(`${gateway}: memory per open stream ≤ 50 KB`, memoryPoint, `${kb.toFixed(1)} KB`, kb, 50),
      );
    }
  }
  return list;
}
