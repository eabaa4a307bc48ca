/** Injection token of the built-in simulator's endpoints (`SimulatorEndpoints`), provided by the app when it serves. */
export const UPSTREAM_SIMULATOR = Symbol('UPSTREAM_SIMULATOR');
