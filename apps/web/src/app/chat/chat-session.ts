import { Injectable, computed, inject, signal } from '@angular/core';
import type { ChatMessage, CompletionRequest } from '@app/contracts';
import type { Lane } from '../run/lane';
import type { LiveRun } from '../run/live-run';
import { RunLauncher } from '../run/run-launcher';
import { Settings } from '../settings/settings';

/** A prompt and the run that answered it (the latest run, after a regenerate or a retry). */
export interface Exchange {
  id: number;
  prompt: string;
  run: LiveRun;
}

/** The conversation: its exchanges, and the request each new one sends (the whole history, every time). */
@Injectable({ providedIn: 'root' })
export class ChatSession {
  private readonly launcher = inject(RunLauncher);
  private readonly settings = inject(Settings);
  private readonly exchangeList = signal<readonly Exchange[]>([]);
  private nextId = 1;

  readonly exchanges = this.exchangeList.asReadonly();
  readonly current = computed(() => this.exchangeList().at(-1) ?? null);
  /** The exchanges before the current one, with the reply each added to the history. */
  readonly earlier = computed(() =>
    this.exchangeList()
      .slice(0, -1)
      .map(({ id, prompt, run }) => ({ id, prompt, reply: replyOf(run.lanes()) })),
  );
  readonly running = computed(() => {
    const run = this.current()?.run;
    return run ? !['done', 'cancelled', 'error'].includes(run.status()) : false;
  });

  send(prompt: string): boolean {
    const text = prompt.trim();
    if (!text || this.running()) return false;
    const history = this.exchangeList();
    const run = this.launcher.launch(this.settings.mode(), this.request(history, text));
    this.exchangeList.set([...history, { id: this.nextId++, prompt: text, run }]);
    return true;
  }

  /** Asks again for the last prompt, with the same history: after an error this is the retry. */
  regenerate(): void {
    const last = this.current();
    if (!last || this.running()) return;
    const history = this.exchangeList().slice(0, -1);
    const run = this.launcher.launch(this.settings.mode(), this.request(history, last.prompt));
    this.exchangeList.set([...history, { ...last, run }]);
  }

  stop(): Promise<void> {
    return this.current()?.run.stop() ?? Promise.resolve();
  }

  clear(): void {
    this.current()?.run.dispose();
    this.exchangeList.set([]);
  }

  private request(history: readonly Exchange[], prompt: string): CompletionRequest {
    const messages: ChatMessage[] = history.flatMap(({ prompt: content, run }) => {
      const reply = replyOf(run.lanes());
      return reply
        ? [
            { role: 'user', content },
            { role: 'assistant', content: reply },
          ]
        : [{ role: 'user', content }];
    });
    messages.push({ role: 'user', content: prompt });
    return { messages, ...this.settings.parameters() };
  }
}

/** The answer that joins the history: the first lane that completed, else the longest partial one. */
export function replyOf(lanes: readonly Lane[]): string {
  const completed = lanes.find((lane) => lane.status === 'done');
  if (completed) return completed.text;
  return lanes.reduce((longest, lane) => (lane.text.length > longest.length ? lane.text : longest), '');
}
