import { Settings } from './settings';

describe('Settings', () => {
  it('leaves the model and max tokens to the server until chosen', () => {
    const settings = new Settings();
    expect(settings.parameters()).toEqual({ temperature: 0.7 });
    settings.update({ model: 'simulator-fast', maxTokens: 100 });
    expect(settings.parameters()).toEqual({ model: 'simulator-fast', temperature: 0.7, maxTokens: 100 });
  });

  it('accepts only the three run modes', () => {
    const settings = new Settings();
    settings.setMode('race');
    expect(settings.mode()).toBe('race');
    settings.setMode('carrier-pigeon');
    expect(settings.mode()).toBe('race');
  });
});
