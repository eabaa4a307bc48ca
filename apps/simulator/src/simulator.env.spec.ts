import { readSimulatorEnv, SimulatorEnvError } from './simulator.env';

// The env schema needs only the profile names; the lib's index would also load Nest, whose ES modules Jest
// cannot require without --experimental-vm-modules. The Nest-free module holds the very same constants.
jest.mock('@app/simulator', () => ({
  ...jest.requireActual('../../../libs/simulator/src/latency.profiles'),
  ...jest.requireActual('../../../libs/simulator/src/fault-profile'),
}));

describe('readSimulatorEnv', () => {
  it('defaults to 127.0.0.1:4010 and the realistic profile', () => {
    expect(readSimulatorEnv({})).toEqual({
      port: 4010,
      host: '127.0.0.1',
      options: { profile: undefined, apiKey: undefined },
    });
  });

  it('reads every variable', () => {
    expect(
      readSimulatorEnv({
        SIMULATOR_PORT: '0',
        SIMULATOR_HOST: '0.0.0.0',
        SIMULATOR_PROFILE: 'fast',
        SIMULATOR_API_KEY: 'sk-sim',
      }),
    ).toEqual({ port: 0, host: '0.0.0.0', options: { profile: 'fast', apiKey: 'sk-sim' } });
  });

  it.each([
    ['SIMULATOR_PORT', 'abc'],
    ['SIMULATOR_PORT', '70000'],
    ['SIMULATOR_PORT', '1.5'],
    ['SIMULATOR_PROFILE', 'turbo'],
  ])('names %s when it is %p', (name, value) => {
    expect(() => readSimulatorEnv({ [name]: value })).toThrow(SimulatorEnvError);
    expect(() => readSimulatorEnv({ [name]: value })).toThrow(new RegExp(`^Invalid ${name}="${value}": `));
  });

  it('reads SIMULATOR_KEY and SIMULATOR_DEPLOYMENTS', () => {
    const deployments = {
      primary: { refuse: { status: 503, firstMs: 60000 } },
      fallback: { model: 'gpt-b' },
    };
    expect(
      readSimulatorEnv({ SIMULATOR_KEY: 'k'.repeat(32), SIMULATOR_DEPLOYMENTS: JSON.stringify(deployments) })
        .options,
    ).toEqual({ profile: undefined, apiKey: undefined, key: 'k'.repeat(32), deployments });
  });

  it.each([
    ['{not json', 'Invalid SIMULATOR_DEPLOYMENTS: not JSON; expected {"<name>": {<fault profile>}, …}'],
    ['[]', 'Invalid SIMULATOR_DEPLOYMENTS: expected a JSON object of deployments by name'],
    [
      '{"a b":{}}',
      'Invalid SIMULATOR_DEPLOYMENTS: "a b" is no deployment name (letters, digits, ., _ or -, up to 64)',
    ],
    ['{"primary":{"refuse":{"status":418}}}', /^Invalid SIMULATOR_DEPLOYMENTS: primary\.refuse\.status: .+$/],
    [
      '{"primary":{"midStream":{"action":"cut"}}}',
      /^Invalid SIMULATOR_DEPLOYMENTS: primary\.midStream\.afterTokens: give exactly one of afterTokens and afterBytes$/,
    ],
  ])('refuses SIMULATOR_DEPLOYMENTS=%s in one line naming the field', (value, message) => {
    expect(() => readSimulatorEnv({ SIMULATOR_DEPLOYMENTS: value })).toThrow(message);
  });

  it('never repeats a bad SIMULATOR_KEY', () => {
    expect(() => readSimulatorEnv({ SIMULATOR_KEY: 'short-secret' })).toThrow(
      'Invalid SIMULATOR_KEY: must be at least 16 characters',
    );
  });
});
