/**
 * Every OpenTelemetry name the gateway emits, in one place. The GenAI semantic conventions are still in
 * development (they moved to their own repository, semantic-conventions-genai, and names have changed before:
 * `gen_ai.system` became `gen_ai.provider.name`); when they change again, they change here. Copied rather than
 * imported from `@opentelemetry/semantic-conventions`, whose GenAI exports are deprecated there for that move.
 */

/** Span and metric attributes of the GenAI client conventions. */
export const GEN_AI = {
  operationName: 'gen_ai.operation.name',
  providerName: 'gen_ai.provider.name',
  requestModel: 'gen_ai.request.model',
  requestStream: 'gen_ai.request.stream',
  responseModel: 'gen_ai.response.model',
  responseFinishReasons: 'gen_ai.response.finish_reasons',
  responseTimeToFirstChunk: 'gen_ai.response.time_to_first_chunk',
  usageInputTokens: 'gen_ai.usage.input_tokens',
  usageOutputTokens: 'gen_ai.usage.output_tokens',
  usageReasoningOutputTokens: 'gen_ai.usage.reasoning.output_tokens',
  tokenType: 'gen_ai.token.type',
  /** Content: only with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT (see telemetry-settings.ts). */
  inputMessages: 'gen_ai.input.messages',
  outputMessages: 'gen_ai.output.messages',
} as const;

/** `gen_ai.operation.name`: the gateway only ever chats. */
export const GEN_AI_OPERATION_CHAT = 'chat';

/** `gen_ai.token.type` values of `gen_ai.client.token.usage`. */
export const GEN_AI_TOKEN_TYPE = { input: 'input', output: 'output' } as const;

/** The GenAI client metrics, with the unit and bucket boundaries the conventions give for each. */
export const GEN_AI_METRICS = {
  operationDuration: {
    name: 'gen_ai.client.operation.duration',
    unit: 's',
    description: 'GenAI operation duration.',
    buckets: [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92],
  },
  tokenUsage: {
    name: 'gen_ai.client.token.usage',
    unit: '{token}',
    description: 'Number of input and output tokens used.',
    buckets: [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864],
  },
  timeToFirstChunk: {
    name: 'gen_ai.client.operation.time_to_first_chunk',
    unit: 's',
    description: 'Time to receive the first chunk in a streaming operation.',
    buckets: [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92],
  },
  timePerOutputChunk: {
    name: 'gen_ai.client.operation.time_per_output_chunk',
    unit: 's',
    description: 'Time per output chunk, for each chunk after the first, from the previous chunk.',
    buckets: [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5],
  },
} as const;

/** The general attribute the conventions use for a failed operation. */
export const ERROR_TYPE = 'error.type';

/** The conventions' opt-in for recording prompts and answers (off unless exactly `true`). */
export const CAPTURE_MESSAGE_CONTENT_ENV = 'OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT';

/** HTTP server span attributes (stable HTTP conventions). */
export const HTTP = {
  requestMethod: 'http.request.method',
  route: 'http.route',
  responseStatusCode: 'http.response.status_code',
} as const;

/** The gateway's own names: not GenAI conventions, kept here so every emitted name is in one file. */
export const GATEWAY = {
  /** The instrumentation scope of the tracer and meter. */
  scope: 'llm-stream-gateway',
  streamId: 'llm_gateway.stream.id',
  transport: 'llm_gateway.transport',
  deployment: 'llm_gateway.deployment',
  resumeAfterSeq: 'llm_gateway.resume.after_seq',
  routeReason: 'llm_gateway.route.reason',
  routeModel: 'llm_gateway.route.model',
  routeDeployment: 'llm_gateway.route.deployment',
  routeCode: 'llm_gateway.route.code',
} as const;

/**
 * Span events for what happens to a stream. `fallback`, `hedge`, `continuation` and `handover` are the
 * contract's `route` reasons; `resume` and `cancel` are a client's requests.
 */
export const STREAM_EVENTS = {
  fallback: 'llm_gateway.fallback',
  hedge: 'llm_gateway.hedge',
  continuation: 'llm_gateway.continuation',
  handover: 'llm_gateway.handover',
  resume: 'llm_gateway.resume',
  cancel: 'llm_gateway.cancel',
} as const;
