import { HostCheck } from './host-check';

describe('HostCheck', () => {
  const loopback = new HostCheck(['localhost', '127.0.0.1', '::1']);

  it.each([
    ['localhost:3000', true],
    ['LOCALHOST', true],
    ['localhost.:3000', true],
    ['127.0.0.1:8080', true],
    ['[::1]:3000', true],
    ['[::1]', true],
    ['evil.example', false],
    ['localhost.evil.example', false],
    ['127.0.0.1.nip.io', false],
    ['[::2]:3000', false],
    ['', false],
    [undefined, false],
  ])('on the loopback names, Host %j is served: %s', (host, served) => {
    expect(loopback.allows(host)).toBe(served);
  });

  it('matches an entry with a port only on that port, and * or no list at all on anything', () => {
    const withPort = new HostCheck(['gateway.example:8443']);

    expect([withPort.allows('gateway.example:8443'), withPort.allows('gateway.example')]).toEqual([
      true,
      false,
    ]);
    expect(new HostCheck(['*']).allows('anything.example')).toBe(true);
    expect(new HostCheck(undefined).allows(undefined)).toBe(true);
  });

  it('answers the same for a Host asked again, and after many other allowed ones have been seen', () => {
    const check = new HostCheck(['localhost']);
    const answers = () => [check.allows('localhost:3000'), check.allows('evil.example')];
    const first = answers();
    for (let port = 1; port <= 200; port += 1) {
      check.allows(`localhost:${port}`);
    }

    expect([first, answers(), answers()]).toEqual([
      [true, false],
      [true, false],
      [true, false],
    ]);
  });
});
