import { REQUEST_LIMITS } from './completion-request';

/**
 * Whether `value` nests arrays and objects deeper than `maxDepth` (the body itself is depth 1). Iterative, so a
 * hostile body cannot overflow the stack of the check meant to stop it; stops at the first path that is too deep.
 * JSON.parse itself copes with any depth; what does not is whatever recurses over the result later (a
 * `JSON.stringify` in an SDK, a logger), so every surface checks right after parsing.
 */
export function nestedDeeperThan(value: unknown, maxDepth: number = REQUEST_LIMITS.maxJsonDepth): boolean {
  const pending: { value: object; depth: number }[] = [];
  if (typeof value === 'object' && value !== null) {
    pending.push({ value, depth: 1 });
  }
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (next.depth > maxDepth) {
      return true;
    }
    const children = Array.isArray(next.value) ? next.value : Object.values(next.value);
    for (const child of children as unknown[]) {
      if (typeof child === 'object' && child !== null) {
        pending.push({ value: child, depth: next.depth + 1 });
      }
    }
  }
  return false;
}

/**
 * Whether `model` may be used under every allow-list that applies (the deployment's `ALLOWED_MODELS`, the
 * principal's own list); an absent list allows every model. Names compare exactly, as the upstream would.
 */
export function modelAllowed(model: string, ...allowLists: (readonly string[] | undefined)[]): boolean {
  return allowLists.every((list) => list === undefined || list.includes(model));
}
