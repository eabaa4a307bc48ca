import { Injectable, computed, effect, inject, signal, untracked } from '@angular/core';
import type { ChatMessage, CompletionRequest } from '@app/contracts';
import { thinkingTime } from '../metrics/run-metrics';
import type { Lane } from '../run/lane';
import type { LiveRun } from '../run/live-run';
import { RunLauncher } from '../run/run-launcher';
import { Settings } from '../settings/settings';
import { ConversationStorage, type PastExchange, type SavedConversation } from './conversation-storage';

/** A prompt and the run that answered it (the latest run, after a regenerate or a retry). */
export interface Exchange {
  id: number;
  prompt: string;
  run: LiveRun;
}

/**
 * The conversation: its exchanges, and the request each new one sends (the whole history, every time). It is
 * kept in sessionStorage, so a reload restores it and resumes the run it cut off.
 */
@Injectable({ providedIn: 'root' })
export class ChatSession {
  private readonly launcher = inject(RunLauncher);
  private readonly settings = inject(Settings);
  private readonly storage = inject(ConversationStorage);
  /** The exchanges restored from before a reload: their runs are gone, their prompts and replies are not. */
  private readonly restoredList = signal<readonly (PastExchange & { id: number })[]>([]);
  private readonly exchangeList = signal<readonly Exchange[]>([]);
  private nextId = 1;

  readonly current = computed(() => this.exchangeList().at(-1) ?? null);
  readonly isEmpty = computed(() => this.restoredList().length === 0 && this.exchangeList().length === 0);
  /** The exchanges before the current one, with the reply each added to the history. */
  readonly earlier = computed(() => [
    ...this.restoredList(),
    ...this.exchangeList()
      .slice(0, -1)
      .map(({ id, prompt, run }) => ({ id, ...pastExchange(prompt, run.lanes()) })),
  ]);
  readonly running = computed(() => {
    const run = this.current()?.run;
    return run ? !['done', 'cancelled', 'error'].includes(run.status()) : false;
  });

  /** The current run's resume tokens, compared by value: they arrive once per lane, not with every token. */
  private readonly resumeTokens = computed(
    () =>
      this.current()
        ?.run.lanes()
        .map((lane) => lane.resumeToken) ?? [],
    { equal: (a, b) => a.length === b.length && a.every((token, i) => token === b[i]) },
  );

  /**
   * What a reload restores. It is recomputed when a run starts or ends, or a resume token arrives, not with
   * every token: the lanes are read untracked (a finished run's lanes no longer change).
   */
  private readonly saved = computed((): SavedConversation | null => {
    const restored = this.restoredList();
    const exchanges = this.exchangeList();
    this.running();
    this.resumeTokens();
    return untracked(() => savedConversation(restored, exchanges));
  });

  constructor() {
    this.restore(this.storage.read());
    effect(() => this.storage.write(this.saved()));
  }

  send(prompt: string): boolean {
    const text = prompt.trim();
    if (!text || this.running()) return false;
    const run = this.launcher.launch(
      this.settings.mode(),
      this.request(this.earlier(), this.current(), text),
    );
    this.exchangeList.update((exchanges) => [...exchanges, { id: this.nextId++, prompt: text, run }]);
    return true;
  }

  /** Asks again for the last prompt, with the same history: after an error this is the retry. */
  regenerate(): void {
    const last = this.current();
    if (!last || this.running()) return;
    const run = this.launcher.launch(this.settings.mode(), this.request(this.earlier(), null, last.prompt));
    this.exchangeList.update((exchanges) => [...exchanges.slice(0, -1), { ...last, run }]);
  }

  stop(): Promise<void> {
    return this.current()?.run.stop() ?? Promise.resolve();
  }

  clear(): void {
    this.current()?.run.dispose();
    this.restoredList.set([]);
    this.exchangeList.set([]);
  }

  /** The conversation from before a reload, and its unfinished run resumed from the start of its streams. */
  private restore(saved: SavedConversation | null): void {
    if (!saved) return;
    this.restoredList.set(saved.exchanges.map((exchange) => ({ id: this.nextId++, ...exchange })));
    const { pending } = saved;
    if (pending) {
      const run = this.launcher.resume(pending.mode, pending.request, pending.lanes);
      this.exchangeList.set([{ id: this.nextId++, prompt: pending.prompt, run }]);
    }
  }

  private request(
    earlier: readonly PastExchange[],
    current: Exchange | null,
    prompt: string,
  ): CompletionRequest {
    const history = current
      ? [...earlier, { prompt: current.prompt, reply: replyOf(current.run.lanes()) }]
      : earlier;
    const messages: ChatMessage[] = history.flatMap(({ prompt: content, reply }) =>
      reply
        ? [
            { role: 'user', content },
            { role: 'assistant', content: reply },
          ]
        : [{ role: 'user', content }],
    );
    messages.push({ role: 'user', content: prompt });
    return { messages, ...this.settings.parameters() };
  }
}

/**
 * The finished exchanges and, while the current run streams, what resuming it needs; null for an empty chat
 * (so New chat removes the entry).
 */
export function savedConversation(
  restored: readonly PastExchange[],
  exchanges: readonly Exchange[],
): SavedConversation | null {
  if (restored.length === 0 && exchanges.length === 0) return null;
  const last = exchanges.at(-1);
  const current = last && !last.run.isFinished() ? last : null;
  const finished = current ? exchanges.slice(0, -1) : exchanges;
  return {
    exchanges: [
      ...restored.map(pastOnly),
      ...finished.map(({ prompt, run }) => pastExchange(prompt, run.lanes())),
    ],
    pending: current && {
      prompt: current.prompt,
      mode: current.run.mode,
      request: current.run.request,
      lanes: current.run.lanes().map(({ transport, streamId, resumeToken }) => ({
        transport,
        streamId,
        resumeToken,
      })),
    },
  };
}

/** The answer that joins the history: the first lane that completed, else the longest partial one. */
export function replyOf(lanes: readonly Lane[]): string {
  return answeringLane(lanes)?.text ?? '';
}

/** An exchange as the log keeps it once its run is over: the reply, with the thinking that led to it. */
export function pastExchange(prompt: string, lanes: readonly Lane[]): PastExchange {
  const lane = answeringLane(lanes);
  if (!lane?.reasoning) return { prompt, reply: lane?.text ?? '' };
  return { prompt, reply: lane.text, reasoning: lane.reasoning, thoughtMs: thoughtMs(lane) };
}

/** A restored exchange without what only the page adds to it (its id). */
function pastOnly({ prompt, reply, reasoning, thoughtMs: ms }: PastExchange): PastExchange {
  return reasoning === undefined ? { prompt, reply } : { prompt, reply, reasoning, thoughtMs: ms };
}

/** How long a lane's model thought: the server's measure once the stream is done, the client's until then. */
export function thoughtMs(lane: Lane): number | null {
  return lane.serverTiming?.reasoningMs ?? thinkingTime(lane);
}

function answeringLane(lanes: readonly Lane[]): Lane | undefined {
  return (
    lanes.find((lane) => lane.status === 'done') ??
    lanes.reduce<Lane | undefined>(
      (longest, lane) => (longest === undefined || lane.text.length > longest.text.length ? lane : longest),
      undefined,
    )
  );
}
