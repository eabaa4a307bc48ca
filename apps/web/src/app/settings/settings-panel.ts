import { ChangeDetectionStrategy, Component, ElementRef, inject, signal, viewChild } from '@angular/core';
import { formatClockBound, formatClockOffset } from '../clock/clock-offset';
import { ClockSync } from '../clock/clock-sync';
import { Milliseconds } from '../metrics/milliseconds';
import { ServerConnection } from '../server/server-connection';
import { SocketIoTransport } from '../transport/socket-io-transport';
import { Credentials } from './credentials';
import { Settings } from './settings';

/** Credentials, theme, and what the client knows about the server (model, simulator profiles, clock). */
@Component({
  selector: 'app-settings-panel',
  changeDetection: ChangeDetectionStrategy.OnPush,
  imports: [Milliseconds],
  template: `
    <section class="panel settings" aria-labelledby="settings-title">
      <h2 id="settings-title">Settings</h2>
      <form (submit)="$event.preventDefault(); saveToken()">
        <label for="token">API key or token</label>
        <div class="row">
          <input
            id="token"
            #token
            type="password"
            autocomplete="off"
            spellcheck="false"
            placeholder="Bearer credentials, if the server asks for them"
            [value]="credentials.token()"
          />
          <button type="submit">Save</button>
          <button type="button" class="quiet" (click)="token.value = ''; saveToken()">Clear</button>
        </div>
        <small class="muted"
          >Kept in this tab's session storage only; sent as an Authorization header and in the Socket.IO
          handshake.</small
        >
        @if (saved()) {
          <small role="status">Saved.</small>
        }
      </form>

      <fieldset>
        <legend>Theme</legend>
        <label
          ><input
            type="radio"
            name="theme"
            value="light"
            [checked]="settings.theme() === 'light'"
            (change)="settings.update({ theme: 'light' })"
          />
          Light</label
        >
        <label
          ><input
            type="radio"
            name="theme"
            value="dark"
            [checked]="settings.theme() === 'dark'"
            (change)="settings.update({ theme: 'dark' })"
          />
          Dark</label
        >
      </fieldset>

      <h3>Server</h3>
      @if (server.info(); as info) {
        <dl class="facts">
          <dt>Provider</dt>
          <dd>{{ info.provider }}</dd>
          <dt>Default model</dt>
          <dd>{{ info.defaultModel }}</dd>
          <dt>Max tokens</dt>
          <dd>{{ info.limits.maxTokensCap }}</dd>
        </dl>
        @if (server.simulatorProfiles().length > 0) {
          <label for="profile">Simulator latency profile</label>
          <select
            id="profile"
            #profile
            [value]="settings.model()"
            (change)="settings.update({ model: profile.value })"
          >
            <option value="">Default ({{ info.defaultModel }})</option>
            @for (p of server.simulatorProfiles(); track p.model) {
              <option [value]="p.model">
                {{ p.model }}: TTFT {{ p.ttftMs }} ms, {{ p.tokensPerSecond }} tok/s, jitter {{ p.jitter }}
              </option>
            }
          </select>
        }
      } @else if (server.error(); as error) {
        <p class="error-text">{{ error.message }}</p>
        <button type="button" (click)="server.load()">Try again</button>
      } @else {
        <p class="muted">Asking the server…</p>
      }
      <dl class="facts">
        <dt>Clock offset <small class="muted">(server − this browser)</small></dt>
        <dd>
          @if (clock.offset(); as offset) {
            <span data-testid="clock-offset">{{ formatClockOffset(offset) }}</span> ms
            <small
              class="muted"
              title="± is the estimate's standard uncertainty; the bound is what no asymmetry of the network paths can exceed, and delays below it are flagged"
              >(certainly within <span data-testid="clock-bound">{{ formatClockBound(offset) }}</span> ms;
              {{ offset.samples }} probes of the last minute, best round trip {{ offset.rttMs | ms }} ms;
              <span data-testid="clock-probes">{{ clock.probesTaken() }}</span> since the page loaded)</small
            >
          } @else {
            not measured yet
          }
        </dd>
        <dt>Socket.IO transport</dt>
        <dd>{{ socket.engineTransport() ?? 'not connected' }}</dd>
      </dl>
      <button type="button" class="quiet" (click)="clock.sync()">Measure clock offset again</button>
    </section>
  `,
})
export class SettingsPanel {
  protected readonly settings = inject(Settings);
  protected readonly credentials = inject(Credentials);
  protected readonly server = inject(ServerConnection);
  protected readonly clock = inject(ClockSync);
  protected readonly formatClockOffset = formatClockOffset;
  protected readonly formatClockBound = formatClockBound;
  protected readonly socket = inject(SocketIoTransport);
  protected readonly saved = signal(false);
  private readonly tokenField = viewChild.required<ElementRef<HTMLInputElement>>('token');

  focusCredentials(): void {
    this.tokenField().nativeElement.focus();
  }

  protected saveToken(): void {
    this.credentials.setToken(this.tokenField().nativeElement.value);
    this.saved.set(true);
    setTimeout(() => this.saved.set(false), 2000);
    void this.server.load();
    void this.clock.sync();
  }
}
