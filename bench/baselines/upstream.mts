/**
 * What every raw relay does with the upstream, and nothing more: POST the chat request with stream: true, parse the
 * SSE with eventsource-parser, hand each content delta on. No validation, no registry, no auth, no metrics: the
 * floor that the gateway's own work is measured against.
 *
 * It reads the upstream with the same client as the gateway (undici's Dispatcher `request` over one keep-alive
 * Agent, the gateway's lean fetch): with Node's global fetch here, the floor cost about 1 ms of CPU per stream and
 * 17 KB per open stream more than the gateway's own upstream read, and the ratios would have credited the gateway
 * with a cheaper HTTP client instead of measuring its own work.
 */
import { createParser } from 'eventsource-parser';
import { Agent } from 'undici';

export interface RelayRequest {
  content: string;
}

const dispatcher = new Agent();

export async function relayTokens(
  upstream: string,
  request: RelayRequest,
  onToken: (text: string) => void,
  signal: AbortSignal,
): Promise<void> {
  const url = new URL(`${upstream}/chat/completions`);
  const response = await dispatcher.request({
    origin: url.origin,
    path: url.pathname,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'simulator',
      stream: true,
      messages: [{ role: 'user', content: request.content }],
    }),
    signal,
  });
  if (response.statusCode !== 200) {
    response.body.destroy();
    throw new Error(`upstream answered ${response.statusCode}`);
  }
  const parser = createParser({
    onEvent: (message) => {
      if (message.data === '[DONE]') return;
      const text = (JSON.parse(message.data) as { choices: { delta?: { content?: string } }[] }).choices[0]
        ?.delta?.content;
      if (text) onToken(text);
    },
  });
  const decoder = new TextDecoder();
  for await (const chunk of response.body) {
    parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }));
  }
}

/** The gateway's listen backlog (apps/api/src/main.ts), so a connection burst meets every target alike. */
export const BACKLOG = 4096;

export function listenLine(name: string, port: number): void {
  process.stdout.write(`${name} listening on http://127.0.0.1:${port}\n`);
}
