import { computed, signal } from '@angular/core';
import type { CompletionRequest } from '@app/contracts';
import type { Subscription } from 'rxjs';
import type { CompletionTransport, TransportName } from '../transport/completion-transport';
import { TransportError } from '../transport/transport-error';
import {
  abandonLane,
  applyEvents,
  failLane,
  isFinished,
  type Lane,
  type LaneError,
  newLane,
  type ReceivedEvent,
  type RunStatus,
} from './lane';

export type RunMode = TransportName | 'race';

export interface LiveRunDependencies {
  now: () => number;
  /** Calls `flush` once, before the next paint (requestAnimationFrame in the browser). */
  scheduleFrame: (flush: () => void) => void;
  newStreamId: () => string;
}

/** One lane of a run started before a page reload, as kept in sessionStorage. */
export interface ResumedLane {
  transport: TransportName;
  streamId: string;
  resumeToken: string | null;
}

/** How long Stop waits for the server's `done (cancelled)` before it stops listening anyway. */
const CANCEL_GRACE_MS = 3000;

/** What a resumed lane shows when the server no longer has its stream: not a failure of anything the user did. */
export const RESUME_EXPIRED: LaneError = {
  code: 'expired',
  message: 'The answer could not be recovered after the reload: it expired on the server.',
  retryable: false,
};

/**
 * One request sent over one transport, or over both at once (a race). Events are buffered as they arrive, with
 * their arrival time, and folded into the lanes once per animation frame, so that a fast stream costs one
 * render per frame, not one per token. A run started before a page reload is built with its lanes
 * (`resumeFrom`): it resumes their streams from the start instead of sending the request again.
 */
export class LiveRun {
  readonly lanes;
  readonly status = computed(() => overallStatus(this.lanes().map((lane) => lane.status)));
  readonly finished: Promise<readonly Lane[]>;

  private readonly laneState;
  private readonly pending: ReceivedEvent[][];
  private readonly subscriptions: (Subscription | null)[];
  private frameScheduled = false;
  private started = false;
  private resolveFinished!: (lanes: readonly Lane[]) => void;

  constructor(
    readonly mode: RunMode,
    readonly request: CompletionRequest,
    private readonly transports: readonly CompletionTransport[],
    private readonly dependencies: LiveRunDependencies,
    resumeFrom: readonly ResumedLane[] | null = null,
  ) {
    const sentAt = dependencies.now();
    this.laneState = signal<readonly Lane[]>(
      transports.map((transport, index) => {
        const resumed = resumeFrom?.[index];
        return resumed
          ? {
              ...newLane(transport.name, resumed.streamId, sentAt),
              resumed: true,
              resumeToken: resumed.resumeToken,
            }
          : newLane(transport.name, dependencies.newStreamId(), sentAt);
      }),
    );
    this.lanes = this.laneState.asReadonly();
    this.pending = transports.map(() => []);
    this.subscriptions = transports.map(() => null);
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
  }

  /** Sends the request (or, for a resumed run, asks for the replay) on every lane at nearly the same moment. */
  start(): void {
    if (this.started || this.isFinished()) return;
    this.started = true;
    const sentAt = this.dependencies.now();
    this.laneState.update((lanes) => lanes.map((lane) => ({ ...lane, sentAt })));
    this.transports.forEach((transport, index) => {
      const { streamId, resumed, resumeToken } = this.laneState()[index];
      // From seq -1: the whole answer is replayed, so the lane is rebuilt from nothing, as it was sent.
      const events = resumed
        ? transport.resume({ streamId, lastSeq: -1, resumeToken })
        : transport.stream(
            { ...this.request, streamId },
            {
              resumeToken: (token) => this.updateLane(index, (lane) => ({ ...lane, resumeToken: token })),
              connection: (connection) => this.updateLane(index, (lane) => ({ ...lane, connection })),
            },
          );
      this.subscriptions[index] = events.subscribe({
        next: (event) => {
          this.pending[index].push({ event, arrivedAt: this.dependencies.now() });
          if (event.type === 'done' || event.type === 'error') this.flush();
          else this.scheduleFlush();
        },
        error: (error: unknown) => {
          this.flush();
          const failure = error instanceof TransportError ? error : TransportError.network(error);
          const expired = resumed && failure.code === 'not_found';
          this.updateLane(index, (lane) =>
            failLane(
              lane,
              expired
                ? RESUME_EXPIRED
                : {
                    code: failure.code,
                    message: failure.message,
                    retryable: failure.retryable,
                    retryAfterMs: failure.retryAfterMs,
                  },
              this.dependencies.now(),
            ),
          );
        },
      });
    });
  }

  /**
   * Stop: an explicit cancel on every unfinished lane, so the server aborts the upstream request and ends the
   * stream with `done (cancelled)`. A lane that does not say so in time is abandoned.
   */
  async stop(): Promise<void> {
    if (!this.started) {
      this.laneState.update((lanes) => lanes.map((lane) => abandonLane(lane, this.dependencies.now())));
      this.settle();
      return;
    }
    await Promise.all(
      this.laneState().map(async (lane, index) => {
        if (isFinished(lane.status)) return;
        try {
          await this.transports[index].cancel(lane.streamId);
        } catch {
          // Unreachable server or refused cancel: abandoning the lane below still ends it for us.
        }
      }),
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.finished,
      new Promise((resolve) => (timer = setTimeout(resolve, CANCEL_GRACE_MS))),
    ]);
    clearTimeout(timer);
    this.dispose();
  }

  /** Stops listening at once (no cancel): for a page or a conversation going away. */
  dispose(): void {
    this.flush();
    this.laneState.update((lanes) => lanes.map((lane) => abandonLane(lane, this.dependencies.now())));
    this.settle();
  }

  isFinished(): boolean {
    return this.laneState().every((lane) => isFinished(lane.status));
  }

  private scheduleFlush(): void {
    if (this.frameScheduled) return;
    this.frameScheduled = true;
    this.dependencies.scheduleFrame(() => this.flush());
  }

  private flush(): void {
    this.frameScheduled = false;
    if (this.pending.every((batch) => batch.length === 0)) return;
    const batches = this.pending.map((batch) => batch.splice(0));
    this.laneState.update((lanes) => lanes.map((lane, index) => applyEvents(lane, batches[index])));
    this.settle();
  }

  private updateLane(index: number, change: (lane: Lane) => Lane): void {
    this.laneState.update((lanes) => lanes.map((lane, i) => (i === index ? change(lane) : lane)));
    this.settle();
  }

  private settle(): void {
    if (!this.isFinished()) return;
    this.subscriptions.forEach((subscription) => subscription?.unsubscribe());
    this.resolveFinished(this.laneState());
  }
}

/** A race is as far along as its most advanced running lane (what the user sees); once over, an error or a cancel colours it. */
export function overallStatus(statuses: readonly RunStatus[]): RunStatus {
  if (statuses.every(isFinished)) {
    if (statuses.includes('error')) return 'error';
    if (statuses.includes('cancelled')) return 'cancelled';
    return 'done';
  }
  const active = statuses.filter((status) => !isFinished(status));
  for (const status of ['streaming', 'waiting', 'connecting'] as const) {
    if (active.includes(status)) return status;
  }
  return 'connecting';
}
