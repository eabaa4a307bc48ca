import { Injectable, inject } from '@angular/core';
import type { CompletionRequest } from '@app/contracts';
import { ClockSync } from '../clock/clock-sync';
import { epochNow } from '../clock/epoch-now';
import { RunHistory } from '../history/run-history';
import { toRunRecord } from '../history/run-record';
import { computeRunMetrics } from '../metrics/run-metrics';
import { TRANSPORT_NAMES } from '../transport/completion-transport';
import { COMPLETION_TRANSPORTS } from '../transport/transports';
import { LiveRun, type ResumedLane, type RunMode } from './live-run';
import { newStreamId } from './stream-id';

/**
 * Starts runs over the chosen transport(s), resumes a run cut off by a page reload, and files every finished
 * stream in the history.
 */
@Injectable({ providedIn: 'root' })
export class RunLauncher {
  private readonly transports = inject(COMPLETION_TRANSPORTS);
  private readonly clock = inject(ClockSync);
  private readonly history = inject(RunHistory);
  private readonly runDependencies = { now: epochNow, scheduleFrame, newStreamId };

  launch(mode: RunMode, request: CompletionRequest): LiveRun {
    const names = mode === 'race' ? TRANSPORT_NAMES : [mode];
    return this.begin(
      new LiveRun(
        mode,
        request,
        names.map((name) => this.transports[name]),
        this.runDependencies,
      ),
    );
  }

  /** Picks up a run started before a page reload: its lanes' streams are replayed from the start. */
  resume(mode: RunMode, request: CompletionRequest, lanes: readonly ResumedLane[]): LiveRun {
    return this.begin(
      new LiveRun(
        mode,
        request,
        lanes.map((lane) => this.transports[lane.transport]),
        this.runDependencies,
        lanes,
      ),
    );
  }

  private begin(run: LiveRun): LiveRun {
    const { mode, request } = run;
    // A fresh clock estimate first (a no-op when under a minute old), so the delays of this run are corrected.
    void this.clock.ensureFresh().finally(() => run.start());
    void run.finished.then((lanes) => {
      const clock = this.clock.offset();
      const raceId = mode === 'race' ? lanes[0].streamId : null;
      const prompt =
        [...request.messages].reverse().find((message) => message.role === 'user')?.content ?? '';
      const metrics = lanes.map((lane) => computeRunMetrics(lane, clock));
      this.history.add(
        ...lanes.map((lane, i) =>
          toRunRecord(lane, metrics[i], { raceId, prompt, model: request.model ?? null }),
        ),
      );
      // A delay no offset within the estimate's bounds explains: a clock moved; measure it again.
      if (metrics.some((laneMetrics) => laneMetrics.delaysBelowClockBound > 0)) void this.clock.sync();
    });
    return run;
  }
}

/** One flush per frame; a hidden tab gets no frames, so it falls back to a timer to keep the state current. */
function scheduleFrame(flush: () => void): void {
  if (document.hidden) setTimeout(flush, 50);
  else requestAnimationFrame(() => flush());
}
