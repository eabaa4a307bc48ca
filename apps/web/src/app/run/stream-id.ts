/** A client-chosen stream id (the contract allows 8 to 64 of `A-Za-z0-9_-`), so Stop works before `start` arrives. */
export function newStreamId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}
