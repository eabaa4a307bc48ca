import {
  ChunkMapper,
  type CompletionProvider,
  type OpenAiPassthrough,
  type PassthroughOptions,
  type ProviderChunk,
  type ProviderRequest,
  ThinkTagSplitter,
  UpstreamError,
} from '@app/completion';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import type { Framing, RouteNotice, UpstreamRouter } from './upstream-router';

/**
 * The completion module's provider when the router serves: our events' framing of the router's attempts. The
 * completion service learns nothing of the table; it sees chunks, and a `route` chunk where the answer moved.
 */
export class RoutingProvider implements CompletionProvider, OpenAiPassthrough {
  readonly name: string;
  /** Each attempt keeps its own first-token and idle deadlines (the router's), so the service sets none. */
  readonly ownsTimeouts = true;

  constructor(
    private readonly router: UpstreamRouter,
    private readonly options: { name: string; extractThinkTags: boolean },
  ) {
    this.name = options.name;
  }

  stream(request: ProviderRequest, signal: AbortSignal): AsyncIterable<readonly ProviderChunk[]> {
    const body: Record<string, unknown> = {
      messages: request.messages,
      stream: true,
      stream_options: { include_usage: true },
      temperature: request.temperature,
      top_p: request.topP,
      max_tokens: request.maxTokens,
    };
    const continueFrom = request.continueFrom;
    return this.router.stream(
      {
        model: request.model,
        body,
        streamId: request.streamId,
        continueFrom: continueFrom && {
          text: continueFrom.text,
          reasoningShown: continueFrom.reasoningShown === true,
          reason: continueFrom.reason,
        },
      },
      signal,
      new EventFraming(this.options.extractThinkTags),
    );
  }

  knowsModel(model: string): boolean {
    return this.router.knows(model);
  }

  canContinue(model: string): boolean {
    return this.router.canContinue(model);
  }

  /**
   * The `/v1` surface through the same router: a non-streamed body goes to the first deployment that answers whole; a
   * streamed one resolves once the first token came (a failure before it rejects, so the relay answers with a
   * status), and its body is one OpenAI stream whatever deployments served it (see `ChunkFraming`). A fault nothing
   * could rescue is an in-band `error` event.
   */
  async chatCompletions(
    body: Record<string, unknown>,
    signal: AbortSignal,
    options?: PassthroughOptions,
  ): Promise<Response> {
    const { model, ...rest } = body;
    const request = { model: typeof model === 'string' ? model : undefined, body: rest };
    if (body['stream'] !== true) {
      return (await this.router.json(request, signal, options?.maxResponseBytes)).response;
    }
    let upstreamRequestId: string | undefined;
    const batches = this.router.stream(
      { ...request, keepRaw: true, serving: (serving) => (upstreamRequestId ??= serving.upstreamRequestId) },
      signal,
      new ChunkFraming(),
    );
    const first = await batches.next();
    const encoder = new TextEncoder();
    let ended = first.done === true;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        if (!first.done) {
          controller.enqueue(encoder.encode(first.value.join('')));
        }
        if (ended) {
          controller.enqueue(encoder.encode('data: [DONE]\n\n'));
          controller.close();
        }
      },
      async pull(controller) {
        try {
          const next = await batches.next();
          if (signal.aborted) {
            // Stopped from outside (the client left, a deadline, the shutdown): the relay must not take it as whole.
            controller.error(new Error('aborted'));
            return;
          }
          if (next.done) {
            ended = true;
            controller.enqueue(encoder.encode('data: [DONE]\n\n'));
            controller.close();
            return;
          }
          controller.enqueue(encoder.encode(next.value.join('')));
        } catch (error) {
          ended = true;
          const failure =
            error instanceof UpstreamError
              ? error
              : new UpstreamError('internal', 'The gateway failed while streaming.');
          if (signal.aborted) {
            controller.error(new Error('aborted'));
            return;
          }
          const data = { error: { code: failure.code, message: failure.message, type: 'upstream_error' } };
          controller.enqueue(encoder.encode(`data: ${JSON.stringify(data)}\n\n`));
          controller.close();
        }
      },
      cancel() {
        void batches.return(undefined);
      },
    });
    const headers = new Headers({ 'content-type': 'text/event-stream' });
    if (upstreamRequestId !== undefined) {
      headers.set('x-request-id', upstreamRequestId);
    }
    return new Response(stream, { status: 200, headers });
  }

  /** With a table, its public names; without one, the single deployment's own list. */
  async models(signal: AbortSignal): Promise<Response> {
    const { table } = this.router;
    if (!table.hasTable) {
      const [deployment] = table.deployments.values();
      return deployment.client.models(signal);
    }
    const data = table.publicModels.map((id) => ({ id, object: 'model', created: 0, owned_by: 'gateway' }));
    return Response.json({ object: 'list', data });
  }

  /** Ready when the default model's first target answers. */
  async ping(signal: AbortSignal): Promise<void> {
    const route = this.router.table.resolve(undefined);
    const target = route?.targets[0];
    if (target === undefined) {
      throw new Error('the upstream table has no default model');
    }
    await target.deployment.client.ping(signal);
  }
}

/**
 * The `/v1` framing: OpenAI's own chunks as `data:` lines, unchanged while the first attempt serves (its `data`
 * texts as they came); after a switch, re-serialized with the stream's first `id`, so the client sees one stream
 * whose `model` names the deployment's model now serving. A `route` has no place in OpenAI's stream: nothing is sent.
 */
class ChunkFraming implements Framing<string> {
  private id: string | undefined;

  chunks(chunks: ChatCompletionChunk[], raw: string[] | undefined, switched: boolean): readonly string[] {
    this.id ??= chunks[0]?.id;
    if (raw !== undefined && !switched) {
      return raw.map((data) => `data: ${data}\n\n`);
    }
    return chunks.map((chunk) => {
      const delta = chunk.choices[0]?.delta as { role?: unknown } | undefined;
      if (switched && delta !== undefined) {
        // One stream has one assistant turn: a later attempt's opening role delta is not repeated.
        delete delta.role;
      }
      return `data: ${JSON.stringify(this.id === undefined ? chunk : { ...chunk, id: this.id })}\n\n`;
    });
  }

  route(): string {
    return '';
  }
}

/** Chat-completion chunks to ProviderChunks (one mapper per stream: the think-tag splitter keeps state). */
class EventFraming implements Framing<ProviderChunk> {
  private readonly mapper: ChunkMapper;

  constructor(extractThinkTags: boolean) {
    this.mapper = new ChunkMapper(extractThinkTags ? new ThinkTagSplitter() : undefined);
  }

  chunks(chunks: ChatCompletionChunk[]): readonly ProviderChunk[] {
    return this.mapper.map(chunks);
  }

  route(notice: RouteNotice): ProviderChunk {
    return { kind: 'route', ...notice };
  }
}
