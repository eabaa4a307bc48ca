import { problemOf } from '@app/problem';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * DNS-rebinding protection: a page on `evil.example` whose name an attacker points at 127.0.0.1 makes the
 * victim's browser send our server requests with `Host: evil.example`, same-origin as far as the browser
 * knows. Serving only the host names we are known by (`ALLOWED_HOSTS`) refuses them.
 *
 * An entry matches a Host's name whatever its port (`localhost`), or the whole Host (`example.com:8443`);
 * `*` matches anything. Names compare case-insensitively, without a trailing dot.
 */
export class HostCheck {
  private readonly any: boolean;
  private readonly entries: ReadonlySet<string>;
  /**
   * Host headers already found allowed, as sent: every request of a client carries the same one, and normalising
   * it anew showed in the profile of a stream start. Bounded, since a client chooses what it sends.
   */
  private readonly allowedAsSent = new Set<string>();

  /** `allowedHosts` undefined: every Host is served (no check). */
  constructor(allowedHosts: readonly string[] | undefined) {
    this.any = allowedHosts === undefined || allowedHosts.includes('*');
    this.entries = new Set((allowedHosts ?? []).map(normalise));
  }

  allows(host: string | undefined): boolean {
    if (this.any) {
      return true;
    }
    if (!host) {
      return false;
    }
    if (this.allowedAsSent.has(host)) {
      return true;
    }
    const whole = normalise(host);
    const allowed = this.entries.has(whole) || this.entries.has(hostnameOf(whole));
    if (allowed) {
      if (this.allowedAsSent.size >= MAX_REMEMBERED_HOSTS) {
        this.allowedAsSent.clear();
      }
      this.allowedAsSent.add(host);
    }
    return allowed;
  }
}

const MAX_REMEMBERED_HOSTS = 64;

const REFUSAL_DETAIL = 'This server does not serve the host named in the Host header.';

/**
 * Probes and scrapers address an instance by its own IP, whatever name clients use, and these paths give a
 * rebinding page nothing worth having (no stream, no credential): they are served whatever the Host.
 */
const ANY_HOST_PATHS = new Set(['/health/live', '/health/ready', '/metrics']);

/** Express middleware: a foreign Host gets `403 forbidden` problem+json before anything else runs. */
export function refuseForeignHosts(check: HostCheck) {
  return (request: IncomingMessage, response: ServerResponse, next: () => void): void => {
    if (check.allows(request.headers.host) || ANY_HOST_PATHS.has((request.url ?? '').split('?')[0])) {
      next();
      return;
    }
    const body = JSON.stringify(problemOf('forbidden', REFUSAL_DETAIL));
    response.writeHead(403, {
      'content-type': 'application/problem+json',
      'content-length': Buffer.byteLength(body),
    });
    response.end(body);
  };
}

/**
 * The same for Engine.IO (`server.engine.use`), which runs its middleware for long-polling requests and for
 * WebSocket upgrades alike; an upgrade has no HTTP response object to write to, so the answer goes on the socket.
 */
export function refuseForeignHostsOnEngine(check: HostCheck) {
  const http = refuseForeignHosts(check);
  return (
    request: IncomingMessage,
    response: ServerResponse | { socket: Duplex },
    next: (error?: Error) => void,
  ) => {
    if (isHttpResponse(response)) {
      http(request, response, next);
      return;
    }
    if (check.allows(request.headers.host)) {
      next();
      return;
    }
    const body = JSON.stringify(problemOf('forbidden', REFUSAL_DETAIL));
    response.socket.end(
      `HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: application/problem+json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  };
}

function isHttpResponse(response: ServerResponse | { socket: Duplex }): response is ServerResponse {
  return typeof (response as ServerResponse).writeHead === 'function' && 'statusCode' in response;
}

function normalise(host: string): string {
  const lower = host.trim().toLowerCase();
  // A bare IPv6 address is written in brackets in a Host header.
  const bracketed =
    lower.includes(':') && !lower.startsWith('[') && lower.split(':').length > 2 ? `[${lower}]` : lower;
  return bracketed.replace(/\.(?=(:\d+)?$)/, '');
}

function hostnameOf(host: string): string {
  if (host.startsWith('[')) {
    return host.slice(0, host.indexOf(']') + 1);
  }
  const colon = host.lastIndexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}
