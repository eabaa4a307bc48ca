import { ResumeTokenService } from './resume-token.service';
import { ServerKeys } from './server-keys.service';

const options = {
  mode: 'none',
  apiKeys: [],
  jwt: { clockToleranceSec: 30, jwksCooldownMs: 30_000, requireExp: true },
  resumeTokenTtlMs: 60_000,
  trustProxy: () => false,
  anonymousIpv6PrefixLength: 64,
};
const alice = { id: 'alice', strategy: 'api-key' };

describe('ResumeTokenService', () => {
  const tokens = new ResumeTokenService(options, new ServerKeys(options));
  const now = 1_000_000;

  it('vouches for the owner of the one stream it was issued for', () => {
    const token = tokens.issue('stream-1', alice, now);

    expect(tokens.verify(token, 'stream-1', now + 1000)).toMatchObject({
      id: 'alice',
      strategy: 'resume-token',
    });
    expect(tokens.verify(token, 'stream-2', now + 1000)).toBeUndefined();
  });

  it('expires', () => {
    const token = tokens.issue('stream-1', alice, now);

    expect(tokens.verify(token, 'stream-1', now + 60_000)).toBeDefined();
    expect(tokens.verify(token, 'stream-1', now + 60_001)).toBeUndefined();
  });

  it('refuses a token whose payload was altered, or signed by another server', () => {
    const token = tokens.issue('stream-1', alice, now);
    const [, signature] = token.split('.');
    const forgedPayload = Buffer.from(JSON.stringify(['stream-1', 'mallory', now + 60_000])).toString(
      'base64url',
    );

    expect(tokens.verify(`${forgedPayload}.${signature}`, 'stream-1', now)).toBeUndefined();
    expect(
      new ResumeTokenService(options, new ServerKeys(options)).verify(token, 'stream-1', now),
    ).toBeUndefined();
  });

  it.each([
    ['empty', ''],
    ['a lone dot', '.'],
    ['three parts', 'a.b.c'],
    ['an oversized one', 'x'.repeat(2000)],
    ['a bad signature', 'bm90IGpzb24.sig'],
  ])('refuses a malformed token: %s', (_name, token) => {
    expect(tokens.verify(token, 'stream-1', now)).toBeUndefined();
  });

  it('shares tokens between instances configured with the same secret', () => {
    const shared = { ...options, resumeTokenSecret: 'one-secret-for-all-instances' };
    const token = new ResumeTokenService(shared, new ServerKeys(shared)).issue('stream-1', alice, now);

    expect(
      new ResumeTokenService(shared, new ServerKeys(shared)).verify(token, 'stream-1', now),
    ).toMatchObject({ id: 'alice' });
  });
});
