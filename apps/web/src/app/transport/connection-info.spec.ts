import { fromResourceTiming, type ResourceTiming, shortProtocol } from './connection-info';

const timing = (overrides: Partial<ResourceTiming>): ResourceTiming => ({
  nextHopProtocol: 'h2',
  fetchStart: 100,
  domainLookupStart: 100,
  domainLookupEnd: 100,
  connectStart: 100,
  connectEnd: 100,
  requestStart: 101,
  ...overrides,
});

describe('connection info from Resource Timing', () => {
  it('names the protocols as the client shows them', () => {
    expect(['http/1.1', 'http/1.0', 'h2', 'h3', 'h3-29', ''].map(shortProtocol)).toEqual([
      'h1',
      'h1',
      'h2',
      'h3',
      'h3',
      'unknown',
    ]);
  });

  it('a reused connection: no connect time, no wait', () => {
    expect(fromResourceTiming(timing({}))).toEqual({
      protocol: 'h2',
      newConnection: false,
      queuedMs: 1,
      connectMs: 0,
    });
  });

  it('a new connection: its DNS, TCP and TLS time is connecting, not waiting', () => {
    expect(
      fromResourceTiming(
        timing({ domainLookupEnd: 105, connectStart: 105, connectEnd: 180, requestStart: 181 }),
      ),
    ).toEqual({ protocol: 'h2', newConnection: true, queuedMs: 1, connectMs: 80 });
  });

  it('a seventh HTTP/1.1 request: the time before a connection was free is its wait', () => {
    expect(
      fromResourceTiming(
        timing({
          nextHopProtocol: 'http/1.1',
          domainLookupStart: 3100,
          domainLookupEnd: 3100,
          connectStart: 3100,
          connectEnd: 3100,
          requestStart: 3101,
        }),
      ),
    ).toEqual({ protocol: 'h1', newConnection: false, queuedMs: 3001, connectMs: 0 });
  });

  it('details hidden by the browser (no Timing-Allow-Origin): the protocol only', () => {
    expect(fromResourceTiming(timing({ requestStart: 0 }))).toEqual({
      protocol: 'h2',
      newConnection: null,
      queuedMs: 0,
      connectMs: 0,
    });
  });
});
