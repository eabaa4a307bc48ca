import { readSimulatorEnv, SimulatorEnvError } from './simulator.env';

// The env schema needs only the profile names; the lib's index would also load Nest, whose ES modules Jest
// cannot require without --experimental-vm-modules. The Nest-free module holds the very same constants.
jest.mock('@app/simulator', () => jest.requireActual('../../../libs/simulator/src/latency.profiles'));

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
});
