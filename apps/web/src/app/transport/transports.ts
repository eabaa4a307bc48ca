import { InjectionToken, inject } from '@angular/core';
import type { CompletionTransport, TransportName } from './completion-transport';
import { SocketIoTransport } from './socket-io-transport';
import { SseTransport } from './sse-transport';

/** Every transport by name; the only place that knows which implementations exist. */
export const COMPLETION_TRANSPORTS = new InjectionToken<Record<TransportName, CompletionTransport>>(
  'COMPLETION_TRANSPORTS',
  {
    providedIn: 'root',
    factory: () => ({ sse: inject(SseTransport), 'socket.io': inject(SocketIoTransport) }),
  },
);
