import { ChangeDetectionStrategy, Component, effect, inject, signal, viewChild } from '@angular/core';
import { Chat } from './chat/chat';
import { ClockSync } from './clock/clock-sync';
import { Comparison } from './compare/comparison';
import { ServerConnection } from './server/server-connection';
import { Settings } from './settings/settings';
import { SettingsPanel } from './settings/settings-panel';

@Component({
  selector: 'app-root',
  changeDetection: ChangeDetectionStrategy.OnPush,
  imports: [Chat, Comparison, SettingsPanel],
  template: `
    <header class="app-header">
      <h1>LLM Stream Gateway <small>SSE vs Socket.IO</small></h1>
      <nav aria-label="Display">
        <button
          type="button"
          class="quiet"
          (click)="toggleTheme()"
          [attr.aria-pressed]="settings.theme() === 'dark'"
        >
          {{ settings.theme() === 'dark' ? 'Light theme' : 'Dark theme' }}
        </button>
        <button
          type="button"
          class="quiet"
          (click)="settingsOpen.set(!settingsOpen())"
          [attr.aria-expanded]="settingsOpen()"
          aria-controls="settings"
        >
          Settings
        </button>
      </nav>
    </header>
    <main class="layout" [class.with-settings]="settingsOpen()">
      <div class="main-column">
        <app-chat (credentialsNeeded)="showCredentials()" />
        <app-comparison />
      </div>
      <aside id="settings" [hidden]="!settingsOpen()">
        <app-settings-panel />
      </aside>
    </main>
  `,
})
export class App {
  protected readonly settings = inject(Settings);
  protected readonly settingsOpen = signal(false);
  private readonly settingsPanel = viewChild.required(SettingsPanel);

  constructor() {
    const server = inject(ServerConnection);
    void server.load();
    void inject(ClockSync).sync();
    effect(() => document.documentElement.setAttribute('data-theme', this.settings.theme()));
  }

  protected toggleTheme(): void {
    this.settings.update({ theme: this.settings.theme() === 'dark' ? 'light' : 'dark' });
  }

  protected showCredentials(): void {
    this.settingsOpen.set(true);
    // The panel becomes visible on the next render; focus once it is.
    requestAnimationFrame(() => this.settingsPanel().focusCredentials());
  }
}
