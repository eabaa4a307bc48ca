import { ChangeDetectionStrategy, Component, computed, inject, input } from '@angular/core';
import { Markdown } from './markdown';

/** An assistant answer rendered as Markdown; announced politely to screen readers once it stops growing. */
@Component({
  selector: 'app-answer-pane',
  changeDetection: ChangeDetectionStrategy.OnPush,
  host: {
    class: 'answer markdown',
    role: 'article',
    'aria-live': 'polite',
    '[attr.aria-busy]': 'streaming()',
  },
  template: `
    @for (block of blocks(); track $index) {
      <div class="block" [innerHTML]="block"></div>
    } @empty {
      @if (streaming()) {
        <span class="placeholder">…</span>
      }
    }
  `,
})
export class AnswerPane {
  private readonly markdown = inject(Markdown);
  readonly text = input.required<string>();
  readonly streaming = input(false);

  protected readonly blocks = computed(() => this.markdown.blocks(this.text()));
}
