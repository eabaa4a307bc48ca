import { Writable } from 'node:stream';
import { ChunkUpstream, chunkOf } from './support/chunk-upstream';
import { postStream } from './support/sse-client';
import { startTestApp, type TestApp } from './support/test-app';

// A file of its own: nestjs-pino keeps its root logger per process, so the lines of an app started after another
// in the same file would go to the first one's destination.

/** Issue 23, item 11: an upstream's request id is its own text; the log keeps only what looks like an id. */
describe('the upstream’s request id in the JSON log lines (pino, LOG_LEVEL=info)', () => {
  const upstream = new ChunkUpstream();
  let testApp: TestApp;
  let written = '';
  const log = new Writable({
    write(chunk: Buffer, _encoding, done) {
      written += chunk.toString();
      done();
    },
  });
  const hostileId = `<img src=x onerror=alert(1)>${'y'.repeat(4000)}`;

  beforeAll(async () => {
    for (const prompt of ['hostile stream', 'plain stream']) {
      upstream.reply(prompt, {
        kind: 'chunks',
        chunks: [chunkOf({ content: 'ok' }), chunkOf({}, 'stop')],
        headers: prompt === 'hostile stream' ? { 'x-request-id': hostileId } : {},
      });
    }
    testApp = await startTestApp(
      { OPENAI_BASE_URL: await upstream.start(), OPENAI_API_KEY: 'sk-up', LOG_LEVEL: 'info' },
      { logDestination: log },
    );
  });
  afterAll(async () => {
    await testApp.close();
    await upstream.close();
  });

  it('an SSE stream’s upstream id is logged when plausible, dropped when not', async () => {
    for (const prompt of ['plain stream', 'hostile stream']) {
      const result = await postStream(testApp.url, { messages: [{ role: 'user', content: prompt }] });
      expect(result.events.at(-1)).toMatchObject({ type: 'done' });
    }
    const records = written
      .split('\n')
      .filter((line) => line.includes('upstream attempt'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records).toHaveLength(2);
    expect(records[0].upstreamRequestId).toMatch(/^req_chunk_upstream_\d+$/);
    expect(records[1].upstreamRequestId).toBeUndefined();
    expect(written).not.toContain('onerror');
  });
});
