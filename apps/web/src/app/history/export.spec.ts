import { toCsv } from './export';
import type { RunRecord } from './run-record';

function record(): RunRecord {
  return {
    id: 'a1',
    startedAt: '2026-01-01T00:00:00.000Z',
    transport: 'sse',
    raceId: null,
    model: 'sim',
    prompt: 'say "hi", twice\nplease',
    status: 'done',
    errorCode: null,
    tokens: 2,
    events: 4,
    ttftMs: 12.5,
    ttfrMs: 3.25,
    transportDelayP50Ms: 0.4,
    transportDelayP95Ms: 0.9,
    gapP50Ms: 10,
    gapP95Ms: 11,
    gapMaxMs: 12,
    tokensPerSecond: 99.5,
    durationMs: 40,
    clockUncertaintyMs: 0.1,
    resumed: false,
    transportDelaySketch: [0.4, 0.9],
  };
}

describe('toCsv', () => {
  it('writes a header and quotes what needs quoting', () => {
    const [header, row, end] = toCsv([record()]).split('\r\n');
    expect(header.split(',')).toContain('transportDelayP50Ms');
    expect(row).toBe(
      'a1,2026-01-01T00:00:00.000Z,sse,,sim,"say ""hi"", twice\nplease",done,,2,4,12.5,3.25,0.4,0.9,10,11,12,99.5,40,0.1,false',
    );
    expect(end).toBe('');
  });

  it('leaves a field empty in a record saved before the field existed', () => {
    const { ttfrMs: _absent, ...older } = { ...record(), prompt: 'plain' };
    const [header, row] = toCsv([older]).split('\r\n');
    expect(row.split(',')[header.split(',').indexOf('ttfrMs')]).toBe('');
  });
});
