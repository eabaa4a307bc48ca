/**
 * Summarises a V8 CPU profile (`node --cpu-prof`, as `npm run bench -- --profile` writes for the gateway): self time
 * per package and per function, heaviest first.
 * `node bench/report/profile-summary.mts <file.cpuprofile> [top] [--inside=<path>]...`: with `--inside`, also the
 * share of busy samples spent in code from that source path (`libs/telemetry`, read through the bundle's source map,
 * or a package: `@opentelemetry/`) and in what it called, up to the nearest frame of the gateway's own code: a
 * callback it runs (`run(work)`) counts as the callback's, not as its.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { SourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** `node_modules/<package>` (scoped too), the gateway's own bundle, Node's internals, or native code and V8. */
function owner(url: string): string {
  const nodeModule = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nodeModule) return nodeModule[1];
  if (url.includes('dist/apps/')) return 'gateway bundle (dist/apps/api/main.js)';
  if (url.startsWith('node:')) return 'node internals';
  return url === '' ? 'native (writev, gc, microtasks, program)' : url;
}

const args = process.argv.slice(2).filter((arg) => !arg.startsWith('--inside='));
const insides = process.argv
  .slice(2)
  .filter((arg) => arg.startsWith('--inside='))
  .map((arg) => arg.slice('--inside='.length));
const file = args[0];
if (!file) {
  console.error('usage: node bench/report/profile-summary.mts <file.cpuprofile> [top] [--inside=<path>]...');
  process.exit(2);
}
const top = Number(args[1] ?? 25);
const profile = JSON.parse(await readFile(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const selfMs = new Map<number, number>();
profile.samples.forEach((id, index) =>
  selfMs.set(id, (selfMs.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0) / 1000),
);
const totalMs = (profile.endTime - profile.startTime) / 1000;
const idleMs = [...selfMs].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)');
const busyMs = totalMs - idleMs.reduce((sum, [, ms]) => sum + ms, 0);

const packages = new Map<string, number>();
const functions = new Map<string, number>();
for (const [id, ms] of selfMs) {
  const { functionName, url, lineNumber } = (byId.get(id) as ProfileNode).callFrame;
  if (functionName === '(idle)') continue;
  packages.set(owner(url), (packages.get(owner(url)) ?? 0) + ms);
  const name = `${functionName || '(anonymous)'}  ${url.replace(/^.*node_modules\//, '')}:${lineNumber + 1}`;
  functions.set(name, (functions.get(name) ?? 0) + ms);
}
const print = (title: string, entries: Map<string, number>) => {
  console.warn(`\n${title}`);
  for (const [name, ms] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.warn(
      `${((ms / busyMs) * 100).toFixed(1).padStart(5)} %  ${ms.toFixed(0).padStart(6)} ms  ${name}`,
    );
  }
};
console.warn(`${file}: ${(totalMs / 1000).toFixed(1)} s profiled, ${(busyMs / 1000).toFixed(1)} s busy`);
print('self time by package (share of busy time)', packages);
print('self time by function', functions);

/** A script's source map (`<script>.map` beside it), or undefined: frames in it are then matched by URL only. */
const maps = new Map<string, SourceMap | undefined>();
async function sourceMap(url: string): Promise<SourceMap | undefined> {
  if (!maps.has(url)) {
    const path = url.startsWith('file://') ? fileURLToPath(url) : url;
    maps.set(
      url,
      path.endsWith('.js') && existsSync(`${path}.map`)
        ? new SourceMap(JSON.parse(await readFile(`${path}.map`, 'utf8')))
        : undefined,
    );
  }
  return maps.get(url);
}

/** Where a frame's code comes from: its original source through the source map, else its URL. */
async function origin(frame: ProfileNode['callFrame']): Promise<string> {
  const map = frame.url ? await sourceMap(frame.url) : undefined;
  const entry = map?.findEntry(frame.lineNumber, frame.columnNumber);
  return entry && 'originalSource' in entry ? entry.originalSource : frame.url;
}

if (insides.length > 0) {
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const origins = new Map<number, string>();
  for (const node of profile.nodes) origins.set(node.id, await origin(node.callFrame));
  const busySamples = profile.samples.filter((id) => byId.get(id)?.callFrame.functionName !== '(idle)');
  // The gateway's own code: its sources in the bundle, not the packages it leaves external.
  const own = (id: number) => {
    const source = origins.get(id) ?? '';
    return source.startsWith('webpack://') && !source.includes('/node_modules/');
  };
  console.warn(
    '\nsamples spent in a path and what it called, up to the nearest gateway frame (share of busy)',
  );
  for (const inside of insides) {
    const spentIn = (leaf: number): boolean => {
      for (let at: number | undefined = leaf; at !== undefined; at = parents.get(at)) {
        if (origins.get(at)?.includes(inside)) return true;
        if (own(at)) return false;
      }
      return false;
    };
    const hits = busySamples.filter(spentIn).length;
    // None seen in n samples: below 3/n with 95 % confidence (the rule of three).
    const bound = hits === 0 ? `, under ${((3 / busySamples.length) * 100).toFixed(2)} % (95 %)` : '';
    console.warn(
      `${((hits / busySamples.length) * 100).toFixed(2).padStart(6)} %  ${hits} of ${busySamples.length}${bound}  ${inside}`,
    );
  }
}
