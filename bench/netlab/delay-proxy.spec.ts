import { once } from 'node:events';
import { createServer, type Server, type Socket, connect } from 'node:net';
import { type DelayProxy, type DelayProxyOptions, startDelayProxy } from './delay-proxy';

/**
 * Measured through the proxy on loopback, against the same exchange without it: the added one-way delay of each
 * direction (the median of many samples, taken one at a time so that no sample waits behind another), its
 * jitter, a new connection's handshake round trip and the bandwidth cap. Both ends live in this process, so one
 * clock stamps the send and the arrival.
 */
describe('the delay proxy', () => {
  const SAMPLES = 41;
  let target: Server;
  let serverSide: Promise<Socket>;
  let proxy: DelayProxy | undefined;
  const open = new Set<Socket>();

  beforeEach(async () => {
    let accepted!: (socket: Socket) => void;
    serverSide = new Promise((resolve) => (accepted = resolve));
    target = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
      open.add(socket);
      accepted(socket);
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  });

  afterEach(async () => {
    for (const socket of open) socket.destroy();
    open.clear();
    await proxy?.close();
    proxy = undefined;
    await new Promise((resolve) => target.close(resolve));
  });

  const targetPort = () => (target.address() as { port: number }).port;

  async function through(
    options: Omit<DelayProxyOptions, 'target'>,
  ): Promise<{ client: Socket; server: Socket }> {
    proxy = await startDelayProxy({ target: { host: '127.0.0.1', port: targetPort() }, ...options });
    return pair(proxy.port);
  }

  async function pair(port: number): Promise<{ client: Socket; server: Socket }> {
    const client = connect({ host: '127.0.0.1', port, noDelay: true, allowHalfOpen: true });
    open.add(client);
    await once(client, 'connect');
    return { client, server: await serverSide };
  }

  /** ms from writing one byte on `from` to its arrival on `to`, one sample after the other. */
  async function oneWay(from: Socket, to: Socket, samples = SAMPLES): Promise<number[]> {
    const seen: number[] = [];
    for (let i = 0; i < samples; i++) {
      const arrived = once(to, 'data');
      const sent = performance.now();
      from.write('x');
      await arrived;
      seen.push(performance.now() - sent);
    }
    return seen;
  }

  /** Fails with every sample seen, so that a miss on a loaded machine says how it missed. */
  function expectWithin(
    what: string,
    value: number,
    low: number,
    high: number,
    samples: number[] = [],
  ): void {
    if (!(value >= low && value <= high)) {
      throw new Error(
        `${what}: ${value.toFixed(2)} ms, not within ${low}..${high} ms; samples ${show(samples)}`,
      );
    }
  }

  const quantile = (values: number[], q: number) =>
    [...values].sort((a, b) => a - b)[Math.round(q * (values.length - 1))];
  const show = (values: number[]) => values.map((value) => value.toFixed(2)).join(' ');

  it('adds the set one-way delay to each direction, each within 1 ms', async () => {
    const { client, server } = await through({
      up: { delayMs: 20 },
      down: { delayMs: 35 },
      handshake: false,
    });
    await oneWay(client, server, 1);
    const up = await oneWay(client, server);
    const down = await oneWay(server, client);
    // Never early, and the earliest samples within 1 ms: the proxy's own hop (two loopback hops instead of one)
    // is part of what it adds. This process holds both ends and the proxy, and under npm test's parallel suites
    // the scheduler makes samples late, never early: a clean-clone CI run had the first 26 of 41 samples 3.5 ms
    // late together (another suite busy on both cores) and the last 15 at 20.2-20.3 ms. So the sharp checks are
    // on the low end (the 10th percentile: five undisturbed samples of 41), not on the median, which such a run
    // moves by however long the neighbour stays busy.
    expectWithin('up, the earliest', Math.min(...up), 19.8, 21, up);
    expectWithin('up, the 10th percentile', quantile(up, 0.1), 19.8, 21, up);
    expectWithin('down, the earliest', Math.min(...down), 34.8, 36, down);
    expectWithin('down, the 10th percentile', quantile(down, 0.1), 34.8, 36, down);
  });

  it('spreads each chunk over delay ± jitter, in order', async () => {
    const { client, server } = await through({
      up: { delayMs: 30, jitterMs: 10 },
      down: { delayMs: 0 },
      handshake: false,
    });
    const samples = await oneWay(client, server, 81);
    const sorted = [...samples].sort((a, b) => a - b);
    const share = (test: (value: number) => boolean) => samples.filter(test).length / samples.length;
    // Uniform over 20..40 ms: never earlier than 20, a twentieth of the samples below 21, half below 30 and a
    // quarter above 35. Load only ever makes a sample later, so the checks below 30 are the sharp ones. The 5th
    // percentile rather than the 10th: under npm test's parallel suites a loaded run put the 10th at 24.9 ms (most
    // samples 2-3 ms late) while its 5th was 22.5; a jitter of only ±5 ms would put the 5th at 26. The share below
    // 30 is for the spread, not the accuracy: at least 15 %, since samples all 3.5 ms late (as a CI run saw) leave
    // about a third below 30, a sampling error away from 30 %, and even 5 ms late leave a quarter.
    expectWithin('the earliest', sorted[0], 19.8, 23, sorted);
    expectWithin('the 5th percentile', quantile(samples, 0.05), 19.8, 24.5, sorted);
    if (!(share((value) => value < 30) >= 0.15 && share((value) => value > 35) >= 0.15)) {
      throw new Error(`not spread over 20..40 ms: ${show(sorted)}`);
    }
  });

  it('holds a new connection’s first bytes for the handshake’s round trip', async () => {
    proxy = await startDelayProxy({
      target: { host: '127.0.0.1', port: targetPort() },
      up: { delayMs: 25 },
      down: { delayMs: 15 },
    });
    const connecting = performance.now();
    const { client, server } = await pair(proxy.port);
    const arrived = once(server, 'data');
    client.write('first');
    await arrived;
    const first = performance.now() - connecting;
    const later = await oneWay(client, server, 21);
    const after = quantile(later, 0.1);
    // From the connect: SYN (25) + SYN-ACK (15) + the first data (25) = 65 ms; later bytes 25 ms.
    expectWithin('the first bytes', first, 64.8, 75, [first]);
    expectWithin('the later bytes, the 10th percentile', after, 24.8, 26, later);
    expect(proxy.connections).toBe(1);
  });

  it('caps the bandwidth of each direction', async () => {
    const { client, server } = await through({
      up: { delayMs: 0, bytesPerSecond: 2_000_000 },
      down: { delayMs: 5, bytesPerSecond: 500_000 },
      handshake: false,
    });
    const total = 200_000;
    async function transfer(from: Socket, to: Socket): Promise<{ first: number; last: number }> {
      let received = 0;
      let first = 0;
      const sent = performance.now();
      const done = new Promise<{ first: number; last: number }>((resolve) => {
        const onData = (chunk: Buffer) => {
          if (received === 0) first = performance.now() - sent;
          received += chunk.length;
          if (received >= total) {
            to.off('data', onData);
            resolve({ first, last: performance.now() - sent });
          }
        };
        to.on('data', onData);
      });
      from.write(Buffer.alloc(total, 'y'));
      return done;
    }
    // 200 kB at 2 MB/s: 100 ms; at 500 kB/s: 400 ms, plus the 5 ms delay; the first bytes come after one
    // segment's time (16 KiB: 8 ms up, 33 ms down), not after the whole transfer.
    const up = await transfer(client, server);
    const down = await transfer(server, client);
    // Never faster than the cap; a loaded machine can only make it slower.
    expectWithin('200 kB up at 2 MB/s, the last byte', up.last, 99, 150);
    expectWithin('up, the first byte', up.first, 7.5, 30);
    expectWithin('200 kB down at 500 kB/s, the last byte', down.last, 404, 480);
    expectWithin('down, the first byte', down.first, 37, 60);
    expect(proxy?.bytes).toEqual({ up: total, down: total });
  });

  it('delivers a FIN behind the bytes before it, and the other direction goes on', async () => {
    const { client, server } = await through({
      up: { delayMs: 10 },
      down: { delayMs: 10 },
      handshake: false,
    });
    let text = '';
    server.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const ended = once(server, 'end');
    client.end('last words');
    await ended;
    expect(text).toBe('last words');
    // The client's FIN closed only its half: the server still answers.
    const answer = once(client, 'data');
    server.end('reply');
    expect(String((await answer)[0])).toBe('reply');
  });
});
