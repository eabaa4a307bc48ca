import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { inspect } from 'node:util';
import { bodyReader, createLeanFetch } from './lean-fetch';
import { OpenAiCompatibleProvider } from './openai-compatible.provider';
import { refusedUrl, tlsFile, Upstream } from './testing/upstream';
import { UpstreamError } from './upstream.error';

async function readAll(response: Response): Promise<string> {
  const reader = bodyReader(response);
  let text = '';
  for (let read = await reader!.read(); !read.done; read = await reader!.read()) {
    text += Buffer.from(read.value).toString('utf8');
  }
  return text;
}

describe('createLeanFetch: the fetch the SDK sends with', () => {
  let upstream: Upstream | undefined;
  afterEach(async () => {
    await upstream?.stop();
    upstream = undefined;
  });

  it('sends method, headers and body, and answers with the status, headers and a body that streams', async () => {
    let seen: { method?: string; headers?: IncomingMessage['headers']; body?: string } = {};
    let finish!: () => void;
    const secondPiece = new Promise<void>((resolve) => (finish = resolve));
    upstream = await Upstream.start((request, response, body) => {
      seen = { method: request.method, headers: request.headers, body };
      response.writeHead(201, {
        'content-type': 'text/event-stream',
        'x-request-id': 'req_7',
        'set-cookie': ['a=1', 'b=2'],
      });
      response.write('data: one\n\n');
      void secondPiece.then(() => response.end('data: two\n\n'));
    });

    const response = await createLeanFetch()(`${upstream.url}/v1/chat?x=1`, {
      method: 'POST',
      headers: new Headers({ 'content-type': 'application/json', authorization: 'Bearer sk-test' }),
      body: '{"é":1}',
    });

    expect(seen).toEqual({
      method: 'POST',
      headers: expect.objectContaining({
        'content-type': 'application/json',
        authorization: 'Bearer sk-test',
        'content-length': String(Buffer.byteLength('{"é":1}')),
      }) as unknown,
      body: '{"é":1}',
    });
    expect([response.status, response.ok, response.url]).toEqual([201, true, `${upstream.url}/v1/chat?x=1`]);
    expect(response.headers.get('X-Request-Id')).toBe('req_7');
    expect(response.headers.get('missing')).toBeNull();
    expect(response.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    expect([...response.headers.keys()]).toEqual(expect.arrayContaining(['content-type', 'x-request-id']));
    // The first piece arrives while the upstream still holds the second: the body streams.
    const reader = bodyReader(response)!;
    expect(Buffer.from((await reader.read()).value!).toString()).toBe('data: one\n\n');
    finish();
    expect(Buffer.from((await reader.read()).value!).toString()).toBe('data: two\n\n');
    expect((await reader.read()).done).toBe(true);
  });

  it('gives the standard web body, text and json to any other reader', async () => {
    upstream = await Upstream.start((_request, response) => {
      response.writeHead(400, { 'content-type': 'application/json' });
      response.end('{"error":{"message":"bad"}}');
    });
    const leanFetch = createLeanFetch();

    const refused = await leanFetch(upstream.url, {});
    expect([refused.status, refused.ok]).toEqual([400, false]);
    expect(await refused.json()).toEqual({ error: { message: 'bad' } });
    expect(refused.bodyUsed).toBe(true);

    const web = await leanFetch(upstream.url, {});
    const chunks: string[] = [];
    for await (const chunk of web.body as unknown as AsyncIterable<Uint8Array>) {
      chunks.push(Buffer.from(chunk).toString());
    }
    expect(chunks.join('')).toBe('{"error":{"message":"bad"}}');
    // Once the web body is taken, a reader gets that web body (read out), not the Node stream a second time.
    await expect(bodyReader(web)?.read()).resolves.toMatchObject({ done: true });
  });

  it('keeps the connection for the next request once a body was read to its end', async () => {
    upstream = await Upstream.start((_request, response) => response.end('ok'));
    const leanFetch = createLeanFetch();

    expect(await readAll(await leanFetch(upstream.url, {}))).toBe('ok');
    // undici frees the connection just after the body's end, as the global fetch does: a request sent in the
    // same turn of the event loop would open another. A stream's next request never comes that soon.
    await new Promise((resolve) => setImmediate(resolve));
    expect(await (await leanFetch(upstream.url, {})).text()).toBe('ok');

    expect(upstream.sockets).toHaveLength(1);
  });

  it('aborting mid-body fails the read and closes the upstream connection at once', async () => {
    upstream = await Upstream.start((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write('data: one\n\n');
    });
    const controller = new AbortController();
    const response = await createLeanFetch()(upstream.url, { signal: controller.signal });
    const reader = bodyReader(response)!;
    await reader.read();

    const closed = once(upstream.sockets[0], 'close');
    controller.abort();

    await expect(reader.read()).rejects.toMatchObject({ name: 'AbortError' });
    await closed;
    expect(upstream.closed).toHaveLength(1);
  });

  it('a connection the upstream cuts mid-body fails the waiting read, after the bytes that came before', async () => {
    upstream = await Upstream.start((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write('data: one\n\n');
    });
    const response = await createLeanFetch()(upstream.url, {});
    const reader = bodyReader(response)!;
    expect(Buffer.from((await reader.read()).value!).toString()).toBe('data: one\n\n');

    const waiting = reader.read();
    upstream.sockets[0].destroy();

    await expect(waiting).rejects.toBeInstanceOf(Error);
    await expect(reader.read()).rejects.toBeInstanceOf(Error);
  });

  it('hands on bytes that came while no read waited, in order, past the pause limit too', async () => {
    const pieces = ['a', 'b', 'c'].map((letter) => letter.repeat(100 * 1024));
    let sent!: () => void;
    const allSent = new Promise<void>((resolve) => (sent = resolve));
    upstream = await Upstream.start((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      pieces.forEach((piece) => response.write(piece));
      response.end(() => sent());
    });
    const response = await createLeanFetch()(upstream.url, {});
    const reader = bodyReader(response)!;
    // Nobody reads until the whole body is sent: it queues, and the stream pauses past the limit.
    await allSent;
    await new Promise((resolve) => setImmediate(resolve));

    let text = '';
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      text += Buffer.from(read.value).toString('utf8');
    }
    expect(text).toBe(pieces.join(''));
  });

  it('cancelling the reader closes the upstream connection', async () => {
    upstream = await Upstream.start((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write('data: one\n\n');
    });
    const reader = bodyReader(await createLeanFetch()(upstream.url, {}))!;
    await reader.read();
    const closed = once(upstream.sockets[0], 'close');

    reader.cancel();

    await closed;
    await expect(reader.read()).rejects.toBeInstanceOf(Error);
  });

  it('aborting before the answer rejects with the abort reason and closes the connection', async () => {
    upstream = await Upstream.start(() => undefined);
    const controller = new AbortController();
    const answered = createLeanFetch()(upstream.url, {
      method: 'POST',
      body: '{}',
      signal: controller.signal,
    });
    while (upstream.sockets.length === 0) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    const closed = once(upstream.sockets[0], 'close');

    controller.abort();

    await expect(answered).rejects.toMatchObject({ name: 'AbortError' });
    await closed;
  });

  it('rejects when the connection is refused, without the credentials in the error', async () => {
    const failure = await createLeanFetch()(await refusedUrl(), {
      headers: new Headers({ authorization: 'Bearer sk-secret-123' }),
    }).catch((error: unknown) => error);

    expect(failure).toMatchObject({ code: 'ECONNREFUSED' });
    expect(inspect(failure, { depth: 10 })).not.toContain('sk-secret-123');
  });

  it('speaks https, verifying the certificate against the CA it is given', async () => {
    upstream = await Upstream.start((_request, response) => response.end('secure'), true);

    const response = await createLeanFetch({ ca: tlsFile('ca.pem') })(`${upstream.url}/x`, {});

    expect(await response.text()).toBe('secure');
  });

  it('refuses an https upstream whose certificate another CA signed (and by default: it is not a public one)', async () => {
    upstream = await Upstream.start((_request, response) => response.end('secure'), true);

    await expect(createLeanFetch({ ca: tlsFile('other-ca.pem') })(upstream.url, {})).rejects.toMatchObject({
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
    await expect(createLeanFetch()(upstream.url, {})).rejects.toMatchObject({
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
  });
});

describe('OpenAiCompatibleProvider over the lean fetch', () => {
  const request = { streamId: 's', model: 'm', messages: [{ role: 'user' as const, content: 'hi' }] };

  async function firstFailure(provider: OpenAiCompatibleProvider): Promise<unknown> {
    try {
      for await (const chunk of provider.stream(request, new AbortController().signal)) {
        void chunk;
      }
    } catch (error) {
      return error;
    }
    return undefined;
  }

  it('sends through the global fetch instead when the environment names a proxy (only it honours one)', async () => {
    const upstream = await Upstream.start((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"object":"list","data":[]}');
    });
    const proxyVariables = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'];
    const saved = proxyVariables.map((name) => [name, process.env[name]] as const);
    proxyVariables.forEach((name) => delete process.env[name]);
    const globalFetch = jest.spyOn(globalThis, 'fetch');
    process.env['HTTPS_PROXY'] = 'http://127.0.0.1:9';
    try {
      const proxied = new OpenAiCompatibleProvider({ baseURL: upstream.url, maxRetries: 0 });
      delete process.env['HTTPS_PROXY'];
      const direct = new OpenAiCompatibleProvider({ baseURL: upstream.url, maxRetries: 0 });

      await direct.ping(new AbortController().signal);
      expect(globalFetch).not.toHaveBeenCalled();
      // NODE_USE_ENV_PROXY is not set in the test, so the global fetch still connects directly.
      await proxied.ping(new AbortController().signal);
      expect(globalFetch).toHaveBeenCalledTimes(1);
    } finally {
      for (const [name, value] of saved) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      globalFetch.mockRestore();
      await upstream.stop();
    }
  });

  it('reports a refused connection as upstream_unavailable, in its own words', async () => {
    const provider = new OpenAiCompatibleProvider({
      baseURL: await refusedUrl(),
      apiKey: 'sk-secret-123',
      maxRetries: 0,
    });

    const failure = await firstFailure(provider);

    expect(failure).toBeInstanceOf(UpstreamError);
    expect(failure).toMatchObject({
      code: 'upstream_unavailable',
      message: 'The model could not be reached.',
    });
  });

  it('retries a 503 before the first byte, then streams the answer', async () => {
    let calls = 0;
    const upstream = await Upstream.start((_request, response) => {
      calls += 1;
      if (calls === 1) {
        response.writeHead(503, { 'content-type': 'application/json', 'retry-after-ms': '10' });
        response.end('{"error":{"message":"busy"}}');
        return;
      }
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      const delta = (content: string | null, finish: string | null) =>
        `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }] })}\n\n`;
      response.end(`${delta('hé', null)}${delta(null, 'stop')}data: [DONE]\n\n`);
    });
    try {
      const provider = new OpenAiCompatibleProvider({ baseURL: upstream.url, maxRetries: 1 });

      const chunks = [];
      for await (const batch of provider.stream(request, new AbortController().signal)) {
        chunks.push(...batch);
      }

      expect(calls).toBe(2);
      expect(chunks).toEqual([
        { kind: 'text', text: 'hé' },
        { kind: 'finish', reason: 'stop' },
      ]);
    } finally {
      await upstream.stop();
    }
  });

  it('maps a refusal to upstream_rejected, and aborting the stream closes the upstream connection', async () => {
    const upstream = await Upstream.start((request, response) => {
      if (request.headers.authorization !== 'Bearer sk-right') {
        response.writeHead(401, { 'content-type': 'application/json' });
        response.end('{"error":{"message":"Incorrect API key provided: sk-wrong"}}');
        return;
      }
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write(
        `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: { content: 'a' }, finish_reason: null }] })}\n\n`,
      );
    });
    try {
      const wrong = new OpenAiCompatibleProvider({
        baseURL: upstream.url,
        apiKey: 'sk-wrong',
        maxRetries: 0,
      });
      const refusal = await firstFailure(wrong);
      expect(refusal).toMatchObject({ code: 'upstream_rejected', status: 401 });
      expect(String((refusal as Error).message)).not.toContain('sk-wrong');

      const right = new OpenAiCompatibleProvider({
        baseURL: upstream.url,
        apiKey: 'sk-right',
        maxRetries: 0,
      });
      const controller = new AbortController();
      const opened = upstream.sockets.length;
      const chunks = right.stream(request, controller.signal)[Symbol.asyncIterator]();
      expect((await chunks.next()).value).toEqual([{ kind: 'text', text: 'a' }]);
      const socket = upstream.sockets[opened];
      const closed = once(socket, 'close');

      controller.abort();

      await closed;
      // The provider does not report an abort it was asked for as the upstream's failure: the caller stopped.
      await chunks.next().catch(() => undefined);
    } finally {
      await upstream.stop();
    }
  });
});
