import type { IncomingMessage } from 'node:http';
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
