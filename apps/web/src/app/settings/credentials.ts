import { Injectable, signal } from '@angular/core';

const STORAGE_KEY = 'llm-stream-gateway.token';

/**
 * The bearer token (an API key or a JWT). It lives in sessionStorage, so it is gone with the tab, and it is
 * never put in a URL: HTTP sends it as `Authorization: Bearer`, Socket.IO in the handshake's `auth`.
 */
@Injectable({ providedIn: 'root' })
export class Credentials {
  private readonly value = signal(readStored());
  readonly token = this.value.asReadonly();

  setToken(token: string): void {
    const trimmed = token.trim();
    this.value.set(trimmed);
    try {
      if (trimmed) sessionStorage.setItem(STORAGE_KEY, trimmed);
      else sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      // Storage may be disabled (privacy mode); the token then lasts as long as the page.
    }
  }

  authorizationHeaders(): Record<string, string> {
    const token = this.value();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }
}

function readStored(): string {
  try {
    return sessionStorage.getItem(STORAGE_KEY) ?? '';
  } catch {
    return '';
  }
}
