import {
  deploymentHealthKeys,
  formatHealthMessage,
  type HealthChange,
  parseHealthMessage,
  parseProbeClaim,
} from './redis-deployment-health';

const names = new Set(['east', 'west.v2:a']);

describe('deployment health on Redis: keys and messages', () => {
  it('keys a deployment under the streams’ llmgw: prefix, hash-tagged so that its keys share a slot', () => {
    expect(deploymentHealthKeys('east')).toEqual([
      'llmgw:deployment:{east}:cooling',
      'llmgw:deployment:{east}:rate-limited',
      'llmgw:deployment:{east}:probe',
    ]);
  });

  it.each<HealthChange>([
    { kind: 'cooling', deployment: 'east', ms: 30_000 },
    { kind: 'rate-limited', deployment: 'west.v2:a', ms: 1500 },
    { kind: 'recovered', deployment: 'east' },
  ])('reads back what it writes: %j', (change) => {
    const message = formatHealthMessage('instance-1', change);
    expect(parseHealthMessage(message, names)).toEqual({ instance: 'instance-1', change });
  });

  it('sends a wait as whole milliseconds, rounded up', () => {
    expect(formatHealthMessage('i', { kind: 'cooling', deployment: 'east', ms: 12.2 })).toBe(
      'i cooling east 13',
    );
  });

  it.each([
    ['an unknown kind', 'i down east 10'],
    ['a deployment this table lacks', 'i cooling north 10'],
    ['a negative wait', 'i cooling east -10'],
    ['a fractional wait', 'i cooling east 1.5'],
    ['a wait over a day', 'i cooling east 86400001'],
    ['no wait', 'i cooling east'],
    ['a trailing field', 'i cooling east 10 x'],
    ['no sender', ' cooling east 10'],
    ['nothing', ''],
  ])('ignores a message with %s', (_, message) => {
    expect(parseHealthMessage(message, names)).toBeUndefined();
  });

  it('reads the probe claim script’s answers, and nothing else', () => {
    expect(parseProbeClaim(['won', 0])).toEqual({ outcome: 'won' });
    expect(parseProbeClaim(['cooling', 1200])).toEqual({ outcome: 'cooling', ms: 1200 });
    expect(parseProbeClaim(['claimed', 800])).toEqual({ outcome: 'claimed', ms: 800 });
    expect(parseProbeClaim(['claimed', -2])).toBeUndefined();
    expect(parseProbeClaim(['lost', 5])).toBeUndefined();
    expect(parseProbeClaim('won')).toBeUndefined();
    expect(parseProbeClaim(null)).toBeUndefined();
  });
});
