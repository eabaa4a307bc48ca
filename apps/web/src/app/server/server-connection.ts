import { Injectable, computed, inject, signal } from '@angular/core';
import type { ServerInfo } from '@app/contracts';
import { TransportError } from '../transport/transport-error';
import { ServerApi } from './server-api';

/** What `GET /api/info` said about the server, or why it could not be asked. */
@Injectable({ providedIn: 'root' })
export class ServerConnection {
  private readonly api = inject(ServerApi);
  private readonly state = signal<{ info: ServerInfo | null; error: TransportError | null }>({
    info: null,
    error: null,
  });

  readonly info = computed(() => this.state().info);
  readonly error = computed(() => this.state().error);
  readonly simulatorProfiles = computed(() => this.state().info?.simulator?.profiles ?? []);

  async load(): Promise<void> {
    try {
      const info = await this.api.info();
      this.state.set({ info, error: null });
    } catch (error) {
      const failure = error instanceof TransportError ? error : TransportError.network(error);
      this.state.update((current) => ({ ...current, error: failure }));
    }
  }
}
