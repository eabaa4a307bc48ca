import { ChangeDetectionStrategy, Component, computed, inject, input } from '@angular/core';
import type { RouteMark } from '../run/lane';
import { type InlineMark, Markdown } from './markdown';

const ROUTE_LABELS: Record<RouteMark['reason'], string> = {
  fallback: 'fell back to',
  hedge: 'hedged: answered by',
  continuation: 'continued on',
  handover: 'handed over to',
};

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
  /** (v1.2) Where the stream moved to another deployment: a mark at each, inside the text. */
  readonly routes = input<readonly RouteMark[]>([]);

  protected readonly blocks = computed(() => this.markdown.blocks(this.text(), this.routes().map(routeMark)));
}

/** The mark as HTML: its words escaped, its reason as `data-reason` (the contract's test hook). */
function routeMark(route: RouteMark): InlineMark {
  const words = describeRoute(route);
  return {
    at: route.at,
    html: `<span class="route-mark" data-testid="route" data-reason="${escape(route.reason)}" title="${escape(words)}">${escape(words)}</span>`,
  };
}

export function describeRoute(route: RouteMark): string {
  const why = route.code ? ` (${route.code})` : '';
  return `↪ ${ROUTE_LABELS[route.reason]} ${route.model} · ${route.deployment}${why}`;
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}
