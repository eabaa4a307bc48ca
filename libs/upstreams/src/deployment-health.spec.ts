import { type DeploymentPolicy, InMemoryDeploymentHealth } from './deployment-health';

const policy: DeploymentPolicy = { cooldownMs: 1000, allowedFails: 1 };
const down = { rateLimited: false };

/** A health whose deployment `east` was put aside at `at` (two failures in a row, allowedFails 1). */
function cooledAt(at: number): InMemoryDeploymentHealth {
  const health = new InMemoryDeploymentHealth(() => 0.5);
  expect(health.failed('east', policy, down, false, at)).toBe(false);
  expect(health.failed('east', policy, down, false, at)).toBe(true);
  return health;
}

describe('InMemoryDeploymentHealth', () => {
  it('puts a deployment aside past allowedFails, then admits one probe, and takes it back when the probe answers', () => {
    const health = cooledAt(0);
    expect(health.admit('east', 999)).toBe('cooling');
    expect(health.coolingMs('east', 400)).toBe(600);
    expect(health.peek('east', 999)).toBe('cooling');
    expect(health.peek('east', 1000)).toBe('probe');
    // peek only looks; admit takes the probe, and the next admission waits for its answer.
    expect(health.peek('east', 1000)).toBe('probe');
    expect(health.admit('east', 1000)).toBe('probe');
    expect(health.peek('east', 1001)).toBe('cooling');
    expect(health.admit('east', 1001)).toBe('cooling');
    expect(health.succeeded('east', true)).toBe(true);
    expect(health.admit('east', 1002)).toBe('go');
  });

  it('puts it aside again for a whole cooldown when the probe fails', () => {
    const health = cooledAt(0);
    expect(health.admit('east', 1000)).toBe('probe');
    expect(health.failed('east', policy, down, true, 1100)).toBe(true);
    expect(health.admit('east', 2099)).toBe('cooling');
    expect(health.admit('east', 2100)).toBe('probe');
  });

  it('gives a probe that never answers (lost to a hedge) up after as long as the cooldown, then admits another', () => {
    const health = cooledAt(0);
    expect(health.admit('east', 1000)).toBe('probe');
    expect(health.admit('east', 1999)).toBe('cooling');
    expect(health.admit('east', 2000)).toBe('probe');
  });

  it('lets the next request probe at once when the probe is released unanswered', () => {
    const health = cooledAt(0);
    expect(health.admit('east', 1000)).toBe('probe');
    // An attempt that was not the probe says nothing about it.
    health.released('east', false);
    expect(health.admit('east', 1001)).toBe('cooling');
    health.released('east', true);
    expect(health.admit('east', 1002)).toBe('probe');
    // Released is no answer: the deployment is still put aside until a probe succeeds.
    expect(health.admit('east', 1003)).toBe('cooling');
    health.released('north', true);
    expect(health.admit('north', 1003)).toBe('go');
  });

  it('answers peek as admit would, for every state, without changing what admit answers next', () => {
    const states: [string, (health: InMemoryDeploymentHealth) => void][] = [
      ['unknown', () => undefined],
      ['cooling', (health) => health.coolDown('east', 0, 1000)],
      ['probe due', (health) => health.coolDown('east', 0, 500)],
      ['rate-limited', (health) => health.rateLimit('east', 0, 2000)],
      ['recovered', (health) => (health.coolDown('east', 0, 500), health.recovered('east'))],
    ];
    const seen = states.map(([state, arrange]) => {
      const health = new InMemoryDeploymentHealth();
      arrange(health);
      const peeked = [health.peek('east', 600), health.peek('east', 600)];
      return { state, peeked, admitted: [health.admit('east', 600), health.admit('east', 601)] };
    });
    expect(seen).toEqual([
      { state: 'unknown', peeked: ['go', 'go'], admitted: ['go', 'go'] },
      { state: 'cooling', peeked: ['cooling', 'cooling'], admitted: ['cooling', 'cooling'] },
      { state: 'probe due', peeked: ['probe', 'probe'], admitted: ['probe', 'cooling'] },
      {
        state: 'rate-limited',
        peeked: ['rate-limited', 'rate-limited'],
        admitted: ['rate-limited', 'rate-limited'],
      },
      { state: 'recovered', peeked: ['go', 'go'], admitted: ['go', 'go'] },
    ]);
  });

  it('keeps a deployment aside when a request admitted before the cooldown succeeds', () => {
    const health = cooledAt(0);
    expect(health.succeeded('east', false)).toBe(false);
    expect(health.admit('east', 500)).toBe('cooling');
  });

  it('takes a cooldown decided elsewhere, keeping the longer of two, and says whether it is new', () => {
    const health = new InMemoryDeploymentHealth();
    expect(health.coolDown('east', 0, 1000)).toBe(true);
    expect(health.coolDown('east', 100, 500)).toBe(false);
    expect(health.coolingMs('east', 100)).toBe(900);
    expect(health.coolDown('east', 200, 2000)).toBe(false);
    expect(health.coolingMs('east', 200)).toBe(2000);
    expect(health.admit('east', 2199)).toBe('cooling');
    expect(health.admit('east', 2200)).toBe('probe');
  });

  it('spares a rate-limited deployment for the longer of two waits, and a recovery keeps that wait', () => {
    const health = new InMemoryDeploymentHealth();
    health.rateLimit('east', 0, 800);
    health.rateLimit('east', 0, 300);
    expect(health.waitMs('east', 100)).toBe(700);
    health.coolDown('east', 0, 500);
    health.recovered('east');
    expect(health.coolingMs('east', 100)).toBe(0);
    expect(health.admit('east', 100)).toBe('rate-limited');
    expect(health.admit('east', 800)).toBe('go');
  });

  it('honours a 429 Retry-After, capped by the cooldown, without putting the deployment aside', () => {
    const health = new InMemoryDeploymentHealth();
    const limited = { rateLimited: true, retryAfterMs: 400 };
    expect(health.failed('east', policy, limited, false, 0)).toBe(false);
    expect(health.failed('east', policy, limited, false, 0)).toBe(false);
    expect(health.admit('east', 399)).toBe('rate-limited');
    expect(health.waitMs('east', 0)).toBe(400);
    expect(health.admit('east', 400)).toBe('go');
    health.failed('east', policy, { rateLimited: true, retryAfterMs: 60_000 }, false, 400);
    expect(health.waitMs('east', 400)).toBe(1000);
  });

  it('forgets a deployment that another instance saw come back', () => {
    const health = cooledAt(0);
    health.recovered('east');
    expect(health.admit('east', 1)).toBe('go');
    expect(health.peek('east', 5000)).toBe('go');
  });
});
