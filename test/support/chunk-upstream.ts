import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One scripted answer: streamed chunks (JSON objects, sent as `data:` lines, then `[DONE]`), or a status with a body. */
export type UpstreamReply =
  | {
      kind: 'chunks';
      chunks: object[];
      headers?: Record<string, string>;
      /** Ends the response this long after `[DONE]` (as servers whose last write comes apart from it), not with it. */
      endAfterDoneMs?: number;
    }
  | { kind: 'json'; status: number; body: object; headers?: Record<string, string> };

export interface ReceivedRequest {
  path: string;
  authorization: string | undefined;
  body: Record<string, unknown>;
}

/**
 * An OpenAI-compatible upstream on loopback that answers each request from a script, chosen by the content of
 * its last message: for fields the simulator never sends (tool-call deltas, vendor fields) and for checking what
 * the gateway forwarded (`received`).
 */
export class ChunkUpstream {
  readonly received: ReceivedRequest[] = [];
  /** Streamed answers whose connection was closed by the gateway before the answer's end was sent. */
  cutAnswers = 0;
  /** `GET /models` requests answered. */
  modelListings = 0;
  private openAnswers = 0;
  private idle: (() => void)[] = [];
  private readonly replies = new Map<string, UpstreamReply>();
  private server: Server | undefined;

  reply(prompt: string, reply: UpstreamReply): void {
    this.replies.set(prompt, reply);
  }

  async start(): Promise<string> {
    this.server = createServer((request, response) => void this.answer(request, response));
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server?.address() as AddressInfo).port}/v1`;
  }

  /** Resolves once every streamed answer has ended or been cut. */
  settled(): Promise<void> {
    return this.openAnswers === 0 ? Promise.resolve() : new Promise((resolve) => this.idle.push(resolve));
  }

  close(): Promise<void> {
    this.server?.closeAllConnections();
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private async answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let text = '';
    for await (const chunk of request) {
      text += String(chunk);
    }
    response.setHeader('x-request-id', `req_chunk_upstream_${this.received.length + 1}`);
    if (request.url?.endsWith('/models')) {
      this.modelListings += 1;
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ object: 'list', data: [{ id: 'scripted-model', object: 'model' }] }));
      return;
    }
    const body = JSON.parse(text) as Record<string, unknown>;
    this.received.push({ path: request.url ?? '', authorization: request.headers.authorization, body });
    const messages = body.messages as { content: string }[];
    const reply = this.replies.get(messages.at(-1)?.content ?? '');
    if (!reply) {
      response.writeHead(500, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { message: 'no script for this prompt', type: 'server_error' } }));
      return;
    }
    if (reply.kind === 'json') {
      response.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
      response.end(JSON.stringify(reply.body));
      return;
    }
    response.writeHead(200, { 'content-type': 'text/event-stream', ...reply.headers });
    this.openAnswers += 1;
    response.on('close', () => {
      if (!response.writableFinished) this.cutAnswers += 1;
      this.openAnswers -= 1;
      if (this.openAnswers === 0) this.idle.splice(0).forEach((resolve) => resolve());
    });
    for (const chunk of reply.chunks) {
      response.write(`data: ${JSON.stringify(chunk)}\n\n`);
    }
    if (reply.endAfterDoneMs === undefined) {
      response.end('data: [DONE]\n\n');
    } else {
      response.write('data: [DONE]\n\n');
      setTimeout(() => response.end(), reply.endAfterDoneMs);
    }
  }
}

/** A chat.completion.chunk with one choice whose delta is `delta`. */
export function chunkOf(delta: object, finishReason: string | null = null, extra: object = {}): object {
  return {
    id: 'chatcmpl-scripted',
    object: 'chat.completion.chunk',
    created: 1767225600,
    model: 'scripted-model',
    system_fingerprint: 'fp_scripted',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...extra,
  };
}

export function usageChunk(usage: object): object {
  return {
    id: 'chatcmpl-scripted',
    object: 'chat.completion.chunk',
    created: 1767225600,
    model: 'scripted-model',
    choices: [],
    usage,
  };
}

/** A non-streamed completion with a reasoning model's usage: 12 completion tokens, 5 of them reasoning. */
export const COMPLETION_WITH_USAGE = {
  id: 'chatcmpl-usage',
  object: 'chat.completion',
  choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'ok' } }],
  usage: {
    prompt_tokens: 40,
    completion_tokens: 12,
    total_tokens: 52,
    completion_tokens_details: { reasoning_tokens: 5 },
  },
};
