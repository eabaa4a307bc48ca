import { Injectable, inject } from '@angular/core';
import { HTTP_PATHS, type ServerInfo } from '@app/contracts';
import { Credentials } from '../settings/credentials';
import { TransportError } from '../transport/transport-error';

/** The plain JSON endpoints, with the credentials attached and refusals turned into `TransportError`s. */
@Injectable({ providedIn: 'root' })
export class ServerApi {
  private readonly credentials = inject(Credentials);

  info(): Promise<ServerInfo> {
    return this.getJson<ServerInfo>(HTTP_PATHS.info);
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...extra, ...this.credentials.authorizationHeaders() };
  }

  private async getJson<T>(path: string): Promise<T> {
    let response: Response;
    try {
      response = await fetch(path, {
        headers: this.headers({ Accept: 'application/json' }),
        cache: 'no-store',
      });
    } catch (cause) {
      throw TransportError.network(cause);
    }
    if (!response.ok) throw await TransportError.fromResponse(response);
    return (await response.json()) as T;
  }
}
