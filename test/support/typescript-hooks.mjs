// Lets a plain `node` process run the TypeScript sources the way Jest does (swc, decorator metadata,
// the tsconfig path aliases), so that a test can start the real server as its own process and signal it.
// Usage: node --import ./test/support/typescript-hooks.mjs apps/api/src/main.ts
import { transformSync } from '@swc/core';
import { existsSync, readFileSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolvePath(dirname(fileURLToPath(import.meta.url)), '../..');
const { compilerOptions } = JSON.parse(readFileSync(join(root, 'tsconfig.json'), 'utf8'));
const aliases = new Map(
  Object.entries(compilerOptions.paths).map(([alias, [target]]) => [alias, join(root, target)]),
);

function typescriptFile(base) {
  for (const candidate of [base, `${base}.ts`, join(base, 'index.ts')]) {
    if (candidate.endsWith('.ts') && existsSync(candidate)) {
      return candidate;
    }
  }
  return undefined;
}

registerHooks({
  resolve(specifier, context, nextResolve) {
    const parent = context.parentURL?.startsWith('file:') ? fileURLToPath(context.parentURL) : undefined;
    const file = aliases.has(specifier)
      ? aliases.get(specifier)
      : parent?.endsWith('.ts') && specifier.startsWith('.')
        ? typescriptFile(resolvePath(dirname(parent), specifier))
        : undefined;
    return file
      ? { url: pathToFileURL(file).href, format: 'commonjs', shortCircuit: true }
      : nextResolve(specifier, context);
  },
  load(url, context, nextLoad) {
    if (!url.startsWith('file:') || !url.endsWith('.ts')) {
      return nextLoad(url, context);
    }
    const filename = fileURLToPath(url);
    const { code } = transformSync(readFileSync(filename, 'utf8'), {
      filename,
      jsc: {
        parser: { syntax: 'typescript', decorators: true },
        transform: { legacyDecorator: true, decoratorMetadata: true },
        target: 'es2023',
      },
      module: { type: 'commonjs' },
      sourceMaps: 'inline',
    });
    return { format: 'commonjs', source: code, shortCircuit: true };
  },
});
