import { ProblemException } from '@app/problem';
import {
  type ArgumentsHost,
  Catch,
  type ExceptionFilter,
  HttpException,
  HttpStatus,
  Logger,
} from '@nestjs/common';
import type { Request, Response } from 'express';
import { OpenAiError } from './openai-error';

/** Where the OpenAI-compatible surface lives; errors under it are OpenAI's shape, whatever raised them. */
export const OPENAI_PATH_PREFIX = '/v1';

/**
 * Errors under `/v1` (the guard's refusals, the relay's, body-parser failures, unknown paths) in OpenAI's shape,
 * so that an OpenAI SDK raises its own typed error; every other path is handed to `fallback` (problem+json). One
 * global filter because body-parser errors and unknown paths never reach a controller's filters.
 */
@Catch()
export class OpenAiErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger(OpenAiErrorFilter.name);

  constructor(private readonly fallback: ExceptionFilter) {}

  catch(error: unknown, host: ArgumentsHost): void {
    if (host.getType() !== 'http') {
      this.fallback.catch(error, host);
      return;
    }
    const request = host.switchToHttp().getRequest<Request>();
    if (!isUnder(request.path, OPENAI_PATH_PREFIX)) {
      this.fallback.catch(error, host);
      return;
    }
    const response = host.switchToHttp().getResponse<Response>();
    if (response.headersSent) {
      this.logger.error(`error after a /v1 response started: ${describe(error)}`);
      response.end();
      return;
    }
    const refusal = this.toOpenAiError(error, request.path);
    for (const [name, value] of Object.entries(refusal.headers)) {
      response.setHeader(name, value);
    }
    response.status(refusal.status).json(refusal.body);
  }

  private toOpenAiError(error: unknown, path: string): OpenAiError {
    if (error instanceof OpenAiError) {
      return error;
    }
    if (error instanceof ProblemException) {
      return OpenAiError.refusal(error.code, error.detail, error.extras.retryAfterMs);
    }
    const status = statusOf(error);
    if (status === HttpStatus.NOT_FOUND || status === HttpStatus.METHOD_NOT_ALLOWED) {
      return OpenAiError.refusal('not_found', `Unknown request URL: ${path}.`);
    }
    if (status === HttpStatus.PAYLOAD_TOO_LARGE) {
      return OpenAiError.refusal('payload_too_large', 'The request body is larger than the server accepts.');
    }
    if (status === HttpStatus.BAD_REQUEST) {
      return OpenAiError.refusal('invalid_request', 'The request body is not valid JSON.');
    }
    if (status === HttpStatus.UNSUPPORTED_MEDIA_TYPE) {
      return OpenAiError.refusal('unsupported_media_type', 'The request body encoding is not supported.');
    }
    this.logger.error(`unhandled error on ${path}: ${describe(error)}`);
    return OpenAiError.refusal('internal', 'The server failed to handle the request.');
  }
}

function isUnder(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`);
}

/** Nest's HttpExceptions and body-parser's errors (plain errors carrying `status`). */
function statusOf(error: unknown): number | undefined {
  if (error instanceof HttpException) {
    return error.getStatus();
  }
  const status = (error as { status?: unknown } | null)?.status;
  return typeof error === 'object' && typeof status === 'number' ? status : undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
