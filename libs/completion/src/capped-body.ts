import { bodyReader } from './lean-fetch';

/**
 * A response body's bytes, or undefined once it passes `maxBytes` (a declared length over it is refused before
 * a byte is read; the body is cancelled, so the upstream connection is closed rather than drained). Whatever an
 * upstream sends, at most `maxBytes` plus one read is ever held.
 */
export async function readCapped(
  response: globalThis.Response,
  maxBytes: number,
): Promise<Buffer | undefined> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  const reader = bodyReader(response);
  if (reader === undefined) {
    return Buffer.alloc(0);
  }
  if (declared > maxBytes) {
    reader.cancel();
    return undefined;
  }
  const pieces: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const read = await reader.read();
    if (read.done) {
      return Buffer.concat(pieces, total);
    }
    total += read.value.byteLength;
    if (total > maxBytes) {
      reader.cancel();
      return undefined;
    }
    pieces.push(read.value);
  }
}
