import { nestedDeeperThan, REQUEST_LIMITS } from '@app/contracts';
import { ProblemException } from '@app/problem';
import {
  type CallHandler,
  createParamDecorator,
  type ExecutionContext,
  Injectable,
  type NestInterceptor,
} from '@nestjs/common';
import type { Request, RequestHandler, Response } from 'express';
import { json } from 'express';
import { from, type Observable, switchMap } from 'rxjs';

const NO_BODY = 'The request has no body: send the JSON body, with Content-Type: application/json.';

const TOO_DEEP = `The JSON body nests arrays and objects deeper than ${REQUEST_LIMITS.maxJsonDepth} levels.`;

const parseJson: RequestHandler = json({ limit: REQUEST_LIMITS.maxBodyBytes });

/**
 * The charsets a JSON body may be sent in: JSON's own (RFC 8259 names UTF-8; UTF-16 and UTF-32 are what its
 * predecessor allowed). body-parser would decode any `utf-*` iconv knows, UTF-7 included, so that the JSON the
 * gateway reads could differ from what a WAF in front of it inspected.
 */
const JSON_CHARSETS: ReadonlySet<string> = new Set([
  'utf-8',
  'utf8',
  'utf-16',
  'utf-16le',
  'utf-16be',
  'utf-32',
  'utf-32le',
  'utf-32be',
]);
const CHARSET_PARAMETER = /;\s*charset\s*=\s*("?)([^";,\s]*)\1/gi;

/** Every `charset` parameter of the Content-Type is one of JSON's (all of them: a parser may read either of two). */
function jsonCharset(contentType: string | undefined): boolean {
  for (const [, , charset] of (contentType ?? '').matchAll(CHARSET_PARAMETER)) {
    if (!JSON_CHARSETS.has(charset.toLowerCase())) {
      return false;
    }
  }
  return true;
}

/**
 * Reads a route's JSON body into `request.body`. Only ever called once the route's guards have let the request
 * through: an unauthenticated client cannot make the server wait for, buffer and parse a body (a slow one is cut
 * by the server's request timeout; a refused one is answered before it is read), which a global body parser
 * (middleware, run before guards) would allow. A body that is not JSON is left unread, for the route to refuse
 * with 415; a broken or oversized one is body-parser's error, rendered by the problem filter.
 *
 * A request with no body at all (neither Content-Length nor Transfer-Encoding, as a bare `curl -X POST` sends it)
 * is 400, whatever its Content-Type says: body-parser skips such a request, so the route would otherwise answer
 * 415 for a body that is missing, not of the wrong type. A charset other than UTF-8/16/32 is 415, and a body
 * nesting arrays and objects deeper than `REQUEST_LIMITS.maxJsonDepth` is 400, before anything recurses over it.
 */
export function readJsonBody(request: Request, response: Response): Promise<unknown> {
  if (request.headers['content-length'] === undefined && request.headers['transfer-encoding'] === undefined) {
    return Promise.reject(new ProblemException('invalid_request', NO_BODY));
  }
  if (!jsonCharset(request.headers['content-type'])) {
    return Promise.reject(
      new ProblemException('unsupported_media_type', 'Send the JSON body as UTF-8 (or UTF-16, UTF-32).'),
    );
  }
  return new Promise((resolve, reject) =>
    parseJson(request, response, (error?: unknown) => {
      if (error) {
        reject(error);
      } else if (nestedDeeperThan(request.body)) {
        reject(new ProblemException('invalid_request', TOO_DEEP));
      } else {
        resolve(request.body);
      }
    }),
  );
}

/**
 * The route's JSON body as a handler parameter, read after the guards (parameters are resolved after guards and
 * interceptors, and Nest settles a promised parameter before calling the handler). The streaming start uses this
 * rather than JsonBodyInterceptor: an interceptor puts Nest's Observable pipeline (several observables, two
 * AsyncResource bindings and a ReplaySubject) around every request of the route, which showed in the profile of a
 * stream start (issue 12).
 */
export const JsonBody = createParamDecorator((_data: unknown, context: ExecutionContext) => {
  const http = context.switchToHttp();
  return readJsonBody(http.getRequest<Request>(), http.getResponse<Response>());
});

/** The same, as an interceptor: for a handler that reads the body from `request.body` (or `@Body()`). */
@Injectable()
export class JsonBodyInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const http = context.switchToHttp();
    const parsed = readJsonBody(http.getRequest<Request>(), http.getResponse<Response>());
    return from(parsed).pipe(switchMap(() => next.handle()));
  }
}
