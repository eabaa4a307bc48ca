import OpenAI from 'openai';
import { decode, retryAfterMs } from './openai-compatible.provider';

/** A streamed response whose body arrives in exactly these pieces (bytes, so a piece can split a character). */
function responseOf(pieces: (string | Uint8Array)[]): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      pieces.forEach((piece) =>
        controller.enqueue(typeof piece === 'string' ? encoder.encode(piece) : piece),
      );
      controller.close();
    },
  });
  return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
}

const chunk = (content: string) =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;

async function contents(response: Response): Promise<string[]> {
  const texts: string[] = [];
  for await (const parsed of decode(response)) {
    texts.push(parsed.choices[0]?.delta?.content ?? '');
  }
  return texts;
}

describe('decode: the upstream body as chat-completion chunks', () => {
  it('reads every chunk, whatever the network split, multi-byte characters included, and stops at [DONE]', async () => {
    const wire = new TextEncoder().encode(
      `${chunk('héllo')}${chunk(' 🚀')}: keep-alive\n\n${chunk('!')}data: [DONE]\n\n${chunk('after done')}`,
    );
    // Split every 7 bytes: lines, events and UTF-8 sequences all break across reads.
    const pieces = Array.from({ length: Math.ceil(wire.length / 7) }, (_, index) =>
      wire.slice(index * 7, index * 7 + 7),
    );

    expect(await contents(responseOf(pieces))).toEqual(['héllo', ' 🚀', '!']);
  });

  it('hands on what came before an error object, then throws it as the SDK would', async () => {
    const texts: string[] = [];
    const reading = (async () => {
      for await (const parsed of decode(
        responseOf([chunk('a'), 'data: {"error":{"message":"overloaded"}}\n\n', chunk('b')]),
      )) {
        texts.push(parsed.choices[0]?.delta?.content ?? '');
      }
    })();

    await expect(reading).rejects.toBeInstanceOf(OpenAI.APIError);
    expect(texts).toEqual(['a']);
  });

  it('throws a SyntaxError on data that is not JSON', async () => {
    await expect(contents(responseOf([chunk('a'), 'data: {"choices": [\n\n']))).rejects.toBeInstanceOf(
      SyntaxError,
    );
  });

  it('reads the rest of the body after [DONE] instead of cancelling it, so the connection is kept', async () => {
    let cancelled = false;
    let closed!: () => void;
    const drained = new Promise<void>((resolve) => (closed = resolve));
    const pieces = [chunk('a'), 'data: [DONE]\n\n', ': trailing comment\n\n'];
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const piece = pieces.shift();
        if (piece === undefined) {
          controller.close();
          closed();
        } else {
          controller.enqueue(new TextEncoder().encode(piece));
        }
      },
      cancel() {
        cancelled = true;
      },
    });

    expect(await contents(new Response(body))).toEqual(['a']);
    await drained;
    expect(cancelled).toBe(false);
  });

  it('cancels the body when its reader stops before the end', async () => {
    let cancelled!: () => void;
    const cancel = new Promise<void>((resolve) => (cancelled = resolve));
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new TextEncoder().encode(chunk('again')));
      },
      cancel: () => cancelled(),
    });
    for await (const parsed of decode(new Response(body))) {
      expect(parsed.choices[0]?.delta?.content).toBe('again');
      break;
    }

    await cancel;
  });

  it('ends without [DONE] when the body ends (the provider then reports the missing finish)', async () => {
    expect(await contents(responseOf([chunk('a')]))).toEqual(['a']);
  });
});

describe('retryAfterMs', () => {
  const headers = (init: Record<string, string>) => new Headers(init);

  it('prefers retry-after-ms', () => {
    expect(retryAfterMs(headers({ 'retry-after-ms': '1500', 'retry-after': '9' }))).toBe(1500);
  });

  it('reads retry-after in seconds', () => {
    expect(retryAfterMs(headers({ 'retry-after': '2' }))).toBe(2000);
  });

  it('reads retry-after as an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMs(headers({ 'retry-after': 'Thu, 01 Jan 2026 00:00:03 GMT' }), now)).toBe(3000);
  });

  it('is undefined when absent or unreadable', () => {
    expect(retryAfterMs(undefined)).toBeUndefined();
    expect(retryAfterMs(headers({ 'retry-after': 'soon' }))).toBeUndefined();
  });
});
