/** Test helper: an OpenAI-compatible deployment on a real loopback port, failing as a script says. */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** What the deployment does with one request. */
export type Behaviour =
  | { kind: 'answer'; firstTokenDelayMs?: number; model?: string }
  | { kind: 'status'; status: number; headers?: Record<string, string>; error?: Record<string, unknown> }
  /** Destroys the socket before any header. */
  | { kind: 'reset' }
  /** Takes the request and never answers. */
  | { kind: 'silent' }
  /** Streams `after` content pieces, then: */
  | { kind: 'cut'; after: number }
  | { kind: 'stall'; after: number }
  | { kind: 'malformed'; after: number }
  | { kind: 'no-finish'; after: number }
  /** Writes the content stream's first `bytes` bytes (split inside a character, maybe), then destroys the socket. */
  | { kind: 'cut-bytes'; bytes: number };

export interface SeenRequest {
  at: number;
  body: Record<string, unknown>;
  /** The continuation form of the request, if any. */
  continuation: 'none' | 'continue_final_message' | 'prefix';
  /** The connection closed before the deployment ended its answer. */
  aborted: boolean;
  status: number;
}

/** The answer every deployment gives a prompt: the same text, so a continuation elsewhere is exact. */
export const ANSWER =
  'Streams are cut 🌊 at any byte; 続きは正確に. The rest follows — no repeat, no gap, Ünïcödé included. 𝄞 done.';

/** The answer in content pieces: a few characters each, so a cut can fall anywhere. */
export function piecesOf(text: string): string[] {
  const characters = [...text];
  const pieces: string[] = [];
  for (let index = 0; index < characters.length; index += 3) {
    pieces.push(characters.slice(index, index + 3).join(''));
  }
  return pieces;
}

export class ScriptedDeployment {
  readonly seen: SeenRequest[] = [];
  private readonly sockets = new Set<Socket>();
  private constructor(
    private readonly server: Server,
    readonly baseUrl: string,
    private readonly script: (index: number, body: Record<string, unknown>) => Behaviour,
  ) {}

  static async start(
    script: (index: number, body: Record<string, unknown>) => Behaviour,
  ): Promise<ScriptedDeployment> {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const deployment = new ScriptedDeployment(server, `http://127.0.0.1:${port}/v1`, script);
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      void deployment.handle(request, response);
    });
    server.on('connection', (socket: Socket) => {
      deployment.sockets.add(socket);
      socket.on('close', () => deployment.sockets.delete(socket));
    });
    return deployment;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) {
      socket.destroy();
    }
    this.server.close();
    await once(this.server, 'close');
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let text = '';
    for await (const chunk of request) {
      text += String(chunk);
    }
    if (request.url?.endsWith('/models')) {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ object: 'list', data: [{ id: 'scripted', object: 'model' }] }));
      return;
    }
    const body = JSON.parse(text) as Record<string, unknown>;
    const messages = body['messages'] as { role: string; content: string; prefix?: boolean }[];
    const last = messages.at(-1);
    const continuation =
      body['continue_final_message'] === true
        ? 'continue_final_message'
        : last?.role === 'assistant' && last.prefix === true
          ? 'prefix'
          : 'none';
    const seen: SeenRequest = { at: performance.now(), body, continuation, aborted: false, status: 200 };
    this.seen.push(seen);
    let finished = false;
    response.on('close', () => {
      if (!finished) {
        seen.aborted = true;
      }
    });
    const behaviour = this.script(this.seen.length - 1, body);
    const prefix = continuation === 'none' ? '' : (last?.content ?? '');
    const rest = ANSWER.startsWith(prefix) ? ANSWER.slice(prefix.length) : ANSWER;
    const pieces = piecesOf(rest);
    const id = `chatcmpl-${this.seen.length}`;
    const model = behaviour.kind === 'answer' && behaviour.model ? behaviour.model : String(body['model']);
    const chunk = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    switch (behaviour.kind) {
      case 'status':
        seen.status = behaviour.status;
        finished = true;
        response.writeHead(behaviour.status, { 'content-type': 'application/json', ...behaviour.headers });
        response.end(
          JSON.stringify({
            error: { message: 'scripted failure', type: 'server_error', ...behaviour.error },
          }),
        );
        return;
      case 'reset':
        finished = true;
        request.socket.destroy();
        return;
      case 'silent':
        return;
      default:
    }
    response.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': `req_${id}` });
    response.write(chunk({ role: 'assistant', content: '' }));
    if (behaviour.kind === 'cut-bytes') {
      // The content stream's first `bytes` bytes, in two writes split wherever that falls (inside a character, too),
      // then the connection drops: the chunks that were whole arrive, the broken one never does.
      const bytes = Buffer.from(pieces.map((piece) => chunk({ content: piece })).join('')).subarray(
        0,
        behaviour.bytes,
      );
      const half = bytes.length >> 1;
      response.write(bytes.subarray(0, half));
      await new Promise((resolve) => setTimeout(resolve, 5));
      response.write(bytes.subarray(half));
      setTimeout(() => response.destroy(), 20);
      return;
    }
    if (behaviour.kind === 'answer' && behaviour.firstTokenDelayMs) {
      await new Promise((resolve) => setTimeout(resolve, behaviour.firstTokenDelayMs));
      if (response.destroyed) {
        return;
      }
    }
    const limit = behaviour.kind === 'answer' ? pieces.length : behaviour.after;
    for (const piece of pieces.slice(0, limit)) {
      response.write(chunk({ content: piece }));
      await new Promise((resolve) => setImmediate(resolve));
    }
    switch (behaviour.kind) {
      case 'cut':
        setTimeout(() => response.destroy(), 20);
        return;
      case 'stall':
        return;
      case 'malformed':
        response.write('data: {"choices": [\n\n');
        return;
      case 'no-finish':
        finished = true;
        response.end();
        return;
      default:
    }
    finished = true;
    response.write(chunk({}, 'stop'));
    const prompt = JSON.stringify(messages).length >> 2;
    const completion = pieces.length;
    response.write(
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: 1, model, choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } })}\n\n`,
    );
    response.end('data: [DONE]\n\n');
  }
}
