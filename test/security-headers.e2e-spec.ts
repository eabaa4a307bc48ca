import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { postStream } from './support/sse-client';
import { startTestApp, type TestApp } from './support/test-app';

/** Every header helmet can send; a response's security headers are those of its headers in this list. */
const HELMET_HEADERS = [
  'content-security-policy',
  'cross-origin-embedder-policy',
  'cross-origin-opener-policy',
  'cross-origin-resource-policy',
  'origin-agent-cluster',
  'referrer-policy',
  'strict-transport-security',
  'x-content-type-options',
  'x-dns-prefetch-control',
  'x-download-options',
  'x-frame-options',
  'x-permitted-cross-domain-policies',
  'x-xss-protection',
];

/** What protects a response that no browser renders as a page (docs/auth.md, "Security headers"). */
const STREAM_SET = {
  'cross-origin-resource-policy': 'same-origin',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
};

/** A page's: helmet's full set, with the CSP the Angular client works under. */
const PAGE_SET = {
  'content-security-policy':
    "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' 'unsafe-inline';connect-src 'self'",
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'origin-agent-cluster': '?1',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-dns-prefetch-control': 'off',
  'x-download-options': 'noopen',
  'x-frame-options': 'SAMEORIGIN',
  'x-permitted-cross-domain-policies': 'none',
  'x-xss-protection': '0',
};

function securityHeaders(headers: Headers): Record<string, string> {
  return Object.fromEntries(
    HELMET_HEADERS.flatMap((name) => {
      const value = headers.get(name);
      return value === null ? [] : [[name, value]];
    }),
  );
}

const request = { messages: [{ role: 'user' as const, content: '[sim tokens=3]' }] };

describe('security headers by kind of response', () => {
  let testApp: TestApp;
  let webRoot: string;

  beforeAll(async () => {
    webRoot = mkdtempSync(join(tmpdir(), 'web-root-'));
    writeFileSync(join(webRoot, 'index.html'), '<!doctype html><title>client</title><app-root></app-root>');
    testApp = await startTestApp({ WEB_ROOT: webRoot });
  });
  afterAll(async () => {
    await testApp.close();
    rmSync(webRoot, { recursive: true, force: true });
  });

  it('gives a stream start only what protects a non-document answer, with the contract’s own headers', async () => {
    const result = await postStream(testApp.url, request);

    expect(result.status).toBe(200);
    expect(securityHeaders(result.headers)).toEqual(STREAM_SET);
    expect(result.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(result.headers.get('cache-control')).toBe('no-cache, no-transform');
    expect(result.headers.get('x-accel-buffering')).toBe('no');
    expect(result.headers.get('x-stream-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(result.headers.get('x-resume-token')).toBeTruthy();
    expect(result.events.at(-1)).toMatchObject({ type: 'done', finishReason: 'stop' });
  });

  it('gives a resume the same set as a start', async () => {
    const started = await postStream(testApp.url, request);
    const streamId = started.headers.get('x-stream-id') as string;

    const resumed = await fetch(`${testApp.url}/api/completions/${streamId}/stream`, {
      headers: { 'last-event-id': '0' },
    });
    const body = await resumed.text();

    expect(resumed.status).toBe(200);
    expect(securityHeaders(resumed.headers)).toEqual(STREAM_SET);
    expect(resumed.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(resumed.headers.get('x-stream-id')).toBe(streamId);
    expect(body).toContain('event: done');
  });

  it('gives a refusal of a stream route the stream’s set: it is problem+json, no page either', async () => {
    const refused = await fetch(`${testApp.url}/api/completions/stream`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'hello',
    });

    expect(refused.status).toBe(415);
    expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(securityHeaders(refused.headers)).toEqual(STREAM_SET);
    expect(await refused.json()).toMatchObject({ code: 'unsupported_media_type' });
  });

  it('gives the OpenAI-compatible stream the stream’s set', async () => {
    const response = await fetch(`${testApp.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'simulator', stream: true, messages: request.messages }),
    });
    const body = await response.text();

    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(securityHeaders(response.headers)).toEqual(STREAM_SET);
    expect(body).toContain('data: [DONE]');
  });

  it('gives the pages, the web client and the OpenAPI page, helmet’s full set', async () => {
    for (const path of ['/', '/api/docs']) {
      const page = await fetch(`${testApp.url}${path}`);
      await page.text();

      expect({ path, status: page.status, type: page.headers.get('content-type') }).toEqual({
        path,
        status: 200,
        type: 'text/html; charset=utf-8',
      });
      expect(securityHeaders(page.headers)).toEqual(PAGE_SET);
    }
  });

  it('keeps the full set on the other answers, refusals of other routes included', async () => {
    const cancel = await fetch(`${testApp.url}/api/completions/unknown-stream`, { method: 'DELETE' });
    await cancel.text();
    const time = await fetch(`${testApp.url}/api/time`);
    await time.text();

    expect(cancel.status).toBe(404);
    expect(securityHeaders(cancel.headers)).toEqual(PAGE_SET);
    expect(securityHeaders(time.headers)).toEqual(PAGE_SET);
  });
});
