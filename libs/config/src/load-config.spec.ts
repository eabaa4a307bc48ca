import { ConfigError, loadConfig } from './load-config';

describe('loadConfig', () => {
  it('defaults to the simulator on 127.0.0.1:3000 when no OpenAI settings are given', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      provider: 'simulator',
      openai: { model: 'simulator' },
      streams: { resumeGraceMs: 5000, retentionMs: 60_000 },
    });
  });

  it('chooses openai when a key or a base URL is set, with gpt-4o-mini as the default model', () => {
    expect(loadConfig({ OPENAI_API_KEY: 'sk-test' })).toMatchObject({
      provider: 'openai',
      openai: { model: 'gpt-4o-mini' },
    });
    expect(loadConfig({ OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1' }).provider).toBe('openai');
  });

  it('lets LLM_PROVIDER force the simulator even with OpenAI settings', () => {
    expect(loadConfig({ OPENAI_API_KEY: 'sk-test', LLM_PROVIDER: 'simulator' }).provider).toBe('simulator');
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ LLM_PROVIDER: 'anthropic' }, 'LLM_PROVIDER'],
    [{ OPENAI_BASE_URL: 'not a url' }, 'OPENAI_BASE_URL'],
    [{ STREAM_RESUME_GRACE_MS: '-1' }, 'STREAM_RESUME_GRACE_MS'],
    [{ LLM_PROVIDER: 'openai' }, 'OPENAI_API_KEY'],
    [{ REDIS_URL: 'redis://:pw@127.0.0.1:6379/zero' }, 'REDIS_URL'],
    [{ REDIS_URL: 'redis://:pw@127.0.0.1:6379/0/1' }, 'REDIS_URL'],
    [{ REDIS_URL: 'redis://:pw@127.0.0.1:70000' }, 'REDIS_URL'],
    [{ REDIS_URL: 'http://127.0.0.1:6379' }, 'REDIS_URL'],
    [{ ANONYMOUS_IPV6_PREFIX_LENGTH: '129' }, 'ANONYMOUS_IPV6_PREFIX_LENGTH'],
    [{ ALLOWED_MODELS: 'gpt-4o' }, 'ALLOWED_MODELS'],
    [{ V1_MAX_RESPONSE_BYTES: '1000' }, 'V1_MAX_RESPONSE_BYTES'],
  ])('refuses %j with one line naming %s', (env, variable) => {
    let error: unknown;
    try {
      loadConfig(env);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
    expect((error as ConfigError).message).toMatch(
      new RegExp(`^Invalid configuration: ${variable}: [^\\n]+$`),
    );
  });

  it('never echoes a value back in its error', () => {
    expect(() => loadConfig({ OPENAI_BASE_URL: 'sk-secret-looking-value' })).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('sk-secret') }),
    );
    expect(() => loadConfig({ REDIS_URL: 'redis://:sk-secret@host/db' })).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('sk-secret') }),
    );
  });

  it('takes a REDIS_URL node-redis can use, and ALLOWED_MODELS with the default model in it', () => {
    for (const url of ['redis://:pw@127.0.0.1:6379', 'redis://127.0.0.1:6379/', 'rediss://u:p@cache/15']) {
      expect(loadConfig({ REDIS_URL: url }).redisUrl).toBe(url);
    }
    expect(loadConfig({ ALLOWED_MODELS: 'simulator, simulator-fast' }).auth.allowedModels).toEqual([
      'simulator',
      'simulator-fast',
    ]);
    expect(loadConfig({}).auth).toMatchObject({ allowedModels: undefined, anonymousIpv6PrefixLength: 64 });
  });
});

describe('loadConfig: auth and limits', () => {
  it('refuses anonymous mode in production unless explicitly allowed', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/^Invalid configuration: AUTH_MODE: /);
    expect(loadConfig({ NODE_ENV: 'production', AUTH_ALLOW_ANONYMOUS: 'true' }).auth.mode).toBe('none');
    expect(loadConfig({ NODE_ENV: 'production', AUTH_MODE: 'api-key', AUTH_API_KEYS: 'k' }).auth.mode).toBe(
      'api-key',
    );
  });

  it('splits comma-separated lists', () => {
    const config = loadConfig({
      AUTH_API_KEYS: ' a, b ,,c',
      CORS_ORIGINS: 'https://x.example,https://y.example',
    });

    expect(config.auth.apiKeys).toEqual(['a', 'b', 'c']);
    expect(config.corsOrigins).toEqual(['https://x.example', 'https://y.example']);
  });

  it('refuses api-key without keys and jwt without a secret or JWKS URL', () => {
    expect(() => loadConfig({ AUTH_MODE: 'api-key' })).toThrow(/^Invalid configuration: AUTH_API_KEYS: /);
    expect(() => loadConfig({ AUTH_MODE: 'api-key', AUTH_API_KEYS: ',, ,' })).toThrow(
      /^Invalid configuration: AUTH_API_KEYS: /,
    );
    expect(() => loadConfig({ AUTH_MODE: 'jwt' })).toThrow(/^Invalid configuration: AUTH_JWT_SECRET: /);
  });

  it.each([
    [undefined, false],
    ['false', false],
    ['true', true],
    ['2', 2],
    ['loopback, 10.0.0.0/8', ['loopback', '10.0.0.0/8']],
  ])('reads TRUST_PROXY=%s as Express would', (value, expected) => {
    expect(loadConfig(value === undefined ? {} : { TRUST_PROXY: value }).trustProxy).toEqual(expected);
  });

  it.each(['not-an-address', '10.0.0.0/99', ',,', 'loopback,300.1.1.1'])(
    'refuses TRUST_PROXY=%s with one line, without echoing it',
    (value) => {
      expect(() => loadConfig({ TRUST_PROXY: value })).toThrow(
        expect.objectContaining({
          message: expect.stringMatching(/^Invalid configuration: TRUST_PROXY: must be [^\n]+$/),
        }),
      );
      expect(() => loadConfig({ TRUST_PROXY: value })).toThrow(
        expect.objectContaining({ message: expect.not.stringContaining(value) }),
      );
    },
  );

  it('serves the loopback names by default on loopback, any Host elsewhere, or exactly ALLOWED_HOSTS', () => {
    expect(loadConfig({}).allowedHosts).toEqual(['localhost', '127.0.0.1', '[::1]']);
    expect(loadConfig({ HOST: '::1' }).allowedHosts).toEqual(['localhost', '127.0.0.1', '[::1]']);
    expect(loadConfig({ HOST: '0.0.0.0' }).allowedHosts).toBeUndefined();
    expect(loadConfig({ ALLOWED_HOSTS: 'a.example, b.example:8443' }).allowedHosts).toEqual([
      'a.example',
      'b.example:8443',
    ]);
    expect(loadConfig({ ALLOWED_HOSTS: '*' }).allowedHosts).toBeUndefined();
    expect(() => loadConfig({ ALLOWED_HOSTS: 'https://a.example/' })).toThrow(
      /^Invalid configuration: ALLOWED_HOSTS: must be [^\n]+$/,
    );
  });

  it('refuses an HS256 secret under 32 bytes in production, without echoing it', () => {
    const production = { NODE_ENV: 'production', AUTH_MODE: 'jwt' };

    expect(() => loadConfig({ ...production, AUTH_JWT_SECRET: 'short-secret-31-bytes-long-xxxx' })).toThrow(
      /^Invalid configuration: AUTH_JWT_SECRET: must be at least 32 bytes with NODE_ENV=production$/,
    );
    expect(loadConfig({ ...production, AUTH_JWT_SECRET: 'a-secret-of-exactly-32-bytes-xxx' }).auth.mode).toBe(
      'jwt',
    );
    expect(loadConfig({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: 'x' }).auth.jwt.secret).toBe('x');
  });

  it('requires exp on JWTs unless AUTH_JWT_REQUIRE_EXP=false', () => {
    expect(loadConfig({}).auth.jwt.requireExp).toBe(true);
    expect(loadConfig({ AUTH_JWT_REQUIRE_EXP: 'false' }).auth.jwt.requireExp).toBe(false);
    expect(() => loadConfig({ AUTH_JWT_REQUIRE_EXP: 'sometimes' })).toThrow(
      /^Invalid configuration: AUTH_JWT_REQUIRE_EXP: /,
    );
  });

  it('refuses a malformed AUTH_MODE name', () => {
    expect(() => loadConfig({ AUTH_MODE: 'Not A Name' })).toThrow(/^Invalid configuration: AUTH_MODE: /);
  });
});
