import { incompleteAnswer } from './routing-decisions';

const answer = (body: unknown) => Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));

describe('incompleteAnswer: whether a non-streamed answer may be relayed as whole', () => {
  it.each([
    ['a finished answer', { choices: [{ message: { content: 'hi' }, finish_reason: 'stop' }] }],
    ['one cut by max_tokens', { choices: [{ message: { content: 'hi' }, finish_reason: 'length' }] }],
    [
      'every choice of several finished',
      { choices: [{ finish_reason: 'stop' }, { finish_reason: 'tool_calls' }] },
    ],
    ['no choices at all (nothing unfinished)', { choices: [] }],
  ])('%s: whole', (_case, body) => {
    expect(incompleteAnswer(answer(body))).toBeUndefined();
  });

  it.each([
    ['a body that is not JSON', '{not json', 'malformed'],
    ['no choices field', { error: { message: 'overloaded' } }, 'without choices'],
    ['JSON null', 'null', 'without choices'],
    [
      'a choice that never finished',
      { choices: [{ message: { content: 'half' }, finish_reason: null }] },
      'finish',
    ],
    ['an unknown finish reason', { choices: [{ finish_reason: 'mystery' }] }, 'finish'],
    ['one of two choices unfinished', { choices: [{ finish_reason: 'stop' }, {}] }, 'finish'],
  ])('%s: not whole', (_case, body, reason) => {
    expect(incompleteAnswer(answer(body))).toContain(reason);
  });
});
