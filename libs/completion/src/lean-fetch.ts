import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';

export interface LeanFetchOptions {
  /**
   * Certificate authorities trusted for https upstreams instead of Node's bundled roots (a private CA, a test's
   * self-signed certificate). Certificates are always verified, against the host name too.
   */
  ca?: string | Buffer | (string | Buffer)[];
}

/**
 * The `fetch` handed to the `openai` SDK (its documented `fetch` client option): it sends the SDK's request with
 * undici's Dispatcher API (`request`, over one keep-alive `Agent`) and answers with a `Response` whose body stays a
 * Node stream until someone asks for the standard `body`.
 *
 * Why: Node's global fetch is undici too, but its WHATWG layer keeps, for every open stream, a Request and a
 * Response with their header lists, a web ReadableStream over the Node stream, abort listeners and the resource-
 * timing bookkeeping. The stream-start profile put 1.1–1.3 ms of CPU per stream start there, 0.4–0.5 ms with this
 * (the SDK itself 0.2 ms either way), and an open stream holds about 17 KB less heap (docs/benchmarks.md). node:http
 * measured a little less CPU per request but about 10 KB more memory per open connection than the Dispatcher API,
 * so this uses the latter.
 * The SDK still does everything it did: building the request, retries with backoff before the first byte, typed
 * APIErrors for refusals, its request timeout (it aborts `init.signal`, which aborts the request at once).
 *
 * What it does not do, on purpose (the SDK and our upstreams need none of it): redirects (a 3xx is answered as it
 * is, so the SDK reports it as a refusal), compressed bodies (it sends no `accept-encoding`, so servers answer
 * uncompressed), proxies, cookies, and bodies other than a string or bytes: those requests, and any URL that is
 * not http(s), go to the global fetch unchanged.
 */
export function createLeanFetch(options: LeanFetchOptions = {}): typeof fetch {
  // undici's defaults otherwise, as the global fetch has them: no connection limit, 300 s header and body timeouts.
  const dispatcher = new Agent(options.ca === undefined ? {} : { connect: { ca: options.ca } });
  return (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : undefined;
    const body = init?.body;
    const simpleBody =
      body === undefined || body === null || typeof body === 'string' || body instanceof Uint8Array;
    if (url === undefined || !simpleBody || !/^https?:\/\//i.test(url)) {
      return fetch(input, init);
    }
    return leanRequest(dispatcher, url, init ?? {}, body ?? undefined);
  };
}

/** `https://host:port` and what follows it (path and query; a fragment is never sent, and the SDK adds none). */
const ORIGIN_AND_REST = /^(https?:\/\/[^/?#]*)([^#]*)/i;

async function leanRequest(
  dispatcher: Dispatcher,
  url: string,
  init: RequestInit,
  body: string | Uint8Array | undefined,
): Promise<Response> {
  // The SDK built the URL with `new URL`: split it, rather than parse it a second time.
  const [, origin, rest] = ORIGIN_AND_REST.exec(url) as unknown as [string, string, string];
  const answer = await dispatcher.request({
    origin,
    path: rest.startsWith('/') ? rest : `/${rest}`,
    method: (init.method ?? 'GET') as Dispatcher.HttpMethod,
    headers: outgoingHeaders(init.headers),
    body,
    // Aborting it destroys the request, or the body and its connection once the headers are in.
    signal: init.signal ?? undefined,
  });
  return new NodeResponse(answer.statusCode, answer.statusText, answer.headers, answer.body, url);
}

/** The SDK passes a `Headers`; a plain record or pairs are accepted as fetch accepts them. */
function outgoingHeaders(init: ConstructorParameters<typeof Headers>[0]): Record<string, string> {
  const headers: Record<string, string> = {};
  if (init !== undefined) {
    for (const [name, value] of init instanceof Headers ? init : new Headers(init)) {
      headers[name] = value;
    }
  }
  return headers;
}

/**
 * A `Response` over a Node stream of the body. Everything the SDK reads (status, headers, text, json, cancelling the
 * body) works without a web stream; `body` builds one on first use, for readers that want the standard. Our own
 * readers take the Node stream itself through `bodyReader`.
 */
export class NodeResponse implements Response {
  readonly headers: Headers;
  readonly redirected = false;
  readonly type: Response['type'] = 'basic';
  private webBody: ReadableStream<Uint8Array> | undefined;
  /** Whether the Node stream was handed out, to `body` or to a reader of its own. */
  private taken = false;

  constructor(
    readonly status: number,
    readonly statusText: string,
    headers: IncomingHttpHeaders,
    private readonly stream: Readable,
    readonly url: string,
  ) {
    this.headers = new IncomingHeaders(headers);
  }

  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  get body(): ReadableStream<Uint8Array<ArrayBuffer>> {
    this.webBody ??= Readable.toWeb(this.take()) as ReadableStream<Uint8Array>;
    return this.webBody as ReadableStream<Uint8Array<ArrayBuffer>>;
  }

  get bodyUsed(): boolean {
    return this.webBody === undefined ? this.taken : this.webBody.locked;
  }

  /** The body as the Node stream it is, if nobody took it yet (then `body` is no longer available). */
  takeNodeBody(): Readable | undefined {
    return this.taken ? undefined : this.take();
  }

  async bytes(): Promise<Uint8Array<ArrayBuffer>> {
    const pieces: Buffer[] = [];
    for await (const piece of this.take()) {
      pieces.push(piece as Buffer);
    }
    const all = Buffer.concat(pieces);
    return new Uint8Array(all.buffer as ArrayBuffer, all.byteOffset, all.byteLength);
  }

  async text(): Promise<string> {
    return new TextDecoder().decode(await this.bytes());
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text()) as unknown;
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const bytes = await this.bytes();
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  }

  async blob(): Promise<Blob> {
    return new Blob([await this.bytes()], { type: this.headers.get('content-type') ?? '' });
  }

  async formData(): Promise<FormData> {
    return new Response(await this.bytes(), { headers: this.headers }).formData();
  }

  clone(): Response {
    throw new TypeError('This upstream response cannot be cloned: its body is read once, as it streams.');
  }

  private take(): Readable {
    if (this.taken) {
      throw new TypeError('Body is unusable: Body has already been read');
    }
    this.taken = true;
    return this.stream;
  }
}

/** One reader of a response body's bytes, whichever kind of stream carries them. */
export interface BodyReader {
  read(): Promise<IteratorResult<Uint8Array, undefined>>;
  /** Stops reading and closes what carries the body (for the lean fetch: its socket). */
  cancel(): void;
}

/**
 * Reads a response's body: the Node stream itself when the lean fetch made the response and nobody took its body
 * yet (no web stream in between: one less stream per open upstream request), else the standard `body`.
 */
export function bodyReader(response: Response): BodyReader | undefined {
  const stream = response instanceof NodeResponse ? response.takeNodeBody() : undefined;
  if (stream !== undefined) {
    return new NodeStreamReader(stream);
  }
  const reader = response.body?.getReader();
  if (reader === undefined) {
    return undefined;
  }
  return {
    read: () => reader.read() as Promise<IteratorResult<Uint8Array, undefined>>,
    cancel: () => void reader.cancel().catch(() => undefined),
  };
}

const END: IteratorReturnResult<undefined> = { done: true, value: undefined };

/** Queued body bytes past which the stream is paused: the highWaterMark undici gives a body. */
const QUEUE_LIMIT = 64 * 1024;

/**
 * Reads a Node stream of a body without its async iterator (an async generator, with `readable` events that Node
 * defers to the next tick, and a `read()` through the stream's buffer per chunk): bytes come as `data` events, each
 * handed to the waiting read at once; bytes that come while no read waits are queued, and the next read takes them
 * all in one piece. Past QUEUE_LIMIT queued bytes the stream is paused until then (backpressure, as before): pausing
 * on every queued chunk cost more than it saved when several chunks come per turn (a micro-benchmark of the reader). The stream's end resolves a
 * read with `done`, once the queue is empty; its error, or its closing before the end (it was destroyed), rejects it.
 */
class NodeStreamReader implements BodyReader {
  private readonly queued: Buffer[] = [];
  private queuedBytes = 0;
  private paused = false;
  private ended = false;
  /** Why the stream stopped before its end (its error, or a close without one: it was destroyed). */
  private failure: Error | undefined;
  private waiting:
    | { resolve: (read: IteratorResult<Uint8Array, undefined>) => void; reject: (error: Error) => void }
    | undefined;

  constructor(private readonly stream: Readable) {
    stream.on('data', (bytes: Buffer) => this.arrived(bytes));
    stream.on('end', () => {
      this.ended = true;
      this.settle();
    });
    stream.on('error', (error: Error) => this.fail(error));
    // After `end` or `error` this changes nothing; alone, the stream was destroyed before its end.
    stream.on('close', () => this.fail(new Error('The body closed before its end.')));
  }

  read(): Promise<IteratorResult<Uint8Array, undefined>> {
    const queued = this.queued;
    if (queued.length > 0) {
      const value = queued.length === 1 ? queued[0] : Buffer.concat(queued, this.queuedBytes);
      queued.length = 0;
      this.queuedBytes = 0;
      if (this.paused) {
        this.paused = false;
        this.stream.resume();
      }
      return Promise.resolve({ done: false, value });
    }
    if (this.ended) {
      return Promise.resolve(END);
    }
    if (this.failure !== undefined) {
      return Promise.reject(this.failure);
    }
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  cancel(): void {
    this.stream.destroy();
  }

  private arrived(bytes: Buffer): void {
    const waiting = this.waiting;
    if (waiting !== undefined) {
      this.waiting = undefined;
      waiting.resolve({ done: false, value: bytes });
    } else {
      this.queued.push(bytes);
      this.queuedBytes += bytes.length;
      if (this.queuedBytes >= QUEUE_LIMIT && !this.paused) {
        this.paused = true;
        this.stream.pause();
      }
    }
  }

  private fail(error: Error): void {
    if (!this.ended && this.failure === undefined) {
      this.failure = error;
    }
    this.settle();
  }

  /** A read waiting when the stream ends or fails (nothing is queued then: a waiting read finds the queue empty). */
  private settle(): void {
    const waiting = this.waiting;
    if (waiting === undefined) {
      return;
    }
    this.waiting = undefined;
    if (this.ended) {
      waiting.resolve(END);
    } else if (this.failure !== undefined) {
      waiting.reject(this.failure);
    } else {
      this.waiting = waiting;
    }
  }
}

/** How long the rest of a body is read after `data: [DONE]` before the request is cut (its end normally follows at once). */
const DRAIN_LIMIT_MS = 1000;

/**
 * Reads what is left of a body after the stream's `data: [DONE]` and drops it; past DRAIN_LIMIT_MS the body is
 * cancelled. Read out, the upstream connection goes back to the pool; cancelled before its end, it is closed and
 * the next request pays for a new one.
 */
export async function readToEnd(reader: BodyReader): Promise<void> {
  const limit = setTimeout(() => reader.cancel(), DRAIN_LIMIT_MS);
  limit.unref();
  try {
    while (!(await reader.read()).done) {
      // dropped: nothing after [DONE] is the stream's
    }
  } catch {
    // the connection broke after [DONE]: nothing of the stream is lost
  } finally {
    clearTimeout(limit);
  }
}

/** Immutable `Headers` over the parsed header object (lower-case names), as a fetch Response's are: no copy. */
class IncomingHeaders implements Headers {
  constructor(private readonly incoming: IncomingHttpHeaders) {}

  get(name: string): string | null {
    const value = this.incoming[name.toLowerCase()];
    if (value === undefined) {
      return null;
    }
    return Array.isArray(value) ? value.join(', ') : value;
  }

  has(name: string): boolean {
    return this.incoming[name.toLowerCase()] !== undefined;
  }

  getSetCookie(): string[] {
    const cookies = this.incoming['set-cookie'];
    return cookies === undefined ? [] : [...cookies];
  }

  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [name, value] of this.entries()) {
      callback.call(thisArg, value, name, this);
    }
  }

  *entries(): ReturnType<Headers['entries']> {
    for (const name of Object.keys(this.incoming).sort()) {
      const value = this.get(name);
      if (value !== null) {
        yield [name, value];
      }
    }
  }

  *keys(): ReturnType<Headers['keys']> {
    for (const [name] of this.entries()) {
      yield name;
    }
  }

  *values(): ReturnType<Headers['values']> {
    for (const [, value] of this.entries()) {
      yield value;
    }
  }

  [Symbol.iterator](): ReturnType<Headers['entries']> {
    return this.entries();
  }

  append(): void {
    throw new TypeError('immutable');
  }

  set(): void {
    throw new TypeError('immutable');
  }

  delete(): void {
    throw new TypeError('immutable');
  }
}
