import type { IncomingMessage, ServerResponse } from 'node:http';
import { stampTimeProbeArrival, timeProbe } from './time-probe';

function request(url: string, method = 'GET'): IncomingMessage {
  return { url, method } as IncomingMessage;
}

function response(): ServerResponse & { body: string; headers: Record<string, unknown> } {
  const captured = { body: '', headers: {} as Record<string, unknown> };
  return Object.assign(captured, {
    writeHead(status: number, headers: Record<string, unknown>) {
      captured.headers = { status, ...headers };
      return this;
    },
    end(body: string) {
      captured.body = body;
      return this;
    },
  }) as unknown as ServerResponse & { body: string; headers: Record<string, unknown> };
}

describe('timeProbe', () => {
  it('answers with the arrival stamped by the server’s first listener, not when the middleware ran', () => {
    const probe = request('/api/time?probe=1');
    stampTimeProbeArrival(probe);
    const stampedBefore = performance.now();
    while (performance.now() - stampedBefore < 5) {
      // Express and the middleware ahead of the probe take their time.
    }
    const answer = response();
    timeProbe(probe, answer, () => {
      throw new Error('not passed on');
    });
    const time = JSON.parse(answer.body) as { ts: number; receivedAt: number; sentAt: number };
    expect(time.sentAt - time.receivedAt).toBeGreaterThanOrEqual(5);
    expect(time.ts).toBe(time.sentAt);
    expect(answer.headers).toMatchObject({ status: 200, 'Cache-Control': 'no-store' });
  });

  it('stamps on arrival itself when no listener did, and passes every other request on', () => {
    const answer = response();
    timeProbe(request('/api/time'), answer, () => {
      throw new Error('not passed on');
    });
    const time = JSON.parse(answer.body) as { receivedAt: number; sentAt: number };
    expect(time.sentAt - time.receivedAt).toBeLessThan(5);

    const passed: string[] = [];
    for (const other of [request('/api/timer'), request('/api/time', 'POST'), request('/api/info')]) {
      stampTimeProbeArrival(other);
      timeProbe(other, response(), () => passed.push(`${other.method} ${other.url}`));
    }
    expect(passed).toEqual(['GET /api/timer', 'POST /api/time', 'GET /api/info']);
  });
});
