import {
  ChangeDetectionStrategy,
  Component,
  ElementRef,
  afterRenderEffect,
  computed,
  inject,
  output,
  signal,
  viewChild,
} from '@angular/core';
import { REQUEST_LIMITS } from '@app/contracts';
import { ClockSync } from '../clock/clock-sync';
import { RunMetricsPanel } from '../metrics/run-metrics-panel';
import { RaceTimeline } from '../race/race-timeline';
import { computeRunMetrics } from '../metrics/run-metrics';
import { summarizeRace } from '../race/race-summary';
import { ServerConnection } from '../server/server-connection';
import { Settings } from '../settings/settings';
import { formatMs } from '../metrics/milliseconds';
import { RESUME_EXPIRED } from '../run/live-run';
import { AnswerPane } from './answer-pane';
import { ReasoningBlock } from './reasoning-block';
import { ChatSession, thoughtMs } from './chat-session';

const TRANSPORT_LABELS: Record<string, string> = { sse: 'SSE', 'socket.io': 'Socket.IO' };

@Component({
  selector: 'app-chat',
  changeDetection: ChangeDetectionStrategy.OnPush,
  imports: [AnswerPane, ReasoningBlock, RunMetricsPanel, RaceTimeline],
  template: `
    <section class="panel chat" aria-labelledby="chat-title">
      <header class="panel-header">
        <h2 id="chat-title">Conversation</h2>
        <button type="button" class="quiet" (click)="startNewChat()" [disabled]="session.isEmpty()">
          New chat
        </button>
      </header>

      <div class="log" #log (scroll)="onLogScroll()" tabindex="0" aria-label="Conversation">
        @for (exchange of session.earlier(); track exchange.id) {
          <div class="message user">{{ exchange.prompt }}</div>
          <div class="message assistant">
            @if (exchange.reasoning) {
              <app-reasoning-block
                [text]="exchange.reasoning"
                [answering]="true"
                [thoughtMs]="exchange.thoughtMs ?? null"
              />
            }
            <app-answer-pane [text]="exchange.reply" />
          </div>
        }
        @if (current(); as exchange) {
          <div class="message user">{{ exchange.prompt }}</div>
          <div class="lanes" [class.race]="lanes().length > 1">
            @for (lane of lanes(); track lane.streamId) {
              <div
                class="message assistant lane"
                [class.silent]="
                  lanes().length === 1 &&
                  lane.status === 'error' &&
                  !lane.text &&
                  lane.error?.code !== expiredCode
                "
              >
                @if (lanes().length > 1) {
                  <h3 class="lane-title" [class]="'transport-' + lane.transport">
                    {{ labels[lane.transport] }} · {{ lane.status }}
                  </h3>
                }
                @if (lane.reasoning) {
                  <app-reasoning-block
                    [text]="lane.reasoning"
                    [answering]="lane.arrivals.length > 0 || lane.status === 'done'"
                    [thoughtMs]="thoughtMs(lane)"
                    [transport]="lane.transport"
                  />
                }
                <app-answer-pane
                  data-testid="answer"
                  [attr.data-transport]="lane.transport"
                  [attr.aria-label]="labels[lane.transport] + ' answer'"
                  [text]="lane.text"
                  [routes]="lane.routes"
                  [streaming]="lane.status === 'streaming' || lane.status === 'waiting'"
                />
                @if (lane.error?.code === expiredCode) {
                  <p class="muted" data-testid="resume-expired">{{ lane.error.message }}</p>
                }
              </div>
            }
          </div>
        } @else if (session.isEmpty()) {
          <p class="muted empty">
            Ask something. With the simulator, <code>[sim tokens=2000 tps=100]</code> in a message sets the
            length and speed of the answer, and <code>[sim fault=server_error]</code> makes the model fail.
          </p>
        }
      </div>

      @if (error(); as failure) {
        <div class="error" role="alert">
          <p>
            <span data-testid="error">{{ failure.message }}</span>
            <small class="muted"> ({{ labels[failure.transport] }}: {{ failure.code }})</small>
          </p>
          @if (needsCredentials()) {
            <button type="button" (click)="credentialsNeeded.emit()">Enter credentials</button>
          }
          @if (failure.retryable) {
            <button
              type="button"
              data-testid="retry"
              (click)="regenerateAnswer()"
              [disabled]="session.running()"
            >
              Retry{{
                failure.retryAfterMs ? ' (the server asks to wait ' + failure.retryAfterMs / 1000 + ' s)' : ''
              }}
            </button>
          }
        </div>
      }

      <form class="composer" (submit)="$event.preventDefault(); sendPrompt()">
        <label for="prompt" class="visually-hidden">Prompt</label>
        <textarea
          id="prompt"
          #promptBox
          data-testid="prompt"
          rows="3"
          placeholder="Message (Enter sends, Shift+Enter for a new line)"
          [value]="draft()"
          (input)="draft.set(promptBox.value)"
          (keydown)="onPromptKeydown($event)"
        ></textarea>
        <div class="composer-bar">
          <label>
            Transport
            <select data-testid="transport" #mode [value]="settings.mode()" (change)="selectMode(mode.value)">
              <option value="sse">SSE</option>
              <option value="socket.io">Socket.IO</option>
              <option value="race">Race (both)</option>
            </select>
          </label>
          <label>
            Model
            @if (server.simulatorProfiles().length > 0) {
              <select #model [value]="settings.model()" (change)="setModel(model.value)">
                <option value="">Default ({{ server.info()?.defaultModel }})</option>
                @for (profile of server.simulatorProfiles(); track profile.model) {
                  <option [value]="profile.model">
                    {{ profile.model }} · TTFT {{ profile.ttftMs }} ms · {{ profile.tokensPerSecond }} tok/s
                  </option>
                }
              </select>
            } @else {
              <input
                #model
                type="text"
                [placeholder]="server.info()?.defaultModel ?? 'server default'"
                [value]="settings.model()"
                (change)="setModel(model.value.trim())"
              />
            }
          </label>
          <label>
            Temperature
            <input
              #temperature
              type="number"
              min="0"
              max="2"
              step="0.1"
              [value]="settings.temperature()"
              (change)="setTemperature(temperature.valueAsNumber)"
            />
          </label>
          <label>
            Max tokens
            <input
              #maxTokens
              type="number"
              min="1"
              [max]="server.info()?.limits?.maxTokensCap ?? 4096"
              placeholder="default"
              [value]="settings.maxTokens() ?? ''"
              (change)="setMaxTokens(maxTokens.valueAsNumber)"
            />
          </label>
          <span class="spacer"></span>
          @if (status(); as state) {
            <span class="status" [class]="'status-' + state" role="status">
              <span class="visually-hidden">Status: </span><span data-testid="status">{{ state }}</span>
            </span>
          }
          <button
            type="button"
            data-testid="regenerate"
            (click)="regenerateAnswer()"
            [disabled]="!current() || session.running()"
          >
            Regenerate
          </button>
          <button type="button" data-testid="stop" (click)="stopStream()" [disabled]="!session.running()">
            Stop
          </button>
          <button
            type="submit"
            class="primary"
            data-testid="send"
            [disabled]="session.running() || !draft().trim()"
          >
            Send
          </button>
        </div>
      </form>
    </section>

    @if (lanes().length > 0) {
      <section class="panel run" aria-labelledby="run-title">
        <h2 id="run-title">This run</h2>
        <div class="lane-metrics" [class.race]="lanes().length > 1">
          @for (lane of lanes(); track lane.streamId; let first = $first) {
            <div>
              <h3 [class]="'transport-' + lane.transport">{{ labels[lane.transport] }}</h3>
              <app-run-metrics-panel [lane]="lane" [clock]="clock.offset()" [primary]="first" />
            </div>
          }
        </div>
        @if (lanes().length > 1) {
          <p class="race-summary" aria-live="polite" data-testid="race-summary">{{ raceSentence() }}</p>
          @if (!resumed()) {
            <app-race-timeline [lanes]="lanes()" />
          }
        }
      </section>
    }
  `,
})
export class Chat {
  protected readonly session = inject(ChatSession);
  protected readonly settings = inject(Settings);
  protected readonly server = inject(ServerConnection);
  protected readonly clock = inject(ClockSync);

  /** Asks the shell to show the credentials field (after a 401 or a refused handshake). */
  readonly credentialsNeeded = output<void>();

  protected readonly labels = TRANSPORT_LABELS;

  protected readonly thoughtMs = thoughtMs;
  protected readonly draft = signal('');
  private readonly log = viewChild.required<ElementRef<HTMLElement>>('log');
  private readonly promptBox = viewChild.required<ElementRef<HTMLTextAreaElement>>('promptBox');
  private followStream = true;

  protected readonly current = this.session.current;
  protected readonly lanes = computed(() => this.current()?.run.lanes() ?? []);
  protected readonly status = computed(() => this.current()?.run.status() ?? null);
  protected readonly expiredCode = RESUME_EXPIRED.code;
  /** A shown error; a resumed stream the server no longer has is told in its lane instead, without alarm. */
  protected readonly error = computed(() => {
    const failed = this.lanes().find((lane) => lane.error && lane.error.code !== RESUME_EXPIRED.code);
    return failed?.error ? { ...failed.error, transport: failed.transport } : null;
  });
  protected readonly needsCredentials = computed(() =>
    ['unauthorized', 'forbidden'].includes(this.error()?.code ?? ''),
  );
  protected readonly race = computed(() => {
    const lanes = this.lanes();
    if (lanes.length !== 2) return null;
    const clock = this.clock.offset();
    const [a, b] = lanes;
    return summarizeRace(a, computeRunMetrics(a, clock), b, computeRunMetrics(b, clock));
  });

  /** A run picked up after a reload: its arrival times are the replay's, so no race can be read from them. */
  protected readonly resumed = computed(() => this.lanes().some((lane) => lane.resumed));

  /** The race in one sentence: who led, by how much per token, and what that means for TTFT and delay. */
  protected readonly raceSentence = computed(() => {
    if (this.resumed())
      return 'Resumed after a page reload: the replay cannot tell which transport was faster.';
    const summary = this.race();
    if (!summary) return 'Waiting for tokens on both transports…';
    const over = `(median over ${summary.comparedTokens} tokens)`;
    if (!summary.ahead || !summary.behind)
      return `Both transports delivered the tokens at the same time ${over}.`;
    const ahead = TRANSPORT_LABELS[summary.ahead];
    const parts = [`${ahead} was ahead by ${formatMs(summary.medianLeadMs)} ms per token ${over}`];
    if (summary.ttfrLeadMs !== null) {
      parts.push(
        `its first reasoning token came ${formatMs(Math.abs(summary.ttfrLeadMs))} ms ${summary.ttfrLeadMs >= 0 ? 'sooner' : 'later'}`,
      );
    }
    if (summary.ttftLeadMs !== null) {
      parts.push(
        `its first ${summary.ttfrLeadMs !== null ? 'answer ' : ''}token came ${formatMs(Math.abs(summary.ttftLeadMs))} ms ${summary.ttftLeadMs >= 0 ? 'sooner' : 'later'}`,
      );
    }
    if (summary.transportDelayLeadMs !== null) {
      const direction = summary.transportDelayLeadMs >= 0 ? 'lower' : 'higher';
      parts.push(
        `its transport delay p50 was ${formatMs(Math.abs(summary.transportDelayLeadMs))} ms ${direction}`,
      );
    }
    return parts.join('; ') + '.';
  });

  constructor() {
    // Keep the newest text in view while it streams, unless the reader scrolled up to read something earlier.
    afterRenderEffect(() => {
      this.lanes();
      const log = this.log().nativeElement;
      if (this.followStream) log.scrollTop = log.scrollHeight;
    });
  }

  protected onLogScroll(): void {
    const log = this.log().nativeElement;
    this.followStream = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  }

  protected onPromptKeydown(event: KeyboardEvent): void {
    if (event.key !== 'Enter' || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    this.sendPrompt();
  }

  protected sendPrompt(): void {
    if (this.session.send(this.draft())) {
      this.draft.set('');
      this.followStream = true;
    }
  }

  protected stopStream(): void {
    void this.session.stop();
  }

  protected regenerateAnswer(): void {
    this.followStream = true;
    this.session.regenerate();
  }

  protected startNewChat(): void {
    this.session.clear();
    this.promptBox().nativeElement.focus();
  }

  protected selectMode(mode: string): void {
    this.settings.setMode(mode);
  }

  protected setModel(model: string): void {
    this.settings.update({ model });
  }

  protected setTemperature(value: number): void {
    if (Number.isFinite(value)) this.settings.update({ temperature: Math.min(2, Math.max(0, value)) });
  }

  /** An empty field means the server's default. */
  protected setMaxTokens(value: number): void {
    const cap = this.server.info()?.limits.maxTokensCap ?? REQUEST_LIMITS.maxTokensCap;
    this.settings.update({
      maxTokens: Number.isFinite(value) ? Math.min(cap, Math.max(1, Math.round(value))) : null,
    });
  }
}
