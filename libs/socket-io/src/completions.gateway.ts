import {
  AuthService,
  authenticateHandshake,
  ModelPolicy,
  type Principal,
  principalStillValid,
} from '@app/auth';
import { CompletionService } from '@app/completion';
import { epochNow } from '@app/clock';
import {
  type AckError,
  type CancelPayload,
  type ClientToServerEvents,
  nestedDeeperThan,
  REQUEST_LIMITS,
  type ResumePayload,
  type ServerTime,
  type ServerToClientEvents,
  type SimpleAck,
  SOCKET_EVENTS,
  SOCKET_NAMESPACE,
  type StartAck,
} from '@app/contracts';
import { MetricsService } from '@app/metrics';
import {
  type ResumeOutcome,
  ShutdownCoordinator,
  type StreamListener,
  StreamRegistry,
  StreamStarter,
  StreamsUnavailableError,
} from '@app/streams';
import { startServerSpan, type StreamTrace } from '@app/telemetry';
import { Logger } from '@nestjs/common';
import {
  Ack,
  ConnectedSocket,
  MessageBody,
  type OnGatewayConnection,
  type OnGatewayDisconnect,
  type OnGatewayInit,
  SubscribeMessage,
  WebSocketGateway,
} from '@nestjs/websockets';
import type { Subscription } from 'rxjs';
import type { Namespace, Socket } from 'socket.io';
import { z } from 'zod';
import { MAX_SOCKET_PENDING_BYTES, pendingBytes } from './engine-queue';

/** What the gateway keeps per socket. */
export interface SocketData {
  principal?: Principal;
  /** The streams this socket listens to, by id. */
  listening?: Map<string, Subscription>;
}

type CompletionSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
type Reply<T> = ((result: T) => void) | undefined;

/** W3C trace context values are short; anything longer is not one. */
const MAX_TRACE_CONTEXT_LENGTH = 256;

const cancelSchema = z.strictObject({
  streamId: z.string().min(1).max(128),
}) satisfies z.ZodType<CancelPayload>;
const resumeSchema = z.strictObject({
  streamId: z.string().min(1).max(128),
  lastSeq: z.number().int().min(-1),
  traceparent: z.string().max(MAX_TRACE_CONTEXT_LENGTH).optional(),
}) satisfies z.ZodType<ResumePayload>;

const TOO_DEEP = `The payload nests arrays and objects deeper than ${REQUEST_LIMITS.maxJsonDepth} levels.`;

const EXPIRED: { ok: false; error: AckError } = {
  ok: false,
  error: { code: 'unauthorized', message: 'The credentials have expired; reconnect with new ones.' },
};

/**
 * The Socket.IO transport. The handshake is authenticated by namespace middleware (Nest guards do not
 * run on connections) and every event re-checks the principal's expiry. Handlers answer through the
 * ack themselves (`@Ack()`): a thrown exception would reach the client as a generic 'exception' event
 * and leave its ack hanging, and the ack must go out before the stream's first event.
 */
@WebSocketGateway({ namespace: SOCKET_NAMESPACE })
export class CompletionsGateway implements OnGatewayInit, OnGatewayConnection, OnGatewayDisconnect {
  private readonly logger = new Logger(CompletionsGateway.name);

  constructor(
    private readonly auth: AuthService,
    private readonly starter: StreamStarter,
    private readonly registry: StreamRegistry,
    private readonly metrics: MetricsService,
    private readonly shutdown: ShutdownCoordinator,
    private readonly models: ModelPolicy,
    private readonly completion: CompletionService,
  ) {}

  afterInit(namespace: Namespace): void {
    namespace.use(authenticateHandshake(this.auth));
    this.shutdown.beforeClose(() => flushed(namespace));
    this.metrics.measurePendingBytes('socket.io', () => {
      let total = 0;
      for (const socket of namespace.sockets.values()) {
        total += pendingBytes(socket);
      }
      return total;
    });
  }

  @SubscribeMessage(SOCKET_EVENTS.start)
  async startStream(
    @ConnectedSocket() socket: CompletionSocket,
    @MessageBody() payload: unknown,
    @Ack() ack: Reply<StartAck>,
  ): Promise<void> {
    if (!principalStillValid(socket)) {
      ack?.(EXPIRED);
      return;
    }
    const principal = socket.data.principal as Principal;
    const { id: owner, limitKey } = principal;
    const { traceparent, request } = withoutTraceContext(payload);
    const traced = startServerSpan({ name: SOCKET_EVENTS.start, surface: 'socket.io', traceparent });
    let result: StartAck;
    try {
      if (nestedDeeperThan(payload)) {
        result = refusal('invalid_request', TOO_DEEP);
      } else if (
        !this.models.allows(principal, ModelPolicy.requestedModel(request, this.completion.defaultModel))
      ) {
        result = refusal('forbidden', ModelPolicy.REFUSAL);
      } else {
        // The stream starts inside the span's context, so its upstream attempts are children of this span.
        const outcome = await traced.run(() => this.starter.start(request, owner, 'socket.io', limitKey));
        result = outcome.ok
          ? { ok: true, streamId: outcome.streamId }
          : refusal(outcome.code, outcome.message, outcome.retryAfterMs);
      }
    } catch (error) {
      this.logger.error(`completion:start failed: ${error instanceof Error ? error.stack : String(error)}`);
      result = refusal('internal', 'The server failed to start the stream.');
    }
    ack?.(result);
    if (!result.ok) {
      traced.refused(result.error.code);
      return;
    }
    traced.stream(result.streamId);
    // The stream runs here, so its first listener is the in-memory one: no shared store is asked.
    const listener = await this.registry.listen(result.streamId, owner, -1, 'start', limitKey);
    if (listener.ok) {
      this.listen(socket, result.streamId, listener, traced);
    } else {
      traced.end();
    }
  }

  @SubscribeMessage(SOCKET_EVENTS.cancel)
  async cancelStream(
    @ConnectedSocket() socket: CompletionSocket,
    @MessageBody() payload: unknown,
    @Ack() ack: Reply<SimpleAck>,
  ): Promise<void> {
    const request = this.accept(socket, cancelSchema, payload, 'completion:cancel takes { streamId }.', ack);
    if (!request) {
      return;
    }
    try {
      const cancelled = await this.registry.cancel(request.streamId, request.owner);
      ack?.(cancelled ? { ok: true } : refusal('not_found', 'No such stream.'));
    } catch (error) {
      ack?.(this.failure('completion:cancel', error));
    }
  }

  @SubscribeMessage(SOCKET_EVENTS.resume)
  async resumeStream(
    @ConnectedSocket() socket: CompletionSocket,
    @MessageBody() payload: unknown,
    @Ack() ack: Reply<SimpleAck>,
  ): Promise<void> {
    const request = this.accept(
      socket,
      resumeSchema,
      payload,
      'completion:resume takes { streamId, lastSeq }.',
      ack,
    );
    if (!request) {
      return;
    }
    // The resume joins the run's trace through the traceparent in its payload, as the start did.
    const traced = startServerSpan({
      name: SOCKET_EVENTS.resume,
      surface: 'socket.io',
      traceparent: request.traceparent,
    });
    traced.stream(request.streamId);
    let outcome: ResumeOutcome;
    try {
      outcome = await this.starter.resume(
        request.streamId,
        request.owner,
        request.lastSeq,
        (socket.data.principal as Principal).limitKey,
      );
    } catch (error) {
      const failure = this.failure('completion:resume', error);
      traced.refused(failure.error.code);
      ack?.(failure);
      return;
    }
    if (!outcome.ok) {
      traced.refused(outcome.code);
      ack?.(refusal(outcome.code, outcome.message, outcome.retryAfterMs));
      return;
    }
    ack?.({ ok: true });
    this.metrics.resumed('socket.io');
    traced.resumed(request.lastSeq);
    this.listen(socket, request.streamId, outcome, traced);
  }

  handleConnection(socket: CompletionSocket): void {
    this.metrics.connectionOpened('socket.io');
    // The clock probe answers on the socket's own listener, not through Nest's handler pipeline: its round
    // trip is the socket's and little else. The time is no secret, so it skips the expiry check.
    socket.on(SOCKET_EVENTS.clockProbe, answerClockProbe);
  }

  handleDisconnect(socket: CompletionSocket): void {
    this.metrics.connectionClosed('socket.io');
    // Stop listening; the registry keeps each stream for the resume grace, then aborts its upstream.
    for (const subscription of socket.data.listening?.values() ?? []) {
      subscription.unsubscribe();
    }
    socket.data.listening?.clear();
  }

  /** The ack for an exception: a retryable `unavailable` when the shared registry is away, else `internal`. */
  private failure(event: string, error: unknown): { ok: false; error: AckError } {
    if (error instanceof StreamsUnavailableError) {
      return refusal('unavailable', 'Streams cannot be reached right now; retry shortly.', 1000);
    }
    this.logger.error(`${event} failed: ${error instanceof Error ? error.stack : String(error)}`);
    return refusal('internal', 'The server failed to handle the request.');
  }

  /** The payload with the acting owner, or undefined once the ack has said why not (expired credentials, bad payload). */
  private accept<T>(
    socket: CompletionSocket,
    schema: z.ZodType<T>,
    payload: unknown,
    usage: string,
    ack: Reply<SimpleAck>,
  ): (T & { owner: string }) | undefined {
    if (!principalStillValid(socket)) {
      ack?.(EXPIRED);
      return undefined;
    }
    const parsed = nestedDeeperThan(payload) ? undefined : schema.safeParse(payload);
    if (!parsed?.success) {
      ack?.(refusal('invalid_request', usage));
      return undefined;
    }
    return { ...parsed.data, owner: (socket.data.principal as Principal).id };
  }

  /**
   * Relays a stream to the socket until its terminal event or the socket's end. The listener's place is
   * given back with the subscription: what a replay queued is bounded by the socket's pending-bytes cap.
   * A listener this socket already had for the stream is replaced, after the new one is subscribed (so
   * the stream never looks abandoned in between, which with a zero grace would cancel it).
   */
  private listen(
    socket: CompletionSocket,
    streamId: string,
    listener: StreamListener,
    traced: StreamTrace,
  ): void {
    const listening = (socket.data.listening ??= new Map());
    const previous = listening.get(streamId);
    let subscription: Subscription | undefined = undefined;
    subscription = listener.events.pipe(traced.watch()).subscribe({
      next: (event) => {
        if (pendingBytes(socket) > MAX_SOCKET_PENDING_BYTES) {
          // The client stopped reading: drop it rather than let its backlog grow; it resumes on reconnect.
          this.metrics.slowClientDropped('socket.io');
          socket.disconnect(true);
          return;
        }
        socket.emit(SOCKET_EVENTS.event, event);
      },
      complete: () => {
        if (subscription !== undefined && listening.get(streamId) === subscription) {
          listening.delete(streamId);
        }
      },
    });
    subscription.add(() => listener.leave());
    // The request's span lasts as long as this socket follows the stream: to its terminal event, or the socket's end.
    subscription.add(() => traced.end());
    previous?.unsubscribe();
    if (!socket.connected) {
      // The socket went while the start or resume was being admitted: its disconnect handler has already run.
      subscription.unsubscribe();
    }
    if (subscription.closed) {
      listening.delete(streamId);
    } else {
      listening.set(streamId, subscription);
    }
  }
}

/**
 * The start payload's `traceparent`, taken out before the payload is validated as a CompletionRequest: it is trace
 * context, which travels with the request as an HTTP header would, and the completion never sees it. Carried in the
 * payload rather than the handshake because one socket runs many runs, each its own trace. An invalid one is
 * ignored and a new trace starts, as the W3C Trace Context spec asks of a receiver.
 */
function withoutTraceContext(payload: unknown): { traceparent: unknown; request: unknown } {
  if (typeof payload !== 'object' || payload === null || !Object.hasOwn(payload, 'traceparent')) {
    return { traceparent: undefined, request: payload };
  }
  const { traceparent, ...request } = payload as Record<string, unknown>;
  return { traceparent, request };
}

/** One function for every socket's probe listener, rather than a closure held by each connection. */
function answerClockProbe(ack: unknown): void {
  const receivedAt = epochNow();
  if (typeof ack !== 'function') return;
  const sentAt = epochNow();
  (ack as (time: ServerTime) => void)({ ts: sentAt, receivedAt, sentAt });
}

const FLUSH_LIMIT_MS = 2000;

/** Resolves when no socket of the namespace has packets queued (the terminal events went out), or after a bound. */
async function flushed(namespace: Namespace): Promise<void> {
  const deadline = Date.now() + FLUSH_LIMIT_MS;
  const pending = () => [...namespace.sockets.values()].some((socket) => pendingBytes(socket) > 0);
  while (pending() && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function refusal(
  code: AckError['code'],
  message: string,
  retryAfterMs?: number,
): { ok: false; error: AckError } {
  return {
    ok: false,
    error: retryAfterMs === undefined ? { code, message } : { code, message, retryAfterMs },
  };
}
