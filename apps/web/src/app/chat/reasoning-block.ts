import { ChangeDetectionStrategy, Component, computed, input } from '@angular/core';

/**
 * What a reasoning model thought, above its answer: open and growing while it thinks, collapsed to
 * "Thought for 4.2 s" once the answer starts (a `<details>`, so the reader can open it again).
 */
@Component({
  selector: 'app-reasoning-block',
  changeDetection: ChangeDetectionStrategy.OnPush,
  template: `
    <details
      class="reasoning"
      data-testid="reasoning"
      [attr.data-transport]="transport()"
      [open]="!answering()"
    >
      <summary data-testid="reasoning-summary">{{ summary() }}</summary>
      <div class="reasoning-text" aria-live="off">{{ text() }}</div>
    </details>
  `,
  styles: `
    .reasoning {
      margin: 0 0 0.5rem;
      padding: 0.25rem 0.5rem;
      border-left: 3px solid var(--border, #8884);
      color: var(--muted, #666);
      font-size: 0.9em;
    }
    .reasoning summary {
      cursor: pointer;
    }
    .reasoning-text {
      white-space: pre-wrap;
      max-height: 16rem;
      overflow-y: auto;
    }
  `,
})
export class ReasoningBlock {
  readonly text = input.required<string>();
  /** Whether the answer has started (the thinking is over). */
  readonly answering = input(false);
  /** How long the model thought, once known. */
  readonly thoughtMs = input<number | null>(null);
  readonly transport = input<string | null>(null);

  protected readonly summary = computed(() => {
    const ms = this.thoughtMs();
    return this.answering() && ms !== null ? `Thought for ${(ms / 1000).toFixed(1)} s` : 'Thinking…';
  });
}
