import { Injectable, signal } from '@angular/core';
import type { RunRecord } from './run-record';

const STORAGE_KEY = 'llm-stream-gateway.history.v1';
/** Enough for long comparisons while staying far below the localStorage quota (about 1 KB per record). */
const MAX_RECORDS = 2000;

/** Every finished stream, newest first, kept in localStorage so that comparisons survive a reload. */
@Injectable({ providedIn: 'root' })
export class RunHistory {
  private readonly records = signal<readonly RunRecord[]>(readStored());
  readonly all = this.records.asReadonly();

  add(...records: RunRecord[]): void {
    this.records.update((current) => [...records.reverse(), ...current].slice(0, MAX_RECORDS));
    this.store();
  }

  clear(): void {
    this.records.set([]);
    this.store();
  }

  private store(): void {
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(this.records()));
    } catch {
      // Quota or disabled storage: the history still lives until the page closes.
    }
  }
}

function readStored(): RunRecord[] {
  try {
    const parsed: unknown = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '[]');
    return Array.isArray(parsed) ? (parsed as RunRecord[]) : [];
  } catch {
    return [];
  }
}
