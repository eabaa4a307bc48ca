import { Injectable, computed, inject, signal } from '@angular/core';
import type { CompletionRequest } from '@app/contracts';
import type { LiveRun } from '../run/live-run';
import { RunLauncher } from '../run/run-launcher';

/** Pause between races, so one race's teardown does not overlap the next one's start. */
const PAUSE_MS = 150;

/** "Run N races": the identical request raced over both transports N times in a row, for the comparison. */
@Injectable({ providedIn: 'root' })
export class RaceSeries {
  private readonly launcher = inject(RunLauncher);
  private readonly state = signal<{ total: number; done: number; run: LiveRun | null }>({
    total: 0,
    done: 0,
    run: null,
  });
  private stopRequested = false;

  readonly progress = this.state.asReadonly();
  readonly running = computed(() => this.state().run !== null);

  async run(count: number, request: CompletionRequest): Promise<void> {
    if (this.running() || count < 1) return;
    this.stopRequested = false;
    this.state.set({ total: count, done: 0, run: null });
    for (let race = 0; race < count && !this.stopRequested; race++) {
      const run = this.launcher.launch('race', request);
      this.state.update((current) => ({ ...current, run }));
      await run.finished;
      this.state.update((current) => ({ ...current, done: current.done + 1 }));
      await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
    }
    this.state.update((current) => ({ ...current, run: null }));
  }

  async stop(): Promise<void> {
    this.stopRequested = true;
    await this.state().run?.stop();
  }
}
