/**
 * What every raw relay does with the upstream, and nothing more: POST the chat request with stream: true, parse the
 * SSE with eventsource-parser, hand each content delta on. No validation, no registry, no auth, no metrics: the
 * floor that the gateway's own work is measured against.
 */
import { createParser } from 'eventsource-parser';

export interface RelayRequest {
  content: string;
}

export async function relayTokens(
  upstream: string,
  request: RelayRequest,
  onToken: (text: string) => void,
  signal: AbortSignal,
): Promise<void> {
  const response = await fetch(`${upstream}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'simulator',
      stream: true,
      messages: [{ role: 'user', content: request.content }],
    }),
    signal,
  });
  if (!response.ok || !response.body) {
    throw new Error(`upstream answered ${response.status}`);
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
