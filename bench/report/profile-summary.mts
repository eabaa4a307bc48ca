/**
 * Summarises a V8 CPU profile (`node --cpu-prof`, as `npm run bench -- --profile` writes for the gateway): self time
 * per package and per function, heaviest first. `node bench/report/profile-summary.mts <file.cpuprofile> [top]`.
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
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

const file = process.argv[2];
if (!file) {
  console.error('usage: node bench/report/profile-summary.mts <file.cpuprofile> [top]');
  process.exit(2);
}
const top = Number(process.argv[3] ?? 25);
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
