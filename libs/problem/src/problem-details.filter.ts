import type { RefusalCode } from '@app/contracts';
import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Request, Response } from 'express';
import { ProblemException, problemOf } from './problem.exception';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

const CODE_BY_STATUS: Record<number, RefusalCode> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'not_found',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  503: 'shutting_down',
};

/**
 * body-parser's errors reach Nest as plain errors carrying `type` and `status`; one it passes on from elsewhere
 * (zlib's, for a body that does not decompress as its Content-Encoding says) has no `type`, only http-errors'
 * `status` and `expose` (true for a 4xx: the client's fault).
 */
interface BodyParserError {
  type?: string;
  status: number;
  expose?: boolean;
}

function isBodyParserError(error: unknown): error is BodyParserError {
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof (error as BodyParserError).status === 'number' &&
    (typeof (error as BodyParserError).type === 'string' || (error as BodyParserError).expose === true)
  );
}

/**
 * Every HTTP error becomes RFC 9457 problem+json with the contract's `code`. Detail texts are ours or
 * Nest's; a 5xx never shows the underlying error, which is logged instead.
 */
@Catch()
export class ProblemDetailsFilter implements ExceptionFilter {
  private readonly logger = new Logger(ProblemDetailsFilter.name);

  catch(error: unknown, host: ArgumentsHost): void {
    if (host.getType() !== 'http') {
      throw error;
    }
    const request = host.switchToHttp().getRequest<Request>();
    const response = host.switchToHttp().getResponse<Response>();
    if (response.headersSent) {
      // The stream has begun: the only honest thing left is to end it.
      this.logger.error(`error after the response started: ${describe(error)}`);
      response.end();
      return;
    }
    const problem = this.toProblem(error, request.path);
    if (error instanceof ProblemException && error.extras.retryAfterMs !== undefined) {
      response.setHeader('Retry-After', String(Math.max(1, Math.ceil(error.extras.retryAfterMs / 1000))));
    }
    response.status(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem));
  }

  private toProblem(error: unknown, path: string) {
    if (error instanceof ProblemException) {
      return error.toProblem(path);
    }
    if (isBodyParserError(error)) {
      return this.fromBodyParser(error, path);
    }
    if (error instanceof HttpException) {
      const status = error.getStatus();
      const code = CODE_BY_STATUS[status];
      if (code) {
        return { ...problemOf(code, detailOf(error, status), path), status };
      }
    }
    this.logger.error(`unhandled error on ${path}: ${describe(error)}`);
    return problemOf('internal', 'The server failed to handle the request.', path);
  }

  private fromBodyParser(error: BodyParserError, path: string) {
    switch (error.type) {
      case 'entity.too.large':
        return problemOf('payload_too_large', 'The request body is larger than the server accepts.', path);
      case 'encoding.unsupported':
      case 'charset.unsupported':
        return problemOf(
          'unsupported_media_type',
          'The request body encoding or charset is not supported.',
          path,
        );
      case 'entity.parse.failed':
        return problemOf('invalid_request', 'The request body is not valid JSON.', path);
      default:
        return problemOf('invalid_request', 'The request body could not be read.', path);
    }
  }
}

/**
 * Says what is wrong in the gateway's words. Express reports a path that is not validly percent-encoded
 * and Nest a body that is not JSON as the same 400; their messages echo the input, so neither is passed on.
 */
function detailOf(error: HttpException, status: number): string {
  if (status !== 400) {
    return error.message;
  }
  if (error.cause instanceof URIError) {
    return 'The URL path is not validly percent-encoded.';
  }
  if (error.cause instanceof SyntaxError) {
    return 'The request body is not valid JSON.';
  }
  return 'The request is not valid.';
}

function describe(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
