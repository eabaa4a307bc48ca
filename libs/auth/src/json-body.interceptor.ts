import { REQUEST_LIMITS } from '@app/contracts';
import { type CallHandler, type ExecutionContext, Injectable, type NestInterceptor } from '@nestjs/common';
import type { Request, RequestHandler, Response } from 'express';
import { json } from 'express';
import { from, type Observable, switchMap } from 'rxjs';

const parseJson: RequestHandler = json({ limit: REQUEST_LIMITS.maxBodyBytes });

/**
 * Reads the JSON body of a route only once its guards have let the request through: an unauthenticated
 * client cannot make the server wait for, buffer and parse a body (a slow one is cut by the server's
 * request timeout; a refused one is answered before it is read). Interceptors run after guards, which a
 * global body parser (middleware) does not. A body that is not JSON is left unread, for the route to
 * refuse with 415; a broken or oversized one is body-parser's error, rendered by the problem filter.
 */
@Injectable()
export class JsonBodyInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const http = context.switchToHttp();
    const request = http.getRequest<Request>();
    const response = http.getResponse<Response>();
    const parsed = new Promise<void>((resolve, reject) =>
      parseJson(request, response, (error?: unknown) => (error ? reject(error) : resolve())),
    );
    return from(parsed).pipe(switchMap(() => next.handle()));
  }
}
