/**
 * One timer for every open stream instead of one `setTimeout` chain per stream.
 *
 * Why: at benchmark load (1,000 streams x 50 tokens/s) a chain per stream creates and files 50,000 timers a
 * second. Here tasks wait in a binary min-heap keyed on their due time and a single timer is armed for the
 * earliest; when it fires, every task due within `COALESCE_MS` runs in the same turn, so the timer fires at most
 * about once per millisecond however many streams are open, and each stream's writes are batched with its
 * neighbours'. Tasks already due (the `instant` profile) run on `setImmediate`, one step per event-loop turn,
 * so a fast stream never starves the sockets it shares the process with. Measured figures: see the lib README.
 */
export interface ScheduledTask {
  /** When the task wants to run, on the `performance.now()` clock. Set by the scheduler. */
  due: number;
  /** Position in the heap, -1 when not scheduled. Owned by the scheduler. */
  heapIndex: number;
  run(now: number): void;
}

/** Running a task up to this much early costs nothing visible and lets neighbours share one timer firing. */
const COALESCE_MS = 1;

export class EmissionScheduler {
  private readonly heap: ScheduledTask[] = [];
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private armedFor = Number.POSITIVE_INFINITY;

  get size(): number {
    return this.heap.length;
  }

  schedule(task: ScheduledTask, due: number): void {
    if (task.heapIndex >= 0) this.remove(task);
    task.due = due;
    task.heapIndex = this.heap.length;
    this.heap.push(task);
    this.siftUp(task.heapIndex);
    if (due < this.armedFor) this.arm();
  }

  cancel(task: ScheduledTask): void {
    if (task.heapIndex >= 0) this.remove(task);
  }

  /** Drops every task: what is still scheduled when the server closes will never run. */
  clear(): void {
    for (const task of this.heap) task.heapIndex = -1;
    this.heap.length = 0;
    this.disarm();
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    this.immediate = undefined;
    this.armedFor = Number.POSITIVE_INFINITY;
    const now = performance.now();
    // Collect first, then run: a task that reschedules itself for `now` waits for the next turn instead of
    // looping here forever.
    const due: ScheduledTask[] = [];
    while (this.heap.length > 0 && this.heap[0].due <= now + COALESCE_MS) {
      const task = this.heap[0];
      this.remove(task);
      due.push(task);
    }
    for (const task of due) task.run(now);
    if (this.heap.length > 0 && this.timer === undefined && this.immediate === undefined) this.arm();
  };

  private arm(): void {
    this.disarm();
    if (this.heap.length === 0) return;
    const next = this.heap[0].due;
    this.armedFor = next;
    const delay = next - performance.now();
    if (delay <= COALESCE_MS) this.immediate = setImmediate(this.tick);
    else this.timer = setTimeout(this.tick, Math.floor(delay));
  }

  private disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    this.armedFor = Number.POSITIVE_INFINITY;
  }

  private remove(task: ScheduledTask): void {
    const index = task.heapIndex;
    const last = this.heap.pop() as ScheduledTask;
    task.heapIndex = -1;
    if (last === task) return;
    this.heap[index] = last;
    last.heapIndex = index;
    this.siftDown(index);
    this.siftUp(last.heapIndex);
  }

  private siftUp(index: number): void {
    const heap = this.heap;
    const task = heap[index];
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex];
      if (parent.due <= task.due) break;
      heap[index] = parent;
      parent.heapIndex = index;
      index = parentIndex;
    }
    heap[index] = task;
    task.heapIndex = index;
  }

  private siftDown(index: number): void {
    const heap = this.heap;
    const task = heap[index];
    const length = heap.length;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      const child = right < length && heap[right].due < heap[left].due ? right : left;
      if (heap[child].due >= task.due) break;
      heap[index] = heap[child];
      heap[index].heapIndex = index;
      index = child;
    }
    heap[index] = task;
    task.heapIndex = index;
  }
}
