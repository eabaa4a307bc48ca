import type * as Simulator from './index';
import type * as TokenSplitter from './token.splitter';

/** Modules are loaded after `jest.resetModules()`, each test in a fresh registry that watches `gpt-tokenizer`. */
describe('the simulator tokenizer', () => {
  let tokenizerLoaded: boolean;

  beforeEach(() => {
    jest.resetModules();
    tokenizerLoaded = false;
    jest.doMock('gpt-tokenizer', () => {
      tokenizerLoaded = true;
      return jest.requireActual('gpt-tokenizer');
    });
  });

  it('is not loaded with the library, only when a simulator starts', async () => {
    const { SimulatorServer } = jest.requireActual<typeof Simulator>('./index');
    const simulator = new SimulatorServer({ profile: 'instant' });
    expect(tokenizerLoaded).toBe(false);

    await simulator.listen();
    try {
      expect(tokenizerLoaded).toBe(true);
    } finally {
      await simulator.close();
    }
  });

  it('refuses to split text before it is loaded, then splits it into pieces that concatenate to the text', async () => {
    const { loadTokenizer, splitIntoPieces } = jest.requireActual<typeof TokenSplitter>('./token.splitter');
    expect(() => splitIntoPieces('hello')).toThrow('await loadTokenizer() first');

    await loadTokenizer();
    const text = 'Streaming héllo 👋🏽 world';
    const pieces = splitIntoPieces(text);
    expect(pieces.length).toBeGreaterThan(3);
    expect(pieces.map((piece) => piece.text).join('')).toBe(text);
  });
});
