import { epochNow } from '@app/clock';
import { HTTP_PATHS, type ServerTime } from '@app/contracts';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** The answer of `GET /api/time`, with the probe's arrival time taken as early as the caller can. */
export function serverTime(receivedAt: number): ServerTime {
  const sentAt = epochNow();
  return { ts: sentAt, receivedAt, sentAt };
}

const arrivals = new WeakMap<IncomingMessage, number>();

function isTimeProbe(request: IncomingMessage): boolean {
  return request.method === 'GET' && request.url?.split('?')[0] === HTTP_PATHS.time;
}

/**
 * The HTTP server's first `request` listener (`InfoModule` prepends it): a probe's arrival is stamped as soon as
 * its headers are parsed, before Express and the middleware ahead of `timeProbe` (the Host check, helmet) run.
 * What runs between the arrival and the stamp lengthens the path out and not the path back, and half that
 * asymmetry would be an error in every client's offset estimate.
 */
export function stampTimeProbeArrival(request: IncomingMessage): void {
  const arrivedAt = epochNow();
  if (isTimeProbe(request)) arrivals.set(request, arrivedAt);
}

/**
 * `GET /api/time`, answered ahead of the application's pipeline (Express middleware mounted first in
 * `createApp`): no request log line, no Nest routing, guard or interceptor, so the round trip the client
 * measures is the network's and little else. The server time is not a secret, so no credentials are asked;
 * `InfoController` declares the same route for the OpenAPI document.
 */
export function timeProbe(request: IncomingMessage, response: ServerResponse, next: () => void): void {
  const receivedAt = arrivals.get(request) ?? epochNow();
  if (!isTimeProbe(request)) {
    next();
    return;
  }
  const body = JSON.stringify(serverTime(receivedAt));
  response.writeHead(200, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  response.end(body);
}
