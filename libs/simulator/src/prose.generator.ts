import { between, pick, type Random } from './seeded.random';

/**
 * Plausible Markdown about the thing this product does, built from a seeded PRNG. It is meant to look like a
 * model's answer in the demo and, more importantly, to exercise the client: headings, lists, `inline code`,
 * fenced blocks, blank lines, and now and then characters that take several UTF-8 bytes or several tokens.
 */

const SUBJECTS = [
  'The gateway',
  'Each stream',
  'A slow client',
  'The browser',
  'Every token',
  'The upstream model',
  'Backpressure',
  'A cancelled request',
  'The event loop',
  'Server-Sent Events',
  'The Socket.IO transport',
  'A reconnecting client',
  'The scheduler',
  'This approach',
];
const VERBS = [
  'forwards',
  'buffers',
  'measures',
  'keeps track of',
  'releases',
  'throttles',
  'replays',
  'serializes',
  'acknowledges',
  'frees',
  'reports',
  'orders',
];
const OBJECTS = [
  'each chunk as soon as it arrives',
  'the time to first token',
  'the open connections',
  'a bounded queue of events',
  'the sequence number of every event',
  'partial UTF-8 sequences',
  'the usage totals at the end',
  'the retry delay the server suggests',
  'only what the client has not seen',
  'the timers it no longer needs',
  'one frame per token',
  'latency percentiles under load',
];
const CLAUSES = [
  'so the user sees text almost immediately',
  'without holding the whole answer in memory',
  'which keeps the tail latency predictable',
  'because the network is never perfectly smooth',
  'even when thousands of streams are open',
  'before the client gives up',
  'as long as the socket stays writable',
  'and nothing is written after the connection closes',
];
const FLOURISHES = [
  'In short, it is a “write once, read anywhere” protocol.',
  'The result feels natural — almost like a café conversation.',
  'Think of it as a naïve pipe with a few sharp edges. ✨',
  'In Japanese the word for streaming is 配信, and it fits well.',
  'Latency is the résumé of every design decision. 🚀',
  'The Chinese term 流式 says the same thing in two characters.',
  'Measure first; the numbers rarely lie ≈ never.',
  'That is the whole trick: small pieces, sent early. 👍',
];
const HEADINGS = [
  'How streaming works',
  'Why tokens arrive in bursts',
  'Handling cancellation',
  'Measuring latency',
  'Choosing a transport',
  'Notes on backpressure',
];
const IDENTIFIERS = [
  'flush()',
  'res.write',
  'AbortController',
  'ttftMs',
  'text/event-stream',
  'retry-after',
  'seq',
];
const CODE_SAMPLES = [
  '```ts\nconst controller = new AbortController();\nconst response = await fetch(url, { signal: controller.signal });\n```',
  '```ts\nfor await (const chunk of stream) {\n  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");\n}\n```',
  '```bash\ncurl -N http://127.0.0.1:4010/v1/chat/completions \\\n  -H "content-type: application/json"\n```',
  '```json\n{ "type": "token", "seq": 7, "text": "héllo" }\n```',
];

export class ProseGenerator {
  private blocks = 0;
  private previous: 'paragraph' | 'list' | 'code' = 'paragraph';

  constructor(private readonly random: Random) {}

  /** The next Markdown block, without the blank line that separates it from the previous one. */
  nextBlock(): string {
    const index = this.blocks++;
    const previous = this.previous;
    this.previous = 'paragraph';
    if (index === 0 && this.random() < 0.6) return `## ${pick(this.random, HEADINGS)}`;
    // Only after a paragraph: two lists or two code blocks in a row would not read like an answer.
    if (previous !== 'paragraph') return this.paragraph();
    const roll = this.random();
    this.previous = index > 1 && roll < 0.15 ? 'code' : index > 0 && roll < 0.4 ? 'list' : 'paragraph';
    if (this.previous === 'code') return pick(this.random, CODE_SAMPLES);
    if (this.previous === 'list') return this.list();
    return this.paragraph();
  }

  private paragraph(): string {
    const sentences: string[] = [];
    const count = between(this.random, 2, 4);
    for (let i = 0; i < count; i++) sentences.push(this.sentence());
    if (this.random() < 0.3) sentences.push(pick(this.random, FLOURISHES));
    return sentences.join(' ');
  }

  private list(): string {
    const items: string[] = [];
    const count = between(this.random, 2, 4);
    for (let i = 0; i < count; i++) items.push(`- ${this.sentence()}`);
    return items.join('\n');
  }

  private sentence(): string {
    let object = pick(this.random, OBJECTS);
    if (this.random() < 0.2) object += ` through \`${pick(this.random, IDENTIFIERS)}\``;
    const clause = this.random() < 0.5 ? `, ${pick(this.random, CLAUSES)}` : '';
    return `${pick(this.random, SUBJECTS)} ${pick(this.random, VERBS)} ${object}${clause}.`;
  }
}
