import type { ServerResponse } from 'node:http';
import type { EmissionScheduler, ScheduledTask } from './emission.scheduler';
import type { LatencyProfile } from './latency.profiles';
import { ChunkFormat, chatCompletion, type FinishReason, type Usage } from './openai.wire';
import type { Random } from './seeded.random';
import type { MidStreamFault, ReasoningStyle } from './sim-directive.parser';
import type { DeploymentRequestRecord } from './simulator.deployment';
import type { TokenPiece } from './token.splitter';

/** How a run ended: `faulted` is a drop or malformed stream the simulator caused on purpose. */
export type RunOutcome = 'completed' | 'aborted' | 'faulted';

/**
 * A fault after some content: after `after` content deltas, or, with `afterBytes`, once that many UTF-8 bytes of
 * content are out (the last delta cut inside its token, at a character boundary). `end_without_done` ends the
 * response without a finish reason and without `[DONE]`.
 */
export interface RunFault {
  kind: MidStreamFault | 'end_without_done';
  after: number;
  afterBytes?: number;
}

export interface RunPlan {
  id: string;
  created: number;
  model: string;
  stream: boolean;
  includeUsage: boolean;
  /** False for a deployment that never reports usage, not even in a non-streamed body. */
  reportUsage: boolean;
  emitTimestamps: boolean;
  pieces: readonly TokenPiece[];
  /** Why the stream ends once every piece is sent: `length` when max_tokens cut the text. */
  finishReason: 'stop' | 'length';
  promptTokens: number;
  profile: LatencyProfile;
  /** Draws the inter-token jitter; seeded, so a seed replays the same schedule. */
  random: Random;
  fault?: RunFault;
  /** A reasoning model's thinking, streamed before the answer in the given style. */
  reasoning?: { style: Exclude<ReasoningStyle, 'none'>; pieces: readonly TokenPiece[] };
  /** A named deployment's record of this request, kept up to date as it goes. */
  record?: DeploymentRequestRecord;
}

/** What a `think`-style model writes around its reasoning, in the content itself. */
export const THINK_OPEN = '<think>\n';
export const THINK_CLOSE = '\n</think>\n\n';

const MALFORMED_FRAME = 'data: {not json\n\n';

/**
 * One response in progress, stepped by the shared scheduler: each step sends one content delta (a stream) or,
 * for a non-streaming request, the whole answer once the time to generate it has passed.
 */
export class CompletionRun implements ScheduledTask {
  due = 0;
  heapIndex = -1;
  private emitted = 0;
  private reasoned = 0;
  private completionTokens = 0;
  private reasoningTokens = 0;
  private roleSent = false;
  /** UTF-8 bytes of content sent; counted only for an `afterBytes` fault. */
  private contentBytes = 0;
  private outcome: RunOutcome | undefined;
  private readonly format: ChunkFormat;

  constructor(
    private readonly plan: RunPlan,
    private readonly response: ServerResponse,
    private readonly scheduler: EmissionScheduler,
    private readonly onEnd: (outcome: RunOutcome) => void,
  ) {
    this.format = new ChunkFormat(plan.id, plan.created, plan.model, plan.includeUsage);
  }

  start(): void {
    this.response.on('close', this.onClose);
    const firstTokenAt = performance.now() + this.plan.profile.ttftMs;
    if (this.plan.stream) {
      if (this.plan.record) this.plan.record.status = 200;
      this.response.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
      });
      // Headers go out now, like OpenAI's: the client learns the request was accepted before the first token.
      this.response.flushHeaders();
      this.scheduler.schedule(this, firstTokenAt);
      return;
    }
    const generated = this.plan.fault ? Math.min(this.plan.fault.after, this.plan.pieces.length) : Infinity;
    let lastTokenAt = firstTokenAt;
    const thinking = this.plan.reasoning?.pieces.length ?? 0;
    for (let i = 1; i < thinking + Math.min(generated, this.plan.pieces.length); i++)
      lastTokenAt += this.nextGap();
    this.scheduler.schedule(this, lastTokenAt);
  }

  run(): void {
    if (this.outcome !== undefined) return;
    if (this.response.destroyed) {
      this.onClose();
      return;
    }
    if (this.plan.stream) this.step();
    else this.respondAtOnce();
  }

  private step(): void {
    const { pieces, fault, reasoning } = this.plan;
    let frames = '';
    if (!this.roleSent) {
      this.roleSent = true;
      frames += this.format.role();
    }
    if (reasoning && this.reasoned < reasoning.pieces.length) {
      const first = this.reasoned === 0;
      this.response.write(
        frames + this.reasoningFrame(reasoning.style, reasoning.pieces[this.reasoned++], first),
      );
      this.scheduler.schedule(this, this.due + this.nextGap());
      return;
    }
    if (reasoning?.style === 'think' && this.emitted === 0 && this.reasoned === reasoning.pieces.length) {
      // The closing tag travels with the first answer delta, as one more content delta before it.
      this.reasoned++;
      frames += this.format.content(JSON.stringify(THINK_CLOSE));
    }
    if (fault && (this.emitted >= fault.after || this.emitted >= pieces.length)) {
      this.streamFault(fault.kind, frames);
      return;
    }
    if (fault?.afterBytes !== undefined) {
      const piece = pieces[this.emitted];
      const room = fault.afterBytes - this.contentBytes;
      const bytes = Buffer.byteLength(piece.text);
      if (bytes > room) {
        const head = utf8Head(piece.text, room);
        if (head !== '')
          frames += this.format.content(
            this.contentJson({ text: head, json: JSON.stringify(head), tokens: 1 }),
          );
        this.streamFault(fault.kind, frames);
        return;
      }
      this.contentBytes += bytes;
    }
    if (this.emitted < pieces.length) frames += this.format.content(this.contentJson(pieces[this.emitted++]));
    if (this.emitted >= pieces.length && !fault) {
      this.finish(frames + this.format.end(this.plan.finishReason, this.usage()), 'completed');
      return;
    }
    this.response.write(frames);
    this.scheduler.schedule(this, this.due + this.nextGap());
  }

  private streamFault(kind: RunFault['kind'], frames: string): void {
    switch (kind) {
      case 'end_without_done':
        this.finish(frames, 'faulted');
        return;
      case 'content_filter':
        this.finish(frames + this.format.end('content_filter', this.usage()), 'completed');
        return;
      case 'malformed':
        this.finish(frames + MALFORMED_FRAME, 'faulted');
        return;
      case 'drop':
        this.drop(frames);
        return;
      case 'stall':
        // Nothing more is sent and nothing is scheduled: the run stays open until the client goes away.
        if (frames !== '') this.response.write(frames);
        return;
    }
  }

  private reasoningFrame(style: Exclude<ReasoningStyle, 'none'>, piece: TokenPiece, first: boolean): string {
    this.completionTokens += piece.tokens;
    this.reasoningTokens += piece.tokens;
    const json = this.plan.emitTimestamps ? JSON.stringify(timestamped(piece.text)) : piece.json;
    switch (style) {
      case 'reasoning_content':
        return this.format.reasoningContent(json);
      case 'reasoning':
        return this.format.reasoning(json);
      case 'think':
        return (first ? this.format.content(JSON.stringify(THINK_OPEN)) : '') + this.format.content(json);
    }
  }

  private respondAtOnce(): void {
    const { pieces, fault } = this.plan;
    const kind = fault?.kind;
    if (kind === 'stall') return;
    if (kind === 'drop') {
      this.drop('');
      return;
    }
    if (kind === 'malformed') {
      this.writeHead('application/json');
      this.finish('{not json', 'faulted');
      return;
    }
    const count = fault ? Math.min(fault.after, pieces.length) : pieces.length;
    let content = '';
    for (; this.emitted < count; this.emitted++) {
      const piece = pieces[this.emitted];
      if (fault?.afterBytes !== undefined && Buffer.byteLength(content + piece.text) > fault.afterBytes) {
        content += utf8Head(piece.text, fault.afterBytes - Buffer.byteLength(content));
        break;
      }
      this.completionTokens += piece.tokens;
      content += this.plan.emitTimestamps ? timestamped(piece.text) : piece.text;
    }
    if (this.plan.record) this.plan.record.contentTokens = this.emitted;
    const finishReason: FinishReason | null =
      kind === 'content_filter'
        ? 'content_filter'
        : kind === 'end_without_done'
          ? null
          : this.plan.finishReason;
    let reasoningFields: Record<string, string> = {};
    const reasoning = this.plan.reasoning;
    if (reasoning) {
      let thought = '';
      for (const piece of reasoning.pieces) {
        this.completionTokens += piece.tokens;
        this.reasoningTokens += piece.tokens;
        thought += piece.text;
      }
      if (reasoning.style === 'think') content = THINK_OPEN + thought + THINK_CLOSE + content;
      else reasoningFields = { [reasoning.style]: thought };
    }
    const body = chatCompletion(
      this.plan.id,
      this.plan.created,
      this.plan.model,
      content,
      finishReason,
      this.plan.reportUsage ? this.usage() : undefined,
      reasoningFields,
    );
    this.writeHead('application/json');
    this.finish(JSON.stringify(body), kind === 'end_without_done' ? 'faulted' : 'completed');
  }

  private writeHead(contentType: string): void {
    if (this.plan.record) this.plan.record.status = 200;
    this.response.writeHead(200, { 'content-type': contentType });
  }

  private contentJson(piece: TokenPiece): string {
    this.completionTokens += piece.tokens;
    if (this.plan.record) this.plan.record.contentTokens++;
    return this.plan.emitTimestamps ? JSON.stringify(timestamped(piece.text)) : piece.json;
  }

  private nextGap(): number {
    const { tokensPerSecond, jitter } = this.plan.profile;
    if (tokensPerSecond <= 0) return 0;
    return (1000 / tokensPerSecond) * (1 + jitter * (2 * this.plan.random() - 1));
  }

  private usage(): Usage {
    const { promptTokens } = this.plan;
    return {
      prompt_tokens: promptTokens,
      completion_tokens: this.completionTokens,
      total_tokens: promptTokens + this.completionTokens,
      completion_tokens_details: {
        reasoning_tokens: this.reasoningTokens,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    };
  }

  private finish(body: string, outcome: RunOutcome): void {
    this.settle(outcome);
    this.response.end(body);
  }

  /** Destroys the socket once what was already written is flushed, so the client sees the tokens, then a cut. */
  private drop(frames: string): void {
    this.settle('faulted');
    const cut = (): void => {
      this.response.socket?.destroy();
    };
    if (frames === '') cut();
    else this.response.write(frames, cut);
  }

  private settle(outcome: RunOutcome): void {
    this.outcome = outcome;
    this.scheduler.cancel(this);
    this.onEnd(outcome);
  }

  private readonly onClose = (): void => {
    if (this.outcome !== undefined) return;
    if (this.plan.record) this.plan.record.aborted = true;
    this.settle('aborted');
  };
}

/** The longest beginning of `text` within `maxBytes` of UTF-8 that ends on a character boundary. */
export function utf8Head(text: string, maxBytes: number): string {
  let bytes = 0;
  let end = 0;
  for (const character of text) {
    const size = Buffer.byteLength(character);
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += character.length;
  }
  return text.slice(0, end);
}

/**
 * `[sim emit_ts]` prefixes each content delta with its emission time: `⟨` (U+27E8), the epoch in milliseconds
 * with exactly three decimals (`performance.timeOrigin + performance.now()`), `⟩` (U+27E9), then the token's
 * text, e.g. `⟨1767225600123.456⟩ Hello`. A client on the same host measures end-to-end latency from the text
 * alone, without clock tricks. The pattern captures the time and leaves the token text after the match.
 */
export const EMIT_TS_PATTERN = /⟨(\d+\.\d{3})⟩/;

export function timestamped(text: string): string {
  return `⟨${(performance.timeOrigin + performance.now()).toFixed(3)}⟩${text}`;
}
