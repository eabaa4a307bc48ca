import { ConversationStorage, parseSavedConversation, type SavedConversation } from './conversation-storage';

/** sessionStorage as the browser has it, for a test environment without one. */
class MemoryStorage {
  readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
}

const conversation: SavedConversation = {
  exchanges: [{ prompt: 'Hi', reply: 'Hello!' }],
  pending: {
    prompt: 'And then?',
    mode: 'race',
    request: { messages: [{ role: 'user', content: 'And then?' }], temperature: 0.7 },
    lanes: [
      { transport: 'sse', streamId: 'a1b2c3d4', resumeToken: 'token' },
      { transport: 'socket.io', streamId: 'e5f6a7b8', resumeToken: null },
    ],
  },
};

describe('ConversationStorage', () => {
  let storage: MemoryStorage;
  beforeEach(() => {
    storage = new MemoryStorage();
    Object.defineProperty(globalThis, 'sessionStorage', { value: storage, configurable: true });
  });
  afterEach(() => {
    Reflect.deleteProperty(globalThis, 'sessionStorage');
  });

  it('keeps the conversation and its unfinished run in sessionStorage, and gives them back', () => {
    new ConversationStorage().write(conversation);
    expect(storage.items.size).toBe(1);
    expect(new ConversationStorage().read()).toEqual(conversation);
  });

  it('removes the entry for an empty conversation', () => {
    const store = new ConversationStorage();
    store.write(conversation);
    store.write(null);
    expect(storage.items.size).toBe(0);
    expect(store.read()).toBeNull();
  });

  it('reads nothing, without throwing, where storage is unavailable', () => {
    Reflect.deleteProperty(globalThis, 'sessionStorage');
    const store = new ConversationStorage();
    expect(() => store.write(conversation)).not.toThrow();
    expect(store.read()).toBeNull();
  });
});

describe('parseSavedConversation', () => {
  it('rejects what this client did not write', () => {
    expect(parseSavedConversation(null)).toBeNull();
    expect(parseSavedConversation('not json')).toBeNull();
    expect(parseSavedConversation('[]')).toBeNull();
    expect(parseSavedConversation('{"pending":null}')).toBeNull();
  });

  it('drops an exchange whose reasoning is not text', () => {
    const exchanges = [
      { prompt: 'a', reply: 'b', reasoning: 'c', thoughtMs: 12 },
      { prompt: 'd', reply: 'e', reasoning: 42 },
    ];
    expect(parseSavedConversation(JSON.stringify({ exchanges, pending: null }))).toEqual({
      exchanges: [exchanges[0]],
      pending: null,
    });
  });

  it('drops a malformed pending run rather than resume something it cannot', () => {
    const lanes = [{ transport: 'carrier-pigeon', streamId: 'x', resumeToken: null }];
    const text = JSON.stringify({ ...conversation, pending: { ...conversation.pending, lanes } });
    expect(parseSavedConversation(text)).toEqual({ exchanges: conversation.exchanges, pending: null });
  });
});
