import { readCapped, UpstreamError } from '@app/completion';
import { OpenAiError } from './openai-error';

/** OpenAI's model list: `data` is what the gateway reads (and filters); every other field is relayed as it is. */
export interface ModelListBody {
  data: { id: string }[];
  [field: string]: unknown;
}

/** A model list is a few kilobytes; an upstream sending more is not sending a model list. */
const MAX_MODEL_LIST_BYTES = 1024 * 1024;

/**
 * The upstream's model list, held for `ttlMs` (0: fetched for every caller), and fetched once for callers that
 * come together: however many clients ask, the upstream is asked at most once per `ttlMs` plus once per burst.
 */
export class ModelList {
  private cached: { list: ModelListBody; until: number } | undefined;
  private loading: Promise<ModelListBody> | undefined;

  constructor(
    private readonly ttlMs: number,
    private readonly fetchList: (signal: AbortSignal) => Promise<globalThis.Response>,
  ) {}

  get(timeoutMs: number): Promise<ModelListBody> {
    if (this.cached !== undefined && this.cached.until > Date.now()) {
      return Promise.resolve(this.cached.list);
    }
    this.loading ??= this.load(timeoutMs).finally(() => (this.loading = undefined));
    return this.loading;
  }

  private async load(timeoutMs: number): Promise<ModelListBody> {
    let bytes: Buffer | undefined;
    try {
      // Not the asking client's signal: its leaving must not fail the others waiting on the same fetch.
      const response = await this.fetchList(AbortSignal.timeout(timeoutMs));
      bytes = await readCapped(response, MAX_MODEL_LIST_BYTES);
    } catch (error) {
      throw error instanceof OpenAiError
        ? error
        : OpenAiError.fromUpstream(
            new UpstreamError('upstream_unavailable', 'The model list could not be fetched.'),
          );
    }
    const list = bytes === undefined ? undefined : modelListOf(parsed(bytes));
    if (list === undefined) {
      throw OpenAiError.fromUpstream(
        new UpstreamError('upstream_protocol', 'The model sent no valid model list.'),
      );
    }
    if (this.ttlMs > 0) {
      this.cached = { list, until: Date.now() + this.ttlMs };
    }
    return list;
  }
}

function parsed(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
}

function modelListOf(value: unknown): ModelListBody | undefined {
  const list = value as Partial<ModelListBody> | null;
  return typeof list === 'object' &&
    list !== null &&
    Array.isArray(list.data) &&
    list.data.every((model) => typeof model?.id === 'string')
    ? (list as ModelListBody)
    : undefined;
}
