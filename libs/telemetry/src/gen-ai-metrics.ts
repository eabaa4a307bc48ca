import type { Attributes } from '@opentelemetry/api';
import type { CompletionEvent } from '@app/contracts';
import { ERROR_TYPE, GEN_AI, GEN_AI_OPERATION_CHAT, GEN_AI_TOKEN_TYPE } from './gen-ai.constants';
import { telemetry } from './telemetry';

/** One chat operation as the GenAI client metrics see it. Times in seconds, as the conventions want them. */
export interface GenAiOperation {
  providerName: string;
  requestModel: string;
  responseModel?: string;
  durationSeconds: number;
  timeToFirstChunkSeconds?: number;
  /** For each chunk after the first, the time since the previous one. */
  chunkGapsSeconds?: readonly number[];
  usage?: { input?: number; output?: number };
  /** The contract error code when it failed. */
  error?: string;
}

/** Records one operation in the four GenAI client histograms; nothing when telemetry is off. */
export function recordGenAiOperation(operation: GenAiOperation): void {
  if (!telemetry.enabled) {
    return;
  }
  const instruments = telemetry.instruments;
  const attributes: Attributes = {
    [GEN_AI.operationName]: GEN_AI_OPERATION_CHAT,
    [GEN_AI.providerName]: operation.providerName,
    [GEN_AI.requestModel]: operation.requestModel,
  };
  if (operation.responseModel !== undefined) {
    attributes[GEN_AI.responseModel] = operation.responseModel;
  }
  instruments.operationDuration.record(
    operation.durationSeconds,
    operation.error === undefined ? attributes : { ...attributes, [ERROR_TYPE]: operation.error },
  );
  if (operation.usage?.input !== undefined) {
    instruments.tokenUsage.record(operation.usage.input, {
      ...attributes,
      [GEN_AI.tokenType]: GEN_AI_TOKEN_TYPE.input,
    });
  }
  if (operation.usage?.output !== undefined) {
    instruments.tokenUsage.record(operation.usage.output, {
      ...attributes,
      [GEN_AI.tokenType]: GEN_AI_TOKEN_TYPE.output,
    });
  }
  if (operation.timeToFirstChunkSeconds !== undefined) {
    instruments.timeToFirstChunk.record(operation.timeToFirstChunkSeconds, attributes);
  }
  for (const gap of operation.chunkGapsSeconds ?? []) {
    instruments.timePerOutputChunk.record(gap, attributes);
  }
}

/**
 * A finished stream's events as one operation: the request model from `start`, the serving model from the last
 * `route`, usage and timing from `done` (or the events' own times when it ended with an error), a gap per
 * reasoning or token chunk after the first. Called once per stream, when it ends; nothing when telemetry is off.
 * Only the buffered events are seen: a stream longer than the buffer has gaps for its last chunks only.
 */
export function recordStreamOperation(events: readonly CompletionEvent[], providerName: string): void {
  if (!telemetry.enabled || events.length === 0) {
    return;
  }
  const first = events[0];
  const last = events[events.length - 1];
  let requestModel = first.type === 'start' ? first.model : undefined;
  let responseModel = requestModel;
  const chunkGapsSeconds: number[] = [];
  let firstChunkAt: number | undefined;
  let previousChunkAt: number | undefined;
  for (const event of events) {
    if (event.type === 'token' || event.type === 'reasoning') {
      firstChunkAt ??= event.ts;
      if (previousChunkAt !== undefined) {
        chunkGapsSeconds.push((event.ts - previousChunkAt) / 1000);
      }
      previousChunkAt = event.ts;
    } else if (event.type === 'route') {
      responseModel = event.model;
      requestModel ??= event.model;
    }
  }
  const startedAt = first.type === 'start' ? first.ts : undefined;
  const operation: GenAiOperation = {
    providerName,
    requestModel: requestModel ?? 'unknown',
    responseModel,
    durationSeconds: startedAt === undefined ? 0 : (last.ts - startedAt) / 1000,
    timeToFirstChunkSeconds:
      startedAt !== undefined && firstChunkAt !== undefined ? (firstChunkAt - startedAt) / 1000 : undefined,
    chunkGapsSeconds,
  };
  if (last.type === 'done') {
    operation.durationSeconds = last.timing.durationMs / 1000;
    if (last.usage) {
      operation.usage = { input: last.usage.promptTokens, output: last.usage.completionTokens };
    }
  } else if (last.type === 'error') {
    operation.error = last.error.code;
  }
  recordGenAiOperation(operation);
}
