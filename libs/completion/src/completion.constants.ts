/** Injection token of the `CompletionProvider` the service streams from. */
export const COMPLETION_PROVIDER = Symbol('COMPLETION_PROVIDER');
