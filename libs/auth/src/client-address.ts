import type { IncomingMessage } from 'node:http';
import { isIPv6 } from 'node:net';
import proxyAddr from 'proxy-addr';

/** `TRUST_PROXY`, parsed: Express's `trust proxy` values (a boolean, a hop count, or names, addresses and CIDRs). */
export type TrustProxySetting = boolean | number | readonly string[];

/** Whether the hop at `address`, `hop` steps from the server, is a proxy whose `X-Forwarded-For` is believed. */
export type TrustProxy = (address: string, hop: number) => boolean;

/**
 * Compiles `TRUST_PROXY` with the semantics of Express's `trust proxy` setting. The one function is handed
 * to Express (`app.set('trust proxy', fn)`, so `req.ip` follows it) and used on Socket.IO handshakes, so
 * both transports see the same client address.
 */
export function compileTrustProxy(setting: TrustProxySetting): TrustProxy {
  if (setting === false) {
    return TRUST_NO_PROXY;
  }
  if (typeof setting === 'boolean') {
    return () => setting;
  }
  if (typeof setting === 'number') {
    return (_address, hop) => hop < setting;
  }
  return proxyAddr.compile([...setting]);
}

/** `TRUST_PROXY` unset, the default: no proxy is believed. */
const TRUST_NO_PROXY: TrustProxy = () => false;

/**
 * The client's address: the peer's, or what the trusted proxies in front of it say it is. Trusting no proxy, it is
 * the peer's, which proxy-addr would also answer after parsing X-Forwarded-For only to ignore it (on every request
 * and handshake: it showed in the profile of a stream start, issue 12).
 */
export function clientAddressOf(request: IncomingMessage, trust: TrustProxy): string {
  return trust === TRUST_NO_PROXY ? (request.socket.remoteAddress as string) : proxyAddr(request, trust);
}

/**
 * The network an address's limits are counted under: an IPv4 address itself (an IPv4-mapped IPv6 address too),
 * an IPv6 address's network of `ipv6PrefixLength` bits (`2001:db8:1:2::/64`). One subscriber is commonly given a
 * whole /64 and picks any address in it at will, so counting per IPv6 address would multiply its limits by 2^64.
 */
export function addressGroup(address: string, ipv6PrefixLength: number): string {
  if (!isIPv6(address)) {
    return address;
  }
  const words = ipv6Words(address);
  if (words === undefined) {
    return address;
  }
  if (words.slice(0, 5).every((word) => word === 0) && words[5] === 0xffff) {
    return `${words[6] >> 8}.${words[6] & 0xff}.${words[7] >> 8}.${words[7] & 0xff}`;
  }
  const masked = words.map((word, index) => {
    const bitsKept = Math.min(16, Math.max(0, ipv6PrefixLength - index * 16));
    return bitsKept === 0 ? 0 : word & ((0xffff << (16 - bitsKept)) & 0xffff);
  });
  return `${masked.map((word) => word.toString(16)).join(':')}/${ipv6PrefixLength}`;
}

/** The eight 16-bit words of a valid IPv6 address (a zone id ignored, a trailing dotted IPv4 part included). */
function ipv6Words(address: string): number[] | undefined {
  let text = address.split('%')[0];
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number);
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const parse = (part: string | undefined) =>
    part === undefined || part === '' ? [] : part.split(':').map((word) => parseInt(word, 16));
  const headWords = parse(head);
  const tailWords = parse(tail);
  const words =
    tail === undefined
      ? headWords
      : [...headWords, ...new Array<number>(8 - headWords.length - tailWords.length).fill(0), ...tailWords];
  return words.length === 8 && words.every((word) => Number.isInteger(word)) ? words : undefined;
}
