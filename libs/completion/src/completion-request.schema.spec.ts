import { REQUEST_LIMITS } from '@app/contracts';
import { parseCompletionRequest } from './completion-request.schema';

const valid = { messages: [{ role: 'user', content: 'hi' }] };

describe('parseCompletionRequest', () => {
  it('accepts a minimal request and every optional field', () => {
    expect(parseCompletionRequest(valid)).toEqual({ ok: true, request: valid });
    const full = { ...valid, model: 'm', temperature: 0.7, maxTokens: 256, topP: 1, streamId: 'abcdefgh' };
    expect(parseCompletionRequest(full)).toEqual({ ok: true, request: full });
  });

  it.each([
    ['null', null],
    ['a string', 'hi'],
    ['empty messages', { messages: [] }],
    [
      'too many messages',
      { messages: Array.from({ length: REQUEST_LIMITS.maxMessages + 1 }, () => valid.messages[0]) },
    ],
    ['an unknown top-level field', { ...valid, stream: true }],
    ['an unknown message field', { messages: [{ role: 'user', content: 'hi', name: 'x' }] }],
    ['a fractional maxTokens', { ...valid, maxTokens: 1.5 }],
    ['a zero maxTokens', { ...valid, maxTokens: 0 }],
    ['a string temperature', { ...valid, temperature: '0.5' }],
    ['a topP above 1', { ...valid, topP: 1.1 }],
    ['an empty model', { ...valid, model: '  ' }],
    ['a short streamId', { ...valid, streamId: 'abc' }],
  ])('refuses %s with violations safe to show', (_name, payload) => {
    const result = parseCompletionRequest(payload);

    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.violations.length).toBeGreaterThan(0);
      expect(result.violations[0]).toEqual({ path: expect.any(String), message: expect.any(String) });
    }
  });

  it('names the path of the offending value', () => {
    const result = parseCompletionRequest({ messages: [{ role: 'robot', content: 'hi' }] });

    expect(result).toMatchObject({ ok: false, violations: [{ path: 'messages.0.role' }] });
  });
});
