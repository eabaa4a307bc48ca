import type { ProblemDetails } from '@app/contracts';

/**
 * A failure outside the stream's own events: a refusal before streaming (HTTP problem+json, Socket.IO ack or
 * handshake error) or a lost connection. `code` is the contract's refusal code, or `network`.
 */
export class TransportError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'TransportError';
  }

  get needsCredentials(): boolean {
    return this.code === 'unauthorized' || this.code === 'forbidden';
  }

  static async fromResponse(response: Response): Promise<TransportError> {
    const problem = await readProblem(response);
    const code = problem?.code ?? `http_${response.status}`;
    const message =
      problem?.detail ||
      problem?.title ||
      `The server answered ${response.status} ${response.statusText}`.trim();
    const retryAfterSeconds = Number(response.headers.get('Retry-After'));
    const retryable = response.status === 429 || response.status >= 500;
    return new TransportError(
      code,
      message,
      retryable,
      retryAfterSeconds > 0 ? retryAfterSeconds * 1000 : undefined,
    );
  }

  static network(cause: unknown): TransportError {
    const reason = cause instanceof Error && cause.message ? ` (${cause.message})` : '';
    return new TransportError('network', `Could not reach the server${reason}.`, true);
  }
}

async function readProblem(response: Response): Promise<Partial<ProblemDetails> | null> {
  try {
    return (await response.json()) as Partial<ProblemDetails>;
  } catch {
    return null;
  }
}
