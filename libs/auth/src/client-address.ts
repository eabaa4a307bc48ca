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
  if (typeof setting === 'boolean') {
    return () => setting;
  }
  if (typeof setting === 'number') {
    return (_address, hop) => hop < setting;
  }
  return proxyAddr.compile([...setting]);
}

/** The client's address: the peer's, or what the trusted proxies in front of it say it is. */
export function clientAddressOf(request: IncomingMessage, trust: TrustProxy): string {
  return proxyAddr(request, trust);
}
