import type { SimulatorProfileInfo } from '@app/contracts';
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { echoPieces, generatedPieces } from './completion.text';
import { CompletionRun, type RunFault, type RunOutcome, type RunPlan } from './completion.run';
import { piecesText, remainingPieces, type ContinuationForm } from './continuation';
import { DEPLOYMENT_NAME_PATTERN, type ParsedFaultProfile } from './fault-profile';
import { EmissionScheduler } from './emission.scheduler';
import {
  DEFAULT_MODEL_NAME,
  DEFAULT_PROFILE,
  describeProfiles,
  LATENCY_PROFILES,
  modelProfiles,
  type LatencyProfile,
} from './latency.profiles';
import { openAiError, type OpenAiError } from './openai.wire';
import { seededRandom, stableHash } from './seeded.random';
import {
  InvalidDirectiveError,
  parseDirectives,
  type FaultDirective,
  type ParsedPrompt,
  type RefusalFault,
  type SimDirectives,
} from './sim-directive.parser';
import type { SimulatorOptions, SimulatorStats } from './simulator-options.interface';
import { SimulatorDeployment, type Arrival, type DeploymentStats } from './simulator.deployment';
import { countTextTokens, loadTokenizer, type TokenPiece } from './token.splitter';

/** Far above any real prompt, low enough that a runaway client cannot make the simulator buffer gigabytes. */
const MAX_BODY_BYTES = 8 * 1024 * 1024;
/** OpenAI's documented per-message and per-reply overhead, so prompt_tokens lands where the real API's does. */
const TOKENS_PER_MESSAGE = 3;
const TOKENS_PER_REPLY = 3;
/** Mixed into the seed for the timing PRNG so that the text and the schedule are independent streams. */
const SCHEDULE_SALT = 0x9e3779b9;
/** Mixed into the seed for a reasoning model's thinking, so that it differs from its answer. */
const REASONING_SALT = 0x5bd1e995;
/** The reasoning model: the default profile, thinking in `reasoning_content` before every answer. */
export const REASONING_MODEL_NAME = 'simulator-reasoning';
/** The header that carries the in-process simulator's per-process secret. */
export const SIMULATOR_KEY_HEADER = 'x-simulator-key';
/** `/d/<name>/<rest>`: a named deployment's routes. */
const DEPLOYMENT_PATH = /^\/d\/([^/]+)(\/.*)$/;

interface ChatMessageBody {
  role: string;
  content: unknown;
  prefix?: unknown;
}

class RequestError extends Error {
  constructor(
    readonly status: number,
    readonly body: OpenAiError,
    readonly headers: Record<string, string> = {},
  ) {
    super(body.error.message);
  }
}

/**
 * An OpenAI-compatible chat-completions server on plain `node:http`: no framework between the socket and the
 * scheduler, so it stays cheap enough to feed the benchmark and can run standalone.
 */
export class SimulatorServer {
  readonly profiles: SimulatorProfileInfo[];
  private readonly models: ReadonlyMap<string, LatencyProfile>;
  private readonly defaultModel: string;
  private readonly authorization: string | undefined;
  private readonly scheduler = new EmissionScheduler();
  private readonly server: Server;
  private readonly counters: SimulatorStats = { requests: 0, active: 0, completed: 0, aborted: 0, faults: 0 };
  private readonly modelList: string;
  private readonly deployments: ReadonlyMap<string, SimulatorDeployment>;
  private readonly key: Buffer | undefined;
  private readonly checkHost: boolean;
  /** `host:port` as a client addressing the listening socket sends it in `Host`; set by `listen`. */
  private expectedHost: string | undefined;
  private origin: string | undefined;

  constructor(options: SimulatorOptions) {
    this.defaultModel = options.modelName ?? DEFAULT_MODEL_NAME;
    const profile = options.profile ?? DEFAULT_PROFILE;
    this.models = new Map([
      ...modelProfiles(this.defaultModel, profile),
      [REASONING_MODEL_NAME, LATENCY_PROFILES[profile]],
    ]);
    this.profiles = describeProfiles(this.models);
    this.authorization = options.apiKey === undefined ? undefined : `Bearer ${options.apiKey}`;
    const created = Math.floor(Date.now() / 1000);
    this.modelList = JSON.stringify({
      object: 'list',
      data: [...this.models.keys()].map((id) => ({ id, object: 'model', created, owned_by: 'simulator' })),
    });
    this.deployments = new Map(
      Object.entries(options.deployments ?? {}).map(([name, profile]) => {
        if (!DEPLOYMENT_NAME_PATTERN.test(name)) {
          throw new Error(
            `simulator deployment name ${JSON.stringify(name)}: use letters, digits, ., _ or -`,
          );
        }
        return [name, new SimulatorDeployment(name, profile)];
      }),
    );
    this.key = options.key === undefined ? undefined : Buffer.from(options.key);
    this.checkHost = options.checkHost ?? false;
    this.server = createServer((request, response) => this.handle(request, response));
  }

  /** Resolves to the base URL an OpenAI client takes, ending in `/v1`. Port 0 picks a free port. */
  async listen(port = 0, host = '127.0.0.1'): Promise<string> {
    await loadTokenizer();
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      // A large backlog, as the gateway has: benchmarks open thousands of streams within seconds.
      this.server.listen(port, host, 4096, () => {
        this.server.off('error', reject);
        const address = this.server.address() as AddressInfo;
        const hostname = address.family === 'IPv6' ? `[${address.address}]` : address.address;
        this.expectedHost = `${hostname}:${address.port}`;
        this.origin = `http://${this.expectedHost}`;
        resolve(`${this.origin}/v1`);
      });
    });
  }

  /** Stops listening and cuts every open connection, stalled streams included, so nothing is left hanging. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) {
        resolve();
        return;
      }
      this.server.close(() => resolve());
      this.server.closeAllConnections();
      this.scheduler.clear();
    });
  }

  stats(): SimulatorStats {
    return { ...this.counters };
  }

  /** The base URL of a named deployment, ending in `/v1`; the server must be listening. */
  urlFor(name: string): string {
    this.deployment(name);
    if (this.origin === undefined) throw new Error('the simulator is not listening yet');
    return `${this.origin}/d/${name}/v1`;
  }

  /** What a named deployment has seen so far (a copy). */
  deploymentStats(name: string): DeploymentStats {
    return this.deployment(name).stats();
  }

  get deploymentNames(): string[] {
    return [...this.deployments.keys()];
  }

  private deployment(name: string): SimulatorDeployment {
    const deployment = this.deployments.get(name);
    if (deployment === undefined)
      throw new Error(`the simulator has no deployment named ${JSON.stringify(name)}`);
    return deployment;
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    response.setHeader('x-request-id', `req_${randomUUID().replaceAll('-', '')}`);
    if (this.checkHost && request.headers.host !== this.expectedHost) {
      // Another name for this address is what a DNS-rebinding page sends: refuse before anything is read.
      sendJson(
        response,
        421,
        openAiError(
          'This server answers only requests addressed to it.',
          'invalid_request_error',
          null,
          'misdirected_request',
        ),
      );
      return;
    }
    if (this.key !== undefined && !sameSecret(request.headers[SIMULATOR_KEY_HEADER], this.key)) {
      sendJson(
        response,
        401,
        openAiError(
          `Missing or wrong ${SIMULATOR_KEY_HEADER} header.`,
          'invalid_request_error',
          null,
          'invalid_api_key',
        ),
      );
      return;
    }
    if (this.authorization !== undefined && request.headers.authorization !== this.authorization) {
      const message = request.headers.authorization
        ? 'Incorrect API key provided.'
        : "You didn't provide an API key. Provide it in the Authorization header as `Bearer <key>`.";
      sendJson(response, 401, openAiError(message, 'invalid_request_error', null, 'invalid_api_key'));
      return;
    }
    const path = (request.url ?? '/').split('?', 1)[0];
    const method = request.method ?? 'GET';
    const inDeployment = DEPLOYMENT_PATH.exec(path);
    if (inDeployment !== null) {
      const deployment = this.deployments.get(inDeployment[1]);
      if (deployment !== undefined) {
        this.route(`${method} ${inDeployment[2]}`, request, response, deployment);
        return;
      }
    }
    this.route(`${method} ${path}`, request, response, undefined);
  }

  private route(
    route: string,
    request: IncomingMessage,
    response: ServerResponse,
    deployment: SimulatorDeployment | undefined,
  ): void {
    switch (route) {
      case 'GET /v1/models':
        sendJson(
          response,
          200,
          deployment?.profile.model === undefined ? this.modelList : modelListOf(deployment.profile.model),
        );
        return;
      case 'GET /v1/simulator/stats':
        sendJson(response, 200, this.counters);
        return;
      case 'GET /stats':
        if (deployment === undefined) break;
        sendJson(response, 200, deployment.stats());
        return;
      case 'POST /v1/chat/completions': {
        this.counters.requests++;
        const arrival = deployment?.arrive();
        readJson(request)
          .then((body) => this.complete(body, response, deployment, arrival))
          .catch((error: unknown) => sendError(response, error, arrival));
        return;
      }
    }
    sendJson(
      response,
      404,
      openAiError(`Unknown request URL: ${route}.`, 'invalid_request_error', null, 'unknown_url'),
    );
  }

  private complete(
    body: unknown,
    response: ServerResponse,
    deployment?: SimulatorDeployment,
    arrival?: Arrival,
  ): void {
    if (response.destroyed) return;
    const request = validateChatRequest(body);
    if (arrival !== undefined) {
      arrival.record.requestedModel = request.model ?? null;
      arrival.record.continuation = request.continuation?.form ?? null;
    }
    if (deployment !== undefined && arrival !== undefined) {
      if (this.misbehaveBeforeHeaders(deployment, arrival, response)) return;
      this.refuseForProfile(deployment, arrival, request);
    }
    const model = deployment?.profile.model ?? request.model ?? this.defaultModel;
    const modelProfile =
      deployment === undefined
        ? this.models.get(model)
        : latencyOf(
            deployment.profile,
            this.models.get(request.model ?? this.defaultModel) ?? this.models.get(this.defaultModel),
          );
    if (modelProfile === undefined) {
      throw new RequestError(
        404,
        openAiError(
          `The model \`${model}\` does not exist or you do not have access to it.`,
          'invalid_request_error',
          null,
          'model_not_found',
        ),
      );
    }
    const prompt = lastUserPrompt(request.messages);
    const { directives } = prompt;
    const fault = directives.fault;
    if (fault !== undefined) {
      this.counters.faults++;
      if (isRefusal(fault)) throw refusal(fault);
    }

    // The prompt alone seeds the answer (never the model, profile or deployment): two deployments give the same
    // answer, and a continuation, seeded by the messages before the text so far, is exactly the rest of it.
    const { continuation } = request;
    const prompted = continuation === undefined ? request.messages : request.messages.slice(0, -1);
    const seed = request.seed ?? messagesSeed(prompted);
    const answer = directives.echo ? echoPieces(prompt.text) : generatedPieces(seed, directives.tokens);
    const continued =
      continuation === undefined
        ? answer
        : continuationPieces(answer, continuation.prefix, request.messages, directives.tokens);
    // Mid-answer, the model has done its thinking: only a continuation from nothing thinks again.
    const midAnswer = continuation !== undefined && continuation.prefix !== '';
    const { reasoning, pieces, truncated } = withinMaxTokens(
      midAnswer ? undefined : reasoningPlan(request.model === REASONING_MODEL_NAME, directives, seed),
      continued,
      request.maxTokens,
    );
    const profileFault =
      deployment !== undefined && arrival !== undefined ? midStreamFault(deployment, arrival) : undefined;
    if (profileFault !== undefined && fault === undefined) this.counters.faults++;

    const run = new CompletionRun(
      {
        id: `chatcmpl-${randomUUID().replaceAll('-', '').slice(0, 24)}`,
        created: Math.floor(Date.now() / 1000),
        model,
        stream: request.stream,
        includeUsage: request.includeUsage && (deployment?.profile.usage ?? true),
        reportUsage: deployment?.profile.usage ?? true,
        emitTimestamps: directives.emitTimestamps,
        pieces,
        finishReason: truncated ? 'length' : 'stop',
        promptTokens: promptTokens(request.messages),
        profile: {
          ttftMs: (directives.ttftMs ?? modelProfile.ttftMs) + (deployment?.firstTokenDelayMs() ?? 0),
          tokensPerSecond: directives.tokensPerSecond ?? modelProfile.tokensPerSecond,
          jitter: directives.jitter ?? modelProfile.jitter,
        },
        random: seededRandom(seed ^ SCHEDULE_SALT),
        fault: fault !== undefined && 'after' in fault ? fault : profileFault,
        reasoning,
        record: arrival?.record,
      },
      response,
      this.scheduler,
      (outcome) => this.ended(outcome),
    );
    this.counters.active++;
    run.start();
  }

  /** A reset or a silence before any header, when the profile says so; true when it took the request. */
  private misbehaveBeforeHeaders(
    deployment: SimulatorDeployment,
    arrival: Arrival,
    response: ServerResponse,
  ): boolean {
    const beforeHeaders = deployment.profile.beforeHeaders;
    if (beforeHeaders === undefined || !deployment.applies(beforeHeaders, arrival)) return false;
    this.counters.faults++;
    if (beforeHeaders.action === 'reset') {
      response.socket?.destroy();
      return true;
    }
    // Silence: nothing is written and nothing scheduled; the client's giving up is what ends it.
    response.once('close', () => {
      arrival.record.aborted = true;
    });
    return true;
  }

  private refuseForProfile(deployment: SimulatorDeployment, arrival: Arrival, request: ChatRequest): void {
    const { refuse, rejectPrefill } = deployment.profile;
    if (refuse !== undefined && deployment.applies(refuse, arrival)) {
      this.counters.faults++;
      throw profileRefusal(refuse);
    }
    if (rejectPrefill && request.continuation !== undefined) {
      this.counters.faults++;
      throw prefillRefusal(request.continuation.form, request.messages.length - 1);
    }
  }

  private ended(outcome: RunOutcome): void {
    this.counters.active--;
    if (outcome === 'completed') this.counters.completed++;
    else if (outcome === 'aborted') this.counters.aborted++;
  }
}

interface ChatRequest {
  model?: string;
  messages: ChatMessageBody[];
  stream: boolean;
  includeUsage: boolean;
  maxTokens?: number;
  seed?: number;
  /** Set when the request asks to continue its final assistant message. */
  continuation?: { form: ContinuationForm; prefix: string };
}

function invalid(message: string, param: string | null, code: string | null = null): RequestError {
  return new RequestError(400, openAiError(message, 'invalid_request_error', param, code));
}

/** Checks what the simulator relies on, with OpenAI's messages; the rest of the body is accepted and ignored. */
function validateChatRequest(body: unknown): ChatRequest {
  if (!isRecord(body)) throw invalid('The request body must be a JSON object.', null);
  const { model, messages, stream, stream_options: streamOptions, seed } = body;
  if (model !== undefined && typeof model !== 'string') {
    throw invalid(`Invalid type for 'model': expected a string.`, 'model', 'invalid_type');
  }
  if (messages === undefined) {
    throw invalid(`Missing required parameter: 'messages'.`, 'messages', 'missing_required_parameter');
  }
  if (!Array.isArray(messages)) {
    throw invalid(`Invalid type for 'messages': expected an array.`, 'messages', 'invalid_type');
  }
  if (messages.length === 0) {
    throw invalid(
      `Invalid 'messages': empty array. Expected an array with minimum length 1.`,
      'messages',
      'empty_array',
    );
  }
  messages.forEach((message: unknown, index) => {
    if (!isRecord(message) || typeof message.role !== 'string') {
      throw invalid(
        `Invalid 'messages[${index}]': expected an object with a 'role'.`,
        `messages.[${index}]`,
        'invalid_type',
      );
    }
  });
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean') {
    throw invalid(`Invalid type for 'stream': expected a boolean.`, 'stream', 'invalid_type');
  }
  const includeUsage = isRecord(streamOptions) && streamOptions.include_usage === true;
  if (seed !== undefined && seed !== null && !Number.isInteger(seed)) {
    throw invalid(`Invalid type for 'seed': expected an integer.`, 'seed', 'invalid_type');
  }
  return {
    model,
    messages: messages as ChatMessageBody[],
    continuation: continuationOf(body, messages as ChatMessageBody[]),
    stream: stream === true,
    includeUsage: stream === true && includeUsage,
    maxTokens: maxTokens(body, 'max_completion_tokens') ?? maxTokens(body, 'max_tokens'),
    // Hashing keeps every integer (negative, or beyond 32 bits) a valid, well-spread PRNG seed.
    seed: typeof seed === 'number' ? stableHash(String(seed)) : undefined,
  };
}

/**
 * The two continuation forms: vLLM's `continue_final_message: true` (with `add_generation_prompt` not true, which
 * vLLM refuses alongside it), and DeepSeek's and Mistral's `prefix: true` on the final assistant message. A final
 * assistant message without either is an ordinary request, as it is to those servers.
 */
function continuationOf(
  body: Record<string, unknown>,
  messages: readonly ChatMessageBody[],
): ChatRequest['continuation'] {
  const { continue_final_message: continueFinal, add_generation_prompt: addGenerationPrompt } = body;
  if (continueFinal !== undefined && continueFinal !== null && typeof continueFinal !== 'boolean') {
    throw invalid(
      `Invalid type for 'continue_final_message': expected a boolean.`,
      'continue_final_message',
      'invalid_type',
    );
  }
  const lastIndex = messages.length - 1;
  messages.forEach((message, index) => {
    if (message.prefix === undefined || message.prefix === null || message.prefix === false) return;
    const param = `messages.[${index}].prefix`;
    if (message.prefix !== true)
      throw invalid(`Invalid type for '${param}': expected a boolean.`, param, 'invalid_type');
    if (index !== lastIndex || message.role !== 'assistant') {
      throw invalid(
        `'prefix' is allowed only on the final message, and only on an assistant's.`,
        param,
        'invalid_value',
      );
    }
  });
  const last = messages[lastIndex];
  if (continueFinal === true) {
    if (addGenerationPrompt === true) {
      throw invalid(
        'Cannot set both `continue_final_message` and `add_generation_prompt` to True.',
        'continue_final_message',
      );
    }
    if (last.role !== 'assistant') {
      throw invalid(
        'continue_final_message is set but the final message is not an assistant message: there is nothing to continue.',
        'continue_final_message',
      );
    }
    return { form: 'continue_final_message', prefix: contentText(last.content) };
  }
  return last.prefix === true ? { form: 'prefix', prefix: contentText(last.content) } : undefined;
}

/** The answer's seed: the messages' roles and text, and nothing else (not the model, nor the deployment). */
function messagesSeed(messages: readonly ChatMessageBody[]): number {
  return stableHash(JSON.stringify(messages.map((message) => [message.role, contentText(message.content)])));
}

/**
 * What a continuation streams: the rest of the answer the prompt seeds, when the text so far is its beginning.
 * Text the simulator did not write (edited, or from another seed) is continued as a model continues any text:
 * with a fresh answer, seeded by the whole conversation, text so far included, so it is deterministic too.
 */
function continuationPieces(
  answer: readonly TokenPiece[],
  prefix: string,
  messages: readonly ChatMessageBody[],
  tokens: number | undefined,
): readonly TokenPiece[] {
  if (piecesText(answer).startsWith(prefix)) return remainingPieces(answer, prefix.length, countTextTokens);
  return generatedPieces(messagesSeed(messages), tokens);
}

const MID_STREAM_KINDS = {
  cut: 'drop',
  stall: 'stall',
  malformed: 'malformed',
  end_without_done: 'end_without_done',
} as const satisfies Record<NonNullable<ParsedFaultProfile['midStream']>['action'], RunFault['kind']>;

function midStreamFault(deployment: SimulatorDeployment, arrival: Arrival): RunFault | undefined {
  const midStream = deployment.profile.midStream;
  if (midStream === undefined || !deployment.applies(midStream, arrival)) return undefined;
  return {
    kind: MID_STREAM_KINDS[midStream.action],
    after: midStream.afterTokens ?? Number.POSITIVE_INFINITY,
    afterBytes: midStream.afterBytes,
  };
}

function latencyOf(
  profile: ParsedFaultProfile,
  requested: LatencyProfile | undefined,
): LatencyProfile | undefined {
  const { latency } = profile;
  if (latency === undefined) return requested;
  return typeof latency === 'string' ? LATENCY_PROFILES[latency] : latency;
}

function modelListOf(model: string): string {
  const created = Math.floor(Date.now() / 1000);
  return JSON.stringify({
    object: 'list',
    data: [{ id: model, object: 'model', created, owned_by: 'simulator' }],
  });
}

/** Compared in constant time: the key is the one thing between a local process and the simulator. */
function sameSecret(given: string | string[] | undefined, key: Buffer): boolean {
  if (typeof given !== 'string') return false;
  const buffer = Buffer.from(given);
  return buffer.length === key.length && timingSafeEqual(buffer, key);
}

function maxTokens(body: Record<string, unknown>, key: string): number | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw invalid(`Invalid '${key}': expected an integer of at least 1.`, key, 'invalid_value');
  }
  return value;
}

/** Directives and `echo` read the last user message; content may be a string or OpenAI's array of parts. */
function lastUserPrompt(messages: readonly ChatMessageBody[]): ParsedPrompt {
  const last = messages.findLast((message) => message.role === 'user');
  try {
    return parseDirectives(last === undefined ? '' : contentText(last.content));
  } catch (error: unknown) {
    if (error instanceof InvalidDirectiveError) throw invalid(error.message, 'messages');
    throw error;
  }
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: unknown) => (isRecord(part) && typeof part.text === 'string' ? part.text : ''))
    .join('');
}

function promptTokens(messages: readonly ChatMessageBody[]): number {
  let total = TOKENS_PER_REPLY;
  for (const message of messages) total += TOKENS_PER_MESSAGE + countTextTokens(contentText(message.content));
  return total;
}

/** max_tokens counts BPE tokens; a piece that would cross the cap is left out whole rather than split. */
function capTokens(
  pieces: readonly TokenPiece[],
  cap: number | undefined,
): { pieces: readonly TokenPiece[]; truncated: boolean } {
  if (cap === undefined) return { pieces, truncated: false };
  let tokens = 0;
  for (let i = 0; i < pieces.length; i++) {
    tokens += pieces[i].tokens;
    if (tokens > cap) return { pieces: pieces.slice(0, i), truncated: true };
  }
  return { pieces, truncated: false };
}

/**
 * max_tokens (max_completion_tokens) counts the thinking too, as OpenAI's reasoning models do: the thinking is cut
 * first, and a cap the thinking used up leaves an empty answer that ends with `length`.
 */
function withinMaxTokens(
  reasoning: RunPlan['reasoning'],
  answer: readonly TokenPiece[],
  cap: number | undefined,
): { reasoning: RunPlan['reasoning']; pieces: readonly TokenPiece[]; truncated: boolean } {
  if (reasoning === undefined || cap === undefined) return { reasoning, ...capTokens(answer, cap) };
  const thinking = capTokens(reasoning.pieces, cap);
  const used = thinking.pieces.reduce((total, piece) => total + piece.tokens, 0);
  const kept = thinking.pieces.length > 0 ? { style: reasoning.style, pieces: thinking.pieces } : undefined;
  if (thinking.truncated) return { reasoning: kept, pieces: [], truncated: true };
  return { reasoning: kept, ...capTokens(answer, cap - used) };
}

/**
 * The reasoning model thinks in `reasoning_content` unless told otherwise; any model thinks when a directive asks
 * (`reasoning=<style>`, or `think=N` alone, which means `reasoning_content`). Without `think`, the length of the
 * thinking is drawn from the seed like an answer's.
 */
function reasoningPlan(
  reasoningModel: boolean,
  directives: SimDirectives,
  seed: number,
): RunPlan['reasoning'] {
  const style =
    directives.reasoning ?? (reasoningModel || directives.think !== undefined ? 'reasoning_content' : 'none');
  if (style === 'none' || directives.think === 0) return undefined;
  return { style, pieces: generatedPieces((seed ^ REASONING_SALT) >>> 0, directives.think) };
}

function isRefusal(fault: FaultDirective): fault is Extract<FaultDirective, { kind: RefusalFault }> {
  return !('after' in fault);
}

/** The status, headers and error body OpenAI sends for each kind of refusal. */
function refusal(fault: Extract<FaultDirective, { kind: RefusalFault }>): RequestError {
  switch (fault.kind) {
    case 'rate_limit':
      return new RequestError(
        429,
        openAiError(
          `Rate limit reached for requests. Please try again in ${fault.retryAfterMs}ms.`,
          'requests',
          null,
          'rate_limit_exceeded',
        ),
        {
          'retry-after': String(Math.ceil(fault.retryAfterMs / 1000)),
          'retry-after-ms': String(fault.retryAfterMs),
        },
      );
    case 'server_error':
      return new RequestError(
        500,
        openAiError(
          'The server had an error while processing your request. Sorry about that!',
          'server_error',
        ),
      );
    case 'unavailable':
      return new RequestError(
        503,
        openAiError('The engine is currently overloaded, please try again later.', 'server_error'),
      );
    case 'unauthorized':
      return new RequestError(
        401,
        openAiError('Incorrect API key provided.', 'invalid_request_error', null, 'invalid_api_key'),
      );
    case 'bad_request':
      return invalid('The simulator was asked to refuse this request ([sim fault=bad_request]).', 'messages');
  }
}

/** A deployment's `refuse`, in the shape each upstream sends it. */
function profileRefusal(refuse: NonNullable<ParsedFaultProfile['refuse']>): RequestError {
  switch (refuse.status) {
    case 429: {
      const { retryAfterMs, retryAfterHeaders } = refuse;
      if (retryAfterMs === undefined) {
        return new RequestError(
          429,
          openAiError('Rate limit reached for requests.', 'requests', null, 'rate_limit_exceeded'),
        );
      }
      const headers: Record<string, string> = {};
      if (retryAfterHeaders !== 'retry-after-ms')
        headers['retry-after'] = String(Math.ceil(retryAfterMs / 1000));
      if (retryAfterHeaders !== 'retry-after') headers['retry-after-ms'] = String(retryAfterMs);
      return new RequestError(
        429,
        openAiError(
          `Rate limit reached for requests. Please try again in ${retryAfterMs}ms.`,
          'requests',
          null,
          'rate_limit_exceeded',
        ),
        headers,
      );
    }
    case 500:
      return refusal({ kind: 'server_error' });
    case 503:
      return refusal({ kind: 'unavailable' });
    case 400:
      return refuse.code === 'content_filter' ? contentFilterRefusal() : contextLengthRefusal();
  }
}

function contextLengthRefusal(): RequestError {
  return invalid(
    "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. " +
      'Please reduce the length of the messages.',
    'messages',
    'context_length_exceeded',
  );
}

/** Azure OpenAI's: `type` null, `param` `prompt`, and the filter's verdict in `innererror`. */
function contentFilterRefusal(): RequestError {
  const safe = { filtered: false, severity: 'safe' };
  return new RequestError(400, {
    error: {
      message:
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. " +
        'Please modify your prompt and retry.',
      type: null,
      param: 'prompt',
      code: 'content_filter',
      status: 400,
      innererror: {
        code: 'ResponsibleAIPolicyViolation',
        content_filter_result: {
          hate: safe,
          self_harm: safe,
          sexual: safe,
          violence: { filtered: true, severity: 'medium' },
        },
      },
    },
  });
}

/** What a server that cannot continue a message answers: OpenAI's refusal of a field it does not know. */
function prefillRefusal(form: ContinuationForm, lastIndex: number): RequestError {
  return form === 'continue_final_message'
    ? invalid(
        'Unrecognized request argument supplied: continue_final_message',
        'continue_final_message',
        'unsupported_parameter',
      )
    : invalid(
        `Additional properties are not allowed ('prefix' was unexpected) - 'messages.${lastIndex}'`,
        `messages.[${lastIndex}].prefix`,
        'unsupported_parameter',
      );
}

function readJson(request: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) {
        chunks.push(chunk);
        return;
      }
      // Answer at once and let the rest drain unread; `connection: close` then frees the socket.
      request.off('data', onData);
      request.resume();
      reject(
        new RequestError(
          413,
          openAiError(`The request body exceeds ${MAX_BODY_BYTES} bytes.`, 'invalid_request_error'),
          { connection: 'close' },
        ),
      );
    };
    request.on('data', onData);
    request.on('error', reject);
    request.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(
          invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)",
            null,
          ),
        );
      }
    });
  });
}

function sendError(response: ServerResponse, error: unknown, arrival?: Arrival): void {
  if (error instanceof RequestError) {
    for (const [name, value] of Object.entries(error.headers)) response.setHeader(name, value);
    sendJson(response, error.status, error.body);
  } else {
    console.error('simulator: unexpected error', error);
    sendJson(response, 500, openAiError('The simulator failed unexpectedly.', 'server_error'));
  }
  if (arrival !== undefined && response.headersSent) arrival.record.status = response.statusCode;
}

function sendJson(response: ServerResponse, status: number, body: object | string): void {
  if (response.headersSent || response.destroyed) return;
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json' }).end(text);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
