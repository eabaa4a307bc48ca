import { Injectable } from '@angular/core';
import type { CompletionRequest } from '@app/contracts';
import type { ResumedLane, RunMode } from '../run/live-run';
import { TRANSPORT_NAMES, type TransportName } from '../transport/completion-transport';

const STORAGE_KEY = 'llm-stream-gateway.conversation.v1';

/** A finished exchange: all a later request and the conversation log need of it. */
export interface PastExchange {
  prompt: string;
  reply: string;
  /** What a reasoning model thought before the reply: shown above it, never sent back to the model. */
  reasoning?: string;
  /** How long it thought, when known. */
  thoughtMs?: number | null;
}

/** The run still streaming when the page went away: enough to show its prompt and resume each lane. */
export interface PendingRun {
  prompt: string;
  mode: RunMode;
  request: CompletionRequest;
  lanes: ResumedLane[];
}

/** The conversation as it survives a reload of the tab. */
export interface SavedConversation {
  exchanges: PastExchange[];
  pending: PendingRun | null;
}

/**
 * The conversation in sessionStorage: it lasts as long as the tab (as the credentials do) and survives a
 * reload, so a run cut off by one can be resumed while the server still holds its streams.
 */
@Injectable({ providedIn: 'root' })
export class ConversationStorage {
  read(): SavedConversation | null {
    try {
      return parseSavedConversation(sessionStorage.getItem(STORAGE_KEY));
    } catch {
      return null;
    }
  }

  write(conversation: SavedConversation | null): void {
    try {
      if (conversation) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(conversation));
      else sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      // Quota or disabled storage: the conversation then lasts as long as the page.
    }
  }
}

/** The stored conversation, or null when there is none or it is not one this client wrote (never a crash). */
export function parseSavedConversation(text: string | null): SavedConversation | null {
  if (!text) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isRecord(value) || !Array.isArray(value['exchanges'])) return null;
  const exchanges = value['exchanges'].filter(isPastExchange);
  const pending = isPendingRun(value['pending']) ? value['pending'] : null;
  return { exchanges, pending };
}

function isPastExchange(value: unknown): value is PastExchange {
  return (
    isRecord(value) &&
    typeof value['prompt'] === 'string' &&
    typeof value['reply'] === 'string' &&
    (value['reasoning'] === undefined || typeof value['reasoning'] === 'string') &&
    (value['thoughtMs'] === undefined ||
      value['thoughtMs'] === null ||
      typeof value['thoughtMs'] === 'number')
  );
}

function isPendingRun(value: unknown): value is PendingRun {
  return (
    isRecord(value) &&
    typeof value['prompt'] === 'string' &&
    (value['mode'] === 'race' || isTransportName(value['mode'])) &&
    isRecord(value['request']) &&
    Array.isArray(value['request']['messages']) &&
    Array.isArray(value['lanes']) &&
    value['lanes'].length > 0 &&
    value['lanes'].every(
      (lane) =>
        isRecord(lane) &&
        isTransportName(lane['transport']) &&
        typeof lane['streamId'] === 'string' &&
        (lane['resumeToken'] === null || typeof lane['resumeToken'] === 'string'),
    )
  );
}

function isTransportName(value: unknown): value is TransportName {
  return (TRANSPORT_NAMES as readonly unknown[]).includes(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
