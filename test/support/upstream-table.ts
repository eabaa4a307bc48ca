import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Writes an upstream table (v1.2) to a fresh temporary file and returns the setting that points an instance at it.
 * The suites pass it as `UPSTREAMS_FILE` to in-process apps and server processes alike.
 */
export function upstreamsFile(table: object): { UPSTREAMS_FILE: string } {
  const file = join(mkdtempSync(join(tmpdir(), 'gateway-upstreams-')), 'upstreams.json');
  writeFileSync(file, JSON.stringify(table));
  return { UPSTREAMS_FILE: file };
}

/**
 * The simulator as the one deployment of the model `simulator`, declared unable to continue an answer: what the
 * suites about the fleet without continuation (a drain ends streams with `shutting_down`, a lost instance with
 * `stream_lost`) run against, since the default simulator deployment can continue.
 */
export function withoutContinuation(): { UPSTREAMS_FILE: string } {
  return upstreamsFile({
    deployments: { simulator: { simulator: {}, continuation: 'none' } },
    models: { simulator: { targets: [{ deployment: 'simulator', model: 'simulator' }] } },
    defaultModel: 'simulator',
  });
}
