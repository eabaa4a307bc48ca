import { Injectable, inject } from '@angular/core';
import { DomSanitizer, type SafeHtml } from '@angular/platform-browser';
import DOMPurify from 'dompurify';
import { Marked } from 'marked';

const CACHE_LIMIT = 2000;
/** A private-use character standing for a mark in the text while it is rendered, then replaced by the mark. */
const MARK = '\uE000';
const MARKS = /\uE000/g;

/** An element placed at a character offset of the answer (a route mark), as sanitised HTML of our own. */
export interface InlineMark {
  at: number;
  html: string;
}

/**
 * Markdown to sanitised HTML, one top-level block at a time. While a stream grows only its last block changes,
 * so every finished block keeps its rendered HTML (and its DOM) and each frame re-renders one block, not the
 * whole answer: this is what keeps 100+ tokens/s smooth and text selectable while it streams.
 */
@Injectable({ providedIn: 'root' })
export class Markdown {
  private readonly sanitizer = inject(DomSanitizer);
  private readonly marked = new Marked({ gfm: true, breaks: false, async: false });
  private readonly rendered = new Map<string, SafeHtml>();

  blocks(text: string, marks: readonly InlineMark[] = []): SafeHtml[] {
    if (marks.length === 0) {
      if (!text) return [];
      return this.marked.lexer(text).map((token) => this.render(token.raw));
    }
    return this.withMarks(text, marks);
  }

  /**
   * The text with each mark at its offset, inside whatever block it falls in (a paragraph, a list, code): the
   * marks go into the text as a placeholder character, through Markdown and DOMPurify, then become their HTML.
   * Such blocks are few (one per route) and not cached.
   */
  private withMarks(text: string, marks: readonly InlineMark[]): SafeHtml[] {
    const clean = text.replace(MARKS, '');
    // A mark at the start of a line would break the line's Markdown (`## `, `- `): it goes at the end of the line
    // before, and one at the very start goes before the answer, as a block of its own.
    const placed = marks
      .map((mark) => {
        let at = Math.min(Math.max(mark.at, 0), clean.length);
        while (at > 0 && clean[at - 1] === '\n') at--;
        return { at, html: mark.html };
      })
      .sort((a, b) => a.at - b.at);
    const leading = placed.filter((mark) => mark.at === 0);
    const inline = placed.filter((mark) => mark.at > 0);
    let marked = '';
    let from = 0;
    for (const mark of inline) {
      marked += clean.slice(from, mark.at) + MARK;
      from = mark.at;
    }
    marked += clean.slice(from);
    let next = 0;
    const blocks = marked
      ? this.marked.lexer(marked).map((token) => {
          if (!token.raw.includes(MARK)) return this.render(token.raw);
          const html = DOMPurify.sanitize(this.marked.parse(token.raw) as string).replace(
            MARKS,
            () => inline[next++]?.html ?? '',
          );
          return this.sanitizer.bypassSecurityTrustHtml(html);
        })
      : [];
    if (leading.length === 0) return blocks;
    const marksBlock = `<p class="route-marks">${leading.map((mark) => mark.html).join('')}</p>`;
    return [this.sanitizer.bypassSecurityTrustHtml(marksBlock), ...blocks];
  }

  private render(raw: string): SafeHtml {
    const cached = this.rendered.get(raw);
    if (cached) return cached;
    const html = DOMPurify.sanitize(this.marked.parse(raw) as string);
    // DOMPurify has sanitised it already; Angular's own pass would strip harmless markup (classes, tables) again.
    const safe = this.sanitizer.bypassSecurityTrustHtml(html);
    if (this.rendered.size >= CACHE_LIMIT) this.rendered.clear();
    this.rendered.set(raw, safe);
    return safe;
  }
}
