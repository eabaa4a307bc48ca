import { Injectable, computed, signal } from '@angular/core';
import type { CompletionRequest } from '@app/contracts';
import type { RunMode } from '../run/live-run';

export type Theme = 'light' | 'dark';

export interface SettingsState {
  mode: RunMode;
  /** Empty: the server's default model. With the simulator, a profile's name selects that latency profile. */
  model: string;
  temperature: number;
  /** Null: not sent, so the server's default (and the simulator's `[sim tokens=N]`) decide the length. */
  maxTokens: number | null;
  theme: Theme;
}

const STORAGE_KEY = 'llm-stream-gateway.settings.v1';
const RUN_MODES: readonly RunMode[] = ['sse', 'socket.io', 'race'];

function defaults(): SettingsState {
  const prefersDark = typeof matchMedia === 'function' && matchMedia('(prefers-color-scheme: dark)').matches;
  return { mode: 'sse', model: '', temperature: 0.7, maxTokens: null, theme: prefersDark ? 'dark' : 'light' };
}

/** The user's choices, kept in localStorage (the credentials are not here: see `Credentials`). */
@Injectable({ providedIn: 'root' })
export class Settings {
  private readonly state = signal<SettingsState>(readStored());

  readonly mode = computed(() => this.state().mode);
  readonly model = computed(() => this.state().model);
  readonly temperature = computed(() => this.state().temperature);
  readonly maxTokens = computed(() => this.state().maxTokens);
  readonly theme = computed(() => this.state().theme);

  /** The request fields these settings decide; the ones left at the server's default are omitted. */
  readonly parameters = computed((): Omit<CompletionRequest, 'messages'> => {
    const { model, temperature, maxTokens } = this.state();
    return { ...(model ? { model } : {}), temperature, ...(maxTokens === null ? {} : { maxTokens }) };
  });

  update(change: Partial<SettingsState>): void {
    this.state.update((current) => ({ ...current, ...change }));
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(this.state()));
    } catch {
      // Settings then last as long as the page.
    }
  }

  setMode(mode: string): void {
    if ((RUN_MODES as readonly string[]).includes(mode)) this.update({ mode: mode as RunMode });
  }
}

function readStored(): SettingsState {
  try {
    const stored = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '{}') as Partial<SettingsState>;
    return { ...defaults(), ...stored };
  } catch {
    return defaults();
  }
}
