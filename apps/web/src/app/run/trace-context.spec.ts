import { newStreamId } from './stream-id';
import { traceparentOf } from './trace-context';

describe('traceparentOf', () => {
  it('names the stream id as the trace, with a new sampled parent span per request', () => {
    const streamId = newStreamId();
    const first = traceparentOf(streamId)['traceparent'];
    const second = traceparentOf(streamId)['traceparent'];
    expect(first).toMatch(new RegExp(`^00-${streamId}-[0-9a-f]{16}-01$`));
    expect(second.slice(0, 35)).toBe(first.slice(0, 35));
    expect(second).not.toBe(first);
  });

  it('sends none for an id that is not a trace id', () => {
    expect(traceparentOf('resumed-stream-1')).toEqual({});
  });
});
